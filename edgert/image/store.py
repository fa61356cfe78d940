"""The content store: blobs by digest, image records, reference counts derived from them.

Layout under the root (``/var/lib/edgert`` by default)::

    lock                     flock: shared while a pull or import adds content, exclusive
                             for rm and prune (so they never delete what a pull just fetched)
    ingest/HEX.partial       downloads in progress (kept across crashes: the next pull resumes)
    ingest/HEX.lock          flock held by the one process writing that blob
    blobs/sha256/HEX         verified content; a name that exists is complete
    images/KEYHASH.json      one image record per (name, architecture) (see ``ImageRecord``);
                             records written before architectures were keyed are named by
                             a hash of the name alone: still read, replaced on the next write
    snapshots/, active/      the snapshotter's (snapshot.py)

Nothing counts references: what is in use is recomputed from the image records and the
active snapshots each time, so a crash can never leave a wrong counter behind. Every file
is written to a temporary name, fsynced and renamed, so a power cut leaves the old state or
the new one.
"""

import errno
import fcntl
import hashlib
import os

from .. import jsonfast
from ..errors import ConfigError, NotFound
from ..fsutil import atomic_write, fsync_dir
from . import digest as _digest

DEFAULT_ROOT = "/var/lib/edgert"
CHUNK = 256 << 10


class ImageRecord:
    """What the store knows about one image name for one architecture (``arch``).

    ``layers``: [{"digest", "size", "media_type", "diff_id"}] lowest first; ``chain_ids`` the
    snapshot keys of each layer stack. ``dropped``: the compressed layer blobs were removed
    after unpacking (``drop_compressed_after_unpack``); the diff IDs stay for verification.
    """

    FIELDS = ("name", "source", "digest", "media_type", "index_digest", "arch", "config",
              "layers", "chain_ids", "created", "dropped")

    def __init__(self, name, digest, config, layers, chain_ids, arch, source=None,
                 media_type=None, index_digest=None, created=None, dropped=False):
        self.name = name
        self.source = source or name
        self.digest = digest
        self.media_type = media_type
        self.index_digest = index_digest
        self.arch = arch
        self.config = config
        self.layers = layers
        self.chain_ids = chain_ids
        self.created = created
        self.dropped = dropped

    @property
    def diff_ids(self):
        return [layer["diff_id"] for layer in self.layers]

    @property
    def top_chain_id(self):
        return self.chain_ids[-1] if self.chain_ids else None

    def blob_digests(self):
        """The blobs this image keeps: manifest, config and (unless dropped) its layers."""
        digests = [self.digest, self.config]
        if not self.dropped:
            digests.extend(layer["digest"] for layer in self.layers)
        return digests

    def as_dict(self):
        return {field: getattr(self, field) for field in self.FIELDS}

    @classmethod
    def from_dict(cls, doc, where):
        try:
            return cls(doc["name"], doc["digest"], doc["config"], doc["layers"],
                       doc["chain_ids"], doc["arch"], doc.get("source"), doc.get("media_type"),
                       doc.get("index_digest"), doc.get("created"), doc.get("dropped", False))
        except (KeyError, TypeError) as e:
            raise ConfigError("%s: not an image record (missing %s): remove it or run "
                              "edgert image rm" % (where, e)) from None


class StoreLock:
    """An flock on the store root: ``shared`` while adding content, exclusive to delete."""

    def __init__(self, path, shared, remove=False, on_wait=None):
        self.path = path
        self.on_wait = on_wait
        self.shared = shared
        self.remove = remove
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.on_wait is not None:
                self.on_wait()
            fcntl.flock(self.fd, mode)
        return self

    def __exit__(self, *exc):
        if self.remove and exc[0] is None:
            # Whoever waits on this inode re-checks for the blob after locking and finds
            # it, so removing the file under the lock cannot let two writers collide.
            _unlink(self.path)
        os.close(self.fd)  # closing drops the flock
        self.fd = None


class Store:
    """A content store rooted at ``root``; directories are created on first use.

    ``drop_compressed_after_unpack``: pull.py removes layer blobs once every layer is
    unpacked into verified snapshots (saves flash; a later ``unpack`` reads the snapshots).
    ``sync=False`` skips fsyncs (tests on tmpfs). ``on_wait()`` is called before blocking
    on the store lock (another process is pulling or pruning).
    """

    def __init__(self, root=DEFAULT_ROOT, drop_compressed_after_unpack=False, sync=True,
                 on_wait=None):
        self.root = os.path.abspath(root)
        self.on_wait = on_wait
        self.drop_compressed_after_unpack = drop_compressed_after_unpack
        self.sync = sync
        self.blob_dir = os.path.join(self.root, "blobs", "sha256")
        self.ingest_dir = os.path.join(self.root, "ingest")
        self.image_dir = os.path.join(self.root, "images")
        for path in (self.blob_dir, self.ingest_dir, self.image_dir):
            os.makedirs(path, 0o700, exist_ok=True)

    # -- locking ------------------------------------------------------------

    def adding(self):
        """Lock held while content is added: many writers at once, no prune or rm."""
        return StoreLock(os.path.join(self.root, "lock"), shared=True, on_wait=self.on_wait)

    def deleting(self):
        """Lock held while content is deleted: alone."""
        return StoreLock(os.path.join(self.root, "lock"), shared=False, on_wait=self.on_wait)

    def blob_lock(self, digest):
        """An exclusive flock for writing one blob's ingest file (concurrent pulls)."""
        return StoreLock(os.path.join(self.ingest_dir, _hex(digest) + ".lock"), shared=False,
                         remove=True)

    # -- blobs --------------------------------------------------------------

    def blob_path(self, digest):
        return os.path.join(self.blob_dir, _hex(digest))

    def ingest_path(self, digest):
        """Where a download of ``digest`` goes before it is verified (the registry client
        keeps its partial data at this path + ".partial")."""
        return os.path.join(self.ingest_dir, _hex(digest))

    def has_blob(self, digest):
        return os.path.exists(self.blob_path(digest))

    def commit_ingested(self, digest):
        """Moves a verified ``ingest_path(digest)`` into the blob directory."""
        os.rename(self.ingest_path(digest), self.blob_path(digest))
        self._sync_dir(self.blob_dir)

    def write_blob(self, data, digest=None, size=None):
        """Stores the bytes ``data`` (verified against ``digest``/``size`` when given)."""
        verifier = _digest.Verifier(digest or _digest.of(data), size)
        verifier.update(data)
        digest = verifier.finish()
        if not self.has_blob(digest):
            atomic_write(self.blob_path(digest), data, 0o600, self.sync)
        return digest

    def ingest_stream(self, read, digest, size, name=None):
        """Copies ``read(n)`` into the store as blob ``digest``, verifying size and digest
        while it streams; the temporary file is removed on any error."""
        if self.has_blob(digest):
            return digest
        verifier = _digest.Verifier(digest, size, name)
        with self.blob_lock(digest):
            if self.has_blob(digest):
                return digest
            tmp = self.ingest_path(digest) + ".tmp-%d" % os.getpid()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                while True:
                    chunk = read(CHUNK)
                    if not chunk:
                        break
                    verifier.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                verifier.finish()
                if self.sync:
                    os.fsync(fd)
            except BaseException:
                os.close(fd)
                os.unlink(tmp)
                raise
            os.close(fd)
            os.rename(tmp, self.blob_path(digest))
            self._sync_dir(self.blob_dir)
        return digest

    def read_blob(self, digest, limit):
        """The bytes of a small blob (a manifest or config), at most ``limit`` long."""
        try:
            with open(self.blob_path(digest), "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise NotFound("blob %s is not in the store %s: pull the image again"
                           % (digest, self.root)) from None
        if len(data) > limit:
            raise ConfigError("blob %s: larger than %d bytes" % (digest, limit))
        return data

    def blobs(self):
        """{digest: size} of every stored blob."""
        found = {}
        for name in os.listdir(self.blob_dir):
            if len(name) == 64 and not name.strip("0123456789abcdef"):
                try:
                    found["sha256:" + name] = os.lstat(os.path.join(self.blob_dir, name)).st_size
                except FileNotFoundError:
                    pass
        return found

    def remove_blob(self, digest):
        _unlink(self.blob_path(digest))

    # -- image records ------------------------------------------------------

    def record_path(self, name, arch):
        # Names hold "/" and ":"; a hash makes a safe, fixed-length file name. One record
        # per (name, arch): a build host may hold the same image for several devices.
        return self._hashed_path(name + "\n" + arch)

    def _legacy_record_path(self, name):
        """Where records keyed by name alone were written (still read)."""
        return self._hashed_path(name)

    def _hashed_path(self, key):
        return os.path.join(self.image_dir, hashlib.sha256(key.encode()).hexdigest()[:40]
                            + ".json")

    def put_image(self, record):
        atomic_write(self.record_path(record.name, record.arch),
                     jsonfast.dumps(record.as_dict()), 0o600, self.sync)
        self._drop_legacy(record.name, record.arch)

    def _drop_legacy(self, name, arch):
        """Removes the name-keyed record of (name, arch), now held under its new key."""
        legacy = self._legacy_record_path(name)
        try:
            old = self._load_record(legacy)
        except (FileNotFoundError, ConfigError):
            return
        if old.name == name and old.arch == arch:
            _unlink(legacy)
            self._sync_dir(self.image_dir)

    def get_image(self, name, arch=None):
        """The record of image ``name`` for ``arch`` (default: this machine's), else one whose
        manifest digest or digest prefix (at least 12 hex digits) is ``name``.

        NotFound when the store has no such image, or has it only for other architectures
        (the message names them: choose one with ``arch``).
        """
        wanted_arch = _arch(arch)
        try:
            return self._load_record(self.record_path(name, wanted_arch))
        except FileNotFoundError:
            pass
        named = [r for r in self.images() if r.name == name]
        for record in named:
            if record.arch == wanted_arch:
                return record  # a record written before records were keyed by arch
        if named:
            arches = ", ".join(sorted({r.arch for r in named}))
            raise NotFound("image %r is in the store %s for %s, not %s: choose one with --arch"
                           % (name, self.root, arches, wanted_arch))
        wanted = name[7:] if name.startswith("sha256:") else name
        if len(wanted) >= 12 and not wanted.strip("0123456789abcdef"):
            matches = [r for r in self.images() if r.digest[7:].startswith(wanted)
                       and (arch is None or r.arch == arch)]
            if len(matches) == 1 or len({r.digest for r in matches}) == 1 and matches:
                return matches[0]
        raise NotFound("image %r is not in the store %s (see edgert image ls)"
                       % (name, self.root))

    def images(self):
        """Every image record, sorted by name and architecture (one per pair)."""
        records = {}
        for entry in sorted(os.listdir(self.image_dir)):
            if entry.endswith(".json") and not entry.startswith("."):
                path = os.path.join(self.image_dir, entry)
                try:
                    record = self._load_record(path)
                except FileNotFoundError:
                    continue  # removed meanwhile
                key = (record.name, record.arch)
                # After a crash between writing a record under its new key and removing
                # the legacy file, both exist: the new key wins.
                if key not in records or path == self.record_path(*key):
                    records[key] = record
        return [records[key] for key in sorted(records)]

    def remove_image(self, name, arch=None):
        """Removes the record ``name`` for ``arch`` (see get_image; its content goes with the
        next prune)."""
        record = self.get_image(name, arch)
        _unlink(self.record_path(record.name, record.arch))
        self._drop_legacy(record.name, record.arch)
        self._sync_dir(self.image_dir)
        return record

    def _load_record(self, path):
        with open(path, "rb") as f:
            data = f.read()
        try:
            doc = jsonfast.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError("%s: corrupt image record (%s): remove the file and pull again"
                              % (path, e)) from None
        if not isinstance(doc, dict):
            raise ConfigError("%s: corrupt image record: remove it and pull again" % path)
        return ImageRecord.from_dict(doc, path)

    # -- usage --------------------------------------------------------------

    def used_blobs(self):
        used = set()
        for record in self.images():
            used.update(record.blob_digests())
        return used

    def ingest_leftovers(self):
        """{path: size} of partial downloads and temporary files in the ingest directory."""
        found = {}
        for name in os.listdir(self.ingest_dir):
            path = os.path.join(self.ingest_dir, name)
            try:
                found[path] = os.lstat(path).st_size
            except FileNotFoundError:
                pass
        return found

    def prune(self, snapshots=None):
        """Removes blobs and snapshots that no image and no container uses, and leftovers of
        interrupted downloads. Returns {"blobs": n, "snapshots": n, "bytes": freed}."""
        freed = {"blobs": 0, "snapshots": 0, "bytes": 0}
        with self.deleting():
            used = self.used_blobs()
            for digest, size in self.blobs().items():
                if digest not in used:
                    self.remove_blob(digest)
                    freed["blobs"] += 1
                    freed["bytes"] += size
            for path, size in self.ingest_leftovers().items():
                _unlink(path)
                freed["bytes"] += size
            if snapshots is not None:
                keep = set()
                for record in self.images():
                    keep.update(record.chain_ids)
                removed, size = snapshots.prune(keep)
                freed["snapshots"] += removed
                freed["bytes"] += size
            self._sync_dir(self.blob_dir)
        return freed

    def df(self, snapshots=None):
        """Space accounting: {"images", "blobs": {count, bytes, reclaimable},
        "snapshots": {...}, "ingest": bytes, "reclaimable": bytes}."""
        blobs = self.blobs()
        used = self.used_blobs()
        unused = sum(size for digest, size in blobs.items() if digest not in used)
        ingest = sum(self.ingest_leftovers().values())
        result = {"root": self.root, "images": len(self.images()),
                  "blobs": {"count": len(blobs), "bytes": sum(blobs.values()),
                            "reclaimable": unused},
                  "ingest": ingest}
        reclaimable = unused + ingest
        if snapshots is not None:
            keep = set()
            for record in self.images():
                keep.update(record.chain_ids)
            usage = snapshots.usage(keep)
            result["snapshots"] = usage
            reclaimable += usage["reclaimable"]
        result["reclaimable"] = reclaimable
        return result

    def _sync_dir(self, path):
        if self.sync:
            fsync_dir(path)


def _arch(arch):
    """edgert's name for ``arch`` (any alias), or this machine's."""
    from .manifest import arch_name, host_arch
    return arch_name(arch) if arch else host_arch(os.uname().machine)


def _hex(digest):
    algorithm, _, hexpart = _digest.check(digest).partition(":")
    if algorithm != "sha256":
        raise ConfigError("digest %r: the store keeps sha256 content only" % digest)
    return hexpart


def _unlink(path):
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
