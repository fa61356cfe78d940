"""Snapshot conformance suite: every test runs against the overlay and the copy backend.

Overlay mounts are not mounted here: ``view`` merges the returned lowerdirs the way overlayfs
does (0/0 character devices hide, trusted.overlay.opaque hides lower content), so the suite
also runs where mounting is impossible; tests/priv/test_snapshot_overlay.py mounts for real.
"""

import os
import signal
import stat

import pytest

from edgert.errors import ConfigError, NotFound, StateError
from edgert.image.manifest import chain_ids
from edgert.image.snapshot import Snapshotter
from edgert.image.unpack import unpack_layers
from tests.helpers import evil_layers as L

IS_ROOT = os.geteuid() == 0


def base_layer():
    return L.archive(
        L.directory("etc"), L.file("etc/a", b"a1"), L.file("etc/b", b"b1"),
        L.directory("opt"), L.file("opt/x", b"x"), L.directory("opt/sub"),
        L.file("opt/sub/y", b"y"), L.directory("bin"), L.file("bin/busybox", b"BB", mode=0o755),
        L.symlink("bin/sh", "busybox"), L.hardlink("bin/ls", "bin/busybox"),
        L.directory("gone"), L.file("gone/deep", b"d"))


def upper_layer():
    return L.archive(
        L.whiteout("etc/b"), L.file("etc/a", b"a2"), L.file("etc/c", b"c"),
        L.opaque("opt"), L.file("opt/z", b"z"), L.whiteout("gone"))


def write_layers(tmp_path, tars):
    layers = []
    for i, tar in enumerate(tars):
        path = tmp_path / ("layer%d.tar.gz" % i)
        path.write_bytes(L.gz(tar))
        layers.append((str(path), L.OCI_GZIP, L.diff_id(tar)))
    return layers


def commit_all(snap, layers):
    chain = chain_ids([d for _, _, d in layers])
    parent = None
    for (path, media, diff), chain_id in zip(layers, chain):
        snap.commit_blob(chain_id, parent, path, media, diff)
        parent = chain_id
    return chain


@pytest.fixture(params=["overlay", "copy"])
def snap(request, tmp_path):
    if request.param == "overlay" and not IS_ROOT:
        pytest.skip("overlay snapshots with whiteouts need root (0/0 devices, trusted xattrs)")
    return Snapshotter(str(tmp_path / "root"), request.param, sync=False)


def tree(root):
    """{relative path: (kind, content or link target, mode)} of a directory tree."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", f.read(), stat.S_IMODE(st.st_mode))
    return out


def merge_overlay(lowers, dest):
    """What overlayfs shows for ``lowers`` (topmost first), copied into ``dest``."""
    from edgert.image.snapshot import _copy_tree
    for lower in reversed(lowers):
        for dirpath, dirs, files in os.walk(lower):
            rel = os.path.relpath(dirpath, lower)
            target = os.path.normpath(os.path.join(dest, rel))
            if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
                os.unlink(target)  # a directory over a non-directory replaces it
            if not os.path.lexists(target):
                continue
            try:
                if os.getxattr(dirpath, "trusted.overlay.opaque") == b"y" and rel != ".":
                    for name in os.listdir(target):
                        _rm(os.path.join(target, name))
            except OSError:
                pass
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    _rm(os.path.join(target, name))
        skip = set()
        for dirpath, dirs, files in os.walk(lower):
            for name in files:
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    skip.add(os.fsencode(os.path.relpath(os.path.join(dirpath, name), lower)))
        _copy_tree(os.fsencode(lower), os.fsencode(dest), b"", skip, {})


def _rm(path):
    if os.path.isdir(path) and not os.path.islink(path):
        for name in os.listdir(path):
            _rm(os.path.join(path, name))
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)


def view(mounts, tmp_path):
    """The rootfs the mounts show, as a directory."""
    (mount,) = mounts
    if mount["type"] == "bind":
        return mount["source"]
    assert mount["type"] == "overlay"
    options = dict(o.split("=", 1) for o in mount["options"])
    dest = str(tmp_path / "merged")
    os.mkdir(dest)
    merge_overlay(options["lowerdir"].split(":"), dest)
    merge_overlay([options["upperdir"]], dest)
    return dest


def test_view_equals_a_flattened_unpack(snap, tmp_path):
    layers = write_layers(tmp_path, [base_layer(), upper_layer()])
    chain = commit_all(snap, layers)
    got = view(snap.prepare("c1", chain[-1]), tmp_path)
    flat = str(tmp_path / "flat")
    unpack_layers(layers, flat)
    assert tree(got) == tree(flat)
    assert tree(got)["etc/a"][1] == b"a2"
    assert "etc/b" not in tree(got) and "gone" not in tree(got)
    assert sorted(os.listdir(os.path.join(got, "opt"))) == ["z"]
    bb = os.path.join(got, "bin")
    assert os.stat(bb + "/ls").st_ino == os.stat(bb + "/busybox").st_ino


def test_each_chain_is_extracted_once_and_shared(snap, tmp_path):
    layers = write_layers(tmp_path, [base_layer()])
    calls = []
    (chain_id,) = chain_ids([layers[0][2]])

    def apply(fs_dir):
        calls.append(fs_dir)
        from edgert.image.unpack import apply_layer
        return apply_layer(layers[0][0], L.OCI_GZIP, fs_dir, diff_id=layers[0][2])

    first = snap.commit_layer(chain_id, None, apply)
    again = snap.commit_layer(chain_id, None, apply)
    assert len(calls) == 1 and first == again
    snap.prepare("one", chain_id)
    snap.prepare("two", chain_id)
    assert set(snap.active()) == {"one", "two"}


def test_mounts_describe_the_chain(snap, tmp_path):
    chain = commit_all(snap, write_layers(tmp_path, [base_layer(), upper_layer()]))
    mounts = snap.prepare("c", chain[-1])
    assert snap.mounts_for("c") == mounts
    (mount,) = mounts
    if snap.backend == "overlay":
        options = dict(o.split("=", 1) for o in mount["options"])
        assert options["lowerdir"].split(":") == [snap.fs_path(c) for c in reversed(chain)]
        assert os.path.isdir(options["upperdir"]) and os.path.isdir(options["workdir"])
    else:
        assert mount["type"] == "bind" and "rbind" in mount["options"]


def test_container_writes_stay_in_the_container(snap, tmp_path):
    chain = commit_all(snap, write_layers(tmp_path, [base_layer()]))
    mounts = snap.prepare("c", chain[-1])
    writable = mounts[0]["source"] if mounts[0]["type"] == "bind" else dict(
        o.split("=", 1) for o in mounts[0]["options"])["upperdir"]
    with open(os.path.join(writable, "new"), "w") as f:
        f.write("container data")
    assert not os.path.exists(os.path.join(snap.fs_path(chain[-1]), "new"))
    assert "new" not in tree(view(snap.prepare("d", chain[-1]), tmp_path))


def test_empty_parent_gives_an_empty_rootfs(snap, tmp_path):
    assert os.listdir(view(snap.prepare("empty", None), tmp_path)) == []


def test_key_lifecycle_errors(snap, tmp_path):
    chain = commit_all(snap, write_layers(tmp_path, [base_layer()]))
    snap.prepare("c", chain[0])
    with pytest.raises(StateError, match="already exists"):
        snap.prepare("c", chain[0])
    snap.remove("c")
    with pytest.raises(NotFound):
        snap.mounts_for("c")
    with pytest.raises(NotFound):
        snap.remove("c")
    with pytest.raises(NotFound, match="missing"):
        snap.prepare("x", "sha256:" + "1" * 64)
    for bad in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(ConfigError):
            snap.prepare(bad, chain[0])
    with pytest.raises(NotFound, match="parent"):
        snap.commit_blob("sha256:" + "2" * 64, "sha256:" + "3" * 64, "x", L.OCI_TAR, None)


def test_failed_commit_leaves_no_snapshot(snap, tmp_path):
    layers = write_layers(tmp_path, [base_layer()])
    (chain_id,) = chain_ids([layers[0][2]])
    wrong = L.diff_id(b"something else")
    with pytest.raises(Exception, match="diff ID"):
        snap.commit_blob(chain_id, None, layers[0][0], L.OCI_GZIP, wrong)
    assert not snap.exists(chain_id)
    assert os.listdir(snap.snapshot_dir) == [chain_id[7:] + ".lock"]


def test_killed_commit_never_looks_complete(snap, tmp_path):
    layers = write_layers(tmp_path, [base_layer()])
    (chain_id,) = chain_ids([layers[0][2]])
    for stage in ("extracting", "renamed"):
        pid = os.fork()
        if pid == 0:
            try:
                if stage == "extracting":
                    def apply(fs_dir):
                        with open(os.path.join(fs_dir, "half"), "w") as f:
                            f.write("x")
                        os.kill(os.getpid(), signal.SIGKILL)
                    snap.commit_layer(chain_id, None, apply)
                else:  # killed between the rename and the marker
                    import edgert.image.snapshot as mod
                    mod.atomic_write = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
                    snap.commit_blob(chain_id, None, layers[0][0], L.OCI_GZIP, layers[0][2])
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status)
        assert not snap.exists(chain_id)
        with pytest.raises(NotFound):
            snap.prepare("c", chain_id)
        assert snap.usage(set())["reclaimable"] > 0
    snap.commit_blob(chain_id, None, layers[0][0], L.OCI_GZIP, layers[0][2])
    assert snap.exists(chain_id)
    assert not os.path.exists(os.path.join(snap.fs_path(chain_id), "half"))
    snap.prune({chain_id})
    assert sorted(os.listdir(snap.snapshot_dir)) == sorted([chain_id[7:], chain_id[7:] + ".lock"])


def test_prune_keeps_images_and_active_parents(snap, tmp_path):
    a = commit_all(snap, write_layers(tmp_path, [base_layer(), upper_layer()]))
    other = L.archive(L.file("other", b"o"))
    b = commit_all(snap, write_layers(tmp_path / "b" if os.mkdir(tmp_path / "b") is None
                                      else None, [other]))
    snap.prepare("uses-b", b[-1])
    usage = snap.usage({a[-1]})
    assert usage["count"] == 3 and usage["active"] == 1 and usage["reclaimable"] == 0
    assert snap.prune({a[-1]}) == (0, 0)  # a's parent is kept through the chain
    snap.remove("uses-b")
    removed, freed = snap.prune({a[-1]})
    assert removed == 1 and freed > 0 and not snap.exists(b[0])
    assert snap.exists(a[0]) and snap.exists(a[1])
    assert snap.prune(set())[0] == 2


def test_hostile_whiteouts_stay_inside(snap, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep me")
    first = L.archive(L.symlink("evil", str(outside)), L.directory("d"))
    second = L.archive(L.whiteout("evil/victim"), L.opaque("evil"), L.file("d/f", b"f"))
    chain = commit_all(snap, write_layers(tmp_path, [first, second]))
    got = tree(view(snap.prepare("c", chain[-1]), tmp_path))
    assert (outside / "victim").read_text() == "keep me"
    assert os.listdir(outside) == ["victim"]
    assert got["d/f"][1] == b"f"


def test_hardlink_to_a_lower_layer_file(snap, tmp_path):
    first = L.archive(L.directory("bin"), L.file("bin/busybox", b"BB", mode=0o751, mtime=1234))
    second = L.archive(L.hardlink("bin/ls", "bin/busybox"), L.file("bin/new", b"n"))
    layers = write_layers(tmp_path, [first, second])
    chain = commit_all(snap, layers)
    got = view(snap.prepare("c", chain[-1]), tmp_path)
    flat = str(tmp_path / "flat")
    unpack_layers(layers, flat)
    assert tree(got) == tree(flat)
    assert os.stat(os.path.join(got, "bin/ls")).st_ino == os.stat(
        os.path.join(got, "bin/busybox")).st_ino
    assert os.stat(os.path.join(got, "bin/busybox")).st_mtime == 1234
    assert not [n for n in os.listdir(snap.snapshot_dir) if n.startswith(".")]
