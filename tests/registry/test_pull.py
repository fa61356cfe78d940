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
                         str(tmp_path / "rootfs"), root=root)
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
    assert code == 0 and "removed" in out
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


def _fake_image(fake, layer_tar):
    layer = gzip.compress(layer_tar, compresslevel=1)
    layer_digest = fake.add_blob(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [
                             "sha256:" + hashlib.sha256(layer_tar).hexdigest()]}}).encode()
    config_digest = fake.add_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": h.OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": len(layer)}]}).encode()
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
    assert len(store.images()) == 1  # one name: the last pull's arch wins
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
