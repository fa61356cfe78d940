"""Registry peers for tests: Debian's docker-registry (CNCF distribution) with no auth,
htpasswd basic auth, token auth behind a token server of our own, or HTTPS; a multi-arch
busybox image built offline from Debian's busybox-static and pushed with skopeo; and a
scriptable fake registry for the faults a real one will not produce on demand.

The busybox debs come from a private apt root (its own lists, cache and status file: the
host's dpkg architectures and apt state are untouched) kept in EDGERT_TEST_CACHE
(default ~/.cache/edgert-tests) so later sessions work offline.
"""

import base64
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import threading
import time
import uuid

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
ARCHES = {  # Debian arch -> OCI platform
    "amd64": ("amd64", ""),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "ppc64el": ("ppc64le", ""),
}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
APPLETS = ("sh", "ls", "cat", "echo", "true", "false", "uname")
DOCKER_REPO = "busybox-docker"
TOKEN_SERVICE = "edgert-test-registry"
TOKEN_ISSUER = "edgert-test-issuer"
USERS = {"alice": "wonder:land pw"}
# The credentials GCR and GHCR users pass: each is just a user and password to the token server.
GCR_JSON_KEY = ('{\n  "type": "service_account",\n  "private_key": "-----BEGIN PRIVATE KEY-----'
                '\\nMIIEv:Q==\\n-----END PRIVATE KEY-----\\n",\n  "client_email": "pull@p.iam"\n}')
TOKEN_USERS = {"_json_key": GCR_JSON_KEY, "oauth2accesstoken": "ya29.a0AfH6SMB-secret",
               "octocat": "ghp_16C7e42F292c6912E7710c838347Ae178B4a"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with %d" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on 127.0.0.1:%d after %ds" % (port, timeout))


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def need(*programs):
    for program in programs:
        if not shutil.which(program):
            pytest.skip("needs %s" % program)


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that hang up mid-response are what the fault tests do


# -- certificates and tokens --------------------------------------------------------------------

def make_cert(directory, name="server"):
    """A self-signed RSA certificate for 127.0.0.1/localhost: (cert path, key path)."""
    cert, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert,
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims, key_path, cert_path):
    """An RS256 JWT whose x5c header carries the signing certificate (the registry's root)."""
    der = subprocess.run(["openssl", "x509", "-in", cert_path, "-outform", "DER"],
                         check=True, capture_output=True).stdout
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
    signing_input = "%s.%s" % (_b64url(json.dumps(header).encode()),
                               _b64url(json.dumps(claims).encode()))
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_path],
                               input=signing_input.encode(), check=True,
                               capture_output=True).stdout
    return signing_input + "." + _b64url(signature)


class TokenServer:
    """The token endpoint of a registry in token-auth mode, on 127.0.0.1.

    Grants what the scope asks for when the basic credentials match ``users`` (anonymous
    requests get pull access only if ``anonymous_pull``). Records every request.
    """

    def __init__(self, key_path, cert_path, users, anonymous_pull=False):
        self.key_path, self.cert_path = key_path, cert_path
        self.users = users
        self.anonymous_pull = anonymous_pull
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = "http://127.0.0.1:%d/token" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def _handle(self, req):
        from urllib.parse import parse_qs, urlsplit
        query = parse_qs(urlsplit(req.path).query)
        self.requests.append((req.path, dict(req.headers)))
        user = None
        authorization = req.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.users.get(name) != password:
                req.send_response(401)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
            user = name
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            wanted = actions.split(",")
            if user is None:
                wanted = [a for a in wanted if a == "pull" and self.anonymous_pull]
            access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        claims = {"iss": TOKEN_ISSUER, "sub": user or "", "aud": TOKEN_SERVICE,
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex,
                  "access": access}
        body = json.dumps({"token": sign_jwt(claims, self.key_path, self.cert_path),
                           "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# -- docker-registry ------------------------------------------------------------------------

class RegistryServer:
    """``docker-registry serve`` on 127.0.0.1 with a free port; ``host`` is 127.0.0.1:PORT."""

    def __init__(self, workdir, storage, auth=None, tls=None):
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "error", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": storage}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "edgert-test"},
        }
        if tls:
            config["http"]["tls"] = {"certificate": tls[0], "key": tls[1]}
        if auth:
            config["auth"] = auth
        path = os.path.join(workdir, "config.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        self.log = open(os.path.join(workdir, "registry.log"), "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", path], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, self.proc)
        except RuntimeError:
            self.stop()
            with open(os.path.join(workdir, "registry.log")) as f:
                raise RuntimeError("docker-registry did not start: " + f.read()[-2000:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def htpasswd_auth(workdir, users):
    path = os.path.join(workdir, "htpasswd")
    with open(path, "w") as f:
        for user, password in users.items():
            line = subprocess.run(["htpasswd", "-nbB", user, password], check=True,
                                  capture_output=True, text=True).stdout.strip()
            f.write(line + "\n")
    return {"htpasswd": {"realm": "edgert-test", "path": path}}


def token_auth(realm, cert_path):
    return {"token": {"realm": realm, "service": TOKEN_SERVICE, "issuer": TOKEN_ISSUER,
                      "rootcertbundle": cert_path}}


# -- the multi-arch busybox image ---------------------------------------------------------

def cache_dir():
    path = os.environ.get("EDGERT_TEST_CACHE") or os.path.expanduser("~/.cache/edgert-tests")
    os.makedirs(path, exist_ok=True)
    return path


def busybox_debs():
    """{debian arch: path of busybox-static .deb}, downloaded once through a private apt root."""
    root = os.path.join(cache_dir(), "busybox-debs")
    debs = {}
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith("busybox-static_") and name.endswith(".deb"):
                debs[name.rsplit("_", 1)[1][:-4]] = os.path.join(root, name)
    if set(debs) >= set(ARCHES):
        return debs
    apt = os.path.join(cache_dir(), "apt")
    for sub in ("lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(apt, sub), exist_ok=True)
    open(os.path.join(apt, "status"), "a").close()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    with open(os.path.join(apt, "sources.list"), "w") as f:
        f.write("deb [signed-by=%s] http://deb.debian.org/debian bookworm main\n"
                "deb [signed-by=%s] http://deb.debian.org/debian-security bookworm-security main\n"
                % (keyring, keyring))
    conf = os.path.join(apt, "apt.conf")
    with open(conf, "w") as f:
        f.write('Dir::State "%s";\nDir::State::Lists "%s/lists";\n'
                'Dir::State::status "%s/status";\n'
                'Dir::Cache "%s/cache";\nDir::Etc::SourceList "%s/sources.list";\n'
                'Dir::Etc::SourceParts "/nonexistent";\n'
                'APT::Architectures { "amd64"; "arm64"; "armhf"; "ppc64el"; };\n'
                'Acquire::Languages "none";\n' % (apt, apt, apt, apt, apt))
    env = dict(os.environ, APT_CONFIG=conf)
    os.makedirs(root, exist_ok=True)
    try:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True,
                       timeout=300)
        subprocess.run(["apt-get", "download", "-q"] + ["busybox-static:" + a for a in ARCHES],
                       env=env, cwd=root, check=True, capture_output=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        pytest.skip("cannot download busybox-static for all arches: %s" % e)
    return busybox_debs()


def _tar_layer(busybox):
    """A gzip tar layer: bin/busybox, applet symlinks, etc/passwd. (compressed, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind, data=b"", mode=0o755, target=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname = kind, mode, 1700000000, target
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
        for directory in ("bin", "etc", "tmp"):
            add(directory, tarfile.DIRTYPE)
        add("bin/busybox", tarfile.REGTYPE, busybox)
        for applet in APPLETS:
            add("bin/" + applet, tarfile.SYMTYPE, target="busybox", mode=0o777)
        add("etc/passwd", tarfile.REGTYPE, b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), digest_of(tar_bytes)


def build_busybox_layout(dest):
    """An OCI layout holding one busybox image per arch (ref names = Debian arch names)
    and an image index over all of them (ref name "latest"). Returns {ref: digest}."""
    debs = busybox_debs()
    blobs = os.path.join(dest, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        d = digest_of(data)
        with open(os.path.join(blobs, d[7:]), "wb") as f:
            f.write(data)
        return {"digest": d, "size": len(data)}

    refs, entries = {}, []
    for arch, (oci_arch, variant) in sorted(ARCHES.items()):
        extract = os.path.join(dest, "..", "deb-" + arch)
        subprocess.run(["dpkg-deb", "-x", debs[arch], extract], check=True)
        with open(os.path.join(extract, "bin", "busybox"), "rb") as f:
            layer, diff_id = _tar_layer(f.read())
        platform = {"os": "linux", "architecture": oci_arch}
        if variant:
            platform["variant"] = variant
        config = dict(platform, created="2023-11-14T22:13:20Z",
                      config={"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
                      rootfs={"type": "layers", "diff_ids": [diff_id]})
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": dict(put(json.dumps(config).encode()),
                                   mediaType="application/vnd.oci.image.config.v1+json"),
                    "layers": [dict(put(layer),
                                    mediaType="application/vnd.oci.image.layer.v1.tar+gzip")]}
        descriptor = dict(put(json.dumps(manifest).encode()), mediaType=OCI_MANIFEST)
        entries.append(dict(descriptor, platform=platform))
        refs[arch] = descriptor
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    refs["latest"] = dict(put(json.dumps(index).encode()), mediaType=OCI_INDEX)
    layout_index = {"schemaVersion": 2, "manifests": [
        dict(d, annotations={"org.opencontainers.image.ref.name": ref})
        for ref, d in sorted(refs.items())]}
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump(layout_index, f)
    with open(os.path.join(dest, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    return {ref: d["digest"] for ref, d in refs.items()}


def skopeo_push(layout, ref, host, dest_ref, creds=None, all_images=False):
    cmd = ["skopeo", "copy", "-q", "--dest-tls-verify=false", "--preserve-digests"]
    if all_images:
        cmd.append("--all")
    if creds:
        cmd += ["--dest-creds", creds]
    cmd += ["oci:%s:%s" % (layout, ref), "docker://%s/%s" % (host, dest_ref)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def push_busybox(layout, host, repo="busybox", creds=None):
    """Pushes each arch as tag ARCH and the OCI index as tag latest; and the same image
    converted to Docker schema 2 (a manifest list) as DOCKER_REPO:latest."""
    for arch in ARCHES:
        skopeo_push(layout, arch, host, "%s:%s" % (repo, arch), creds)
    skopeo_push(layout, "latest", host, repo + ":latest", creds, all_images=True)
    subprocess.run(["skopeo", "copy", "-q", "--all", "--format", "v2s2",
                    "--dest-tls-verify=false", "oci:%s:latest" % layout,
                    "docker://%s/%s:latest" % (host, DOCKER_REPO)],
                   check=True, capture_output=True, timeout=120)


# -- a scriptable fake registry -----------------------------------------------------------

class FakeRegistry:
    """A minimal distribution API server on 127.0.0.1 whose faults tests choose.

    ``manifests[(repo, ref)] = (content_type, bytes)``; ``blobs[digest] = bytes``.
    Faults: ``fail_next`` (N responses of 503), ``reset_next`` (N connections reset with a TCP
    RST before any response), ``drop_after[digest] = n`` (the next GET
    of that blob sends n bytes and cuts the connection), ``serve_instead[digest] = bytes``,
    ``ignore_range``, ``range_status`` (416), ``redirect_blobs_to`` (base URL),
    ``basic = (user, password)``, ``challenge`` (its 401s' WWW-Authenticate),
    ``status[path] = code`` (``echo_authorization``: its message quotes the request's
    Authorization header). ``requests`` logs
    (method, path, headers).
    """

    def __init__(self, host="127.0.0.1"):
        self.manifests, self.blobs = {}, {}
        self.fail_next = 0
        self.reset_next = 0
        self.drop_after, self.serve_instead = {}, {}
        self.ignore_range = False
        self.range_status = None
        self.redirect_blobs_to = None
        self.basic = None
        self.status = {}
        self.echo_authorization = False
        self.challenge = 'Basic realm="fake"'
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._handle(self)

            def do_HEAD(self):
                fake._handle(self)

        self.httpd = _QuietServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.host = "%s:%d" % (host, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_blob(self, data):
        d = digest_of(data)
        self.blobs[d] = data
        return d

    def _reply(self, req, code, body=b"", headers=()):
        req.send_response(code)
        for name, value in headers:
            req.send_header(name, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    def _error(self, req, code, error_code, message, headers=()):
        body = json.dumps({"errors": [{"code": error_code, "message": message}]}).encode()
        self._reply(req, code, body, [("Content-Type", "application/json")] + list(headers))

    def _handle(self, req):
        self.requests.append((req.command, req.path, dict(req.headers)))
        if self.reset_next:
            self.reset_next -= 1
            # SO_LINGER with a zero timeout: close() sends RST, the client sees ECONNRESET
            req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
            req.close_connection = True
            req.connection.close()
            return
        if self.fail_next:
            self.fail_next -= 1
            return self._error(req, 503, "UNAVAILABLE", "try later")
        if req.path in self.status:
            message = "status for test"
            if self.echo_authorization:  # a careless server quoting the request back
                message = "denied for %s" % req.headers.get("Authorization")
            return self._error(req, self.status[req.path], "DENIED", message,
                               [("WWW-Authenticate", self.challenge)])
        if self.basic:
            expected = "Basic " + base64.b64encode(("%s:%s" % self.basic).encode()).decode()
            if req.headers.get("Authorization") != expected:
                return self._error(req, 401, "UNAUTHORIZED", "authentication required",
                                   [("WWW-Authenticate", self.challenge)])
        parts = req.path.split("/")
        if len(parts) < 5 or parts[1] != "v2":
            return self._reply(req, 200 if req.path == "/v2/" else 404)
        kind, ref, repo = parts[-2], parts[-1], "/".join(parts[2:-2])
        if kind == "manifests":
            if (repo, ref) not in self.manifests:
                return self._error(req, 404, "MANIFEST_UNKNOWN", "manifest unknown")
            content_type, body = self.manifests[(repo, ref)]
            return self._reply(req, 200, body, [("Content-Type", content_type),
                                                ("Docker-Content-Digest", digest_of(body))])
        if kind != "blobs" or ref not in self.blobs:
            return self._error(req, 404, "BLOB_UNKNOWN", "blob unknown")
        if self.redirect_blobs_to:
            return self._reply(req, 307, headers=[("Location", self.redirect_blobs_to + req.path)])
        return self._send_blob(req, ref)

    def _send_blob(self, req, digest):
        data = self.serve_instead.get(digest, self.blobs[digest])
        start = 0
        range_header = req.headers.get("Range")
        if range_header and not self.ignore_range:
            if self.range_status:
                return self._reply(req, self.range_status)
            start = int(range_header.split("=")[1].split("-")[0])
        body = data[start:]
        req.send_response(206 if start else 200)
        if start:
            req.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        cut = self.drop_after.pop(digest, None)
        if cut is not None:
            req.wfile.write(body[:cut])
            req.wfile.flush()
            req.close_connection = True
            req.connection.shutdown(socket.SHUT_RDWR)
            return
        req.wfile.write(body)
