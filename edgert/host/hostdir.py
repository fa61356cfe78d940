"""Writes into an instance's /host, a directory its container can change at any time (edge).

The container may replace any entry there with a symlink (to a host file), a FIFO, a
directory or a file between two of our writes. So everything here works relative to open
directory fds, with O_NOFOLLOW and O_EXCL: a name is replaced by rename (which replaces a
link, never writes through it), an entry in the way is removed without being followed, and a
directory we write into is opened once and used through its fd, so a rename or symlink swap
of its name afterwards cannot redirect the writes. The /host tmpfs is the container's own,
so nothing here can reach beyond it.
"""

import errno
import os

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 64    # directories the container nested inside an entry we remove
MAX_TRIES = 4     # the container recreating an entry while we replace it


def open_dir(path):
    """An fd of the directory ``path`` itself (never a link to one)."""
    return os.open(path, DIR_FLAGS)


def replace_file(dfd, name, data, mode=0o644, owner=None):
    """``name`` under ``dfd`` becomes a new regular file holding ``data`` (bytes), by rename;
    ``owner``: (uid, gid) of the new file. A directory the container made there is removed."""
    tmp = ".%s.tmp-%d" % (name, os.getpid())
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(MAX_TRIES):
        try:
            fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
        except FileExistsError:  # a leftover, or planted by the container: never opened
            remove(dfd, tmp)
            continue
        try:
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
            os.fchmod(fd, mode)  # after fchown, which clears set-id bits (none are used)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            _unlink_quietly(dfd, tmp)
            raise
        os.close(fd)
        try:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return
        except OSError as e:
            _unlink_quietly(dfd, tmp)
            if e.errno not in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                raise
        remove(dfd, name)  # a directory is in the way
    raise OSError(errno.EBUSY, "%s keeps being replaced by the container" % name)


def remove(dfd, name):
    """Removes the entry ``name`` under ``dfd`` whatever it is, directory trees included,
    following nothing. Each directory is entered through an fd held until it is emptied (no
    climbing back by ".."), so the container moving directories meanwhile cannot lead the
    removal out of the directory it started in."""
    _remove(dfd, name, 0)


def _remove(dfd, name, depth):
    try:
        os.unlink(name, dir_fd=dfd)
        return
    except FileNotFoundError:
        return
    except OSError as e:  # EISDIR, or EPERM from unlink(2) on a directory
        if e.errno not in (errno.EISDIR, errno.EPERM):
            raise
    if depth >= MAX_DEPTH:
        raise OSError(errno.ELOOP, "%s: directories nested deeper than %d" % (name, MAX_DEPTH))
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        return
    try:
        for child in os.listdir(fd):
            _remove(fd, child, depth + 1)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=dfd)
    except FileNotFoundError:
        pass


def own_subdir(dfd, name, mode=0o755):
    """An fd of the directory ``name`` under ``dfd``, created by us: whatever else is there
    (a link, a file, a directory someone else owns or may write) is removed first."""
    for _ in range(MAX_TRIES):
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=dfd)
        except FileNotFoundError:
            fd = None
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            fd = None
            remove(dfd, name)
        if fd is not None:
            info = os.fstat(fd)
            if info.st_uid == os.geteuid() and not info.st_mode & 0o022:
                os.fchmod(fd, mode)
                return fd
            os.close(fd)
            remove(dfd, name)
        try:
            os.mkdir(name, mode, dir_fd=dfd)
        except FileExistsError:
            continue
    raise OSError(errno.EBUSY, "%s keeps being replaced by the container" % name)


def _unlink_quietly(dfd, name):
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass
