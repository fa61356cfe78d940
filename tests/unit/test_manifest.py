"""Manifest, index and config parsing: limits, ambiguity (CVE-2021-41190), platforms, chain IDs."""

import hashlib
import json

import pytest

from edgert.errors import ConfigError, NotFound, Unsupported
from edgert.image import digest
from edgert.image import manifest as m


def dig(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dig("l"), "size": 3}
CONFIG = {"mediaType": m.OCI_CONFIG, "digest": dig("c"), "size": 2}


def oci_manifest(**extra):
    doc = {"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "config": CONFIG, "layers": [LAYER]}
    doc.update(extra)
    return json.dumps(doc).encode()


def entry(arch, variant=None, os="linux", media_type=m.OCI_MANIFEST):
    platform = {"os": os, "architecture": arch}
    if variant is not None:
        platform["variant"] = variant
    return {"mediaType": media_type, "digest": dig(arch + (variant or "")), "size": 10,
            "platform": platform}


def index(*entries, media_type=m.OCI_INDEX):
    doc = {"schemaVersion": 2, "manifests": list(entries)}
    if media_type:
        doc["mediaType"] = media_type
    return m.parse(json.dumps(doc).encode())


def test_oci_manifest():
    man = m.parse(oci_manifest(), m.OCI_MANIFEST + "; charset=utf-8", m.OCI_MANIFEST)
    assert man.kind == "manifest" and man.media_type == m.OCI_MANIFEST
    assert man.config.digest == CONFIG["digest"]
    assert [(l.digest, l.size) for l in man.layers] == [(LAYER["digest"], 3)]
    assert man.layers[0].media_type in m.LAYER_TYPES


def test_docker_manifest_and_list():
    doc = {"schemaVersion": 2, "mediaType": m.DOCKER_MANIFEST,
           "config": dict(CONFIG, mediaType=m.DOCKER_CONFIG),
           "layers": [dict(LAYER, mediaType="application/vnd.docker.image.rootfs.diff.tar.gzip")]}
    man = m.parse(json.dumps(doc).encode(), m.DOCKER_MANIFEST)
    assert man.media_type == m.DOCKER_MANIFEST
    lst = index(entry("amd64", media_type=m.DOCKER_MANIFEST), media_type=m.DOCKER_LIST)
    assert lst.kind == "index" and lst.media_type == m.DOCKER_LIST


def test_media_type_inferred_when_absent():
    doc = json.loads(oci_manifest())
    del doc["mediaType"]
    assert m.parse(json.dumps(doc).encode(), "application/json").media_type == m.OCI_MANIFEST
    assert index(entry("amd64"), media_type=None).media_type == m.OCI_INDEX


@pytest.mark.parametrize("doc,content_type,expected,why", [
    (dict(json.loads(oci_manifest()), manifests=[]), None, None, "both manifests and layers"),
    ({"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [], "config": CONFIG},
     None, None, "both manifests"),
    (json.loads(oci_manifest()), m.OCI_INDEX, None, "the Content-Type says " + m.OCI_INDEX),
    (json.loads(oci_manifest()), None, m.OCI_INDEX, "descriptor's mediaType says"),
    (json.loads(oci_manifest()), m.DOCKER_MANIFEST, None, "does not match the Content-Type"),
    (dict(json.loads(oci_manifest()), mediaType=m.OCI_INDEX), None, None, "its mediaType says"),
    ({"schemaVersion": 2, "mediaType": m.OCI_MANIFEST, "manifests": []}, None, None,
     "document is an index"),
])
def test_ambiguous_documents_are_refused(doc, content_type, expected, why):
    with pytest.raises(ConfigError) as err:
        m.parse(json.dumps(doc).encode(), content_type, expected)
    assert "ambiguous" in str(err.value) and why in str(err.value)


@pytest.mark.parametrize("data,content_type,exc,why", [
    (b'{"schemaVersion": 1, "name": "x", "fsLayers": []}', None, Unsupported, "schema 1"),
    (oci_manifest(), m.DOCKER_SCHEMA1[1], Unsupported, "schema 1"),
    (b'{"schemaVersion": 3, "config": {}, "layers": []}', None, ConfigError, "must be 2"),
    (b'{"schemaVersion": true, "config": {}, "layers": []}', None, ConfigError, "must be 2"),
    (b'[]', None, ConfigError, "JSON object"),
    (b'{"a": 1, "a": 2}', None, ConfigError, "duplicate key 'a'"),
    (b'\xff{}', None, ConfigError, "not UTF-8"),
    (b'{', None, ConfigError, "invalid JSON"),
    (b'{"schemaVersion": 2}', None, ConfigError, "neither"),
    (b" " * (m.MAX_MANIFEST_SIZE + 1), None, ConfigError, "over the 4194304-byte limit"),
    (oci_manifest(), "text/html", Unsupported, "not an image manifest"),
    (oci_manifest(config=dict(CONFIG, mediaType="application/vnd.cncf.helm.config.v1+json")),
     None, Unsupported, "not a container image"),
    (oci_manifest(layers=[dict(LAYER, mediaType="application/x-tar-bomb")]), None, Unsupported,
     "layers[0]: layer mediaType"),
    (oci_manifest(layers=[dict(LAYER, digest="sha256:xyz")]), None, ConfigError,
     "layers[0]: digest"),
    (oci_manifest(layers=[dict(LAYER, size=-1)]), None, ConfigError, "size must be"),
    (oci_manifest(layers=[dict(LAYER, size=True)]), None, ConfigError, "size must be"),
    (oci_manifest(layers=[dict(LAYER, urls="http://x")]), None, ConfigError, "urls"),
    (oci_manifest(layers=[LAYER] * (m.MAX_LAYERS + 1)), None, ConfigError, "over the limit"),
    (oci_manifest(annotations={"a": 1}), None, ConfigError, "annotations"),
    (oci_manifest(layers={}), None, ConfigError, "layers must be a list"),
])
def test_bad_documents(data, content_type, exc, why):
    with pytest.raises(exc) as err:
        m.parse(data, content_type, name="image r.io/x:1")
    assert why in str(err.value) and str(err.value).startswith("image r.io/x:1")


def test_index_limits():
    with pytest.raises(ConfigError, match="1001 entries is over the limit of 1000"):
        index(*[entry("amd64")] * 1001)
    with pytest.raises(Unsupported, match="schema 1"):
        index(entry("amd64", media_type=m.DOCKER_SCHEMA1[0]))
    with pytest.raises(ConfigError, match="platform must be an object"):
        index(dict(entry("amd64"), platform="linux/amd64"))
    m.check_depth(m.MAX_INDEX_DEPTH, "x")
    with pytest.raises(ConfigError, match="nested more than 2 deep"):
        m.check_depth(m.MAX_INDEX_DEPTH + 1, "x")


MULTI = [entry("amd64"), entry("arm", "v6"), entry("arm", "v7"), entry("arm64", "v8"),
         entry("ppc64le"), entry("s390x")]


@pytest.mark.parametrize("arch,want", [
    ("amd64", "amd64"), ("armhf", "armv7"), ("arm64", "arm64v8"), ("ppc64le", "ppc64le"),
    ("x86_64", "amd64"), ("aarch64", "arm64v8"), ("arm/v7", "armv7"), ("ppc64el", "ppc64le"),
])
def test_select_platform(arch, want):
    assert m.select(index(*MULTI), arch, "x").digest == dig(want)


def test_select_conventions():
    # "arm" without variant is v7; arm64 without variant is v8; the exact variant wins.
    assert m.select(index(entry("arm")), "armhf", "x").digest == dig("arm")
    assert m.select(index(entry("arm64"), entry("arm64", "v8")), "arm64", "x").digest == \
        dig("arm64v8")
    assert m.select(index(entry("arm64")), "arm64", "x").digest == dig("arm64")
    with pytest.raises(NotFound):
        m.select(index(entry("arm", "v6")), "armhf", "x")
    with pytest.raises(NotFound):
        m.select(index(entry("amd64", os="windows")), "amd64", "x")


def test_no_matching_platform_lists_what_the_image_has():
    idx = index(entry("amd64"), entry("arm64"), entry("arm64", "v8"),
                entry("unknown", os="unknown"),
                {"mediaType": m.OCI_MANIFEST, "digest": dig("x"), "size": 1})
    with pytest.raises(NotFound) as err:
        m.select(idx, "armhf", "r.io/app:1")
    assert str(err.value) == ("image r.io/app:1 has no linux/arm/v7 variant "
                              "(has: linux/amd64, linux/arm64, linux/arm64/v8, unknown)")


def test_arch_names():
    assert str(m.platform_for("armhf")) == "linux/arm/v7"
    assert str(m.platform_for("arm64")) == "linux/arm64/v8"
    assert str(m.platform_for("amd64")) == "linux/amd64"
    assert m.host_arch("x86_64") == "amd64" and m.host_arch("armv7l") == "armhf"
    assert m.host_arch("aarch64") == "arm64" and m.host_arch("ppc64le") == "ppc64le"
    with pytest.raises(Unsupported, match="give --arch"):
        m.host_arch("mips")
    with pytest.raises(Unsupported, match="edgert supports amd64, armhf, arm64, ppc64le"):
        m.arch_name("riscv64")


def config(diff_ids, **extra):
    doc = {"architecture": "arm", "variant": "v7", "os": "linux",
           "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    doc.update(extra)
    return json.dumps(doc).encode()


def test_config_and_chain_ids():
    a, b, c = dig("a"), dig("b"), dig("c")
    cfg = m.parse_config(config([a, b, c]), 3)
    assert cfg.platform == m.Platform("linux", "arm", "v7")
    assert cfg.config == {"Cmd": ["sh"]}
    ab = dig(a + " " + b)
    assert cfg.chain_ids == [a, ab, dig(ab + " " + c)]
    m.check_config_platform(cfg, "armhf", "x")
    with pytest.raises(NotFound) as err:
        m.check_config_platform(cfg, "arm64", "x")
    assert str(err.value) == "image x has no linux/arm64/v8 variant (has: linux/arm/v7)"
    assert m.chain_ids([]) == []


@pytest.mark.parametrize("data,layers,why", [
    (config([dig("a")]), 2, "1 diff IDs for 2 layers"),
    (config([dig("a"), dig("b")]), 1, "2 diff IDs for 1 layers"),
    (config(["sha256:nothex"]), 1, "diff_ids[0]"),
    (config([dig("a")], rootfs={"type": "nope", "diff_ids": []}), 1, "rootfs.type"),
    (config([dig("a")], rootfs={"type": "layers"}), 1, "diff_ids must be a list"),
    (config([dig("a")], architecture=5), 1, "architecture must be a string"),
    (config([dig("a")], config=[]), 1, "config must be an object"),
    (b"{" + b" " * m.MAX_CONFIG_SIZE + b"}", 1, "limit for image configs"),
])
def test_bad_configs(data, layers, why):
    with pytest.raises(ConfigError) as err:
        m.parse_config(data, layers)
    assert why in str(err.value)


def test_digest_verifier_streams():
    data = b"x" * 1000
    v = digest.Verifier(dig("x" * 1000), 1000)
    for i in range(0, 1000, 300):
        v.update(data[i:i + 300])
    assert v.finish() == dig("x" * 1000) and v.received == 1000
    sha512 = digest.of(data, "sha512")
    v = digest.Verifier(sha512, None)
    v.update(data)
    assert v.finish() == sha512


def test_digest_verifier_catches_mismatches_early():
    v = digest.Verifier(dig("abc"), 3, "blob B")
    with pytest.raises(digest.DigestMismatch, match="blob B: more data than its declared size"):
        v.update(b"abcd")
    v = digest.Verifier(dig("abc"), 3)
    v.update(b"ab")
    with pytest.raises(digest.DigestMismatch, match="got 2 bytes, expected 3"):
        v.finish()
    v = digest.Verifier(dig("abc"), 3)
    v.update(b"abd")
    with pytest.raises(digest.DigestMismatch, match="digest mismatch \\(content hashes to"):
        v.finish()
    with pytest.raises(ConfigError, match="unsupported algorithm 'md5'"):
        digest.Verifier("md5:" + "0" * 32)
    assert digest.check(dig("a")) == dig("a")
