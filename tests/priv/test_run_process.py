"""edgert-oci running real containers: lifecycle, exit codes, the process, exec, signals, hooks.

Containers run on the shared busybox rootfs with the probe (tests/probe/probe.c) as their
workload. Verbs that leave a container running (create, run --detach, exec --detach) get
their stdio from ``launch``, which sends it to a log file: a pipe would stay open in the
container and keep subprocess.run waiting for its end. Container ids carry the test
process's pid because they also name cgroups, which concurrent test sessions share.
"""

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from helpers.probe import PATH, kv, unique  # noqa: F401

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")


# -- helpers -------------------------------------------------------------------------------------

def launch(oci, log, *args, check=True, timeout=10):
    """Runs a verb that leaves a process behind, with every stdio fd on ``log``."""
    with open(log, "ab") as out:
        try:
            proc = subprocess.run([oci.binary, "--root", oci.root] + [str(a) for a in args],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("edgert-oci %s did not return within %ds: %s" % (
                " ".join(map(str, args)), timeout, read_text(log))) from None
    if check and proc.returncode != 0:
        raise AssertionError("edgert-oci %s exited %d: %s" % (
            " ".join(map(str, args)), proc.returncode, read_text(log)))
    return proc


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


def wait_status(oci, cid, status, timeout=5.0):
    wait_for(lambda: oci.state(cid)["status"] == status, timeout,
             "container %s to be %s" % (cid, status))


def cgroup_dirs(cid):
    """Every directory the container's default cgroup would have, in every hierarchy."""
    from edgert.cgroup import fs
    from edgert.cgroup.layout import resolve_all
    lay = fs.host_layout()
    return fs.Cgroup(lay, resolve_all(lay, None, cid)).dirs


def alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(") ", 1)[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def pid_ns(pid):
    return os.readlink("/proc/%d/ns/pid" % pid)


@pytest.fixture
def running(oci, make_bundle, tmp_path):
    """running(args=..., **defaults) -> (id, pid, log): a started, detached container."""
    counter = iter(range(1000))

    def start(args=("/probe", "sleep", "60"), edit=None, **defaults):
        cid = unique("run%d" % next(counter))
        bundle = make_bundle(args, edit, **defaults)
        log = str(tmp_path / (cid + ".log"))
        pid_file = str(tmp_path / (cid + ".pid"))
        launch(oci, log, "run", "--detach", "--pid-file", pid_file, "--bundle", bundle, cid)
        return cid, int(read_text(pid_file)), log
    return start


@pytest.fixture
def private_rootfs(busybox_rootfs, tmp_path):
    """A copy of the busybox rootfs for tests whose container writes to its root."""
    dest = str(tmp_path / "rootfs")
    subprocess.run(["cp", "-a", busybox_rootfs, dest], check=True)
    return dest


class ConsoleSocket:
    """A --console-socket server: receives the pty master, reads it until the pty closes."""

    def __init__(self, path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.server.settimeout(20)
        self.name, self.output, self.error = None, bytearray(), None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.server.accept()
            with conn:
                msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
            self.name = msg.decode()
            master = fds[0]
            try:
                while True:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # EIO: every slave fd is closed
                        break
                    if not chunk:
                        break
                    self.output += chunk
            finally:
                os.close(master)
        except Exception as e:  # reported by wait()
            self.error = e

    def wait(self, timeout=10):
        self.thread.join(timeout)
        self.server.close()
        assert not self.thread.is_alive(), "the console never closed"
        assert self.error is None, "console socket: %r" % (self.error,)
        return bytes(self.output).replace(b"\r\n", b"\n").decode(errors="replace")


# -- lifecycle -----------------------------------------------------------------------------------

def test_create_start_kill_delete(oci, make_bundle, tmp_path):
    cid = unique("life")
    bundle = make_bundle(["/probe", "sleep", "60"])
    pid_file = tmp_path / "pid"
    launch(oci, tmp_path / "log", "create", "--bundle", bundle, "--pid-file", pid_file, cid)
    st = oci.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid and st["bundle"] == bundle
    assert st["pid"] == int(pid_file.read_text())
    assert os.path.exists("/proc/%d" % st["pid"])
    assert pid_ns(st["pid"]) != pid_ns(os.getpid())
    oci("start", cid)
    assert oci.state(cid)["status"] == "running"
    oci("kill", cid, "TERM")
    wait_status(oci, cid, "stopped")
    assert "pid" not in oci.state(cid)
    oci("delete", cid)
    gone = oci("state", cid, check=False)
    assert gone.returncode != 0
    assert not os.path.exists(os.path.join(oci.root, cid))


def test_start_twice_fails(oci, make_bundle, tmp_path):
    cid = unique("twice")
    launch(oci, tmp_path / "log", "create", "--bundle", make_bundle(["/probe", "sleep", "60"]),
           cid)
    oci("start", cid)
    again = oci("start", cid, check=False)
    assert again.returncode != 0
    assert b"only a created container can be started" in again.stderr


def test_kill_and_delete_a_created_container(oci, make_bundle, tmp_path):
    """A created container is not running: kill reaches edgert-init before it starts the
    process, and delete needs no --force."""
    first, second = unique("created1"), unique("created2")
    for cid in (first, second):
        launch(oci, tmp_path / "log", "create", "--bundle",
               make_bundle(["/probe", "sleep", "60"]), cid)
    oci("kill", first, "TERM")
    wait_status(oci, first, "stopped")
    pid = oci.state(second)["pid"]
    oci("delete", second)
    assert oci("state", second, check=False).returncode != 0
    wait_for(lambda: not alive(pid), what="pid 1 of the deleted container to die")


def test_verbs_on_a_stopped_container(oci, make_bundle, tmp_path):
    cid = unique("done")
    launch(oci, tmp_path / "log", "run", "--detach", "--bundle", make_bundle(["/probe", "true"]),
           cid)
    wait_status(oci, cid, "stopped")
    for verb in ("start", "kill"):
        proc = oci(verb, cid, check=False)
        assert proc.returncode != 0, verb
        assert b"Traceback" not in proc.stderr and proc.stderr.startswith(b"edgert-oci: "), verb
    oci("delete", cid)


def test_run_detach_and_pid_file(running, oci):
    cid, pid, _ = running()
    st = oci.state(cid)
    assert st["status"] == "running" and st["pid"] == pid


def test_delete_running_needs_force(running, oci):
    cid, pid, _ = running()
    refused = oci("delete", cid, check=False)
    assert refused.returncode != 0
    assert b"--force" in refused.stderr and b"running" in refused.stderr
    assert oci.state(cid)["status"] == "running"
    oci("delete", "--force", cid)
    assert not os.path.exists(os.path.join(oci.root, cid))
    wait_for(lambda: not alive(pid), what="pid 1 of the container to die")


def test_duplicate_id_fails(running, oci, make_bundle):
    cid, _, _ = running()
    dup = oci("run", "--bundle", make_bundle(["/probe", "true"]), cid, check=False)
    assert dup.returncode != 0
    assert b"already exists" in dup.stderr
    assert oci.state(cid)["status"] == "running"


def test_state_of_unknown_id_fails(oci):
    missing = oci("state", "no-such-container", check=False)
    assert missing.returncode != 0
    assert b"does not exist" in missing.stderr
    assert b"Traceback" not in missing.stderr


def test_list_formats(running, oci):
    first, pid1, _ = running()
    second, pid2, _ = running()
    table = oci("list").stdout.decode().splitlines()
    assert table[0].split()[:3] == ["ID", "PID", "STATUS"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[first][1:3] == [str(pid1), "running"]
    assert rows[second][1:3] == [str(pid2), "running"]
    listed = {s["id"]: s for s in json.loads(oci("list", "--format", "json").stdout)}
    assert set(listed) == {first, second}
    assert listed[first]["pid"] == pid1 and listed[first]["status"] == "running"
    assert oci("list", "-q").stdout.decode().split() == sorted([first, second])


def test_ps_json_lists_container_pids(running, oci):
    cid, pid, _ = running(["/bin/sh", "-c", "/probe sleep 60 & exec /probe sleep 60"])
    pids = wait_for(lambda: (lambda p: len(p) >= 3 and p)(
        json.loads(oci("ps", "--format", "json", cid).stdout)), what="3 pids in ps")
    assert pid in pids
    for p in pids:
        assert pid_ns(p) == pid_ns(pid)
    table = oci("ps", cid).stdout.decode().splitlines()
    assert table[0].split() == ["PID", "CMD"]
    assert {int(line.split()[0]) for line in table[1:]} >= {pid}


# -- exit codes ----------------------------------------------------------------------------------

def test_all_exit_codes_pass_through_run(oci, busybox_rootfs, tmp_path):
    """Each of the 256 exit codes is the exit code of a foreground run (4 runs at a time)."""
    from edgert.oci.defaults import default_config
    config = default_config(args=["/probe", "exit", "0"])
    config["root"]["path"] = busybox_rootfs

    def run(code):
        bundle = tmp_path / ("exit%d" % code)
        bundle.mkdir()
        config_copy = dict(config, process=dict(config["process"],
                                                args=["/probe", "exit", str(code)]))
        (bundle / "config.json").write_text(json.dumps(config_copy))
        proc = oci("run", "--bundle", bundle, unique("exit%d" % code), check=False)
        return code, proc.returncode, proc.stderr

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(256)))
    wrong = [(code, got, err[-200:]) for code, got, err in results if got != code]
    assert not wrong
    assert os.listdir(oci.root) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGUSR1])
def test_signal_killed_workload_gives_128_plus_n(oci, make_bundle, sig):
    bundle = make_bundle(["/bin/sh", "-c", "kill -%d $$" % sig])
    assert oci("run", "--bundle", bundle, unique("sig"), check=False).returncode == 128 + sig


# -- the process ---------------------------------------------------------------------------------

def test_args_reach_the_process_unchanged(oci, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", 'printf "<%s>" "$@"', "sh", "a b", "", "c*", "-x"])
    assert oci("run", "--bundle", bundle, unique("args")).stdout == b"<a b><><c*><-x>"


def test_env_is_exactly_process_env(oci, make_bundle):
    env = [PATH, "FOO=bar baz", "EMPTY=", "MULTI=a=b"]
    out = oci("run", "--bundle", make_bundle(["/probe", "env"], env=env), unique("env")).stdout
    assert out.decode().splitlines() == env


def test_missing_cwd_is_created(oci, make_bundle, private_rootfs):
    def edit(config):
        config["root"]["path"] = private_rootfs
    bundle = make_bundle(["/probe", "cwd"], edit, cwd="/work/deep/dir")
    assert kv(oci("run", "--bundle", bundle, unique("cwd")).stdout)["cwd"] == "/work/deep/dir"
    assert os.path.isdir(os.path.join(private_rootfs, "work/deep/dir"))


def test_user_groups_and_umask(oci, make_bundle):
    def edit(config):
        config["process"]["user"].update(additionalGids=[10, 20, 65534], umask=0o027)
    bundle = make_bundle(["/bin/sh", "-c", "/probe ids; echo umask=$(umask)"], edit,
                         uid=1000, gid=1001)
    out = kv(oci("run", "--bundle", bundle, unique("user")).stdout)
    assert (out["uid"], out["euid"], out["gid"], out["egid"]) == ("1000", "1000", "1001", "1001")
    assert out["groups"].split(",") == ["10", "20", "65534"]
    assert out["umask"] == "0027"


def test_default_umask_is_0022(oci, make_bundle):
    out = kv(oci("run", "--bundle", make_bundle(["/bin/sh", "-c", "echo umask=$(umask)"]),
                 unique("umask")).stdout)
    assert out["umask"] == "0022"


@pytest.mark.parametrize("program", ["/no/such/program", "no-such-program"])
def test_missing_executable_fails_create(oci, make_bundle, tmp_path, program):
    cid = unique("noexec")
    log = tmp_path / "log"
    proc = launch(oci, log, "create", "--bundle", make_bundle([program]), cid, check=False)
    assert proc.returncode != 0
    text = read_text(log)
    assert "executable file not found" in text and program in text
    assert "Traceback" not in text
    assert oci("state", cid, check=False).returncode != 0
    assert not os.path.exists(os.path.join(oci.root, cid))
    assert not [d for d in cgroup_dirs(cid).values() if os.path.exists(d)]


def test_hostname_and_domainname(oci, make_bundle):
    def edit(config):
        config["domainname"] = "plant.example"
    bundle = make_bundle(["/probe", "hostname"], edit, hostname="router-7")
    out = kv(oci("run", "--bundle", bundle, unique("uts")).stdout)
    assert out == {"hostname": "router-7", "domainname": "plant.example"}
    assert os.uname().nodename != "router-7"


def test_rlimits(oci, make_bundle):
    def edit(config):
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
                                        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    bundle = make_bundle(["/bin/sh", "-c", "/probe rlimit NOFILE; /probe rlimit CORE"], edit)
    lines = oci("run", "--bundle", bundle, unique("rlim")).stdout.decode().split()
    assert lines == ["soft=100", "hard=200", "soft=0", "hard=0"]


def test_oom_score_adj(oci, make_bundle):
    def edit(config):
        config["process"]["oomScoreAdj"] = 567
    bundle = make_bundle(["/probe", "cat", "/proc/self/oom_score_adj"], edit)
    assert oci("run", "--bundle", bundle, unique("oom")).stdout.decode().strip() == "567"


def test_workload_starts_with_default_signal_state(oci, make_bundle):
    """Nothing ignored or blocked (a Python runtime ignores SIGPIPE and SIGXFSZ itself)."""
    out = oci("run", "--bundle", make_bundle(["/probe", "cat", "/proc/self/status"]),
              unique("sigstate")).stdout.decode()
    fields = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert int(fields["SigIgn"], 16) == 0
    assert int(fields["SigBlk"], 16) == 0


def test_terminal_via_console_socket(oci, make_bundle, tmp_path):
    console = ConsoleSocket(str(tmp_path / "console.sock"))
    bundle = make_bundle(["/bin/sh", "-c", "/probe isatty 0; /probe isatty 1; tty; "
                          "echo TERM=$TERM; exit 7"], terminal=True)
    proc = oci("run", "--console-socket", console.path, "--bundle", bundle, unique("tty"),
               check=False)
    text = console.wait()
    assert proc.returncode == 7, proc.stderr
    out = text.split()
    assert out[:2] == ["isatty=1", "isatty=1"]
    assert out[2].startswith("/dev/pts/")
    assert "TERM=xterm" in out
    assert console.name.startswith("/dev/pts/")


def test_console_size(oci, make_bundle, tmp_path):
    def edit(config):
        config["process"]["consoleSize"] = {"height": 42, "width": 123}
    console = ConsoleSocket(str(tmp_path / "console.sock"))
    proc = oci("run", "--console-socket", console.path, "--bundle",
               make_bundle(["/bin/stty", "size"], edit, terminal=True), unique("ttysize"),
               check=False)
    assert console.wait().split() == ["42", "123"]
    assert proc.returncode == 0, proc.stderr


# -- exec ----------------------------------------------------------------------------------------

def test_exec_runs_in_the_container(running, oci):
    cid, pid, _ = running(hostname="exec-box")
    out = kv(oci("exec", cid, "/bin/sh", "-c", "/probe ids; /probe hostname; /probe cwd")
             .stdout)
    assert out["uid"] == "0" and out["hostname"] == "exec-box" and out["cwd"] == "/"
    pids = json.loads(oci("ps", "--format", "json", cid).stdout)
    assert pid in pids


def test_exec_exit_codes(running, oci):
    cid, _, _ = running()
    for code in (0, 1, 42, 126, 127, 255):
        assert oci("exec", cid, "/probe", "exit", code, check=False).returncode == code
    killed = oci("exec", cid, "/bin/sh", "-c", "kill -KILL $$", check=False)
    assert killed.returncode == 128 + signal.SIGKILL


def test_exec_flags(running, oci):
    cid, _, _ = running()
    out = oci("exec", "--env", "FOO=bar", "--env", "EMPTY=", "--cwd", "/tmp",
              "--user", "1000:1001", "--additional-gids", "7", "-g", "8", cid, "/bin/sh", "-c",
              "/probe ids; /probe cwd; /probe env")
    values = kv(out.stdout)
    assert (values["uid"], values["gid"], values["cwd"]) == ("1000", "1001", "/tmp")
    assert values["groups"] == "7,8"
    assert "FOO=bar" in out.stdout.decode().splitlines()
    assert "EMPTY=" in out.stdout.decode().splitlines()


def test_exec_env_adds_to_the_container_env(running, oci):
    """Like runc: --env appends to process.env of config.json, PATH stays."""
    cid, _, _ = running(env=[PATH, "FROM_CONFIG=1"])
    env = oci("exec", "--env", "FOO=bar", cid, "/probe", "env").stdout.decode().splitlines()
    assert {PATH, "FROM_CONFIG=1", "FOO=bar"} <= set(env)


def test_exec_defaults_to_the_container_user(running, oci):
    """Like runc: without --user the process runs as process.user of config.json."""
    cid, _, _ = running(uid=1000, gid=1000)
    out = kv(oci("exec", cid, "/probe", "ids").stdout)
    assert (out["uid"], out["gid"]) == ("1000", "1000")


def test_exec_inherits_the_container_rlimits(running, oci):
    """Like runc: an exec'd process gets process.rlimits of config.json."""
    def edit(config):
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    cid, _, _ = running(edit=edit)
    assert oci("exec", cid, "/probe", "rlimit", "NOFILE").stdout.split() == [b"soft=100",
                                                                           b"hard=200"]


def test_foreground_exec_forwards_signals(running, oci, tmp_path):
    cid, _, _ = running()
    log = tmp_path / "exec.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen([oci.binary, "--root", oci.root, "exec", cid, "/probe",
                                   "signals"], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        wait_for(lambda: "ready=1" in read_text(log), what="the probe's handlers")
        runner.send_signal(signal.SIGHUP)
        wait_for(lambda: "sig=1\n" in read_text(log), what="sig=1 in the log")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(10) == 0, read_text(log)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_exec_process_file(running, oci, tmp_path):
    cid, _, _ = running()
    process = {"terminal": False, "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
               "args": ["/bin/sh", "-c", "/probe ids; /probe cwd; echo A=$A; exit 3"],
               "env": [PATH, "A=from-file"], "cwd": "/sys"}
    path = tmp_path / "process.json"
    path.write_text(json.dumps(process))
    proc = oci("exec", "--process", path, cid, check=False)
    assert proc.returncode == 3, proc.stderr
    out = kv(proc.stdout)
    assert (out["uid"], out["groups"], out["cwd"], out["A"]) == ("1000", "5", "/sys",
                                                                  "from-file")


def test_exec_missing_executable(running, oci):
    cid, _, _ = running()
    proc = oci("exec", cid, "/no/such/program", check=False)
    assert proc.returncode != 0
    assert b"executable file not found" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_exec_in_stopped_container_fails(oci, make_bundle, tmp_path):
    cid = unique("stopped")
    launch(oci, tmp_path / "log", "run", "--detach", "--bundle", make_bundle(["/probe", "true"]),
           cid)
    wait_status(oci, cid, "stopped")
    proc = oci("exec", cid, "/probe", "true", check=False)
    assert proc.returncode != 0
    assert b"stopped" in proc.stderr


def test_exec_detach_with_pid_file(running, oci, tmp_path):
    cid, pid, _ = running()
    pid_file = tmp_path / "exec.pid"
    log = tmp_path / "exec.log"
    launch(oci, log, "exec", "--detach", "--pid-file", pid_file, cid, "/bin/sh", "-c",
           "echo started; exec /probe sleep 60")
    epid = int(pid_file.read_text())
    assert pid_ns(epid) == pid_ns(pid)
    assert epid in json.loads(oci("ps", "--format", "json", cid).stdout)
    wait_for(lambda: "started" in read_text(log), what="output of the detached exec")
    assert open("/proc/%d/cmdline" % epid, "rb").read().split(b"\0")[:2] == [b"/probe",
                                                                            b"sleep"]


def test_exec_tty_with_console_socket(running, oci, tmp_path):
    cid, _, _ = running()
    console = ConsoleSocket(str(tmp_path / "exec-console.sock"))
    proc = oci("exec", "--tty", "--console-socket", console.path, cid, "/bin/sh", "-c",
               "/probe isatty 0; /probe isatty 2; exit 5", check=False)
    text = console.wait()
    assert proc.returncode == 5, proc.stderr
    assert text.split() == ["isatty=1", "isatty=1"]


def test_exec_tty_without_console_socket_is_refused(running, oci):
    cid, _, _ = running()
    proc = oci("exec", "--tty", cid, "/probe", "true", check=False)
    assert proc.returncode != 0
    assert b"--console-socket" in proc.stderr


def test_exec_process_starts_with_default_signal_state(running, oci):
    cid, _, _ = running()
    out = oci("exec", cid, "/probe", "cat", "/proc/self/status").stdout.decode()
    fields = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert int(fields["SigIgn"], 16) == 0, "ignored signals leak into exec: " + fields["SigIgn"]
    assert int(fields["SigBlk"], 16) == 0


# -- signals and zombies -------------------------------------------------------------------------

def test_kill_signals_reach_the_workload(running, oci):
    cid, _, log = running(["/probe", "signals"])
    wait_for(lambda: "ready=1" in read_text(log), what="the probe's handlers")
    out = kv(read_text(log))
    assert int(out["blocked"], 16) == 0 and int(out["ignored"], 16) == 0
    for name, num in (("USR1", 10), ("HUP", 1), ("SIGUSR2", 12), ("2", 2)):
        oci("kill", cid, name)
        wait_for(lambda: "sig=%d\n" % num in read_text(log), what="sig=%d in the log" % num)
    oci("kill", cid, "TERM")
    wait_status(oci, cid, "stopped")
    assert "sig=15\n" in read_text(log)


def test_kill_unknown_signal_is_refused(running, oci):
    cid, _, _ = running()
    proc = oci("kill", cid, "NOPE", check=False)
    assert proc.returncode != 0 and b"unknown signal" in proc.stderr
    assert oci.state(cid)["status"] == "running"


def test_foreground_run_forwards_signals(oci, make_bundle, tmp_path):
    """SIGTERM to the `run` process goes to the workload, whose exit becomes run's."""
    log = tmp_path / "log"
    with open(log, "wb") as out:
        runner = subprocess.Popen([oci.binary, "--root", oci.root, "run", "--bundle",
                                   make_bundle(["/probe", "signals"]), unique("fwd")],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        wait_for(lambda: "ready=1" in read_text(log), what="the probe's handlers")
        runner.send_signal(signal.SIGUSR1)
        wait_for(lambda: "sig=10\n" in read_text(log), what="sig=10 in the log")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(10) == 0, read_text(log)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_zombies_are_reaped(oci, make_bundle):
    proc = oci("run", "--bundle", make_bundle(["/probe", "zombies", "50"]), unique("zombie"),
               check=False)
    out = kv(proc.stdout)
    assert out["orphans"] == "50"
    assert out["unreaped"] == "0"
    assert proc.returncode == 0


# -- reboot, power off, halt (init/README.md) ------------------------------------------------------

@pytest.mark.parametrize("command, code", [
    (["reboot", "-f"], 128 + signal.SIGHUP),
    (["poweroff", "-f"], 128 + signal.SIGINT),
    (["halt", "-f"], 128 + signal.SIGINT),
    (["reboot"], 128 + signal.SIGHUP),
    (["poweroff"], 128 + signal.SIGINT),
    (["halt"], 128 + signal.SIGINT),
])
def test_reboot_forms(oci, make_bundle, command, code):
    bundle = make_bundle(["/bin/sh", "-c", "/bin/busybox %s; sleep 10; exit 99"
                          % " ".join(command)])
    proc = oci("run", "--bundle", bundle, unique("reboot"), check=False, timeout=30)
    assert proc.returncode == code, proc.stderr


def test_kill_term_from_the_runtime_just_stops(oci, make_bundle, tmp_path):
    cid = unique("stop")
    runner = subprocess.Popen([oci.binary, "--root", oci.root, "run", "--bundle",
                               make_bundle(["/probe", "sleep", "60"]), cid],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: oci("state", cid, check=False).returncode == 0 and
                 oci.state(cid)["status"] == "running", what="the container to run")
        oci("kill", cid, "TERM")
        assert runner.wait(10) == 128 + signal.SIGTERM
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_reboot_without_cap_sys_boot_is_refused(oci, make_bundle):
    def edit(config):
        for caps in config["process"]["capabilities"].values():
            if "CAP_SYS_BOOT" in caps:
                caps.remove("CAP_SYS_BOOT")
    bundle = make_bundle(["/bin/sh", "-c", "/bin/busybox reboot -f; exit 42"], edit)
    assert oci("run", "--bundle", bundle, unique("noboot"), check=False).returncode == 42


# -- hooks ---------------------------------------------------------------------------------------

HOOK_SCRIPT = '{ printf "%s " "$1"; cat; echo; } >> "$2"\n'


def logging_hook(script, kind, log, **extra):
    return dict({"path": "/bin/sh", "args": ["sh", str(script), kind, str(log)],
                 "env": [PATH]}, **extra)


def read_hook_log(path):
    """[(kind, state)] from the hook log, in order."""
    entries = []
    for line in read_text(path).splitlines():
        kind, _, state = line.partition(" ")
        entries.append((kind, json.loads(state)))
    return entries


def test_hooks_run_in_order_with_the_state(oci, make_bundle, tmp_path):
    """The five kinds that run in the runtime's namespaces (createContainer: in the
    container's mount namespace before pivot_root, where host paths are still visible)."""
    cid = unique("hooks")
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(HOOK_SCRIPT)
    kinds = ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]

    def edit(config):
        config["hooks"] = {kind: [logging_hook(script, kind, log)] for kind in kinds}
    bundle = make_bundle(["/probe", "true"], edit)
    launch(oci, tmp_path / "log", "create", "--bundle", bundle, cid)
    pid = oci.state(cid)["pid"]
    assert [k for k, _ in read_hook_log(log)] == kinds[:3]
    oci("start", cid)
    assert [k for k, _ in read_hook_log(log)] == kinds[:4]
    wait_status(oci, cid, "stopped")
    oci("delete", cid)
    entries = read_hook_log(log)
    assert [k for k, _ in entries] == kinds
    for kind, state in entries:
        assert state["id"] == cid and state["bundle"] == bundle, (kind, state)
        assert "ociVersion" in state, kind
        if kind != "poststop":
            assert state.get("pid") == pid, (kind, state)
    states = dict(entries)
    assert states["poststart"]["status"] == "running"
    assert states["poststop"]["status"] == "stopped"


def test_start_container_hook_runs_in_the_container_before_the_process(oci, make_bundle,
                                                                        tmp_path):
    """startContainer runs after `start`, inside the container (after pivot_root: its path
    and the log are the container's), before the process and before poststart."""
    cid = unique("starthook")
    shared = tmp_path / "shared"
    shared.mkdir()
    log = shared / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(HOOK_SCRIPT)

    def edit(config):
        config["mounts"].append({"destination": "/tmp", "type": "bind", "source": str(shared),
                                 "options": ["rbind", "rw"]})
        config["hooks"] = {
            "startContainer": [{"path": "/bin/sh", "env": ["PATH=/bin"], "args": [
                "sh", "-c", '{ printf "startContainer-on-$(hostname) "; cat; echo; } '
                            '>> /tmp/hooks.log']}],
            "poststart": [logging_hook(script, "poststart", log)],
        }
    bundle = make_bundle(["/bin/sh", "-c", "echo 'workload {}' >> /tmp/hooks.log"], edit,
                         hostname="inside")
    launch(oci, tmp_path / "log", "create", "--bundle", bundle, cid)
    pid = oci.state(cid)["pid"]
    assert not log.exists(), "startContainer ran before start"
    oci("start", cid)
    wait_status(oci, cid, "stopped")
    entries = read_hook_log(log)
    kinds = [k for k, _ in entries]
    assert sorted(kinds) == ["poststart", "startContainer-on-inside", "workload"]
    assert kinds[0] == "startContainer-on-inside"
    state = entries[0][1]
    assert state["id"] == cid and state.get("pid") == pid, state


def test_start_container_hook_runs_with_run(oci, make_bundle, tmp_path):
    """`run` is create + start: its startContainer hooks run too, before the process."""
    def edit(config):
        config["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": [
            "sh", "-c", "echo hook-ran > /run/hook"]}]}
    proc = oci("run", "--bundle", make_bundle(["/bin/cat", "/run/hook"], edit),
               unique("runhook"), check=False)
    assert (proc.returncode, proc.stdout) == (0, b"hook-ran\n"), proc.stderr


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create_and_leaves_nothing(oci, make_bundle, tmp_path, kind):
    """No state, and no cgroup (removing one fails while a process is left in it)."""
    cid = unique("badhook")

    def edit(config):
        config["hooks"] = {
            kind: [{"path": "/bin/sh", "args": ["sh", "-c", "echo boom >&2; exit 3"]}]}
    log = tmp_path / "log"
    pid_file = tmp_path / "pid"
    proc = launch(oci, log, "create", "--pid-file", pid_file, "--bundle",
                  make_bundle(["/probe", "sleep", "60"], edit), cid, check=False)
    assert proc.returncode != 0
    text = read_text(log)
    assert "%s hook #0" % kind in text and "exited with 3" in text and "boom" in text
    assert "Traceback" not in text
    assert not os.path.exists(os.path.join(oci.root, cid))
    assert not [d for d in cgroup_dirs(cid).values() if os.path.exists(d)]
    assert not pid_file.exists()


def test_failing_start_container_hook_fails_start(oci, make_bundle, tmp_path):
    """runtime-spec: a failing startContainer hook is an error of `start`, and the container
    stops without running the process."""
    cid = unique("badstart")
    marker = tmp_path / "shared"
    marker.mkdir()

    def edit(config):
        config["mounts"].append({"destination": "/tmp", "type": "bind", "source": str(marker),
                                 "options": ["rbind", "rw"]})
        config["hooks"] = {"startContainer": [{"path": "/bin/sh",
                                               "args": ["sh", "-c", "exit 4"]}]}
    launch(oci, tmp_path / "log", "create", "--bundle",
           make_bundle(["/bin/sh", "-c", "echo ran > /tmp/ran"], edit), cid)
    proc = oci("start", cid, check=False)
    wait_status(oci, cid, "stopped")
    assert not (marker / "ran").exists()
    assert proc.returncode != 0, "start succeeded although the startContainer hook failed"
    assert b"startContainer" in proc.stderr


def test_failing_start_container_hook_fails_run(oci, make_bundle, tmp_path):
    cid = unique("badrunhook")

    def edit(config):
        config["hooks"] = {"startContainer": [{"path": "/bin/sh",
                                               "args": ["sh", "-c", "exit 4"]}]}
    proc = oci("run", "--bundle", make_bundle(["/bin/echo", "process-ran"], edit), cid,
               check=False)
    assert proc.returncode != 0
    assert b"process-ran" not in proc.stdout
    assert b"startContainer" in proc.stderr
    assert not os.path.exists(os.path.join(oci.root, cid))
    assert not [d for d in cgroup_dirs(cid).values() if os.path.exists(d)]


def test_hook_timeout(oci, make_bundle, tmp_path):
    cid = unique("slowhook")

    def edit(config):
        config["hooks"] = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"],
                                         "timeout": 1}]}
    log = tmp_path / "log"
    began = time.monotonic()
    proc = launch(oci, log, "create", "--bundle", make_bundle(["/probe", "sleep", "60"], edit),
                  cid, check=False)
    assert time.monotonic() - began < 10
    assert proc.returncode != 0
    assert "timed out" in read_text(log)
    assert not os.path.exists(os.path.join(oci.root, cid))
