"""Image reference grammar: transports, Docker Hub defaults, the distribution spec's rules."""

import os
import subprocess

import pytest

from edgert.errors import ConfigError
from edgert.image import reference
from edgert.image.reference import Reference

D256 = "sha256:" + "a" * 64
D512 = "sha512:" + "b" * 128


@pytest.mark.parametrize("text,host,repo,tag,digest", [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("docker://busybox", "docker.io", "library/busybox", "latest", None),
    ("user/app:v1", "docker.io", "user/app", "v1", None),
    ("docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None),
    ("ghcr.io/org/team/app:v1.2.3", "ghcr.io", "org/team/app", "v1.2.3", None),
    ("docker://127.0.0.1:5000/busybox:amd64", "127.0.0.1:5000", "busybox", "amd64", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/a/b", "localhost:5000", "a/b", "latest", None),
    ("gcr.io/proj/img@" + D256, "gcr.io", "proj/img", None, D256),
    ("reg.example:443/img:t@" + D512, "reg.example:443", "img", "t", D512),
    ("[::1]:5000/img:t", "[::1]:5000", "img", "t", None),
    ("r.io/a.b/c__d/e---f/g_h:_T.x-1", "r.io", "a.b/c__d/e---f/g_h", "_T.x-1", None),
])
def test_docker_references(text, host, repo, tag, digest):
    ref = reference.parse(text)
    assert (ref.transport, ref.host, ref.repository, ref.tag, ref.digest) == (
        "docker", host, repo, tag, digest)
    assert ref.ref == (digest or tag)
    assert reference.parse(str(ref)) == ref


def test_docker_hub_api_host():
    assert reference.parse("busybox").api_host == "registry-1.docker.io"
    assert reference.parse("quay.io/a/b").api_host == "quay.io"
    assert reference.parse("busybox").name == "docker.io/library/busybox"


@pytest.mark.parametrize("text,transport,path,tag", [
    ("oci:/var/images/bb", "oci", "/var/images/bb", None),
    ("oci:/var/images/bb:v1.0", "oci", "/var/images/bb", "v1.0"),
    ("oci:rel/dir:latest", "oci", "rel/dir", "latest"),
    ("oci-archive:/tmp/bb.tar", "oci-archive", "/tmp/bb.tar", None),
    ("oci-archive:/tmp/bb.tar:arm64", "oci-archive", "/tmp/bb.tar", "arm64"),
    ("docker-archive:/tmp/save.tar", "docker-archive", "/tmp/save.tar", None),
])
def test_local_transports(text, transport, path, tag):
    ref = reference.parse(text)
    assert (ref.transport, ref.path, ref.tag) == (transport, path, tag)
    assert str(ref) == text


def test_docker_archive_with_name():
    ref = reference.parse("docker-archive:/tmp/s.tar:busybox:1")
    assert (ref.path, ref.name, ref.tag) == ("/tmp/s.tar", "docker.io/library/busybox", "1")
    assert reference.parse(str(ref)) == ref


@pytest.mark.parametrize("text,why", [
    ("", "non-empty"),
    ("Foo//bar", "repository component 'Foo'"),
    ("foo//bar", "empty path component"),
    ("Busybox", "lowercase"),
    ("busybox:", "empty tag"),
    ("busybox:-x", "must start with"),
    ("busybox:" + "t" * 129, "longer than 128"),
    ("busybox:a+b", "not allowed"),
    ("a/b-/c", "repository component 'b-'"),
    ("a/b..c", "repository component"),
    ("a/b___c", "repository component"),
    ("a/_b", "repository component"),
    ("r.io/x/", "empty path component"),
    ("r.io:99999/x", "port"),
    ("r.io:abc/x", "port"),
    ("-r.io/x", "host name label"),
    ("r..io/x", "host name label"),
    ("x@sha256:abc", "needs 64 hex digits"),
    ("x@sha256:" + "A" * 64, "lowercase hexadecimal"),
    ("x@md5:" + "a" * 32, "unsupported algorithm 'md5'"),
    ("x@sha512:" + "a" * 64, "needs 128"),
    ("x@", "expected algorithm:hex"),
    ("r.io/" + "a" * 251, "longer than 255"),
    ("ftp://x/y", "unknown transport"),
    ("dir:/tmp/x", "not supported"),
    ("oci:", "missing the path"),
    ("oci:/x:-bad", "must start and end"),
    ("oci:/x:a b", "not allowed"),
    ("docker-archive:/x:y@" + D256, "cannot have a digest"),
    ("r.io/:tag", "empty path component"),
])
def test_invalid_references(text, why):
    with pytest.raises(ConfigError) as err:
        reference.parse(text)
    message = str(err.value)
    assert message.startswith('image reference "%s": ' % text), message
    assert why in message
    assert "\n" not in message


def test_reference_equality_and_repr():
    a = reference.parse("busybox")
    assert a == Reference("docker", "docker.io", "library/busybox", "latest")
    assert hash(a) == hash(reference.parse("docker.io/library/busybox:latest"))
    assert repr(a) == "Reference('docker.io/library/busybox:latest')"


def test_pure_image_modules_do_not_import_re():
    code = ("from edgert.image import reference, manifest, auth, digest; "
            "reference.parse('r.io/a/b:c'); auth.parse_challenges('Bearer realm=\"x\"'); "
            "print('re' in sys.modules)")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c",
                          "import sys; sys.path.insert(0, %r); " % repo + code],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
