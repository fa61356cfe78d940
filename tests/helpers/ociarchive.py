"""Offline image archives from a rootfs directory, for engines' import commands.

``write_oci_archive`` writes an OCI image layout as a tar (what ``podman load``
calls oci-archive and ``ctr image import`` reads); ``write_docker_archive``
writes the ``docker save`` layout. Both hold one layer with every file owned
by root, and an image config carrying Entrypoint/Cmd/Env. The layer is built
in memory: meant for small test rootfs trees.
"""

import gzip
import hashlib
import io
import json
import os
import platform
import tarfile
import time

DEFAULT_REF = "localhost/edgert/busybox:latest"
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)

_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

_MACHINE_TO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm",
                    "ppc64le": "ppc64le", "i686": "386", "riscv64": "riscv64"}


def host_arch():
    """The OCI architecture name of this machine."""
    machine = platform.machine()
    return _MACHINE_TO_ARCH.get(machine, machine)


def layer_tar(rootfs):
    """An uncompressed layer tar of ``rootfs``: sorted, relative names, owned by root."""
    def as_root(info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for parent, dirs, files in os.walk(rootfs):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(parent, name)
                tar.add(path, arcname=os.path.relpath(path, rootfs), recursive=False,
                        filter=as_root)
    return buf.getvalue()


def image_config(diff_id, entrypoint=(), cmd=("/bin/sh",), env=DEFAULT_ENV, workdir="/",
                 arch=None):
    """The image config JSON document (as a dict) for a one-layer image. ``arch`` may be
    edgert's name for 32-bit ARM, "armhf": OCI calls it arm, variant v7."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config = {"Env": list(env), "Cmd": list(cmd), "WorkingDir": workdir}
    if entrypoint:
        config["Entrypoint"] = list(entrypoint)
    doc = {
        "created": created,
        "architecture": "arm" if arch == "armhf" else (arch or host_arch()),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "tests/helpers/ociarchive.py"}],
    }
    if doc["architecture"] == "arm":
        doc["variant"] = "v7"
    return doc


def write_oci_archive(rootfs, path, ref=DEFAULT_REF, **config_args):
    """Writes an oci-archive tar of ``rootfs`` tagged ``ref``; returns the manifest digest.

    ``config_args`` go to ``image_config`` (entrypoint, cmd, env, workdir, arch).
    """
    layer = layer_tar(rootfs)
    layer_gz = gzip.compress(layer, mtime=0)
    config = image_config(_digest(layer), **config_args)
    config_blob = _json_bytes(config)
    manifest_blob = _json_bytes({
        "schemaVersion": 2,
        "mediaType": _OCI_MANIFEST,
        "config": _descriptor(_OCI_CONFIG, config_blob),
        "layers": [_descriptor(_OCI_LAYER_GZIP, layer_gz)],
    })
    manifest = _descriptor(_OCI_MANIFEST, manifest_blob)
    # ref.name is what podman names the image; io.containerd.image.name is what ctr does.
    manifest["annotations"] = {"org.opencontainers.image.ref.name": ref,
                               "io.containerd.image.name": ref}
    manifest["platform"] = {"architecture": config["architecture"], "os": "linux"}
    if config.get("variant"):
        manifest["platform"]["variant"] = config["variant"]
    index = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": [manifest]}
    with tarfile.open(path, "w") as tar:
        _add_bytes(tar, "oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
        _add_bytes(tar, "index.json", _json_bytes(index))
        for name in ("blobs", "blobs/sha256"):
            _add_dir(tar, name)
        for blob in (config_blob, layer_gz, manifest_blob):
            _add_bytes(tar, "blobs/sha256/" + _digest(blob).split(":")[1], blob)
    return manifest["digest"]


def write_docker_archive(rootfs, path, ref=DEFAULT_REF, **config_args):
    """Writes a ``docker save`` style tar of ``rootfs`` tagged ``ref``; returns the image id."""
    layer = layer_tar(rootfs)
    layer_id = _digest(layer).split(":")[1]
    config_blob = _json_bytes(image_config(_digest(layer), **config_args))
    config_name = _digest(config_blob).split(":")[1] + ".json"
    manifest = [{"Config": config_name, "RepoTags": [ref],
                 "Layers": [layer_id + "/layer.tar"]}]
    with tarfile.open(path, "w") as tar:
        _add_bytes(tar, config_name, config_blob)
        _add_dir(tar, layer_id)
        _add_bytes(tar, layer_id + "/layer.tar", layer)
        _add_bytes(tar, "manifest.json", _json_bytes(manifest))
    return _digest(config_blob)


def _digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _descriptor(media_type, blob):
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}


def _json_bytes(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar, name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = int(time.time())
    tar.addfile(info)
