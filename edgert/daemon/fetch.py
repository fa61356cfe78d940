"""Image pulls for the daemon, in a forked child so the event loop never waits on a network.

The child runs the image library's pull (registry, content store, snapshots: all file-locked,
so a CLI pull on the same store may run beside it) and reports JSON lines on a pipe:
progress events, then ``{"done": digest}`` or ``{"error": message, "retryable": bool}``.
Credentials travel by memory (fork), never on a command line or in the environment.
Retryable: network trouble, registry 5xx, a full disk; not retryable: the image or its
architecture is missing, credentials refused, malformed content.
"""

import os

from .. import jsonfast

LINE_LIMIT = 1 << 16


class _PipeProgress:
    def __init__(self, fd):
        self.fd = fd

    def _send(self, doc):
        data = (jsonfast.dumps(doc) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data):]

    def event(self, kind, **fields):
        self._send(dict(fields, event=kind))

    def layer(self, digest, total):
        state = {"last": 0.0}

        def report(done, total=total):
            import time
            now = time.monotonic()
            if now - state["last"] >= 1.0 or done == total:
                state["last"] = now
                self._send({"event": "progress", "digest": digest, "bytes": done,
                            "total": total})
        report.finish = lambda: None
        return report


def retryable(exc):
    from ..image.registry import RegistryError
    if isinstance(exc, (RegistryError, OSError, TimeoutError)):
        return True
    return "certificate" in str(exc) or "TLS" in str(exc)


def _child(fd, store_root, reference, arch, creds, tls_verify, synced):
    progress = _PipeProgress(fd)
    try:
        from ..image.pull import pull
        from ..image.snapshot import Snapshotter
        from ..image.store import Store
        store = Store(store_root)
        record = pull(store, reference, arch, creds=creds, tls_verify=tls_verify,
                      snapshots=Snapshotter(store_root), progress=progress,
                      clock_synced=synced)
        progress._send({"done": record.digest})
        code = 0
    except BaseException as e:  # everything goes back to the daemon as one line
        from ..errors import EdgertError
        message = str(e) if isinstance(e, EdgertError) else "%s: %s" % (type(e).__name__, e)
        try:
            progress._send({"error": message, "retryable": retryable(e)})
        except OSError:
            pass
        code = 1
    os._exit(code)


def _close_inherited(keep):
    """The pull child keeps none of the daemon's fds: not the control socket, not the
    daemon's lock (a flock lives while any copy of its fd does, so a restarted daemon would
    wait for the pull), not the containers' pidfds."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass


class Fetch:
    """One pull in a child process; ``on_event(doc)`` for progress, then exactly one
    ``on_done(ok, message, retryable)``."""

    def __init__(self, loop, store_root, reference, arch, creds, tls_verify, on_event, on_done,
                 synced=None):
        self.loop = loop
        self.on_event = on_event
        self.on_done = on_done
        self.buffer = b""
        self.result = None
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                _close_inherited(keep=wfd)
                import _signal
                for sig in (1, 2, 15):
                    _signal.signal(sig, _signal.SIG_DFL)
                _child(wfd, store_root, reference, arch, creds, tls_verify, synced)
            finally:
                os._exit(1)
        os.close(wfd)
        self.pid = pid
        self.fd = rfd
        os.set_blocking(rfd, False)
        loop.add_reader(rfd, self._readable)

    def cancel(self):
        """Ends the pull (a stopped rollout); no on_done follows."""
        self.on_done = None
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        self._finish()

    def _readable(self, fd):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._finish()
            return
        self.buffer += data
        while b"\n" in self.buffer:
            line, _, self.buffer = self.buffer.partition(b"\n")
            try:
                doc = jsonfast.loads(line.decode())
            except ValueError:
                continue
            if "done" in doc or "error" in doc:
                self.result = doc
            elif self.on_event:
                self.on_event(doc)
        if len(self.buffer) > LINE_LIMIT:
            self.buffer = b""

    def _finish(self):
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            status = -1
        done, self.on_done = self.on_done, None
        if done is None:
            return
        result = self.result or {}
        if status == 0 and "done" in result:
            done(True, result["done"], False)
        elif "error" in result:
            done(False, result["error"], bool(result.get("retryable")))
        else:
            done(False, "the pull process died (wait status %d)" % status, True)
