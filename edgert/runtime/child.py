"""What the forked children run: namespaces, rootfs, process attributes, exec.

Every effectful call goes through ``sc`` (a ``linux.Linux`` or a test
``Recorder``). The order of steps follows sync.py's diagram and the
runtime-spec's lifecycle; each function here is one step.
"""

import os
import stat

from .. import linuxconst as K
from .secjoin import secure_join
from .sync import describe

DEFAULT_DEVICES = (
    # name, major, minor: the runtime-spec's default devices (char, mode 0666)
    ("null", 1, 3), ("zero", 1, 5), ("full", 1, 7),
    ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0),
)
DEFAULT_LINKS = (
    ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"),
)
PROPAGATION = {
    "shared": K.MS_SHARED, "rshared": K.MS_SHARED | K.MS_REC,
    "slave": K.MS_SLAVE, "rslave": K.MS_SLAVE | K.MS_REC,
    "private": K.MS_PRIVATE, "rprivate": K.MS_PRIVATE | K.MS_REC,
    "unbindable": K.MS_UNBINDABLE, "runbindable": K.MS_UNBINDABLE | K.MS_REC,
}
# Flags a remount must keep when the kernel locked them on a mount we do not own.
STATVFS_LOCKED = ((os.ST_RDONLY, K.MS_RDONLY), (os.ST_NOSUID, K.MS_NOSUID),
                  (os.ST_NODEV, K.MS_NODEV), (os.ST_NOEXEC, K.MS_NOEXEC))


def makedirs(sc, path, mode=0o755):
    """mkdir -p through the seam (parents that exist are left alone)."""
    missing = []
    while path and path != "/" and not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for p in reversed(missing):
        sc.mkdir(p, mode)


def locked_flags(path):
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    return sum(ms for st, ms in STATVFS_LOCKED if f & st)


def preload(plan):
    """Imports what the steps after pivot_root need: the host's stdlib is gone by then."""
    if plan.rlimits:
        import resource  # noqa: F401
    if plan.stdio is not None or plan.exit_record_fd is not None:
        import fcntl  # noqa: F401
    if plan.terminal:
        import _socket  # noqa: F401
        import array  # noqa: F401
        import fcntl  # noqa: F401
        import struct  # noqa: F401
        import termios  # noqa: F401


# --- mount namespace ------------------------------------------------------------------------

def prepare_root(sc, rootfs, propagation):
    """Stops mount events reaching the host, then makes the rootfs a mount point."""
    flags = K.MS_REC | K.MS_SLAVE
    if propagation in ("private", "rprivate", "unbindable", "runbindable"):
        flags = PROPAGATION[propagation] | K.MS_REC
    sc.mount(None, "/", None, flags, None)
    sc.mount(rootfs, rootfs, None, K.MS_BIND | K.MS_REC, None)


def mount_entry(sc, rootfs, bundle, m, opts, cgroup_binds=None, userns_fd=None):
    """Mounts one config.json ``mounts`` entry below ``rootfs``.

    ``userns_fd`` (for "idmap"/"ridmap" binds) holds the mount's uid/gid mappings.
    """
    dest = secure_join(rootfs, m["destination"])
    mtype = m.get("type") or ""
    source = m.get("source") or mtype or "none"
    if opts.bind:
        if not source.startswith("/"):
            source = os.path.join(bundle, source)
        if os.path.isdir(source):
            makedirs(sc, dest)
        else:
            makedirs(sc, os.path.dirname(dest))
            if not os.path.lexists(dest):
                sc.create_file(dest, 0o644)
        if opts.idmap:
            sc.idmapped_bind(source, dest, opts.recursive, opts.ridmap, userns_fd)
        else:
            sc.mount(source, dest, None, K.MS_BIND | (K.MS_REC if opts.recursive else 0), None)
        extra = opts.flags & ~(K.MS_BIND | K.MS_REC)
        if extra:
            sc.mount(None, dest, None,
                     K.MS_BIND | K.MS_REMOUNT | extra | (locked_flags(dest) & ~opts.clear), None)
    elif mtype == "cgroup" or mtype == "cgroup2":
        mount_cgroup(sc, dest, opts, cgroup_binds or ())
    elif opts.copyup:
        makedirs(sc, dest)
        lower = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sc.mount(source, dest, mtype, opts.flags & ~K.MS_RDONLY, opts.data or None)
            sc.copy_tree(lower, dest)
        finally:
            os.close(lower)
        if opts.flags & K.MS_RDONLY:
            sc.mount(None, dest, None, K.MS_REMOUNT | opts.flags, opts.data or None)
    else:
        makedirs(sc, dest)
        sc.mount(source, dest, mtype, opts.flags, opts.data or None)
    if opts.rec_attr_set or opts.rec_attr_clr:
        sc.mount_setattr(dest, K.AT_RECURSIVE, opts.rec_attr_set, opts.rec_attr_clr)
    for prop in opts.propagation:
        sc.mount(None, dest, None, prop, None)


def mount_cgroup(sc, dest, opts, binds):
    """The container's own cgroup directories, bind-mounted (works with or without cgroupns).

    ``binds`` is [(name, host_dir)]: one entry "" for a pure v2 host, else one
    per v1 hierarchy (and "unified" on a hybrid host) below a tmpfs.
    """
    ro = opts.flags & K.MS_RDONLY
    base = opts.flags & (K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC)
    makedirs(sc, dest)
    if len(binds) == 1 and binds[0][0] == "":
        sc.mount(binds[0][1], dest, None, K.MS_BIND | K.MS_REC, None)
        sc.mount(None, dest, None, K.MS_BIND | K.MS_REMOUNT | base | ro, None)
        return
    sc.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    for name, host_dir in binds:
        if "=" in name:
            continue
        sub = dest + "/" + name
        sc.mkdir(sub, 0o755)
        sc.mount(host_dir, sub, None, K.MS_BIND | K.MS_REC, None)
        sc.mount(None, sub, None, K.MS_BIND | K.MS_REMOUNT | base | ro, None)
        for alias in name.split(","):
            if alias != name and not os.path.lexists(dest + "/" + alias):
                sc.symlink(name, dest + "/" + alias)
    if ro:
        sc.mount(None, dest, "tmpfs", K.MS_REMOUNT | base | K.MS_RDONLY, "mode=755")


def create_devices(sc, rootfs, devices, bind_from_host):
    """Default devices plus ``linux.devices``; in a user namespace bind the host's nodes."""
    dev = secure_join(rootfs, "/dev")
    makedirs(sc, dev)
    nodes = [{"path": "/dev/" + n, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666,
              "uid": 0, "gid": 0} for n, ma, mi in DEFAULT_DEVICES]
    nodes += devices
    for node in nodes:
        make_device(sc, rootfs, node, bind_from_host)
    for name, target in DEFAULT_LINKS:
        path = dev + "/" + name
        if not os.path.lexists(path):
            sc.symlink(target, path)


def make_device(sc, rootfs, node, bind_from_host):
    path = secure_join(rootfs, node["path"])
    makedirs(sc, os.path.dirname(path))
    kind = node["type"]
    fmt = stat.S_IFIFO if kind == "p" else stat.S_IFBLK if kind == "b" else stat.S_IFCHR
    mode = node.get("fileMode", 0o666) & 0o7777
    if bind_from_host and kind != "p":
        if not os.path.lexists(path):
            sc.create_file(path, 0o600)
        sc.mount(node["path"], path, None, K.MS_BIND, None)
        return
    if os.path.lexists(path):
        st = os.lstat(path)
        if (stat.S_IFMT(st.st_mode) == fmt
                and (kind == "p" or st.st_rdev == os.makedev(node["major"], node["minor"]))):
            return
        os.unlink(path)
    dev = 0 if kind == "p" else os.makedev(node["major"], node["minor"])
    sc.mknod(path, fmt | mode, dev)
    sc.chmod(path, mode)
    sc.chown(path, node.get("uid", 0), node.get("gid", 0))


def pivot(sc, rootfs):
    """pivot_root(".", "."): the old root ends up stacked on the new one, then detached.

    On an initramfs root (pivot_root gives EINVAL) fall back to MS_MOVE + chroot.
    """
    sc.chdir(rootfs)
    try:
        sc.pivot_root(".", ".")
    except OSError as e:
        if e.errno != 22:
            raise
        sc.mount(rootfs, "/", None, K.MS_MOVE, None)
        os.chroot(".")
        sc.chdir("/")
        return
    sc.mount(None, ".", None, K.MS_SLAVE | K.MS_REC, None)
    sc.umount2(".", K.MNT_DETACH)
    sc.chdir("/")


def loopback_up():
    """Brings up ``lo`` in a network namespace the runtime just created, as runc and crun
    do: a new namespace's loopback is down, and services that talk to themselves on
    127.0.0.1 (and health probes) need it."""
    import _socket
    import fcntl
    import struct
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack("16sH22x", b"lo", 0)  # struct ifreq: name, ifr_flags
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
    except OSError as e:  # an ioctl's error names nothing
        raise OSError(e.errno, "bring up lo in the new network namespace: %s"
                      % os.strerror(e.errno)) from None
    finally:
        sock.close()


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def set_sysctl(sc, sysctl):
    for key, value in sysctl.items():
        sc.write_file("/proc/sys/" + key.replace(".", "/"), value)


def mask_paths(sc, paths):
    for path in paths:
        if not os.path.lexists(path):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            sc.mount("tmpfs", path, "tmpfs", K.MS_RDONLY, None)
        else:
            sc.mount("/dev/null", path, None, K.MS_BIND, None)


def readonly_paths(sc, paths):
    for path in paths:
        if not os.path.lexists(path):
            continue
        sc.mount(path, path, None, K.MS_BIND | K.MS_REC, None)
        sc.mount(None, path, None,
                 K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | K.MS_REC | locked_flags(path), None)


def readonly_root(sc):
    sc.mount(None, "/", None, K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY | locked_flags("/"), None)


# --- process attributes ----------------------------------------------------------------------

def setup_console(console_fd, size):
    """Allocates a pty inside the container, hands the master to the console socket."""
    import _socket
    import array
    import fcntl
    import termios
    master, slave = os.openpty()
    if size:
        import struct
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
    sock = _socket.socket(fileno=console_fd)
    try:
        name = os.ttyname(slave).encode()
        sock.sendmsg([name], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                               array.array("i", [master]).tobytes())])
    finally:
        sock.detach()
        os.close(console_fd)
        os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
    return name.decode()


def bind_console(sc, pty_name):
    if not os.path.lexists("/dev/console"):
        sc.create_file("/dev/console", 0o600)
    sc.mount(pty_name, "/dev/console", None, K.MS_BIND, None)


def set_limits(proc, plan):
    """rlimits, OOM score, I/O priority, scheduler: before capabilities are dropped."""
    if plan.rlimits:
        import resource
    for kind, soft, hard in plan.rlimits:
        try:
            resource.setrlimit(kind, (soft, hard))
        except (OSError, ValueError) as e:
            raise OSError(getattr(e, "errno", 1) or 1,
                          "setrlimit %s to %d/%d: %s (raising a hard limit needs "
                          "CAP_SYS_RESOURCE)" % (plan.rlimit_names[kind], soft, hard,
                                                 describe(e))) from None
    if "oomScoreAdj" in proc:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(proc["oomScoreAdj"]))
    if plan.ioprio is not None or plan.sched is not None or plan.personality is not None:
        from .. import native
        if plan.personality is not None:
            native.personality(plan.personality)
        if plan.ioprio is not None:
            native.ioprio_set(1, 0, plan.ioprio)
        if plan.sched is not None:
            native.sched_setattr(0, *plan.sched)


def reset_signals():
    """The process starts with every signal unblocked and at its default action (Python ignores
    SIGPIPE and SIGXFSZ, and exec keeps ignored signals)."""
    import _signal
    for sig in range(1, _signal.NSIG):
        if sig in (9, 19) or 32 <= sig < 34:
            continue
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


def check_executable(args0, env, cwd):
    """Fails early (at create) when the process cannot be found, like runc."""
    if "/" in args0:
        path = args0 if args0.startswith("/") else os.path.join(cwd, args0)
        candidates = [path]
    else:
        search = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        for item in env:
            if item.startswith("PATH="):
                search = item[5:]
        candidates = [os.path.join(d or ".", args0) for d in search.split(":")]
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK):
            return path
    raise OSError(2, "exec %r: executable file not found in $PATH" % args0)


def drop_privileges(native, plan):
    """User, groups, capabilities, no_new_privs; seccomp last (or first without nnp).

    Bounding caps go while CAP_SETPCAP is still there; keepcaps carries the
    permitted set across setresuid; ambient caps need permitted+inheritable.
    """
    if plan.seccomp and not plan.no_new_privs:
        native.seccomp_install(*plan.seccomp)
    for cap in plan.bounding_drop:
        native.bounding_drop(cap)
    if plan.user is not None:
        uid, gid, groups = plan.user
        native.set_keepcaps(True)
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        native.set_keepcaps(False)
    native.capset(plan.cap_effective, plan.cap_permitted, plan.cap_inheritable)
    for cap in plan.ambient:
        native.ambient_raise(cap)
    if plan.no_new_privs:
        native.set_no_new_privs()
        if plan.seccomp:
            native.seccomp_install(*plan.seccomp)


def set_stdio(fds):
    """Makes ``fds`` (stdin, stdout, stderr) the process's 0, 1, 2. Copies above 2 first, so
    any of 0-2 among them (in any order) survives the dup2s."""
    import fcntl
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3) for fd in fds]
    for target, fd in enumerate(copies):
        os.dup2(fd, target)
    for fd in copies:
        os.close(fd)


def close_fds(native, keep=()):
    """Marks every fd above stdio close-on-exec (CVE-2024-21626 class: no host fds)."""
    native.close_range(3, 0xFFFFFFFF, K.CLOSE_RANGE_CLOEXEC)
    for fd in keep:
        os.set_inheritable(fd, True)
