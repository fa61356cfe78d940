"""Content store: atomic blobs, image records, usage derived from records, prune, df, locks."""

import fcntl
import hashlib
import io
import os

import pytest

from edgert.errors import ConfigError, NotFound
from edgert.image.digest import DigestMismatch
from edgert.image.store import ImageRecord, Store


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def record(name, manifest, config, layers, arch=None):
    return ImageRecord(name, manifest, config,
                       [{"digest": d, "size": 1, "media_type": "x", "diff_id": d} for d in layers],
                       list(layers), arch or host_arch())


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "root"), sync=False)


def test_write_blob_verifies_and_is_idempotent(store):
    d = store.write_blob(b"hello")
    assert d == digest(b"hello")
    assert store.has_blob(d)
    assert store.write_blob(b"hello", d, 5) == d
    with pytest.raises(DigestMismatch):
        store.write_blob(b"other", d)
    with pytest.raises(DigestMismatch):
        store.write_blob(b"hello", d, 4)
    assert store.read_blob(d, 100) == b"hello"
    with pytest.raises(ConfigError):
        store.read_blob(d, 2)
    with pytest.raises(NotFound):
        store.read_blob(digest(b"missing"), 100)


def test_ingest_stream_leaves_nothing_on_mismatch(store):
    data = os.urandom(600 << 10)
    with pytest.raises(DigestMismatch):
        store.ingest_stream(io.BytesIO(data + b"x").read, digest(data), len(data))
    assert not store.has_blob(digest(data))
    assert not any(".tmp-" in p for p in store.ingest_leftovers())
    store.ingest_stream(io.BytesIO(data).read, digest(data), len(data))
    with open(store.blob_path(digest(data)), "rb") as f:
        assert f.read() == data


def test_records_round_trip_and_lookup_by_digest(store):
    m, c, l1 = (digest(b"m"), digest(b"c"), digest(b"l1"))
    store.put_image(record("localhost:5000/a/b:1", m, c, [l1]))
    got = store.get_image("localhost:5000/a/b:1")
    assert (got.digest, got.config, got.diff_ids, got.top_chain_id) == (m, c, [l1], l1)
    assert store.get_image(m[7:19]).name == "localhost:5000/a/b:1"
    assert store.get_image(m).name == "localhost:5000/a/b:1"
    with pytest.raises(NotFound, match="edgert image ls"):
        store.get_image("nope")
    assert [r.name for r in store.images()] == ["localhost:5000/a/b:1"]


def test_prune_keeps_what_records_use(store):
    shared = store.write_blob(b"shared layer")
    only_a = store.write_blob(b"layer of a")
    m_a, m_b, conf = (store.write_blob(b"manifest a"), store.write_blob(b"manifest b"),
                      store.write_blob(b"config"))
    orphan = store.write_blob(b"orphan")
    store.put_image(record("a", m_a, conf, [shared, only_a]))
    store.put_image(record("b", m_b, conf, [shared]))
    with open(store.ingest_path(orphan) + ".partial", "wb") as f:
        f.write(b"partial download")
    usage = store.df()
    assert usage["images"] == 2
    assert usage["blobs"]["count"] == 6
    assert usage["blobs"]["reclaimable"] == len(b"orphan")
    assert usage["ingest"] == len(b"partial download")
    freed = store.prune()
    assert freed["blobs"] == 1 and freed["bytes"] == len(b"orphan") + len(b"partial download")
    assert not store.has_blob(orphan) and store.has_blob(shared)
    store.remove_image("a")
    store.prune()
    assert not store.has_blob(only_a) and not store.has_blob(m_a)
    assert store.has_blob(shared) and store.has_blob(conf)
    store.remove_image("b")
    store.prune()
    assert store.blobs() == {}


def test_dropped_layers_are_not_kept(store):
    layer, m, c = store.write_blob(b"L"), store.write_blob(b"M"), store.write_blob(b"C")
    r = record("x", m, c, [layer])
    r.dropped = True
    store.put_image(r)
    store.prune()
    assert not store.has_blob(layer) and store.has_blob(m) and store.has_blob(c)
    assert store.get_image("x").diff_ids == [layer]


def test_prune_waits_for_adders(store, tmp_path):
    with store.adding():
        fd = os.open(os.path.join(store.root, "lock"), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another pull may run alongside
        finally:
            os.close(fd)


def test_corrupt_record_is_a_clear_error(store):
    with open(store.record_path("bad", host_arch()), "w") as f:
        f.write("{not json")
    with pytest.raises(ConfigError, match="corrupt image record"):
        store.get_image("bad")


def test_only_sha256_content(store):
    with pytest.raises(ConfigError):
        store.blob_path("sha512:" + "0" * 128)
    with pytest.raises(ConfigError):
        store.blob_path("sha256:../../etc")


def test_waiting_for_the_lock_is_announced(tmp_path):
    waits = []
    store = Store(str(tmp_path / "root"), sync=False, on_wait=lambda: waits.append(1))
    other = Store(store.root, sync=False)
    with store.adding():
        with store.adding():
            pass
    assert waits == []
    import threading
    with other.adding():
        t = threading.Thread(target=lambda: store.prune())
        t.start()
        t.join(0.3)
        assert t.is_alive() and waits == [1]
    t.join(5)
    assert not t.is_alive()


# -- records keyed by (name, architecture) ------------------------------------------------

HOST = os.uname().machine


def host_arch():
    from edgert.image.manifest import host_arch
    return host_arch(HOST)


def other_arches():
    return [a for a in ("amd64", "arm64", "armhf", "ppc64le") if a != host_arch()]


def test_one_name_for_several_arches(store):
    host, (other, third) = host_arch(), other_arches()[:2]
    for arch in (host, other):
        store.put_image(record("busybox:1", digest(arch.encode()), digest(b"c"), [], arch))
    assert [(r.name, r.arch) for r in store.images()] == sorted(
        [("busybox:1", host), ("busybox:1", other)])
    assert store.get_image("busybox:1").arch == host  # the host's by default
    assert store.get_image("busybox:1", arch=other).digest == digest(other.encode())
    assert store.get_image(digest(other.encode())).arch == other  # a digest is unambiguous
    with pytest.raises(NotFound, match="for %s, %s, not %s: choose one with --arch"
                       % tuple(sorted([host, other]) + [third])):
        store.get_image("busybox:1", arch=third)
    assert store.remove_image("busybox:1").arch == host
    with pytest.raises(NotFound, match="for %s, not %s" % (other, host)):
        store.get_image("busybox:1")
    assert store.remove_image("busybox:1", other).arch == other
    assert store.images() == []


def test_arch_aliases(store):
    store.put_image(record("x", digest(b"m"), digest(b"c"), [], "arm64"))
    assert store.get_image("x", "aarch64").arch == "arm64"


def legacy_write(store, rec):
    """A record as stores wrote it before records were keyed by architecture."""
    from edgert import jsonfast
    path = os.path.join(store.image_dir, hashlib.sha256(rec.name.encode()).hexdigest()[:40]
                        + ".json")
    with open(path, "w") as f:
        f.write(jsonfast.dumps(rec.as_dict()))
    return path


def test_legacy_records_are_read_and_replaced_on_write(store):
    host, other = host_arch(), other_arches()[0]
    path = legacy_write(store, record("old", digest(b"m1"), digest(b"c"), [], other))
    assert store.get_image("old", other).digest == digest(b"m1")
    with pytest.raises(NotFound, match="for %s, not %s" % (other, host)):
        store.get_image("old")
    # the same name pulled again for that arch: the legacy file goes, one record stays
    store.put_image(record("old", digest(b"m2"), digest(b"c"), [], other))
    assert not os.path.exists(path)
    assert [(r.name, r.digest) for r in store.images()] == [("old", digest(b"m2"))]
    # a legacy record of another arch survives a write for the host's
    path = legacy_write(store, record("keep", digest(b"m3"), digest(b"c"), [], other))
    store.put_image(record("keep", digest(b"m4"), digest(b"c"), [], host))
    assert os.path.exists(path)
    assert sorted(r.arch for r in store.images() if r.name == "keep") == sorted([host, other])
    store.remove_image("keep", other)
    assert not os.path.exists(path)
    assert [r.arch for r in store.images() if r.name == "keep"] == [host]


def test_crash_between_new_record_and_legacy_removal(store):
    """Both files exist (the legacy removal did not happen): the new record wins."""
    arch = host_arch()
    store.put_image(record("n", digest(b"new"), digest(b"c"), [], arch))
    legacy_write(store, record("n", digest(b"old"), digest(b"c"), [], arch))
    assert [r.digest for r in store.images()] == [digest(b"new")]
    assert store.get_image("n").digest == digest(b"new")
    store.remove_image("n")
    assert store.images() == []
