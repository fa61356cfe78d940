"""The overlay backend's mounts, really mounted: whiteouts, opaque dirs, container writes."""

import os
import subprocess

import pytest

from edgert.image.snapshot import Snapshotter, overlay_supported
from edgert.image.unpack import unpack_layers
from tests.unit.test_snapshot import base_layer, commit_all, tree, upper_layer, write_layers

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs needs root"),
    pytest.mark.skipif(not overlay_supported(), reason="the kernel has no overlayfs"),
]


def mount(mounts, target):
    (m,) = mounts
    subprocess.run(["mount", "-t", m["type"], "-o", ",".join(m["options"]), m["source"],
                    str(target)], check=True, capture_output=True)


def test_overlay_mount_shows_the_flattened_image(tmp_path):
    snap = Snapshotter(str(tmp_path / "root"), "overlay", sync=False)
    layers = write_layers(tmp_path, [base_layer(), upper_layer()])
    chain = commit_all(snap, layers)
    flat = tmp_path / "flat"
    unpack_layers(layers, str(flat))
    target = tmp_path / "mnt"
    target.mkdir()
    mounts = snap.prepare("c1", chain[-1])
    mount(mounts, target)
    try:
        assert tree(str(target)) == tree(str(flat))
        (target / "etc" / "written").write_text("by the container")
        os.unlink(target / "etc" / "a")
    finally:
        subprocess.run(["umount", str(target)], check=True)
    upper = dict(o.split("=", 1) for o in mounts[0]["options"])["upperdir"]
    assert os.path.exists(os.path.join(upper, "etc", "written"))
    assert (tmp_path / "root" / "snapshots" / chain[-1][7:] / "fs" / "etc" / "a").exists()
    # a second container over the same snapshots sees the image unchanged
    mount(snap.prepare("c2", chain[-1]), target)
    try:
        assert tree(str(target)) == tree(str(flat))
    finally:
        subprocess.run(["umount", str(target)], check=True)
    snap.remove("c1")
    snap.remove("c2")
    assert snap.active() == {}


@pytest.mark.parametrize("root_name", ["short", "r" * 80])
def test_100_layers_really_mounted(tmp_path, root_name):
    """More layers than a page of absolute lowerdirs holds: short links (a short root) or
    a merged bottom snapshot (a long one) keep the mount within a page, and it mounts."""
    import shutil
    import tempfile
    from tests.unit.test_snapshot import many_layers
    root = (tempfile.mkdtemp(prefix="e", dir="/tmp") if root_name == "short"
            else str(tmp_path / root_name))
    target = tmp_path / "mnt"
    target.mkdir()
    try:
        snap = Snapshotter(root, "overlay", sync=False)
        layers = write_layers(tmp_path, many_layers(100))
        chain = commit_all(snap, layers)
        flat = tmp_path / "flat"
        unpack_layers(layers, str(flat))
        mounts = snap.prepare("c", chain[-1])
        lowers = dict(o.split("=", 1) for o in mounts[0]["options"])["lowerdir"].split(":")
        if root_name == "short":
            assert len(lowers) == 100
        else:
            assert lowers[-1].startswith(snap.flat_dir)
        mount(mounts, target)
        try:
            assert tree(str(target)) == tree(str(flat))
            (target / "d" / "written").write_text("by the container")
        finally:
            subprocess.run(["umount", str(target)], check=True)
        snap.remove("c")
    finally:
        if root_name == "short":
            shutil.rmtree(root)


def test_overlay_mount_equals_extracting_the_blobs(tmp_path):
    """Every attribute, hardlinks and whiteouts included, as the container sees them."""
    from tests.unit.test_snapshot import (IMPLICIT_DIRS, full_tree, rich_layers,
                                          without_mtimes_of)
    snap = Snapshotter(str(tmp_path / "root"), "overlay", sync=False)
    layers = write_layers(tmp_path, rich_layers())
    chain = commit_all(snap, layers)
    unpack_layers(layers, str(tmp_path / "flat"))
    target = tmp_path / "mnt"
    target.mkdir()
    mount(snap.prepare("c", chain[-1]), target)
    try:
        got, want = full_tree(str(target)), full_tree(str(tmp_path / "flat"))
    finally:
        subprocess.run(["umount", str(target)], check=True)
    snap.remove("c")
    assert got[1] == want[1]
    assert without_mtimes_of(got[0], IMPLICIT_DIRS) == without_mtimes_of(want[0], IMPLICIT_DIRS)
