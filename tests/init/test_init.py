"""Black-box tests of edgert-init: real process trees, init as pid 1 of a fresh pid namespace.

Every run goes through util-linux `unshare --pid --fork --mount-proc --kill-child`, so the
namespace (and anything left in it) dies with the unshare process. The workloads are busybox.
busybox reboot/poweroff/halt are only ever run inside such a namespace.
"""

import fcntl
import os
import shutil
import signal
import struct
import subprocess
import termios
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUSYBOX = "/bin/busybox"
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
TIMEOUT = 10

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for unshare --pid"),
    pytest.mark.skipif(not os.path.exists(BUSYBOX), reason="needs busybox-static (/bin/busybox)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare"),
]


def sh(script):
    return [BUSYBOX, "sh", "-c", script]


def init_cmd(init_bin, workload, init_args=(), wrapper=(), pid_ns=True):
    """The command line: unshare, then an optional wrapper that execs init, then init."""
    return [*(UNSHARE if pid_ns else []), *wrapper, init_bin, *init_args, "--", *workload]


def run(init_bin, workload, **kw):
    return subprocess.run(init_cmd(init_bin, workload, **kw), capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.fixture
def start(init_bin):
    """Starts init in the background; kills what is left of it after the test."""
    started = []

    def start_init(workload, pass_fds=(), **kw):
        proc = subprocess.Popen(init_cmd(init_bin, workload, **kw), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                pass_fds=pass_fds)
        started.append(proc)
        return proc

    yield start_init
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(p) for p in f.read().split()]


def ready_for_signals(pid):
    """True once init has set up its signals (it ignores SIGTTIN/SIGTTOU right after blocking).

    SigBlk cannot tell: while sigwaitinfo waits, the kernel unblocks the waited-for signals.
    """
    tty_notices = 1 << (signal.SIGTTIN - 1) | 1 << (signal.SIGTTOU - 1)
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigIgn:"):
                return int(line.split()[1], 16) & tty_notices == tty_notices
    return False


def wait_until(predicate, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("timed out waiting for " + what)


def init_pid(proc):
    """Host pid of init (unshare's only child) once it is ready for signals."""
    def ready():
        kids = children(proc.pid)
        return kids and ready_for_signals(kids[0]) and kids[0]
    return wait_until(ready, "edgert-init to start")


def finish(proc):
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


# --- exit status -------------------------------------------------------------------------------

def test_all_exit_codes_pass_through(init_bin):
    batch = 32
    for first in range(0, 256, batch):
        procs = {code: subprocess.Popen(init_cmd(init_bin, sh("exit %d" % code)),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for code in range(first, first + batch)}
        for code, proc in procs.items():
            _, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == code
            assert err == b""  # init is quiet unless something fails


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGKILL, signal.SIGUSR1,
                                 signal.SIGTERM, signal.SIGALRM])
def test_workload_killed_by_signal_gives_128_plus_n(init_bin, sig):
    assert run(init_bin, sh("kill -%d $$" % sig)).returncode == 128 + sig


def test_exec_missing_program_gives_127(init_bin):
    result = run(init_bin, ["/nonexistent/prog"])
    assert result.returncode == 127
    assert result.stderr == "edgert-init: exec /nonexistent/prog: No such file or directory\n"
    assert run(init_bin, ["edgert-no-such-program"]).returncode == 127


def test_exec_not_executable_gives_126(init_bin, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("not a program\n")
    result = run(init_bin, [str(plain)])
    assert result.returncode == 126
    assert result.stderr == "edgert-init: exec %s: Permission denied\n" % plain
    assert run(init_bin, [str(tmp_path)]).returncode == 126


def test_program_found_through_path_of_init_environment(init_bin, tmp_path):
    prog = tmp_path / "workload"
    prog.write_text("#!%s sh\nexit 42\n" % BUSYBOX)
    prog.chmod(0o755)
    result = subprocess.run(init_cmd(init_bin, ["workload"]), timeout=TIMEOUT,
                            env={"PATH": "%s:/usr/bin:/bin" % tmp_path})
    assert result.returncode == 42


@pytest.mark.parametrize("args", [[], ["-t"], ["-t", "x", "true"], ["-t", "-1", "true"],
                                  ["-x", "true"]])
def test_usage_errors_exit_2(init_bin, args):
    result = subprocess.run([init_bin, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2
    assert result.stderr.startswith("edgert-init: ")


# --- signals -----------------------------------------------------------------------------------

FORWARDED = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGTERM, signal.SIGALRM, signal.SIGWINCH, signal.SIGCONT, signal.SIGURG,
             signal.SIGRTMIN + 3]

TRAPPING_WORKLOAD = ('trap "echo got $SIG; exit 0" $SIG; echo ready; '
                     'busybox sleep 5 & wait; exit 99')


def signal_name(sig):
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "SIGRTMIN+%d" % (sig - signal.SIGRTMIN)


@pytest.mark.parametrize("sig", FORWARDED, ids=signal_name)
def test_signal_from_outside_is_forwarded(start, sig):
    proc = start(sh(TRAPPING_WORKLOAD.replace("$SIG", str(int(sig)))))
    pid = init_pid(proc)
    assert proc.stdout.readline() == "ready\n"
    os.kill(pid, sig)
    code, out, err = finish(proc)
    assert (code, out, err) == (0, "got %d\n" % sig, "")


def test_sigterm_from_outside_stops_workload(start):
    proc = start(sh("echo ready; exec busybox sleep 5"))
    pid = init_pid(proc)
    assert proc.stdout.readline() == "ready\n"
    os.kill(pid, signal.SIGTERM)
    assert finish(proc)[0] == 128 + signal.SIGTERM


def test_without_pid_namespace_signals_are_forwarded(start):
    proc = start(sh("echo ready; exec busybox sleep 5"), pid_ns=False)
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    assert finish(proc)[0] == 128 + signal.SIGTERM


def test_workload_starts_with_default_signals(init_bin):
    def ignore_and_block():
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2, signal.SIGHUP})

    result = subprocess.run(init_cmd(init_bin, [BUSYBOX, "grep", "-E", "Sig(Ign|Blk)",
                                                "/proc/self/status"]),
                            capture_output=True, text=True, timeout=TIMEOUT,
                            preexec_fn=ignore_and_block)
    assert result.stdout.split() == ["SigBlk:", "0" * 16, "SigIgn:", "0" * 16]


def test_status_passes_through_when_started_with_sigchld_ignored(init_bin):
    # Without a pid namespace: util-linux unshare would reset SIGCHLD itself.
    result = subprocess.run(init_cmd(init_bin, sh("exit 3"), pid_ns=False), timeout=TIMEOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    assert result.returncode == 3


def test_workload_gets_terminal_foreground(init_bin):
    # As the runtime does for a tty: new session, the pty as controlling terminal, then init.
    master, slave = os.openpty()
    try:
        result = subprocess.run(
            init_cmd(init_bin, [BUSYBOX, "cat", "/proc/self/stat"]), stdin=slave,
            capture_output=True, text=True, timeout=TIMEOUT, start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 0, result.stderr
    fields = result.stdout.rsplit(")", 1)[1].split()
    pid = int(result.stdout.split()[0])
    pgrp, tpgid = int(fields[2]), int(fields[5])
    assert pgrp == pid, "workload is not its own process group leader"
    assert tpgid == pgrp, "workload group is not the terminal foreground"


# --- process hygiene ---------------------------------------------------------------------------

def test_orphans_are_reaped(init_bin):
    # Each subshell exits at once, leaving its sleep to init; by 0.8 s all sleeps have exited.
    script = ("for i in 1 2 3 4 5 6 7 8; do (busybox sleep 0.5 &); done; "
              "busybox cat /proc/1/task/1/children; echo; busybox sleep 0.8; "
              "busybox cat /proc/[0-9]*/stat")
    result = run(init_bin, sh(script))
    assert result.returncode == 0, result.stderr
    init_children, *stats = result.stdout.splitlines()
    assert len(init_children.split()) > 1, "orphans were not reparented to init"
    states = {line.split()[0]: line.rsplit(")", 1)[1].split()[0] for line in stats}
    assert "Z" not in states.values(), states


def test_no_inherited_fds_reach_init_or_workload(start):
    extra = os.open("/dev/null", os.O_RDONLY)
    read_end, write_end = os.pipe()
    try:
        proc = start([BUSYBOX, "sleep", "5"], init_args=["-w"],
                     pass_fds=(extra, read_end, write_end))
    finally:
        for fd in (extra, read_end, write_end):
            os.close(fd)
    pid = init_pid(proc)
    assert sorted(os.listdir("/proc/%d/fd" % pid)) == ["0", "1", "2"]
    os.kill(pid, signal.SIGCONT)

    def workload_execed():
        kids = children(pid)
        if not kids:
            return None
        with open("/proc/%d/cmdline" % kids[0], "rb") as f:
            return f.read().startswith(b"%s\0sleep" % BUSYBOX.encode()) and kids[0]
    workload = wait_until(workload_execed, "the workload to start")
    assert sorted(os.listdir("/proc/%d/fd" % workload)) == ["0", "1", "2"]


def test_init_is_not_dumpable(init_bin):
    # Without CAP_SYS_PTRACE (nor CAP_SYS_ADMIN/CAP_PERFMON, which also pass the check on
    # recent kernels) only dumpability decides. A plain child of the workload is the control.
    script = ("busybox cat /proc/1/environ >/dev/null 2>&1; echo init=$?; "
              "busybox sleep 1 & busybox cat /proc/$!/environ >/dev/null; echo child=$?; kill $!")
    no_ptrace = ["setpriv", "--bounding-set=-sys_ptrace,-sys_admin,-perfmon"]
    result = run(init_bin, sh(script), wrapper=no_ptrace)
    assert result.stdout.split() == ["init=1", "child=0"]


# --- -w: wait for start ------------------------------------------------------------------------

def test_wait_for_sigcont_from_outside(start, tmp_path):
    marker = tmp_path / "ran"
    proc = start(sh("busybox touch %s; exit 7" % marker), init_args=["-w"])
    pid = init_pid(proc)
    os.kill(pid, signal.SIGWINCH)  # not terminating: ignored while waiting
    subprocess.run(["nsenter", "--target", str(pid), "--pid", "--", BUSYBOX, "kill", "-CONT", "1"],
                   check=True, timeout=TIMEOUT)  # from inside: not a start
    time.sleep(0.1)
    assert children(pid) == [] and not marker.exists()
    os.kill(pid, signal.SIGCONT)
    assert finish(proc)[0] == 7
    assert marker.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                                 signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM])
def test_terminating_signal_while_waiting_exits_128_plus_n(start, tmp_path, sig):
    marker = tmp_path / "ran"
    proc = start(sh("busybox touch %s" % marker), init_args=["-w"])
    os.kill(init_pid(proc), sig)
    assert finish(proc)[0] == 128 + sig
    assert not marker.exists()


def test_wait_without_pid_namespace_takes_any_sigcont(start):
    proc = start(sh("exit 5"), init_args=["-w"], pid_ns=False)
    wait_until(lambda: ready_for_signals(proc.pid), "edgert-init to start")
    proc.send_signal(signal.SIGCONT)
    assert finish(proc)[0] == 5


# --- reboot, poweroff, halt --------------------------------------------------------------------

@pytest.mark.parametrize("applet,sig", [
    ("reboot -f", signal.SIGHUP), ("poweroff -f", signal.SIGINT), ("halt -f", signal.SIGINT),
])
def test_forced_reboot_forms_end_pid_namespace_with_signal(init_bin, applet, sig):
    result = run(init_bin, sh("busybox %s; busybox sleep 5" % applet))
    # util-linux unshare re-raises the death signal of its child on itself.
    assert result.returncode == -sig, result.stderr


@pytest.mark.parametrize("applet,sig", [
    ("reboot", signal.SIGHUP), ("poweroff", signal.SIGINT), ("halt", signal.SIGINT),
])
def test_plain_reboot_forms_terminate_then_end_like_forced(init_bin, applet, sig):
    started = time.monotonic()
    # Short sleeps: a SIGTERM that hits a forked child before its exec is lost.
    result = run(init_bin, sh('trap "echo terminated; exit 0" TERM; busybox %s; '
                              'while :; do busybox sleep 0.1; done' % applet))
    assert result.returncode == -sig, result.stderr
    assert result.stdout == "terminated\n"
    assert time.monotonic() - started < 3, "did not stop as soon as the workload was gone"


def test_reboot_kills_after_grace_period(init_bin):
    started = time.monotonic()
    result = run(init_bin, sh("trap '' TERM; busybox reboot; busybox sleep 5"),
                 init_args=["-t", "1"])
    elapsed = time.monotonic() - started
    assert result.returncode == -signal.SIGHUP
    assert 1 <= elapsed < 3


def test_reboot_without_cap_sys_boot_is_an_ordinary_sigterm(init_bin):
    result = run(init_bin, sh("busybox reboot; busybox sleep 5"),
                 wrapper=["setpriv", "--bounding-set=-sys_boot"])
    assert result.returncode == 128 + signal.SIGTERM


# --- -s: the exit record ----------------------------------------------------------------------

@pytest.fixture
def record(tmp_path):
    """An open exit-record file (pre-filled: init must replace what was there); read() reads it."""
    path = tmp_path / "exit"
    path.write_text("stale record from an earlier run\n")
    fd = os.open(path, os.O_RDWR)

    class Record:
        args = ["-s", str(fd)]
        fds = (fd,)

        @staticmethod
        def read():
            return path.read_text()
    yield Record
    os.close(fd)


def run_recorded(init_bin, record, workload, init_args=(), **kw):
    return subprocess.run(init_cmd(init_bin, workload, init_args=[*record.args, *init_args], **kw),
                          capture_output=True, text=True, timeout=TIMEOUT, pass_fds=record.fds)


@pytest.mark.parametrize("code", [0, 3, 126, 127, 143, 255])
def test_record_of_exit_code(init_bin, record, code):
    result = run_recorded(init_bin, record, sh("exit %d" % code))
    assert result.returncode == code
    assert record.read() == "exited %d\n" % code


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV])
def test_record_of_signal_death(init_bin, record, sig):
    result = run_recorded(init_bin, record, sh("kill -%d $$" % sig))
    assert result.returncode == 128 + sig
    assert record.read() == "signaled %d\n" % sig


def test_record_of_failed_exec(init_bin, record, tmp_path):
    assert run_recorded(init_bin, record, ["/nonexistent/prog"]).returncode == 127
    assert record.read() == "exec-failed 127\n"
    assert run_recorded(init_bin, record, [str(tmp_path)]).returncode == 126
    assert record.read() == "exec-failed 126\n"


@pytest.mark.parametrize("applet,sig,line", [
    ("reboot", signal.SIGHUP, "reboot\n"), ("poweroff", signal.SIGINT, "poweroff\n"),
    ("halt", signal.SIGINT, "halt\n"),
])
def test_record_of_reboot_requests(init_bin, record, applet, sig, line):
    result = run_recorded(init_bin, record, sh("busybox %s; busybox sleep 5" % applet))
    assert result.returncode == -sig, result.stderr
    assert record.read() == line


def test_forced_reboot_leaves_record_empty(init_bin, record):
    # The kernel kills pid 1 itself: init cannot report, and the stale record must be gone.
    result = run_recorded(init_bin, record, sh("busybox reboot -f; busybox sleep 5"))
    assert result.returncode == -signal.SIGHUP
    assert record.read() == ""


def test_record_of_signal_before_start(start, record):
    proc = start(sh("exit 0"), init_args=["-w", *record.args], pass_fds=record.fds)
    os.kill(init_pid(proc), signal.SIGTERM)
    assert finish(proc)[0] == 128 + signal.SIGTERM
    assert record.read() == "signaled %d\n" % signal.SIGTERM


def test_record_of_init_failure(init_bin, record):
    # fork fails: no process may be forked by an unprivileged uid with RLIMIT_NPROC 0.
    wrapper = ["prlimit", "--nproc=0", "setpriv", "--reuid=65534", "--regid=65534",
               "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    result = run_recorded(init_bin, record, ["true"], wrapper=wrapper)
    assert result.returncode == 1
    assert result.stderr.startswith("edgert-init: fork: ")
    assert record.read() == "init-failed\n"


def test_record_fd_is_kept_by_init_only(start, record):
    fd = record.fds[0]
    proc = start(sh("echo ready; exec busybox sleep 5"), init_args=record.args,
                 pass_fds=record.fds)
    pid = init_pid(proc)
    assert sorted(os.listdir("/proc/%d/fd" % pid)) == sorted(["0", "1", "2", str(fd)])
    assert proc.stdout.readline() == "ready\n"
    workload = children(pid)[0]
    assert sorted(os.listdir("/proc/%d/fd" % workload)) == ["0", "1", "2"]
    os.kill(pid, signal.SIGTERM)
    assert finish(proc)[0] == 128 + signal.SIGTERM
    assert record.read() == "signaled %d\n" % signal.SIGTERM


@pytest.mark.parametrize("value", ["1", "2", "x", "", "999"])
def test_bad_record_fd_is_a_usage_error(init_bin, value):
    result = subprocess.run([init_bin, "-s", value, "true"], capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 2
    assert result.stderr == "edgert-init: -s %s: want an open fd above 2\n" % value


def test_record_must_be_a_file(init_bin):
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run([init_bin, "-s", str(write_end), "true"], capture_output=True,
                                text=True, timeout=TIMEOUT, pass_fds=(write_end,))
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 1
    assert result.stderr.startswith("edgert-init: -s %d: " % write_end)


# --- build -------------------------------------------------------------------------------------

def elf_has_interpreter(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "expects a 64-bit ELF"
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return 3 in types  # PT_INTERP


@pytest.mark.skipif(shutil.which("musl-gcc") is None, reason="needs musl-gcc (musl-tools)")
def test_musl_build_is_static_and_small(tmp_path):
    for name in ("edgert-init.c", "Makefile"):
        shutil.copy(os.path.join(REPO, "init", name), tmp_path)
    subprocess.run(["make", "-s", "-C", str(tmp_path), "CC=musl-gcc"], check=True, timeout=60)
    binary = tmp_path / "edgert-init"
    assert binary.stat().st_size <= 100 * 1024
    assert not elf_has_interpreter(binary)
