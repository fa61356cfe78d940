import os

import pytest

from edgert.runtime.secjoin import secure_join


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "usr" / "lib").mkdir(parents=True)
    os.symlink("/etc", r / "abs")              # absolute: restarts at the rootfs
    os.symlink("../../../../..", r / "up")    # climbing: stops at the rootfs
    os.symlink("usr/lib", r / "lib")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    return str(r)


def test_plain_and_missing(root):
    assert secure_join(root, "/etc/passwd") == root + "/etc/passwd"
    assert secure_join(root, "new/dir") == root + "/new/dir"


def test_symlinks_stay_inside(root):
    assert secure_join(root, "/abs/x") == root + "/etc/x"
    assert secure_join(root, "/up/etc") == root + "/etc"
    assert secure_join(root, "/lib/x") == root + "/usr/lib/x"
    assert secure_join(root, "/../../etc") == root + "/etc"


def test_host_absolute_link_is_not_followed_to_host(root, tmp_path):
    os.symlink(str(tmp_path), os.path.join(root, "hostlink"))
    assert secure_join(root, "/hostlink/x").startswith(root + "/")


def test_loops_are_an_error(root):
    with pytest.raises(OSError, match="too many levels"):
        secure_join(root, "/loop1/x")
