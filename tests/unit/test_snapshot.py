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


# -- flattening snapshots gives what extracting the blobs gives ------------------------------

def _xattr(name, value):
    return L.pax({"SCHILY.xattr." + name: value})


def rich_layers():
    """Layers exercising every kind of metadata. The last writes into directories it does
    not list (their attributes come from the lower layers); the others list them, as image
    builders do."""
    t1, t2, t3 = 1_600_000_000, 1_650_000_000, 1_700_000_000
    own = dict(uid=1000, gid=1001) if IS_ROOT else {}
    first = L.archive(
        L.directory(".", mode=0o755, mtime=t1),
        L.directory("etc", mode=0o755, mtime=t1), L.file("etc/a", b"a1", mtime=t1),
        L.file("etc/b", b"b1", mtime=t1), L.file("etc/keep", b"k", mode=0o600, mtime=t1 + 1),
        L.directory("tmp", mode=0o1777, mtime=t1),
        L.directory("usr", mode=0o755, mtime=t1), L.directory("usr/bin", mode=0o711, mtime=t1),
        _xattr("user.origin", "layer1") + L.file("usr/bin/tool", b"T" * 5000, mode=0o4755,
                                                  mtime=t1, **own),
        L.hardlink("usr/bin/tool2", "usr/bin/tool"),
        L.symlink("usr/bin/sh", "tool", mtime=t1 + 5),
        L.fifo("tmp/fifo", mode=0o620, mtime=t1),
        L.directory("opt", mode=0o750, mtime=t1), L.file("opt/old", b"o", mtime=t1),
        L.directory("opt/sub", mtime=t1), L.file("opt/sub/deep", b"d", mtime=t1),
        L.directory("gone", mtime=t1), L.file("gone/x", b"x", mtime=t1),
        L.directory("becomes-file", mtime=t1), L.file("becomes-file/y", b"y", mtime=t1),
        L.file("becomes-dir", b"f", mtime=t1))
    second = L.archive(
        L.directory("etc", mode=0o700, mtime=t2, **own), L.whiteout("etc/b"),
        L.file("etc/a", b"a2", mode=0o640, mtime=t2, **own),
        L.file("etc/dup", b"first", mtime=t2), L.file("etc/dup", b"second wins", mtime=t2 + 1),
        L.directory("usr", mode=0o755, mtime=t2), L.directory("usr/bin", mode=0o711, mtime=t2),
        L.hardlink("usr/bin/tool3", "usr/bin/tool"),  # links a lower layer's file
        L.directory("opt", mode=0o755, mtime=t2), L.opaque("opt"),
        _xattr("user.new", "2") + L.file("opt/new", b"n", mtime=t2),
        L.whiteout("gone"), L.file("becomes-file", b"now a file", mtime=t2),
        L.directory("becomes-dir", mode=0o700, mtime=t2),
        L.file("becomes-dir/z", b"z", mtime=t2))
    third = L.archive(
        L.directory("usr", mode=0o755, mtime=t3), L.directory("usr/bin", mode=0o711, mtime=t3),
        L.whiteout("usr/bin/tool2"), L.file("usr/bin/sh", b"not a link", mtime=t3),
        L.directory("tmp", mode=0o1777, mtime=t3), L.whiteout("tmp/fifo"),
        L.directory("gone", mode=0o700, mtime=t3), L.file("gone/again", b"g", mtime=t3))
    fourth = L.archive(  # no directory entries
        L.file("etc/implicit", b"i", mtime=t3), L.file("tmp/implicit", b"i", mtime=t3),
        L.file("usr/bin/deep/new/file", b"n", mtime=t3), L.whiteout("opt/new"),
        L.file("becomes-dir/z", b"z2", mtime=t3))
    return [first, second, third, fourth]


IMPLICIT_DIRS = ("etc", "tmp", "usr", "usr/bin", "usr/bin/deep", "usr/bin/deep/new", "opt",
                 "becomes-dir")


def without_mtimes_of(files, paths):
    """``files`` (full_tree) with the mtimes of ``paths`` dropped: a directory a layer
    writes into without listing it gets the time of the unpack, on either path."""
    return {k: v[:3] + v[4:] if k in paths else v for k, v in files.items()}


def full_tree(root):
    """Every attribute an unpack sets, per path; hardlinks as groups of paths."""
    out, inodes = {}, {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            entry = [st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns]
            if stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry.append(f.read())
                inodes.setdefault(st.st_ino, []).append(rel)
            if not stat.S_ISLNK(st.st_mode):
                entry.append(sorted((x, os.getxattr(path, x)) for x in os.listxattr(path)))
            out[rel] = entry
    links = sorted(sorted(group) for group in inodes.values() if len(group) > 1)
    st = os.lstat(root)
    return out, links, (st.st_mode, st.st_uid, st.st_gid)


@pytest.mark.parametrize("backend", ["overlay", "copy"])
def test_flatten_equals_extracting_the_blobs(tmp_path, backend):
    if backend == "overlay" and not IS_ROOT:
        pytest.skip("overlay snapshots with whiteouts need root")
    snap = Snapshotter(str(tmp_path / "root"), backend, sync=False)
    layers = write_layers(tmp_path, rich_layers())
    chain = commit_all(snap, layers)
    snap.flatten(chain[-1], str(tmp_path / "from-snapshots"))
    unpack_layers(layers, str(tmp_path / "from-blobs"))
    got = full_tree(str(tmp_path / "from-snapshots"))
    want = full_tree(str(tmp_path / "from-blobs"))
    assert got[1:] == want[1:]
    assert (without_mtimes_of(got[0], IMPLICIT_DIRS)
            == without_mtimes_of(want[0], IMPLICIT_DIRS))
    files, links, _ = got
    assert stat.S_IMODE(files["etc"][0]) == 0o700
    if IS_ROOT:
        assert files["etc"][1:3] == [1000, 1001]
    assert files["etc/dup"][-2] == b"second wins" and "etc/b" not in files
    assert sorted(n for n in files if n.startswith("opt")) == ["opt"]
    assert links == [["usr/bin/tool", "usr/bin/tool3"]]
    assert stat.S_IMODE(files["tmp"][0]) == 0o1777
    assert files["usr/bin/tool"][-1] == [("user.origin", b"layer1")] or not _user_xattrs(tmp_path)


def _user_xattrs(tmp_path):
    try:
        os.setxattr(str(tmp_path), "user.probe", b"1")
        return True
    except OSError:
        return False


def test_flatten_is_atomic(snap, tmp_path, monkeypatch):
    import edgert.image.snapshot as S
    chain = commit_all(snap, write_layers(tmp_path, rich_layers()))
    calls = []

    def failing(chain_id, rootfs):
        calls.append(chain_id)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(chain_id, rootfs)

    real = snap._apply_snapshot
    monkeypatch.setattr(snap, "_apply_snapshot", failing)
    dest = tmp_path / "out" / "rootfs"
    with pytest.raises(OSError):
        snap.flatten(chain[-1], str(dest))
    assert os.listdir(tmp_path / "out") == []  # neither dest nor its temporary tree
    monkeypatch.setattr(snap, "_apply_snapshot", real)
    # a temporary tree left by a killed run (its pid is gone) is cleared by the next one
    os.mkdir(tmp_path / "out" / ".rootfs.unpack-999999999")
    snap.flatten(chain[-1], str(dest))
    assert os.listdir(tmp_path / "out") == ["rootfs"]
    assert S.os.path.isdir(dest / "usr" / "bin")


# -- long chains: more layers than one overlay mount's options hold --------------------------

def many_layers(count):
    """``count`` layers: each adds a file, rewrites a shared one, and removes its
    predecessor's marker file, so every layer matters to the result."""
    tars = [L.archive(L.directory("d"), L.file("d/base", b"0"), L.file("d/mark0", b"m"))]
    for i in range(1, count):
        tars.append(L.archive(L.directory("d"), L.file("d/f%03d" % i, b"%d" % i),
                              L.file("d/base", b"%d" % i), L.whiteout("d/mark%d" % (i - 1)),
                              L.file("d/mark%d" % i, b"m")))
    return tars


def commit_many(snap, tmp_path, count):
    layers = write_layers(tmp_path, many_layers(count))
    return layers, commit_all(snap, layers)


def check_long_chain(snap, tmp_path, layers, chain, key="long"):
    mounts = snap.prepare(key, chain[-1])
    assert snap.mounts_for(key) == mounts
    if mounts[0]["type"] == "overlay":
        from edgert.image.snapshot import MAX_MOUNT_DATA
        assert len(",".join(mounts[0]["options"])) <= MAX_MOUNT_DATA
    got = view(mounts, tmp_path)
    flat = str(tmp_path / "flat-unpack")
    unpack_layers(layers, flat)
    assert tree(got) == tree(flat)
    names = sorted(os.listdir(os.path.join(got, "d")))
    assert names == sorted(["base", "mark%d" % (len(layers) - 1)]
                           + ["f%03d" % i for i in range(1, len(layers))])
    return mounts


def test_a_100_layer_image_under_a_long_root(snap, tmp_path):
    """Short links do not fit either: the bottom layers are merged into one snapshot."""
    long_root = tmp_path / ("r" * 60)
    snap = Snapshotter(str(long_root), snap.backend, sync=False)
    layers, chain = commit_many(snap, tmp_path, 100)
    mounts = check_long_chain(snap, tmp_path, layers, chain)
    if snap.backend == "overlay":
        lowers = dict(o.split("=", 1) for o in mounts[0]["options"])["lowerdir"].split(":")
        assert lowers[-1].startswith(snap.flat_dir) and len(lowers) < 100
        # a second container shares the merged snapshot; prune keeps it while one uses it
        second = [o.replace("/active/long/", "/active/second/") for o in mounts[0]["options"]]
        assert snap.prepare("second", chain[-1]) == [dict(mounts[0], options=second)]
        snap.remove("long")
        snap.prune(set(chain))
        assert os.listdir(snap.flat_dir) != []
        snap.remove("second")
        snap.prune(set(chain))
        assert [n for n in os.listdir(snap.flat_dir) if not n.endswith(".lock")] == []


def test_a_100_layer_image_under_a_short_root(snap, tmp_path):
    """Short links under ROOT/l fit a page: no copying at all."""
    import shutil
    import tempfile
    root = tempfile.mkdtemp(prefix="e", dir="/tmp")
    try:
        snap = Snapshotter(root, snap.backend, sync=False)
        layers, chain = commit_many(snap, tmp_path, 100)
        mounts = check_long_chain(snap, tmp_path, layers, chain)
        if snap.backend == "overlay":
            lowers = dict(o.split("=", 1) for o in mounts[0]["options"])["lowerdir"]
            lowers = lowers.split(":")
            assert len(lowers) == 100 and all(p.startswith(snap.link_dir) for p in lowers)
            assert [os.path.realpath(p) for p in lowers] == [
                os.path.realpath(snap.fs_path(c)) for c in reversed(chain)]
            assert not os.path.exists(snap.flat_dir)
    finally:
        shutil.rmtree(root)


def test_short_link_names_never_clash(tmp_path):
    snap = Snapshotter(str(tmp_path / "root"), "overlay", sync=False)
    a, b = "sha256:" + "ab" * 32, "sha256:" + "ab" * 5 + "cd" * 27
    os.makedirs(snap.link_dir)
    os.symlink("../snapshots/%s/fs" % ("ab" * 32), os.path.join(snap.link_dir, "ab" * 5))
    assert snap._short_link(a) == os.path.join(snap.link_dir, "ab" * 5)  # reused
    link_b = snap._short_link(b)
    assert os.path.basename(link_b) == ("ab" * 5 + "c") and os.readlink(link_b).endswith(
        "cd" * 27 + "/fs")
    snap.prune(set())  # neither snapshot exists: their links go
    assert os.listdir(snap.link_dir) == []
