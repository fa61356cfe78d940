"""Runtime <-> child handshake over two pipes (no socket module: it costs imports).

::

   runtime (host)                 child C1                     container pid 1 (C2)
   --------------                 --------                     --------------------
   cgroups made, fork C1 ------>  join cgroups, setns(paths)
                                  [unshare(USER)]
        <--------- "userns" ----  (only with a new user ns)
   write uid/gid maps
        ---------- "mapped" --->  become root in the user ns
                                  unshare(other namespaces)
                                  fork --------------------->  (born in the new pid ns)
        <--------- "pid N" -----  exit(0)
   pin netns, move netDevices,
   prestart/createRuntime hooks
        ---------- "go" ------------------------------------>  mounts, devices, pivot_root,
                                                               sysctl, masks, tty, rlimits,
                                                               user, caps, no_new_privs,
                                                               seccomp, exec edgert-init
        <--------- "error <why>" ----------------------------  (only on failure)
   EOF on the pipe: the last writer exec'd (CLOEXEC) or died.

Messages are single lines shorter than PIPE_BUF, so each write is atomic.
"""

import os


class Channel:
    """One end of the handshake: read lines from ``rfd``, write lines to ``wfd``."""

    def __init__(self, rfd, wfd):
        self.rfd = rfd
        self.wfd = wfd
        self.buf = b""

    def send(self, line):
        data = (line.replace("\n", " ")[:3800] + "\n").encode("utf-8", "replace")
        os.write(self.wfd, data)

    def recv(self):
        """The next line, or None at end of file."""
        while b"\n" not in self.buf:
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                if self.buf:
                    line, self.buf = self.buf, b""
                    return line.decode("utf-8", "replace")
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def close(self):
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.rfd = self.wfd = -1


def pair():
    """Returns (parent end, child end): two pipes, every fd close-on-exec."""
    p2c_r, p2c_w = os.pipe2(os.O_CLOEXEC)
    c2p_r, c2p_w = os.pipe2(os.O_CLOEXEC)
    return Channel(c2p_r, p2c_w), Channel(p2c_r, c2p_w)


def describe(err):
    """One line for an exception raised during setup."""
    if isinstance(err, OSError) and err.strerror:
        text = err.strerror
        if err.filename is not None and str(err.filename) not in text:
            text += ": %s" % err.filename
        return text
    return str(err) or err.__class__.__name__
