"""edgert-oci against real cgroups: linux.resources limits, OOM, pause/resume, cleanup.

Containers run on the shared busybox rootfs with the probe (tests/probe/probe.c) and get
cgroups below the test process's own in every hierarchy (no cgroupsPath). Host-side checks
read the container's cgroup files, found with the same layout code the runtime uses.
Detached containers write their stdio to a log file: a pipe would stay open in the
container's init and keep the runner waiting.
"""

import json
import os
import subprocess
import time

import pytest

from edgert.cgroup import fs
from edgert.cgroup.layout import resolve_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for containers and cgroups")

MIB = 1024 * 1024


# -- helpers -------------------------------------------------------------------------------------

def unique(name):
    """Container ids are also cgroup names, shared with concurrent sessions: make them ours."""
    return "%s-%d" % (name, os.getpid())


def layout():
    return fs.host_layout()


def cgroup_dirs(cid):
    """Hierarchy key -> the container's cgroup directory (v1 controllers, "" for cgroup2)."""
    lay = layout()
    return fs.Cgroup(lay, resolve_all(lay, None, cid)).dirs


def read(path):
    with open(path) as f:
        return f.read().strip()


def keyed(text):
    return dict(line.split(None, 1) for line in text.splitlines() if " " in line)


def proc_status(pid):
    fields = {}
    for line in read("/proc/%d/status" % pid).splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return fields


def probe_values(stdout):
    """The probe's key=value lines; a repeated key keeps its last value."""
    values = {}
    for line in stdout.decode(errors="replace").splitlines():
        key, eq, value = line.partition("=")
        if eq:
            values[key] = value
    return values


def with_resources(**sections):
    def edit(config):
        config["linux"]["resources"].update(sections)
    return edit


def wait_for(condition, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(0.02)


def run_detached(oci, bundle, cid, log, check=True):
    """`run --detach`; the container's stdout and stderr (and the runtime's) go to ``log``."""
    with open(log, "ab") as out:
        proc = subprocess.run([oci.binary, "--root", oci.root, "run", "--detach", "--bundle",
                               bundle, cid], stdout=out, stderr=subprocess.STDOUT, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError("run --detach %s exited %d: %s" % (cid, proc.returncode,
                                                                 read(log)))
    return proc


def status(oci, cid):
    return oci.state(cid)["status"]


def existing(dirs):
    return sorted(d for d in set(dirs.values()) if os.path.isdir(d))


def assert_nothing_left(oci, cid, dirs):
    assert existing(dirs) == [], "cgroup directories left behind"
    proc = oci("state", cid, check=False)
    assert proc.returncode != 0, "state still knows the container: %s" % proc.stdout
    assert not os.path.exists(os.path.join(oci.root, cid)), "state directory left behind"


def stderr_of(proc):
    return proc.stderr.decode(errors="replace")


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / "container.log")


# -- memory --------------------------------------------------------------------------------------

def test_memory_limits_read_back(oci, make_bundle, log):
    cid = unique("mem-limits")
    memory = {"limit": 64 * MIB, "reservation": 32 * MIB, "swappiness": 10}
    bundle = make_bundle(["/probe", "sleep", "30"], edit=with_resources(memory=memory))
    run_detached(oci, bundle, cid, log)
    memcg = cgroup_dirs(cid)["memory"]
    assert int(read(memcg + "/memory.limit_in_bytes")) == 64 * MIB
    assert int(read(memcg + "/memory.soft_limit_in_bytes")) == 32 * MIB
    assert int(read(memcg + "/memory.swappiness")) == 10
    assert int(keyed(read(memcg + "/memory.oom_control"))["oom_kill_disable"]) == 0
    oci("delete", "--force", cid)


def test_memory_swap_is_memsw(oci, make_bundle, log):
    cid = unique("mem-swap")
    if not os.path.exists(os.path.join(layout().v1.get("memory", "/nonexistent"),
                                       "memory.memsw.limit_in_bytes")):
        pytest.skip("the kernel has no swap accounting (memory.memsw.* missing)")
    memory = {"limit": 64 * MIB, "swap": 96 * MIB}
    bundle = make_bundle(["/probe", "sleep", "30"], edit=with_resources(memory=memory))
    run_detached(oci, bundle, cid, log)
    memcg = cgroup_dirs(cid)["memory"]
    assert int(read(memcg + "/memory.limit_in_bytes")) == 64 * MIB
    assert int(read(memcg + "/memory.memsw.limit_in_bytes")) == 96 * MIB
    oci("delete", "--force", cid)


def oom_limits(limit):
    """A memory limit the hog cannot escape through swap either."""
    memory = {"limit": limit}
    if os.path.exists(os.path.join(layout().v1.get("memory", "/nonexistent"),
                                   "memory.memsw.limit_in_bytes")):
        memory["swap"] = limit
    return memory


def test_pid_1_is_in_its_cgroups_and_its_cgroup_namespace_is_rooted_there(oci, make_bundle):
    """The cgroup namespace is made after the join, so inside every hierarchy reads "/";
    without one, pid 1 sees its full path in the container's cgroups."""
    cid = unique("cgns")
    bundle = make_bundle(["/bin/sh", "-c", "cat /proc/self/cgroup; cat /proc/1/cgroup"])
    proc = oci("run", "--bundle", bundle, cid)
    lines = proc.stdout.decode().split()
    assert lines and all(line.endswith(":/") for line in lines), lines
    no_ns = make_bundle(["/bin/sh", "-c", "cat /proc/1/cgroup"], edit=lambda config: config[
        "linux"].update(namespaces=[n for n in config["linux"]["namespaces"]
                                    if n["type"] != "cgroup"]))
    cid2 = unique("cg-no-ns")
    inside = oci("run", "--bundle", no_ns, cid2).stdout.decode().split()
    lay = layout()
    key, mount = ("memory", lay.v1["memory"]) if "memory" in lay.v1 else ("", lay.unified)
    directory = cgroup_dirs(cid2)[key]
    assert any(line.split(":")[1] == key and line.split(":", 2)[2] == directory[len(mount):]
               for line in inside), (inside, directory)


def test_memory_hog_is_oom_killed_in_the_foreground(oci, make_bundle):
    cid = unique("mem-oom-fg")
    bundle = make_bundle(["/probe", "memhog", "200"],
                         edit=with_resources(memory=oom_limits(64 * MIB)))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    assert proc.returncode == 137, (proc.returncode, stderr_of(proc))
    got = int(probe_values(proc.stdout).get("allocated_mb", 0))
    assert 1 <= got < 64, "the hog got %d MiB past a 64 MiB limit" % got
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def test_oom_kill_is_recorded_for_a_detached_container(oci, make_bundle, log):
    from edgert.runtime.container import Runtime
    cid = unique("mem-oom-bg")
    bundle = make_bundle(["/probe", "memhog", "200"],
                         edit=with_resources(memory=oom_limits(64 * MIB)))
    run_detached(oci, bundle, cid, log)
    wait_for(lambda: status(oci, cid) == "stopped", what="the hog to be killed")
    assert Runtime(oci.root).oom_kills(cid) >= 1
    memcg = cgroup_dirs(cid)["memory"]
    assert int(keyed(read(memcg + "/memory.oom_control"))["oom_kill"]) >= 1
    assert "memhog=ok" not in read(log)
    oci("delete", cid)
    assert existing(cgroup_dirs(cid)) == []


def test_no_oom_kill_is_recorded_for_a_healthy_container(oci, make_bundle, log):
    from edgert.runtime.container import Runtime
    cid = unique("mem-no-oom")
    bundle = make_bundle(["/probe", "memhog", "8"],
                         edit=with_resources(memory=oom_limits(64 * MIB)))
    run_detached(oci, bundle, cid, log)
    wait_for(lambda: status(oci, cid) == "stopped", what="the container to finish")
    assert "memhog=ok" in read(log)
    assert Runtime(oci.root).oom_kills(cid) == 0
    oci("delete", cid)


def test_disable_oom_killer_makes_the_hog_wait(oci, make_bundle, log):
    cid = unique("mem-oom-off")
    memory = dict(oom_limits(64 * MIB), disableOOMKiller=True)
    bundle = make_bundle(["/probe", "memhog", "200"], edit=with_resources(memory=memory))
    run_detached(oci, bundle, cid, log)
    memcg = cgroup_dirs(cid)["memory"]
    control = wait_for(lambda: (lambda c: c if c.get("under_oom") == "1" else None)(
        keyed(read(memcg + "/memory.oom_control"))), what="under_oom 1")
    assert control["oom_kill_disable"] == "1"
    time.sleep(0.3)
    assert status(oci, cid) == "running", "the hog died although the OOM killer is off"
    assert int(control.get("oom_kill", "0")) == 0
    oci("delete", "--force", cid, timeout=30)
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def test_memory_limit_below_minimum_is_a_clear_error(oci, make_bundle):
    cid = unique("mem-bad")
    bundle = make_bundle(["/probe", "true"], edit=with_resources(memory={"limit": "64M"}))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    assert proc.returncode != 0
    assert "linux.resources.memory.limit" in stderr_of(proc)
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


# -- pids ----------------------------------------------------------------------------------------

def test_pids_limit_stops_a_fork_bomb(oci, make_bundle):
    cid = unique("pids-fg")
    bundle = make_bundle(["/probe", "forkbomb", "100"], edit=with_resources(pids={"limit": 20}))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    values = probe_values(proc.stdout)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, stderr_of(proc))
    assert 0 < int(values["forks"]) < 20
    assert values["errno"] == "EAGAIN"
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def test_container_at_its_pids_limit_is_deletable(oci, make_bundle, log):
    cid = unique("pids-bg")
    bundle = make_bundle(["/probe", "forkbomb", "100", "60"],
                         edit=with_resources(pids={"limit": 20}))
    run_detached(oci, bundle, cid, log)
    pidcg = cgroup_dirs(cid)["pids"]
    assert read(pidcg + "/pids.max") == "20"
    wait_for(lambda: "forks=" in read(log), what="the fork bomb to report")
    assert int(read(pidcg + "/pids.current")) == 20
    assert int(read(pidcg + "/pids.events").split()[-1]) > 0   # "max N": forks refused
    oci("delete", "--force", cid)
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


# -- cpu -----------------------------------------------------------------------------------------

def test_cpu_quota_caps_a_spinner(oci, make_bundle):
    cid = unique("cpu-quota")
    bundle = make_bundle(["/probe", "spin", "2"],
                         edit=with_resources(cpu={"quota": 20000, "period": 100000}))
    proc = oci("run", "--bundle", bundle, cid)
    values = probe_values(proc.stdout)
    share = float(values["cpu"]) / float(values["wall"])
    assert 0.16 <= share <= 0.24, "the spinner used %.3f CPU under a 0.2 quota" % share


def test_cpu_idle_and_burst_read_back(oci, make_bundle, log):
    cpudir = layout().v1.get("cpu")
    if not cpudir or not all(os.path.exists(os.path.join(cpudir, n))
                             for n in ("cpu.idle", "cpu.cfs_burst_us")):
        pytest.skip("the kernel has no cpu.idle or cpu.cfs_burst_us")
    idle, burst = unique("cpu-idle"), unique("cpu-burst")
    run_detached(oci, make_bundle(["/probe", "sleep", "30"], edit=with_resources(
        cpu={"idle": 1})), idle, log)
    run_detached(oci, make_bundle(["/probe", "sleep", "30"], edit=with_resources(
        cpu={"quota": 20000, "burst": 10000})), burst, log)
    assert read(cgroup_dirs(idle)["cpu"] + "/cpu.idle") == "1"
    assert read(cgroup_dirs(burst)["cpu"] + "/cpu.cfs_quota_us") == "20000"
    assert read(cgroup_dirs(burst)["cpu"] + "/cpu.cfs_burst_us") == "10000"
    oci("delete", "--force", idle)
    oci("delete", "--force", burst)


def test_minus_one_means_unlimited(oci, make_bundle, log):
    cid = unique("unlimited")
    resources = {"memory": {"limit": -1}, "pids": {"limit": -1}, "cpu": {"quota": -1}}
    run_detached(oci, make_bundle(["/probe", "sleep", "30"], edit=with_resources(**resources)),
                 cid, log)
    dirs = cgroup_dirs(cid)
    assert int(read(dirs["memory"] + "/memory.limit_in_bytes")) >= 1 << 62
    assert read(dirs["pids"] + "/pids.max") == "max"
    assert read(dirs["cpu"] + "/cpu.cfs_quota_us") == "-1"
    oci("delete", "--force", cid)


def test_cpu_settings_read_back_and_cpuset_binds(oci, make_bundle, log):
    cid = unique("cpu-settings")
    cpu = {"shares": 512, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0"}
    bundle = make_bundle(["/probe", "sleep", "30"], edit=with_resources(cpu=cpu))
    run_detached(oci, bundle, cid, log)
    dirs = cgroup_dirs(cid)
    assert read(dirs["cpu"] + "/cpu.shares") == "512"
    assert read(dirs["cpu"] + "/cpu.cfs_quota_us") == "50000"
    assert read(dirs["cpu"] + "/cpu.cfs_period_us") == "200000"
    assert read(dirs["cpuset"] + "/cpuset.cpus") == "0"
    assert read(dirs["cpuset"] + "/cpuset.mems") == "0"
    pid = oci.state(cid)["pid"]
    assert proc_status(pid)["Cpus_allowed_list"] == "0"
    oci("delete", "--force", cid)


def test_cpuset_seen_from_inside(oci, make_bundle):
    cid = unique("cpuset-in")
    bundle = make_bundle(["/bin/sh", "-c", "grep Cpus_allowed_list /proc/self/status"],
                         edit=with_resources(cpu={"cpus": "0"}))
    proc = oci("run", "--bundle", bundle, cid)
    assert proc.stdout.decode().split() == ["Cpus_allowed_list:", "0"]


def test_cpuset_of_a_missing_cpu_fails_and_leaves_nothing(oci, make_bundle):
    cid = unique("cpuset-bad")
    bundle = make_bundle(["/probe", "true"], edit=with_resources(cpu={"cpus": "99"}))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    assert proc.returncode != 0
    message = stderr_of(proc)
    assert "cpuset.cpus" in message and "99" in message, message
    assert message.count("\n") == 1, "not a one-line error: %r" % message
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def test_cpu_realtime_fields_are_set_or_refused_clearly(oci, make_bundle, log):
    cid = unique("cpu-rt")
    cpudir = layout().v1.get("cpu")
    if not cpudir or not os.path.exists(cpudir + "/cpu.rt_runtime_us"):
        pytest.skip("the kernel has no RT group scheduling (cpu.rt_runtime_us missing)")
    cpu = {"realtimeRuntime": 10000, "realtimePeriod": 100000}
    bundle = make_bundle(["/probe", "sleep", "30"], edit=with_resources(cpu=cpu))
    proc = run_detached(oci, bundle, cid, log, check=False)
    if proc.returncode == 0:
        dirs = cgroup_dirs(cid)
        assert read(dirs["cpu"] + "/cpu.rt_runtime_us") == "10000"
        assert read(dirs["cpu"] + "/cpu.rt_period_us") == "100000"
        oci("delete", "--force", cid)
        return
    message = read(log)
    # the kernel says only EINVAL: the error must say which field, and that the budget comes
    # from the parent cgroup (here <own>/edgert, created by edgert with an RT runtime of 0)
    assert "realtimeRuntime" in message or "parent" in message, \
        "refused without naming the field or the cause: %s" % message
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


# -- block I/O, huge pages, unified --------------------------------------------------------------

def test_blkio_weight_is_set_or_refused_clearly(oci, make_bundle, log):
    cid = unique("blkio")
    lay = layout()
    blkio = lay.v1.get("blkio")
    if not blkio:
        pytest.skip("no v1 blkio hierarchy")
    bundle = make_bundle(["/probe", "sleep", "30"],
                         edit=with_resources(blockIO={"weight": 500}))
    proc = run_detached(oci, bundle, cid, log, check=False)
    if proc.returncode == 0:
        # the weight files exist only below the root cgroup: look in the container's
        blkio_dir = cgroup_dirs(cid)["blkio"]
        weights = [n for n in ("blkio.bfq.weight", "blkio.weight")
                   if os.path.exists(os.path.join(blkio_dir, n))]
        assert weights, "blockIO.weight accepted by a kernel without blkio weights"
        assert read(os.path.join(blkio_dir, weights[0])).split()[-1] == "500"
        oci("delete", "--force", cid)
        return
    message = read(log)
    assert "weight" in message, message
    assert "linux.resources.blockIO.weight" in message, \
        "the error does not name the config field: %s" % message
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def a_disk():
    """(major, minor) of a whole disk (throttling takes no partitions), or skip."""
    for name in sorted(os.listdir("/sys/block")):
        if not name.startswith(("loop", "ram", "zram", "dm-", "md")):
            major, minor = read("/sys/block/%s/dev" % name).split(":")
            return int(major), int(minor)
    pytest.skip("no disk in /sys/block to throttle")


def test_blkio_throttles_read_back(oci, make_bundle, log):
    if "blkio" not in layout().v1:
        pytest.skip("no v1 blkio hierarchy")
    cid = unique("blkio-throttle")
    major, minor = a_disk()
    device = {"major": major, "minor": minor}
    block_io = {"throttleReadBpsDevice": [dict(device, rate=1048576)],
                "throttleWriteIOPSDevice": [dict(device, rate=100)]}
    run_detached(oci, make_bundle(["/probe", "sleep", "30"],
                                  edit=with_resources(blockIO=block_io)), cid, log)
    blkio = cgroup_dirs(cid)["blkio"]
    assert read(blkio + "/blkio.throttle.read_bps_device") == "%d:%d 1048576" % (major, minor)
    assert read(blkio + "/blkio.throttle.write_iops_device") == "%d:%d 100" % (major, minor)
    oci("delete", "--force", cid)


def test_blkio_weight_device_is_set_or_refused_clearly(oci, make_bundle, log):
    if "blkio" not in layout().v1:
        pytest.skip("no v1 blkio hierarchy")
    cid = unique("blkio-wdev")
    major, minor = a_disk()
    block_io = {"weightDevice": [{"major": major, "minor": minor, "weight": 300}]}
    proc = run_detached(oci, make_bundle(["/probe", "sleep", "30"],
                                         edit=with_resources(blockIO=block_io)), cid, log,
                        check=False)
    if proc.returncode == 0:
        blkio = cgroup_dirs(cid)["blkio"]
        names = [n for n in ("blkio.bfq.weight_device", "blkio.weight_device")
                 if os.path.exists(os.path.join(blkio, n))]
        assert "%d:%d 300" % (major, minor) in read(os.path.join(blkio, names[0])).splitlines()
        oci("delete", "--force", cid)
        return
    # BFQ takes per-device weights only for disks it schedules, and only in *.weight_device
    message = read(log)
    assert "weight_device" in message or "weightDevice" in message, \
        "refused for the wrong reason: %s" % message
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def test_hugepage_limit_reads_back(oci, make_bundle, log):
    cid = unique("hugetlb")
    lay = layout()
    version = lay.version("hugetlb")
    if version is None:
        pytest.skip("no hugetlb controller")
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("no 2 MiB huge pages")
    limits = [{"pageSize": "2MB", "limit": 8 * MIB}]
    bundle = make_bundle(["/probe", "sleep", "30"], edit=with_resources(hugepageLimits=limits))
    proc = run_detached(oci, bundle, cid, log, check=False)
    if proc.returncode != 0 and "is not enabled in" in read(log):
        # edgert never enables a controller in a cgroup it did not make: the host decides
        pytest.skip("hugetlb is not delegated to our cgroup: %s" % read(log).strip())
    assert proc.returncode == 0, read(log)
    dirs = cgroup_dirs(cid)
    if version == 1:
        assert int(read(dirs["hugetlb"] + "/hugetlb.2MB.limit_in_bytes")) == 8 * MIB
    else:
        assert int(read(dirs[""] + "/hugetlb.2MB.max")) == 8 * MIB
    oci("delete", "--force", cid)
    assert existing(dirs) == []


@pytest.mark.parametrize("key", ["memory.high", "pids.max"])
def test_unified_key_of_a_v1_controller_is_a_clear_error(oci, make_bundle, key):
    if layout().mode != "hybrid":
        pytest.skip("needs a hybrid cgroup host")
    cid = unique("unified-v1")
    bundle = make_bundle(["/probe", "true"], edit=with_resources(unified={key: "100"}))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    assert proc.returncode != 0
    message = stderr_of(proc)
    assert "linux.resources.unified." + key in message, message
    assert "cgroup v1" in message, message
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def test_unified_key_of_a_missing_controller_is_a_clear_error(oci, make_bundle):
    lay = layout()
    if lay.mode != "hybrid" or "io" in lay.v2_controllers:
        pytest.skip("needs a hybrid cgroup host whose cgroup2 has no io controller")
    cid = unique("unified-io")
    bundle = make_bundle(["/probe", "true"], edit=with_resources(unified={"io.weight": "100"}))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    assert proc.returncode != 0
    assert "linux.resources.unified.io.weight" in stderr_of(proc), stderr_of(proc)
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def test_unified_cgroup_key_works_on_a_hybrid_host(oci, make_bundle, log):
    if layout().mode != "hybrid":
        pytest.skip("needs a hybrid cgroup host")
    cid = unique("unified-ok")
    bundle = make_bundle(["/probe", "sleep", "30"],
                         edit=with_resources(unified={"cgroup.max.depth": "2"}))
    run_detached(oci, bundle, cid, log)
    assert read(cgroup_dirs(cid)[""] + "/cgroup.max.depth") == "2"
    oci("delete", "--force", cid)


def test_memory_use_hierarchy_is_set_or_refused_clearly(oci, make_bundle, log):
    cid = unique("mem-hier")
    bundle = make_bundle(["/probe", "sleep", "30"],
                         edit=with_resources(memory={"useHierarchy": False}))
    proc = run_detached(oci, bundle, cid, log, check=False)
    if proc.returncode == 0:
        assert read(cgroup_dirs(cid)["memory"] + "/memory.use_hierarchy") == "0"
        oci("delete", "--force", cid)
        return
    message = read(log)
    # kernels since 5.16 accept only 1 (hierarchical accounting is always on)
    assert "useHierarchy" in message, "refused without naming the field: %s" % message
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


def test_net_cls_class_id_without_the_controller_is_a_clear_error(oci, make_bundle):
    if "net_cls" in layout().v1:
        pytest.skip("net_cls is mounted here")
    cid = unique("net-cls")
    bundle = make_bundle(["/probe", "true"],
                         edit=with_resources(network={"classID": 0x100001}))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    assert proc.returncode != 0
    assert "linux.resources.network.classID" in stderr_of(proc), stderr_of(proc)
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


# -- pause / resume ------------------------------------------------------------------------------

COUNTER = ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; /probe sleep 0.02; done"]


def test_pause_freezes_and_resume_thaws(oci, make_bundle, log):
    cid = unique("pause")
    run_detached(oci, make_bundle(COUNTER), cid, log)
    wait_for(lambda: os.path.getsize(log) > 0, what="the counter to start")
    oci("pause", cid)
    assert status(oci, cid) == "paused"
    freezer = cgroup_dirs(cid)["freezer"]
    assert read(freezer + "/freezer.state") == "FROZEN"
    size = os.path.getsize(log)
    time.sleep(0.5)
    assert os.path.getsize(log) == size, "the counter went on while paused"
    assert [c["status"] for c in json.loads(oci("list", "--format", "json").stdout)] \
        == ["paused"]
    proc = oci("pause", cid, check=False)
    assert proc.returncode != 0 and "not running" in stderr_of(proc)
    oci("resume", cid)
    assert status(oci, cid) == "running"
    assert read(freezer + "/freezer.state") == "THAWED"
    wait_for(lambda: os.path.getsize(log) > size, what="the counter to go on")
    proc = oci("resume", cid, check=False)
    assert proc.returncode != 0 and "not paused" in stderr_of(proc)
    oci("delete", "--force", cid)


def test_pause_of_a_stopped_container_is_a_clear_error(oci, make_bundle, log):
    cid = unique("pause-stopped")
    run_detached(oci, make_bundle(["/probe", "true"]), cid, log)
    wait_for(lambda: status(oci, cid) == "stopped", what="the container to exit")
    proc = oci("pause", cid, check=False)
    assert proc.returncode != 0
    message = stderr_of(proc)
    assert cid in message and "not running" in message, message
    assert read(cgroup_dirs(cid)["freezer"] + "/freezer.state") == "THAWED"
    oci("delete", cid)


def test_delete_force_of_a_paused_container(oci, make_bundle, log):
    cid = unique("pause-delete")
    run_detached(oci, make_bundle(COUNTER), cid, log)
    pid = oci.state(cid)["pid"]
    oci("pause", cid)
    proc = oci("delete", cid, check=False)
    assert proc.returncode != 0 and "paused" in stderr_of(proc)
    oci("delete", "--force", cid)
    assert not os.path.exists("/proc/%d/status" % pid) or \
        "zombie" in read("/proc/%d/status" % pid)
    assert_nothing_left(oci, cid, cgroup_dirs(cid))


# -- kill --all and cleanup ----------------------------------------------------------------------

SLEEPERS = ["/bin/sh", "-c", "/probe sleep 60 & /probe sleep 60 & /probe sleep 60 & wait"]


def members(directory):
    return [int(p) for p in read(directory + "/cgroup.procs").split()]


def test_kill_all_kills_every_process_in_the_cgroup(oci, make_bundle, log):
    cid = unique("kill-all")
    run_detached(oci, make_bundle(SLEEPERS), cid, log)
    dirs = cgroup_dirs(cid)
    wait_for(lambda: len(members(dirs["pids"])) == 5, what="init, sh and three sleepers")
    assert sorted(json.loads(oci("ps", "--format", "json", cid).stdout)) \
        == sorted(members(dirs["pids"]))
    oci("kill", "--all", cid, "KILL")
    for key, directory in sorted(dirs.items()):
        wait_for(lambda: members(directory) == [], what="an empty cgroup in %r" % key)
    wait_for(lambda: status(oci, cid) == "stopped", what="the container to stop")
    oci("delete", cid)
    assert_nothing_left(oci, cid, dirs)


def test_kill_all_with_term_reaches_every_process(oci, make_bundle, log):
    cid = unique("kill-all-term")
    run_detached(oci, make_bundle(SLEEPERS), cid, log)
    dirs = cgroup_dirs(cid)
    wait_for(lambda: len(members(dirs["pids"])) == 5, what="init, sh and three sleepers")
    oci("kill", "--all", cid, "TERM")
    wait_for(lambda: members(dirs["pids"]) == [], what="every process to take SIGTERM")
    oci("delete", cid)
    assert_nothing_left(oci, cid, dirs)


def test_delete_removes_every_cgroup_it_created(oci, make_bundle, log):
    cid = unique("cleanup")
    resources = {"memory": {"limit": 64 * MIB}, "cpu": {"shares": 256}, "pids": {"limit": 50}}
    run_detached(oci, make_bundle(["/probe", "sleep", "30"], edit=with_resources(**resources)),
                 cid, log)
    dirs = cgroup_dirs(cid)
    lay = layout()
    assert set(dirs) == set(lay.hierarchies())
    if lay.unified:
        assert "" in dirs, "no cgroup in the cgroup2 hierarchy"
    assert existing(dirs) == sorted(set(dirs.values())), "a hierarchy has no container cgroup"
    pid = oci.state(cid)["pid"]
    own = read("/proc/%d/cgroup" % pid)
    for line in own.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers.startswith("name="):
            continue   # named hierarchies hold no controller: edgert makes no cgroup there
        assert path.endswith("/edgert/" + cid), \
            "pid 1 is not in the container's cgroup: %s" % line
    # a cgroup the workload made below its own must not keep delete from cleaning up
    nested = os.path.join(dirs["memory"], "nested")
    os.mkdir(nested)
    oci("delete", "--force", cid)
    assert not os.path.exists(nested)
    assert_nothing_left(oci, cid, dirs)


def force_cleanup(dirs):
    """Kills by pid what is left in a container's cgroups and removes them (test cleanup when
    the runtime did not)."""
    for directory in set(dirs.values()):
        state = os.path.join(directory, "freezer.state")
        if os.path.exists(state):
            with open(state, "w") as f:
                f.write("THAWED")
    for directory in set(dirs.values()):
        if os.path.isdir(directory):
            for pid in members(directory):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
    for directory in set(dirs.values()):
        try:
            wait_for(lambda: not os.path.isdir(directory) or not members(directory), 5)
            os.rmdir(directory)
        except (FileNotFoundError, AssertionError):
            pass
    # the runtime's "edgert" parent, where it lies in a cgroup only this session uses
    lay = layout()
    mounts = lay.hierarchies()
    for key, directory in dirs.items():
        own = lay.own.get(key, "/")
        if own != "/":
            parent = os.path.dirname(directory)
            if parent.startswith(os.path.join(mounts[key], own.strip("/")) + "/"):
                try:
                    os.rmdir(parent)
                except OSError:
                    pass   # still holds other cgroups


def test_delete_without_a_pid_namespace_kills_what_init_left(oci, make_bundle):
    cid = unique("no-pidns")

    def edit(config):
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                         if ns["type"] != "pid"]
    # the sleeper outlives init: without a pid namespace the kernel does not kill it
    bundle = make_bundle(["/bin/sh", "-c", "/probe sleep 60 </dev/null >/dev/null 2>&1 &"],
                         edit=edit)
    dirs = cgroup_dirs(cid)
    try:
        proc = oci("run", "--bundle", bundle, cid, check=False)
        assert proc.returncode == 0, stderr_of(proc)
        left = sorted({pid for d in existing(dirs) for pid in members(d)})
        assert left == [], "processes left running after delete: %s" % left
        assert stderr_of(proc) == ""
        assert_nothing_left(oci, cid, dirs)
    finally:
        force_cleanup(dirs)


def test_invalid_resources_create_nothing(oci, make_bundle):
    cid = unique("invalid")
    bundle = make_bundle(["/probe", "true"], edit=with_resources(pids={"limit": "many"}))
    proc = oci("create", "--bundle", bundle, cid, check=False)
    assert proc.returncode != 0
    assert "linux.resources.pids.limit" in stderr_of(proc), stderr_of(proc)
    assert_nothing_left(oci, cid, cgroup_dirs(cid))
