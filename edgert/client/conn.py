"""A blocking control-socket client (protocol: docs/protocol.md).

Imports only the protocol framing, so the CLI starts fast: never import edgert.daemon or
edgert.runtime here. It uses ``_socket`` rather than ``socket``: socket.py imports enum and
selectors, 4 ms of every CLI start on a fast machine.
"""

import os
import sys

import _socket

from ..errors import EdgertError
from ..proto import rpc

READ_CHUNK = 65536
MAX_FDS = 4  # the daemon sends one (exec -t's pty master); more are closed
# Silence this long on a connection (a stop's grace period, a quiet `logs -f`) makes the
# client ping edgertd on a second connection: a daemon that answers that is busy or has
# nothing to say, one that does not within as long again is hung, and the command fails
# instead of waiting for ever (a serial console has nobody to press ^C).
SILENCE_S = 15.0
MAX_ANSWER = 16 << 20  # a service list or an inspect of a big instance stays far below


def default_path():
    """EDGERT_SOCKET, else <EDGERT_RUN_DIR or /run/edgert>/edgert.sock."""
    path = os.environ.get("EDGERT_SOCKET")
    if path:
        return path
    return os.path.join(os.environ.get("EDGERT_RUN_DIR") or "/run/edgert", "edgert.sock")


def _group_name(gid):
    """The name of ``gid`` from /etc/group (no grp module on the device), else the number."""
    try:
        with open("/etc/group") as f:
            for line in f:
                fields = line.split(":")
                if len(fields) > 2 and fields[2] == str(gid):
                    return fields[0]
    except OSError:
        pass
    return str(gid)


class Connection:
    def __init__(self, path=None, silence_s=SILENCE_S, probe=True):
        """``probe``: on ``silence_s`` without a byte, ping on a second connection (False:
        fail at once, as that second connection itself does)."""
        self.path = path or default_path()
        self.silence_s, self.probe = silence_s, probe
        self._next_id = 0
        self._decoder = rpc.Decoder(MAX_ANSWER, MAX_ANSWER + READ_CHUNK)
        self._messages = []
        self._fds = []  # those of the message _next_message returned last
        self._message_fds = []  # those of each message in _messages
        self._partial_fds = []  # those of the message the decoder has only part of
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        self.sock.settimeout(silence_s)
        try:
            self.sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            self.sock.close()
            state = "no socket" if isinstance(e, FileNotFoundError) else "nothing listens"
            raise EdgertError("edgertd is not running (%s at %s): start it with `edgertd` or "
                              "your init system" % (state, self.path),
                              code="not-running") from None
        except PermissionError:
            self.sock.close()
            raise EdgertError("permission denied on %s: run as root or as a member of group %s"
                              % (self.path, self._socket_group()), code="forbidden") from None
        except TimeoutError:
            self.sock.close()
            raise self._hung("accepted no connection within") from None
        except OSError as e:
            self.sock.close()
            raise EdgertError("cannot connect to edgertd at %s: %s" % (self.path, e.strerror),
                              code="not-running") from None

    def _socket_group(self):
        try:
            return _group_name(os.stat(self.path).st_gid)
        except OSError:
            return "?"

    def close(self):
        for fds in [self.take_fds(), self._partial_fds] + self._message_fds:
            for fd in fds:
                os.close(fd)
        self._partial_fds, self._message_fds = [], []
        self.sock.close()

    def take_fds(self):
        """The descriptors that came with the message read last (the caller's now; those not
        taken are closed when the next message is read)."""
        fds, self._fds = self._fds, []
        return fds

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, method, params=None, fds=()):
        """Sends one request and returns its result; raises RpcError for an error answer."""
        for item in self.stream(method, params, fds):
            if item[0] == "result":
                return item[1]
        raise EdgertError("edgertd sent no answer to %s" % method, code="protocol")

    def stream(self, method, params=None, fds=()):
        """Yields ("notification", method, params) items, then ("result", result).

        A stream left unfinished leaves its answer on the wire: close the connection then.
        """
        msgid = self._send_request(method, params, fds)
        while True:
            message = self._next_message()
            if message[0] == "notification":
                yield message
                continue
            if message[0] != "response" or message[1] != msgid:
                raise rpc.ProtocolError("edgertd answered %s %r while request %d was open"
                                        % (message[0], message[1], msgid))
            _, _, error, result = message
            if error is not None:
                raise rpc.error_from_map(error)
            yield ("result", result)
            return

    def _send_request(self, method, params, fds):
        self._next_id = (self._next_id + 1) & rpc.MAX_MSGID
        data = rpc.encode_request(self._next_id, method, {} if params is None else params)
        try:
            if fds:
                # descriptors travel with the first byte: the daemon gives them to the
                # request that byte starts (docs/protocol.md, "Passing descriptors")
                self.sock.sendmsg([data[:1]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, b"".join(
                    fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds))])
                data = data[1:]
            self.sock.sendall(data)
        except TimeoutError:
            raise self._hung("read nothing of the request within") from None
        except OSError as e:
            raise self._lost(e) from None
        return self._next_id

    def _next_message(self):
        while not self._messages:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(
                    READ_CHUNK, _socket.CMSG_SPACE(MAX_FDS * 4), _socket.MSG_CMSG_CLOEXEC)
            except TimeoutError:
                self._check_alive()
                continue
            except OSError as e:
                raise self._lost(e) from None
            received = [int.from_bytes(payload[i:i + 4], sys.byteorder)
                         for level, kind, payload in ancillary
                         if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
                         for i in range(0, len(payload) - len(payload) % 4, 4)]
            if not data:
                for fd in received:
                    os.close(fd)
                raise self._lost(None)
            self._take_messages(self._decoder.feed(data), received)
        for fd in self.take_fds():  # the last message's, not taken
            os.close(fd)
        self._fds = self._message_fds.pop(0)
        return self._messages.pop(0)

    def _take_messages(self, messages, received):
        """Queues ``messages`` with their descriptors. Descriptors travel with their message's
        first byte, which the daemon sends in a send of its own, and a read that returns
        descriptors ends with that send's bytes: they are the last message begun in it."""
        fds_of = [[] for _ in messages]
        if messages and self._partial_fds:  # the message begun in an earlier read
            fds_of[0], self._partial_fds = self._partial_fds, []
        if received:
            if self._decoder.pending:
                self._partial_fds.extend(received)
            elif messages:
                fds_of[-1].extend(received)
            else:
                for fd in received:
                    os.close(fd)
        self._messages, self._message_fds = messages, fds_of

    def _check_alive(self):
        """Returns when edgertd answers a ping on a second connection; raises if not."""
        if self.probe:
            try:
                side = Connection(self.path, self.silence_s, probe=False)
                try:
                    side.call("ping")
                    return
                finally:
                    side.close()
            except EdgertError as e:
                if e.code != "hung":
                    raise
        raise self._hung("answered nothing, not even a ping on a second connection, for")

    def _hung(self, what):
        return EdgertError("edgertd at %s %s %g s: it may be hung; see its log, and restart it "
                           "(its containers keep running)" % (self.path, what, self.silence_s),
                           code="hung")

    def _lost(self, exc):
        why = ": %s" % exc.strerror if exc is not None and exc.strerror else ""
        return EdgertError("edgertd closed the connection%s (it may have restarted, or "
                           "refused the request: see its log)" % why, code="disconnected")

