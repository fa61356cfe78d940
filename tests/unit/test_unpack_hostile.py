"""Hostile layers: every known escape, bomb and malformation must fail clearly or stay confined.

Each confinement test runs twice: with openat2(RESOLVE_IN_ROOT) and with the fd-by-fd walk
used on kernels without it. ``outside`` is a directory beside the rootfs standing for the
host: nothing may ever appear in it or change there.
"""

import io
import os

import pytest

from edgert.image.unpack import (LayerError, LimitExceeded, UnpackLimits, UnpackPolicy,
                                 apply_layer, unpack_layers)
from tests.helpers import evil_layers as L


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def use_openat2(request):
    if request.param:
        from edgert import native
        if not native.have_openat2():
            pytest.skip("openat2 is not available (old kernel, or an emulator such as qemu-user)")
    return request.param


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host data")
    return root, outside


def apply(root, tar, **kw):
    return apply_layer(io.BytesIO(tar), L.OCI_TAR, str(root), **kw)


def untouched(outside):
    assert os.listdir(outside) == ["secret"]
    assert (outside / "secret").read_bytes() == b"host data"


# -- paths -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "a/b/../../../escape", ".."])
def test_dotdot_refused(rootfs, name, use_openat2):
    root, outside = rootfs
    with pytest.raises(LayerError, match=r"'\.\.' component"):
        apply(root, L.archive(L.file(name, b"x")), use_openat2=use_openat2)
    assert not os.path.exists(root.parent / "escape")


def test_absolute_paths_land_inside(rootfs, use_openat2):
    root, outside = rootfs
    apply(root, L.archive(L.file(str(outside / "secret"), b"pwned"), L.file("/etc/x", b"1")),
          use_openat2=use_openat2)
    untouched(outside)
    assert (root / str(outside).lstrip("/") / "secret").read_bytes() == b"pwned"
    assert (root / "etc/x").read_bytes() == b"1"


@pytest.mark.parametrize("target", ["/", "../../..", "/../..", "sub/../../..", "."])
def test_symlink_then_write_resolves_inside(rootfs, target, use_openat2):
    root, outside = rootfs
    (root / "sub").mkdir()
    tar = L.archive(L.symlink("evil", target), L.file("evil/secret", b"pwned"))
    apply(root, tar, use_openat2=use_openat2)
    untouched(outside)
    assert (root / "secret").read_bytes() == b"pwned"  # the rootfs is "/" for its symlinks


@pytest.mark.parametrize("target", ["abs", "../outside", "sub/../../outside"])
def test_symlink_to_host_then_write_refused(rootfs, target, use_openat2):
    root, outside = rootfs
    link_target = str(outside) if target == "abs" else target
    tar = L.archive(L.symlink("evil", link_target), L.file("evil/secret", b"pwned"))
    # inside the rootfs the target does not exist: refused rather than created
    with pytest.raises(LayerError, match="points nowhere"):
        apply(root, tar, use_openat2=use_openat2)
    untouched(outside)


def test_symlink_chain_and_loop(rootfs, use_openat2):
    root, outside = rootfs
    tar = L.archive(L.symlink("a", "b"), L.symlink("b", str(outside)), L.file("a/new", b"x"))
    with pytest.raises(LayerError, match="points nowhere"):
        apply(root, tar, use_openat2=use_openat2)
    untouched(outside)
    loop = L.archive(L.symlink("x", "y"), L.symlink("y", "x"), L.file("x/f", b""))
    with pytest.raises(LayerError, match="symlinks"):
        apply(root, loop, use_openat2=use_openat2)
    untouched(outside)


def test_symlink_in_lower_layer_then_write(rootfs, use_openat2):
    root, outside = rootfs
    apply(root, L.archive(L.symlink("etc", str(outside)), L.symlink("up", "../../../..")))
    for member in (L.file("etc/secret", b"pwned"), L.directory("etc/d"), L.fifo("etc/fifo"),
                   L.symlink("etc/l", "/"), L.hardlink("etc/h", "up")):
        with pytest.raises(LayerError):
            apply(root, L.archive(member), use_openat2=use_openat2)
    untouched(outside)
    apply(root, L.archive(L.file("up/via-up", b"in")), use_openat2=use_openat2)
    assert (root / "via-up").read_bytes() == b"in"


def test_symlink_then_directory_entry_does_not_follow(rootfs, use_openat2):
    root, outside = rootfs
    apply(root, L.archive(L.symlink("d", str(outside)), L.directory("d", mode=0o777)),
          use_openat2=use_openat2)
    assert (root / "d").is_dir() and not (root / "d").is_symlink()
    assert oct(os.stat(outside).st_mode & 0o777) != oct(0o777)
    untouched(outside)


# -- hardlinks -------------------------------------------------------------------------------

def test_hardlink_to_host_file_refused(rootfs, use_openat2):
    root, outside = rootfs
    with pytest.raises(LayerError, match="not in the rootfs"):
        apply(root, L.archive(L.hardlink("h", str(outside / "secret"))), use_openat2=use_openat2)
    with pytest.raises(LayerError, match=r"'\.\.' component"):
        apply(root, L.archive(L.hardlink("h", "../outside/secret")), use_openat2=use_openat2)
    untouched(outside)


def test_hardlink_through_symlink_stays_inside(rootfs, use_openat2):
    root, outside = rootfs
    tar = L.archive(L.symlink("s", str(outside)), L.hardlink("h", "s/secret"))
    with pytest.raises(LayerError, match="not in the rootfs"):
        apply(root, tar, use_openat2=use_openat2)
    assert os.stat(outside / "secret").st_nlink == 1


def test_hardlink_to_symlink_links_the_symlink_itself(rootfs, use_openat2):
    root, outside = rootfs
    apply(root, L.archive(L.symlink("s", str(outside / "secret")), L.hardlink("h", "s"),
                          L.file("h", b"overwrite?")), use_openat2=use_openat2)
    untouched(outside)
    assert os.readlink(root / "s") == str(outside / "secret")


def test_hardlink_then_write_replaces_not_truncates(rootfs, use_openat2):
    root, outside = rootfs
    apply(root, L.archive(L.file("orig", b"keep"), L.hardlink("h", "orig"), L.file("h", b"new")),
          use_openat2=use_openat2)
    assert (root / "orig").read_bytes() == b"keep"


def test_hardlink_to_directory_or_self_refused(rootfs):
    root, _ = rootfs
    with pytest.raises(LayerError, match="directory"):
        apply(root, L.archive(L.directory("d"), L.hardlink("h", "d")))
    with pytest.raises(LayerError, match="not a file"):
        apply(root, L.archive(L.hardlink("h", "h")))


# -- whiteouts -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [".wh.", "a/.wh.", ".wh..", "a/.wh..", ".wh...", "a/.wh..."])
def test_whiteouts_of_nothing_dot_or_dotdot_refused(rootfs, name):
    root, outside = rootfs
    (root / "a").mkdir()
    with pytest.raises(LayerError, match="names no file"):
        apply(root, L.archive(L.file(name)))
    assert (root / "a").is_dir()
    untouched(outside)


def test_whiteout_aimed_outside(rootfs, use_openat2):
    root, outside = rootfs
    with pytest.raises(LayerError, match=r"'\.\.' component"):
        apply(root, L.archive(L.file("../outside/.wh.secret")), use_openat2=use_openat2)
    untouched(outside)
    apply(root, L.archive(L.symlink("s", str(outside)), L.file("s/.wh.secret"),
                          L.file(str(outside / ".wh.secret"))), use_openat2=use_openat2)
    untouched(outside)
    with pytest.raises(LayerError, match="points nowhere"):
        apply(root, L.archive(L.file("s/.wh..wh..opq")), use_openat2=use_openat2)
    untouched(outside)
    apply(root, L.archive(L.symlink("r", "../../.."), L.file("r/.wh..wh..opq")),
          use_openat2=use_openat2)
    assert os.listdir(root) == []  # the opaque emptied the rootfs itself, nothing more
    untouched(outside)


def test_aufs_metadata_whiteouts_refused(rootfs):
    root, _ = rootfs
    with pytest.raises(LayerError, match="aufs"):
        apply(root, L.archive(L.file(".wh..wh.plnk")))


# -- malformed streams -----------------------------------------------------------------------

def test_truncated_streams(rootfs):
    root, _ = rootfs
    full = L.archive(L.file("f", os.urandom(5000)))
    for cut, what in ((200, "header"), (512 + 1000, "file data"), (len(full) - 1024, "end-of")):
        with pytest.raises(LayerError, match="truncated|end-of-archive"):
            apply(root, full[:cut])
    with pytest.raises(LayerError, match="truncated gzip"):
        apply_layer(io.BytesIO(L.gz(full)[:-20]), L.OCI_GZIP, str(root))


def test_bad_checksum_and_numbers(rootfs):
    root, _ = rootfs
    with pytest.raises(LayerError, match="checksum mismatch"):
        apply(root, L.archive(L.header("f", checksum=1234)))
    with pytest.raises(LayerError, match="not an octal number"):
        apply(root, L.archive(L.header("f", size_field=b"12z4\x00" + bytes(7))))
    with pytest.raises(LayerError, match="negative"):
        apply(root, L.archive(L.header("f", size_field=b"\xff" * 12)))


def test_malformed_pax(rootfs):
    root, _ = rootfs
    for data in (b"99 path=x\n", b"abc path=x\n", b"12 pathxxxx\n", b"9 path=x\x00"):
        tar = L.archive(L.header("p", b"x", size=len(data)) + L.pad(data), L.file("f"))
        with pytest.raises(LayerError, match="PAX"):
            apply(root, tar)
    with pytest.raises(LayerError, match="PAX record size"):
        apply(root, L.archive(L.pax({"size": "-5"}), L.file("f")))


def test_data_on_non_file_entries_refused(rootfs):
    root, _ = rootfs
    evil = L.header("d", b"5", size=512) + L.file("hidden", b"x")  # readers disagree here
    with pytest.raises(LayerError, match="carries 512 bytes"):
        apply(root, L.archive(evil))


def test_unknown_and_multivolume_types_refused(rootfs):
    root, _ = rootfs
    for kind in (b"M", b"V", b"D", b"Z"):
        with pytest.raises(LayerError, match="unsupported tar type"):
            apply(root, L.archive(L.member("x", b"", kind)))


def test_sparse_refused(rootfs):
    root, _ = rootfs
    with pytest.raises(LayerError, match="sparse"):
        apply(root, L.archive(L.member("s", b"", b"S", magic=L.GNU_MAGIC)))
    for records in ({"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                     "GNU.sparse.name": "s", "GNU.sparse.realsize": "1000000"},
                    {"GNU.sparse.size": "1000000", "GNU.sparse.numblocks": "1"}):
        with pytest.raises(LayerError, match="sparse"):
            apply(root, L.archive(L.pax(records), L.file("GNUSparseFile.0/s", b"")))


# -- limits ----------------------------------------------------------------------------------

def test_file_size_limit_checked_before_writing(rootfs):
    root, _ = rootfs
    huge = L.header("huge", size=1 << 40)  # claims 1 TiB; the data never comes
    with pytest.raises(LimitExceeded, match="max_file_bytes"):
        apply(root, L.archive(huge), limits=UnpackLimits(max_file_bytes=1 << 30))
    assert not (root / "huge").exists()
    huge_b256 = L.header("huge", size_field=b"\x80" + (1 << 80).to_bytes(11, "big"))
    with pytest.raises(LimitExceeded, match="max_file_bytes"):
        apply(root, L.archive(huge_b256))


def test_gzip_bomb_stops_at_layer_limit(rootfs):
    root, _ = rootfs
    bomb = L.gz(L.header("zeros", size=64 << 20) + bytes(64 << 20))  # 64 MiB from ~64 KiB
    assert len(bomb) < 200_000
    with pytest.raises(LimitExceeded, match="uncompressed size"):
        apply_layer(io.BytesIO(bomb), L.OCI_GZIP, str(root),
                    limits=UnpackLimits(max_layer_bytes=8 << 20))


def test_entry_and_path_limits(rootfs):
    root, _ = rootfs
    many = L.archive(*(L.file("f%d" % i) for i in range(20)))
    with pytest.raises(LimitExceeded, match="max_entries"):
        apply(root, many, limits=UnpackLimits(max_entries=10))
    long_name = "a/" * 3000 + "f"
    with pytest.raises(LimitExceeded, match="max_path_bytes"):
        apply(root, L.archive(L.pax({"path": long_name}), L.file("x")))
    with pytest.raises(LimitExceeded, match="max_path_bytes|max_meta_bytes"):
        apply(root, L.archive(L.gnu_long("b" * 10000), L.file("x")))
    with pytest.raises(LimitExceeded, match="max_meta_bytes"):
        apply(root, L.archive(L.pax({"comment": "c" * 2_000_000}), L.file("x")))


def test_total_limit_over_layers(tmp_path):
    blobs = []
    for i in range(3):
        path = tmp_path / ("l%d" % i)
        path.write_bytes(L.archive(L.file("f%d" % i, os.urandom(300_000))))
        blobs.append((str(path), L.OCI_TAR))
    with pytest.raises(LimitExceeded):
        unpack_layers(blobs, str(tmp_path / "root"), limits=UnpackLimits(max_total_bytes=700_000))
    assert not (tmp_path / "root").exists()


def test_many_directories_do_not_exhaust_fds(rootfs):
    root, _ = rootfs
    tar = L.archive(*(L.file("d%d/f" % i, b"") for i in range(2000)))
    apply(root, tar, use_openat2=False)
    assert len(os.listdir(root)) == 2000


def test_deep_nesting_and_dotdot_symlinks(rootfs, use_openat2):
    root, outside = rootfs
    deep = "/".join(["d"] * 1100)  # deeper than the fd limit: the walk holds one fd at a time
    up = "/".join([".."] * 1200)
    tar = L.archive(L.file(deep + "/f", b"deep"), L.symlink(deep + "/up", up),
                    L.file(deep + "/up/top", b"top"), L.symlink("x", deep[:7] + "/../../d"),
                    L.file("x/via", b"via"))
    apply(root, tar, use_openat2=use_openat2, limits=UnpackLimits(max_path_bytes=4096))
    assert (root / deep / "f").read_bytes() == b"deep"
    assert (root / "top").read_bytes() == b"top"
    assert (root / "d/d/d/via").read_bytes() == b"via"
    untouched(outside)
    apply(root, L.archive(L.whiteout("d")), use_openat2=use_openat2)  # removed without recursion
    assert sorted(os.listdir(root)) == ["top", "x"]


def _open_fds():
    return sorted(os.listdir("/proc/self/fd"))


def test_child_inflater_is_reaped_and_fds_closed_on_error(tmp_path):
    blob = tmp_path / "bomb.tgz"
    blob.write_bytes(L.gz(L.header("zeros", size=64 << 20) + bytes(64 << 20)))
    (tmp_path / "root").mkdir()
    before = _open_fds()
    children = _children()  # other tests' session fixtures (registries...) may have some
    with pytest.raises(LimitExceeded):
        apply_layer(str(blob), L.OCI_GZIP, str(tmp_path / "root"), inflate_in_child=True,
                    limits=UnpackLimits(max_layer_bytes=4 << 20))
    assert _open_fds() == before
    assert _children() == children  # no inflater left behind, not even a zombie


def _children():
    pid = os.getpid()
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return set(f.read().split())


@pytest.mark.parametrize("records", [
    {"path": "a\x00b"}, {"linkpath": "x\x00y"}, {"uid": "99999999999"},
    {"gid": "4294967295"}, {"mtime": "99999999999999999999"},
    {"SCHILY.xattr.user.a\x00b": "v"}, {"SCHILY.xattr.": "v"}])
def test_pax_values_the_kernel_cannot_take(rootfs, records):
    root, _ = rootfs
    kind = L.symlink("s", "t") if "linkpath" in records else L.file("f", b"x")
    with pytest.raises(LayerError):
        apply(root, L.archive(L.pax(records), kind))


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_huge_base256_ids_and_device_numbers(rootfs):
    root, _ = rootfs
    hdr = bytearray(L.header("f"))
    hdr[108:116] = b"\x80" + (1 << 40).to_bytes(7, "big")  # uid
    hdr[148:156] = b"%06o\x00 " % (sum(hdr[:148]) + 8 * 32 + sum(hdr[156:]))
    with pytest.raises(LayerError, match="out of range"):
        apply(root, L.archive(bytes(hdr)))
    with pytest.raises(LayerError, match="Invalid argument"):  # the kernel's limit
        apply(root, L.archive(L.device("d", major=0o7777777, minor=1)),
              policy=UnpackPolicy(devices="create"))


def test_entry_hidden_after_a_lone_zero_block_refused(rootfs):
    root, _ = rootfs
    tar = L.file("a", b"1") + bytes(512) + L.file("hidden", b"2") + bytes(1024)
    with pytest.raises(LayerError, match="lone zero block"):
        apply(root, tar)
    (root / "second").mkdir()
    apply(root / "second", L.file("b", b"1") + bytes(512))  # one zero block, then the end: fine
    assert (root / "second/b").read_bytes() == b"1"
