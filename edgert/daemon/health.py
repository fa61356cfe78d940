"""Health probes (tcp, http, file, exec) and the rollout's health watch.

Health is judged only on what the device itself can see. tcp and http probes connect to a
loopback address *inside the container's network namespace* (the socket is created there:
setns into /proc/<pid>/ns/net, socket(), setns back; a socket keeps its namespace), file
probes look inside the container's root, exec probes run in the container. No probe
leaves the device, so a down WAN or an unreachable registry cannot fail a rollout.

Every probe ends with ``on_result(ok, detail)`` exactly once, through ``loop.call_soon``,
within its ``timeout_s``, and never blocks the loop (sockets are non-blocking; the exec
callable is asynchronous). ``cancel()`` ends a probe without a result.

Loop interface used: add_reader/add_writer(fd, cb(fd)), remove_reader/remove_writer(fd),
call_later(delay, cb, *args) -> timer with cancel(), call_soon(cb, *args), time().
"""

import errno
import os
import socket
import stat

from .. import native
from ..linuxconst import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS

DEFAULT_TIMEOUT_S = 3
# the status line is all we read of an HTTP answer
STATUS_LINE_MAX = 1024
# like the kernel's limit on symlinks in one path walk
MAX_SYMLINKS = 40

def socket_in_netns(pid, family, kind=socket.SOCK_STREAM):
    """A non-blocking socket created in the network namespace of process ``pid``."""
    from ..net import in_netns
    return in_netns("/proc/%d/ns/net" % pid, lambda: socket.socket(
        family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC))


def open_in_root(root_fd, path):
    """An O_PATH fd of ``path`` resolved inside the directory ``root_fd`` as if it were "/":
    symlinks (absolute or with "..") and ".." never lead out of it."""
    if native.have_openat2():
        return native.openat2(root_fd, path, os.O_PATH, 0,
                              RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    return walk_in_root(root_fd, path)


def walk_in_root(root_fd, path):
    """open_in_root without openat2 (Linux < 5.6): one component at a time with
    O_NOFOLLOW; a symlink's target is walked against the same root; ".." pops the stack
    of directories walked and stops at the root."""
    stack = [os.dup(root_fd)]
    todo = _components(path)
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(_components(target))
                continue
            if todo and not stat.S_ISDIR(mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(fd)
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def _components(path):
    """The names of ``path``, last first (a stack to pop)."""
    names = [name for name in path.split("/") if name not in ("", ".")]
    names.reverse()
    return names


def _address(host):
    if host == "::1":
        return socket.AF_INET6, "::1"
    return socket.AF_INET, "127.0.0.1" if host == "localhost" else host


class Probe:
    """One probe run; see the module doc. ``spec`` is the node service's probe object plus
    ``timeout_s``; ``target`` = {"pid": host pid of the container's init,
    "exec": callable(argv, timeout_s, on_done(exit_code or None, detail))}."""

    def __init__(self, loop, spec, target, on_result):
        self.loop = loop
        self.spec = spec
        self.target = target
        self.on_result = on_result
        self.done = False
        self.sock = None
        self.buffer = b""
        self.pending = b""
        self.answer = None
        kind = spec.get("type")
        self.timeout_s = spec.get("timeout_s", DEFAULT_TIMEOUT_S)
        self.timer = loop.call_later(self.timeout_s, self._timed_out)
        start = {"tcp": self._connect, "http": self._connect, "file": self._check_file,
                 "exec": self._exec}.get(kind)
        if start is None:
            self._finish(False, "unknown probe type %r" % (kind,))
            return
        try:
            start()
        except OSError as e:
            where = " (%s)" % e.filename if e.filename else ""
            self._finish(False, "%s: %s%s" % (self._what(), e.strerror or e, where))

    def cancel(self):
        """Stops the probe; no result is reported (not even one already queued)."""
        self.done = True
        self._close()
        if self.answer is not None:
            self.answer.cancel()

    def _what(self):
        spec = self.spec
        if spec.get("type") in ("tcp", "http"):
            where = "%s %s:%s" % (spec["type"], spec.get("host", "127.0.0.1"), spec["port"])
            return where + spec.get("path", "/") if spec["type"] == "http" else where
        if spec.get("type") == "file":
            return "file %s" % spec.get("path")
        return "exec %s" % " ".join(spec.get("command") or ())

    def _finish(self, ok, detail):
        if self.done:
            return
        self.done = True
        self._close()
        self.answer = self.loop.call_soon(self.on_result, ok, detail)

    def _close(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _timed_out(self):
        self.timer = None
        self._finish(False, "%s: no answer within %s s" % (self._what(), self.timeout_s))

    # -- tcp and http --------------------------------------------------------------------

    def _connect(self):
        family, address = _address(self.spec.get("host", "127.0.0.1"))
        self.sock = socket_in_netns(self.target["pid"], family)
        code = self.sock.connect_ex((address, self.spec["port"]))
        if code == 0:
            self._connected()
        elif code in (errno.EINPROGRESS, errno.EAGAIN):
            self.loop.add_writer(self.sock.fileno(), self._on_connect)
        else:
            self._finish(False, "%s: %s" % (self._what(), os.strerror(code)))

    def _on_connect(self, fd):
        self.loop.remove_writer(fd)
        code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._finish(False, "%s: %s" % (self._what(), os.strerror(code)))
        else:
            self._connected()

    def _connected(self):
        if self.spec["type"] == "tcp":
            self._finish(True, "%s: connection accepted" % self._what())
            return
        host = self.spec.get("host", "127.0.0.1")
        self.pending = ("GET %s HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: edgert-health\r\n"
                        "Connection: close\r\n\r\n" % (self.spec.get("path", "/"),
                                                       "[::1]" if host == "::1" else host,
                                                       self.spec["port"])).encode()
        self.loop.add_writer(self.sock.fileno(), self._send)

    def _send(self, fd):
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return
        except OSError as e:
            self._finish(False, "%s: sending the request: %s" % (self._what(), e.strerror))
            return
        self.pending = self.pending[sent:]
        if not self.pending:
            self.loop.remove_writer(fd)
            self.loop.add_reader(fd, self._receive)

    def _receive(self, fd):
        try:
            data = self.sock.recv(STATUS_LINE_MAX - len(self.buffer))
        except BlockingIOError:
            return
        except OSError as e:
            self._finish(False, "%s: reading the answer: %s" % (self._what(), e.strerror))
            return
        self.buffer += data
        if data and b"\n" not in self.buffer and len(self.buffer) < STATUS_LINE_MAX:
            return
        self._judge_status(self.buffer.split(b"\n", 1)[0].rstrip(b"\r"))

    def _judge_status(self, line):
        parts = line.split(None, 2)
        if (len(parts) < 2 or not parts[0].startswith(b"HTTP/") or len(parts[1]) != 3
                or not parts[1].isdigit()):
            shown = line[:80].decode("ascii", "replace") if line else "(nothing)"
            self._finish(False, "%s: not an HTTP answer: %s" % (self._what(), shown))
            return
        status = int(parts[1])
        low, high = self.spec.get("expect_status") or (200, 399)
        ok = low <= status <= high
        self._finish(ok, "%s: status %d%s" % (self._what(), status,
                                              "" if ok else " (expected %d..%d)" % (low, high)))

    # -- file and exec ---------------------------------------------------------------------

    def _check_file(self):
        path = self.spec["path"]
        root = os.open("/proc/%d/root" % self.target["pid"],
                       os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = open_in_root(root, path)
        finally:
            os.close(root)
        try:
            info = os.fstat(fd)
        finally:
            os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            self._finish(False, "%s: not a regular file" % self._what())
        elif info.st_size == 0:
            self._finish(False, "%s: empty" % self._what())
        else:
            self._finish(True, "%s: %d bytes" % (self._what(), info.st_size))

    def _exec(self):
        self.target["exec"](list(self.spec["command"]), self.timeout_s, self._exec_done)

    def _exec_done(self, code, detail=""):
        if code == 0:
            self._finish(True, "%s: exit 0" % self._what())
        else:
            why = detail or ("exit %s" % code if code is not None else "did not finish")
            self._finish(False, "%s: %s" % (self._what(), why))


class Watch:
    """The rollout's health watch of one started container.

    ``health_check`` = {window_s (30), probe (none), interval_s (5), timeout_s (3),
    failure_threshold (3)}. The container must stay up for window_s from ``started_at``
    (on the loop's clock). The probe first runs one interval after the start (startup
    grace), then every interval_s. Verdicts, through ``on_verdict(healthy, reason)`` once:

    - unhealthy: the container exited in the window (``container_exited(exit_info)``),
      failure_threshold probes in a row failed, or the window ended on a failed probe;
    - healthy: the window passed and the last probe passed (no probe: it survived). A
      window that ends before any probe finished waits for one.
    """

    def __init__(self, loop, health_check, target, on_verdict, started_at):
        check = health_check or {}
        self.loop = loop
        self.target = target
        self.on_verdict = on_verdict
        self.window_s = check.get("window_s", 30)
        self.interval_s = check.get("interval_s", 5)
        self.threshold = check.get("failure_threshold", 3)
        probe = check.get("probe")
        self.probe_spec = (dict(probe, timeout_s=check.get("timeout_s", DEFAULT_TIMEOUT_S))
                           if probe else None)
        self.done = False
        self.window_over = False
        self.failures = 0
        self.last = None            # (ok, detail) of the last finished probe
        self.probe = None           # the probe in flight
        self.answer = None
        self.end_timer = loop.call_later(max(0.0, started_at + self.window_s - loop.time()),
                                         self._window_ended)
        self.probe_timer = None
        if self.probe_spec is not None:
            first = max(0.0, started_at + self.interval_s - loop.time())
            self.probe_timer = loop.call_later(first, self._run_probe)

    def container_exited(self, exit_info):
        self._verdict(False, "the container ended during the health window: %s"
                      % _describe_exit(exit_info))

    def cancel(self):
        self.done = True
        self._stop()
        if self.answer is not None:
            self.answer.cancel()

    def _stop(self):
        for timer in (self.end_timer, self.probe_timer):
            if timer is not None:
                timer.cancel()
        self.end_timer = self.probe_timer = None
        if self.probe is not None:
            self.probe.cancel()
            self.probe = None

    def _verdict(self, healthy, reason):
        if self.done:
            return
        self.done = True
        self._stop()
        self.answer = self.loop.call_soon(self.on_verdict, healthy, reason)

    def _run_probe(self):
        self.probe_timer = None
        if self.done or self.probe is not None:
            return
        started = self.loop.time()
        self.probe = Probe(self.loop, self.probe_spec, self.target,
                           lambda ok, detail: self._probe_result(ok, detail, started))

    def _probe_result(self, ok, detail, started):
        self.probe = None
        self.last = (ok, detail)
        self.failures = 0 if ok else self.failures + 1
        if self.failures >= self.threshold:
            self._verdict(False, "the probe failed %d times in a row: %s"
                          % (self.failures, detail))
        elif self.window_over:
            self._judge()
        else:
            delay = max(0.0, started + self.interval_s - self.loop.time())
            self.probe_timer = self.loop.call_later(delay, self._run_probe)

    def _window_ended(self):
        self.end_timer = None
        self.window_over = True
        if self.probe_spec is None:
            self._verdict(True, "ran %s s without exiting" % self.window_s)
        elif self.probe is not None:
            return  # judged when it answers
        elif self.last is None:
            if self.probe_timer is not None:
                self.probe_timer.cancel()
            self._run_probe()
        else:
            self._judge()

    def _judge(self):
        ok, detail = self.last
        if ok:
            self._verdict(True, "ran %s s; %s" % (self.window_s, detail))
        else:
            self._verdict(False, "the last probe of the health window failed: %s" % detail)


def _describe_exit(info):
    kind = info.get("kind")
    if kind == "exited":
        return "exited with code %s" % info.get("code")
    return {"reboot-requested": "rebooted from inside",
            "stopped-by-container": "powered off from inside",
            "stopped": "stopped by edgert"}.get(kind, "killed")
