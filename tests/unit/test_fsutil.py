"""Atomic writes: the old content or the new, never a mix, and never through a planted link."""

import os

from edgert.fsutil import atomic_write, read_until_eof


def test_write_replace_and_mode(tmp_path):
    path = str(tmp_path / "doc")
    atomic_write(path, "one", 0o600)
    atomic_write(path, b"two", 0o600)
    assert open(path).read() == "two"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["doc"]


def test_a_planted_link_at_the_temp_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("host file")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.symlink(str(victim), str(shared / (".doc.tmp-%d" % os.getpid())))
    atomic_write(str(shared / "doc"), "container-visible", sync=False)
    assert victim.read_text() == "host file"
    assert (shared / "doc").read_text() == "container-visible"
    assert sorted(os.listdir(shared)) == ["doc"]


def test_a_leftover_temp_file_is_replaced(tmp_path):
    (tmp_path / (".doc.tmp-%d" % os.getpid())).write_text("half")
    atomic_write(str(tmp_path / "doc"), "whole", sync=False)
    assert os.listdir(tmp_path) == ["doc"]


def test_read_until_eof_keeps_the_limit_and_drains_the_rest():
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # more than a pipe holds: the writer must not block
        os.close(rfd)
        os.write(wfd, b"x" * 200000)
        os._exit(0)
    os.close(wfd)
    try:
        assert read_until_eof(rfd, 10) == b"x" * 10
    finally:
        os.close(rfd)
    assert os.waitpid(pid, 0)[1] == 0
