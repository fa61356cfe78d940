"""The daemon's container supervisor with real containers: exits of every kind, stop with a
grace period, logs, exec, stats, adoption after a daemon restart, and the runtime's stdio and
exit-record options it relies on.

Containers run on the shared busybox rootfs, bind-mounted as the instance's rootfs, under the
real event loop (edgert/daemon/loop.py). Ids carry the test process's pid (cgroup names are
shared between sessions).
"""

import json
import os
import signal
import time

import pytest

from helpers.probe import unique

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")

TIMEOUT = 15


@pytest.fixture(autouse=True)
def no_subreaper_afterwards(native_built):
    """The runtime makes its caller a child subreaper; in the test process that would make
    orphans of later tests (daemons started by init scripts...) zombies of pytest."""
    yield
    from edgert import native
    native.set_child_subreaper(False)


@pytest.fixture
def env(busybox_rootfs, init_bin, native_built, tmp_path, monkeypatch):
    """A run directory, a loop, and supervisors on them; checks nothing is left behind."""
    from edgert.daemon.loop import Loop
    monkeypatch.setenv("EDGERT_INIT", init_bin)
    loop = Loop(log=lambda msg: logs.append(msg))
    logs, exits = [], []
    made = []

    class Env:
        run_dir = str(tmp_path / "run")
        root = str(tmp_path / "run" / "oci")
        mounts = [{"type": "bind", "source": busybox_rootfs, "options": ["rbind", "rw"]}]

        def __init__(self):
            self.loop, self.logs, self.exits = loop, logs, exits

        def supervisor(self, **kw):
            from edgert.daemon.supervisor import Supervisor
            sup = Supervisor(loop, self.root, self.run_dir,
                             lambda iid, info: exits.append((iid, info)), logs.append, **kw)
            made.append(sup)
            return sup

        def run_until(self, predicate, what, timeout=TIMEOUT):
            deadline = time.monotonic() + timeout
            while not predicate():
                if time.monotonic() > deadline:
                    raise AssertionError("timed out waiting for %s (log: %s)" % (what, logs))
                loop.run_once(0.05)

        def wait_exit(self, iid, timeout=TIMEOUT):
            self.run_until(lambda: any(i == iid for i, _ in exits), "%s to exit" % iid, timeout)
            return [info for i, info in exits if i == iid][-1]

    e = Env()
    yield e
    for sup in made:
        for iid in list(sup.tracked):
            sup.kill(iid, signal.SIGKILL)
            e.wait_exit(iid)
        sup.close()
    loop.close()
    assert_nothing_left(e)


def config(args, edit=None, **kw):
    from edgert.oci.defaults import default_config
    cfg = default_config(args=list(args), rootfs="rootfs", **kw)
    if edit:
        edit(cfg)
    return cfg


def sh(script):
    return ["/bin/sh", "-c", script]


def mounted_below(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def cgroup_dirs(cid):
    from edgert.cgroup import fs
    from edgert.cgroup.layout import resolve_all
    lay = fs.host_layout()
    return [d for d in fs.Cgroup(lay, resolve_all(lay, None, cid)).dirs.values()
            if os.path.isdir(d)]


def assert_nothing_left(e, ids=None):
    assert mounted_below(e.run_dir) == []
    containers = os.path.join(e.run_dir, "containers")
    assert not os.path.isdir(containers) or os.listdir(containers) == []
    assert not os.path.isdir(e.root) or os.listdir(e.root) == []
    for cid in ids or []:
        assert cgroup_dirs(cid) == []


# --- exits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("script,code,sig", [
    ("busybox sleep 0.2; exit 3", 3, None),
    ("exit 0", 0, None),  # may end before start returns: still an exit, not a failed start
    ("busybox sleep 0.2; kill -9 $$", 137, 9),
    ("busybox sleep 0.2; kill -TERM $$", 143, 15),
])
def test_exit_code_and_signal(env, script, code, sig):
    sup = env.supervisor()
    iid = unique("sup-exit")
    pid = sup.start(iid, config(sh(script)), env.mounts)
    assert pid > 0
    info = env.wait_exit(iid)
    assert (info["kind"], info["code"], info["signal"], info["source"]) == (
        "exited", code, sig, "waitpid")
    assert info["oom_kills"] == 0 and abs(info["at"] - time.time()) < 30
    assert sup.running(iid) is None
    assert_nothing_left(env, [iid])


@pytest.mark.parametrize("applet,kind,sig", [
    ("reboot", "reboot-requested", 1), ("reboot -f", "reboot-requested", 1),
    ("poweroff", "stopped-by-container", 2), ("poweroff -f", "stopped-by-container", 2),
    ("halt", "stopped-by-container", 2), ("halt -f", "stopped-by-container", 2),
])
def test_reboot_and_poweroff_from_inside(env, applet, kind, sig):
    sup = env.supervisor()
    iid = unique("sup-boot")
    cfg = config(sh("busybox sleep 0.2; busybox %s; busybox sleep 5" % applet))
    assert "CAP_SYS_BOOT" in cfg["process"]["capabilities"]["effective"]
    sup.start(iid, cfg, env.mounts)
    info = env.wait_exit(iid)
    assert (info["kind"], info["code"], info["signal"]) == (kind, None, sig)
    assert_nothing_left(env, [iid])


# --- stop, kill ----------------------------------------------------------------------------------

def test_stop_kills_after_grace_when_sigterm_is_ignored(env):
    sup = env.supervisor()
    iid = unique("sup-stop")
    sup.start(iid, config(sh("trap '' TERM; echo ready; while :; do busybox sleep 0.1; done")),
              env.mounts)
    env.run_until(lambda: b"ready" in sup.ring(iid).read_tail(), "the workload")
    done = []
    started = time.monotonic()
    sup.stop(iid, 0.5, done.append)
    sup.stop(iid, 0.5, done.append)  # idempotent: one SIGTERM, one timer, both told
    info = env.wait_exit(iid)
    env.run_until(lambda: len(done) == 2, "on_done")
    assert time.monotonic() - started >= 0.5
    assert (info["kind"], info["signal"]) == ("stopped", 9)
    assert done == [info, info]
    assert "SIGKILL" in " ".join(env.logs)


def test_stop_of_a_workload_that_obeys_sigterm(env):
    sup = env.supervisor()
    iid = unique("sup-stop2")
    sup.start(iid, config(sh("echo ready; exec busybox sleep 30")), env.mounts)
    env.run_until(lambda: b"ready" in sup.ring(iid).read_tail(), "the workload")
    started = time.monotonic()
    sup.stop(iid, 10)
    info = env.wait_exit(iid)
    assert time.monotonic() - started < 5
    assert (info["kind"], info["code"]) == ("stopped", 143)


def test_stop_of_a_container_not_running_calls_back_soon(env):
    sup = env.supervisor()
    done = []
    sup.stop("nothing-here", 1, done.append)
    assert done == []
    env.run_until(lambda: done == [None], "on_done")
    from edgert.errors import StateError
    with pytest.raises(StateError):
        sup.kill("nothing-here", 15)


def test_kill_sends_a_signal_init_forwards(env):
    sup = env.supervisor()
    iid = unique("sup-kill")
    sup.start(iid, config(sh('trap "echo got usr1; exit 9" USR1; echo ready; '
                             'while :; do busybox sleep 0.1; done')), env.mounts)
    env.run_until(lambda: b"ready" in sup.ring(iid).read_tail(), "the workload")
    sup.kill(iid, signal.SIGUSR1)
    info = env.wait_exit(iid)
    assert (info["kind"], info["code"]) == ("exited", 9)
    assert sup.ring(iid).read_tail(lines=1) == b"got usr1\n"


# --- start failures ------------------------------------------------------------------------------

def test_missing_binary_fails_start_and_leaves_nothing(env):
    from edgert.errors import EdgertError
    sup = env.supervisor()
    iid = unique("sup-nobin")
    with pytest.raises(EdgertError) as err:
        sup.start(iid, config(["/no/such/program"]), env.mounts)
    assert str(err.value).startswith("instance %s: " % iid)
    assert "/no/such/program" in str(err.value)
    assert env.exits == []
    assert_nothing_left(env, [iid])


def test_pid1_dying_at_exec_fails_start_with_the_log_line(env, tmp_path):
    from edgert.errors import EdgertError
    script = tmp_path / "script"
    script.write_text("#!/no/such/interpreter\n")
    script.chmod(0o755)

    def add_script(cfg):
        cfg["mounts"].append({"destination": "/script", "type": "bind", "source": str(script),
                              "options": ["bind", "ro"]})
    sup = env.supervisor()
    iid = unique("sup-noint")
    with pytest.raises(EdgertError) as err:
        sup.start(iid, config(["/script"], edit=add_script), env.mounts)
    assert str(err.value) == ("instance %s: pid 1 exited during start: edgert-init: exec "
                              "/script: No such file or directory" % iid)
    assert env.exits == []
    assert_nothing_left(env, [iid])


def test_bad_config_and_bad_mounts_fail_start_cleanly(env, tmp_path):
    from edgert.errors import ConfigError, EdgertError
    sup = env.supervisor()
    iid = unique("sup-bad")
    cfg = config(["true"])
    del cfg["process"]
    with pytest.raises(ConfigError) as err:
        sup.start(iid, cfg, env.mounts)
    assert str(err.value).startswith("instance %s: " % iid)
    assert_nothing_left(env, [iid])
    with pytest.raises(EdgertError) as err:
        sup.start(iid, config(["true"]), [{"type": "bind", "source": str(tmp_path / "nope"),
                                           "options": ["rbind"]}])
    assert "rootfs" in str(err.value)
    with pytest.raises(ConfigError):
        sup.start(iid, config(["true"], edit=lambda c: c["root"].update(path="/elsewhere")),
                  env.mounts)
    assert_nothing_left(env, [iid])


def test_second_start_of_a_running_instance_is_refused(env):
    from edgert.errors import StateError
    sup = env.supervisor()
    iid = unique("sup-twice")
    sup.start(iid, config(["sleep", "30"]), env.mounts)
    with pytest.raises(StateError):
        sup.start(iid, config(["sleep", "30"]), env.mounts)
    assert sup.running(iid)


# --- logs, exec, stats ---------------------------------------------------------------------------

def test_output_goes_to_the_log_ring_and_stdin_is_devnull(env):
    sup = env.supervisor(log_cap=4096)
    iid = unique("sup-log")
    sup.start(iid, config(sh("busybox sleep 0.1; echo out; echo err >&2; busybox cat; "
                             "busybox readlink /proc/self/fd/0; exit 0")), env.mounts)
    env.wait_exit(iid)
    assert sup.ring(iid).read_tail() == b"out\nerr\n/dev/null\n"
    path = os.path.join(env.run_dir, "logs", iid + ".log")
    assert os.stat(path).st_mode & 0o777 == 0o640
    sup.ring(iid).remove()


def test_log_ring_rotates_while_the_container_writes(env, monkeypatch):
    from edgert.daemon import supervisor
    monkeypatch.setattr(supervisor, "LOG_CHECK_S", 0.05)
    sup = env.supervisor(log_cap=2000)
    iid = unique("sup-rot")
    sup.start(iid, config(sh("i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); "
                             "busybox usleep 2000; done")), env.mounts)
    env.wait_exit(iid)
    ring = sup.ring(iid)
    assert os.path.exists(ring.old_path)
    assert os.path.getsize(ring.path) + os.path.getsize(ring.old_path) <= 2000 + 100
    assert ring.read_tail(lines=1) == b"line 299\n"
    ring.remove()


def test_syslog_mirror_gets_the_lines(env, tmp_path):
    import socket
    from edgert.daemon.logring import SyslogMirror
    path = str(tmp_path / "devlog")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    sup = env.supervisor(syslog=SyslogMirror("edgert", path=path))
    iid = unique("sup-sys")
    sup.start(iid, config(sh("busybox sleep 0.1; echo hello syslog")), env.mounts)
    env.wait_exit(iid)
    assert server.recv(1024) == b"<30>edgert[%s]: hello syslog" % iid.encode()
    server.close()


def test_exec_runs_in_the_container_with_given_stdio(env):
    sup = env.supervisor()
    iid = unique("sup-exec")
    sup.start(iid, config(["sleep", "30"], hostname="insidebox"), env.mounts)
    r, w = os.pipe()
    done = []
    try:
        pid, master = sup.exec(iid, sh("busybox hostname; echo $FOO; pwd; exit 4"),
                               env=["FOO=bar"], cwd="/tmp", stdio=(0, w, w),
                               on_done=done.append)
    finally:
        os.close(w)
    assert pid > 0 and master is None
    env.run_until(lambda: done, "the exec to end")
    with os.fdopen(r, "rb") as f:
        assert f.read() == b"insidebox\nbar\n/tmp\n"
    assert done == [4]
    quiet = []
    sup.exec(iid, sh("kill -9 $$"), on_done=quiet.append)  # stdio defaults to /dev/null
    env.run_until(lambda: quiet, "the second exec")
    assert quiet == [137]

    ended = []
    _, master = sup.exec(iid, sh("tty; stty size; [ -t 0 ] && exit 5"), on_done=ended.append,
                         tty_size={"height": 30, "width": 90})
    try:
        env.run_until(lambda: ended, "the terminal exec")
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the slave side is closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    assert out == b"/dev/pts/0\r\n30 90\r\n" and ended == [5], out


def test_a_terminal_exec_whose_master_never_comes_is_killed_and_reaped(env, monkeypatch):
    """If the pty master does not arrive, the exec'd process must not live on untracked."""
    from edgert.errors import EdgertError
    from edgert.runtime import console
    sup = env.supervisor()
    iid = unique("sup-nomaster")
    sup.start(iid, config(["sleep", "30"]), env.mounts)
    spawned = []
    spawn_exec = sup.runtime.spawn_exec

    def recording(*args, **kwargs):
        spawned.append(spawn_exec(*args, **kwargs))
        return spawned[-1]

    def lost(fd):
        os.close(fd)
        raise EdgertError("the container sent no terminal", code="console")
    monkeypatch.setattr(sup.runtime, "spawn_exec", recording)
    monkeypatch.setattr(console, "receive_master", lost)
    with pytest.raises(EdgertError, match="sent no terminal"):
        sup.exec(iid, ["sleep", "30"], tty_size={"height": 24, "width": 80})
    assert len(spawned) == 1 and not os.path.exists("/proc/%d" % spawned[0]), spawned
    assert spawned[0] not in sup.execs


def test_stats_from_the_cgroup(env):
    sup = env.supervisor()
    iid = unique("sup-stats")
    sup.start(iid, config(["sleep", "30"], edit=lambda c: c["linux"].setdefault(
        "resources", {}).update(memory={"limit": 64 << 20}, pids={"limit": 50})), env.mounts)
    stats = sup.stats(iid)
    assert set(stats) == {"memory_bytes", "memory_limit", "cpu_ns", "pids"}
    assert stats["pids"] == 2  # edgert-init and sleep
    assert stats["memory_limit"] == 64 << 20
    assert stats["memory_bytes"] > 0 and stats["cpu_ns"] > 0


# --- stray children ----------------------------------------------------------------------------

def test_strays_are_reaped_but_an_owner_keeps_its_child(env, monkeypatch):
    from edgert.daemon import supervisor
    monkeypatch.setattr(supervisor, "STRAY_GRACE_S", 0.2)
    env.supervisor()
    stray = os.fork()
    if stray == 0:
        os._exit(0)
    owned = os.fork()
    if owned == 0:
        os._exit(5)

    def reaped(pid):
        try:
            return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return True
    # the owner waits for its child at once, as Fetch does after the pipe's EOF
    time.sleep(0.05)
    assert os.waitpid(owned, 0) == (owned, 5 << 8)
    env.run_until(lambda: reaped(stray), "the stray to be reaped", timeout=5)


# --- adoption ----------------------------------------------------------------------------------

def start_in_dead_daemon(env, iid, cfg):
    """Starts a container from a forked 'daemon' that then exits: the container is nobody's
    child here (the test process is no subreaper meanwhile). Returns pid 1."""
    from edgert import native
    native.set_child_subreaper(False)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            from edgert.daemon.loop import Loop
            from edgert.daemon.supervisor import Supervisor
            native.set_child_subreaper(True)
            sup = Supervisor(Loop(), env.root, env.run_dir, lambda *a: None, lambda m: None)
            os.write(w, b"%d" % sup.start(iid, cfg, env.mounts))
        except BaseException as e:
            os.write(w, b"error %r" % e)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read()
    os.waitpid(child, 0)
    native.set_child_subreaper(True)
    assert answer.isdigit(), answer
    return int(answer)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def test_adopted_container_reports_its_exit_from_the_record(env):
    from edgert.daemon.supervisor import is_our_child
    iid = unique("sup-adopt")
    pid = start_in_dead_daemon(env, iid, config(sh("busybox sleep 1; exit 7")))
    assert not is_our_child(pid)
    sup = env.supervisor()
    assert sup.adopt() == [(iid, "running")]
    assert sup.running(iid) == pid
    info = env.wait_exit(iid)
    assert (info["kind"], info["code"], info["source"]) == ("exited", 7, "record")
    assert_nothing_left(env, [iid])


def test_adopted_container_stopped_by_the_new_daemon(env):
    iid = unique("sup-adstop")
    start_in_dead_daemon(env, iid, config(sh("trap '' TERM; while :; do busybox sleep 0.1; "
                                             "done")))
    sup = env.supervisor()
    sup.adopt()
    sup.stop(iid, 0.3)
    info = env.wait_exit(iid)
    assert (info["kind"], info["source"]) == ("stopped", "record")
    assert_nothing_left(env, [iid])


@pytest.mark.parametrize("how,kind,code", [("exit", "exited", 5), ("kill", "killed", None),
                                           ("reboot", "reboot-requested", None)])
def test_container_that_ended_while_no_daemon_ran(env, how, kind, code):
    iid = unique("sup-down")
    script = {"exit": "busybox sleep 0.2; exit 5", "kill": "busybox sleep 30",
              "reboot": "busybox sleep 0.2; busybox reboot; busybox sleep 5"}[how]
    pid = start_in_dead_daemon(env, iid, config(sh(script)))
    if how == "kill":
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    while alive(pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    sup = env.supervisor()
    assert sup.adopt() == [(iid, "exited")]
    assert [(i, info["kind"], info["code"], info["source"]) for i, info in env.exits] == [
        (iid, kind, code, "record")]
    assert_nothing_left(env, [iid])


def test_adopt_removes_half_made_containers_and_leaves_foreign_ones(env, busybox_rootfs):
    from edgert import linuxconst as K
    from edgert import native
    from edgert.runtime.container import Runtime
    from edgert.runtime import state as S
    rt = Runtime(env.root)
    half, foreign, orphan_dir = unique("sup-half"), unique("sup-foreign"), unique("sup-orphan")
    for cid, annotations in ((half, {"edgert.instance": half}), (foreign, {})):
        rt.store.reserve(cid)
        rt.store.save(cid, {"id": cid, "bundle": "/nonexistent", "pid": 0, "annotations":
                            annotations, "config": {}, "cgroup": None, "netns_pin": None,
                            "net_devices": []})
    for cid in (half, orphan_dir):
        rootfs = os.path.join(env.run_dir, "containers", cid, "rootfs")
        os.makedirs(rootfs)
        native.mount(busybox_rootfs, rootfs, None, K.MS_BIND | K.MS_REC, None)
    rt.store.reserve(orphan_dir)  # a create that crashed before it saved any state
    sup = env.supervisor()
    assert sorted(sup.adopt()) == sorted([(half, "stopped"), (orphan_dir, "stopped")])
    assert env.exits == []
    assert rt.store.ids() == [foreign]
    assert S.status(rt.store.load(foreign)) == S.CREATING
    rt.delete(foreign, force=True)
    assert_nothing_left(env)


# --- the runtime options the supervisor relies on ------------------------------------------------

def test_runtime_exit_record_and_stdio_with_a_terminal(env, tmp_path, busybox_rootfs):
    """With a terminal the console replaces stdio, and the exit record still comes."""
    import select
    from edgert.runtime import console
    from edgert.runtime.container import Runtime
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    cfg = config(sh("busybox tty; exit 3"), terminal=True)
    cfg["root"]["path"] = busybox_rootfs
    (bundle / "config.json").write_text(json.dumps(cfg))
    record = os.open(str(tmp_path / "exit"), os.O_RDWR | os.O_CREAT, 0o600)
    log = os.open(str(tmp_path / "log"), os.O_WRONLY | os.O_CREAT, 0o600)
    rt = Runtime(env.root)
    cid = unique("sup-tty")
    peer, ours = console.socketpair()
    try:
        try:
            pid = rt.create(cid, str(bundle), start=True, console_fd=peer,
                            stdio=(log, log, log), exit_record_fd=record)
        finally:
            os.close(peer)
        master = console.receive_master(ours)
        out = b""
        while select.select([master], [], [], 5)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        assert os.waitpid(pid, 0)[1] >> 8 == 3
        assert out.startswith(b"/dev/pts/")
        assert os.pread(record, 64, 0) == b"exited 3\n"
        assert os.path.getsize(tmp_path / "log") == 0
    finally:
        rt.delete(cid, force=True)
        os.close(record)
        os.close(log)


def test_runtime_leaks_no_fds_over_many_containers(env):
    import gc
    sup = env.supervisor()
    gc.collect()  # earlier tests' garbage (pipes of finished Popen objects) closes now, not midway
    before = sorted(os.listdir("/proc/self/fd"))
    handlers = {sig: signal.getsignal(sig) for sig in signal.valid_signals()
                if sig not in (signal.SIGKILL, signal.SIGSTOP)}
    for n in range(3):
        iid = unique("sup-fds%d" % n)
        sup.start(iid, config(sh("busybox sleep 0.1")), env.mounts)
        env.wait_exit(iid)
    with pytest.raises(Exception):
        sup.start(unique("sup-fdsbad"), config(["/no/such/program"]), env.mounts)
    gc.collect()
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers


def test_stdio_in_any_order(env, tmp_path, busybox_rootfs):
    """stdio fds that are themselves 0-2 in another order land where they are asked to, and
    an exit record on the caller's fd 0 is not lost to the stdio dup2s."""
    from edgert.runtime.container import Runtime
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    cfg = config(sh("echo to-stdout; echo to-stderr >&2"))
    cfg["root"]["path"] = busybox_rootfs
    (bundle / "config.json").write_text(json.dumps(cfg))
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    out = os.open(str(out_path), os.O_WRONLY | os.O_CREAT, 0o600)
    err = os.open(str(err_path), os.O_WRONLY | os.O_CREAT, 0o600)
    record = os.open(str(tmp_path / "exit"), os.O_RDWR | os.O_CREAT, 0o600)
    devnull = os.open("/dev/null", os.O_RDONLY)
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    rt = Runtime(env.root)
    cid = unique("sup-order")
    try:
        # the caller's 1 is the container's stderr and its 2 the container's stdout
        os.dup2(record, 0)
        os.dup2(err, 1)
        os.dup2(out, 2)
        pid = rt.create(cid, str(bundle), start=True, stdio=(devnull, 2, 1), exit_record_fd=0)
    finally:
        for fd, copy in zip((0, 1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        for fd in (out, err, devnull):
            os.close(fd)
    try:
        os.waitpid(pid, 0)
        assert out_path.read_text() == "to-stdout\n"
        assert err_path.read_text() == "to-stderr\n"
        assert os.pread(record, 64, 0) == b"exited 0\n"
    finally:
        os.close(record)
        rt.delete(cid, force=True)
