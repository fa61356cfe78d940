"""edgert.native against the real kernel.

Every call that changes process or namespace state runs in a forked child
(``in_child``), so the test process keeps its namespaces, capabilities and
file descriptors. Tests that need root, a cgroup2 mount or an architecture
skip with the reason.
"""

import contextlib
import errno
import os
import pickle
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import traceback

import pytest

from edgert import linuxconst as lc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
x86_64_only = pytest.mark.skipif(os.uname().machine != "x86_64",
                                 reason="hand-assembled filter checks AUDIT_ARCH_X86_64")


@pytest.fixture(scope="module")
def n(native_built):
    from edgert import native
    return native


def in_child(fn, *args):
    """Runs fn(*args) in a forked child; returns its result or raises its exception."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                outcome = (True, fn(*args), "")
            except BaseException as e:
                outcome = (False, e, traceback.format_exc())
            try:
                data = pickle.dumps(outcome)
            except Exception:
                data = pickle.dumps((False, RuntimeError(repr(outcome[1])), outcome[2]))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise AssertionError(f"child died without reporting (wait status {status:#x})")
    ok, value, child_tb = pickle.loads(data)
    if ok:
        return value
    value.add_note("in the forked child:\n" + child_tb)
    raise value


@contextlib.contextmanager
def unless_missing(what, *errnos):
    """Skips the test when the kernel or emulator lacks what (ENOSYS, or errnos)."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSYS, *errnos):
            pytest.skip(f"{what} unavailable here (kernel too old or qemu-user): {e.strerror}")
        raise


def private_mount_ns(n):
    n.unshare(lc.CLONE_NEWNS)
    n.mount(None, "/", None, lc.MS_REC | lc.MS_PRIVATE, None)


def writable(path):
    try:
        with open(path, "w"):
            return True
    except OSError as e:
        if e.errno != errno.EROFS:
            raise
        return False


# -- namespaces and mounts ---------------------------------------------------

@needs_root
def test_mount_and_umount_tmpfs_in_new_mount_ns(n, tmp_path):
    target = str(tmp_path)

    def child():
        private_mount_ns(n)
        n.mount("tmpfs", target, "tmpfs", lc.MS_NOSUID | lc.MS_NODEV, "size=1m,mode=0700")
        st = os.statvfs(target)
        mounted = (os.path.ismount(target), st.f_blocks * st.f_frsize, oct(os.stat(target).st_mode))
        n.umount2(target, lc.MNT_DETACH)
        return mounted, os.path.ismount(target)

    assert in_child(child) == ((True, 1 << 20, "0o40700"), False)
    assert not os.path.ismount(target)


@needs_root
def test_pivot_root_into_tmpfs(n, tmp_path):
    root = str(tmp_path)

    def child():
        private_mount_ns(n)
        n.mount("tmpfs", root, "tmpfs", 0, None)
        os.mkdir(os.path.join(root, "old"))
        open(os.path.join(root, "marker"), "w").close()
        n.pivot_root(root, os.path.join(root, "old"))
        os.chdir("/")
        n.umount2("/old", lc.MNT_DETACH)
        return sorted(os.listdir("/"))

    assert in_child(child) == ["marker", "old"]


@needs_root
def test_sethostname_and_setns_back(n):
    original = os.uname().nodename

    def child():
        host_uts = os.open("/proc/self/ns/uts", os.O_RDONLY | os.O_CLOEXEC)
        n.unshare(lc.CLONE_NEWUTS)
        n.sethostname("edgert-test")
        n.setdomainname("edgert.example")
        with open("/proc/sys/kernel/domainname") as f:
            inside = (os.uname().nodename, f.read().strip())
        n.setns(host_uts, lc.CLONE_NEWUTS)
        return inside, os.uname().nodename

    assert in_child(child) == (("edgert-test", "edgert.example"), original)
    assert os.uname().nodename == original


@needs_root
def test_open_tree_move_mount_makes_recursive_read_only_bind(n, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()

    def child():
        private_mount_ns(n)
        n.mount("tmpfs", src, "tmpfs", 0, None)
        os.mkdir(src / "sub")
        n.mount("tmpfs", src / "sub", "tmpfs", 0, None)
        fd = n.open_tree(lc.AT_FDCWD, str(src), lc.OPEN_TREE_CLONE | lc.AT_RECURSIVE)
        n.mount_setattr(fd, "", lc.AT_EMPTY_PATH | lc.AT_RECURSIVE, attr_set=lc.MOUNT_ATTR_RDONLY)
        n.move_mount(fd, "", lc.AT_FDCWD, str(dst), lc.MOVE_MOUNT_F_EMPTY_PATH)
        return (os.get_inheritable(fd), writable(dst / "f"), writable(dst / "sub" / "f"),
                writable(src / "sub" / "f"))

    with unless_missing("open_tree/move_mount/mount_setattr"):
        outcome = in_child(child)
    assert outcome == (False, False, False, True)
    assert not os.path.ismount(dst)


@needs_root
def test_mknod_creates_a_device_and_names_the_path_on_error(n, tmp_path):
    path = str(tmp_path / "null")

    def child():
        n.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        rdev = os.stat(path).st_rdev
        n.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        return rdev

    with pytest.raises(FileExistsError) as info:
        in_child(child)
    assert f"mknod {path}: File exists" in str(info.value)
    assert info.value.filename == path
    assert os.stat(path).st_rdev == os.makedev(1, 3)


@needs_root
def test_errors_name_the_operation_and_path(n, tmp_path):
    missing = str(tmp_path / "missing")
    plain = str(tmp_path)

    def child():
        private_mount_ns(n)
        caught = []
        for call in (lambda: n.mount("tmpfs", missing, "tmpfs", 0, None),
                     lambda: n.mount(plain, missing, None, lc.MS_BIND, None),
                     lambda: n.umount2(plain, 0),
                     lambda: n.pivot_root(missing, plain),
                     lambda: n.setns(12345, lc.CLONE_NEWNET),
                     lambda: n.unshare(1)):
            try:
                call()
            except OSError as e:
                caught.append((e.errno, e.strerror, e.filename))
        return caught

    assert in_child(child) == [
        (errno.ENOENT, f"mount tmpfs on {missing}: No such file or directory", missing),
        (errno.ENOENT, f"mount {plain} on {missing} (flags 0x1000): No such file or directory",
         missing),
        (errno.EINVAL, f"umount2 {plain}: Invalid argument", plain),
        (errno.ENOENT, f"pivot_root {missing} (old root at {plain}): No such file or directory",
         missing),
        (errno.EBADF, "setns(net): Bad file descriptor", None),
        (errno.EINVAL, "unshare(0x1): Invalid argument", None),
    ]


# -- capabilities and prctl --------------------------------------------------

@needs_root
def test_capset_drops_a_capability(n):
    raw = 1 << lc.CAPABILITIES["CAP_NET_RAW"]

    def child():
        eff, perm, inh = n.capget()
        n.capset(eff & ~raw, perm & ~raw, inh)
        after = n.capget(os.getpid())
        try:
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
            raw_socket = True
        except PermissionError:
            raw_socket = False
        return bool(eff & raw), bool(after[0] & raw), bool(after[1] & raw), raw_socket

    assert in_child(child) == (True, False, False, False)
    assert n.capget()[0] & raw


def test_capget_of_a_missing_pid_fails(n):
    with pytest.raises(ProcessLookupError, match=r"capget\(999999999\)"):
        n.capget(999999999)


@needs_root
def test_bounding_set_drop(n):
    cap = lc.CAPABILITIES["CAP_NET_RAW"]

    def child():
        before = n.bounding_has(cap)
        n.bounding_drop(cap)
        return before, n.bounding_has(cap)

    assert in_child(child) == (True, False)
    with pytest.raises(OSError, match=r"prctl\(PR_CAPBSET_READ, 999\): Invalid argument"):
        n.bounding_has(999)


@needs_root
def test_ambient_raise_and_clear(n):
    cap = lc.CAPABILITIES["CAP_NET_BIND_SERVICE"]

    def child():
        eff, perm, inh = n.capget()
        n.capset(eff, perm, inh | 1 << cap)
        n.ambient_raise(cap)
        raised = n.ambient_is_set(cap), proc_status("CapAmb")
        n.ambient_clear_all()
        return raised, n.ambient_is_set(cap)

    assert in_child(child) == ((True, f"{1 << cap:016x}"), False)


def proc_status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1]
    raise KeyError(field)


def test_process_flags(n):
    def child():
        n.set_no_new_privs()
        n.set_dumpable(False)
        undumpable = n.get_dumpable()
        n.set_dumpable(True)
        n.set_pdeathsig(signal.SIGKILL)
        n.set_keepcaps(True)
        return n.get_no_new_privs(), proc_status("NoNewPrivs"), undumpable, n.get_dumpable()

    assert in_child(child) == (True, "1", False, True)


def test_child_subreaper_adopts_orphans(n):
    def child():
        n.set_child_subreaper(True)
        middle = os.fork()
        if middle == 0:
            orphan = os.fork()
            if orphan == 0:
                time.sleep(0.2)
                os._exit(7)
            os._exit(0)
        os.waitpid(middle, 0)
        pid, status = os.wait()
        return os.WEXITSTATUS(status)

    with unless_missing("PR_SET_CHILD_SUBREAPER", errno.EINVAL):
        assert in_child(child) == 7


# -- seccomp -----------------------------------------------------------------

AUDIT_ARCH_X86_64 = 0xC000003E
NR_GETPPID_X86_64 = 110
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06


def sock_filter(code, k, jt=0, jf=0):
    return struct.pack("=HBBI", code, jt, jf, k)


@x86_64_only
def test_seccomp_filter_returns_eperm_for_getppid(n):
    prog = b"".join([
        sock_filter(BPF_LD_W_ABS, 4),                                # seccomp_data.arch
        sock_filter(BPF_JEQ_K, AUDIT_ARCH_X86_64, jt=0, jf=3),
        sock_filter(BPF_LD_W_ABS, 0),                                # seccomp_data.nr
        sock_filter(BPF_JEQ_K, NR_GETPPID_X86_64, jt=0, jf=1),
        sock_filter(BPF_RET_K, lc.SECCOMP_RET_ERRNO | errno.EPERM),
        sock_filter(BPF_RET_K, lc.SECCOMP_RET_ALLOW),
    ])

    def child():
        before = os.getppid()
        n.set_no_new_privs()
        ret = n.seccomp_install(prog)
        return before > 1, ret, os.getppid(), os.getpid() > 1

    assert in_child(child) == (True, 0, -errno.EPERM, True)


def test_seccomp_new_listener_returns_an_fd(n):
    def child():
        n.set_no_new_privs()
        fd = n.seccomp_install(sock_filter(BPF_RET_K, lc.SECCOMP_RET_ALLOW),
                               lc.SECCOMP_FILTER_FLAG_NEW_LISTENER)
        return fd > 2, os.readlink(f"/proc/self/fd/{fd}")

    with unless_missing("seccomp(2)"):
        outcome = in_child(child)
    assert outcome == (True, "anon_inode:seccomp notify")


def test_seccomp_refuses_bad_programs(n):
    with pytest.raises(ValueError):
        n.seccomp_install(b"\0" * 12)

    def child():
        n.set_no_new_privs()
        n.seccomp_install(sock_filter(0xFFFF, 0))

    with pytest.raises(OSError, match=r"seccomp\(SET_MODE_FILTER, flags=0x0, 1 instructions\): "
                                      r"Invalid argument"):
        in_child(child)


# -- processes and file descriptors ------------------------------------------

def test_pidfd_open_and_send_signal(n):
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(30)
        finally:
            os._exit(0)
    fd = None
    try:
        fd = n.pidfd_open(pid)
        n.pidfd_send_signal(fd, signal.SIGTERM)
        readable = select.select([fd], [], [], 10)[0]
        _, status = os.waitpid(pid, 0)
        pid = None
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        if fd is not None:
            os.close(fd)
    assert readable == [fd]
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


def test_pidfd_open_of_a_reaped_child_fails(n):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(ProcessLookupError, match=rf"pidfd_open\({pid}\): No such process"):
        n.pidfd_open(pid)


def fd_is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@pytest.mark.parametrize("close", ["syscall", "listing_fallback"])
def test_close_range_cloexec_then_close(n, close):
    fn = n.close_range if close == "syscall" else n._close_range_by_listing
    fds = (700, 701, 702)

    def child():
        for target in fds:
            fd = os.open("/dev/null", os.O_RDONLY)
            os.dup2(fd, target, inheritable=True)
            os.close(fd)
        fn(700, 702, lc.CLOSE_RANGE_CLOEXEC)
        inheritable = [os.get_inheritable(fd) for fd in fds]
        fn(700, 701, 0)
        return inheritable, [fd_is_open(fd) for fd in fds]

    assert in_child(child) == ([False, False, False], [False, False, True])


def test_close_range_rejects_a_reversed_range(n):
    def child():
        n.close_range(5, 3)

    with pytest.raises(OSError, match=r"close_range\(5, 3, 0x0\): Invalid argument"):
        in_child(child)


def test_openat2_in_root_contains_escaping_symlinks(n, tmp_path):
    if not n.have_openat2():
        pytest.skip("openat2 unavailable here (kernel < 5.6 or qemu-user)")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("inside\n")
    os.symlink("../../../../../etc/passwd", root / "escape")
    os.symlink("/etc/passwd", root / "absolute")
    rootfd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in ("escape", "absolute"):
            fd = n.openat2(rootfd, name, os.O_RDONLY, resolve=lc.RESOLVE_IN_ROOT)
            try:
                assert not os.get_inheritable(fd)
                assert os.read(fd, 100) == b"inside\n"
            finally:
                os.close(fd)
        with pytest.raises(OSError) as info:
            n.openat2(rootfd, "escape", os.O_RDONLY, resolve=lc.RESOLVE_BENEATH)
    finally:
        os.close(rootfd)
    assert info.value.errno == errno.EXDEV
    assert info.value.strerror == f"openat2 'escape' under fd {rootfd}: Invalid cross-device link"
    assert info.value.filename == "escape"


# -- eBPF cgroup device programs ---------------------------------------------

BPF_MOV64_IMM = 0xB7
BPF_EXIT = 0x95


def bpf_insn(code, dst=0, src=0, off=0, imm=0):
    regs = dst | src << 4 if sys.byteorder == "little" else dst << 4 | src
    return struct.pack("=BBhi", code, regs, off, imm)


def device_prog(verdict):
    return bpf_insn(BPF_MOV64_IMM, dst=0, imm=verdict) + bpf_insn(BPF_EXIT)


def bpf_prog_id(fd):
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("prog_id:"):
                return int(line.split()[1])
    raise KeyError("prog_id")


@pytest.fixture
def test_cgroup2():
    """A cgroup2 directory below this process's own cgroup, removed afterwards."""
    mount = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                mount = fields[4]
                break
    if mount is None:
        pytest.skip("no cgroup2 mount")
    with open("/proc/self/cgroup") as f:
        own = next(line.rstrip("\n")[3:] for line in f if line.startswith("0::"))
    path = os.path.join(mount, own.lstrip("/"), f"edgert-test-native-{os.getpid()}")
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)


@needs_root
def test_bpf_device_prog_attach_query_detach(n, test_cgroup2):
    with unless_missing("bpf(2)"):
        prog = n.bpf_prog_load(lc.BPF_PROG_TYPE_CGROUP_DEVICE, device_prog(1))
    cg = os.open(test_cgroup2, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        prog_id = bpf_prog_id(prog)
        n.bpf_prog_attach(cg, prog, lc.BPF_CGROUP_DEVICE, lc.BPF_F_ALLOW_MULTI)
        try:
            attached = n.bpf_prog_query(cg, lc.BPF_CGROUP_DEVICE)
            by_id = n.bpf_prog_get_fd_by_id(prog_id)
            try:
                fetched_id = bpf_prog_id(by_id)
            finally:
                os.close(by_id)
        finally:
            n.bpf_prog_detach2(cg, prog, lc.BPF_CGROUP_DEVICE)
        after = n.bpf_prog_query(cg, lc.BPF_CGROUP_DEVICE)
    finally:
        os.close(cg)
        os.close(prog)
    assert attached == [prog_id]
    assert fetched_id == prog_id
    assert after == []


@needs_root
def test_bpf_deny_program_blocks_devices_in_the_cgroup(n, test_cgroup2):
    with unless_missing("bpf(2)"):
        prog = n.bpf_prog_load(lc.BPF_PROG_TYPE_CGROUP_DEVICE, device_prog(0))
    cg = os.open(test_cgroup2, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        n.bpf_prog_attach(cg, prog, lc.BPF_CGROUP_DEVICE, lc.BPF_F_ALLOW_MULTI)
        try:
            def child():
                with open(os.path.join(test_cgroup2, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
                try:
                    os.close(os.open("/dev/null", os.O_RDONLY))
                    return "opened"
                except PermissionError:
                    return "denied"

            outcome = in_child(child)
        finally:
            n.bpf_prog_detach2(cg, prog, lc.BPF_CGROUP_DEVICE)
    finally:
        os.close(cg)
        os.close(prog)
    assert outcome == "denied"


@needs_root
def test_bpf_prog_load_error_carries_the_verifier_log(n):
    with unless_missing("bpf(2)"), pytest.raises(PermissionError) as info:
        n.bpf_prog_load(lc.BPF_PROG_TYPE_CGROUP_DEVICE, bpf_insn(BPF_EXIT))
    message = info.value.strerror
    assert message.startswith("bpf(PROG_LOAD, type 15, 1 instructions): Permission denied; verifier:")
    assert "R0 !read_ok" in message


def test_bpf_prog_load_rejects_partial_instructions(n):
    with pytest.raises(ValueError):
        n.bpf_prog_load(lc.BPF_PROG_TYPE_CGROUP_DEVICE, b"\0" * 12)


# -- scheduling and process attributes ---------------------------------------

def test_personality_linux32(n):
    def child():
        previous = n.personality(lc.PER_LINUX32)
        return previous, n.personality(lc.PERSONALITY_QUERY) & 0xFF, os.uname().machine

    previous, now, machine = in_child(child)
    assert (previous & 0xFF, now) == (lc.PER_LINUX, lc.PER_LINUX32)
    if os.uname().machine == "x86_64":
        assert machine == "i686"


@pytest.mark.skipif(not shutil.which("ionice"), reason="needs ionice (util-linux) to read back")
def test_ioprio_set_best_effort(n):
    def child():
        n.ioprio_set(lc.IOPRIO_WHO_PROCESS, 0, lc.IOPRIO_CLASS_BE << lc.IOPRIO_CLASS_SHIFT | 7)
        return subprocess.run(["ionice", "-p", str(os.getpid())], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert in_child(child) == "best-effort: prio 7"


def test_sched_setattr_batch_with_nice(n):
    def child():
        n.sched_setattr(0, lc.SCHED_BATCH, nice=5)
        return os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)

    assert in_child(child) == (lc.SCHED_BATCH, 5)
    with pytest.raises(OSError, match=r"sched_setattr\(0, policy 99, flags 0x0\): Invalid"):
        n.sched_setattr(0, 99)


def test_set_mempolicy_bind_then_default(n):
    if not os.path.isdir("/sys/devices/system/node/node0"):
        pytest.skip("kernel without NUMA")

    def child():
        n.set_mempolicy(lc.MPOL_BIND, [0])
        bytearray(1 << 20)  # allocations still succeed on node 0
        n.set_mempolicy(lc.MPOL_DEFAULT, [])
        try:
            n.set_mempolicy(lc.MPOL_BIND, [100], lc.MPOL_F_STATIC_NODES)
        except OSError as e:
            return e.errno, e.strerror

    with unless_missing("set_mempolicy(2)"):
        outcome = in_child(child)
    assert outcome == (errno.EINVAL, "set_mempolicy(mode 2, nodes [100], flags 0x8000): "
                                             "Invalid argument")


# -- import cost -------------------------------------------------------------

def test_import_pulls_in_only_the_shim(native_built):
    try:
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import edgert.native"],
                             cwd=REPO, capture_output=True, text=True, check=True).stderr
    except OSError as e:  # a foreign-arch interpreter under qemu-user without binfmt
        pytest.skip(f"cannot start {sys.executable}: {e.strerror}")
    site_done = out.index("| site\n")
    modules = {line.split("|")[2].strip() for line in out[site_done:].splitlines()[1:]}
    assert modules <= {"edgert", "edgert.native", "edgert._native", "_cffi_backend", "errno"}


def test_syncfs_flushes_and_names_a_bad_fd(n):
    fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
    try:
        n.syncfs(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as e:
        n.syncfs(9999)
    assert e.value.errno == errno.EBADF and "syncfs fd 9999" in str(e.value)
