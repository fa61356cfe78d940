"""Unpack onto a full filesystem: a clear UnpackFailed, nothing left behind, a retry succeeds."""

import errno
import os
import subprocess

import pytest

from edgert.image.unpack import UnpackFailed, unpack_layers
from tests.helpers import evil_layers as L

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_disk_full_then_retry(tmp_path, small_tmpfs):
    tar = L.archive(L.file("small", b"x" * 1000), L.file("big", os.urandom(3 << 20)))
    blob = tmp_path / "layer.tgz"
    blob.write_bytes(L.gz(tar))
    dest = small_tmpfs / "rootfs"
    with pytest.raises(UnpackFailed, match="No space left on device") as info:
        unpack_layers([(str(blob), L.OCI_GZIP, L.diff_id(tar))], str(dest))
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(small_tmpfs) == []  # the half-written temporary tree is gone
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_tmpfs)], check=True)
    unpack_layers([(str(blob), L.OCI_GZIP, L.diff_id(tar))], str(dest))
    assert (dest / "big").stat().st_size == 3 << 20
