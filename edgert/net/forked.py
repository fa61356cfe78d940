"""Network work in a forked child: the daemon never imports pyroute2 (about 25 MB of RSS and
230 ms here); a child does, runs one job, sends back one JSON line and exits.

``call(func, args)`` waits for the child (the teardown paths, tests); ``Job(loop, ...)``
reports through the daemon's loop, so a bring-up never blocks the other containers.
The child keeps none of the daemon's fds (the control socket, its lock, the pidfds).
"""

import os

from .. import jsonfast
from ..errors import EdgertError

RESULT_LIMIT = 1 << 16


def _child(write_fd, func, args):
    try:
        from .. import native
        if write_fd > 3:
            native.close_range(3, write_fd - 1)
        native.close_range(write_fd + 1, 0x7FFFFFFF)
        from . import forget_home_netns
        forget_home_netns()   # its fd was just closed
        import _signal
        for signum in (1, 2, 15, 17):
            _signal.signal(signum, _signal.SIG_DFL)
        doc = {"ok": func(*args)}
    except BaseException as e:  # everything goes back as one line
        doc = {"error": str(e) if isinstance(e, EdgertError) else
               "%s: %s" % (type(e).__name__, e),
               "code": getattr(e, "code", None) or "net-failed"}
    try:
        data = (jsonfast.dumps(doc) + "\n").encode()
        while data:
            data = data[os.write(write_fd, data):]
    finally:
        os._exit(0 if "ok" in doc else 1)


def _spawn(func, args):
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            _child(write_fd, func, args)
        finally:
            os._exit(1)
    os.close(write_fd)
    return pid, read_fd


def _outcome(data, status, what):
    """(True, result) or (False, EdgertError) from the child's line and wait status."""
    try:
        doc = jsonfast.loads(data.decode("utf-8", "replace").strip() or "{}")
    except ValueError:
        doc = {}
    if status == 0 and "ok" in doc:
        return True, doc["ok"]
    if "error" in doc:
        return False, EdgertError("%s: %s" % (what, doc["error"]), code=doc.get("code"))
    return False, EdgertError("%s: the network child died (wait status %d)" % (what, status),
                              code="net-failed")


def call(func, args, what):
    """``func(*args)`` in a child; its JSON-able result, or the child's error raised."""
    pid, read_fd = _spawn(func, args)
    data = b""
    try:
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk[:RESULT_LIMIT - len(data)]
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    ok, value = _outcome(data, status, what)
    if not ok:
        raise value
    return value


class Job:
    """``func(*args)`` in a child; then ``on_done(True, result)`` or ``on_done(False, error)``
    from the loop."""

    def __init__(self, loop, func, args, what, on_done):
        self.loop = loop
        self.what = what
        self.on_done = on_done
        self.data = b""
        self.pid, self.fd = _spawn(func, args)
        os.set_blocking(self.fd, False)
        loop.add_reader(self.fd, self._readable)

    def _readable(self, fd):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            self.data += chunk[:RESULT_LIMIT - len(self.data)]
            return
        self.loop.remove_reader(fd)
        os.close(fd)
        _, status = os.waitpid(self.pid, 0)
        ok, value = _outcome(self.data, status, self.what)
        self.on_done(ok, value)
