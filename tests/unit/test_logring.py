"""The log ring (copytruncate rotation, tails, followers across rotations) and the syslog mirror."""

import os
import socket

import pytest

from edgert.daemon.logring import LogRing, SyslogMirror
from edgert.errors import EdgertError


@pytest.fixture
def ring(tmp_path):
    return LogRing(str(tmp_path / "logs" / "c1.log"), cap_bytes=100)


def write(fd, text):
    os.write(fd, text.encode() if isinstance(text, str) else text)


def test_container_fd_appends_and_is_private(ring):
    fd = ring.open_for_container()
    try:
        assert os.get_inheritable(fd) is False
        assert os.stat(ring.path).st_mode & 0o777 == 0o640
        write(fd, "one\n")
        second = ring.open_for_container()  # a restart appends to the same log
        write(second, "two\n")
        os.close(second)
    finally:
        os.close(fd)
    assert ring.read_tail() == b"one\ntwo\n"


def test_no_rotation_up_to_half_the_cap(ring):
    fd = ring.open_for_container()
    write(fd, "x" * 50)
    assert ring.check() is False
    write(fd, "y")
    assert ring.check() is True
    assert os.path.getsize(ring.path) == 0
    with open(ring.old_path, "rb") as f:
        assert f.read() == b"x" * 50 + b"y"
    write(fd, "after\n")  # O_APPEND: writes land at the start of the truncated file
    os.close(fd)
    with open(ring.path, "rb") as f:
        assert f.read() == b"after\n"


def test_pair_never_holds_much_more_than_the_cap(ring):
    fd = ring.open_for_container()
    for i in range(200):
        write(fd, "line %03d\n" % i)
        ring.check()
    os.close(fd)
    total = os.path.getsize(ring.path) + os.path.getsize(ring.old_path)
    assert total <= 100 + len("line 000\n")
    assert ring.read_tail(lines=1) == b"line 199\n"


def test_tail_spans_both_files_and_cuts_to_lines(ring):
    fd = ring.open_for_container()
    write(fd, "a1\na2\na3\n" * 6)
    ring.check()
    write(fd, "b1\nb2\n")
    os.close(fd)
    assert ring.read_tail(lines=3) == b"a3\nb1\nb2\n"
    assert ring.read_tail(max_bytes=8) == b"b1\nb2\n"  # "3\n" of a partial line dropped
    assert ring.read_tail(lines=0) == b""
    assert ring.read_tail().endswith(b"a3\nb1\nb2\n")


def test_tail_of_missing_log_is_empty(ring):
    assert ring.read_tail() == b""
    assert ring.read_from(0) == (b"", 0)


def test_follower_continues_across_rotation(ring):
    fd = ring.open_for_container()
    write(fd, "first\n")
    data, pos = ring.read_from(ring.start_position())
    assert data == b"first\n"
    write(fd, "x" * 60 + "\n")
    assert ring.check()  # the follower was in the old .log, which is now .log.1
    write(fd, "after\n")
    os.close(fd)
    out = b""
    while True:
        data, pos = ring.read_from(pos, max_bytes=7)
        if not data:
            break
        out += data
    assert out == b"x" * 60 + b"\nafter\n"
    assert pos == ring.end_position()


def test_follower_too_slow_skips_to_oldest_kept(ring):
    fd = ring.open_for_container()
    write(fd, "gone" * 20)
    ring.check()
    write(fd, "kept" * 20)
    ring.check()
    os.close(fd)
    data, pos = ring.read_from(0)
    assert data == b"kept" * 20
    assert pos == ring.cur_start


def test_positions_after_reopen_start_at_old_file(tmp_path):
    path = str(tmp_path / "c.log")
    with open(path + ".1", "wb") as f:
        f.write(b"old\n")
    with open(path, "wb") as f:
        f.write(b"new\n")
    ring = LogRing(path, 100)
    data, pos = ring.read_from(ring.start_position())
    assert data == b"old\n"
    assert ring.read_from(pos) == (b"new\n", 8)


def test_truncated_by_someone_else_restarts_at_beginning(ring):
    fd = ring.open_for_container()
    write(fd, "abcdef")
    _, pos = ring.read_from(0)
    os.truncate(ring.path, 0)
    write(fd, "xy")
    os.close(fd)
    assert ring.read_from(pos) == (b"xy", 2)


def test_remove_deletes_both_files(ring):
    fd = ring.open_for_container()
    write(fd, "z" * 80)
    ring.check()
    os.close(fd)
    ring.remove()
    assert not os.path.exists(ring.path) and not os.path.exists(ring.old_path)
    ring.remove()


def test_tiny_cap_is_refused(tmp_path):
    with pytest.raises(EdgertError):
        LogRing(str(tmp_path / "x.log"), 1)


# --- syslog mirror ------------------------------------------------------------------------------

@pytest.fixture
def syslog(tmp_path):
    path = str(tmp_path / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield path, sock
    sock.close()


def received(sock):
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_mirror_sends_complete_lines_in_rfc3164_form(syslog):
    path, sock = syslog
    mirror = SyslogMirror("edgert", path=path)
    mirror.feed("web", b"hello\nwor")
    assert received(sock) == [b"<30>edgert[web]: hello"]
    mirror.feed("web", b"ld\n")
    mirror.feed("db", b"x\n")
    assert received(sock) == [b"<30>edgert[web]: world", b"<30>edgert[db]: x"]
    assert (mirror.sent, mirror.dropped) == (3, 0)
    mirror.close()


def test_mirror_splits_overlong_partial_line(syslog):
    path, sock = syslog
    mirror = SyslogMirror("e", path=path)
    mirror.feed("c", b"a" * 3000)
    messages = received(sock)
    assert messages and all(len(m) <= 1024 for m in messages)
    assert b"".join(m[len(b"<30>e[c]: "):] for m in messages) + mirror.partial["c"] == b"a" * 3000
    mirror.close()


def test_mirror_drops_when_syslog_is_full_or_absent(syslog, tmp_path):
    path, sock = syslog
    mirror = SyslogMirror("e", path=path)
    for _ in range(5000):  # far more than a datagram socket queues
        mirror.feed("c", b"spam\n")
    assert mirror.dropped > 0
    assert mirror.sent + mirror.dropped == 5000
    mirror.close()
    absent = SyslogMirror("e", path=str(tmp_path / "nobody"))
    absent.feed("c", b"line\n")
    assert (absent.sent, absent.dropped) == (0, 1)
