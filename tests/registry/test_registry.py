"""The registry client against a real docker-registry (no auth, basic, token, HTTPS) and
against a fake registry for dropped connections, corrupt blobs, 5xx, redirects."""

import base64
import hashlib
import json
import os

import pytest

from edgert.errors import ConfigError, NotFound
from edgert.image import manifest as m
from edgert.image.auth import AuthError, Credentials
from edgert.image.digest import DigestMismatch
from edgert.image.registry import Registry, RegistryError, load_credentials
from tests.helpers import registry as h
from tests.helpers.registry import GCR_JSON_KEY, TOKEN_USERS, USERS

EDGERT_ARCH = {"amd64": "amd64", "arm64": "arm64", "armhf": "armhf", "ppc64el": "ppc64le"}


def client(host, **kw):
    kw.setdefault("tls_verify", False)
    kw.setdefault("sleep", lambda s: None)
    return Registry(host, **kw)


def assert_secret_free(text, *secrets):
    for secret in secrets:
        assert secret not in text
        for piece in secret.split(":"):
            if len(piece) > 6:
                assert piece not in text


# -- a real registry, no auth ---------------------------------------------------------------

@pytest.mark.parametrize("arch", sorted(EDGERT_ARCH))
def test_manifest_by_tag_and_digest(plain_registry, busybox_layout, arch):
    want = busybox_layout[1][arch]
    reg = client(plain_registry.host)
    media_type, data, digest = reg.get_manifest("busybox", arch)
    assert (media_type, digest) == (m.OCI_MANIFEST, want)
    assert reg.get_manifest("busybox", want) == (media_type, data, want)


@pytest.mark.parametrize("debian_arch", sorted(EDGERT_ARCH))
def test_resolve_index_per_arch_and_fetch_layer(plain_registry, busybox_layout, debian_arch,
                                                tmp_path):
    reg = client(plain_registry.host)
    resolved = reg.resolve("busybox", "latest", EDGERT_ARCH[debian_arch])
    assert resolved.digest == busybox_layout[1][debian_arch]
    assert resolved.index_digest == busybox_layout[1]["latest"]
    assert resolved.config.platform == m.platform_for(EDGERT_ARCH[debian_arch]) or \
        debian_arch in ("amd64", "ppc64el")
    layer = resolved.manifest.layers[0]
    seen = []
    dest = str(tmp_path / "layer")
    assert reg.fetch_blob("busybox", layer.digest, layer.size, dest,
                          lambda done, total: seen.append((done, total))) == dest
    with open(dest, "rb") as f:
        assert h.digest_of(f.read()) == layer.digest
    assert seen[-1] == (layer.size, layer.size)
    assert not os.path.exists(dest + ".partial")


def test_resolve_by_index_digest(plain_registry, busybox_layout):
    reg = client(plain_registry.host)
    resolved = reg.resolve("busybox", busybox_layout[1]["latest"], "arm64")
    assert resolved.digest == busybox_layout[1]["arm64"]


def test_single_arch_image_for_another_machine(plain_registry):
    with pytest.raises(NotFound) as err:
        client(plain_registry.host).resolve("busybox", "arm64", "armhf")
    assert str(err.value) == ("image %s/busybox:arm64 has no linux/arm/v7 variant "
                              "(has: linux/arm64/v8)" % plain_registry.host)


@pytest.mark.parametrize("arch", sorted(EDGERT_ARCH.values()))
def test_docker_schema2_manifest_list(plain_registry, arch, tmp_path):
    reg = client(plain_registry.host)
    media_type, _, _ = reg.get_manifest(h.DOCKER_REPO, "latest")
    assert media_type == m.DOCKER_LIST
    resolved = reg.resolve(h.DOCKER_REPO, "latest", arch)
    assert resolved.manifest.media_type == m.DOCKER_MANIFEST
    assert resolved.config.platform == m.platform_for(arch) or arch in ("amd64", "ppc64le")
    layer = resolved.manifest.layers[0]
    assert layer.media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    reg.fetch_blob(h.DOCKER_REPO, layer.digest, layer.size, str(tmp_path / "layer"))


def test_accept_only_single_manifests(plain_registry):
    # A client that asks for a manifest only must not be handed an index it did not accept.
    media_type, _, _ = client(plain_registry.host).get_manifest(
        "busybox", "amd64", accept=m.OCI_MANIFEST)
    assert media_type == m.OCI_MANIFEST


def test_unknown_tag_and_repository(plain_registry):
    reg = client(plain_registry.host)
    with pytest.raises(NotFound) as err:
        reg.get_manifest("busybox", "nope")
    assert str(err.value) == "image %s/busybox:nope: not found (manifest unknown)" % (
        plain_registry.host)
    with pytest.raises(NotFound, match="image .*/nothing/here:latest: not found"):
        reg.get_manifest("nothing/here", "latest")
    with pytest.raises(NotFound, match="blob sha256:0{64} not found"):
        reg.fetch_blob("busybox", "sha256:" + "0" * 64, 1, "/nonexistent/x")


def test_tls_verify_true_on_plain_http_fails_clearly(plain_registry):
    with pytest.raises(RegistryError, match="registry 127.0.0.1:%d" % plain_registry.port):
        Registry(plain_registry.host, retries=0).get_manifest("busybox", "amd64")


# -- basic auth -------------------------------------------------------------------------------

def test_basic_auth(basic_registry, busybox_layout):
    user, password = next(iter(USERS.items()))
    reg = client(basic_registry.host, creds=Credentials(user, password))
    assert reg.resolve("busybox", "latest", "amd64").digest == busybox_layout[1]["amd64"]


def test_basic_auth_required(basic_registry):
    with pytest.raises(AuthError) as err:
        client(basic_registry.host).get_manifest("busybox", "amd64")
    assert str(err.value) == ("authentication required for registry %s (image %s/busybox:amd64):"
                              " give --creds or --authfile" % ((basic_registry.host,) * 2))


def test_basic_auth_wrong_password(basic_registry):
    wrong = "wonder:land WRONG pw"
    with pytest.raises(AuthError) as err:
        client(basic_registry.host, creds=Credentials("alice", wrong)).get_manifest(
            "busybox", "amd64")
    assert "authentication failed for registry %s" % basic_registry.host in str(err.value)
    assert "as user 'alice': check --creds or --authfile" in str(err.value)
    assert_secret_free(str(err.value) + repr(err.value), wrong)


# -- token auth -------------------------------------------------------------------------------

@pytest.mark.parametrize("user", sorted(TOKEN_USERS))
def test_token_auth_with_gcr_and_ghcr_style_credentials(token_registry, busybox_layout, user,
                                                        tmp_path):
    server, tokens = token_registry
    before = len(tokens.requests)
    reg = client(server.host, creds=Credentials(user, TOKEN_USERS[user]))
    resolved = reg.resolve("busybox", "latest", "armhf")
    assert resolved.digest == busybox_layout[1]["armhf"]
    layer = resolved.manifest.layers[0]
    reg.fetch_blob("busybox", layer.digest, layer.size, str(tmp_path / "l"))
    new = tokens.requests[before:]
    assert len(new) == 1  # one token serves the whole pull
    path, headers = new[0]
    assert "scope=repository%3Abusybox%3Apull" in path and "service=" + h.TOKEN_SERVICE in path
    assert headers["Authorization"].startswith("Basic ")


def test_expired_token_is_renewed(token_registry):
    server, tokens = token_registry
    now = [1000.0]
    reg = client(server.host, creds=Credentials("octocat", TOKEN_USERS["octocat"]),
                 monotonic=lambda: now[0])
    before = len(tokens.requests)
    reg.get_manifest("busybox", "amd64")
    reg.get_manifest("busybox", "arm64")
    assert len(tokens.requests) == before + 1
    now[0] += 400  # the token said expires_in 300
    reg.get_manifest("busybox", "armhf")
    assert len(tokens.requests) == before + 2


def test_token_auth_anonymous_is_refused(token_registry):
    server, _ = token_registry
    with pytest.raises(AuthError, match="authentication required for registry %s \\(image "
                       ".*/busybox:latest\\): give --creds or --authfile" % server.host):
        client(server.host).get_manifest("busybox", "latest")


def test_token_auth_wrong_key_never_shows_the_secret(token_registry):
    server, _ = token_registry
    bad_key = GCR_JSON_KEY.replace("MIIEv", "MIIXX")
    with pytest.raises(AuthError) as err:
        client(server.host, creds=Credentials("_json_key", bad_key)).get_manifest(
            "busybox", "latest")
    assert "authentication failed" in str(err.value) and "'_json_key'" in str(err.value)
    assert_secret_free(str(err.value) + repr(err.value), bad_key)


# -- auth files -------------------------------------------------------------------------------

def test_auth_file_credentials(basic_registry, tmp_path):
    user, password = next(iter(USERS.items()))
    authfile = tmp_path / "auth.json"
    encoded = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    authfile.write_text(json.dumps({"auths": {basic_registry.host: {"auth": encoded}}}))
    creds = load_credentials(basic_registry.host, "busybox", authfile=str(authfile))
    assert creds == Credentials(user, password)
    client(basic_registry.host, creds=creds).get_manifest("busybox", "amd64")
    # the default locations, as podman reads them
    env = {"REGISTRY_AUTH_FILE": str(authfile)}
    assert load_credentials(basic_registry.host, "busybox", environ=env) == creds
    assert load_credentials("other.example", "busybox", environ=env) is None
    assert load_credentials(basic_registry.host, "x", creds="a:b:c") == Credentials("a", "b:c")


def test_auth_file_errors(tmp_path):
    with pytest.raises(NotFound, match="--authfile .*/missing.json: no such file"):
        load_credentials("r.io", "x", authfile=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="bad.json: not a JSON auth file"):
        load_credentials("r.io", "x", authfile=str(bad))
    assert load_credentials("r.io", "x", environ={"HOME": str(tmp_path)}, uid=12345) is None


# -- TLS --------------------------------------------------------------------------------------

def test_tls_with_cert_dir(tls_registry, busybox_layout):
    server, cert_dir = tls_registry
    reg = Registry(server.host, cert_dir=cert_dir)
    assert reg.get_manifest("busybox", "amd64")[2] == busybox_layout[1]["amd64"]


def test_tls_verify_false_accepts_a_self_signed_certificate(tls_registry, busybox_layout):
    server, _ = tls_registry
    reg = client(server.host, tls_verify=False)
    assert reg.get_manifest("busybox", "arm64")[2] == busybox_layout[1]["arm64"]
    assert reg._scheme == "https"


def test_tls_unknown_ca(tls_registry):
    server, _ = tls_registry
    with pytest.raises(RegistryError) as err:
        Registry(server.host, cert_dir="").get_manifest("busybox", "amd64")
    text = str(err.value)
    assert "TLS certificate verification failed" in text and "give --cert-dir" in text
    assert "unsynced clock" not in text


def test_tls_failure_with_a_wrong_clock_blames_the_clock(tls_registry):
    server, _ = tls_registry
    with pytest.raises(RegistryError) as err:
        Registry(server.host, cert_dir="", clock=lambda: 0.0).get_manifest("busybox", "amd64")
    assert "possibly caused by an unsynced clock: the system time is 1970-01-01" in str(err.value)


def test_tls_failure_uses_the_daemons_ntp_signal(tls_registry):
    """In the daemon the NTP signal (as in /host/.time-status) explains the failure, not a
    guess from the year; a synced clock points at the certificates instead."""
    server, _ = tls_registry
    with pytest.raises(RegistryError) as err:
        Registry(server.host, cert_dir="", clock_synced=False).get_manifest("busybox", "amd64")
    assert "the host clock is not NTP-synced yet" in str(err.value)
    with pytest.raises(RegistryError) as err:
        Registry(server.host, cert_dir="", clock=lambda: 0.0,
                 clock_synced=True).get_manifest("busybox", "amd64")
    assert "NTP-synced" not in str(err.value) and "give --cert-dir" in str(err.value)


# -- faults, from the fake registry ----------------------------------------------------------

BLOB = bytes(range(256)) * 4096  # 1 MiB


def test_corrupt_blob_leaves_nothing(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    fake.serve_instead[digest] = BLOB[:-1] + b"X"
    dest = str(tmp_path / "blob")
    with pytest.raises(DigestMismatch) as err:
        client(fake.host).fetch_blob("r", digest, len(BLOB), dest)
    assert "blob %s: digest mismatch (content hashes to sha256:" % digest in str(err.value)
    assert os.listdir(str(tmp_path)) == []


def test_too_long_blob_is_refused(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    fake.serve_instead[digest] = BLOB + b"more"
    with pytest.raises(DigestMismatch, match="sends 1048580 bytes, expected 1048576"):
        client(fake.host).fetch_blob("r", digest, len(BLOB), str(tmp_path / "b"))
    assert os.listdir(str(tmp_path)) == []


def test_resume_after_a_dropped_connection(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    fake.drop_after[digest] = 300000
    dest = str(tmp_path / "blob")
    client(fake.host).fetch_blob("r", digest, len(BLOB), dest)
    with open(dest, "rb") as f:
        assert f.read() == BLOB
    gets = [r for r in fake.requests if "/blobs/" in r[1]]
    assert len(gets) == 2 and "Range" not in gets[0][2]
    start = int(gets[1][2]["Range"].split("=")[1].rstrip("-"))
    assert 0 < start <= 300000


def test_resume_a_partial_left_by_an_earlier_run(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    dest = str(tmp_path / "blob")
    with open(dest + ".partial", "wb") as f:
        f.write(BLOB[:123457])
    client(fake.host).fetch_blob("r", digest, len(BLOB), dest)
    assert [r[2].get("Range") for r in fake.requests] == ["bytes=123457-"]
    with open(dest, "rb") as f:
        assert f.read() == BLOB


def test_a_corrupt_partial_is_fetched_again_whole(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    dest = str(tmp_path / "blob")
    with open(dest + ".partial", "wb") as f:
        f.write(b"\0" * 1000)  # what a power loss can leave
    client(fake.host).fetch_blob("r", digest, len(BLOB), dest)
    assert [r[2].get("Range") for r in fake.requests] == ["bytes=1000-", None]
    with open(dest, "rb") as f:
        assert f.read() == BLOB


def test_a_partial_longer_than_the_blob_is_discarded(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    dest = str(tmp_path / "blob")
    with open(dest + ".partial", "wb") as f:
        f.write(BLOB + b"junk")
    client(fake.host).fetch_blob("r", digest, len(BLOB), dest)
    assert [r[2].get("Range") for r in fake.requests] == [None]


@pytest.mark.parametrize("fault", ["ignore_range", "range_status"])
def test_range_ignored_or_refused_restarts(fake, tmp_path, fault):
    digest = fake.add_blob(BLOB)
    if fault == "ignore_range":
        fake.ignore_range = True
    else:
        fake.range_status = 416
    dest = str(tmp_path / "blob")
    with open(dest + ".partial", "wb") as f:
        f.write(BLOB[:5000])
    client(fake.host).fetch_blob("r", digest, len(BLOB), dest)
    with open(dest, "rb") as f:
        assert f.read() == BLOB


def test_5xx_is_retried_with_backoff(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    fake.fail_next = 3
    delays = []
    reg = client(fake.host, sleep=delays.append)
    reg.fetch_blob("r", digest, len(BLOB), str(tmp_path / "b"))
    assert delays == [0.5, 1.0, 2.0]


def test_5xx_on_a_manifest_is_retried(fake):
    fake.manifests[("r", "t")] = (m.OCI_MANIFEST, b"{}")
    fake.fail_next = 2
    assert client(fake.host).get_manifest("r", "t") == (m.OCI_MANIFEST, b"{}", h.digest_of(b"{}"))


def test_5xx_gives_up(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    fake.fail_next = 100
    delays = []
    with pytest.raises(RegistryError) as err:
        client(fake.host, sleep=delays.append, retries=3, max_backoff=1.5).fetch_blob(
            "r", digest, len(BLOB), str(tmp_path / "b"))
    assert str(err.value) == ("registry %s (image %s/r): HTTP 503 Service Unavailable "
                              "(gave up after 4 attempts)" % (fake.host, fake.host))
    assert delays == [0.5, 1.0, 1.5]
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize("tls_verify", [True, False])
def test_connection_refused_gives_up(tls_verify):
    port = h.free_port()
    reg = Registry("127.0.0.1:%d" % port, tls_verify=tls_verify, retries=2, sleep=lambda s: None)
    with pytest.raises(RegistryError, match="127.0.0.1:%d .*connection refused.*3 attempts"
                       % port):
        reg.get_manifest("r", "t")


def test_redirect_to_another_host_drops_authorization(tmp_path):
    origin, cdn = h.FakeRegistry("127.0.0.1"), h.FakeRegistry("localhost")
    try:
        digest = origin.add_blob(BLOB)
        cdn.add_blob(BLOB)
        origin.basic = ("u", "p4ss")
        origin.redirect_blobs_to = "http://" + cdn.host
        reg = client(origin.host, creds=Credentials("u", "p4ss"))
        reg.fetch_blob("r", digest, len(BLOB), str(tmp_path / "b"))
        assert any("Authorization" in r[2] for r in origin.requests)
        assert cdn.requests and not any("Authorization" in r[2] for r in cdn.requests)
    finally:
        origin.stop()
        cdn.stop()


def test_manifest_digest_is_verified(fake):
    body = b'{"schemaVersion": 2}'
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    fake.manifests[("r", wrong)] = (m.OCI_MANIFEST, body)
    with pytest.raises(DigestMismatch, match="manifest hashes to sha256:"):
        client(fake.host).get_manifest("r", wrong)


def test_403_is_access_denied(fake):
    fake.status["/v2/r/manifests/t"] = 403
    with pytest.raises(AuthError, match="registry .* \\(image .*/r:t\\): access denied: DENIED"):
        client(fake.host).get_manifest("r", "t")


def test_secrets_echoed_by_the_registry_are_redacted(fake):
    fake.basic = ("u", "hunter2-pw")
    fake.manifests[("r", "t")] = (m.OCI_MANIFEST, b"{}")
    fake.status["/v2/r/manifests/x"] = 403
    fake.echo_authorization = True
    reg = client(fake.host, creds=Credentials("u", "hunter2-pw"))
    reg.get_manifest("r", "t")
    with pytest.raises(AuthError) as err:
        reg.get_manifest("r", "x")
    assert str(err.value).endswith("access denied: DENIED: denied for Basic ***")


def _index(*entries):
    return json.dumps({"schemaVersion": 2, "mediaType": m.OCI_INDEX,
                       "manifests": list(entries)}).encode()


def test_platform_error_lists_what_the_index_has(fake):
    entries = [{"mediaType": m.OCI_MANIFEST, "digest": "sha256:" + c * 64, "size": 1,
                "platform": {"os": "linux", "architecture": arch}}
               for c, arch in (("a", "amd64"), ("b", "arm64"))]
    fake.manifests[("r", "t")] = (m.OCI_INDEX, _index(*entries))
    with pytest.raises(NotFound) as err:
        client(fake.host).resolve("r", "t", "armhf")
    assert str(err.value) == ("image %s/r:t has no linux/arm/v7 variant "
                              "(has: linux/amd64, linux/arm64)" % fake.host)


def test_nested_indexes_stop(fake):
    # t -> index -> index -> index: deeper than MAX_INDEX_DEPTH
    body = None
    for _ in range(m.MAX_INDEX_DEPTH + 1):
        entry = {"mediaType": m.OCI_INDEX, "digest": "sha256:" + "f" * 64, "size": 0,
                 "platform": {"os": "linux", "architecture": "amd64"}}
        if body is not None:
            entry.update(digest=h.digest_of(body), size=len(body))
            fake.manifests[("r", h.digest_of(body))] = (m.OCI_INDEX, body)
        body = _index(entry)
    fake.manifests[("r", "t")] = (m.OCI_INDEX, body)
    with pytest.raises(ConfigError, match="indexes nested more than 2 deep"):
        client(fake.host).resolve("r", "t", "amd64")


def test_ambiguous_manifest_is_refused(fake):
    doc = {"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "manifests": [],
           "config": {"mediaType": m.OCI_CONFIG, "digest": "sha256:" + "a" * 64, "size": 1},
           "layers": []}
    fake.manifests[("r", "t")] = (m.OCI_MANIFEST, json.dumps(doc).encode())
    with pytest.raises(ConfigError, match="ambiguous"):
        client(fake.host).resolve("r", "t", "amd64")


def test_config_with_too_few_diff_ids_is_refused(fake):
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = fake.add_blob(b"layer")
    doc = {"schemaVersion": 2, "mediaType": m.OCI_MANIFEST,
           "config": {"mediaType": m.OCI_CONFIG, "digest": fake.add_blob(config),
                      "size": len(config)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer,
                       "size": 5}]}
    fake.manifests[("r", "t")] = (m.OCI_MANIFEST, json.dumps(doc).encode())
    with pytest.raises(ConfigError, match="0 diff IDs for 1 layers"):
        client(fake.host).resolve("r", "t", "amd64")


def test_empty_blob(fake, tmp_path):
    digest = fake.add_blob(b"")
    dest = str(tmp_path / "empty")
    client(fake.host).fetch_blob("r", digest, 0, dest)
    assert os.path.getsize(dest) == 0 and os.listdir(str(tmp_path)) == ["empty"]


def test_token_server_errors(fake):
    tokens = h.FakeRegistry()
    try:
        realm = "http://%s/token" % tokens.host
        fake.status["/v2/r/manifests/t"] = 401
        fake.manifests[("r", "t")] = (m.OCI_MANIFEST, b"{}")
        # the fake answers every 401 with a Basic challenge; make this one Bearer
        fake.challenge = 'Bearer realm="%s",service="s"' % realm
        tokens.fail_next = 100
        with pytest.raises(AuthError, match="token server %s for registry %s .*HTTP 503"
                           % (tokens.host, fake.host)):
            client(fake.host, retries=1).get_manifest("r", "t")
        tokens.fail_next = 0  # /token is a 404 there: not retried
        with pytest.raises(AuthError, match="HTTP 404 Not Found"):
            client(fake.host, retries=1).get_manifest("r", "t")
        assert len([r for r in tokens.requests if r[1].startswith("/token")]) == 3
    finally:
        tokens.stop()


def test_connection_resets_are_retried_with_backoff(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    fake.manifests[("r", "t")] = (m.OCI_MANIFEST, b"{}")
    reg = client(fake.host)
    reg.get_manifest("r", "t")  # settles http vs https before the faults start
    delays = []
    reg.sleep = delays.append
    fake.reset_next = 2
    assert reg.get_manifest("r", "t")[1] == b"{}"
    assert delays == [0.5, 1.0]
    fake.reset_next = 3
    reg.fetch_blob("r", digest, len(BLOB), str(tmp_path / "b"))
    with open(str(tmp_path / "b"), "rb") as f:
        assert f.read() == BLOB
    assert delays[2:] == [0.5, 1.0, 2.0]


def test_connection_resets_give_up_with_a_clear_error(fake):
    fake.manifests[("r", "t")] = (m.OCI_MANIFEST, b"{}")
    reg = client(fake.host, retries=2)
    reg.get_manifest("r", "t")
    fake.reset_next = 100
    with pytest.raises(RegistryError, match="registry %s .*image %s/r:t.*3 attempts"
                       % (fake.host, fake.host)):
        reg.get_manifest("r", "t")


def test_blob_shorter_than_its_descriptor_is_refused(fake, tmp_path):
    digest = fake.add_blob(BLOB)
    fake.serve_instead[digest] = BLOB[:-100]
    with pytest.raises(DigestMismatch, match="sends 1048476 bytes, expected 1048576"):
        client(fake.host).fetch_blob("r", digest, len(BLOB), str(tmp_path / "b"))
    assert os.listdir(str(tmp_path)) == []
