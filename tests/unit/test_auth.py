"""Registry auth without I/O: challenges, token requests and answers, auth files, redaction."""

import base64
import json

import pytest

from edgert.errors import ConfigError, Unsupported
from edgert.image import auth
from edgert.image.auth import AuthError, Credentials

GCR_KEY = json.dumps({"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\n"
                      "MIIEv:Q==\n-----END PRIVATE KEY-----\n", "client_email": "a@b.iam"},
                     indent=2)


@pytest.mark.parametrize("header,want", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:library/busybox:pull"',
     [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                  "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ('BASIC Realm=plain', [("basic", {"realm": "plain"})]),
    ('Bearer realm="a" , service="s", Basic realm="b"',
     [("bearer", {"realm": "a", "service": "s"}), ("basic", {"realm": "b"})]),
    (r'Bearer realm="x\"y\\z",error="insufficient_scope"',
     [("bearer", {"realm": 'x"y\\z', "error": "insufficient_scope"})]),
    ('Negotiate abc==, Basic realm="x"', [("negotiate", {}), ("basic", {"realm": "x"})]),
    ('Basic, Bearer realm="r"', [("basic", {}), ("bearer", {"realm": "r"})]),
    ('Bearer realm="a,b=c",scope="repository:x:pull,push"',
     [("bearer", {"realm": "a,b=c", "scope": "repository:x:pull,push"})]),
    ("", []),
])
def test_parse_challenges(header, want):
    assert auth.parse_challenges(header) == want


def test_malformed_challenges():
    with pytest.raises(AuthError, match="unterminated"):
        auth.parse_challenges('Bearer realm="abc')
    with pytest.raises(AuthError, match="expected an auth scheme"):
        auth.parse_challenges('Bearer realm="a" "junk"')


def test_choose_challenge():
    both = auth.parse_challenges('Basic realm="b", Bearer realm="https://t"')
    assert auth.choose_challenge(both)[0] == "bearer"
    with pytest.raises(AuthError, match="only negotiate authentication"):
        auth.choose_challenge(auth.parse_challenges("Negotiate"))


def test_anonymous_token_request():
    method, url, headers, body = auth.token_request(
        {"realm": "https://auth.example/token", "service": "reg.example"}, "lib/busy box")
    assert (method, headers, body) == ("GET", {}, None)
    assert url == ("https://auth.example/token?service=reg.example"
                   "&scope=repository%3Alib%2Fbusy%20box%3Apull")


def test_token_request_keeps_the_challenge_scope_and_realm_query():
    _, url, _, _ = auth.token_request({"realm": "https://a/t?x=1", "scope": "repository:z:pull"},
                                      "ignored")
    assert url == "https://a/t?x=1&scope=repository%3Az%3Apull"


@pytest.mark.parametrize("creds", [
    Credentials("user", "pa:ss w0rd"),
    Credentials("oauth2accesstoken", "ya29.a0AfH6SMBx-token_value"),  # GCR access token
    Credentials("_json_key", GCR_KEY),                                 # GCR JSON key file
    Credentials("octocat", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),  # GHCR PAT
])
def test_basic_credentials_go_to_the_token_server_unchanged(creds):
    method, _, headers, _ = auth.token_request({"realm": "https://t/token"}, "r", creds)
    assert method == "GET"
    scheme, encoded = headers["Authorization"].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == "%s:%s" % (creds.username, creds.password)


def test_identity_token_is_a_refresh_token_post():
    creds = Credentials("", None, "refresh-me")
    method, url, headers, body = auth.token_request(
        {"realm": "https://t/token", "service": "s"}, "r", creds)
    assert (method, url) == ("POST", "https://t/token")
    assert headers == {"Content-Type": "application/x-www-form-urlencoded"}
    assert body == (b"service=s&scope=repository%3Ar%3Apull&grant_type=refresh_token"
                    b"&client_id=edgert&refresh_token=refresh-me")


@pytest.mark.parametrize("realm", [None, "", "ftp://x/token", "/token"])
def test_token_request_needs_a_realm_url(realm):
    with pytest.raises(AuthError, match="realm"):
        auth.token_request({"realm": realm} if realm is not None else {}, "r")


def test_parse_token_response():
    token = auth.parse_token_response(
        b'{"token": "T", "expires_in": 300, "issued_at": "2026-01-01T00:00:00Z"}', 1000.0)
    assert (token.value, token.expires_at, token.issued_at) == (
        "T", 1290.0, "2026-01-01T00:00:00Z")
    assert auth.parse_token_response(b'{"access_token": "A"}', 0).value == "A"
    # missing, silly or tiny lifetimes: at least the spec's 60 s minimum (minus a margin)
    assert auth.parse_token_response(b'{"token": "T"}', 0).expires_at == 50
    assert auth.parse_token_response(b'{"token": "T", "expires_in": 5}', 0).expires_at == 50
    assert auth.parse_token_response(b'{"token": "T", "expires_in": "x"}', 0).expires_at == 50
    assert "s3cr3t" not in repr(auth.parse_token_response(b'{"token": "s3cr3t"}', 0))


@pytest.mark.parametrize("body,why", [
    (b"<html>", "not JSON"), (b"[]", "not a JSON object"), (b'{"token": ""}', "no token"),
    (b'{"token": 5}', "no token"), (b"\xff", "not JSON"),
])
def test_bad_token_responses(body, why):
    with pytest.raises(AuthError, match=why):
        auth.parse_token_response(body, 0)


def test_parse_creds():
    assert auth.parse_creds("u:p:q") == Credentials("u", "p:q")
    assert auth.parse_creds("_json_key:" + GCR_KEY) == Credentials("_json_key", GCR_KEY)
    for bad, why in (("u", "no password"), ("u:", "no password"), (":p", "user name is empty")):
        with pytest.raises(ConfigError, match=why):
            auth.parse_creds(bad)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def test_find_credentials_in_auth_file():
    authfile = {"auths": {
        "reg.example": {"auth": b64("host:pw")},
        "reg.example/team": {"auth": b64("team:pw2")},
        "reg.example/team/app": {"auth": b64("app:pw:3")},
        "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
        "http://old.example/": {"auth": b64("old:pw")},
        "gcr.io": {"auth": b64("_json_key:" + GCR_KEY)},
        "ghcr.io": {"username": "octocat", "password": "ghp_x"},
        "tok.example": {"auth": "", "identitytoken": "idt"},
    }}
    find = auth.find_credentials
    assert find(authfile, "reg.example", "other") == Credentials("host", "pw")
    assert find(authfile, "reg.example", "team/x") == Credentials("team", "pw2")
    assert find(authfile, "reg.example", "team/app") == Credentials("app", "pw:3")
    assert find(authfile, "docker.io", "library/busybox") == Credentials("hub", "pw")
    assert find(authfile, "old.example", "x") == Credentials("old", "pw")
    assert find(authfile, "gcr.io", "p/i") == Credentials("_json_key", GCR_KEY)
    assert find(authfile, "ghcr.io", "o/i") == Credentials("octocat", "ghp_x")
    assert find(authfile, "tok.example", "x") == Credentials("", None, "idt")
    assert find(authfile, "none.example", "x") is None
    assert find({}, "none.example") is None


@pytest.mark.parametrize("authfile,why", [
    ([], "must be a JSON object"),
    ({"auths": []}, "auths must be an object"),
    ({"auths": {"r": "x"}}, "auths['r']: must be an object"),
    ({"auths": {"r": {"auth": "!!!"}}}, "not base64"),
    ({"auths": {"r": {"auth": b64("nocolon")}}}, "not base64 of USER:PASSWORD"),
])
def test_bad_auth_files(authfile, why):
    with pytest.raises(ConfigError) as err:
        auth.find_credentials(authfile, "r", source="/etc/auth.json")
    assert str(err.value).startswith("/etc/auth.json: ") and why in str(err.value)


def test_credential_helpers_are_refused_not_ignored():
    with pytest.raises(Unsupported, match="credential helpers"):
        auth.find_credentials({"credHelpers": {"gcr.io": "gcloud"}}, "gcr.io", "p/i")


def test_authfile_paths():
    env = {"REGISTRY_AUTH_FILE": "/a.json", "XDG_RUNTIME_DIR": "/run/user/5/", "HOME": "/h"}
    assert auth.authfile_paths(env, 5) == ["/a.json", "/run/user/5/containers/auth.json",
                                           "/h/.docker/config.json"]
    assert auth.authfile_paths({"DOCKER_CONFIG": "/d"}, 0) == [
        "/run/containers/0/auth.json", "/d/config.json"]
    assert auth.authfile_paths({}, 7) == ["/run/user/7/containers/auth.json"]


def test_redact_hides_every_form_of_a_secret():
    creds = Credentials("_json_key", GCR_KEY)
    token = auth.Token("tok.en", 0)
    header = auth.basic_authorization(creds)
    text = "sent %s and pw %s and %s in url ?p=%s, Bearer %s" % (
        header, creds.password, auth.quote(creds.password), auth.quote(creds.password),
        token.value)
    clean = auth.redact(text, creds, token, None)
    assert GCR_KEY not in clean and "tok.en" not in clean and header[6:] not in clean
    assert "private_key" not in clean and auth.quote(GCR_KEY) not in clean
    assert clean.count("***") == 5
    assert "ghp" not in repr(Credentials("u", "ghp_secret"))
    assert repr(Credentials("u", "ghp_secret")) == "Credentials('u', ***)"


def test_tls_probe_does_not_stall_on_a_silent_plain_http_server(monkeypatch):
    """--tls-verify=false probes TLS first; a plain-HTTP server that waits for a request line
    never answers the TLS hello, and the probe must fall back to http quickly."""
    import socket
    import threading
    import time
    from edgert.image import registry
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def silent():
        conn, _ = server.accept()
        while conn.recv(4096):  # never answers: waits for a request line that never comes
            pass
        conn.close()
    thread = threading.Thread(target=silent, daemon=True)
    thread.start()
    monkeypatch.setattr(registry, "PROBE_TIMEOUT", 0.3)
    reg = registry.Registry("127.0.0.1:%d" % port, tls_verify=False)
    start = time.monotonic()
    try:
        assert reg._probe_scheme() == "http"
    finally:
        server.close()
    assert time.monotonic() - start < 5
