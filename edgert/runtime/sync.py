"""Runtime <-> child handshake over two pipes (no socket module: it costs imports).

::

   runtime (host)                 child C1                     container pid 1 (C2)
   --------------                 --------                     --------------------
   cgroup dirs made, fork C1 -->  join cgroups (the kernel waits
   meanwhile: resource limits,    an RCU grace period here: the
   device rules, seccomp compile  runtime works meanwhile),
                                  setns(paths)
                                  [unshare(USER)]
        <--------- "userns" ----  (only with a new user ns)
   write uid/gid maps
        ---------- "mapped" --->  become root in the user ns
                                  unshare(other namespaces)
                                  fork --------------------->  (born in the new pid ns)
        <--------- "pid N" -----  exit(0)
   pin netns, move netDevices,
   prestart/createRuntime hooks
        ---------- "go" + seccomp program ------------------>  mounts, devices, pivot_root,
                                                               sysctl, masks, tty, rlimits,
                                                               user, caps, no_new_privs,
                                                               seccomp, exec edgert-init
        <--------- "error <why>" ----------------------------  (only on failure)
   EOF on the pipe: the last writer exec'd (CLOEXEC) or died.

Each message is a header line ``<kind> <payload length>`` followed by the payload bytes
(the seccomp program travels with "go"), so nothing depends on a line fitting PIPE_BUF.
"""

import os


class Channel:
    """One end of the handshake: messages in from ``rfd``, out to ``wfd``."""

    def __init__(self, rfd, wfd):
        self.rfd = rfd
        self.wfd = wfd
        self.buf = b""

    def send(self, kind, payload=b""):
        if isinstance(payload, str):
            payload = payload.encode("utf-8", "replace")
        data = b"%s %d\n" % (kind.encode(), len(payload)) + payload
        while data:
            data = data[os.write(self.wfd, data):]

    def _fill(self, size):
        while len(self.buf) < size:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv(self):
        """The next message as (kind, payload bytes), or (None, b"") at end of file."""
        while b"\n" not in self.buf:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                return None, b""
            self.buf += chunk
        header, _, self.buf = self.buf.partition(b"\n")
        kind, _, size = header.decode().partition(" ")
        size = int(size or 0)
        if not self._fill(size):
            return None, b""
        payload, self.buf = self.buf[:size], self.buf[size:]
        return kind, payload

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
