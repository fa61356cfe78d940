"""The client tells a hung edgertd from a busy one: after a silence it pings on a second
connection, keeps waiting while that is answered, and fails with a clear error when not.
A fake daemon on a unix socket in a thread plays both."""

import os
import socket
import threading
import time

import pytest

from edgert.client import conn as C
from edgert.errors import EdgertError
from edgert.proto import rpc


class FakeDaemon:
    """Answers ``ping`` at once unless ``hung``; answers anything else after ``delay`` s."""

    def __init__(self, path, delay, hung=False):
        self.delay, self.hung = delay, hung
        self.pings = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(8)
        self.clients = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.clients.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        decoder = rpc.Decoder()
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                return
            for message in decoder.feed(data):
                _, msgid, method, _ = message
                if self.hung:
                    continue
                if method == "ping":
                    self.pings += 1
                else:
                    time.sleep(self.delay)
                client.sendall(rpc.encode_response(msgid, None, {"method": method}))

    def close(self):
        self.listener.close()
        for client in self.clients:
            client.close()


@pytest.fixture
def short_silence(monkeypatch):
    monkeypatch.setattr(C, "SILENCE_S", 0.3)
    monkeypatch.setattr(C.Connection.__init__, "__defaults__", (None, 0.3, True))


def test_a_busy_daemon_that_answers_pings_is_waited_for(tmp_path, short_silence):
    daemon = FakeDaemon(str(tmp_path / "s"), delay=1.2)
    try:
        with C.Connection(str(tmp_path / "s")) as conn:
            assert conn.call("instance.stop", {"id": "a"}) == {"method": "instance.stop"}
        assert daemon.pings >= 2
    finally:
        daemon.close()


def test_a_hung_daemon_fails_the_command_clearly(tmp_path, short_silence):
    path = str(tmp_path / "s")
    daemon = FakeDaemon(path, delay=0, hung=True)
    try:
        started = time.monotonic()
        with C.Connection(path) as conn:
            with pytest.raises(EdgertError) as raised:
                conn.call("instance.list")
        assert raised.value.code == "hung"
        assert str(raised.value) == (
            "edgertd at %s answered nothing, not even a ping on a second connection, for 0.3 "
            "s: it may be hung; see its log, and restart it (its containers keep running)"
            % path)
        assert time.monotonic() - started < 5
    finally:
        daemon.close()


def test_a_daemon_gone_while_waiting_says_so(tmp_path, short_silence):
    path = str(tmp_path / "s")
    daemon = FakeDaemon(path, delay=0, hung=True)
    try:
        with C.Connection(path) as conn:
            daemon.close()
            os.unlink(path)
            with pytest.raises(EdgertError) as raised:
                conn.call("instance.list")
        assert raised.value.code in ("not-running", "disconnected"), raised.value
    finally:
        daemon.close()
