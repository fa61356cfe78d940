"""The control socket: accept, peer-credential check, framing, dispatch, notifications.

The protocol is docs/protocol.md. Everything here is non-blocking and runs in the daemon's
Loop; a slow, silent or hostile client costs its own buffers and never blocks the others.

Handlers. ``handler.handle(conn, method, params, fds)`` gets validated params and returns the
result, or raises (EdgertError: its code and message go to the client; anything else is
logged and answered as "internal"). Returning ``STREAM`` defers the answer: the handler may
then call ``conn.notify(method, params[, fds])`` any number of times and must end with
``conn.respond(msgid, error, result)``, ``msgid`` being ``conn.msgid`` at the time of the
call. Requests on one connection run in order, so later ones wait for that answer;
``conn.on_close(callback)`` tells the handler when the client is gone.

File descriptors. ``fds`` is a list of the descriptors that came with the request (at most
the method's declared count; extra ones are closed on arrival). A handler that keeps one
takes it out of the list (``fds.pop(i)``, ``fds.clear()``); whatever is still in the list
when ``handle`` returns or raises is closed by the server. ``notify`` can send descriptors:
they go with the notification's first byte, and the connection closes its copies once they
are sent (or when the client is gone).

Access. The socket file is 0660 root:group, so only root and members of ``group_gid`` can
connect in the first place. Each connection is checked again with SO_PEERCRED: uid 0, the
daemon's own uid, primary gid ``group_gid``, or ``group_gid`` among the supplementary groups
the kernel recorded at connect (SO_PEERGROUPS, Linux 4.13+). Older kernels lack it; there
the groups are read from /proc/<pid>/status when the connection is accepted, which can race
(the client may have exited and its pid been reused), acceptable only because the check
backs up the file mode: a peer outside the group could not have connected. Other peers get one "forbidden"
answer to their first request and are disconnected; their first request may be at most
``FORBIDDEN_MAX_MESSAGE`` bytes.
"""

import array
import collections
import errno
import os
import select
import socket
import stat
import struct

import msgpack  # noqa: F401  (rpc.py uses the C codec once it is loaded)

from ..errors import EdgertError
from ..proto import rpc, schema
from .loop import describe_exception

STREAM = object()           # handle() result: the handler answers later with conn.respond()
READ_CHUNK = 65536
MAX_FDS_PER_READ = 8        # room for the largest declared count and a few extra to close
FORBIDDEN_MAX_MESSAGE = 4096
MAX_QUEUED_REQUESTS = 16    # requests waiting behind a deferred one on a connection
HANGUP_CHECK_INTERVAL = 1.0  # seconds, for half-closed clients waiting for a deferred answer
_UCRED = struct.Struct("3i")


SO_PEERGROUPS = 59


def peer_groups(sock, pid):
    """Supplementary gids of the peer: the kernel's record of them at connect time, or
    (before Linux 4.13) what /proc/<pid>/status says now (empty if the process is gone)."""
    size = 64 * 4
    while size <= 65536 * 4:
        try:
            data = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
            return set(array.array("I", data[:len(data) - len(data) % 4]))
        except OSError as e:
            if e.errno == errno.ERANGE:  # more groups than the buffer holds
                size *= 4
                continue
            if e.errno not in (errno.ENOPROTOOPT, errno.EINVAL):
                return set()
            break
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"Groups:"):
                    return {int(g) for g in line[7:].split()}
    except (OSError, ValueError):
        pass
    return set()


class Server:
    def __init__(self, loop, path, handler, group_gid=None, mode=0o660,
                 max_message=1 << 20, max_connections=64, log=None,
                 max_write_buffer=4 << 20):
        self.loop, self.path, self.handler = loop, path, handler
        self.group_gid, self.max_message = group_gid, max_message
        self.max_connections, self.max_write_buffer = max_connections, max_write_buffer
        self.log = log or loop.log
        self.connections = {}   # fd -> Connection
        self._full_logged = False
        self.sock = self._bind(mode)
        self._inode = os.stat(path).st_ino
        loop.add_reader(self.sock.fileno(), self._on_accept)

    def _bind(self, mode):
        sock = socket.socket(socket.AF_UNIX,
                             socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            try:
                sock.bind(self.path)
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
                self._remove_stale_socket()
                sock.bind(self.path)
            # nobody can connect before listen(), so the mode and owner are in place first
            os.chmod(self.path, mode)
            if self.group_gid is not None:
                os.chown(self.path, -1, self.group_gid)
            sock.listen(64)
        except OSError as e:
            sock.close()
            raise EdgertError("cannot listen on %s: %s" % (self.path, e.strerror or e),
                              code="socket") from None
        return sock

    def _remove_stale_socket(self):
        st = os.lstat(self.path)
        if not stat.S_ISSOCK(st.st_mode):
            raise EdgertError("%s exists and is not a socket: remove it or choose another "
                              "--socket" % self.path, code="socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            probe.connect(self.path)
        except ConnectionRefusedError:
            os.unlink(self.path)  # left by a daemon that died: nothing listens on it
            return
        finally:
            probe.close()
        raise EdgertError("another edgertd is listening on %s" % self.path, code="busy")

    def close(self):
        """Closes every connection and the listening socket, and removes the socket file."""
        for conn in list(self.connections.values()):
            conn.close()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _on_accept(self, fd):
        for _ in range(16):  # then let the other callbacks run
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and friends: log, retry on the next wakeup
                self.log("accept on %s failed: %s" % (self.path, e))
                return
            if len(self.connections) >= self.max_connections:
                if not self._full_logged:
                    self.log("%d clients connected: refusing more until some leave"
                             % self.max_connections)
                    self._full_logged = True
                sock.close()
                continue
            self._full_logged = False
            sock.setblocking(False)
            pid, uid, gid = _UCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            conn = Connection(self, sock, pid, uid, gid, self._allowed(sock, pid, uid, gid))
            self.connections[conn.fd] = conn

    def _allowed(self, sock, pid, uid, gid):
        if uid == 0 or uid == os.geteuid():
            return True
        if self.group_gid is None:
            return False
        return gid == self.group_gid or self.group_gid in peer_groups(sock, pid)

    def forbidden_message(self, conn):
        if self.group_gid is None:
            who = "root"
        else:
            who = "root or a member of group %d" % self.group_gid
        return "permission denied: uid %d (pid %d) is not %s" % (conn.uid, conn.pid, who)


class Connection:
    """One client. ``msgid`` is the id of the request being handled."""

    def __init__(self, server, sock, pid, uid, gid, allowed):
        self.server, self.loop, self.sock = server, server.loop, sock
        self.fd = sock.fileno()
        self.pid, self.uid, self.gid, self.allowed = pid, uid, gid, allowed
        limit = server.max_message if allowed else FORBIDDEN_MAX_MESSAGE
        self.decoder = rpc.Decoder(limit, limit + READ_CHUNK)
        self.msgid = None
        self.closed = False
        self._waiting = None      # msgid of a deferred request, until respond()
        self._queue = collections.deque()  # (msgid, method, params, fds) behind it
        self._fds_in_progress = []  # fds that came with a request not fully read yet
        self._out = bytearray()
        self._out_fds = collections.deque()  # [offset in _out, fds, length of the message]
        self._close_when_flushed = False
        self._close_callbacks = []
        self.loop.add_reader(self.fd, self._on_readable)

    def __repr__(self):
        return "client pid %d uid %d" % (self.pid, self.uid)

    # handler API

    def notify(self, method, params, fds=()):
        """Sends a notification (part of a stream), with ``fds`` (ours now: closed once sent);
        does nothing but close them once the client is gone."""
        if self.closed:
            _close_fds(list(fds))
            return
        self._send(rpc.encode_notification(method, params), fds)

    def respond(self, msgid, error, result):
        """Ends a deferred request; ``error`` is None, an error map or an exception."""
        if self.closed:
            return
        if msgid != self._waiting:
            raise ValueError("respond(%r): the deferred request is %r" % (msgid, self._waiting))
        if isinstance(error, BaseException):
            error = rpc.error_map(error)
        self._waiting = None
        self._send_response(msgid, error, result)
        self.loop.call_soon(self._run_queue)

    def on_close(self, callback):
        """``callback(conn)`` runs once when the connection closes."""
        self._close_callbacks.append(callback)

    # reading

    def _on_readable(self, fd):
        try:
            # received descriptors must not leak into the containers the daemon starts
            data, ancdata, _, _ = self.sock.recvmsg(
                READ_CHUNK, socket.CMSG_SPACE(MAX_FDS_PER_READ * 4), socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        fds = _received_fds(ancdata)
        if not data:
            _close_fds(fds)
            self._on_eof()
            return
        try:
            self._take_messages(self.decoder.feed(data), fds)
        except rpc.ProtocolError as e:
            _close_fds(fds)
            self.server.log("%s: protocol error, disconnecting: %s" % (self, e))
            self.close()
            return
        self._run_queue()

    def _take_messages(self, messages, fds):
        """Queues the requests, each with the descriptors that came with its first bytes.

        The kernel ends a read at the end of the data that carried descriptors, so new
        ``fds`` belong to the request holding this read's last byte: the unfinished one if
        the decoder holds a partial message, else the last one completed. Descriptors held
        for an unfinished request go to the first request completed in this read.
        """
        earlier, self._fds_in_progress = self._fds_in_progress, []
        if fds and self.decoder.pending:
            if earlier and not messages:
                _close_fds(earlier)
                raise rpc.ProtocolError("descriptors sent twice with one request")
            self._fds_in_progress, fds = fds, []
        if not messages:
            self._fds_in_progress = earlier or self._fds_in_progress
            return
        last = len(messages) - 1
        for i, message in enumerate(messages):
            mine = []
            if i == 0 and earlier:
                mine, earlier = earlier, []
            if i == last and fds:
                if mine:
                    _close_fds(mine)
                    raise rpc.ProtocolError("descriptors sent twice with one request")
                mine, fds = fds, []
            if message[0] != "request":
                _close_fds(mine)
                raise rpc.ProtocolError("clients send requests only, got a %s" % message[0])
            if len(self._queue) >= MAX_QUEUED_REQUESTS:
                _close_fds(mine)
                raise rpc.ProtocolError("more than %d requests waiting for an answer"
                                        % MAX_QUEUED_REQUESTS)
            self._queue.append((message[1], message[2], message[3], mine))

    def _on_eof(self):
        """The client sent all it will send: answer what is queued, then close.

        A client that shut down only its sending side still reads, so a deferred answer is
        still delivered; one that closed the socket altogether (POLLHUP) is dropped at once,
        streams included. With the reader gone nothing else would notice a later hangup
        during a quiet stream, so it is looked for once a second until the answer.
        """
        self.loop.remove_reader(self.fd)
        self._close_when_flushed = True
        self._run_queue()
        self._watch_hangup()

    def _watch_hangup(self):
        if self.closed or self._waiting is None:
            return
        if self._peer_gone():
            self.close()
        else:
            self.loop.call_later(HANGUP_CHECK_INTERVAL, self._watch_hangup)

    def _peer_gone(self):
        probe = select.poll()
        probe.register(self.fd, 0)  # POLLHUP is reported whatever the mask
        return any(event & select.POLLHUP for _, event in probe.poll(0))

    # dispatch

    def _run_queue(self):
        while self._queue and self._waiting is None and not self.closed:
            msgid, method, params, fds = self._queue.popleft()
            try:
                self._dispatch(msgid, method, params, fds)
            finally:
                _close_fds(fds)
        self._close_if_done()

    def _dispatch(self, msgid, method, params, fds):
        if not self.allowed:
            self._send_response(msgid, {"code": "forbidden",
                                        "message": self.server.forbidden_message(self)}, None)
            self.loop.remove_reader(self.fd)
            self._drop_queue()
            self._close_when_flushed = True
            return
        self.msgid = msgid
        error = result = None
        try:
            params = schema.validate(method, params)
            declared = schema.METHODS[method].fds
            if len(fds) > declared:
                _close_fds(fds[declared:])
                del fds[declared:]
            result = self.server.handler.handle(self, method, params, fds)
        except EdgertError as e:
            error = rpc.error_map(e)
        except Exception as e:
            self.server.log("%s: %s failed: %s" % (self, method, describe_exception(e)))
            error = rpc.error_map(e)
        if result is STREAM:
            self._waiting = msgid
        else:
            self._send_response(msgid, error, result)

    def _drop_queue(self):
        for _, _, _, fds in self._queue:
            _close_fds(fds)
        self._queue.clear()

    def _send_response(self, msgid, error, result):
        try:
            data = rpc.encode_response(msgid, error, result)
        except Exception as e:
            self.server.log("%s: cannot encode the answer to request %d: %s"
                            % (self, msgid, describe_exception(e)))
            data = rpc.encode_response(msgid, {
                "code": "internal",
                "message": "internal error: cannot encode the result: %s: %s"
                           % (type(e).__name__, e)}, None)
        self._send(data)

    # writing

    def _send(self, data, fds=()):
        if self.closed:
            _close_fds(list(fds))
            return
        # one answer of any size goes out; answers piling up behind it are capped
        if self._out and len(self._out) + len(data) > self.server.max_write_buffer:
            self.server.log("%s: more than %d bytes of answers unread, disconnecting"
                            % (self, self.server.max_write_buffer))
            _close_fds(list(fds))
            self.close()
            return
        idle = not self._out
        if fds:
            self._out_fds.append([len(self._out), list(fds), len(data)])
        self._out += data
        if idle:
            self._flush()
            if self._out and not self.closed:
                self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self, fd):
        self._flush()
        if not self.closed and not self._out:
            self.loop.remove_writer(self.fd)
            self._close_if_done()

    def _flush(self):
        try:
            while self._out:
                mark = self._out_fds[0] if self._out_fds else None
                if mark is not None and mark[0] == 0:
                    # the descriptors ride on the message's first byte, and its bytes go in a
                    # send of their own: a read that returns descriptors stops after that
                    # send's bytes, so the client knows which message they belong to. The
                    # kernel sends them or nothing (EAGAIN): ours to close only after a send.
                    sent = self.sock.sendmsg(
                        [bytes(self._out[:mark[2]])],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", mark[1]))],
                        socket.MSG_NOSIGNAL)
                    self._out_fds.popleft()
                    _close_fds(mark[1])
                elif mark is not None:  # only up to the byte the descriptors go with
                    sent = self.sock.send(bytes(self._out[:mark[0]]), socket.MSG_NOSIGNAL)
                else:
                    sent = self.sock.send(self._out, socket.MSG_NOSIGNAL)
                del self._out[:sent]
                for later in self._out_fds:
                    later[0] -= sent
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EPIPE, ECONNRESET: the client left
            self.close()

    def _close_if_done(self):
        if (self._close_when_flushed and not self.closed and not self._out
                and not self._queue and self._waiting is None):
            self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.server.connections.pop(self.fd, None)
        self._drop_queue()
        _close_fds(self._fds_in_progress)
        while self._out_fds:
            _close_fds(self._out_fds.popleft()[1])
        self._out = bytearray()
        self.sock.close()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception as e:
                self.server.log("%s: close callback failed: %s" % (self, describe_exception(e)))


def _received_fds(ancdata):
    fds = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(data[:len(data) - len(data) % got.itemsize])
            fds.extend(got)
    return fds


def _close_fds(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    del fds[:]
