"""The cgroup edge against temporary directories standing in for cgroupfs mounts.

FakeCgroup plays the kernel's part: mkdir fills a new cgroup with its interface files, and a few
writes have their side effects (cgroup.freeze updates cgroup.events).
"""

import errno
import os
import signal
import subprocess
import sys
import time
import types

import pytest

import edgert
from edgert.cgroup import devices, fs
from edgert.cgroup.devices import DENY_ALL, Rule
from edgert.cgroup.layout import detect, resolve_all
from edgert.cgroup.plan import Write, plan
from edgert.errors import StateError, Unsupported

V1_FILES = {
    "cpuset": {"cpuset.cpus": "", "cpuset.mems": ""},
    "memory": {"memory.limit_in_bytes": "9223372036854771712\n", "memory.usage_in_bytes": "0\n",
               "memory.max_usage_in_bytes": "0\n",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"},
    "freezer": {"freezer.state": "THAWED\n"},
    "pids": {"pids.max": "max\n", "pids.current": "0\n"},
    "cpuacct": {"cpuacct.usage": "0\n"},
    "devices": {"devices.allow": "", "devices.deny": ""},
}
V2_FILES = {"cgroup.subtree_control": "", "cgroup.freeze": "0\n",
            "cgroup.events": "populated 0\nfrozen 0\n", "cgroup.kill": "",
            "cpu.stat": "usage_usec 0\n", "memory.max": "max\n", "pids.max": "max\n"}


def fill(directory, names):
    for name, content in names.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(content)


class FakeCgroup(fs.Cgroup):
    def __init__(self, layout, path):
        super().__init__(layout, path)
        self.written = []

    def _mkdir(self, path):
        super()._mkdir(path)
        names = {"cgroup.procs": ""}
        for key, mount in self.layout.hierarchies().items():
            if path.startswith(mount + "/"):
                names.update(V2_FILES if key == "" else V1_FILES.get(key, {}))
        fill(path, names)

    def _rmdir_once(self, directory):
        if any(entry.is_dir() for entry in os.scandir(directory)):
            raise OSError(errno.EBUSY, "Device or resource busy", directory)
        for entry in os.scandir(directory):
            os.unlink(entry.path)
        super()._rmdir_once(directory)

    def _write(self, path, value):
        super()._write(path, value)
        self.written.append((os.path.relpath(path, ROOT[0]), value))
        if os.path.basename(path) == "cgroup.freeze":
            fill(os.path.dirname(path), {"cgroup.events": f"populated 1\nfrozen {value}\n"})


ROOT = [None]   # the temp root of the current test, for short names in FakeCgroup.written


def make_layout(root, v1=True, unified=True):
    ROOT[0] = str(root)
    lines, memberships = [], []
    if v1:
        for n, mount in enumerate(("cpu,cpuacct", "cpuset", "memory", "pids", "freezer",
                                   "devices")):
            directory = root / mount
            directory.mkdir()
            names = {"cgroup.procs": ""}
            for controller in mount.split(","):
                names.update(V1_FILES.get(controller, {}))
            names.update({"cpuset.cpus": "0-1\n", "cpuset.mems": "0\n"} if mount == "cpuset"
                         else {})
            fill(directory, names)
            lines.append(f"{30 + n} 20 0:{40 + n} / {directory} rw - cgroup cgroup rw,{mount}")
            memberships.append(f"{n + 1}:{mount}:{'/own' if mount == 'memory' else '/'}")
        (root / "memory" / "own").mkdir()
    if unified:
        directory = root / "unified"
        directory.mkdir()
        fill(directory, {"cgroup.procs": "", "cgroup.subtree_control": "",
                         "cgroup.controllers": "memory pids\n"})
        lines.append(f"50 20 0:60 / {directory} rw - cgroup2 cgroup2 rw")
        memberships.append("0::/")
    return detect("\n".join(lines) + "\n", "\n".join(memberships) + "\n",
                  [] if v1 else ["memory", "pids", "cpu"])


def read(path):
    with open(path) as f:
        return f.read()


@pytest.fixture
def hybrid(tmp_path):
    layout = make_layout(tmp_path)
    return FakeCgroup(layout, resolve_all(layout, None, "web")), tmp_path


@pytest.fixture
def v2(tmp_path):
    layout = make_layout(tmp_path, v1=False)
    return FakeCgroup(layout, resolve_all(layout, None, "web")), tmp_path


def test_create_in_every_hierarchy_parents_first(hybrid):
    cgroup, root = hybrid
    created = cgroup.create()
    assert [os.path.relpath(d, root) for d in created] == [
        "cpu,cpuacct/edgert", "cpu,cpuacct/edgert/web",
        "cpuset/edgert", "cpuset/edgert/web",
        "memory/own/edgert", "memory/own/edgert/web",
        "pids/edgert", "pids/edgert/web",
        "freezer/edgert", "freezer/edgert/web",
        "devices/edgert", "devices/edgert/web",
        "unified/edgert", "unified/edgert/web",
    ]
    assert cgroup.dirs["cpu"] == cgroup.dirs["cpuacct"] == str(root / "cpu,cpuacct/edgert/web")
    assert cgroup.exists()
    # a new v1 cpuset inherits its parent's cpus and mems, or no task could join it
    assert read(root / "cpuset/edgert/web/cpuset.cpus") == "0-1"
    assert read(root / "cpuset/edgert/web/cpuset.mems") == "0"
    assert cgroup.create() == []   # all there already


def test_create_undoes_itself_on_failure(hybrid, monkeypatch):
    cgroup, root = hybrid
    original = FakeCgroup._mkdir

    def failing(self, path):
        if path.startswith(str(root / "pids")):
            raise OSError(errno.ENOSPC, "mkdir cgroup: No space left on device", path)
        original(self, path)

    monkeypatch.setattr(FakeCgroup, "_mkdir", failing)
    with pytest.raises(OSError, match="No space left"):
        cgroup.create()
    assert not (root / "memory/own/edgert").exists()
    assert not (root / "cpuset/edgert").exists()


@pytest.mark.parametrize("err", [errno.ENOENT, errno.ENODEV])
def test_create_walks_again_when_a_shared_parent_goes(hybrid, monkeypatch, err):
    """Another container's delete removed <own>/edgert between our steps: the kernel says
    ENOENT, or ENODEV while the parent is dying (reading its cpuset, a mkdir in it)."""
    cgroup, root = hybrid
    original = fs._read
    failed = []

    def dying_parent(path):
        if path.endswith("cpuset/edgert/cpuset.cpus") and not failed:
            failed.append(path)
            raise OSError(err, "read cpuset.cpus: %s" % os.strerror(err), path)
        return original(path)

    monkeypatch.setattr(fs, "_read", dying_parent)
    cgroup.create()
    assert failed
    assert read(root / "cpuset/edgert/web/cpuset.cpus") == "0-1"


def test_create_gives_up_on_a_parent_that_keeps_dying(hybrid, monkeypatch):
    cgroup, root = hybrid

    def dying(path):
        raise OSError(errno.ENODEV, "read cpuset.cpus: No such device", path)

    monkeypatch.setattr(fs, "_read", dying)
    with pytest.raises(OSError, match="read cpuset.cpus: No such device"):
        cgroup.create()
    assert not (root / "cpuset/edgert").exists()


def test_apply_writes_and_reads_back(hybrid):
    cgroup, root = hybrid
    cgroup.create()
    cgroup.apply(plan({"memory": {"limit": 1 << 20}, "pids": {"limit": 7},
                       "cpu": {"cpus": "1"}}, cgroup.layout))
    leaf = "edgert/web"
    assert read(root / "memory/own" / leaf / "memory.limit_in_bytes") == str(1 << 20)
    assert read(root / "pids" / leaf / "pids.max") == "7"
    assert read(root / "cpuset" / leaf / "cpuset.cpus") == "1"
    assert cgroup.stats() == {"memory_usage": 0, "memory_max_usage": 0,
                              "memory_limit": 1 << 20, "cpu_usage_ns": 0,
                              "pids_current": 0, "pids_limit": 7}


def test_apply_check_before_update(hybrid):
    cgroup, root = hybrid
    cgroup.create()
    fill(root / "memory/own/edgert/web", {"memory.usage_in_bytes": "5000\n"})
    cgroup.apply([Write("memory", "memory.usage_in_bytes", "6000", True)])
    with pytest.raises(StateError, match="usage 5000 is above the new limit 4000"):
        cgroup.apply(plan({"memory": {"limit": 4000, "checkBeforeUpdate": True}}, cgroup.layout))
    assert read(root / "memory/own/edgert/web/memory.limit_in_bytes").startswith("922")


def test_write_errors_name_file_value_and_meaning(hybrid):
    cgroup, root = hybrid
    cgroup.create()
    with pytest.raises(OSError) as info:
        cgroup.apply([Write("memory", "memory.memsw.limit_in_bytes", "100")])
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(root / "memory/own/edgert/web/memory.memsw.limit_in_bytes")
    assert ("write '100' to memory.memsw.limit_in_bytes: No such file or directory"
            in str(info.value))
    assert "controller or feature is missing" in str(info.value)
    assert "subset" not in fs._hint("/x/cpuset.cpus", errno.EINVAL)
    assert "parent cgroup's cpuset" in fs._hint("/x/cpuset.cpus", errno.EINVAL)
    assert "holds processes" in fs._hint("/x/cgroup.subtree_control", errno.EBUSY)


def test_v2_enables_controllers_only_in_cgroups_edgert_made(v2):
    cgroup, root = v2
    fill(root / "unified", {"cgroup.subtree_control": "memory pids\n"})  # delegated to us
    cgroup.create()
    cgroup.apply(plan({"memory": {"limit": -1}, "pids": {"limit": 3}}, cgroup.layout))
    assert read(root / "unified/edgert/web/memory.max") == "max"
    enabling = [entry for entry in cgroup.written if "subtree_control" in entry[0]]
    assert enabling == [("unified/edgert/cgroup.subtree_control", "+memory"),
                        ("unified/edgert/cgroup.subtree_control", "+pids")]
    fill(root / "unified/edgert", {"cgroup.subtree_control": "memory pids\n"})
    cgroup.written.clear()
    cgroup.apply(plan({"pids": {"limit": 4}}, cgroup.layout))
    assert cgroup.written == [("unified/edgert/web/pids.max", "4")]


def test_v2_never_enables_a_controller_in_a_cgroup_it_did_not_make(v2):
    cgroup, root = v2
    cgroup.create()
    with pytest.raises(Unsupported, match="pids is not enabled in .*unified/cgroup.subtree_control"):
        cgroup.apply(plan({"pids": {"limit": 3}}, cgroup.layout))
    assert not [e for e in cgroup.written if "subtree_control" in e[0]]


def test_add_pid_to_each_distinct_directory(hybrid):
    cgroup, root = hybrid
    cgroup.create()
    cgroup.add_pid(4242)
    procs = sorted(path for path, value in cgroup.written if value == "4242")
    assert procs == sorted(f"{d}/edgert/web/cgroup.procs" for d in
                           ("cpu,cpuacct", "cpuset", "memory/own", "pids", "freezer", "devices",
                            "unified"))


def test_set_devices_v1_lines(hybrid):
    cgroup, _ = hybrid
    cgroup.create()
    cgroup.written.clear()
    cgroup.set_devices([DENY_ALL, Rule(True, "c", 1, 3, "rwm")])
    assert cgroup.written == [("devices/edgert/web/devices.deny", "a"),
                              ("devices/edgert/web/devices.allow", "c 1:3 rwm")]


class FakeNative:
    """Records the eBPF calls; fds are real so the caller may close them."""

    def __init__(self, attached=()):
        self.calls = []
        self.attached = list(attached)

    def _fd(self):
        return os.open(os.devnull, os.O_RDONLY)

    def bpf_prog_load(self, prog_type, insns, license="GPL", expected_attach_type=0):
        self.calls.append(("load", prog_type, len(insns), license))
        return self._fd()

    def bpf_prog_query(self, target_fd, attach_type):
        self.calls.append(("query", attach_type))
        return list(self.attached)

    def bpf_prog_attach(self, target_fd, prog_fd, attach_type, flags=0):
        self.calls.append(("attach", attach_type, flags))

    def bpf_prog_get_fd_by_id(self, prog_id):
        self.calls.append(("get", prog_id))
        return self._fd()

    def bpf_prog_detach2(self, target_fd, prog_fd, attach_type):
        self.calls.append(("detach", attach_type))


def test_set_devices_v2_attaches_then_replaces(v2, monkeypatch):
    cgroup, _ = v2
    cgroup.create()
    fake = FakeNative(attached=[17])
    monkeypatch.setattr(edgert, "native", types.SimpleNamespace(
        **{name: getattr(fake, name) for name in dir(fake) if name.startswith("bpf_")}),
        raising=False)
    rules = [DENY_ALL, Rule(True, "c", 1, 3, "rwm")]
    before = os.listdir("/proc/self/fd")
    cgroup.set_devices(rules)
    assert os.listdir("/proc/self/fd") == before   # every fd closed again
    insns = len(devices.bpf_program(rules))
    assert fake.calls == [("load", 15, insns, "GPL"), ("query", 6), ("attach", 6, 2),
                          ("get", 17), ("detach", 6)]


def test_set_devices_without_any_device_control(tmp_path):
    layout = make_layout(tmp_path, unified=False)
    layout.v1.pop("devices")
    cgroup = FakeCgroup(layout, "/x")
    with pytest.raises(Unsupported, match="device rules cannot be enforced"):
        cgroup.set_devices([DENY_ALL])


def test_v1_freeze_thaw_state(hybrid):
    cgroup, root = hybrid
    cgroup.create()
    assert cgroup.state() == "thawed"
    cgroup.freeze()
    assert read(root / "freezer/edgert/web/freezer.state") == "FROZEN"
    assert cgroup.state() == "frozen"
    cgroup.thaw()
    assert cgroup.state() == "thawed"


def test_v1_freeze_gives_up_and_thaws(hybrid, monkeypatch):
    cgroup, root = hybrid
    cgroup.create()
    original = FakeCgroup._write

    def stuck(self, path, value):
        original(self, path, "FREEZING" if value == "FROZEN" else value)

    monkeypatch.setattr(FakeCgroup, "_write", stuck)
    with pytest.raises(StateError, match="not frozen after 0.05 s.*thawed it again"):
        cgroup.freeze(timeout=0.05)
    assert read(root / "freezer/edgert/web/freezer.state") == "THAWED"


def test_v2_freeze_thaw_state(v2):
    cgroup, root = v2
    cgroup.create()
    cgroup.freeze()
    assert read(root / "unified/edgert/web/cgroup.freeze") == "1"
    assert cgroup.state() == "frozen"
    cgroup.thaw()
    assert cgroup.state() == "thawed"


def test_pids_include_nested_cgroups(hybrid):
    cgroup, root = hybrid
    cgroup.create()
    leaf = root / "freezer/edgert/web"
    fill(leaf, {"cgroup.procs": "10\n12\n"})
    (leaf / "inner").mkdir()
    fill(leaf / "inner", {"cgroup.procs": "11\n12\n"})
    assert cgroup.pids() == [10, 11, 12]


@pytest.fixture
def sleepers():
    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
                for _ in range(2)]
    yield children
    for child in children:
        child.kill()
        child.wait()


def test_kill_all_freezes_signals_thaws(hybrid, sleepers):
    cgroup, root = hybrid
    cgroup.create()
    fill(root / "freezer/edgert/web", {"cgroup.procs": "".join(f"{c.pid}\n" for c in sleepers)})
    cgroup.kill_all(signal.SIGTERM)
    assert [c.wait(timeout=10) for c in sleepers] == [-signal.SIGTERM] * 2
    states = [value for path, value in cgroup.written if path.endswith("freezer.state")]
    assert states == ["FROZEN", "THAWED"]


def test_kill_all_keeps_a_paused_container_paused(hybrid, sleepers):
    cgroup, root = hybrid
    cgroup.create()
    fill(root / "freezer/edgert/web", {"cgroup.procs": f"{sleepers[0].pid}\n999999999\n"})
    cgroup.freeze()
    cgroup.kill_all(signal.SIGTERM)
    assert sleepers[0].wait(timeout=10) == -signal.SIGTERM   # a real process is not frozen
    assert cgroup.state() == "frozen"


def test_kill_all_sigkill_uses_cgroup_kill_on_v2(v2):
    cgroup, root = v2
    cgroup.create()
    fill(root / "unified/edgert/web", {"cgroup.procs": "999999999\n"})
    cgroup.kill_all(signal.SIGKILL)
    assert cgroup.written == [("unified/edgert/web/cgroup.kill", "1")]


def test_kill_all_sigkill_thaws_a_v1_frozen_hybrid_cgroup(hybrid):
    cgroup, root = hybrid
    cgroup.create()
    cgroup.freeze()
    cgroup.written.clear()
    cgroup.kill_all(signal.SIGKILL)
    assert cgroup.written == [("unified/edgert/web/cgroup.kill", "1"),
                              ("freezer/edgert/web/freezer.state", "THAWED")]


def test_oom_kills_v1_counts_nested_cgroups(hybrid):
    cgroup, root = hybrid
    cgroup.create()
    leaf = root / "memory/own/edgert/web"
    fill(leaf, {"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"})
    (leaf / "inner").mkdir()
    fill(leaf / "inner", {"memory.oom_control": "oom_kill 1\n"})
    assert cgroup.oom_kills() == 3


def test_oom_kills_v2(v2):
    cgroup2, root2 = v2
    cgroup2.create()
    assert cgroup2.oom_kills() == 0   # memory controller not enabled: no memory.events
    fill(root2 / "unified/edgert/web", {"memory.events": "low 0\nhigh 0\nmax 4\noom 2\n"
                                                         "oom_kill 2\noom_group_kill 0\n"})
    assert cgroup2.oom_kills() == 2


def test_stats_on_v2(v2):
    cgroup, root = v2
    cgroup.create()
    fill(root / "unified/edgert/web", {"memory.current": "4096\n", "memory.max": "max\n",
                                       "pids.current": "3\n", "pids.max": "10\n",
                                       "cpu.stat": "usage_usec 1500\nuser_usec 1000\n"})
    assert cgroup.stats() == {"memory_usage": 4096, "memory_limit": None, "cpu_usage_ns": 1500000,
                              "pids_current": 3, "pids_limit": 10}


def test_remove_only_created_dirs(tmp_path):
    layout = make_layout(tmp_path)
    (tmp_path / "pids/edgert").mkdir()   # made earlier, e.g. by another container
    other = FakeCgroup(layout, resolve_all(layout, None, "other"))
    other_created = other.create()
    assert str(tmp_path / "pids/edgert") not in other_created
    web = FakeCgroup(layout, resolve_all(layout, None, "web"))
    created = web.create()
    assert str(tmp_path / "memory/own/edgert") not in created   # other made it
    nested = tmp_path / "unified/edgert/web/inner/deeper"
    nested.mkdir(parents=True)
    web.remove(created)
    assert not web.exists()
    assert not nested.exists() and not (tmp_path / "unified/edgert/web").exists()
    assert other.exists()
    other.remove(other_created)
    assert not (tmp_path / "memory/own/edgert").exists()
    assert (tmp_path / "pids/edgert").exists()          # not ours to remove
    assert (tmp_path / "memory/own").exists()
    other.remove(other_created)                          # already gone: fine


def test_remove_retries_while_busy(hybrid, monkeypatch):
    cgroup, _ = hybrid
    created = cgroup.create()
    busy = {cgroup.dirs["pids"]: 2}
    real_rmdir = os.rmdir

    def rmdir(path):
        if busy.get(path):
            busy[path] -= 1
            raise OSError(errno.EBUSY, "busy", path)
        real_rmdir(path)

    monkeypatch.setattr(os, "rmdir", rmdir)
    cgroup.remove(created)
    assert not os.path.exists(cgroup.dirs["pids"])
    created = cgroup.create()
    busy[cgroup.dirs["pids"]] = 10 ** 6
    start = time.monotonic()
    with pytest.raises(OSError, match="processes or child cgroups are still in it"):
        cgroup.remove(created, timeout=0.05)
    assert time.monotonic() - start < 2


def test_host_layout_reads_this_machine():
    found = fs.host_layout()
    assert found.mode in ("v1", "v2", "hybrid")
    if found.unified:
        assert found.v2_controllers == set(read(os.path.join(found.unified,
                                                             "cgroup.controllers")).split())
    assert all(path.startswith("/") for path in found.own.values())
