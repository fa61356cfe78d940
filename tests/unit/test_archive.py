"""Offline import: oci: layout directories, oci-archive: and docker-archive: tars."""

import io
import json
import os
import shutil
import tarfile

import pytest

from edgert.errors import ConfigError, NotFound
from edgert.image.archive import import_image
from edgert.image.cli import main as image_main
from edgert.image.digest import DigestMismatch
from edgert.image.manifest import host_arch
from edgert.image.pull import unpack
from edgert.image.snapshot import Snapshotter
from edgert.image.store import Store
from tests.helpers.ociarchive import DEFAULT_REF, write_docker_archive, write_oci_archive

# The helpers build images for the machine they run on (under qemu-user: the emulated one).
ARCH = host_arch(os.uname().machine)

BUSYBOX = "/bin/busybox"


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "src"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    if os.path.exists(BUSYBOX):
        shutil.copy(BUSYBOX, root / "bin" / "busybox")
    else:
        (root / "bin" / "busybox").write_bytes(b"\x7fELF fake")
    os.chmod(root / "bin" / "busybox", 0o755)
    os.symlink("busybox", root / "bin" / "sh")
    (root / "etc" / "hostname").write_text("edge\n")
    return root


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "store"), sync=False)


def check_rootfs(dest):
    assert os.readlink(os.path.join(dest, "bin", "sh")) == "busybox"
    with open(os.path.join(dest, "etc", "hostname")) as f:
        assert f.read() == "edge\n"
    assert os.access(os.path.join(dest, "bin", "busybox"), os.X_OK)


def test_oci_archive(rootfs, store, tmp_path):
    path = str(tmp_path / "img.tar")
    digest = write_oci_archive(str(rootfs), path)
    snaps = Snapshotter(store.root, sync=False)
    record = import_image(store, "oci-archive:" + path, ARCH, snaps)
    assert record.digest == digest and record.name == "localhost/edgert/busybox:latest"
    assert snaps.exists(record.top_chain_id)
    assert store.ingest_leftovers() == {}
    unpack(store, record.name, str(tmp_path / "out"), snaps)
    check_rootfs(str(tmp_path / "out"))
    again = import_image(store, "oci-archive:%s:%s" % (path, DEFAULT_REF), ARCH, snaps)
    assert again.digest == digest


def test_oci_layout_directory(rootfs, store, tmp_path):
    path = str(tmp_path / "img.tar")
    digest = write_oci_archive(str(rootfs), path, ref="v1")
    layout = tmp_path / "layout"
    with tarfile.open(path) as tar:
        tar.extractall(layout)
    record = import_image(store, "oci:%s:v1" % layout, ARCH)
    assert record.digest == digest and record.name == "oci:%s:v1" % layout
    assert import_image(store, "oci:%s" % layout, ARCH, name="mine:1").name == "mine:1"
    with pytest.raises(NotFound, match="has: v1"):
        import_image(store, "oci:%s:v2" % layout, ARCH)
    other = "arm64" if ARCH != "arm64" else "amd64"
    with pytest.raises(NotFound, match=r"no linux/\S+ variant"):
        import_image(store, "oci:%s:v1" % layout, other)
    unpack(store, "mine:1", str(tmp_path / "out"))
    check_rootfs(str(tmp_path / "out"))
    # a corrupt blob is refused and nothing of it is stored
    for name in os.listdir(layout / "blobs" / "sha256"):
        blob = layout / "blobs" / "sha256" / name
        if blob.read_bytes()[:2] == b"\x1f\x8b":
            blob.write_bytes(blob.read_bytes()[:-3] + b"abc")
            other = Store(str(tmp_path / "other"), sync=False)
            with pytest.raises(DigestMismatch):
                import_image(other, "oci:%s:v1" % layout, ARCH)
            assert other.images() == [] and not other.has_blob("sha256:" + name)


def test_docker_archive(rootfs, store, tmp_path):
    path = str(tmp_path / "docker.tar")
    write_docker_archive(str(rootfs), path, ref="example.com/team/app:7")
    snaps = Snapshotter(store.root, sync=False)
    record = import_image(store, "docker-archive:" + path, ARCH, snaps)
    assert record.name == "example.com/team/app:7"
    assert record.layers[0]["media_type"] == "application/vnd.oci.image.layer.v1.tar"
    named = import_image(store, "docker-archive:%s:example.com/team/app:7" % path, ARCH)
    assert named.digest == record.digest  # the manifest edgert builds is deterministic
    with pytest.raises(NotFound, match="no image named"):
        import_image(store, "docker-archive:%s:example.com/team/app:8" % path, ARCH)
    unpack(store, record.name, str(tmp_path / "out"), snaps)
    check_rootfs(str(tmp_path / "out"))
    assert store.ingest_leftovers() == {}


def test_cli_import(rootfs, tmp_path):
    path = str(tmp_path / "img.tar")
    digest = write_oci_archive(str(rootfs), path)
    out, err = io.StringIO(), io.StringIO()
    code = image_main(["--root", str(tmp_path / "s"), "import", "-q", "oci-archive:" + path],
                      out, err)
    assert code == 0, err.getvalue()
    assert out.getvalue().strip() == digest


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bad_archives(store, tmp_path):
    evil = str(tmp_path / "evil.tar")
    _tar(evil, [("../escape", b"x")])
    with pytest.raises(ConfigError, match="escapes"):
        import_image(store, "oci-archive:" + evil, ARCH)
    assert not (tmp_path / "escape").exists()
    with pytest.raises(NotFound, match="no such archive"):
        import_image(store, "oci-archive:" + str(tmp_path / "missing.tar"), ARCH)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x1f\x8b" + b"\0" * 100)
    with pytest.raises(ConfigError, match="gzip"):
        import_image(store, "docker-archive:" + str(garbage), ARCH)
    empty = str(tmp_path / "empty.tar")
    _tar(empty, [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')])
    with pytest.raises(NotFound, match="index.json"):
        import_image(store, "oci-archive:" + empty, ARCH)
    dup = str(tmp_path / "dup.tar")
    _tar(dup, [("manifest.json", b"[]"), ("manifest.json", b"[]")])
    with pytest.raises(ConfigError, match="duplicate"):
        import_image(store, "docker-archive:" + dup, ARCH)
    bad_manifest = str(tmp_path / "badm.tar")
    _tar(bad_manifest, [("manifest.json", json.dumps([{"Config": "c.json",
                                                       "Layers": []}]).encode())])
    with pytest.raises(NotFound, match="c.json"):
        import_image(store, "docker-archive:" + bad_manifest, ARCH)
    with pytest.raises(ConfigError, match="not a local transport"):
        import_image(store, "docker://example.com/x:1", ARCH)
    assert store.images() == [] and os.listdir(store.ingest_dir) == []


def test_cli_usage(tmp_path):
    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        return image_main(list(argv), out, err), out.getvalue(), err.getvalue()

    assert run()[0] == 2
    code, out, _ = run("--help")
    assert code == 0 and "unpack IMAGE DEST" in out
    code, _, err = run("--root", str(tmp_path), "frobnicate")
    assert code == 2 and "frobnicate" in err
    code, _, err = run("--root", str(tmp_path), "unpack", "only-one")
    assert code == 2 and "usage" in err
    code, _, err = run("--root", str(tmp_path), "pull", "--tls-verify=maybe", "x")
    assert code == 2 and "--tls-verify" in err
    code, _, err = run("--root", str(tmp_path), "unpack", "missing:1", str(tmp_path / "d"))
    assert code == 1 and "not in the store" in err


def test_cli_one_name_for_two_arches(rootfs, tmp_path):
    """A build host seeds the same name for another machine next to its own (no registry)."""
    root = str(tmp_path / "s")
    other = "arm64" if ARCH != "arm64" else "amd64"

    def cli(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = image_main(["--root", root] + list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    digests = {}
    for arch in (ARCH, other):
        path = str(tmp_path / ("%s.tar" % arch))
        digests[arch] = write_oci_archive(str(rootfs), path, arch=arch)
        code, out, err = cli("import", "-q", "--arch", arch, "oci-archive:" + path)
        assert code == 0, err
    name = "localhost/edgert/busybox:latest"
    code, out, _ = cli("ls")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:2] == ["NAME", "ARCH"]
    assert sorted((r[0], r[1]) for r in rows[1:]) == sorted([(name, ARCH), (name, other)])
    assert json.loads(cli("inspect", name)[1])["digest"] == digests[ARCH]
    assert json.loads(cli("inspect", name, "--arch", other)[1])["digest"] == digests[other]
    assert cli("unpack", name, str(tmp_path / "o"), "--arch", other)[0] == 0
    check_rootfs(str(tmp_path / "o"))
    missing = next(a for a in ("ppc64le", "armhf", "amd64") if a not in (ARCH, other))
    code, _, err = cli("inspect", name, "--arch", missing)
    assert code == 1 and "for %s, not %s: choose one with --arch" % (", ".join(
        sorted([ARCH, other])), missing) in err
    code, out, _ = cli("rm", name)
    assert code == 0 and out == "removed %s (%s)\n" % (name, ARCH)
    code, _, err = cli("unpack", name, str(tmp_path / "x"))
    assert code == 1 and "for %s, not %s" % (other, ARCH) in err
    assert not os.path.exists(str(tmp_path / "x"))
    assert cli("rm", name, "--arch", other)[0] == 0
    assert cli("ls", "--json")[1].strip() == "[]"
