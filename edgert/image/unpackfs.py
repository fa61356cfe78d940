"""Directory handles confined to a rootfs: every lookup stays inside it, whatever the symlinks.

``ConfinedRoot.split(path)`` returns (an O_PATH fd of the directory that holds the last
component of ``path``, that component), for a normalised relative bytes path; callers then
act on the component with *at() calls that never follow it (O_NOFOLLOW,
follow_symlinks=False).

Symlinks in the leading components are resolved as if the rootfs were ``/``: with
openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) where the kernel has it (Linux 5.6+), else
by walking one component at a time with O_NOFOLLOW and resolving each symlink by hand
(absolute targets restart at the root, ``..`` never climbs above it).

Directory fds are cached by path. Removing anything that could be a directory or a symlink
must call ``invalidate()``: a cached path may have resolved through it.
"""

import errno
import os
import stat

from .unpacklimits import LayerError

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_SYMLINKS = 40
_CACHE_SIZE = 256


class ConfinedRoot:
    """The rootfs directory ``path`` (trusted: the caller's) and confined lookups below it."""

    def __init__(self, path, use_openat2=None):
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if use_openat2 is None:
            from .. import native
            use_openat2 = native.have_openat2()
        self._openat2 = None
        if use_openat2:
            from .. import native
            from ..linuxconst import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS
            self._openat2 = native.openat2
            self._resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
        self._cache = {}

    def close(self):
        self.invalidate()
        os.close(self.fd)

    def invalidate(self):
        for fd in self._cache.values():
            os.close(fd)
        self._cache.clear()

    def directory(self, path, create=False):
        """O_PATH fd of directory ``path`` (b"" is the root), cached: do not close it, and do
        not hold it across another lookup (a full cache is emptied; dup it to keep it).

        With ``create``, missing directories are made (0755, owned by the caller), as tar
        does for members whose parents the archive does not list.
        """
        if not path:
            return self.fd
        fd = self._cache.get(path)
        if fd is not None:
            return fd
        try:
            fd = self._open_dir(path)
        except FileNotFoundError:
            if not create:
                raise
            return self._make_dirs(path)
        if len(self._cache) >= _CACHE_SIZE:
            self.invalidate()
        self._cache[path] = fd
        return fd

    def split(self, path, create=True):
        """(fd of the parent directory, last component) of ``path``."""
        head, _, name = path.rpartition(b"/")
        return self.directory(head, create), name

    def _make_dirs(self, path):
        missing = []
        head = path
        while True:  # up to the deepest directory that exists
            head, _, name = head.rpartition(b"/")
            missing.append(name)
            try:
                parent = self.directory(head)
                break
            except FileNotFoundError:
                continue
        for name in reversed(missing):
            try:
                os.mkdir(name, 0o755, dir_fd=parent)
            except FileExistsError:
                pass  # a dangling symlink: the lookup below reports it
            head = head + b"/" + name if head else name
            try:
                parent = self.directory(head)
            except FileNotFoundError:
                raise LayerError("layer: %r cannot be made a directory: a symlink in the way "
                                 "points nowhere" % (head,)) from None
        return parent

    def _open_dir(self, path):
        try:
            if self._openat2 is not None:
                return self._openat2_dir(path)
            return self._walk(path)
        except NotADirectoryError:
            raise LayerError("layer: %r: a component is not a directory" % (path,)) from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise LayerError("layer: %r: too many levels of symlinks" % (path,)) from None
            raise

    def _openat2_dir(self, path):
        for _ in range(8):
            try:
                return self._openat2(self.fd, path, _DIR_FLAGS, 0, self._resolve)
            except BlockingIOError:  # EAGAIN: a concurrent rename raced a ".." lookup; retry
                continue
        raise LayerError("layer: %r: lookup kept racing with renames" % (path,))

    def _walk(self, path):
        """openat2(RESOLVE_IN_ROOT) by hand: one O_NOFOLLOW step per component.

        Holds one fd at a time, so depth is not bounded by the fd limit; ``..`` re-walks
        the real directories from the root (it only comes from symlink targets).
        """
        parts = []  # the real directories (no symlinks) from the root to ``fd``
        fd = -1  # -1: the root itself
        todo = [c for c in reversed(path.split(b"/")) if c and c != b"."]
        links = 0
        try:
            while todo:
                name = todo.pop()
                if name == b"..":
                    if parts:
                        parts.pop()
                        fd = self._walk_real(parts, fd)
                    continue
                here = self.fd if fd < 0 else fd
                try:
                    step = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=here)
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    st = os.stat(name, dir_fd=here, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise NotADirectoryError(errno.ENOTDIR, "not a directory", name) from None
                    links += 1
                    if links > _MAX_SYMLINKS:
                        raise OSError(errno.ELOOP, "too many symlinks", path) from None
                    target = os.readlink(name, dir_fd=here)
                    if target.startswith(b"/"):
                        parts = []
                        fd = self._walk_real(parts, fd)
                    todo.extend(c for c in reversed(target.split(b"/")) if c and c != b".")
                    continue
                if fd >= 0:
                    os.close(fd)
                fd = step
                parts.append(name)
            return fd if fd >= 0 else os.open(b".", _DIR_FLAGS, dir_fd=self.fd)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise

    def _walk_real(self, parts, old_fd):
        """Closes ``old_fd``; opens the directory ``parts`` (no symlinks) below the root."""
        if old_fd >= 0:
            os.close(old_fd)
        fd = -1
        try:
            for name in parts:
                step = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=self.fd if fd < 0 else fd)
                if fd >= 0:
                    os.close(fd)
                fd = step
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return fd


def remove_tree_at(dirfd, name):
    """Removes ``name`` under ``dirfd`` and, if it is a directory, everything below it.

    Never follows symlinks (each directory is entered with O_NOFOLLOW) and holds one fd at a
    time, climbing back with ``..``: the tree is being deleted, nobody else writes in it.
    """
    try:
        os.unlink(name, dir_fd=dirfd)
        return
    except FileNotFoundError:
        return
    except OSError as e:  # EISDIR, or EPERM from unlink(2) on a directory
        if e.errno not in (errno.EISDIR, errno.EPERM):
            raise
    fd = os.open(name, _LIST_FLAGS, dir_fd=dirfd)
    names = [name]
    try:
        while True:
            subdir = None
            for child in _list(fd):
                try:
                    os.unlink(child, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.EISDIR, errno.EPERM):
                        raise
                    subdir = child
            if subdir is not None:
                down = os.open(subdir, _LIST_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = down
                names.append(subdir)
                continue
            done = names.pop()
            if not names:
                break
            up = os.open(b"..", _LIST_FLAGS & ~os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = up
            os.rmdir(done, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dirfd)


_LIST_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _list(fd):
    with os.scandir(fd) as it:
        return [os.fsencode(e.name) for e in it]


def empty_dir_at(fd, keep=None):
    """Removes every entry of the directory open as ``fd`` for which ``keep(name)`` is false."""
    for child in _list(fd):
        if keep is None or not keep(child):
            remove_tree_at(fd, child)
