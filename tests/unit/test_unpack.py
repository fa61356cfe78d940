"""Layer unpack semantics: member types, metadata, whiteouts, compressions, diff IDs, atomicity."""

import io
import os
import stat
import sys
import tarfile

import pytest

from edgert.errors import StateError, Unsupported
from edgert.image.unpack import (DiffIDMismatch, LayerError, LimitExceeded, UnpackLimits,
                                 UnpackPolicy, apply_layer, unpack_layers)
from tests.helpers import evil_layers as L

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="ownership, devices and xattrs need root")


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def use_openat2(request):
    if request.param:
        from edgert import native
        if not native.have_openat2():
            pytest.skip("openat2 is not available (old kernel, or an emulator such as qemu-user)")
    return request.param


def apply(dest, tar, media=L.OCI_TAR, **kw):
    os.makedirs(dest, exist_ok=True)
    return apply_layer(io.BytesIO(tar), media, str(dest), **kw)


def test_member_types_contents_and_modes(tmp_path, use_openat2):
    tar = L.archive(
        L.directory("etc", mode=0o750, mtime=1000),
        L.file("etc/hosts", b"127.0.0.1 localhost\n", mode=0o640, mtime=2000),
        L.symlink("etc/link", "hosts"),
        L.hardlink("etc/hard", "etc/hosts"),
        L.fifo("etc/fifo", mode=0o600),
        L.file("bin/tool", b"x" * 5000, mode=0o4755))  # parent not listed: made 0755
    stats = apply(tmp_path, tar, use_openat2=use_openat2)
    etc = tmp_path / "etc"
    assert (etc / "hosts").read_bytes() == b"127.0.0.1 localhost\n"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750
    assert etc.stat().st_mtime == 1000  # set after its contents were written
    assert (etc / "hosts").stat().st_mtime == 2000
    assert stat.S_IMODE((etc / "hosts").stat().st_mode) == 0o640
    assert os.readlink(etc / "link") == "hosts"
    assert (etc / "hard").stat().st_ino == (etc / "hosts").stat().st_ino
    assert stat.S_ISFIFO((etc / "fifo").lstat().st_mode)
    assert stat.S_IMODE((tmp_path / "bin/tool").stat().st_mode) == 0o4755
    assert stat.S_IMODE((tmp_path / "bin").stat().st_mode) == 0o755
    counts = (stats.files, stats.dirs, stats.symlinks, stats.hardlinks, stats.fifos)
    assert counts == (2, 1, 1, 1, 1)
    assert stats.diff_id == L.diff_id(tar)
    assert stats.tar_bytes == len(tar)


def test_large_file_streams_across_chunks(tmp_path):
    data = os.urandom(3 << 20) + b"tail"
    tar = L.archive(L.file("big", data), L.file("after", b"ok"))
    apply(tmp_path, tar)
    assert (tmp_path / "big").read_bytes() == data
    assert (tmp_path / "after").read_bytes() == b"ok"


@needs_root
def test_ownership_and_setid_policy(tmp_path):
    tar = L.archive(L.file("f", b"1", uid=1234, gid=5678, mode=0o6755),
                    L.symlink("s", "f", uid=42, gid=43), L.directory("d", uid=7, gid=8))
    apply(tmp_path / "keep", tar)
    st = (tmp_path / "keep/f").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o6755)
    assert (tmp_path / "keep/s").lstat().st_uid == 42
    assert (tmp_path / "keep/d").stat().st_gid == 8
    apply(tmp_path / "strip", tar, policy=UnpackPolicy(keep_setid=False))
    assert stat.S_IMODE((tmp_path / "strip/f").stat().st_mode) == 0o755


@needs_root
def test_xattrs_capability_kept_trusted_skipped(tmp_path):
    cap = bytes.fromhex("0100000200200000000000000000000000000000")  # v2: cap_net_raw
    tar = L.archive(L.pax({"SCHILY.xattr.security.capability": cap,
                           "SCHILY.xattr.user.note": "hello",
                           "SCHILY.xattr.trusted.overlay.opaque": "y"}),
                    L.file("ping", b"ELF", mode=0o755, uid=5))
    stats = apply(tmp_path, tar)
    path = str(tmp_path / "ping")
    assert os.getxattr(path, "security.capability") == cap
    assert os.getxattr(path, "user.note") == b"hello"
    assert "trusted.overlay.opaque" not in os.listxattr(path)
    assert stats.xattrs == 2 and stats.xattrs_skipped == 1
    assert os.stat(path).st_uid == 5  # chown came before the capability (chown clears it)


@needs_root
def test_device_policy(tmp_path):
    tar = L.archive(L.device("dev/null", major=1, minor=3), L.file("dev/ok", b""))
    stats = apply(tmp_path / "skip", tar)
    assert stats.devices_skipped == 1 and not (tmp_path / "skip/dev/null").exists()
    assert any("device" in n for n in stats.notes)
    apply(tmp_path / "create", tar, policy=UnpackPolicy(devices="create"))
    st = (tmp_path / "create/dev/null").lstat()
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    with pytest.raises(LayerError, match="refused by policy"):
        apply(tmp_path / "refuse", tar, policy=UnpackPolicy(devices="refuse"))


def test_whiteout_removes_lower_content(tmp_path, use_openat2):
    apply(tmp_path, L.archive(L.file("a/keep", b"1"), L.file("a/gone", b"2"),
                              L.file("a/sub/x", b"3")))
    stats = apply(tmp_path, L.archive(L.whiteout("a/gone"), L.whiteout("a/sub"),
                                      L.whiteout("a/never-existed")), use_openat2=use_openat2)
    assert sorted(os.listdir(tmp_path / "a")) == ["keep"]
    assert stats.whiteouts == 3


def test_opaque_keeps_this_layers_entries_in_any_order(tmp_path, use_openat2):
    apply(tmp_path, L.archive(L.file("d/lower1", b""), L.file("d/sub/lower2", b""),
                              L.file("other", b"")))
    apply(tmp_path, L.archive(L.directory("d"), L.file("d/early", b"e"),
                              L.file("d/sub/mine", b"m"), L.opaque("d"), L.file("d/late", b"l")),
          use_openat2=use_openat2)
    assert sorted(os.listdir(tmp_path / "d")) == ["early", "late", "sub"]
    assert os.listdir(tmp_path / "d/sub") == ["mine"]
    assert (tmp_path / "other").exists()


def test_whiteout_of_same_layer_entry_is_ignored(tmp_path):
    apply(tmp_path, L.archive(L.file("x", b"new"), L.whiteout("x")))
    assert (tmp_path / "x").read_bytes() == b"new"


def test_duplicate_entries_later_wins(tmp_path, use_openat2):
    tar = L.archive(L.file("f", b"first"), L.file("f", b"second"),
                    L.directory("d"), L.file("d/inner", b""), L.symlink("d", "f"),
                    L.symlink("s", "f"), L.directory("s"),
                    L.file("h", b"h"), L.hardlink("h", "f"))
    apply(tmp_path, tar, use_openat2=use_openat2)
    assert (tmp_path / "f").read_bytes() == b"second"
    assert os.readlink(tmp_path / "d") == "f"
    assert (tmp_path / "s").is_dir() and not (tmp_path / "s").is_symlink()
    assert (tmp_path / "h").stat().st_ino == (tmp_path / "f").stat().st_ino


def test_file_replacing_lower_hardlink_leaves_the_other_name_alone(tmp_path):
    apply(tmp_path, L.archive(L.file("a", b"old"), L.hardlink("b", "a")))
    apply(tmp_path, L.archive(L.file("b", b"new")))
    assert (tmp_path / "a").read_bytes() == b"old"
    assert (tmp_path / "b").read_bytes() == b"new"


def test_long_names_pax_gnu_and_prefix(tmp_path, use_openat2):
    deep = "/".join(["d%03d" % i for i in range(40)])  # 199 bytes of directories
    pax_name = deep + "/pax-file"
    gnu_name = deep + "/gnu-file"
    tar = L.archive(
        L.pax({"path": pax_name}), L.file("short", b"pax"),
        L.gnu_long(gnu_name), L.file("short2", b"gnu", magic=L.GNU_MAGIC),
        L.gnu_long(pax_name, b"K"), L.gnu_long(deep + "/gnu-link"),
        L.symlink("x", "y", magic=L.GNU_MAGIC),
        L.file("name-in-field", b"prefix", prefix="pre/fix"))
    apply(tmp_path, tar, use_openat2=use_openat2)
    assert (tmp_path / pax_name).read_bytes() == b"pax"
    assert (tmp_path / gnu_name).read_bytes() == b"gnu"
    assert os.readlink(tmp_path / deep / "gnu-link") == pax_name
    assert (tmp_path / "pre/fix/name-in-field").read_bytes() == b"prefix"


def test_non_utf8_names_stay_bytes(tmp_path):
    name = b"caf\xe9/\xff\xfe-file"
    tar = L.archive(L.file(name, b"latin1"), L.symlink(b"l\x80", b"\xff\xfe-target"))
    apply(tmp_path, tar)
    root = os.fsencode(str(tmp_path))
    with open(root + b"/" + name, "rb") as f:
        assert f.read() == b"latin1"
    assert os.readlink(root + b"/l\x80") == b"\xff\xfe-target"


def test_pax_mtime_size_uid_and_global_header(tmp_path):
    tar = L.archive(L.pax({"comment": "git archive"}, kind=b"g"),
                    L.pax({"mtime": "1700000000.5", "uid": "3"}), L.file("f", b"abc"))
    apply(tmp_path, tar)
    st = (tmp_path / "f").stat()
    assert st.st_mtime_ns == 1_700_000_000_500_000_000
    if IS_ROOT:
        assert st.st_uid == 3


def test_tarfile_written_layer_roundtrip(tmp_path):
    src = tmp_path / "src"
    (src / "a/b").mkdir(parents=True)
    (src / "a/b/file").write_bytes(b"data" * 1000)
    os.symlink("b/file", src / "a/link")
    os.link(src / "a/b/file", src / "a/hard")
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
            t.add(src, arcname=".")
        dest = tmp_path / ("out%d" % fmt)
        apply(dest, buf.getvalue())
        assert (dest / "a/b/file").read_bytes() == b"data" * 1000
        assert os.readlink(dest / "a/link") == "b/file"
        assert (dest / "a/hard").stat().st_ino == (dest / "a/b/file").stat().st_ino


# -- compression, media types, diff IDs ------------------------------------------------------

TAR = L.archive(L.file("hello", b"world"))


@pytest.mark.parametrize("media,compress", [
    (L.OCI_TAR, lambda b: b), (L.OCI_GZIP, L.gz), (L.DOCKER_GZIP, L.gz),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", L.gz)])
def test_media_types(tmp_path, media, compress):
    stats = apply(tmp_path, compress(TAR), media, diff_id=L.diff_id(TAR))
    assert (tmp_path / "hello").read_bytes() == b"world"
    assert stats.diff_id == L.diff_id(TAR)


HAVE_ZSTD_PROGRAM = any(os.access(os.path.join(d, "zstd"), os.X_OK) for d in os.get_exec_path())


def have_zstandard():
    try:
        import zstandard  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(params=["module", "program"])
def zstd_decoder(request, monkeypatch, tmp_path):
    """Runs a test once with the zstandard module and once with the zstd program alone."""
    if not HAVE_ZSTD_PROGRAM:
        pytest.skip("the zstd program makes the test layers: not installed")
    if request.param == "module":
        if not have_zstandard():
            pytest.skip("python3-zstandard is not installed")
    else:
        monkeypatch.setitem(sys.modules, "zstandard", None)  # import fails
    from edgert.image.unpackstream import zstd_decoder
    assert zstd_decoder() == request.param
    return request.param


def test_zstd(tmp_path, zstd_decoder):
    apply(tmp_path, L.zstd(TAR), L.OCI_ZSTD, diff_id=L.diff_id(TAR))
    assert (tmp_path / "hello").read_bytes() == b"world"
    big = os.urandom(5 << 20)  # more than the pipes hold: input and output interleave
    tar = L.archive(L.file("big", big), L.file("zeros", bytes(20 << 20)))
    stats = apply(tmp_path / "big", L.zstd(tar), L.OCI_ZSTD, diff_id=L.diff_id(tar))
    assert (tmp_path / "big/big").read_bytes() == big
    assert stats.tar_bytes == len(tar)
    for cut in (6, 100, len(L.zstd(tar)) // 2):
        with pytest.raises(LayerError, match="zstd"):
            apply(tmp_path / ("bad%d" % cut), L.zstd(tar)[:-cut], L.OCI_ZSTD)
    with pytest.raises(LayerError, match="zstd"):
        apply(tmp_path / "garbage", b"\x28\xb5\x2f\xfd" + b"\xff" * 64, L.OCI_ZSTD)
    with pytest.raises(LayerError, match="zstd"):
        apply(tmp_path / "trailing", L.zstd(TAR) + b"junk", L.OCI_ZSTD)


def test_zstd_multiple_frames_and_skippable_frames(tmp_path, zstd_decoder):
    tar = L.archive(L.file("a", os.urandom(300 << 10)), L.file("b", b"b" * 100000))
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    blob = skippable + L.zstd(tar[:70000]) + L.zstd(tar[70000:])
    stats = apply(tmp_path, blob, L.OCI_ZSTD, diff_id=L.diff_id(tar))
    assert stats.files == 2 and (tmp_path / "b").read_bytes() == b"b" * 100000


def test_zstd_bomb_stops_at_layer_limit_in_bounded_memory(tmp_path, zstd_decoder):
    import resource
    tar = L.archive(L.file("zeros", bytes(400 << 20)))
    blob = L.zstd(tar)
    assert len(blob) < 100 << 10
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(LimitExceeded):
        apply(tmp_path, blob, L.OCI_ZSTD, limits=UnpackLimits(max_layer_bytes=64 << 20))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB


def test_zstd_with_neither_decoder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "zstandard", None)
    blob = tmp_path / ("%064x" % 7)
    blob.write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(Unsupported, match="layer sha256:%064x is zstd-compressed: install "
                                          "python3-zstandard or the zstd binary" % 7):
        apply_layer(str(blob), L.OCI_ZSTD, str(tmp_path))


def test_gzip_child_inflater_from_path(tmp_path):
    payload = os.urandom(2 << 20)
    tar = L.archive(L.file("r", payload), L.file("s", b"small"))
    blob = tmp_path / "layer.tgz"
    blob.write_bytes(L.gz(tar) + L.gz(b""))  # a second (empty) gzip member is allowed
    for child in (True, False):
        dest = tmp_path / ("o%d" % child)
        dest.mkdir()
        stats = apply_layer(str(blob), L.OCI_GZIP, str(dest), diff_id=L.diff_id(tar),
                            inflate_in_child=child)
        assert (dest / "r").read_bytes() == payload
        assert stats.diff_id == L.diff_id(tar)


def test_gzip_child_reports_corruption(tmp_path):
    blob = tmp_path / "layer.tgz"
    data = bytearray(L.gz(L.archive(L.file("r", os.urandom(100000)))))
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    for child in (True, False):
        (tmp_path / str(child)).mkdir()
        with pytest.raises(LayerError, match="gzip|checksum|truncated"):
            apply_layer(str(blob), L.OCI_GZIP, str(tmp_path / str(child)), inflate_in_child=child)


def test_unknown_media_type(tmp_path):
    with pytest.raises(Unsupported, match="application/vnd.oci.image.config.v1"):
        apply(tmp_path, TAR, "application/vnd.oci.image.config.v1+json")


def test_media_type_confusion(tmp_path):
    with pytest.raises(LayerError, match="not a gzip stream"):
        apply(tmp_path / "a", TAR, L.OCI_GZIP)
    with pytest.raises(LayerError, match="checksum"):
        apply(tmp_path / "b", L.gz(L.archive(L.file("r", os.urandom(4096)))), L.OCI_TAR)


def test_zstd_and_gzip_confused(tmp_path, zstd_decoder):
    with pytest.raises(LayerError, match="zstd"):
        apply(tmp_path / "a", L.gz(TAR), L.OCI_ZSTD)
    with pytest.raises(LayerError, match="not a gzip stream"):
        apply(tmp_path / "b", L.zstd(TAR), L.OCI_GZIP)
    with pytest.raises(LayerError, match="zstd"):
        apply(tmp_path / "c", TAR, L.OCI_ZSTD)


def test_diff_id_mismatch(tmp_path):
    other = L.diff_id(L.archive(L.file("hello", b"World")))
    with pytest.raises(DiffIDMismatch, match="diff ID mismatch"):
        apply(tmp_path, L.gz(TAR), L.OCI_GZIP, diff_id=other)
    with pytest.raises(LayerError, match="not a sha256 digest"):
        apply(tmp_path, TAR, diff_id="md5:abc")


def test_diff_id_covers_bytes_after_the_end_marker(tmp_path):
    tar = TAR + bytes(10240)
    assert apply(tmp_path, tar).diff_id == L.diff_id(tar)


# -- unpack_layers ---------------------------------------------------------------------------

def _blob(tmp_path, name, tar):
    path = tmp_path / name
    path.write_bytes(L.gz(tar))
    return str(path)


def test_unpack_layers_flattens(tmp_path):
    l1 = L.archive(L.file("etc/a", b"1"), L.file("etc/b", b"2"))
    l2 = L.archive(L.whiteout("etc/a"), L.file("etc/c", b"3"))
    dest = tmp_path / "rootfs"
    stats = unpack_layers([(_blob(tmp_path, "1", l1), L.OCI_GZIP, L.diff_id(l1)),
                           (_blob(tmp_path, "2", l2), L.OCI_GZIP)], str(dest))
    assert sorted(os.listdir(dest / "etc")) == ["b", "c"]
    assert [s.diff_id for s in stats] == [L.diff_id(l1), L.diff_id(l2)]
    with pytest.raises(StateError, match="already exists"):
        unpack_layers([], str(dest))


def test_unpack_layers_leaves_nothing_on_failure(tmp_path):
    good = L.archive(L.file("a", b"1"))
    dest = tmp_path / "rootfs"
    with pytest.raises(DiffIDMismatch):
        unpack_layers([(_blob(tmp_path, "1", good), L.OCI_GZIP),
                       (_blob(tmp_path, "2", good), L.OCI_GZIP, L.diff_id(b"x"))], str(dest))
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]


def test_unpack_layers_makes_the_parent_and_clears_a_dead_run(tmp_path):
    import tarfile
    import io
    from edgert.image.unpack import unpack_layers
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    layer = tmp_path / "layer.tar"
    layer.write_bytes(buf.getvalue())
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    stale = bundle / ".rootfs.unpack-999999999"  # no such pid: left by a killed run
    (stale / "junk").mkdir(parents=True)
    unpack_layers([(str(layer), "application/vnd.oci.image.layer.v1.tar")], str(bundle / "rootfs"))
    assert (bundle / "rootfs" / "hello").read_bytes() == b"hi"
    assert not stale.exists()
    unpack_layers([(str(layer), "application/vnd.oci.image.layer.v1.tar")],
                  str(tmp_path / "new" / "dir" / "rootfs"))
    assert (tmp_path / "new" / "dir" / "rootfs" / "hello").exists()
