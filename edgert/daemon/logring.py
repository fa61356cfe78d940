"""Container output: a size-capped ring of two files, and an optional syslog mirror.

``<logs>/<id>.log`` is the container's stdout and stderr (O_APPEND). When it grows past half
the cap, ``check()`` copies it to ``<id>.log.1`` (atomic replace) and truncates it to 0
(copytruncate: the container's O_APPEND fd keeps writing at the new end), so the pair holds
about ``cap`` bytes at most; flash never fills with logs.

Positions for followers are offsets in the logical stream of everything written since this
LogRing was made (the daemon's lifetime): ``.log.1`` starts at ``old_start``, ``.log`` at
``cur_start``. A rotation moves both forward, so a follower that was reading the old
``.log`` continues in ``.log.1`` at the same place. Lost on purpose or by race:

- what was rotated out of ``.log.1`` before a slow follower read it (it skips ahead);
- what the container writes between the copy and the truncate of a rotation (a few
  microseconds; the price of never making the container's fd change).

Positions do not survive a daemon restart; followers are connections, which do not either.
"""

import errno
import os

from ..errors import EdgertError

READ_CHUNK = 65536


class LogRing:
    """The log files of one container: ``path`` and ``path + ".1"``."""

    def __init__(self, path, cap_bytes):
        if cap_bytes < 2:
            raise EdgertError("log cap %r: want at least 2 bytes" % (cap_bytes,),
                              code="invalid-config")
        self.path = path
        self.old_path = path + ".1"
        self.cap = cap_bytes
        self.old_start = 0
        self.cur_start = _size(self.old_path)

    def open_for_container(self):
        """A new O_APPEND fd of the log (close-on-exec; the runtime dup2s it to 1 and 2)."""
        os.makedirs(os.path.dirname(self.path), mode=0o750, exist_ok=True)
        self.check()
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def check(self):
        """Rotates when the log is over half the cap; True if it did."""
        if _size(self.path) <= self.cap // 2:
            return False
        copied = self._copy_to_old()
        # The window: what the container writes from here to the truncate is lost.
        os.truncate(self.path, 0)
        self.old_start = self.cur_start
        self.cur_start += copied
        return True

    def _copy_to_old(self):
        tmp = "%s.tmp" % self.old_path
        copied = 0
        src = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
            try:
                while True:
                    chunk = os.read(src, READ_CHUNK)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(dst, view):]
                    copied += len(chunk)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        os.rename(tmp, self.old_path)
        return copied

    def read_tail(self, lines=None, max_bytes=READ_CHUNK):
        """The last ``max_bytes`` of .log.1 + .log, cut to whole lines; at most ``lines``
        lines when given."""
        data = _read_end(self.path, max_bytes)
        if len(data) < max_bytes:
            data = _read_end(self.old_path, max_bytes - len(data)) + data
            cut = _size(self.old_path) + _size(self.path) > len(data)
        else:
            cut = True
        if cut and b"\n" in data[:-1]:
            data = data[data.index(b"\n") + 1:]  # a partial first line
        if lines is not None:
            kept = data.splitlines(keepends=True)[-lines:] if lines > 0 else []
            data = b"".join(kept)
        return data

    def start_position(self):
        """The oldest position still readable (what ``follow`` from the start uses)."""
        return self.old_start

    def end_position(self):
        """The position after the last byte written so far (``follow`` of new output)."""
        return self.cur_start + _size(self.path)

    def read_from(self, position, max_bytes=READ_CHUNK):
        """(data, next position): up to ``max_bytes`` from ``position`` on; b"" when there is
        nothing new. A position already rotated away continues at the oldest data kept."""
        position = max(position, self.old_start)
        if position < self.cur_start:
            data = _read_at(self.old_path, position - self.old_start, max_bytes)
            if data and position + len(data) <= self.cur_start:
                return data, position + len(data)
            position = self.cur_start  # .log.1 is shorter than recorded: replaced meanwhile
        offset = position - self.cur_start
        if offset > _size(self.path):
            # truncated by someone else: start again at its beginning
            offset, position = 0, self.cur_start
        data = _read_at(self.path, offset, max_bytes)
        return data, position + len(data)

    def remove(self):
        """Deletes both files (the instance is gone)."""
        for path in (self.path, self.old_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def _size(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _read_at(path, offset, size):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def _read_end(path, size):
    if size <= 0:
        return b""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    try:
        end = os.fstat(fd).st_size
        start = max(0, end - size)
        chunks = []
        while start < end:
            chunk = os.pread(fd, end - start, start)
            if not chunk:
                break
            chunks.append(chunk)
            start += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


# --- syslog mirror ------------------------------------------------------------------------------

LOG_DAEMON = 3
LOG_INFO = 6
MAX_MESSAGE = 1024  # RFC 3164: a packet is at most 1024 bytes


class SyslogMirror:
    """Sends complete log lines to the local syslog socket as ``<PRI>ident[id]: line``.

    Never blocks the daemon: a full socket buffer or an absent syslogd drops the line and
    counts it in ``dropped``. A partial line waits for its end (or is sent once it is too
    long for one message)."""

    def __init__(self, ident, path="/dev/log", facility=LOG_DAEMON, severity=LOG_INFO):
        self.ident = ident
        self.path = path
        self.pri = facility * 8 + severity
        self.sock = None
        self.partial = {}
        self.sent = 0
        self.dropped = 0

    def feed(self, container_id, data):
        """New output of ``container_id``: sends every line completed by it."""
        pending = self.partial.pop(container_id, b"") + data
        lines = pending.split(b"\n")
        rest = lines.pop()
        header = b"<%d>%s[%s]: " % (self.pri, self.ident.encode(), container_id.encode())
        room = MAX_MESSAGE - len(header)
        while len(rest) >= room:
            lines.append(rest[:room])
            rest = rest[room:]
        for line in lines:
            self._send(header + line[:room])
        if rest:
            self.partial[container_id] = rest

    def forget(self, container_id):
        self.partial.pop(container_id, None)

    def _send(self, message):
        import _socket
        try:
            if self.sock is None:
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM
                                      | _socket.SOCK_NONBLOCK | _socket.SOCK_CLOEXEC)
                try:
                    sock.connect(self.path)
                except OSError:
                    sock.close()
                    raise
                self.sock = sock
            self.sock.send(message)
            self.sent += 1
        except OSError as e:
            self.dropped += 1
            if e.errno not in (errno.EAGAIN, errno.ENOBUFS):
                self.close()  # syslogd gone or restarted: connect again next time

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
