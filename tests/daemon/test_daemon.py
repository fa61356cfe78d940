"""edgertd with real containers: deployment, lifecycle, rollouts and rollbacks, restarts of
the daemon itself, driven through the CLI and the control socket."""

import json
import os
import select
import signal
import time

import pytest

from helpers.services import service_input

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")


def running_version(daemon, iid):
    info = daemon.inspect(iid)
    return info["version"] if info["state"] == "running" else None


def test_first_deployment_runs_and_logs(daemon, images):
    daemon.start()
    assert daemon.import_service(service_input("web", images["good"], env={"V": "1"})) == {
        "name": "web", "version": 1}
    iid = daemon.json("instance", "add", "web", "--id", "abc1")["id"]
    assert iid == "abc1"
    daemon.wait_for(lambda: running_version(daemon, iid) == 1, "version 1 running")
    daemon.wait_for(lambda: daemon.inspect(iid)["good_version"] == 1, "version 1 committed")
    logs = daemon.cli("logs", iid).stdout.decode()
    assert "started v=1" in logs
    ps = daemon.cli("ps").stdout.decode()
    assert "abc1" in ps and "running" in ps
    assert all(len(line) <= 80 for line in ps.splitlines())
    stats = daemon.json("stats", iid)
    assert stats[0]["pids"] >= 1 and stats[0]["memory_bytes"] > 0


def test_stop_start_restart(daemon, images):
    daemon.start()
    daemon.import_service(service_input("web", images["good"]))
    daemon.cli("instance", "add", "web", "--id", "s1")
    daemon.wait_for(lambda: daemon.inspect("s1")["good_version"] == 1, "committed")
    pid = daemon.inspect("s1")["pid"]
    daemon.cli("stop", "s1")
    info = daemon.inspect("s1")
    assert info["state"] == "stopped" and info["desired"] == "stopped"
    assert info["last_exit"]["kind"] == "stopped"
    daemon.cli("start", "s1")
    daemon.wait_for(lambda: daemon.inspect("s1")["state"] == "running", "running again")
    new_pid = daemon.inspect("s1")["pid"]
    assert new_pid != pid
    daemon.cli("restart", "s1")
    daemon.wait_for(lambda: daemon.inspect("s1")["pid"] not in (None, new_pid), "restarted")


def test_grace_period_ends_in_sigkill(daemon, images):
    daemon.start()
    daemon.import_service(service_input("stub", images["stubborn"], stop_grace_s=1))
    daemon.cli("instance", "add", "stub", "--id", "g1")
    daemon.wait_for(lambda: daemon.inspect("g1")["good_version"] == 1, "committed")
    started = time.monotonic()
    daemon.cli("stop", "g1")
    took = time.monotonic() - started
    assert 0.8 < took < 8, took
    assert daemon.inspect("g1")["state"] == "stopped"


def test_bad_version_is_rolled_back_with_volumes_kept(daemon, images):
    daemon.start()
    daemon.import_service(service_input("app", images["good"], volumes=[
        {"name": "data", "path": "/data"}]))
    daemon.cli("instance", "add", "app", "--id", "r1")
    daemon.wait_for(lambda: daemon.inspect("r1")["good_version"] == 1, "v1 committed")
    daemon.cli("exec", "r1", "sh", "-c", "echo keep > /data/file")
    # version 2 crashes at once: the watch fails, v1 comes back, v2 is marked failed
    daemon.import_service(dict(service_input("app", images["crash"], volumes=[
        {"name": "data", "path": "/data"}])))
    daemon.wait_for(lambda: 2 in daemon.inspect("r1")["failed_versions"], "v2 marked failed",
                    timeout=40)
    daemon.wait_for(lambda: daemon.inspect("r1")["rollout"]["outcome"], "rollback done")
    info = daemon.inspect("r1")
    assert info["good_version"] == 1 and info["rollout"]["outcome"] == "rolled-back"
    assert running_version(daemon, "r1") == 1
    out = daemon.cli("exec", "r1", "cat", "/data/file").stdout.decode()
    assert out == "keep\n"
    # not retried in a loop
    time.sleep(3)
    assert running_version(daemon, "r1") == 1


def test_pinning_and_disabled(daemon, images):
    daemon.start()
    daemon.import_service(service_input("pin", images["good"], env={"V": "1"}))
    daemon.import_service(service_input("pin", images["good"], env={"V": "2"}))
    daemon.cli("instance", "add", "pin", "--id", "p1", "--pin", "1")
    daemon.wait_for(lambda: daemon.inspect("p1")["good_version"] == 1, "pinned v1")
    assert "started v=1" in daemon.cli("logs", "p1").stdout.decode()
    daemon.cli("pin", "p1", "latest")
    daemon.wait_for(lambda: daemon.inspect("p1")["good_version"] == 2, "latest = v2")
    daemon.cli("pin", "p1", "disabled")
    daemon.import_service(service_input("pin", images["good"], env={"V": "3"}))
    time.sleep(2)
    info = daemon.inspect("p1")
    assert info["version"] == 2 and info["target_version"] is None


def test_daemon_restart_keeps_containers_running(daemon, images):
    daemon.start()
    daemon.import_service(service_input("keep", images["good"]))
    daemon.cli("instance", "add", "keep", "--id", "k1")
    daemon.wait_for(lambda: daemon.inspect("k1")["good_version"] == 1, "committed")
    pid = daemon.inspect("k1")["pid"]
    daemon.kill(signal.SIGKILL)
    daemon.start()
    info = daemon.inspect("k1")
    assert info["pid"] == pid and info["state"] == "running"
    # and the new daemon still learns how it ends
    os.kill(pid, signal.SIGKILL)
    daemon.wait_for(lambda: (daemon.inspect("k1")["last_exit"] or {}).get("kind") == "killed",
                    "exit learned after adoption")
    daemon.wait_for(lambda: daemon.inspect("k1")["state"] == "running", "restarted by policy")


def test_crash_loop_backs_off_and_gives_up(daemon, images):
    daemon.start()
    daemon.import_service(service_input("loop", images["good"], restart_policy={
        "mode": "always", "min_uptime_s": 5, "backoff_initial_s": 1, "backoff_max_s": 1,
        "backoff_factor": 2, "max_failures": 3}))
    daemon.cli("instance", "add", "loop", "--id", "c1")
    daemon.wait_for(lambda: daemon.inspect("c1")["good_version"] == 1, "committed")
    for _ in range(3):
        pid = daemon.wait_for(lambda: daemon.inspect("c1")["pid"], "running", timeout=10)
        os.kill(pid, signal.SIGKILL)
        daemon.wait_for(lambda: daemon.inspect("c1")["pid"] != pid, "exit seen")
    daemon.wait_for(lambda: daemon.inspect("c1")["state"] == "crash-loop", "gave up")
    daemon.cli("start", "c1")
    daemon.wait_for(lambda: daemon.inspect("c1")["state"] == "running", "started by hand")


@pytest.mark.parametrize("command,kind,restarts", [
    ("reboot", "reboot-requested", True),
    ("poweroff", "stopped-by-container", False),
])
def test_reboot_and_poweroff_from_inside(daemon, images, command, kind, restarts):
    daemon.start()
    daemon.import_service(service_input("rb", images["good"]))
    daemon.cli("instance", "add", "rb", "--id", "b1")
    daemon.wait_for(lambda: daemon.inspect("b1")["good_version"] == 1, "committed")
    pid = daemon.inspect("b1")["pid"]
    daemon.cli("exec", "b1", command, check=False)
    daemon.wait_for(lambda: (daemon.inspect("b1")["last_exit"] or {}).get("kind") == kind,
                    kind)
    if restarts:
        daemon.wait_for(lambda: daemon.inspect("b1")["pid"] not in (None, pid), "restarted")
    else:
        time.sleep(1.5)
        info = daemon.inspect("b1")
        assert info["state"] == "stopped" and info["desired"] == "stopped"


def test_run_rm_foreground_exit_code(daemon, make_bundle):
    daemon.start()
    bundle = make_bundle(["/bin/sh", "-c", "echo hi from run; exit 7"])
    proc = daemon.cli("run", "--bundle", bundle, check=False)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == b"hi from run\n"


def test_apply_and_status(daemon, images, tmp_path):
    daemon.start()
    doc = {"node_services": [service_input("doc", images["good"])],
           "instances": [{"id": "d1", "node_service": "doc",
                          "config_maps": {"settings.ini": "a=1\n"}}]}
    path = tmp_path / "desired.json"
    path.write_text(json.dumps(doc))
    dry = daemon.json("apply", "-f", str(path), "--dry-run")
    assert dry["applied"] is False and len(dry["changes"]) == 2
    daemon.cli("apply", "-f", str(path))
    daemon.wait_for(lambda: daemon.inspect("d1")["good_version"] == 1, "applied")
    again = daemon.json("apply", "-f", str(path))
    assert again["changes"] == []
    status = daemon.json("status")
    assert [i["id"] for i in status["instances"]] == ["d1"]
    out = daemon.cli("exec", "d1", "cat", "/host/settings.ini").stdout
    assert out == b"a=1\n"


def test_run_is_a_fresh_tmpfs_on_every_start(daemon, images):
    daemon.start()
    daemon.import_service(service_input("tmp", images["good"]))
    daemon.cli("instance", "add", "tmp", "--id", "t1")
    daemon.wait_for(lambda: daemon.inspect("t1")["good_version"] == 1, "committed")
    daemon.cli("exec", "t1", "sh", "-c", "echo x > /run/marker; echo y > /keep")
    assert daemon.cli("exec", "t1", "cat", "/run/marker").stdout == b"x\n"
    mounts = daemon.cli("exec", "t1", "cat", "/proc/self/mounts").stdout.decode()
    assert any(line.split()[1] == "/run" and line.split()[2] == "tmpfs"
               for line in mounts.splitlines())
    daemon.cli("restart", "t1")
    daemon.wait_for(lambda: daemon.inspect("t1")["state"] == "running", "running again")
    assert daemon.cli("exec", "t1", "cat", "/run/marker", check=False).returncode != 0
    # the writable layer of the version is kept across restarts (unlike /run)
    assert daemon.cli("exec", "t1", "cat", "/keep").stdout == b"y\n"


def test_device_boot_starts_what_should_run(daemon, images):
    """Power loss: the daemon and every container die and /run (a tmpfs) is empty at boot."""
    import shutil
    import subprocess
    daemon.start()
    daemon.import_service(service_input("boot", images["good"]))
    daemon.cli("instance", "add", "boot", "--id", "on1")
    daemon.cli("instance", "add", "boot", "--id", "off1")
    daemon.wait_for(lambda: daemon.inspect("off1")["good_version"] == 1, "committed")
    daemon.wait_for(lambda: daemon.inspect("on1")["good_version"] == 1, "committed")
    daemon.cli("stop", "off1")
    pid = daemon.inspect("on1")["pid"]
    daemon.kill(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f if daemon.run_dir in line]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    shutil.rmtree(daemon.run_dir)
    daemon.start()
    daemon.wait_for(lambda: daemon.inspect("on1")["state"] == "running", "started at boot")
    assert daemon.inspect("off1")["state"] == "stopped"


def test_logs_follow_and_events(daemon, images):
    import subprocess
    daemon.start()
    daemon.import_service(service_input("chat", images["good"]))
    events = subprocess.Popen([daemon.cli_bin, "--socket", daemon.socket, "events"],
                              stdout=subprocess.PIPE, env=daemon.env)
    try:
        daemon.cli("instance", "add", "chat", "--id", "e1")
        daemon.wait_for(lambda: daemon.inspect("e1")["good_version"] == 1, "committed")
        follow = subprocess.Popen([daemon.cli_bin, "--socket", daemon.socket, "logs", "-f",
                                   "e1"], stdout=subprocess.PIPE, env=daemon.env)
        try:
            time.sleep(0.5)
            daemon.cli("exec", "e1", "sh", "-c", "echo followed-line >> /proc/2/fd/1")
            seen = b""
            deadline = time.monotonic() + 10
            while b"followed-line\n" not in seen and time.monotonic() < deadline:
                if select.select([follow.stdout], [], [], 0.2)[0]:
                    seen += os.read(follow.stdout.fileno(), 4096)
            assert b"followed-line\n" in seen
        finally:
            follow.kill()
            follow.wait()
    finally:
        events.kill()
        out = events.communicate()[0].decode()
    assert "rollout-started" in out and "committed" in out


def test_exec_as_another_user(daemon, images):
    """`edgert exec -u`: numeric ids as given, names from the container's own /etc/passwd and
    /etc/group (read inside its root: a link planted there never reaches the host's), and a
    clear error for a name it does not have."""
    daemon.start()
    daemon.import_service(service_input("usr", images["good"]))
    daemon.cli("instance", "add", "usr", "--id", "u1")
    daemon.wait_for(lambda: daemon.inspect("u1")["state"] == "running", "running")

    def ids(*user):
        return daemon.cli("exec", "-u", *user, "u1", "sh", "-c",
                          "echo $(id -u) $(id -g)").stdout.decode().split()
    assert ids("1234:567") == ["1234", "567"]
    assert ids("nobody") == ["65534", "65534"]
    assert ids("nobody:0") == ["65534", "0"]
    failed = daemon.cli("exec", "-u", "edgert-nosuch", "u1", "true", check=False)
    assert failed.returncode != 0
    assert b"edgert-nosuch is not in the container's /etc/passwd" in failed.stderr, failed.stderr
    # the container swaps its passwd for a link to the host's: a host user must not resolve
    host_user = open("/etc/passwd").read().splitlines()[1].split(":")[0]  # e.g. daemon
    daemon.cli("exec", "u1", "sh", "-c", "mv /etc/passwd /etc/passwd.orig && "
               "ln -s ../../../../../../../../etc/passwd /etc/passwd")
    gone = daemon.cli("exec", "-u", host_user, "u1", "true", check=False)
    assert gone.returncode != 0 and b"not in the container's /etc/passwd" in gone.stderr, \
        gone.stderr


TERMINAL_SCRIPT = ("[ -t 0 ] && echo isatty; awk '{print \"ttynr=\" $7}' /proc/self/stat; "
                   "echo name=$(tty); echo size=$(stty size); echo term=$TERM; "
                   "read line; echo got=$line; echo size=$(stty size); exit 4")


def on_a_terminal(daemon, argv):
    """Runs the CLI on a pty of ours (33x101, TERM=vt100) with TERMINAL_SCRIPT in the
    container; resizes to 40x120 and types a line once the script is waiting for it.
    Returns (the CLI's exit code, what the terminal showed)."""
    import fcntl
    import struct
    import subprocess
    import termios
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    proc = subprocess.Popen([daemon.cli_bin, "--socket", daemon.socket] + argv,
                            stdin=slave, stdout=slave, stderr=slave,
                            env=dict(daemon.env, TERM="vt100"), start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 15
    sent = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
            if b"term=vt100" in out and not sent:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
                proc.send_signal(signal.SIGWINCH)  # not its controlling terminal: no SIGWINCH
                time.sleep(0.3)
                os.write(master, b"hello\r")
                sent = True
        return proc.wait(10), out.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def assert_terminal_in_the_container(code, text):
    assert code == 4, text
    assert "isatty" in text and "term=vt100" in text and "got=hello" in text, text
    assert "ttynr=0\r" not in text and "ttynr=" in text  # a controlling terminal
    assert "name=/dev/pts/0\r" in text, text  # the container's devpts: its first pty
    assert "size=33 101\r" in text and "size=40 120\r" in text, text


def test_exec_with_a_terminal(daemon, images):
    """`edgert exec -t` from a terminal: the process gets a pty of the container's own devpts
    as its controlling terminal (so `tty` names it), sized as the client's terminal, and
    follows the client's window size changes."""
    daemon.start()
    daemon.import_service(service_input("term", images["good"]))
    daemon.cli("instance", "add", "term", "--id", "x1")
    daemon.wait_for(lambda: daemon.inspect("x1")["state"] == "running", "running")
    assert_terminal_in_the_container(
        *on_a_terminal(daemon, ["exec", "-t", "x1", "sh", "-c", TERMINAL_SCRIPT]))


def test_run_with_a_terminal(daemon, make_bundle):
    """`edgert run -t` likewise: pid 1's workload is on a pty of the new container's devpts;
    the -t after the command belongs to it (run's options end there, as with docker run)."""
    daemon.start()
    bundle = make_bundle(["true"])
    assert_terminal_in_the_container(
        *on_a_terminal(daemon, ["run", "-t", "--name", "tty1", "--bundle", bundle,
                                "sh", "-c", TERMINAL_SCRIPT, "-t"]))
    daemon.wait_for(lambda: not os.path.exists(os.path.join(daemon.run_dir, "containers",
                                                            "tty1")), "removed at exit")


def test_stop_then_download_strategy(daemon, images):
    """The low-flash strategy stops the old version before fetching the new one."""
    daemon.start()
    daemon.import_service(service_input("low", images["good"], env={"V": "1"},
                                        rollout_strategy="stop-then-download"))
    daemon.cli("instance", "add", "low", "--id", "l1")
    daemon.wait_for(lambda: daemon.inspect("l1")["good_version"] == 1, "v1 committed")
    daemon.import_service(service_input("low", images["good"], env={"V": "2"},
                                        rollout_strategy="stop-then-download"))
    daemon.wait_for(lambda: daemon.inspect("l1")["good_version"] == 2, "v2 committed")
    history = daemon.inspect("l1")["rollout"]["history"]
    steps = [h[1] for h in history]
    assert steps.index("stop_old") < steps.index("fetch") < steps.index("start_new"), steps
    today = time.strftime("%Y-%m-%dT", time.gmtime())
    assert all(len(h) == 4 and h[3].startswith(today) and h[3].endswith("Z")
               for h in history), history  # each step's wall-clock time
    assert daemon.cli("exec", "l1", "sh", "-c", "echo $V").stdout == b"2\n"


def test_host_files_lxc_env_and_time_status(daemon, images):
    """/host/lxc.env holds the service's env exactly; .time-status follows NTP sync (here
    the firmware's hook file decides)."""
    env = {"PLAIN": "x", "SPACES": "a b  c", "QUOTES": "it's \"q\"", "DOLLAR": "$HOME `id`",
           "NEWLINE": "one\ntwo", "UTF": "gr\u00fc\u00dfe"}
    daemon.start()
    with open(os.path.join(daemon.run_dir, "time-status"), "w") as f:
        f.write("")
    daemon.import_service(service_input("hostf", images["good"], env=env))
    daemon.cli("instance", "add", "hostf", "--id", "h1")
    daemon.wait_for(lambda: daemon.inspect("h1")["state"] == "running", "running")
    for name, value in env.items():
        out = daemon.cli("exec", "h1", "sh", "-c", '. /host/lxc.env; printf %s "$%s"' % (
            "%s", name)).stdout
        assert out == value.encode(), name
    assert daemon.cli("exec", "h1", "cat", "/host/.time-status").stdout == b""
    with open(os.path.join(daemon.run_dir, "time-status"), "w") as f:
        f.write("synced by the firmware's NTP hook\n")
    daemon.wait_for(lambda: daemon.cli("exec", "h1", "cat", "/host/.time-status").stdout,
                    ".time-status filled", timeout=25)


def test_serial_console_runs_the_commands(daemon, images):
    """`edgert console` on a pty, typed at like a serial console: the same commands."""
    import subprocess
    daemon.start()
    daemon.import_service(service_input("con", images["good"]))
    daemon.cli("instance", "add", "con", "--id", "s9")
    master, slave = os.openpty()
    proc = subprocess.Popen([daemon.cli_bin, "--socket", daemon.socket, "console"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            env=dict(daemon.env, TERM="dumb"))
    os.close(slave)
    out = b""

    def read_until(marker, timeout=15):
        nonlocal out
        deadline = time.monotonic() + timeout
        while marker not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                out += os.read(master, 4096)
        return marker in out
    try:
        assert read_until(b"edgert> ")
        os.write(master, b"ps\r")
        assert read_until(b"s9"), out
        os.write(master, b"inspect nosuch\r")
        assert read_until(b"[exit 1]"), out
        os.write(master, b"exit\r")
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"\x1b" not in out


def test_old_version_is_kept_alive_while_a_fetch_waits_to_retry(daemon, images):
    """download-then-stop with the registry down: the fetch waits (retryable), the old
    version keeps running and its restart policy still works meanwhile."""
    daemon.start()
    daemon.import_service(service_input("wait", images["good"]))
    daemon.cli("instance", "add", "wait", "--id", "w1")
    daemon.wait_for(lambda: daemon.inspect("w1")["good_version"] == 1, "v1 committed")
    daemon.import_service(service_input("wait", "docker://127.0.0.1:1/none/such:1"))
    daemon.wait_for(lambda: (daemon.inspect("w1")["rollout"] or {}).get("retry_at"),
                    "the fetch waiting to retry")
    info = daemon.inspect("w1")
    assert info["state"] == "running" and info["version"] == 1 and not info["failed_versions"]
    pid = info["pid"]
    os.kill(pid, signal.SIGKILL)
    daemon.wait_for(lambda: daemon.inspect("w1")["pid"] not in (None, pid),
                    "v1 restarted by its policy during the wait")
    assert daemon.inspect("w1")["version"] == 1
