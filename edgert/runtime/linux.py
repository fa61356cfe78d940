"""The one seam every effectful call of container setup goes through.

``Linux`` forwards to edgert.native and os. Tests swap in ``Recorder`` and read
back the ordered list of calls, so mount and namespace order is checked
without root (the youki idea).
"""

import os

from .. import linuxconst as K


class Linux:
    """Real syscalls. Methods raise OSError(errno, "<op>: <reason>", path)."""

    def __init__(self):
        from .. import native
        self.n = native

    def unshare(self, flags):
        self.n.unshare(flags)

    def setns(self, fd, nstype):
        self.n.setns(fd, nstype)

    def mount(self, source, target, fstype, flags, data):
        self.n.mount(source, target, fstype, flags, data)

    def umount2(self, target, flags):
        self.n.umount2(target, flags)

    def pivot_root(self, new_root, put_old):
        self.n.pivot_root(new_root, put_old)

    def mount_setattr(self, path, flags, attr_set, attr_clr, propagation=0, userns_fd=-1):
        self.n.mount_setattr(K.AT_FDCWD, path, flags, attr_set, attr_clr, propagation, userns_fd)

    def idmapped_bind(self, source, target, recursive, ridmap, userns_fd):
        """A bind of ``source`` whose file owners are seen through ``userns_fd``'s mapping."""
        n = self.n
        tree = n.open_tree(K.AT_FDCWD, source,
                           K.OPEN_TREE_CLONE | (K.AT_RECURSIVE if recursive else 0))
        try:
            n.mount_setattr(tree, "", K.AT_EMPTY_PATH | (K.AT_RECURSIVE if ridmap else 0),
                            K.MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
            n.move_mount(tree, "", K.AT_FDCWD, target, K.MOVE_MOUNT_F_EMPTY_PATH)
        finally:
            os.close(tree)

    def copy_tree(self, src_fd, target):
        copy_tree(src_fd, target)

    def mknod(self, path, mode, dev):
        self.n.mknod(path, mode, dev)

    def sethostname(self, name):
        self.n.sethostname(name)

    def setdomainname(self, name):
        self.n.setdomainname(name)

    def chdir(self, path):
        os.chdir(path)

    def mkdir(self, path, mode):
        os.mkdir(path, mode)

    def symlink(self, target, path):
        os.symlink(target, path)

    def chown(self, path, uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)

    def chmod(self, path, mode):
        os.chmod(path, mode)

    def create_file(self, path, mode):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, mode))

    def write_file(self, path, data):
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data.encode() if isinstance(data, str) else data)
        except OSError as e:
            raise OSError(e.errno, "write %r: %s" % (data, os.strerror(e.errno)), path) from None
        finally:
            os.close(fd)


class Recorder:
    """A fake ``Linux`` that records every call as a tuple (name, *args)."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def record(*args):
            self.calls.append((name,) + args)
        return record

    def names(self):
        return [c[0] for c in self.calls]


def copy_tree(src_fd, target):
    """Copies the directory open at ``src_fd`` into ``target``: modes, owners, times, symlinks,
    device nodes and fifos (tmpcopyup: a new tmpfs gets what the image had there)."""
    import stat
    top = os.fstat(src_fd)
    for entry in os.scandir(src_fd):
        st = entry.stat(follow_symlinks=False)
        path = target + "/" + entry.name
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(path, 0o700)
            fd = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=src_fd)
            try:
                copy_tree(fd, path)
            finally:
                os.close(fd)
            continue
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.name, dir_fd=src_fd), path)
        elif stat.S_ISREG(mode):
            _copy_file(src_fd, entry.name, path)
        elif stat.S_ISSOCK(mode):
            continue
        else:
            os.mknod(path, mode, st.st_rdev)
        _copy_meta(path, st)
    _copy_meta(target, top)


def _copy_file(src_fd, name, path):
    fin = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    try:
        fout = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while True:
                chunk = os.read(fin, 1 << 16)
                if not chunk:
                    break
                os.write(fout, chunk)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_meta(path, st):
    import stat
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
