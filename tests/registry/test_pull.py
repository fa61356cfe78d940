"""edgert image pull/ls/inspect/rm/prune/df/unpack end to end against a real docker-registry."""

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile

import pytest

from edgert.image import pull as P
from edgert.image.cli import main as image_main
from edgert.image.progress import Progress
from edgert.image.registry import Registry
from edgert.image.snapshot import Snapshotter
from edgert.image.store import Store
from tests.helpers import registry as h

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EDGERT_ARCH = {"amd64": "amd64", "arm64": "arm64", "armhf": "armhf", "ppc64el": "ppc64le"}
# ELF e_machine and EI_DATA (1 little endian) of each arch's busybox
ELF = {"amd64": (62, 1), "arm64": (183, 1), "armhf": (40, 1), "ppc64el": (21, 1)}


def elf_machine(path):
    with open(path, "rb") as f:
        head = f.read(20)
    assert head[:4] == b"\x7fELF"
    return struct.unpack("<H", head[18:20])[0], head[5]


def cli(*argv, root):
    out, err = io.StringIO(), io.StringIO()
    code = image_main(["--root", str(root)] + list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


class CountingRegistry(Registry):
    def __init__(self, host):
        super().__init__(host, tls_verify=False, sleep=lambda s: None)
        self.fetched = []

    def fetch_blob(self, repo, digest, size, dest_path, progress=None):
        self.fetched.append(digest)
        return super().fetch_blob(repo, digest, size, dest_path, progress)


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "store"), sync=False)


@pytest.mark.parametrize("arch", sorted(EDGERT_ARCH))
def test_pull_each_arch_and_unpack_a_busybox_rootfs(plain_registry, busybox_layout, tmp_path,
                                                    arch):
    root = tmp_path / "store"
    code, out, err = cli("pull", "--arch", EDGERT_ARCH[arch], "--tls-verify=false", "--quiet",
                         "%s/busybox:latest" % plain_registry.host, root=root)
    assert code == 0, err
    assert out.strip() == busybox_layout[1][arch]
    assert err == ""
    code, out, err = cli("unpack", "%s/busybox:latest" % plain_registry.host,
                         str(tmp_path / "rootfs"), "--arch", EDGERT_ARCH[arch], root=root)
    assert code == 0, err
    busybox = tmp_path / "rootfs" / "bin" / "busybox"
    assert elf_machine(busybox) == ELF[arch]
    assert os.readlink(tmp_path / "rootfs" / "bin" / "sh") == "busybox"
    assert os.access(busybox, os.X_OK)
    if arch == "amd64":
        run = subprocess.run([str(busybox), "echo", "hi"], capture_output=True)
        assert run.stdout == b"hi\n"
    code, out, err = cli("ls", "--json", root=root)
    (image,) = json.loads(out)
    assert image["arch"] == EDGERT_ARCH[arch] and image["digest"] == busybox_layout[1][arch]


def test_repull_fetches_nothing(plain_registry, store):
    snaps = Snapshotter(store.root, sync=False)
    reg = CountingRegistry(plain_registry.host)
    ref = "%s/busybox:amd64" % plain_registry.host
    first = P.pull(store, ref, "amd64", snapshots=snaps, registry=reg)
    assert len(reg.fetched) == 1
    again = P.pull(store, ref, "amd64", snapshots=snaps, registry=reg)
    assert len(reg.fetched) == 1 and again.digest == first.digest
    assert snaps.exists(first.top_chain_id)


def _upgrade_layout(busybox_layout, dest):
    """An image reusing the amd64 busybox layer with one new layer on top."""
    layout, refs = busybox_layout
    shutil.copytree(layout, dest)
    blobs = os.path.join(dest, "blobs", "sha256")

    def read(d):
        with open(os.path.join(blobs, d[7:]), "rb") as f:
            return f.read()

    def put(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(blobs, d[7:]), "wb") as f:
            f.write(data)
        return {"digest": d, "size": len(data)}

    base = json.loads(read(refs["amd64"]))
    config = json.loads(read(base["config"]["digest"]))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("etc/version")
        data = b"2\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        wh = tarfile.TarInfo("etc/.wh.passwd")
        tar.addfile(wh)
    tar_bytes = raw.getvalue()
    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
    manifest = dict(base)
    manifest["config"] = dict(base["config"], **put(json.dumps(config).encode()))
    manifest["layers"] = base["layers"] + [dict(put(gzip.compress(tar_bytes)),
                                                mediaType=base["layers"][0]["mediaType"])]
    desc = dict(put(json.dumps(manifest).encode()), mediaType=h.OCI_MANIFEST,
                annotations={"org.opencontainers.image.ref.name": "v2"})
    with open(os.path.join(dest, "index.json")) as f:
        index = json.load(f)
    index["manifests"].append(desc)
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump(index, f)
    return desc["digest"], manifest


def test_upgrade_fetches_only_the_new_layer(plain_registry, busybox_layout, store, tmp_path):
    digest, manifest = _upgrade_layout(busybox_layout, str(tmp_path / "layout"))
    h.skopeo_push(str(tmp_path / "layout"), "v2", plain_registry.host, "app:v2")
    snaps = Snapshotter(store.root, sync=False)
    reg = CountingRegistry(plain_registry.host)
    P.pull(store, "%s/busybox:amd64" % plain_registry.host, "amd64", snapshots=snaps,
           registry=reg)
    record = P.pull(store, "%s/app:v2" % plain_registry.host, "amd64", snapshots=snaps,
                    registry=reg)
    assert record.digest == digest
    assert reg.fetched[1:] == [manifest["layers"][1]["digest"]]
    P.unpack(store, record.name, str(tmp_path / "rootfs"), snaps)
    assert (tmp_path / "rootfs" / "etc" / "version").read_text() == "2\n"
    assert not (tmp_path / "rootfs" / "etc" / "passwd").exists()  # whited out
    assert (tmp_path / "rootfs" / "bin" / "busybox").exists()
    mounts = snaps.prepare("ctr", record.top_chain_id)
    assert len(mounts) == 1
    snaps.remove("ctr")


def test_rm_prune_df(plain_registry, tmp_path):
    root = tmp_path / "store"
    host = plain_registry.host
    for tag in ("amd64", "arm64"):
        assert cli("pull", "-q", "--tls-verify=false", "--arch", tag, "%s/busybox:%s"
                   % (host, tag), root=root)[0] == 0
    code, out, _ = cli("df", "--json", root=root)
    usage = json.loads(out)
    assert usage["images"] == 2 and usage["blobs"]["count"] == 6
    assert usage["reclaimable"] == 0 and usage["snapshots"]["count"] == 2
    code, out, _ = cli("ls", root=root)
    assert code == 0 and out.count("busybox") == 2 and "\r" not in out
    code, out, err = cli("rm", "%s/busybox:arm64" % host, root=root)
    assert code == 1 and "for arm64, not amd64: choose one with --arch" in err
    code, out, err = cli("rm", "%s/busybox:arm64" % host, "--arch", "arm64", root=root)
    assert code == 0 and "removed" in out and "(arm64)" in out
    usage = json.loads(cli("df", "--json", root=root)[1])
    assert usage["images"] == 1 and usage["reclaimable"] > 0
    assert usage["snapshots"]["reclaimable"] > 0
    code, out, _ = cli("prune", "--json", root=root)
    freed = json.loads(out)
    assert freed["blobs"] == 3 and freed["snapshots"] == 1 and freed["bytes"] > 0
    usage = json.loads(cli("df", "--json", root=root)[1])
    assert usage["reclaimable"] == 0 and usage["blobs"]["count"] == 3
    code, out, _ = cli("inspect", "%s/busybox:amd64" % host, root=root)
    doc = json.loads(out)
    assert doc["arch"] == "amd64" and doc["image_config"]["architecture"] == "amd64"
    code, _, err = cli("rm", "nope:1", root=root)
    assert code == 1 and "not in the store" in err


def test_one_store_holds_a_name_for_several_arches(plain_registry, busybox_layout, tmp_path):
    """A firmware build host pre-seeds images for other machines into one --root."""
    root, image = tmp_path / "store", "%s/busybox:latest" % plain_registry.host
    host = P.resolve_arch()
    arches = sorted({host, "arm64", "armhf"})
    for arch in arches:
        assert cli("pull", "-q", "--tls-verify=false", "--arch", arch, image, root=root)[0] == 0
    code, out, _ = cli("ls", root=root)
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "ARCH"]
    assert sorted(line.split()[1] for line in lines[1:]) == arches
    debian = {v: k for k, v in EDGERT_ARCH.items()}
    for arch in arches:
        doc = json.loads(cli("inspect", image, "--arch", arch, root=root)[1])
        assert doc["arch"] == arch and doc["digest"] == busybox_layout[1][debian[arch]]
    assert json.loads(cli("inspect", image, root=root)[1])["arch"] == host  # the default
    assert cli("unpack", image, str(tmp_path / "arm"), "--arch", "arm64", root=root)[0] == 0
    assert elf_machine(tmp_path / "arm" / "bin" / "busybox") == ELF["arm64"]
    code, _, err = cli("inspect", image, "--arch", "ppc64le", root=root)
    assert code == 1 and "for %s, not ppc64le" % ", ".join(arches) in err
    assert cli("rm", image, root=root)[0] == 0
    code, _, err = cli("unpack", image, str(tmp_path / "x"), root=root)
    rest = [a for a in arches if a != host]
    assert code == 1 and "for %s, not %s" % (", ".join(rest), host) in err
    assert not (tmp_path / "x").exists()
    assert cli("rm", image, "--arch", "armhf", root=root)[0] == 0
    assert [json.loads(cli("ls", "--json", root=root)[1])[0]["arch"]] == ["arm64"]


def test_drop_compressed_keeps_working(plain_registry, tmp_path):
    store = Store(str(tmp_path / "store"), drop_compressed_after_unpack=True, sync=False)
    snaps = Snapshotter(store.root, sync=False)
    reg = CountingRegistry(plain_registry.host)
    record = P.pull(store, "%s/busybox:amd64" % plain_registry.host, "amd64", snapshots=snaps,
                    registry=reg)
    assert not store.has_blob(record.layers[0]["digest"])
    assert store.get_image(record.name).dropped
    P.pull(store, record.name, "amd64", snapshots=snaps, registry=reg)
    assert len(reg.fetched) == 1
    store.prune(snaps)
    assert snaps.exists(record.top_chain_id)
    P.unpack(store, record.name, str(tmp_path / "rootfs"), snaps)
    assert elf_machine(tmp_path / "rootfs" / "bin" / "busybox") == ELF["amd64"]


def test_progress_plain_and_json(plain_registry, tmp_path):
    out = io.StringIO()
    store = Store(str(tmp_path / "a"), sync=False)
    P.pull(store, "%s/busybox:amd64" % plain_registry.host, "amd64", tls_verify=False,
           progress=Progress("plain", out))
    text = out.getvalue()
    assert "\r" not in text and " / " in text and "/s)" in text and "pulled" in text
    code, out, err = cli("pull", "--json", "--tls-verify=false", "--arch", "arm64",
                         "%s/busybox:latest" % plain_registry.host, root=tmp_path / "b")
    events = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "resolved" and "progress" in kinds and kinds[-1] == "done"
    last = [e for e in events if e["event"] == "progress"][-1]
    assert last["bytes"] == last["total"] > 0


def test_clear_errors(plain_registry, tmp_path):
    host = plain_registry.host
    code, _, err = cli("pull", "--tls-verify=false", "%s/busybox:nope" % host,
                       root=tmp_path / "s")
    assert code == 1 and "busybox:nope" in err and "not found" in err
    code, _, err = cli("pull", "--tls-verify=false", "--arch", "s390x",
                       "%s/busybox:latest" % host, root=tmp_path / "s")
    assert code == 1 and "s390x" in err
    code, _, err = cli("pull", "--tls-verify=false", "Bad Ref", root=tmp_path / "s")
    assert code == 1 and "image reference" in err
    code, _, err = cli("pull", root=tmp_path / "s")
    assert code == 2 and "usage" in err
    code, _, err = cli("pull", "--bogus", "x", root=tmp_path / "s")
    assert code == 2 and "--bogus" in err
    assert cli("ls", root=tmp_path / "s")[0] == 0


def test_killed_pull_resumes(plain_registry, tmp_path):
    """A pull killed mid-download leaves a .partial that the next pull continues."""
    store = Store(str(tmp_path / "store"), sync=False)
    ref = "%s/busybox:amd64" % plain_registry.host
    reg = CountingRegistry(plain_registry.host)
    resolved = reg.resolve("busybox", "amd64", "amd64")
    layer = resolved.manifest.layers[0]
    # what a kill -9 after the first bytes leaves behind
    full = str(tmp_path / "full")
    reg.fetch_blob("busybox", layer.digest, layer.size, full)
    with open(full, "rb") as f:
        data = f.read()
    with open(store.ingest_path(layer.digest) + ".partial", "wb") as f:
        f.write(data[:layer.size // 2])
    seen = []
    P.pull(store, ref, "amd64", snapshots=Snapshotter(store.root, sync=False),
           registry=reg, progress=_Recorder(seen))
    assert seen and min(seen) > layer.size // 2  # continued, not restarted
    assert store.ingest_leftovers() == {}


class _Recorder:
    def __init__(self, seen):
        self.seen = seen

    def event(self, kind, **fields):
        pass

    def layer(self, digest, total):
        def report(done, total=total):
            self.seen.append(done)
        report.finish = lambda: None
        return report


def test_cli_entry_point(plain_registry, tmp_path):
    run = subprocess.run([sys.executable, "-c", "import sys; from edgert.cli import main; "
                          "sys.exit(main(sys.argv[1:]))", "image", "--root", str(tmp_path),
                          "pull", "--tls-verify=false", "--arch", "armhf",
                          "%s/busybox:latest" % plain_registry.host],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr  # not a TTY: plain lines
    assert "pulled" in run.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_disk_full_during_pull_and_unpack(plain_registry, tmp_path):
    """A full store gives a clear error and a consistent store; once space is freed the same
    command resumes and succeeds."""
    root = tmp_path / "small"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(root)], check=True)
    try:
        ref = "%s/busybox:amd64" % plain_registry.host
        args = ("pull", "-q", "--tls-verify=false", "--arch", "amd64", ref)
        code, _, err = cli(*args, root=root)
        assert code == 1 and "No space left on device" in err and "prune" in err
        store = Store(str(root), sync=False)
        assert store.images() == []
        partial = sum(store.ingest_leftovers().values())
        assert partial > 0
        # room for the download but not for the unpacked layer
        subprocess.run(["mount", "-o", "remount,size=1800k", str(root)], check=True)
        code, _, err = cli(*args, root=root)
        assert code == 1 and "No space left on device" in err, err
        snaps = Snapshotter(str(root), sync=False)
        assert snaps.committed() == {} and store.images() == []
        assert [n for n in os.listdir(snaps.snapshot_dir) if n.startswith(".tmp")] == []
        subprocess.run(["mount", "-o", "remount,size=16m", str(root)], check=True)
        code, out, err = cli(*args, root=root)
        assert code == 0, err
        assert len(store.images()) == 1 and len(snaps.committed()) == 1
        assert store.ingest_leftovers() == {}
    finally:
        subprocess.run(["umount", str(root)], check=True)


def _fake_image(fake, layer_tar, diff_id=None, compress=None,
                media="application/vnd.oci.image.layer.v1.tar+gzip"):
    """Serves app:1, one layer of ``layer_tar`` (gzip unless ``compress``); ``diff_id``
    overrides the config's."""
    layer = (compress or (lambda b: gzip.compress(b, compresslevel=1)))(layer_tar)
    layer_digest = fake.add_blob(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [
                             diff_id or "sha256:" + hashlib.sha256(layer_tar).hexdigest()]}}
                        ).encode()
    config_digest = fake.add_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": h.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": media, "digest": layer_digest, "size": len(layer)}]}).encode()
    fake.manifests[("app", "1")] = (h.OCI_MANIFEST, manifest)
    return layer_digest, len(layer)


def test_kill_9_during_pull_resumes(fake, tmp_path):
    import time
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = os.urandom(3 << 20)
        info = tarfile.TarInfo("big")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer_digest, size = _fake_image(fake, raw.getvalue())
    send = fake._send_blob

    def slow_send(req, digest):
        if req.headers.get("Range"):
            return send(req, digest)
        body = fake.blobs[digest]
        req.send_response(200)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        for i in range(0, len(body), 64 << 10):
            req.wfile.write(body[i:i + (64 << 10)])
            req.wfile.flush()
            time.sleep(0.05)
    fake._send_blob = slow_send
    root = tmp_path / "store"
    pid = os.fork()
    if pid == 0:  # the pull to kill -9 (a forked child: no interpreter start-up to wait for)
        try:
            reg = Registry(fake.host, tls_verify=False)
            reg._scheme = "http"  # skip the TLS probe: the fake server only speaks HTTP
            P.pull(Store(str(root), sync=False), "%s/app:1" % fake.host, "amd64",
                   registry=reg)
        finally:
            os._exit(0)
    partial = str(root / "ingest" / layer_digest[7:]) + ".partial"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(partial) and os.path.getsize(partial) > 512 << 10:
            break
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    got = os.path.getsize(partial)
    assert 0 < got < size
    store = Store(str(root), sync=False)
    assert store.images() == []
    fake.requests.clear()
    reg = Registry(fake.host, tls_verify=False)
    reg._scheme = "http"
    record = P.pull(store, "%s/app:1" % fake.host, "amd64", registry=reg,
                    snapshots=Snapshotter(str(root), sync=False))
    ranges = [r[2].get("Range") for r in fake.requests if "/blobs/" + layer_digest in r[1]]
    assert ranges == ["bytes=%d-" % got]
    assert store.has_blob(layer_digest) and store.ingest_leftovers() == {}
    assert record.layers[0]["digest"] == layer_digest


def test_concurrent_pulls_share_the_store(plain_registry, tmp_path):
    root = str(tmp_path / "store")
    Store(root)
    pids = []
    for arch in ("amd64", "amd64", "arm64"):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                store = Store(root, sync=False)
                P.pull(store, "%s/busybox:latest" % plain_registry.host, arch,
                       tls_verify=False, snapshots=Snapshotter(root, sync=False))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    store = Store(root, sync=False)
    assert sorted(r.arch for r in store.images()) == ["amd64", "arm64"]  # one per arch
    snaps = Snapshotter(root, sync=False)
    assert len(snaps.committed()) == 2
    assert store.ingest_leftovers() == {}
    assert not [n for n in os.listdir(snaps.snapshot_dir) if n.startswith(".tmp")]


def test_pull_with_basic_auth_token_auth_and_cert_dir(basic_registry, token_registry,
                                                      tls_registry, tmp_path):
    user, password = next(iter(h.USERS.items()))
    code, _, err = cli("pull", "-q", "--tls-verify=false", "--creds", "%s:%s" % (user, password),
                       "--arch", "arm64", "%s/busybox:latest" % basic_registry.host,
                       root=tmp_path / "a")
    assert code == 0, err
    code, _, err = cli("pull", "-q", "--tls-verify=false", "--arch", "arm64",
                       "%s/busybox:latest" % basic_registry.host, root=tmp_path / "b")
    assert code == 1 and password not in err and "busybox" in err
    authfile = tmp_path / "auth.json"
    import base64
    token_host = token_registry[0].host
    tuser, tpass = "octocat", h.TOKEN_USERS["octocat"]
    authfile.write_text(json.dumps({"auths": {token_host: {"auth": base64.b64encode(
        ("%s:%s" % (tuser, tpass)).encode()).decode()}}}))
    code, _, err = cli("pull", "-q", "--tls-verify=false", "--authfile", str(authfile),
                       "--arch", "armhf", "%s/busybox:latest" % token_host, root=tmp_path / "c")
    assert code == 0, err
    server, cert_dir = tls_registry
    code, _, err = cli("pull", "-q", "--arch", "ppc64le", "%s/busybox:latest" % server.host,
                       root=tmp_path / "d")
    assert code == 1 and "certificate" in err.lower()
    code, out, err = cli("pull", "-q", "--cert-dir", cert_dir, "--arch", "ppc64le",
                         "%s/busybox:latest" % server.host, root=tmp_path / "d")
    assert code == 0, err


def test_progress_modes_without_a_registry():
    now = [0.0]
    plain = io.StringIO()
    report = Progress("plain", plain, interval=2.0, clock=lambda: now[0]).layer(
        "sha256:" + "a" * 64, 1000)
    for step in range(1, 11):  # 10 updates over 5 seconds: a line every 2 s at most
        now[0] = step * 0.5
        report(step * 100)
    report.finish()
    lines = plain.getvalue().splitlines()
    assert 3 <= len(lines) <= 5 and "\r" not in plain.getvalue()
    assert lines[-1] == "aaaaaaaaaaaa: 1000 B / 1000 B (200 B/s)"
    tty = io.StringIO()
    report = Progress("tty", tty, clock=lambda: now[0]).layer("sha256:" + "b" * 64, 10)
    report(10)
    report.finish()
    assert tty.getvalue().startswith("\r") and tty.getvalue().endswith("\n")
    quiet = io.StringIO()
    p = Progress("quiet", quiet)
    p.layer("sha256:" + "c" * 64, 5)(5)
    p.event("done", message="x")
    assert quiet.getvalue() == ""
    with pytest.raises(ValueError):
        Progress("fancy", quiet)


@pytest.mark.parametrize("arch", sorted(EDGERT_ARCH))
def test_import_multi_arch_oci_layout(busybox_layout, tmp_path, arch):
    layout, refs = busybox_layout
    root = tmp_path / "store"
    code, out, err = cli("import", "-q", "--arch", EDGERT_ARCH[arch], "oci:%s:latest" % layout,
                         root=root)
    assert code == 0, err
    assert out.strip() == refs[arch]
    assert cli("unpack", out.strip(), str(tmp_path / "rootfs"), root=root)[0] == 0
    assert elf_machine(tmp_path / "rootfs" / "bin" / "busybox") == ELF[arch]


def _many_files_tar(count=40):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for i in range(count):
            data = os.urandom(10000)
            info = tarfile.TarInfo("f%03d" % i)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _fake_registry_client(fake):
    reg = Registry(fake.host, tls_verify=False, sleep=lambda s: None)
    reg._scheme = "http"  # the fake server only speaks HTTP: skip the TLS probe
    return reg


def test_diff_id_mismatch_leaves_no_image_and_no_snapshot(fake, tmp_path):
    tar = _many_files_tar(3)
    _fake_image(fake, tar, diff_id="sha256:" + "0" * 64)
    store = Store(str(tmp_path / "store"), sync=False)
    snaps = Snapshotter(store.root, sync=False)
    with pytest.raises(P.EdgertError, match="diff ID mismatch"):
        P.pull(store, "%s/app:1" % fake.host, "amd64", snapshots=snaps,
               registry=_fake_registry_client(fake))
    assert store.images() == [] and snaps.committed() == {}
    assert [n for n in os.listdir(snaps.snapshot_dir) if not n.endswith(".lock")] == []


def _have_zstandard():
    try:
        import zstandard  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.mark.parametrize("decoder", ["module", "program", "neither"])
def test_zstd_layers(fake, tmp_path, monkeypatch, decoder):
    if not shutil.which("zstd"):
        pytest.skip("the zstd program makes the test layer: not installed")
    if decoder == "module" and not _have_zstandard():
        pytest.skip("python3-zstandard is not installed")
    tar = _many_files_tar(3)
    zstd = lambda b: subprocess.run(["zstd", "-q", "-c"], input=b, stdout=subprocess.PIPE,
                                    check=True).stdout
    layer_digest, _ = _fake_image(fake, tar, compress=zstd,
                                  media="application/vnd.oci.image.layer.v1.tar+zstd")
    if decoder != "module":
        monkeypatch.setitem(sys.modules, "zstandard", None)
    if decoder == "neither":
        monkeypatch.setenv("PATH", str(tmp_path))
    store = Store(str(tmp_path / "store"), sync=False)
    snaps = Snapshotter(store.root, sync=False)
    pull = lambda: P.pull(store, "%s/app:1" % fake.host, "amd64", snapshots=snaps,
                          registry=_fake_registry_client(fake))
    if decoder == "neither":
        with pytest.raises(P.EdgertError, match=r"layer %s is zstd-compressed: install "
                           r"python3-zstandard or the zstd binary \(image .*/app:1\)"
                           % layer_digest):
            pull()
        assert not [r for r in fake.requests if layer_digest in r[1]]  # before fetching it
        return
    record = pull()
    P.unpack(store, record.name, str(tmp_path / "rootfs"), arch="amd64")  # from the blob
    assert sorted(os.listdir(tmp_path / "rootfs")) == ["f000", "f001", "f002"]


def _killed_child(action, patch):
    """Runs ``action()`` in a forked child that SIGKILLs itself at the point ``patch`` picks
    (patch(kill) installs the trap); returns once the child is dead."""
    pid = os.fork()
    if pid == 0:
        try:
            patch(lambda: os.kill(os.getpid(), 9))
            action()
        finally:
            os._exit(3)  # only reached when the trap did not fire
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    return pid


def _after_calls(owner, name, count):
    """patch(): makes ``owner.name`` kill the process on its ``count``th call."""
    def patch(kill):
        real = getattr(owner, name)
        calls = []

        def trap(*args, **kwargs):
            calls.append(1)
            if len(calls) == count:
                kill()
            return real(*args, **kwargs)
        setattr(owner, name, trap)
    return patch


def test_kill_9_during_snapshot_unpack_and_image_unpack_resumes(fake, tmp_path):
    """kill -9 while a pull extracts its layer, while `image unpack` copies the snapshots and
    while it extracts blobs: nothing looks complete, and the next run succeeds."""
    from edgert.image import snapshot as S
    from edgert.image import unpack as U
    layer_digest, _ = _fake_image(fake, _many_files_tar())
    root = str(tmp_path / "store")
    store = Store(root, sync=False)
    snaps = Snapshotter(root, sync=False)
    name = "%s/app:1" % fake.host

    def pull():
        return P.pull(Store(root, sync=False), name, "amd64",
                      snapshots=Snapshotter(root, sync=False),
                      registry=_fake_registry_client(fake))

    _killed_child(pull, _after_calls(U._Applier, "_file", 20))
    assert store.images() == [] and snaps.committed() == {}
    assert [n for n in os.listdir(snaps.snapshot_dir) if n.startswith(".tmp-")]  # debris
    fake.requests.clear()
    record = pull()
    assert not [r for r in fake.requests if layer_digest in r[1]]  # the blob was complete
    assert snaps.exists(record.top_chain_id)
    assert snaps.prune({record.top_chain_id})[0] == 0  # the killed run's debris goes
    assert not [n for n in os.listdir(snaps.snapshot_dir) if n.startswith(".tmp-")]

    want = sorted("f%03d" % i for i in range(40))
    for how, patch, use_snapshots in [
            ("snapshots", _after_calls(S, "_copy_file", 20), True),
            ("blobs", _after_calls(U._Applier, "_file", 20), False)]:
        dest = tmp_path / how / "rootfs"
        unpack = lambda: P.unpack(Store(root, sync=False), name, str(dest),
                                  Snapshotter(root, sync=False) if use_snapshots else None,
                                  arch="amd64")
        pid = _killed_child(unpack, patch)
        assert os.listdir(dest.parent) == [".rootfs.unpack-%d" % pid]  # no dest
        stats = P.unpack(store, name, str(dest), snaps if use_snapshots else None,
                         arch="amd64")
        assert (stats is None) == use_snapshots  # layer stats come from a blob unpack only
        assert os.listdir(dest.parent) == ["rootfs"]
        assert sorted(os.listdir(dest)) == want
