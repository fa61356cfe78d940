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
