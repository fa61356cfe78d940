"""Linux syscalls the standard library lacks, over the cffi shim edgert._native.

Every failure raises ``OSError(errno, "<op>: <strerror>", path_or_None)``,
where <op> names the call and its key argument (``mount tmpfs on /x``,
``setns(net)``); the errno picks the usual subclass (FileNotFoundError, ...).
File descriptors this module creates are close-on-exec, like those of ``os``.
Flag values live in edgert.linuxconst; O_* flags come from ``os``.
"""

import errno
import os

from ._native import ffi, lib


def _error(err, op, path=None):
    return OSError(err, f"{op}: {os.strerror(err)}", path)


def _check(ret, op, path=None):
    if ret < 0:
        raise _error(-ret, op, path)
    return ret


_AT_FDCWD = -100


def _optional(text):
    return ffi.NULL if text is None else os.fsencode(text)


def _at(dirfd, path):
    """A path of a *at() call, for messages: 'x', or 'x' under fd 5."""
    shown = repr(os.fsdecode(path))
    return shown if dirfd == _AT_FDCWD else f"{shown} under fd {dirfd}"


def _ns_names(flags):
    """Namespace flags as /proc/<pid>/ns names, for messages: 'mnt|uts'."""
    from .linuxconst import NAMESPACE_FLAGS, NAMESPACE_PROC_NAMES
    names = [NAMESPACE_PROC_NAMES[oci] for oci, bit in NAMESPACE_FLAGS.items() if flags & bit]
    rest = flags & ~sum(bit for bit in NAMESPACE_FLAGS.values())
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


# -- namespaces and mounts ---------------------------------------------------

def unshare(flags):
    ret = lib.ert_unshare(flags)
    if ret < 0:
        raise _error(-ret, f"unshare({_ns_names(flags)})")


def setns(fd, nstype):
    ret = lib.ert_setns(fd, nstype)
    if ret < 0:
        raise _error(-ret, f"setns({_ns_names(nstype) if nstype else f'fd {fd}'})")


def pivot_root(new_root, put_old):
    _check(lib.ert_pivot_root(os.fsencode(new_root), os.fsencode(put_old)),
           f"pivot_root {os.fsdecode(new_root)} (old root at {os.fsdecode(put_old)})", new_root)


def mount(source, target, fstype, flags, data):
    """mount(2); source, fstype and data may be None."""
    ret = lib.ert_mount(_optional(source), os.fsencode(target), _optional(fstype), flags,
                        _optional(data))
    if ret < 0:
        fs = os.fsdecode(fstype) if fstype else None
        what = os.fsdecode(source) if source is not None else (fs or "none")
        if fs and fs != what:
            what = f"{fs} {what}"
        extra = f" (flags {flags:#x})" if flags else ""
        raise _error(-ret, f"mount {what} on {os.fsdecode(target)}{extra}", target)


def umount2(target, flags):
    _check(lib.ert_umount2(os.fsencode(target), flags), f"umount2 {os.fsdecode(target)}", target)


def mknod(path, mode, dev):
    try:
        os.mknod(path, mode, dev)
    except OSError as e:
        raise _error(e.errno, f"mknod {os.fsdecode(path)}", path) from None


def open_tree(dirfd, path, flags):
    """open_tree(2); the returned fd is always close-on-exec."""
    return _check(lib.ert_open_tree(dirfd, os.fsencode(path), flags | os.O_CLOEXEC),
                  f"open_tree {_at(dirfd, path)}", path)


def move_mount(from_dirfd, from_path, to_dirfd, to_path, flags):
    _check(lib.ert_move_mount(from_dirfd, os.fsencode(from_path), to_dirfd,
                              os.fsencode(to_path), flags),
           f"move_mount {_at(from_dirfd, from_path)} to {_at(to_dirfd, to_path)}", to_path)


def mount_setattr(dirfd, path, flags, attr_set=0, attr_clr=0, propagation=0, userns_fd=-1):
    """mount_setattr(2); userns_fd is only read with MOUNT_ATTR_IDMAP."""
    _check(lib.ert_mount_setattr(dirfd, os.fsencode(path), flags, attr_set, attr_clr,
                                 propagation, max(userns_fd, 0)),
           f"mount_setattr {_at(dirfd, path)}", path)


# -- host identity -----------------------------------------------------------

def sethostname(name):
    raw = os.fsencode(name)
    _check(lib.ert_sethostname(raw, len(raw)), f"sethostname {name!r}")


def setdomainname(name):
    raw = os.fsencode(name)
    _check(lib.ert_setdomainname(raw, len(raw)), f"setdomainname {name!r}")


# -- capabilities and prctl --------------------------------------------------

def capget(pid=0):
    """(effective, permitted, inheritable) of pid (0: this thread), 64-bit masks."""
    caps = ffi.new("uint64_t[3]")
    _check(lib.ert_capget(pid, caps), f"capget({pid})")
    return caps[0], caps[1], caps[2]


def capset(effective, permitted, inheritable):
    """Sets this thread's capability sets."""
    _check(lib.ert_capset(effective, permitted, inheritable),
           f"capset(effective={effective:#x}, permitted={permitted:#x}, "
           f"inheritable={inheritable:#x})")


def _prctl(op, option, arg2=0, arg3=0):
    return _check(lib.ert_prctl(option, arg2, arg3, 0, 0), op)


def set_no_new_privs():
    _prctl("prctl(PR_SET_NO_NEW_PRIVS)", lib.PR_SET_NO_NEW_PRIVS, 1)


def get_no_new_privs():
    return _prctl("prctl(PR_GET_NO_NEW_PRIVS)", lib.PR_GET_NO_NEW_PRIVS) == 1


def set_pdeathsig(sig):
    _prctl(f"prctl(PR_SET_PDEATHSIG, {sig})", lib.PR_SET_PDEATHSIG, sig)


def set_dumpable(flag):
    _prctl(f"prctl(PR_SET_DUMPABLE, {int(flag)})", lib.PR_SET_DUMPABLE, int(flag))


def get_dumpable():
    return _prctl("prctl(PR_GET_DUMPABLE)", lib.PR_GET_DUMPABLE) == 1


def set_keepcaps(flag):
    _prctl(f"prctl(PR_SET_KEEPCAPS, {int(flag)})", lib.PR_SET_KEEPCAPS, int(flag))


def set_child_subreaper(flag):
    _prctl(f"prctl(PR_SET_CHILD_SUBREAPER, {int(flag)})", lib.PR_SET_CHILD_SUBREAPER, int(flag))


def ambient_raise(cap):
    _prctl(f"prctl(PR_CAP_AMBIENT_RAISE, {cap})", lib.PR_CAP_AMBIENT,
           lib.PR_CAP_AMBIENT_RAISE, cap)


def ambient_clear_all():
    _prctl("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", lib.PR_CAP_AMBIENT, lib.PR_CAP_AMBIENT_CLEAR_ALL)


def ambient_is_set(cap):
    return _prctl(f"prctl(PR_CAP_AMBIENT_IS_SET, {cap})", lib.PR_CAP_AMBIENT,
                  lib.PR_CAP_AMBIENT_IS_SET, cap) == 1


def bounding_drop(cap):
    _prctl(f"prctl(PR_CAPBSET_DROP, {cap})", lib.PR_CAPBSET_DROP, cap)


def bounding_has(cap):
    return _prctl(f"prctl(PR_CAPBSET_READ, {cap})", lib.PR_CAPBSET_READ, cap) == 1


# -- seccomp -----------------------------------------------------------------

def seccomp_install(prog, flags=0):
    """Installs a classic BPF filter (packed struct sock_filter, 8 bytes each).

    Returns the syscall's result: 0, or the listener fd with
    SECCOMP_FILTER_FLAG_NEW_LISTENER.
    """
    count, rest = divmod(len(prog), 8)
    if rest or not 0 < count <= 0xFFFF:
        raise ValueError(f"seccomp filter: {len(prog)} bytes is not 1..65535 8-byte instructions")
    return _check(lib.ert_seccomp_install(prog, count, flags),
                  f"seccomp(SET_MODE_FILTER, flags={flags:#x}, {count} instructions)")


# -- processes and file descriptors ------------------------------------------

def pidfd_open(pid, flags=0):
    return _check(lib.ert_pidfd_open(pid, flags), f"pidfd_open({pid})")


def pidfd_send_signal(pidfd, sig):
    _check(lib.ert_pidfd_send_signal(pidfd, sig), f"pidfd_send_signal(fd {pidfd}, {sig})")


def close_range(first, last, flags=0):
    """Closes (or with CLOSE_RANGE_CLOEXEC marks close-on-exec) fds first..last."""
    ret = lib.ert_close_range(first, last, flags)
    if ret == 0:
        return
    from .linuxconst import CLOSE_RANGE_CLOEXEC
    # Before 5.9 there is no close_range, before 5.11 no CLOSE_RANGE_CLOEXEC;
    # the fallback cannot do CLOSE_RANGE_UNSHARE.
    if (-ret in (errno.ENOSYS, errno.EINVAL) and first <= last
            and not flags & ~CLOSE_RANGE_CLOEXEC):
        _close_range_by_listing(first, last, flags)
    else:
        raise _error(-ret, f"close_range({first}, {last}, {flags:#x})")


def _close_range_by_listing(first, last, flags):
    from .linuxconst import CLOSE_RANGE_CLOEXEC
    cloexec = flags & CLOSE_RANGE_CLOEXEC
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except FileNotFoundError:  # no /proc yet (early in container setup)
        fds = range(first, min(last, os.sysconf("SC_OPEN_MAX") - 1) + 1)
    for fd in fds:
        if first <= fd <= last:
            try:
                if cloexec:
                    os.set_inheritable(fd, False)
                else:
                    os.close(fd)
            except OSError:  # the directory fd of the listing, or not open
                pass


def openat2(dirfd, path, flags, mode=0, resolve=0):
    """openat2(2); the fd is always close-on-exec. ENOSYS before Linux 5.6."""
    return _check(lib.ert_openat2(dirfd, os.fsencode(path), flags | os.O_CLOEXEC, mode, resolve),
                  f"openat2 {_at(dirfd, path)}", path)


_openat2_works = None


def have_openat2():
    """Whether openat2 is usable here (kernel >= 5.6, not filtered); cached."""
    global _openat2_works
    if _openat2_works is None:
        fd = lib.ert_openat2(_AT_FDCWD, b"/", os.O_PATH | os.O_CLOEXEC, 0, 0)
        _openat2_works = fd >= 0
        if _openat2_works:
            os.close(fd)
    return _openat2_works


# -- eBPF (cgroup v2 device programs) ----------------------------------------

_BPF_LOG_SIZE = 64 * 1024
_BPF_LOG_TAIL = 400


def bpf_prog_load(prog_type, insns, license="GPL", expected_attach_type=0):
    """Loads an eBPF program (packed struct bpf_insn, 8 bytes each); returns its fd.

    A refused program is loaded again with the verifier log on, and the
    OSError message ends with the log's tail.
    """
    count, rest = divmod(len(insns), 8)
    if rest or not count:
        raise ValueError(f"bpf program: {len(insns)} bytes is not a whole number of 8-byte instructions")
    lic = license.encode()
    ret = lib.ert_bpf_prog_load(prog_type, insns, count, lic, expected_attach_type, ffi.NULL, 0)
    if ret >= 0:
        return ret
    log = ffi.new("char[]", _BPF_LOG_SIZE)
    again = lib.ert_bpf_prog_load(prog_type, insns, count, lic, expected_attach_type,
                                  log, _BPF_LOG_SIZE)
    if again >= 0:  # refused once, accepted with the log on: take it
        return again
    message = f"bpf(PROG_LOAD, type {prog_type}, {count} instructions): {os.strerror(-ret)}"
    tail = ffi.string(log).decode(errors="replace").strip()[-_BPF_LOG_TAIL:]
    if tail:
        message += "; verifier: " + " | ".join(tail.splitlines())
    raise OSError(-ret, message)


def bpf_prog_attach(target_fd, prog_fd, attach_type, flags=0):
    _check(lib.ert_bpf_prog_attach(target_fd, prog_fd, attach_type, flags),
           f"bpf(PROG_ATTACH, prog fd {prog_fd} to fd {target_fd}, type {attach_type})")


def bpf_prog_detach2(target_fd, prog_fd, attach_type):
    _check(lib.ert_bpf_prog_detach2(target_fd, prog_fd, attach_type),
           f"bpf(PROG_DETACH, prog fd {prog_fd} from fd {target_fd}, type {attach_type})")


def bpf_prog_query(target_fd, attach_type):
    """Ids of the programs attached to target_fd for attach_type."""
    capacity = 16
    while True:
        ids = ffi.new("uint32_t[]", capacity)
        count = ffi.new("uint32_t *", capacity)
        ret = lib.ert_bpf_prog_query(target_fd, attach_type, ids, count)
        if ret == -errno.ENOSPC and count[0] > capacity:
            capacity = count[0]
            continue
        _check(ret, f"bpf(PROG_QUERY, fd {target_fd}, type {attach_type})")
        return [ids[i] for i in range(count[0])]


def bpf_prog_get_fd_by_id(prog_id):
    return _check(lib.ert_bpf_prog_get_fd_by_id(prog_id), f"bpf(PROG_GET_FD_BY_ID, {prog_id})")


# -- scheduling and process attributes ---------------------------------------

def personality(persona):
    """Sets the execution domain; returns the previous one (0xffffffff only reads)."""
    return _check(lib.ert_personality(persona), f"personality({persona:#x})")


def syncfs(fd):
    """Flushes the whole filesystem holding ``fd`` (one call instead of an fsync per file)."""
    _check(lib.ert_syncfs(fd), f"syncfs fd {fd}")


def ioprio_set(which, who, ioprio):
    _check(lib.ert_ioprio_set(which, who, ioprio), f"ioprio_set({which}, {who}, {ioprio:#x})")


def sched_setattr(pid, policy, flags=0, nice=0, priority=0, runtime=0, deadline=0, period=0):
    _check(lib.ert_sched_setattr(pid, policy, flags, nice, priority, runtime, deadline, period),
           f"sched_setattr({pid}, policy {policy}, flags {flags:#x})")


def set_mempolicy(mode, nodes, flags=0):
    """set_mempolicy(2) for this thread; flags are the MPOL_F_* mode flags."""
    op = f"set_mempolicy(mode {mode}, nodes {list(nodes)}, flags {flags:#x})"
    if not nodes:
        _check(lib.ert_set_mempolicy(mode | flags, ffi.NULL, 0), op)
        return
    bits = ffi.sizeof("unsigned long") * 8
    words = [0] * (max(nodes) // bits + 1)
    for node in nodes:
        words[node // bits] |= 1 << (node % bits)
    mask = ffi.new("unsigned long[]", words)
    # The kernel reads maxnode - 1 bits (a historical off-by-one).
    _check(lib.ert_set_mempolicy(mode | flags, mask, len(words) * bits + 1), op)


# -- clock -------------------------------------------------------------------

def adjtimex_read():
    """(clock state, status flags, synced) from adjtimex(2) with modes 0, which changes nothing.

    synced: the state is not TIME_ERROR and STA_UNSYNC is clear, as an NTP client that
    disciplines the clock leaves them.
    """
    status = ffi.new("int *")
    state = _check(lib.ert_adjtimex_read(status), "adjtimex (read)")
    return state, status[0], state != lib.TIME_ERROR and not status[0] & lib.STA_UNSYNC


# -- nftables ----------------------------------------------------------------

_NFT_ERROR_MAX = 2048


def nft_load():
    """Whether libnftables (0.9.1 or later) is on the device; opens it on the first call.
    Opening it before forking spares each child the dynamic linking."""
    return lib.ert_nft_load() == 0


def nft_open():
    """A libnftables context for this thread's network namespace as it is now; None when
    the device has no usable libnftables."""
    if not nft_load():
        return None
    ctx = lib.ert_nft_new()
    if ctx == ffi.NULL:
        raise _error(errno.ENOMEM, "nft_ctx_new")
    return ctx


def nft_run(ctx, script):
    """Runs an nft script as one transaction; OSError(EINVAL, "nft: <nft's message>")."""
    message = ffi.new("char[]", _NFT_ERROR_MAX)
    if lib.ert_nft_run(ctx, script.encode(), message, _NFT_ERROR_MAX) < 0:
        text = ffi.string(message).decode(errors="replace")
        # "Error: ...", the offending line, a line of carets under it: one line of log
        lines = [line.strip() for line in text.splitlines()
                 if line.strip() and set(line.strip()) - set("^~ ")]
        raise OSError(errno.EINVAL, "nft: %s" % (" | ".join(lines) or "the ruleset was refused"))


def nft_close(ctx):
    """Frees the context; its socket's close waits for an RCU grace period (~15 ms)."""
    lib.ert_nft_free(ctx)
