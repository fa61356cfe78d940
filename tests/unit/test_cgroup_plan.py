"""Resource plans for v1, v2 and hybrid layouts; device rules as v1 lines and as an eBPF program
checked with a small interpreter against a reference model of the rule semantics."""

import itertools
import os
import random
import struct
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import ebpf_vm  # noqa: E402

from edgert.cgroup import devices  # noqa: E402
from edgert.cgroup.devices import DENY_ALL, Rule  # noqa: E402
from edgert.cgroup.layout import Layout  # noqa: E402
from edgert.cgroup.plan import Write, plan  # noqa: E402
from edgert.errors import ConfigError, Unsupported  # noqa: E402

ALL_V1 = ("cpuset", "cpu", "cpuacct", "memory", "pids", "devices", "freezer", "blkio", "hugetlb",
          "net_cls", "net_prio", "rdma")
V1 = Layout({c: f"/sys/fs/cgroup/{c}" for c in ALL_V1}, None)
V2 = Layout({}, "/sys/fs/cgroup", ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma"])
HYBRID = Layout({c: f"/sys/fs/cgroup/{c}" for c in ("cpu", "cpuacct", "cpuset", "memory",
                                                      "devices", "freezer", "blkio", "pids")},
                "/sys/fs/cgroup/unified", ["hugetlb"])

EVERYTHING = {
    "memory": {"limit": 100 << 20, "reservation": 50 << 20, "swap": 200 << 20,
               "swappiness": 10, "disableOOMKiller": True, "useHierarchy": True},
    "cpu": {"shares": 1024, "quota": 50000, "burst": 10000, "period": 100000,
            "realtimeRuntime": 1000, "realtimePeriod": 10000, "cpus": "0-1", "mems": "0",
            "idle": 0},
    "pids": {"limit": 64},
    "blockIO": {"weight": 500,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 300}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
                "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 50}]},
    "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": -1}],
    "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
    "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
}


def files(writes):
    return [(w.hierarchy, w.filename, w.value) for w in writes]


def test_every_field_on_v1():
    assert files(plan(EVERYTHING, V1)) == [
        ("cpuset", "cpuset.cpus", "0-1"),
        ("cpuset", "cpuset.mems", "0"),
        ("memory", "memory.use_hierarchy", "1"),
        ("memory", "memory.memsw.limit_in_bytes", "-1"),
        ("memory", "memory.limit_in_bytes", "104857600"),
        ("memory", "memory.memsw.limit_in_bytes", "209715200"),
        ("memory", "memory.soft_limit_in_bytes", "52428800"),
        ("memory", "memory.swappiness", "10"),
        ("memory", "memory.oom_control", "1"),
        ("cpu", "cpu.shares", "1024"),
        ("cpu", "cpu.cfs_burst_us", "0"),
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.cfs_burst_us", "10000"),
        ("cpu", "cpu.rt_period_us", "10000"),
        ("cpu", "cpu.rt_runtime_us", "1000"),
        ("cpu", "cpu.idle", "0"),
        ("pids", "pids.max", "64"),
        ("blkio", "blkio.bfq.weight", "500"),
        ("blkio", "blkio.bfq.weight_device", "8:0 300"),
        ("blkio", "blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio", "blkio.throttle.write_bps_device", "8:0 0"),
        ("blkio", "blkio.throttle.read_iops_device", "8:16 100"),
        ("blkio", "blkio.throttle.write_iops_device", "8:16 50"),
        ("hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"),
        ("hugetlb", "hugetlb.1GB.limit_in_bytes", "-1"),
        ("net_cls", "net_cls.classid", str(0x100001)),
        ("net_prio", "net_prio.ifpriomap", "eth0 5"),
        ("rdma", "rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"),
    ]


def test_every_v2_field_on_v2():
    resources = {key: value for key, value in EVERYTHING.items() if key != "network"}
    resources["memory"] = {"limit": 100 << 20, "reservation": 50 << 20, "swap": 200 << 20,
                           "useHierarchy": True, "disableOOMKiller": False}
    resources["cpu"] = {k: v for k, v in EVERYTHING["cpu"].items() if not k.startswith("realtime")}
    resources["unified"] = {"memory.high": "90000000", "cgroup.max.descendants": "10"}
    assert files(plan(resources, V2)) == [
        ("", "cpuset.cpus", "0-1"),
        ("", "cpuset.mems", "0"),
        ("", "memory.max", "104857600"),
        ("", "memory.swap.max", str(100 << 20)),
        ("", "memory.low", "52428800"),
        ("", "cpu.weight", "39"),
        ("", "cpu.max", "50000 100000"),
        ("", "cpu.max.burst", "10000"),
        ("", "cpu.idle", "0"),
        ("", "pids.max", "64"),
        ("", "io.weight", "default 4950"),
        ("", "io.weight", "8:0 2930"),
        ("", "io.max", "8:0 rbps=1048576 wbps=max"),
        ("", "io.max", "8:16 riops=100 wiops=50"),
        ("", "hugetlb.2MB.max", "4194304"),
        ("", "hugetlb.1GB.max", "max"),
        ("", "rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"),
        ("", "memory.high", "90000000"),
        ("", "cgroup.max.descendants", "10"),
    ]


def test_hybrid_puts_each_controller_where_it_is_bound():
    resources = {"memory": {"limit": 1 << 20}, "pids": {"limit": 5},
                 "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                 "unified": {"hugetlb.2MB.rsvd.max": "0"}}
    assert files(plan(resources, HYBRID)) == [
        ("memory", "memory.limit_in_bytes", "1048576"),
        ("pids", "pids.max", "5"),
        ("", "hugetlb.2MB.max", "0"),
        ("", "hugetlb.2MB.rsvd.max", "0"),
    ]


@pytest.mark.parametrize("shares, weight", [(2, 1), (1024, 39), (262144, 10000)])
def test_cpu_weight_conversion(shares, weight):
    assert files(plan({"cpu": {"shares": shares}}, V2)) == [("", "cpu.weight", str(weight))]


@pytest.mark.parametrize("blkio, io", [(10, 1), (1000, 10000), (100, 910)])
def test_io_weight_conversion(blkio, io):
    assert files(plan({"blockIO": {"weight": blkio}}, V2)) == [("", "io.weight", f"default {io}")]


def test_unlimited_values():
    unlimited = {"memory": {"limit": -1, "swap": -1, "reservation": -1},
                 "cpu": {"quota": -1}, "pids": {"limit": -1}}
    assert files(plan(unlimited, V1)) == [
        ("memory", "memory.memsw.limit_in_bytes", "-1"),
        ("memory", "memory.limit_in_bytes", "-1"),
        ("memory", "memory.memsw.limit_in_bytes", "-1"),
        ("memory", "memory.soft_limit_in_bytes", "-1"),
        ("cpu", "cpu.cfs_quota_us", "-1"),
        ("pids", "pids.max", "max"),
    ]
    assert files(plan(unlimited, V2)) == [
        ("", "memory.max", "max"), ("", "memory.swap.max", "max"), ("", "memory.low", "max"),
        ("", "cpu.max", "max"), ("", "pids.max", "max"),
    ]


def test_cpu_max_with_one_of_quota_and_period():
    assert files(plan({"cpu": {"quota": 20000}}, V2)) == [("", "cpu.max", "20000")]
    assert files(plan({"cpu": {"period": 50000}}, V2)) == [("", "cpu.max", "max 50000")]
    assert files(plan({"cpu": {"quota": -1, "period": 50000}}, V2)) == [
        ("", "cpu.max", "max 50000")]


def test_zero_means_not_set_where_runc_reads_it_so():
    zeros = {"memory": {"limit": 0, "swap": 0, "reservation": 0}, "pids": {"limit": 0},
             "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0,
                     "realtimePeriod": 0},
             "blockIO": {"weight": 0}, "network": {"classID": 0}}
    assert plan(zeros, V1) == []
    assert plan(zeros, V2) == []
    assert files(plan({"memory": {"swappiness": 0}, "cpu": {"burst": 0}}, V1)) == [
        ("memory", "memory.swappiness", "0"), ("cpu", "cpu.cfs_burst_us", "0")]


def test_empty_and_partial_updates():
    assert plan(None, V1) == []
    assert plan({}, V2) == []
    assert plan({"memory": {}, "cpu": {"cpus": ""}, "devices": [{"allow": False}]}, V1) == []
    assert files(plan({"memory": {"swap": 300}}, V1)) == [
        ("memory", "memory.memsw.limit_in_bytes", "300")]
    assert plan({"memory": {"limit": 10 << 20}, "futureField": {"x": 1}},
                V1) == [Write("memory", "memory.limit_in_bytes", str(10 << 20))]


def test_check_before_update():
    writes = plan({"memory": {"limit": 1000000, "checkBeforeUpdate": True}}, V1)
    assert writes[0] == Write("memory", "memory.usage_in_bytes", "1000000", True)
    assert writes[1] == Write("memory", "memory.limit_in_bytes", "1000000")
    writes = plan({"memory": {"limit": 1000000, "checkBeforeUpdate": True}}, V2)
    assert writes[0] == Write("", "memory.current", "1000000", True)
    assert plan({"memory": {"checkBeforeUpdate": True}}, V2) == []


@pytest.mark.parametrize("resources, layout, error, match", [
    ({"memory": {"kernel": 1 << 20}}, V1, Unsupported,
     r"linux\.resources\.memory\.kernel: kernel memory limits are deprecated"),
    ({"memory": {"kernelTCP": 1}}, V2, Unsupported, r"memory\.kernelTCP"),
    ({"memory": {"swappiness": 10}}, V2, Unsupported,
     r"config.json: linux\.resources\.memory\.swappiness: has no cgroup v2 equivalent"),
    ({"memory": {"disableOOMKiller": True}}, V2, Unsupported, r"memory\.disableOOMKiller"),
    ({"memory": {"useHierarchy": False}}, V2, Unsupported, "always hierarchical"),
    ({"memory": {"limit": "12M"}}, V1, ConfigError,
     r"^config.json: linux\.resources\.memory\.limit: must be an integer, got '12M'$"),
    ({"memory": {"limit": -5}}, V1, ConfigError, r"-1 \(unlimited\) or a positive number"),
    ({"memory": {"limit": True}}, V1, ConfigError, "must be an integer"),
    ({"memory": {"swappiness": 101}}, V1, ConfigError, r"swappiness: must be from 0 to 100"),
    ({"memory": {"disableOOMKiller": "yes"}}, V1, ConfigError, "must be true or false"),
    ({"memory": {"limit": 200, "swap": 100}}, V1, ConfigError, r"swap: .* at least memory.limit"),
    ({"memory": {"limit": -1, "swap": 100}}, V2, ConfigError, r"swap: .*memory.limit is -1"),
    ({"memory": {"swap": 100}}, V2, ConfigError, r"swap: needs memory.limit on cgroup v2"),
    ({"memory": 5}, V1, ConfigError, r"linux\.resources\.memory: must be an object"),
    ({"cpu": {"realtimeRuntime": 100}}, V2, Unsupported, r"cpu\.realtimeRuntime: has no cgroup v2"),
    ({"cpu": {"quota": 500}}, V1, ConfigError, r"quota: must be -1 \(unlimited\) or at least 1000"),
    ({"cpu": {"period": 500}}, V2, ConfigError, r"period: must be from 1000 to 1000000"),
    ({"cpu": {"shares": 1}}, V1, ConfigError, r"shares: must be from 2 to 262144"),
    ({"cpu": {"quota": 5000, "burst": 6000}}, V1, ConfigError, r"burst: must not exceed"),
    ({"cpu": {"idle": 2}}, V1, ConfigError, r"idle: must be from 0 to 1"),
    ({"cpu": {"cpus": "0-a"}}, V1, ConfigError, r"cpu\.cpus: must be a list of numbers"),
    ({"cpu": {"mems": "3-1"}}, V2, ConfigError, r"cpu\.mems"),
    ({"pids": {"limit": 5}}, Layout({"memory": "/m"}, None), Unsupported,
     r"linux\.resources\.pids\.limit: the pids cgroup controller is not available here "
     r"\(cgroup v1 controllers: memory\)"),
    ({"pids": {"limit": 5}}, Layout({}, "/u", []), Unsupported, "cgroup2 controllers: none"),
    ({"blockIO": {"leafWeight": 10}}, V1, Unsupported, r"blockIO\.leafWeight: .*CFQ"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 1}]}}, V2,
     Unsupported, r"weightDevice\[0\]\.leafWeight"),
    ({"blockIO": {"weight": 5}}, V1, ConfigError, r"weight: must be from 10 to 1000"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, V1, ConfigError,
     r"throttleReadBpsDevice\[0\]\.minor: is required"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}}, V1, ConfigError,
     r"\[0\]\.rate: is required"),
    ({"blockIO": {"weight": 100}}, Layout({"memory": "/m"}, "/u", ["hugetlb"]), Unsupported,
     r"blockIO\.weight: the io cgroup controller is not available"),
    ({"hugepageLimits": [{"pageSize": "2M", "limit": 1}]}, V1, ConfigError, r"pageSize"),
    ({"hugepageLimits": [{"pageSize": "2MB"}]}, V2, ConfigError, r"\[0\]\.limit: is required"),
    ({"hugepageLimits": {"pageSize": "2MB"}}, V2, ConfigError, r"hugepageLimits: must be a list"),
    ({"network": {"classID": 1}}, V2, Unsupported,
     r"network\.classID: needs the cgroup v1 net_cls controller"),
    ({"network": {"priorities": [{"name": "eth0", "priority": 1}]}}, HYBRID, Unsupported,
     r"priorities\[0\]: needs the cgroup v1 net_prio"),
    ({"network": {"priorities": [{"name": "a b", "priority": 1}]}}, V1, ConfigError, "name"),
    ({"rdma": {"mlx": {"hcaHandles": -1}}}, V1, ConfigError, r"rdma\.mlx\.hcaHandles"),
    ({"rdma": {"mlx": {"hcaHandles": 1}}}, HYBRID, Unsupported, "rdma cgroup controller"),
    ({"unified": {"memory.high": "1"}}, V1, Unsupported, "has only cgroup v1"),
    ({"unified": {"memory.high": "1"}}, HYBRID, Unsupported, "bound to cgroup v1 here"),
    ({"unified": {"io.max": "1"}}, HYBRID, Unsupported, "io controller is not available"),
    ({"unified": {"../x": "1"}}, V2, ConfigError, r"unified\.\.\./x: must name a cgroup2"),
    ({"unified": {"memory.high": 5}}, V2, ConfigError, "must be a string"),
    ({"unified": {"cgroup.procs": "1"}}, V2, ConfigError, "managed by the runtime"),
])
def test_errors_name_the_field(resources, layout, error, match):
    with pytest.raises(error, match=match):
        plan(resources, layout)


def test_error_source_prefix():
    with pytest.raises(ConfigError, match=r"^update\.json: linux\.resources\.pids\.limit"):
        plan({"pids": {"limit": "x"}}, V2, source="update.json")


# -- devices: reference semantics -------------------------------------------------------------

BITS = {"m": 1, "r": 2, "w": 4}
TYPES = {"b": 1, "c": 2}


def reference(rules, kind, major, minor, access):
    """The documented semantics: per access bit, the last matching rule naming it decides."""
    for letter in access:
        decided = False
        for rule in rules:
            if (rule.type in ("a", kind) and rule.major in (None, major)
                    and rule.minor in (None, minor) and letter in rule.access):
                decided = rule.allow
        if not decided:
            return False
    return True


class V1Kernel:
    """The kernel's v1 device cgroup below an allow-all parent (security/device_cgroup.c)."""

    def __init__(self):
        self.allow_default = True
        self.exceptions = []   # [kind, major, minor, bits]

    def write(self, filename, line):
        if line == "a":
            self.allow_default = filename == "devices.allow"
            self.exceptions = []
            return
        kind, numbers, access = line.split()
        major, minor = (None if n == "*" else int(n) for n in numbers.split(":"))
        bits = sum(BITS[letter] for letter in access)
        adding = (filename == "devices.allow") != self.allow_default
        for ex in self.exceptions:
            if ex[:3] == [kind, major, minor]:
                ex[3] = ex[3] | bits if adding else ex[3] & ~bits
                break
        else:
            if adding:
                self.exceptions.append([kind, major, minor, bits])
        self.exceptions = [ex for ex in self.exceptions if ex[3]]

    def allows(self, kind, major, minor, access):
        bits = sum(BITS[letter] for letter in access)
        matching = [ex for ex in self.exceptions
                    if ex[0] == kind and ex[1] in (None, major) and ex[2] in (None, minor)]
        if self.allow_default:
            return not any(ex[3] & bits for ex in matching)
        return any(not bits & ~ex[3] for ex in matching)


REQUESTS = [(kind, major, minor, "".join(access))
            for kind in "cb" for major in (1, 2) for minor in (3, 4)
            for n in (1, 2, 3) for access in itertools.combinations("rwm", n)]


def ebpf_allows(program, kind, major, minor, access):
    access_type = sum(BITS[letter] for letter in access) << 16 | TYPES[kind]
    return ebpf_vm.run(program, access_type, major, minor) == 1


def v1_allows(rules, kind, major, minor, access):
    kernel = V1Kernel()
    for filename, line in devices.v1_lines(rules):
        kernel.write(filename, line)
    return kernel.allows(kind, major, minor, access)


def random_rules(rng):
    rules = [DENY_ALL] if rng.random() < 0.7 else []
    for _ in range(rng.randint(0, 6)):
        access = "".join(c for c in "rwm" if rng.random() < 0.5) or "r"
        rules.append(Rule(rng.random() < 0.6, rng.choice("acb"), rng.choice((None, 1, 2)),
                          rng.choice((None, 3, 4)), access))
    return rules


def test_ebpf_program_matches_reference_semantics():
    rng = random.Random(20240607)
    for _ in range(250):
        rules = random_rules(rng)
        program = ebpf_vm.decode(devices.bpf_program(rules))
        for request in REQUESTS:
            assert ebpf_allows(program, *request) == reference(rules, *request), (rules, request)


def test_v1_lines_match_reference_semantics_or_refuse():
    rng = random.Random(7)
    refused = 0
    for _ in range(400):
        rules = random_rules(rng)
        try:
            devices.v1_lines(rules)
        except Unsupported:
            refused += 1
            continue
        for request in REQUESTS:
            assert v1_allows(rules, *request) == reference(rules, *request), (rules, request)
    assert refused < 200   # most lists are expressible


def test_default_rules_program():
    rules = devices.rules_for(
        [{"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"},
         {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}],
        [{"path": "/dev/ttyS0", "type": "c", "major": 4, "minor": 64},
         {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
         {"path": "/dev/fifo", "type": "p"}])
    program = devices.bpf_program(rules)
    for name, (major, minor) in {"null": (1, 3), "zero": (1, 5), "full": (1, 7),
                                 "random": (1, 8), "urandom": (1, 9), "tty": (5, 0),
                                 "ptmx": (5, 2), "pts/7": (136, 7)}.items():
        assert ebpf_allows(program, "c", major, minor, "rwm"), name
    assert ebpf_allows(program, "c", 10, 200, "rw")
    assert not ebpf_allows(program, "c", 10, 200, "m")
    assert ebpf_allows(program, "c", 4, 64, "rwm")
    assert ebpf_allows(program, "b", 8, 0, "rw")
    assert not ebpf_allows(program, "b", 8, 1, "r")
    assert not ebpf_allows(program, "c", 1, 1, "r")        # /dev/mem
    assert not ebpf_allows(program, "c", 7, 0, "m")        # mknod of anything else
    assert rules[0] == DENY_ALL
    assert rules[-2:] == [Rule(True, "c", 4, 64, "rwm"), Rule(True, "b", 8, 0, "rwm")]
    assert devices.v1_lines(rules)[:2] == [("devices.deny", "a"),
                                          ("devices.allow", "c 10:200 rw")]


def test_v1_lines_shapes():
    assert devices.v1_lines([DENY_ALL, Rule(True, "a", 1, None, "r")]) == [
        ("devices.deny", "a"), ("devices.allow", "c 1:* r"), ("devices.allow", "b 1:* r")]
    allow_all = Rule(True, "a", None, None, "rwm")
    assert devices.v1_lines([allow_all, Rule(False, "c", 1, 3, "w")]) == [
        ("devices.allow", "a"), ("devices.deny", "c 1:3 w")]
    # a later allow of an earlier denied device takes the deny back
    assert devices.v1_lines([allow_all, Rule(False, "c", 1, 3, "rw"),
                             Rule(True, "c", 1, 3, "w")]) == [
        ("devices.allow", "a"), ("devices.deny", "c 1:3 r")]
    # one exception must hold all bits of a request: overlapping allows get a merged line
    assert devices.v1_lines([DENY_ALL, Rule(True, "c", 1, None, "r"),
                             Rule(True, "c", 1, 3, "w")]) == [
        ("devices.deny", "a"), ("devices.allow", "c 1:* r"), ("devices.allow", "c 1:3 rw")]
    with pytest.raises(Unsupported, match=r"deny c 1:3 w takes part of the earlier rule for c 1"):
        devices.v1_lines([DENY_ALL, Rule(True, "c", 1, None, "rw"), Rule(False, "c", 1, 3, "w")])


def test_parse_rules_defaults_and_errors():
    assert devices.parse_rules(None) == []
    assert devices.parse_rules([{"allow": False}, {"allow": True, "type": "b", "major": -1,
                                                   "minor": 2, "access": "mwr"}]) == [
        DENY_ALL, Rule(True, "b", None, 2, "rwm")]
    for bad, match in [
        ([{"allow": "yes"}], r"devices\[0\]\.allow: must be true or false"),
        ([{"allow": True, "type": "x"}], r"devices\[0\]\.type"),
        ([{"allow": True, "major": 4096}],
         r"devices\[0\]\.major: must be an integer from 0 to 4095"),
        ([{"allow": True, "minor": "1"}], r"devices\[0\]\.minor"),
        ([{"allow": True, "access": "rx"}],
         r"devices\[0\]\.access: must be a non-empty combination"),
        ([{"allow": True, "access": ""}], r"devices\[0\]\.access"),
        ({"allow": True}, r"devices: must be a list"),
        (["x"], r"devices\[0\]: must be an object"),
    ]:
        with pytest.raises(ConfigError, match=r"config.json: linux\.resources\." + match):
            devices.parse_rules(bad)
    with pytest.raises(ConfigError, match=r"linux\.devices\[0\]\.minor: required"):
        devices.rules_for([], [{"path": "/dev/x", "type": "c", "major": 1}])
    with pytest.raises(ConfigError, match=r"linux\.devices\[0\]\.type"):
        devices.rules_for([], [{"path": "/dev/x", "type": "z", "major": 1, "minor": 1}])


def test_program_encoding():
    program = devices.bpf_program([DENY_ALL])
    assert len(program) % 8 == 0
    code, regs, off, imm = struct.unpack("<BBhi", program[:8])
    assert (code, regs, off, imm) == (0x61, 0x12, 0, 0)   # r2 = *(u32 *)(r1 + 0)
    big = devices.bpf_program([DENY_ALL], byteorder="big")
    assert struct.unpack(">BBhi", big[:8]) == (0x61, 0x21, 0, 0)
    assert ebpf_vm.run(big, 2 << 16 | 2, 1, 3, byteorder="big") == 0
    # rules before an allow-everything rule are overridden and left out
    shadowed = devices.bpf_program([Rule(False, "c", 1, 3, "r"), Rule(True, "a", None, None,
                                                                      "rwm")])
    assert len(shadowed) < len(devices.bpf_program([Rule(False, "c", 1, 3, "r"),
                                                    Rule(True, "a", None, None, "rw")]))
    assert ebpf_vm.run(shadowed, 2 << 16 | 2, 1, 3) == 1


def test_vm_refuses_what_the_verifier_would():
    exit_only = struct.pack("<BBhi", 0x95, 0, 0, 0)
    with pytest.raises(ebpf_vm.Refused, match="exit without setting r0"):
        ebpf_vm.run(exit_only, 0, 0, 0)
    bad_read = struct.pack("<BBhi", 0x61, 0x12, 12, 0) + struct.pack("<BBhi", 0xb7, 0, 0, 0) \
        + exit_only
    with pytest.raises(ebpf_vm.Refused, match="context read"):
        ebpf_vm.run(bad_read, 0, 0, 0)
    unset = struct.pack("<BBhi", 0xbf, 0x30, 0, 0) + exit_only
    with pytest.raises(ebpf_vm.Refused, match="r3 read before"):
        ebpf_vm.run(unset, 0, 0, 0)
    dead = struct.pack("<BBhi", 0xb7, 0, 0, 0) + exit_only + exit_only
    with pytest.raises(ebpf_vm.Refused, match="unreachable"):
        ebpf_vm.decode(dead)
