"""The control socket for real: a Server in a Loop in a forked child, driven over its socket by
the reference client, raw sockets, other uids, and hypothesis."""

import array
import errno
import fcntl
import os
import select
import shutil
import signal
import socket
import tempfile
import time

import msgpack
import pytest

from edgert.client.conn import Connection
from edgert.daemon.loop import Loop
from edgert.daemon.server import STREAM, Server
from edgert.errors import EdgertError, NotFound
from edgert.proto import rpc

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (setuid to another user)")
GROUP = 4242       # the daemon's group in these tests; no user has it unless a test gives it
NOBODY = 65534


class Handler:
    """Methods with test behaviour: results, errors, deferred answers, streams, fds."""

    def __init__(self):
        self.server = None
        self.kept_fds = []
        self.closed_streams = 0

    def handle(self, conn, method, params, fds):
        if method == "ping":
            return {"version": "test", "uid": conn.uid}
        if method == "status":
            return {"connections": len(self.server.connections),
                    "fds": len(os.listdir("/proc/self/fd")),
                    "kept": len(self.kept_fds), "closed_streams": self.closed_streams}
        if method == "exec":  # uses the descriptors, keeps none
            os.write(fds[1], b"out %d\n" % len(fds))
            cloexec = all(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC for fd in fds)
            return {"fds": len(fds), "cloexec": cloexec}
        if method == "run":  # keeps stdin
            self.kept_fds.append(fds.pop(0))
            return {"fds": len(fds) + 1}
        if method == "service.get":
            raise NotFound("no node service %r: import it first" % params["name"])
        if method == "settings.set":
            raise KeyError("oops")
        if method == "settings.get":
            return {"unencodable": object()}
        if method == "instance.stop":  # answers later
            conn.loop.call_later(0.05, conn.respond, conn.msgid, None, "stopped")
            return STREAM
        if method == "logs":  # a finite stream answered at once
            for i in range(params["tail"] or 0):
                fds_out = ()
                if params["id"] == "with-fds" and i % 2:  # a pipe's read end, "line i" in it
                    r, w = os.pipe()
                    os.write(w, b"line %d" % i)
                    os.close(w)
                    fds_out = [r]
                note = {"line": i, "fd": True} if fds_out else {"line": i}
                conn.notify("log", note, fds_out)
            return {"lines": params["tail"]}
        if method == "stats":  # a stream that stays quiet
            conn.on_close(self._stream_closed)
            return STREAM
        if method == "events":  # an endless stream, as fast as the loop goes
            def pump():
                if not conn.closed:
                    conn.notify("event", {"data": b"x" * 65536})
                    conn.loop.call_soon(pump)

            conn.on_close(self._stream_closed)
            pump()
            return STREAM
        raise EdgertError("%s: not in this test handler" % method, code="unsupported")

    def _stream_closed(self, conn):
        self.closed_streams += 1


class ServerProcess:
    def __init__(self, directory, mode, group):
        self.path = os.path.join(directory, "edgert.sock")
        self.log_path = os.path.join(directory, "server.log")
        ready_r, ready_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(ready_r)
            self._serve(ready_w, mode, group)
        os.close(ready_w)
        readable, _, _ = select.select([ready_r], [], [], 10)
        message = os.read(ready_r, 4096) if readable else b"server did not start in 10 s"
        os.close(ready_r)
        if message != b"ready":
            self.stop()
            raise AssertionError(message.decode())

    def _serve(self, ready_w, mode, group):
        code = 1
        try:
            log_file = open(self.log_path, "a", buffering=1)
            loop = Loop(log=lambda line: log_file.write(line + "\n"))
            handler = Handler()
            handler.server = server = Server(loop, self.path, handler, group_gid=group,
                                             mode=mode)
            loop.on_signal(signal.SIGTERM, lambda signum: loop.stop())
            os.write(ready_w, b"ready")
            os.close(ready_w)
            loop.run()
            server.close()
            loop.close()
            code = 0
        except BaseException as e:
            try:
                os.write(ready_w, ("%s: %s" % (type(e).__name__, e)).encode())
            except OSError:
                pass
        finally:
            os._exit(code)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        os.kill(self.pid, signal.SIGTERM)
        _, status = os.waitpid(self.pid, 0)
        return status


@pytest.fixture
def start_server():
    """start_server(mode=0o660, group=GROUP) -> a ServerProcess in a world-readable dir."""
    if not IS_ROOT:
        pytest.skip("needs root: the socket is given to a group the test user is not in")
    directory = tempfile.mkdtemp(prefix="edgert-server-")
    os.chmod(directory, 0o755)  # other uids reach the socket; its own mode decides
    started = []

    def start(mode=0o660, group=GROUP):
        started.append(ServerProcess(directory, mode, group))
        return started[-1]
    yield start
    for server in started:
        assert server.stop() == 0, server.log()
    shutil.rmtree(directory)


@pytest.fixture
def server(start_server):
    return start_server()


def status(server):
    with Connection(server.path) as conn:
        return conn.call("status")


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in %s s" % timeout
        time.sleep(0.02)


def raw_connect(server):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(server.path)
    sock.settimeout(10)
    return sock


def read_until_closed(sock):
    """Everything the server sends until it closes; a reset counts as closed."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_calls_errors_and_streams(server):
    with Connection(server.path) as conn:
        assert conn.call("ping") == {"version": "test", "uid": os.geteuid()}
        with pytest.raises(rpc.RpcError) as info:
            conn.call("service.get", {"name": "web"})
        assert (info.value.code, str(info.value)) == (
            "not-found", "no node service 'web': import it first")
        with pytest.raises(rpc.RpcError) as info:
            conn.call("settings.set", {"settings": {}})
        assert (info.value.code, str(info.value)) == (
            "internal", "internal error: KeyError: 'oops'")
        with pytest.raises(rpc.RpcError) as info:
            conn.call("settings.get")
        assert info.value.code == "internal" and "cannot encode the result" in str(info.value)
        with pytest.raises(rpc.RpcError) as info:
            conn.call("instance.stop", {"id": 7})
        assert info.value.code == "bad-params"
        with pytest.raises(rpc.RpcError) as info:
            conn.call("no.such", {})
        assert info.value.code == "unknown-method"
        assert conn.call("instance.stop", {"id": "a"}) == "stopped"
        assert list(conn.stream("logs", {"id": "a", "tail": 3})) == [
            ("notification", "log", {"line": 0}), ("notification", "log", {"line": 1}),
            ("notification", "log", {"line": 2}), ("result", {"lines": 3})]
        assert conn.call("ping")["version"] == "test"  # the connection is still in step
    assert "settings.set failed: KeyError: 'oops'" in server.log()


def test_requests_on_one_connection_are_answered_in_order(server):
    sock = raw_connect(server)
    sock.sendall(rpc.encode_request(1, "instance.stop", {"id": "a"})
                 + rpc.encode_request(2, "ping", {}))
    decoder = rpc.Decoder()
    answers = []
    while len(answers) < 2:
        answers += decoder.feed(sock.recv(65536))
    assert [a[1] for a in answers] == [1, 2]
    assert answers[0][3] == "stopped"
    sock.close()


def test_a_stalled_client_does_not_block_others(server):
    stalled = raw_connect(server)
    stalled.sendall(rpc.encode_request(1, "ping", {})[:3])
    unread = raw_connect(server)
    unread.sendall(rpc.encode_request(1, "instance.stop", {"id": "x"}))
    started = time.monotonic()
    with Connection(server.path) as conn:
        for _ in range(20):
            assert conn.call("ping")
    assert time.monotonic() - started < 2
    assert status(server)["connections"] == 3
    stalled.close()
    unread.close()
    wait_for(lambda: status(server)["connections"] == 1)


def test_oversized_message_closes_the_connection(server):
    sock = raw_connect(server)
    big = rpc.encode_request(1, "service.import", {"input": {"x": "y" * (2 << 20)}})
    try:
        sock.sendall(big)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert read_until_closed(sock) == b""
    sock.close()
    assert "message larger than 1048576 bytes" in server.log()
    with Connection(server.path) as conn:
        assert conn.call("ping")


def test_a_client_that_does_not_read_its_stream_is_dropped(server):
    sock = raw_connect(server)
    sock.sendall(rpc.encode_request(1, "events", {}))
    wait_for(lambda: status(server)["closed_streams"] == 1)
    assert status(server)["connections"] == 1
    assert "more than 4194304 bytes of answers unread, disconnecting" in server.log()
    sock.close()


def test_client_stream_of_an_endless_stream_can_be_closed(server):
    conn = Connection(server.path)
    items = conn.stream("events", {})
    assert next(items)[0] == "notification"
    conn.close()
    wait_for(lambda: status(server)["closed_streams"] == 1)


def test_a_client_that_leaves_a_quiet_stream_is_noticed(server):
    sock = raw_connect(server)
    sock.sendall(rpc.encode_request(1, "stats", {}))
    wait_for(lambda: status(server)["connections"] == 2)
    sock.close()
    wait_for(lambda: status(server)["closed_streams"] == 1)
    assert status(server)["connections"] == 1
    # half-closed first: the hangup is found by the periodic check
    sock = raw_connect(server)
    sock.sendall(rpc.encode_request(1, "stats", {}))
    sock.shutdown(socket.SHUT_WR)
    wait_for(lambda: status(server)["connections"] == 2)
    sock.close()
    wait_for(lambda: status(server)["closed_streams"] == 2, timeout=5)


def test_connections_over_the_limit_are_closed_at_once(server):
    socks = [raw_connect(server) for _ in range(64)]  # accepted in this order
    extra = raw_connect(server)
    assert read_until_closed(extra) == b""
    extra.close()
    socks.pop().close()
    wait_for(lambda: _pings(server))
    assert "64 clients connected: refusing more until some leave" in server.log()
    for sock in socks:
        sock.close()
    wait_for(lambda: (_pings(server) or {}).get("connections") == 1)


def _pings(server):
    """status, or None while the server refuses connections."""
    try:
        return status(server)
    except EdgertError:
        return None


def test_descriptors_are_given_to_the_request_and_closed(server):
    r, w = os.pipe()
    try:
        with Connection(server.path) as conn:
            base = conn.call("status")["fds"]
            assert conn.call("exec", {"id": "a", "args": ["x"]}, fds=[w, w, w]) == {
                "fds": 3, "cloexec": True}
            assert os.read(r, 100) == b"out 3\n"
            assert conn.call("status")["fds"] == base
            # more than declared: the extra ones are closed on arrival
            assert conn.call("exec", {"id": "a", "args": ["x"]}, fds=[w] * 6)["fds"] == 3
            assert os.read(r, 100) == b"out 3\n"
            # a method that takes none, and a request that fails validation
            assert conn.call("ping", fds=[w, w])
            with pytest.raises(rpc.RpcError):
                conn.call("exec", {"id": "a", "args": []}, fds=[w, w, w])
            assert conn.call("status")["fds"] == base
            # a handler that takes one keeps it, the rest are closed
            assert conn.call("run", {"args": ["x"]}, fds=[r, w, w]) == {"fds": 3}
            after = conn.call("status")
            assert (after["fds"], after["kept"]) == (base + 1, 1)
    finally:
        os.close(r)
        os.close(w)


def test_notifications_carry_descriptors_to_the_client(server):
    """Each descriptor arrives by the time its notification is decoded, also when many
    notifications come in one read; the server keeps no copy, also of descriptors for a
    client that has gone."""
    with Connection(server.path) as conn:
        base = conn.call("status")["fds"]
        got = []
        for kind, *rest in conn.stream("logs", {"id": "with-fds", "tail": 200}):
            if kind == "notification":
                fds = conn.take_fds()
                assert len(fds) == rest[1].get("fd", 0), rest
                for fd in fds:
                    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
                    got.append(os.read(fd, 100))
                    os.close(fd)
        assert got == [b"line %d" % i for i in range(1, 200, 2)]
        assert conn.call("status")["fds"] == base
        sock = raw_connect(server)  # asks and leaves without reading
        sock.sendall(rpc.encode_request(1, "logs", {"id": "with-fds", "tail": 4000}))
        sock.close()
        deadline = time.monotonic() + 5
        while conn.call("status")["fds"] != base and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.call("status")["fds"] == base


def test_descriptors_with_the_whole_request_and_behind_a_deferred_one(server):
    r, w = os.pipe()
    sock = raw_connect(server)
    try:
        with Connection(server.path) as conn:
            base = conn.call("status")["fds"]
            sock.sendall(rpc.encode_request(1, "instance.stop", {"id": "a"}))
            sock.sendmsg([rpc.encode_request(2, "exec", {"id": "a", "args": ["x"]})],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                           array.array("i", [w] * 3).tobytes())])
            decoder = rpc.Decoder()
            answers = []
            while len(answers) < 2:
                answers += decoder.feed(sock.recv(65536))
            assert [(a[1], a[3]) for a in answers] == [
                (1, "stopped"), (2, {"fds": 3, "cloexec": True})]
            assert os.read(r, 100) == b"out 3\n"
            assert conn.call("status")["fds"] == base
    finally:
        sock.close()
        os.close(r)
        os.close(w)


def test_client_protocol_violations_close_the_connection(server):
    for data in (b"\xc1", msgpack.packb([1, 5, None, "not a request"]),
                 msgpack.packb([0, 1, "ping", [1]]), b"\x94\x00\x01\xa2\xc3\x28\x80"):
        sock = raw_connect(server)
        sock.sendall(data)
        assert read_until_closed(sock) == b""
        sock.close()
    assert status(server)["connections"] == 1


def test_half_closed_client_gets_its_answers(server):
    sock = raw_connect(server)
    sock.sendall(rpc.encode_request(1, "ping", {}) + rpc.encode_request(2, "instance.stop",
                                                                         {"id": "a"}))
    sock.shutdown(socket.SHUT_WR)
    answers = rpc.Decoder().feed(read_until_closed(sock))
    assert [a[1] for a in answers] == [1, 2]
    sock.close()


def test_a_second_server_on_the_same_socket_is_refused(server):
    with pytest.raises(EdgertError, match="another edgertd is listening on %s" % server.path):
        Server(Loop(), server.path, Handler())


def test_stale_socket_is_replaced_and_other_files_are_not(tmp_path):
    path = str(tmp_path / "edgert.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # a daemon that died: the file stays, nothing listens
    loop = Loop()
    server = Server(loop, path, Handler(), mode=0o600)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    server.close()
    assert not os.path.exists(path)
    with open(path, "w") as f:
        f.write("not a socket")
    with pytest.raises(EdgertError, match="exists and is not a socket"):
        Server(loop, path, Handler())
    loop.close()


def test_client_says_when_the_daemon_is_not_running(tmp_path):
    path = str(tmp_path / "missing.sock")
    with pytest.raises(EdgertError) as info:
        Connection(path)
    assert str(info.value) == ("edgertd is not running (no socket at %s): start it with "
                               "`edgertd` or your init system" % path)


def test_default_socket_path(monkeypatch):
    from edgert.client.conn import default_path
    monkeypatch.delenv("EDGERT_SOCKET", raising=False)
    monkeypatch.delenv("EDGERT_RUN_DIR", raising=False)
    assert default_path() == "/run/edgert/edgert.sock"
    monkeypatch.setenv("EDGERT_RUN_DIR", "/tmp/r")
    assert default_path() == "/tmp/r/edgert.sock"
    monkeypatch.setenv("EDGERT_SOCKET", "/x.sock")
    assert default_path() == "/x.sock"


def as_other_user(fn, groups=(), gid=NOBODY):
    """Runs fn() in a child with uid nobody; returns what it returns (a str)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(NOBODY)
            answer = fn()
        except BaseException as e:
            answer = "%s: %s" % (type(e).__name__, e)
        os.write(w, str(answer).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode()
    os.waitpid(pid, 0)
    return answer


def ping_answer(path):
    def call():
        try:
            with Connection(path) as conn:
                return "ok uid %d" % conn.call("ping")["uid"]
        except EdgertError as e:
            return "%s: %s" % (e.code, e)
    return call


@needs_root
def test_peers_outside_the_group_are_refused(start_server):
    server = start_server(mode=0o666)  # the file lets everyone in: the credential check acts
    answer = as_other_user(ping_answer(server.path))
    assert answer.startswith("forbidden: permission denied: uid 65534 (pid ")
    assert answer.endswith("is not root or a member of group %d" % GROUP)
    assert as_other_user(ping_answer(server.path), groups=[GROUP]) == "ok uid 65534"
    assert as_other_user(ping_answer(server.path), gid=GROUP) == "ok uid 65534"
    assert status(server)["connections"] == 1


@needs_root
def test_refused_peer_with_a_big_first_request_is_closed(start_server):
    server = start_server(mode=0o666)

    def big_request():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(server.path)
        try:
            sock.sendall(rpc.encode_request(1, "ping", {"x": "y" * 10000}))
        except OSError as e:
            return "send: %s" % errno.errorcode[e.errno]
        return "answer %r" % read_until_closed(sock)
    assert as_other_user(big_request) in ("answer b''", "send: EPIPE", "send: ECONNRESET")
    assert "larger than 4096 bytes" in server.log()


@needs_root
def test_socket_mode_keeps_others_out_with_a_clear_message(start_server):
    server = start_server()  # 0660 root:GROUP
    st = os.stat(server.path)
    assert (oct(st.st_mode & 0o777), st.st_uid, st.st_gid) == ("0o660", 0, GROUP)
    assert as_other_user(ping_answer(server.path)) == (
        "forbidden: permission denied on %s: run as root or as a member of group %d"
        % (server.path, GROUP))
    assert as_other_user(ping_answer(server.path), groups=[GROUP]) == "ok uid 65534"


def test_fuzzed_clients_do_not_hurt_the_server(server):
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings, strategies as st
    import tests.unit.test_rpc_fuzz as fuzz

    with Connection(server.path) as conn:
        base = conn.call("status")["fds"]

    def send(data):
        """Sends, half-closes, reads answers for a moment (streams may not end), leaves."""
        sock = raw_connect(server)
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 0.3
            sock.settimeout(0.3)
            while time.monotonic() < deadline and sock.recv(65536):
                pass
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        sock.close()

    payloads = st.one_of(
        st.binary(max_size=200),
        fuzz.requests().map(lambda m: msgpack.packb(m, use_bin_type=True)),
        fuzz.broken_messages().map(lambda m: msgpack.packb(m, use_bin_type=True)),
        st.lists(fuzz.requests(), min_size=1, max_size=4).map(
            lambda ms: b"".join(msgpack.packb(m, use_bin_type=True) for m in ms)))

    @settings(max_examples=150, deadline=None, database=None)
    @given(payloads)
    def fuzz_socket(data):
        send(data)

    fuzz_socket()
    with Connection(server.path) as conn:
        assert conn.call("ping")["version"] == "test"
        wait_for(lambda: conn.call("status")["connections"] == 1)
        assert conn.call("status")["fds"] == base
    assert "callback" not in server.log()  # nothing escaped to the loop
