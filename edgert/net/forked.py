"""Network work in a forked child: the daemon never imports pyroute2 (about 25 MB of RSS and
230 ms here); a child does.

``call(func, args)`` forks a child for one job and waits for it (tests, tools);
``Job(loop, ...)`` does the same but reports through the daemon's loop; ``Worker`` keeps one
child with pyroute2 loaded while jobs keep coming (the daemon's bring-ups, teardowns and
DHCP lease changes), and lets it go after IDLE_S without work, so a burst (a boot with many
instances, a restart) pays the import once and an idle daemon is one process again.
A child keeps none of the daemon's fds (the control socket, its lock, the pidfds).
"""

import os
import sys

from .. import jsonfast
from ..errors import EdgertError
from ..fsutil import read_until_eof

RESULT_LIMIT = 1 << 16


IDLE_S = 30.0


def _become_child(keep_fd):
    """Only ``keep_fd`` stays open; default signal handling (the daemon's handlers write to
    a wakeup fd that is gone now)."""
    from .. import native
    if keep_fd > 3:
        native.close_range(3, keep_fd - 1)
    native.close_range(keep_fd + 1, 0x7FFFFFFF)
    from . import forget_home_netns
    forget_home_netns()   # its fd was just closed
    import _signal
    for signum in (1, 2, 15, 17):
        _signal.signal(signum, _signal.SIG_DFL)


def _run(func, args):
    """One job's answer: {"ok": result} or {"error", "code"}."""
    try:
        return {"ok": func(*args)}
    except BaseException as e:  # everything goes back as one line
        return {"error": str(e) if isinstance(e, EdgertError) else
                "%s: %s" % (type(e).__name__, e),
                "code": getattr(e, "code", None) or "net-failed"}


def _reap_helpers(block):
    """The NAT helpers that answered before they ended (edgert.net.nat)."""
    nat = sys.modules.get("edgert.net.nat")
    if nat is not None:
        nat.reap(block)


def _send_line(fd, doc):
    data = (jsonfast.dumps(doc) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _child(write_fd, func, args):
    doc = {"error": "the network child failed to start", "code": "net-failed"}
    try:
        _become_child(write_fd)
        doc = _run(func, args)
        _send_line(write_fd, doc)
        _reap_helpers(True)
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
    try:
        data = read_until_eof(read_fd, RESULT_LIMIT)
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


def _by_name(name):
    """A job function from "module:function" (the worker was forked before the job)."""
    module, _, function = name.partition(":")
    if not module.startswith("edgert.net."):
        raise EdgertError("network worker: %r is not a network job" % name, code="net-failed")
    return getattr(__import__(module, None, None, [function]), function)


def _worker_main(fd):
    """The worker: one JSON line per job in, one per answer out, until the daemon closes
    its end (or dies: SIGKILL by PR_SET_PDEATHSIG)."""
    try:
        _become_child(fd)
        from .. import native
        native.set_pdeathsig(9)
        from .rtnl import iproute_class
        iproute_class()  # loaded once, for every job of this worker
        pending = b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                try:
                    job = jsonfast.loads(line.decode())
                    func = _by_name(job["func"])
                except (ValueError, KeyError, TypeError, AttributeError, ImportError,
                        EdgertError) as e:
                    _send_line(fd, {"error": "network worker: bad job: %s" % e,
                                    "code": "net-failed"})
                    continue
                _send_line(fd, _run(func, job["args"]))
                _reap_helpers(False)
        _reap_helpers(True)
    finally:
        os._exit(0)


class Worker:
    """Jobs ("module:function", args) one at a time in a long-lived child with pyroute2
    loaded; ``submit(name, args, what, on_done)`` calls ``on_done(True, result)`` or
    ``on_done(False, error)`` from the loop. The child goes after ``idle_s`` without jobs,
    and a new one comes with the next job."""

    def __init__(self, loop, idle_s=IDLE_S):
        self.loop = loop
        self.idle_s = idle_s
        self.pid = None
        self.fd = None
        self.buffer = b""
        self.jobs = []          # (line, what, on_done), the first one in flight
        self.idle_timer = None

    def submit(self, name, args, what, on_done):
        line = (jsonfast.dumps({"func": name, "args": list(args)}) + "\n").encode()
        self.jobs.append((line, what, on_done))
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        if len(self.jobs) == 1:
            self._send_first()

    def warm(self):
        """Starts the child ahead of the jobs a caller expects soon (a pull that a start
        follows), so they do not wait for its import of pyroute2."""
        if self.fd is None:
            self._spawn()
        if not self.jobs:
            if self.idle_timer is not None:
                self.idle_timer.cancel()
            self.idle_timer = self.loop.call_later(self.idle_s, self.close)

    def _spawn(self):
        import socket
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                _worker_main(theirs.detach())
            finally:
                os._exit(1)
        theirs.close()
        self.pid, self.fd = pid, ours.detach()
        self.buffer = b""
        os.set_blocking(self.fd, False)
        self.loop.add_reader(self.fd, self._readable)

    def _send_first(self):
        if self.fd is None:
            self._spawn()
        data = self.jobs[0][0]
        os.set_blocking(self.fd, True)  # a job line is small: the child reads at once
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            self._lost()
            return
        finally:
            if self.fd is not None:
                os.set_blocking(self.fd, False)

    def _readable(self, fd):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._lost()
            return
        self.buffer += chunk
        while b"\n" in self.buffer and self.jobs:
            line, _, self.buffer = self.buffer.partition(b"\n")
            _, what, on_done = self.jobs.pop(0)
            ok, value = _outcome(line, 0, what)
            if self.jobs:
                self._send_first()
            else:
                self.idle_timer = self.loop.call_later(self.idle_s, self.close)
            on_done(ok, value)

    def _lost(self):
        """The child died (or was closed) with a job in flight: that job fails, the next
        one gets a new child."""
        status = self._reap()
        if self.jobs:
            _, what, on_done = self.jobs.pop(0)
            if self.jobs:
                self._send_first()
            on_done(False, EdgertError("%s: the network worker died (wait status %d)"
                                       % (what, status), code="net-failed"))

    def _reap(self):
        status = -1
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None
        if self.pid is not None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = None
        return status

    def close(self):
        """Lets the child go (it exits on EOF); jobs still queued get a new one."""
        self.idle_timer = None
        if not self.jobs:
            self._reap()
