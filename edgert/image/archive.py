"""Offline image import: ``oci:DIR[:TAG]``, ``oci-archive:TAR[:TAG]``, ``docker-archive:TAR``.

An OCI layout directory is read in place: index.json names the manifests (by the
``org.opencontainers.image.ref.name`` annotation), blobs/ALG/HEX holds the content, and every
blob is verified against its digest as it is copied into the store.

An archive is a tar, read once as a stream: its regular files are written below a private
directory in the store's ingest area (names checked: no "..", no absolute paths, nothing but
regular files and directories is created; a symlink member becomes an alias of the file it
names), then imported from there. Layers move into the store by rename, so the archive's
content is written to flash once.

``docker save`` archives carry manifest.json ([{"Config", "RepoTags", "Layers"}]) instead of a
manifest: edgert builds an OCI manifest for it, so the stored image has a digest like any.
"""

import os

from .. import jsonfast
from ..errors import ConfigError, NotFound
from . import digest as _digest
from . import manifest as _manifest
from . import reference as _reference

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
MAX_ARCHIVE_ENTRIES = 100000
MAX_JSON = 4 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def import_image(store, ref, arch=None, snapshots=None, progress=None, limits=None,
                 policy=None, name=None):
    """Imports the local image ``ref`` (text or Reference); returns the ImageRecord.

    ``name`` overrides the stored name (by default: the name the archive gives the image,
    else the reference text)."""
    from .pull import resolve_arch
    ref = _reference.parse(ref) if isinstance(ref, str) else ref
    arch = resolve_arch(arch)
    if ref.transport == "oci":
        if not os.path.isdir(ref.path):
            raise NotFound("%s: no such OCI layout directory" % ref)
        return _import_layout(store, ref.path, ref, arch, snapshots, progress, limits, policy,
                              name, in_store=False)
    if ref.transport not in ("oci-archive", "docker-archive"):
        raise ConfigError("image reference %r: not a local transport (oci:, oci-archive:, "
                          "docker-archive:)" % str(ref))
    with store.adding():
        workdir = os.path.join(store.ingest_dir, "archive-%d" % os.getpid())
        _remove_tree(workdir)
        os.mkdir(workdir, 0o700)
        try:
            aliases = _extract(ref.path, workdir, str(ref))
            if ref.transport == "oci-archive":
                return _import_layout(store, workdir, ref, arch, snapshots, progress, limits,
                                      policy, name, in_store=True)
            return _import_docker(store, workdir, aliases, ref, arch, snapshots, progress,
                                  limits, policy, name)
        finally:
            _remove_tree(workdir)


# -- OCI layouts ---------------------------------------------------------------------------

def _import_layout(store, layout, ref, arch, snapshots, progress, limits, policy, name,
                   in_store):
    image = str(ref)
    try:
        version = jsonfast.loads(_read_small(os.path.join(layout, "oci-layout"), image))
        if version.get("imageLayoutVersion") != "1.0.0":
            raise ConfigError("%s: oci-layout: unsupported imageLayoutVersion %r"
                              % (image, version.get("imageLayoutVersion")))
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise ConfigError("%s: oci-layout is not a JSON object" % image) from None
    index = _manifest.parse(_read_small(os.path.join(layout, "index.json"), image),
                            name="%s: index.json" % image)
    if index.kind != "index":
        raise ConfigError("%s: index.json is not an image index" % image)
    entry = _choose_entry(index, ref.tag, image)
    stored_name = name or _name_of(entry) or image
    descriptor, depth = entry, 0
    data = _read_blob(layout, descriptor, image)
    doc = _manifest.parse(data, expected=descriptor.media_type,
                          name="%s: manifest %s" % (image, descriptor.digest))
    while doc.kind == "index":
        depth += 1
        _manifest.check_depth(depth, image)
        descriptor = _manifest.select(doc, arch, image)
        data = _read_blob(layout, descriptor, image)
        doc = _manifest.parse(data, expected=descriptor.media_type,
                              name="%s: manifest %s" % (image, descriptor.digest))
    config_bytes = _read_blob(layout, doc.config, image, _manifest.MAX_CONFIG_SIZE)

    layer_blobs = {}
    for layer in doc.layers:
        path = _blob_path(layout, layer.digest, image)
        if in_store:
            layer_blobs[layer.digest] = _mover(store, path, layer.digest, layer.size, image)
        else:
            layer_blobs[layer.digest] = _streamer(store, path, layer.digest, layer.size, image)
    from .pull import store_image
    return store_image(store, stored_name, data, descriptor.digest, config_bytes, layer_blobs,
                       arch, image, snapshots, progress, limits, policy)


def _streamer(store, path, digest, size, image):
    """Copies a blob file of a layout into the store, verifying it."""
    def put():
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise NotFound("%s: layer blob %s is missing" % (image, digest)) from None
        with f:
            store.ingest_stream(f.read, digest, size, "%s: layer %s" % (image, digest))
    return put


def _mover(store, path, digest, size, image):
    """Moves a blob file of the ingest area into the store once it is verified."""
    def put():
        verifier = _digest.Verifier(digest, size, "%s: layer %s" % (image, digest))
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise NotFound("%s: layer blob %s is missing" % (image, digest)) from None
        with f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                verifier.update(chunk)
        verifier.finish()
        os.rename(path, store.ingest_path(digest))
        store.commit_ingested(digest)
    return put


def _choose_entry(index, tag, image):
    if tag:
        found = [e for e in index.manifests if e.annotations.get(REF_NAME) == tag]
        if not found:
            raise NotFound("%s: no image tagged %r (has: %s)" % (image, tag, _tags(index)))
        return found[0]
    if len(index.manifests) == 1:
        return index.manifests[0]
    if not index.manifests:
        raise NotFound("%s: the layout holds no image" % image)
    raise ConfigError("%s: the layout holds %d images: add :TAG (has: %s)"
                      % (image, len(index.manifests), _tags(index)))


def _tags(index):
    return ", ".join(e.annotations.get(REF_NAME, "untagged " + e.digest)
                     for e in index.manifests) or "nothing"


def _name_of(entry):
    for key in (CONTAINERD_NAME, REF_NAME):
        text = entry.annotations.get(key)
        if text and ("/" in text or ":" in text):
            try:
                return str(_reference.parse(text))
            except ConfigError:
                continue
    return None


def _blob_path(layout, digest, image):
    algorithm, _, hexpart = _digest.check(digest, "%s: blob" % image).partition(":")
    return os.path.join(layout, "blobs", algorithm, hexpart)


def _read_blob(layout, descriptor, image, limit=_manifest.MAX_MANIFEST_SIZE):
    if descriptor.size > limit:
        raise ConfigError("%s: blob %s: %d bytes is over the limit of %d"
                          % (image, descriptor.digest, descriptor.size, limit))
    data = _read_small(_blob_path(layout, descriptor.digest, image), image, limit)
    verifier = _digest.Verifier(descriptor.digest, descriptor.size,
                                "%s: blob %s" % (image, descriptor.digest))
    verifier.update(data)
    verifier.finish()
    return data


def _read_small(path, image, limit=MAX_JSON):
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise NotFound("%s: %s is missing" % (image, os.path.basename(path))) from None
    if len(data) > limit:
        raise ConfigError("%s: %s is over the %d-byte limit" % (image, os.path.basename(path),
                                                                 limit))
    return data


# -- docker save archives -------------------------------------------------------------------

def _import_docker(store, workdir, aliases, ref, arch, snapshots, progress, limits, policy,
                   name):
    image = str(ref)
    try:
        entries = jsonfast.loads(_read_small(os.path.join(workdir, "manifest.json"), image))
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("%s: manifest.json is not JSON" % image) from None
    if not isinstance(entries, list) or not entries:
        raise ConfigError("%s: manifest.json must be a non-empty list" % image)
    entry = _docker_entry(entries, ref, image)
    config_path = _member(workdir, aliases, entry.get("Config"), image, "Config")
    config_bytes = _read_small(config_path, image, _manifest.MAX_CONFIG_SIZE)
    layer_names = entry.get("Layers")
    if not isinstance(layer_names, list):
        raise ConfigError("%s: manifest.json: Layers must be a list" % image)
    layers, layer_blobs = [], {}
    for layer_name in layer_names:
        path = _member(workdir, aliases, layer_name, image, "Layers")
        digest, size, magic = _hash_file(path)
        media_type = ("application/vnd.oci.image.layer.v1.tar+gzip" if magic[:2] == _GZIP_MAGIC
                      else "application/vnd.oci.image.layer.v1.tar+zstd"
                      if magic == _ZSTD_MAGIC else "application/vnd.oci.image.layer.v1.tar")
        layers.append({"mediaType": media_type, "digest": digest, "size": size})
        layer_blobs[digest] = _mover(store, path, digest, size, image)
    manifest_bytes = jsonfast.dumps({
        "schemaVersion": 2, "mediaType": _manifest.OCI_MANIFEST,
        "config": {"mediaType": _manifest.OCI_CONFIG, "digest": _digest.of(config_bytes),
                   "size": len(config_bytes)},
        "layers": layers}).encode()
    stored_name = name
    tags = entry.get("RepoTags") or []
    if not stored_name and ref.repository:
        stored_name = "%s/%s:%s" % (ref.host, ref.repository, ref.tag)
    if not stored_name and tags and isinstance(tags[0], str):
        try:
            stored_name = str(_reference.parse(tags[0]))
        except ConfigError:
            stored_name = None
    from .pull import store_image
    return store_image(store, stored_name or image, manifest_bytes, _digest.of(manifest_bytes),
                       config_bytes, layer_blobs, arch, image, snapshots, progress, limits,
                       policy)


def _docker_entry(entries, ref, image):
    if ref.repository:
        wanted = "%s/%s:%s" % (ref.host, ref.repository, ref.tag)
        for entry in entries:
            for tag in (entry.get("RepoTags") or []) if isinstance(entry, dict) else []:
                try:
                    if str(_reference.parse(tag)) == wanted:
                        return entry
                except ConfigError:
                    continue
        raise NotFound("%s: no image named %s in the archive" % (image, wanted))
    if len(entries) > 1:
        raise ConfigError("%s: the archive holds %d images: add :NAME:TAG" % (image, len(entries)))
    if not isinstance(entries[0], dict):
        raise ConfigError("%s: manifest.json entries must be objects" % image)
    return entries[0]


def _member(workdir, aliases, name, image, field):
    if not isinstance(name, str) or not name:
        raise ConfigError("%s: manifest.json: %s must name a file in the archive" % (image, field))
    clean = _clean(name.encode(), image)
    clean = aliases.get(clean, clean)
    path = os.path.join(workdir, os.fsdecode(clean))
    if not os.path.isfile(path):
        raise NotFound("%s: %s is not in the archive" % (image, name))
    return path


def _hash_file(path):
    import hashlib
    h = hashlib.sha256()
    size = 0
    magic = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            if not size:
                magic = chunk[:4]
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size, magic


# -- reading archives ----------------------------------------------------------------------

def _extract(archive, workdir, image):
    """Writes the regular files of tar ``archive`` below ``workdir``; returns
    {alias: target} for its symlink and hardlink members (bytes relative paths)."""
    from .tarstream import DIRECTORY, HARDLINK, REGULAR, REGULAR_OLD, SYMLINK, TarReader
    from .unpacklimits import LayerError, UnpackLimits
    from .unpackstream import FileSource
    try:
        f = open(archive, "rb", buffering=0)
    except FileNotFoundError:
        raise NotFound("%s: no such archive" % image) from None
    except IsADirectoryError:
        raise ConfigError("%s: is a directory (use oci:%s for a layout directory)"
                          % (image, archive)) from None
    aliases = {}
    with f:
        if f.read(2) == _GZIP_MAGIC:
            raise ConfigError("%s: the archive is gzip-compressed: gunzip it first" % image)
        f.seek(0)
        reader = TarReader(FileSource(f), UnpackLimits(max_layer_bytes=1 << 50,
                                                       max_file_bytes=1 << 50))
        count = 0
        try:
            while True:
                entry = reader.next_entry()
                if entry is None:
                    break
                count += 1
                if count > MAX_ARCHIVE_ENTRIES:
                    raise ConfigError("%s: more than %d entries" % (image, MAX_ARCHIVE_ENTRIES))
                name = _clean(entry.name, image)
                if not name:
                    continue
                if entry.type == DIRECTORY:
                    _make_dirs(workdir, name)
                elif entry.type in (REGULAR, REGULAR_OLD):
                    head, _, base = name.rpartition(b"/")
                    if head:
                        _make_dirs(workdir, head)
                    path = os.path.join(os.fsencode(workdir), name)
                    if os.path.lexists(path):
                        raise ConfigError("%s: duplicate entry %r" % (image, os.fsdecode(name)))
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o600)
                    try:
                        reader.copy_data(fd, os.write)
                    finally:
                        os.close(fd)
                elif entry.type in (SYMLINK, HARDLINK):
                    target = entry.linkname
                    if entry.type == SYMLINK:
                        head = name.rpartition(b"/")[0]
                        target = (head + b"/" + target) if head and not target.startswith(
                            b"/") else target
                    aliases[name] = _clean(target, image)
        except LayerError as e:
            raise ConfigError("%s: not a valid tar archive: %s" % (image, e)) from None
    return aliases


def _clean(name, image):
    parts = []
    for part in name.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if not parts:
                raise ConfigError("%s: archive entry %r escapes the archive" % (image, name))
            parts.pop()
            continue
        parts.append(part)
    return b"/".join(parts)


def _make_dirs(workdir, rel):
    path = os.fsencode(workdir)
    for part in rel.split(b"/"):
        path = path + b"/" + part
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if os.path.islink(path) or not os.path.isdir(path):
                raise ConfigError("archive entry %r is both a file and a directory"
                                  % os.fsdecode(rel)) from None


def _remove_tree(path):
    from .unpackfs import remove_tree_at
    parent, name = os.path.split(path)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree_at(fd, os.fsencode(name))
    finally:
        os.close(fd)
