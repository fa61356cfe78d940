"""Session fixtures: a busybox multi-arch image pushed once to a real docker-registry, then
served from the same storage with no auth, htpasswd basic auth, token auth and HTTPS."""

import os
import shutil

import pytest

from tests.helpers import registry as h
from tests.helpers.registry import TOKEN_USERS, USERS

def _need_peers():
    if not os.path.exists(h.REGISTRY_BIN):
        pytest.skip("needs docker-registry (Debian package docker-registry)")
    h.need("skopeo", "openssl", "htpasswd", "dpkg-deb")


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory):
    """(OCI layout dir, {ref: manifest digest}) of the multi-arch busybox image."""
    _need_peers()
    layout = str(tmp_path_factory.mktemp("busybox-oci") / "layout")
    return layout, h.build_busybox_layout(layout)


@pytest.fixture(scope="session")
def storage(tmp_path_factory):
    return str(tmp_path_factory.mktemp("registry-storage"))


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory, storage, busybox_layout):
    """A registry with no auth over plain HTTP, holding busybox:{ARCH,latest}."""
    server = h.RegistryServer(str(tmp_path_factory.mktemp("plain")), storage)
    try:
        h.push_busybox(busybox_layout[0], server.host)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory, storage, plain_registry):
    work = str(tmp_path_factory.mktemp("basic"))
    server = h.RegistryServer(work, storage, auth=h.htpasswd_auth(work, USERS))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory, storage, plain_registry):
    """(registry, token server) in token-auth mode; anonymous pulls are refused."""
    work = str(tmp_path_factory.mktemp("token"))
    cert, key = h.make_cert(work, "token-signer")
    tokens = h.TokenServer(key, cert, TOKEN_USERS)
    server = h.RegistryServer(work, storage, auth=h.token_auth(tokens.realm, cert))
    yield server, tokens
    server.stop()
    tokens.stop()


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory, storage, plain_registry):
    """(registry over HTTPS with a self-signed certificate, a --cert-dir trusting it)."""
    work = str(tmp_path_factory.mktemp("tls"))
    cert, key = h.make_cert(work)
    cert_dir = os.path.join(work, "certs.d")
    os.mkdir(cert_dir)
    shutil.copy(cert, os.path.join(cert_dir, "ca.crt"))
    server = h.RegistryServer(work, storage, tls=(cert, key))
    yield server, cert_dir
    server.stop()


@pytest.fixture
def fake():
    server = h.FakeRegistry()
    yield server
    server.stop()
