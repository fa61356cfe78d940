"""Real cgroups on this host, below the test process's own cgroups only (root needed).

Each test makes <own>/edgert-test/<name> in every hierarchy, moves forked children there (they
wait on a pipe until told to act), checks what the kernel enforces, and in finally blocks kills
its own children by pid and removes exactly the directories it made.
"""

import errno
import importlib
import itertools
import os
import shutil
import signal
import stat
import time

import pytest

from edgert.cgroup import fs
from edgert.cgroup.devices import DENY_ALL, Rule
from edgert.cgroup.layout import Layout, resolve, resolve_all
from edgert.cgroup.plan import plan

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create cgroups")

_names = itertools.count()
PARENT = "edgert-test"


class Child:
    """A forked child that blocks on a pipe until go(), then runs action() and exits with its
    return value (98: told to stop, 99: action raised)."""

    def __init__(self, action=lambda: 0):
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                os.close(go_write)
                code = action() if os.read(go_read, 1) == b"g" else 98
            finally:
                os._exit(code)
        os.close(go_read)
        self.pid = pid
        self._go = go_write
        self.status = None

    def go(self):
        os.write(self._go, b"g")

    def wait(self, timeout=20):
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = status
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"child {self.pid} still running after {timeout} s")
            time.sleep(0.01)
        os.close(self._go)
        return self.status

    def reap(self):
        """Kills the child if it still runs and collects it."""
        if self.status is not None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()


@pytest.fixture
def make_cgroup():
    """Creates cgroups below this process's own ones; cleans up children and directories."""
    made = []

    def make(layout=None, path=None):
        layout = layout or fs.host_layout()
        name = f"t{os.getpid()}-{next(_names)}"
        cgroup = fs.Cgroup(layout, path(layout, name) if path else
                           resolve_all(layout, None, name, parent=PARENT))
        created = cgroup.create()
        children = []
        made.append((cgroup, created, children))
        return cgroup, children

    yield make
    for cgroup, created, children in reversed(made):
        try:
            if cgroup.exists() and cgroup.state() == "frozen":
                cgroup.thaw()   # a v1-frozen child would not die of SIGKILL
        finally:
            for child in children:
                child.reap()
            cgroup.remove(created)
            assert not cgroup.exists()


def v1_host():
    layout = fs.host_layout()
    if layout.mode == "v2":
        pytest.skip("needs cgroup v1 controllers; this host is cgroup v2 only")
    return layout


def spawn(cgroup, children, action=lambda: 0):
    child = Child(action)
    children.append(child)
    cgroup.add_pid(child.pid)
    return child


def read(path):
    with open(path) as f:
        return f.read().strip()


def test_limits_membership_and_stats(make_cgroup):
    layout = v1_host()
    for controller in ("memory", "pids"):
        if layout.version(controller) is None:
            pytest.skip(f"needs the {controller} controller")
    cgroup, children = make_cgroup(layout)
    cgroup.apply(plan({"memory": {"limit": 64 << 20}, "pids": {"limit": 16}}, layout))
    child = spawn(cgroup, children)
    memory_dir = cgroup.dirs[layout.key("memory")]
    assert memory_dir.startswith(layout.hierarchies()[layout.key("memory")]
                                 + layout.own[layout.key("memory")])
    if layout.version("memory") == 1:
        assert int(read(os.path.join(memory_dir, "memory.limit_in_bytes"))) == 64 << 20
    assert read(os.path.join(cgroup.dirs[layout.key("pids")], "pids.max")) == "16"
    with open(f"/proc/{child.pid}/cgroup") as f:
        membership = f.read()
    assert f"{PARENT}/t" in membership
    assert cgroup.pids() == [child.pid]
    stats = cgroup.stats()
    assert stats["memory_limit"] == 64 << 20
    assert stats["pids_limit"] == 16 and stats["pids_current"] == 1
    assert stats["memory_usage"] >= 0   # charges made before the move stay behind on v1


def test_freeze_thaw_and_kill_all(make_cgroup):
    layout = v1_host()
    cgroup, children = make_cgroup(layout)
    first = spawn(cgroup, children)
    second = spawn(cgroup, children)
    assert cgroup.state() == "thawed"
    cgroup.freeze()
    assert cgroup.state() == "frozen"
    if "freezer" in layout.v1:
        assert read(os.path.join(cgroup.dirs["freezer"], "freezer.state")) == "FROZEN"
    cgroup.thaw()
    assert cgroup.state() == "thawed"
    assert cgroup.pids() == sorted([first.pid, second.pid])
    cgroup.kill_all(signal.SIGTERM)   # freezer path
    assert os.WTERMSIG(first.wait()) == signal.SIGTERM
    assert os.WTERMSIG(second.wait()) == signal.SIGTERM
    third = spawn(cgroup, children)
    cgroup.kill_all(signal.SIGKILL)   # cgroup.kill where the unified hierarchy has it
    assert os.WTERMSIG(third.wait()) == signal.SIGKILL
    paused = spawn(cgroup, children)
    cgroup.freeze()
    cgroup.kill_all(signal.SIGKILL)   # a paused container dies too
    assert os.WTERMSIG(paused.wait()) == signal.SIGKILL
    assert cgroup.state() == "thawed"


def test_oom_kill_is_counted(make_cgroup):
    layout = v1_host()
    if layout.version("memory") is None:
        pytest.skip("needs the memory controller")
    cgroup, children = make_cgroup(layout)
    cgroup.apply(plan({"memory": {"limit": 32 << 20}}, layout))
    assert cgroup.oom_kills() == 0

    def hog():
        held = [b"x" * (16 << 20) for _ in range(16)]   # 256 MiB, every page touched
        return len(held) and 0

    child = spawn(cgroup, children, hog)
    child.go()
    status = child.wait(timeout=60)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert cgroup.oom_kills() >= 1


def test_pids_limit_refuses_fork(make_cgroup):
    layout = v1_host()
    if layout.version("pids") is None:
        pytest.skip("needs the pids controller")
    cgroup, children = make_cgroup(layout)
    cgroup.apply(plan({"pids": {"limit": 1}}, layout))

    def fork_once():
        try:
            pid = os.fork()
        except BlockingIOError:
            return 0   # EAGAIN: the pids limit held
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        return 1

    child = spawn(cgroup, children, fork_once)
    child.go()
    assert os.WEXITSTATUS(child.wait()) == 0


def open_errno(path):
    """0 if path opens for reading, else the errno."""
    try:
        os.close(os.open(path, os.O_RDONLY))
        return 0
    except OSError as e:
        return e.errno


def test_v1_device_deny(make_cgroup):
    layout = v1_host()
    if "devices" not in layout.v1:
        pytest.skip("needs the v1 devices controller")
    cgroup, children = make_cgroup(layout)
    cgroup.set_devices([DENY_ALL, Rule(True, "c", 1, 5, "rwm")])
    lines = read(os.path.join(cgroup.dirs["devices"], "devices.list")).splitlines()
    assert lines == ["c 1:5 rwm"]

    def probe():
        return 0 if (open_errno("/dev/null"), open_errno("/dev/zero")) == (errno.EPERM, 0) else 1

    child = spawn(cgroup, children, probe)
    child.go()
    assert os.WEXITSTATUS(child.wait()) == 0


@pytest.fixture
def unified_only():
    """A view of this host as if it were cgroup v2 only: its cgroup2 hierarchy alone."""
    host = fs.host_layout()
    if not host.unified:
        pytest.skip("needs a cgroup2 hierarchy")
    try:
        importlib.import_module("edgert.native")   # the eBPF calls go through it
    except ImportError as e:
        pytest.skip(f"needs the built native module: {e}")
    return Layout({}, host.unified, host.v2_controllers, {"": host.own[""]})


def unified_path(layout, name):
    return resolve(None, name, layout.own[""], parent=PARENT)


def attached_programs(cgroup):
    from edgert import native
    from edgert.linuxconst import BPF_CGROUP_DEVICE
    fd = os.open(cgroup.dirs[""], os.O_RDONLY | os.O_DIRECTORY)
    try:
        return native.bpf_prog_query(fd, BPF_CGROUP_DEVICE)
    finally:
        os.close(fd)


def test_ebpf_device_program_on_cgroup2(make_cgroup, unified_only):
    cgroup, children = make_cgroup(unified_only, unified_path)
    cgroup.set_devices([DENY_ALL, Rule(True, "c", 1, 5, "r")])
    first = attached_programs(cgroup)
    assert len(first) == 1
    rules = [DENY_ALL, Rule(True, "c", 1, 3, "rwm"), Rule(True, "c", 1, 5, "w")]
    cgroup.set_devices(rules)   # replaces the first program
    second = attached_programs(cgroup)
    assert len(second) == 1 and second != first

    nodes = f"/dev/shm/edgert-test-{os.getpid()}"
    os.mkdir(nodes)
    try:
        def probe():
            failures = 0
            if open_errno("/dev/null") != 0:
                failures |= 1
            if open_errno("/dev/zero") != errno.EPERM:
                failures |= 2
            try:
                os.mknod(f"{nodes}/zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
                failures |= 4
            except PermissionError:
                pass
            try:
                os.mknod(f"{nodes}/null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
            except OSError:
                failures |= 8
            return failures

        child = spawn(cgroup, children, probe)
        child.go()
        assert os.WEXITSTATUS(child.wait()) == 0
        assert not os.path.exists(f"{nodes}/zero")
        assert stat.S_ISCHR(os.stat(f"{nodes}/null").st_mode)
    finally:
        shutil.rmtree(nodes)
    assert open_errno("/dev/zero") == 0   # this process is not in that cgroup


def test_cgroup2_freeze_and_kill(make_cgroup, unified_only):
    cgroup, children = make_cgroup(unified_only, unified_path)
    child = spawn(cgroup, children)
    cgroup.freeze()
    assert cgroup.state() == "frozen"
    with open(f"/proc/{child.pid}/cgroup") as f:
        assert f"{PARENT}/t" in f.read()
    cgroup.thaw()
    assert cgroup.state() == "thawed"
    cgroup.freeze()
    cgroup.kill_all(signal.SIGKILL)   # cgroup.kill acts on frozen processes too
    assert os.WTERMSIG(child.wait()) == signal.SIGKILL
    cgroup.thaw()
    assert cgroup.pids() == []


def test_creates_and_deletes_race_on_the_shared_parent():
    """Containers without a cgroupsPath share <own>/<parent>; each delete prunes it when it
    is empty. Two threads create and delete cgroups below one such parent as fast as they
    can: a create that meets the parent dying (ENOENT, or ENODEV for a read of its cpuset
    or a mkdir in it) walks the path again instead of failing, and nothing is left."""
    import threading
    layout = fs.host_layout()
    parent = f"edgert-race-{os.getpid()}"
    failures = []

    def churn(tag, rounds=150):
        for i in range(rounds):
            cgroup = fs.Cgroup(layout, resolve_all(layout, None, f"{tag}{i}", parent=parent))
            try:
                created = cgroup.create()
            except OSError as e:
                failures.append(e)
                continue
            cgroup.remove(created)
            fs.prune_empty([os.path.dirname(d) for d in cgroup.dirs.values()])

    threads = [threading.Thread(target=churn, args=(tag,)) for tag in "ab"]
    try:
        for thread in threads:
            thread.start()
    finally:
        for thread in threads:
            thread.join()
        leftovers = fs.Cgroup(layout, resolve_all(layout, None, "x", parent=parent))
        parents = sorted({os.path.dirname(d) for d in leftovers.dirs.values()})
        fs.prune_empty(parents)
    assert failures == []
    assert not any(os.path.exists(d) for d in parents)
