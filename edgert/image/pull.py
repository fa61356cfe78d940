"""The image library API: pull, import, unpack into snapshots, flatten, remove, prune.

The CLI (cli.py) and the daemon call these; each takes a Store and, when snapshots are
wanted, a Snapshotter on the same root. A pull adds content under the store's shared lock,
so several pulls may run at once while rm and prune (exclusive) wait.

A pull: resolve the reference to one manifest for the architecture, store manifest and
config, fetch every layer blob the store lacks (a layer whose snapshot already exists is
not fetched either: unchanged layers are never downloaded again), extract each layer once
into its chain-ID snapshot, then write the image record (last, so a record implies
complete content). Records are per (name, architecture): pulling a name for another
architecture adds a record beside the first.

``unpack`` flattens the snapshots into a directory (a copy: the layers are not extracted a
second time) and extracts the layer blobs only when the snapshots are missing.
"""

import os
import time

from ..errors import EdgertError, NotFound
from . import manifest as _manifest
from . import reference as _reference
from .store import ImageRecord


def resolve_arch(arch=None):
    """edgert's name for ``arch`` (any alias), or this machine's."""
    if arch:
        return _manifest.arch_name(arch)
    return _manifest.host_arch(os.uname().machine)


def pull(store, reference, arch=None, creds=None, authfile=None, tls_verify=True,
         cert_dir=None, snapshots=None, progress=None, limits=None, policy=None,
         registry=None, clock_synced=None):
    """Pulls ``reference`` (text or Reference) into ``store``; returns the ImageRecord.

    Local transports (oci:, oci-archive:, docker-archive:) are imported instead.
    ``creds`` is "USER:PASS"; ``authfile`` a docker/podman auth.json. ``snapshots``: also
    unpack into it. ``registry``: a ready registry.Registry (tests, the daemon's pool).
    ``clock_synced``: the daemon's NTP signal, for TLS error messages (registry.Registry).
    """
    ref = _reference.parse(reference) if isinstance(reference, str) else reference
    if ref.transport != "docker":
        from .archive import import_image
        return import_image(store, ref, arch, snapshots, progress, limits, policy)
    arch = resolve_arch(arch)
    from .registry import Registry, load_credentials
    own = registry is None
    if own:
        registry = Registry(ref.api_host, load_credentials(ref.host, ref.repository, creds,
                                                           authfile),
                            tls_verify=tls_verify, cert_dir=cert_dir,
                            clock_synced=clock_synced)
    try:
        with store.adding():
            resolved = registry.resolve(ref.repository, ref.ref, arch)
            _event(progress, "resolved", image=str(ref), digest=resolved.digest, arch=arch,
                   message="%s: %s (%s)" % (ref, resolved.digest, arch))
            manifest = resolved.manifest
            check_decoders(manifest.layers, ref)
            store.write_blob(resolved.manifest_bytes, resolved.digest)
            store.write_blob(resolved.config_bytes, manifest.config.digest,
                             manifest.config.size)
            chain = resolved.config.chain_ids
            for layer, chain_id in zip(manifest.layers, chain):
                if store.has_blob(layer.digest) or (
                        snapshots is not None and snapshots.exists(chain_id)):
                    _event(progress, "skipped", digest=layer.digest,
                           message="%s: already present" % _short(layer.digest))
                    continue
                _fetch(store, registry, ref.repository, layer, progress)
            record = _record(str(ref), resolved.digest, manifest, resolved.config, arch,
                             media_type=manifest.media_type, index_digest=resolved.index_digest)
            if snapshots is not None:
                unpack_snapshots(store, snapshots, record, limits, policy, progress)
            store.put_image(record)
            if snapshots is not None:
                _drop_layers(store, record)
    finally:
        if own:
            registry.close()
    _event(progress, "done", image=record.name, digest=record.digest,
           message="%s: pulled %s" % (record.name, record.digest))
    return record


def _fetch(store, registry, repository, layer, progress):
    report = progress.layer(layer.digest, layer.size) if progress is not None else None
    with store.blob_lock(layer.digest):
        if store.has_blob(layer.digest):
            return  # another pull fetched it while we waited for the lock
        try:
            registry.fetch_blob(repository, layer.digest, layer.size,
                                store.ingest_path(layer.digest), report)
            store.commit_ingested(layer.digest)
        except OSError as e:
            if e.errno is None:
                raise
            raise OSError(e.errno, "download layer %s of %s: %s" % (
                _short(layer.digest), repository, e.strerror), store.root) from e
    if report is not None:
        report(layer.size)
        report.finish()


def _record(name, digest, manifest, config, arch, source=None, media_type=None,
            index_digest=None):
    layers = [{"digest": layer.digest, "size": layer.size, "media_type": layer.media_type,
               "diff_id": diff_id} for layer, diff_id in zip(manifest.layers, config.diff_ids)]
    return ImageRecord(name, digest, manifest.config.digest, layers, config.chain_ids, arch,
                       source=source or name, media_type=media_type, index_digest=index_digest,
                       created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def unpack_snapshots(store, snapshots, record, limits=None, policy=None, progress=None):
    """Extracts each layer of ``record`` the snapshotter lacks into its chain snapshot."""
    parent = None
    for layer, chain_id in zip(record.layers, record.chain_ids):
        if not snapshots.exists(chain_id):
            if not store.has_blob(layer["digest"]):
                raise NotFound("image %s: layer %s is neither unpacked nor in the store: pull "
                               "the image again" % (record.name, layer["digest"]))
            snapshots.commit_blob(chain_id, parent, store.blob_path(layer["digest"]),
                                  layer["media_type"], layer["diff_id"], limits, policy)
            _event(progress, "unpacked", digest=layer["digest"], chain_id=chain_id,
                   message="%s: unpacked" % _short(layer["digest"]))
        parent = chain_id


def _drop_layers(store, record):
    """With drop_compressed_after_unpack, removes layer blobs now held as snapshots
    (call only after unpack_snapshots)."""
    if not store.drop_compressed_after_unpack or record.dropped:
        return
    record.dropped = True
    store.put_image(record)
    used = store.used_blobs()
    for layer in record.layers:
        if layer["digest"] not in used:
            store.remove_blob(layer["digest"])


def store_image(store, name, manifest_bytes, manifest_digest, config_bytes, layer_blobs, arch,
                source=None, snapshots=None, progress=None, limits=None, policy=None):
    """Adds an image whose blobs are local (archive.py): ``layer_blobs`` maps each layer
    digest to ``put()``, which places that verified blob in the store; returns the
    ImageRecord."""
    doc = _manifest.parse(manifest_bytes, name="image %s: manifest" % name)
    if doc.kind != "manifest":
        raise EdgertError("image %s: expected a manifest, found an index" % name)
    config = _manifest.parse_config(config_bytes, len(doc.layers),
                                    name="image %s: config" % name)
    _manifest.check_config_platform(config, arch, name)
    check_decoders(doc.layers, name)
    with store.adding():
        store.write_blob(manifest_bytes, manifest_digest)
        store.write_blob(config_bytes, doc.config.digest, doc.config.size)
        for layer, chain_id in zip(doc.layers, config.chain_ids):
            if store.has_blob(layer.digest) or (snapshots is not None
                                                and snapshots.exists(chain_id)):
                continue
            layer_blobs[layer.digest]()
        record = _record(name, manifest_digest, doc, config, arch, source=source,
                         media_type=doc.media_type)
        if snapshots is not None:
            unpack_snapshots(store, snapshots, record, limits, policy, progress)
        store.put_image(record)
        if snapshots is not None:
            _drop_layers(store, record)
    _event(progress, "done", image=name, digest=manifest_digest,
           message="%s: imported %s" % (name, manifest_digest))
    return record


def unpack(store, image, dest, snapshots=None, limits=None, policy=None, arch=None):
    """Writes the flattened rootfs of ``image`` (a name or digest; ``arch``: see
    Store.get_image) to the new directory ``dest``, atomically.

    From the snapshots when the image's top snapshot is committed (a pull extracted every
    layer once already: copying is cheaper than extracting again; None returned), else from
    the layer blobs ([LayerStats] returned). Both give the same tree (tests compare them).
    Holds the store's shared lock, so a prune cannot remove what is being read.
    """
    record = store.get_image(image, arch)
    with store.adding():
        if (snapshots is not None and record.chain_ids
                and snapshots.exists(record.top_chain_id)):
            snapshots.flatten(record.top_chain_id, dest)
            return None
        if all(store.has_blob(layer["digest"]) for layer in record.layers):
            from .unpack import unpack_layers
            return unpack_layers([(store.blob_path(layer["digest"]), layer["media_type"],
                                   layer["diff_id"]) for layer in record.layers],
                                 dest, limits, policy)
    raise NotFound("image %s (%s): layers are missing from the store: pull it again"
                   % (record.name, record.arch))


def remove(store, names, arch=None):
    """Removes the image records ``names`` for ``arch`` (see Store.get_image); their
    content goes with the next prune."""
    with store.deleting():
        return [store.remove_image(name, arch) for name in names]


def check_decoders(layers, image):
    """Fails before anything is fetched when a layer's compression cannot be decoded here."""
    from .unpackstream import compression_of, require_zstd
    for layer in layers:
        if compression_of(layer.media_type) == "zstd":
            require_zstd(layer.digest, image)


def _short(digest):
    return digest.partition(":")[2][:12]


def _event(progress, kind, **fields):
    if progress is not None:
        progress.event(kind, **fields)
