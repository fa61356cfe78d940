"""A client for the OCI distribution API over HTTP(S): manifests and blobs, with auth.

Each request goes through one loop (``_request``) that
- adds the Authorization this registry and repository need (auth.py has the flow),
  answering one 401 per request with the Basic or Bearer challenge it carries;
- follows redirects (blobs often live on another host: the Authorization is dropped there);
- retries connection failures, 429 and 5xx with bounded exponential backoff.

Blobs stream to ``DEST.partial`` and are checked against their size and digest while they
arrive. An existing ``.partial`` (a dropped link, a killed pull) is re-hashed and continued
with an HTTP Range request; a server that ignores Range (200) restarts it, one that refuses
it (416) too. Only a verified blob is renamed to DEST, so a DEST that exists is complete.
"""

import http.client
import os
import socket
import time

from .. import __version__, jsonfast
from ..errors import ConfigError, EdgertError, NotFound
from ..fsutil import fsync_dir
from . import auth as _auth
from . import digest as _digest
from . import manifest as _manifest

CHUNK = 256 << 10
MAX_REDIRECTS = 5
MAX_ERROR_BODY = 64 << 10
CERT_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
# A wall clock outside these years is likely unset (no RTC battery, no NTP yet).
PLAUSIBLE_YEARS = (2024, 2100)
_REDIRECTS = (301, 302, 303, 307, 308)


PROBE_TIMEOUT = 3.0  # seconds for the TLS-or-plain probe of --tls-verify=false


class RegistryError(EdgertError):
    """The registry could not be reached or answered something unusable."""

    code = "registry"


class Resolved:
    """An image manifest chosen for one architecture, with its config."""

    def __init__(self, digest, manifest, manifest_bytes, config, config_bytes, index_digest):
        self.digest = digest
        self.manifest = manifest
        self.manifest_bytes = manifest_bytes
        self.config = config
        self.config_bytes = config_bytes
        self.index_digest = index_digest


class Registry:
    """One registry host (``host[:port]``); safe for sequential use from one thread.

    ``creds``: auth.Credentials or None. ``tls_verify=False``: HTTPS without verification,
    falling back to plain HTTP. ``cert_dir``: CA certificates (``*.crt``) and client
    certificates (``*.cert`` + ``*.key``) to trust and present; by default
    /etc/containers/certs.d/HOST or /etc/docker/certs.d/HOST when present.
    ``sleep``, ``clock`` and ``monotonic`` are injectable for tests. ``clock_synced``: whether
    the host clock is NTP-synced (the daemon's signal, as in /host/.time-status), which
    explains certificate failures; None: unknown, judged by the year.
    """

    def __init__(self, host, creds=None, tls_verify=True, cert_dir=None, timeout=30.0,
                 retries=5, backoff=0.5, max_backoff=30.0, sleep=time.sleep, clock=time.time,
                 monotonic=time.monotonic, clock_synced=None):
        self.host = host
        self.creds = creds
        self.tls_verify = tls_verify
        self.cert_dir = cert_dir if cert_dir is not None else _default_cert_dir(host)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.clock = clock
        self.clock_synced = clock_synced
        self.monotonic = monotonic
        self._scheme = "https" if tls_verify else None
        self._connections = {}
        self._ssl_context = None
        self._basic = None
        self._tokens = {}

    def close(self):
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()

    # -- public API -------------------------------------------------------------------------

    def get_manifest(self, repo, ref, accept=_manifest.ACCEPT):
        """(media_type, bytes, digest) of the manifest or index ``ref`` (a tag or digest).

        The digest is computed from the bytes; fetching by digest verifies it, and a tag's
        Docker-Content-Digest header must agree with it.
        """
        image = _image_name(self.host, repo, ref)
        by_digest = ":" in ref
        if by_digest:
            _digest.check(ref, "image %s: digest" % image)
        resp, data = self._get_small("/v2/%s/manifests/%s" % (repo, ref), repo, image,
                                     {"Accept": accept}, _manifest.MAX_MANIFEST_SIZE,
                                     "image %s: not found" % image, "manifest unknown")
        media_type = (resp.getheader("Content-Type") or "").partition(";")[0].strip()
        if by_digest:
            got = _digest.of(data, ref.partition(":")[0])
            if got != ref:
                raise _digest.DigestMismatch("image %s: manifest hashes to %s" % (image, got))
            return media_type, data, ref
        got = _digest.of(data)
        claimed = resp.getheader("Docker-Content-Digest")
        if claimed and _digest.problem_of(claimed) is None:
            if _digest.of(data, claimed.partition(":")[0]) != claimed:
                raise _digest.DigestMismatch("image %s: manifest hashes to %s, but the "
                                             "registry says %s" % (image, got, claimed))
        return media_type, data, got

    def get_blob(self, repo, digest, size, limit):
        """The bytes of a small blob (an image config), verified; at most ``limit`` bytes."""
        image = _image_name(self.host, repo)
        if size > limit:
            raise ConfigError("image %s: blob %s: %d bytes is over the limit of %d"
                              % (image, digest, size, limit))
        verifier = _digest.Verifier(digest, size, "image %s: blob %s" % (image, digest))
        _, data = self._get_small("/v2/%s/blobs/%s" % (repo, digest), repo, image, {}, size,
                                  "image %s: blob %s not found" % (image, digest), "blob unknown")
        verifier.update(data)
        verifier.finish()
        return data

    def fetch_blob(self, repo, digest, size, dest_path, progress=None):
        """Downloads blob ``digest`` of ``size`` bytes to ``dest_path``, verified.

        Resumes a ``dest_path + ".partial"`` left by an earlier attempt. ``progress(done,
        total)`` is called as bytes arrive. On a digest or size mismatch nothing is left
        behind and DigestMismatch is raised.
        """
        image = _image_name(self.host, repo)
        name = "image %s: blob %s" % (image, digest)
        partial = dest_path + ".partial"
        verifier, offset = _resume(partial, digest, size, name)
        resumed = offset > 0
        failures = 0
        try:
            while offset < size:
                resp = self._blob_response(repo, digest, image, offset)
                if offset and resp.status in (200, 416):
                    # Range refused or ignored: start again from the first byte.
                    if resp.status == 416:
                        self._discard(resp)
                    verifier, offset = _restart(partial, digest, size, name)
                    if resp.status == 416:
                        continue
                elif resp.status not in (200, 206):
                    raise self._http_error(resp, image)
                elif resp.status == 206 and _range_start(resp) != offset:
                    self._discard(resp, 0)
                    raise RegistryError("%s: the registry answered Range bytes=%d- with %r"
                                        % (name, offset, resp.getheader("Content-Range")))
                _check_length(resp, size - offset, name)
                before = offset
                offset, error = self._stream(resp, partial, verifier, offset, progress)
                if error is None and offset < size:
                    error = "connection closed after %d of %d bytes" % (offset, size)
                if error is not None:
                    self._discard(resp, 0)
                    failures = 0 if offset > before else failures + 1
                    if failures > self.retries:
                        raise RegistryError("%s: download failed after %d attempts: %s"
                                            % (name, failures, error))
                    self._wait(max(failures, 1))
            verifier.finish()
        except _digest.DigestMismatch:
            self.close()  # the connection may be mid-body
            _remove(partial)
            if resumed:  # the saved prefix may be what was wrong (power loss): once more, fresh
                return self.fetch_blob(repo, digest, size, dest_path, progress)
            raise
        _commit(partial, dest_path)
        return dest_path

    def resolve(self, repo, ref, arch):
        """The Resolved image ``ref`` for edgert architecture ``arch``, following indexes."""
        image = _image_name(self.host, repo, ref)
        media_type, data, digest = self.get_manifest(repo, ref)
        doc = _manifest.parse(data, media_type, name="image %s" % image)
        index_digest, depth = None, 0
        while doc.kind == "index":
            depth += 1
            _manifest.check_depth(depth, image)
            index_digest = index_digest or digest
            entry = _manifest.select(doc, arch, image)
            media_type, data, digest = self.get_manifest(repo, entry.digest)
            if len(data) != entry.size:
                raise _digest.DigestMismatch("image %s: manifest %s has %d bytes, the index "
                                             "says %d" % (image, digest, len(data), entry.size))
            doc = _manifest.parse(data, media_type, entry.media_type,
                                  name="image %s: manifest %s" % (image, digest))
        config_bytes = self.get_blob(repo, doc.config.digest, doc.config.size,
                                     _manifest.MAX_CONFIG_SIZE)
        config = _manifest.parse_config(config_bytes, len(doc.layers),
                                        name="image %s: config" % image)
        _manifest.check_config_platform(config, arch, image)
        return Resolved(digest, doc, data, config, config_bytes, index_digest)

    def _get_small(self, path, repo, image, headers, limit, missing, unknown):
        """(response, body) of a GET whose body must fit in ``limit`` bytes; a connection
        lost while reading is retried like one lost before the answer. A 404 raises
        NotFound("MISSING (the registry's reason or UNKNOWN)")."""
        attempt = 0
        while True:
            resp = self._request("GET", path, repo, image, headers)
            if resp.status == 404:
                detail = self._error_detail(resp, with_code=False)
                raise NotFound("%s (%s)" % (missing, detail or unknown))
            if resp.status != 200:
                raise self._http_error(resp, image)
            try:
                data = resp.read(limit + 1)
            except (OSError, http.client.HTTPException) as e:
                self._discard(resp, 0)
                attempt += 1
                if attempt > self.retries:
                    raise RegistryError("registry %s (image %s): %s (gave up after %d attempts)"
                                        % (self.host, image, _describe(e), attempt)) from None
                self._wait(attempt)
                continue
            self._discard(resp, 0)
            if len(data) > limit:
                raise ConfigError("image %s: %s is over the %d-byte limit"
                                  % (image, path.rsplit("/", 2)[1][:-1], limit))
            return resp, data

    # -- blobs -------------------------------------------------------------------------------

    def _blob_response(self, repo, digest, image, offset):
        headers = {"Range": "bytes=%d-" % offset} if offset else {}
        resp = self._request("GET", "/v2/%s/blobs/%s" % (repo, digest), repo, image, headers)
        if resp.status == 404:
            detail = self._error_detail(resp, with_code=False)
            raise NotFound("image %s: blob %s not found (%s)"
                           % (image, digest, detail or "blob unknown"))
        return resp

    def _stream(self, resp, partial, verifier, offset, progress):
        """Appends the body to ``partial``: (new offset, None or the network error text)."""
        total = verifier.size
        with open(partial, "ab") as out:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    return offset, _describe(e)
                if not chunk:
                    return offset, None
                verifier.update(chunk)
                out.write(chunk)
                offset += len(chunk)
                if progress is not None:
                    progress(offset, total)

    # -- the request loop --------------------------------------------------------------------

    def _request(self, method, path, repo, image, headers=None, body=None):
        """The response to ``method path`` after auth, redirects and retries (body unread)."""
        url, attempt, redirects, authenticated = None, 0, 0, False
        while True:
            send = {"User-Agent": "edgert/" + __version__}
            send.update(headers or {})
            try:
                if url is None:  # the first try, or a retry: from the registry itself
                    url = self._base_url() + path
                scheme, netloc, target = _split_url(url)
                # credentials go only to the registry, and never over a downgraded scheme
                on_registry = (scheme, netloc) == (self._scheme, self.host)
                if on_registry:
                    authorization = self._authorization(repo)
                    if authorization:
                        send["Authorization"] = authorization
                resp = self._send(scheme, netloc, method, target, send, body)
            except _TLSError as e:
                raise self._tls_error(e.__cause__, netloc, image) from None
            except (OSError, http.client.HTTPException) as e:
                attempt += 1
                if attempt > self.retries:
                    raise RegistryError("registry %s (image %s): %s (gave up after %d attempts)"
                                        % (self.host, image, _describe(e), attempt)) from None
                self._wait(attempt)
                url = None
                continue
            status = resp.status
            if status in _REDIRECTS and resp.getheader("Location"):
                self._discard(resp)
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise RegistryError("registry %s (image %s): more than %d redirects"
                                        % (self.host, image, MAX_REDIRECTS))
                url = _join_url(url, resp.getheader("Location"))
                continue
            if status == 401 and on_registry and not authenticated:
                challenge = resp.getheader("WWW-Authenticate") or ""
                self._discard(resp)
                self._authenticate(challenge, repo, image)
                authenticated = True
                continue
            if status == 401 and on_registry:
                self._discard(resp)
                raise self._auth_failed(image)
            if status >= 500 or status == 429:
                self._discard(resp)
                attempt += 1
                if attempt > self.retries:
                    raise RegistryError("registry %s (image %s): HTTP %d %s (gave up after %d "
                                        "attempts)" % (self.host, image, status, resp.reason,
                                                       attempt))
                self._wait(attempt, _retry_after(resp))
                url = None
                continue
            return resp

    def _send(self, scheme, netloc, method, target, headers, body):
        conn = self._connection(scheme, netloc)
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
        except BaseException as e:
            conn.close()
            self._connections.pop((scheme, netloc), None)
            if hasattr(e, "verify_code"):  # ssl.SSLCertVerificationError
                raise _TLSError() from e
            raise
        resp.connection_key = (scheme, netloc)
        return resp

    def _connection(self, scheme, netloc):
        conn = self._connections.get((scheme, netloc))
        if conn is None:
            host, port = _host_port(netloc)
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, port, timeout=self.timeout,
                                                   context=self._tls_context())
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            self._connections[(scheme, netloc)] = conn
        return conn

    def _base_url(self):
        if self._scheme is None:
            self._scheme = self._probe_scheme()
        return "%s://%s" % (self._scheme, self.host)

    def _probe_scheme(self):
        """With --tls-verify=false: "https" if the registry speaks TLS, else "http"."""
        import ssl
        host, port = _host_port(self.host)
        with socket.create_connection((host, port or 443), timeout=self.timeout) as sock:
            # A plain-HTTP server may sit silent on a TLS hello, waiting for a request line:
            # a short handshake deadline tells it apart without a 30 s stall.
            sock.settimeout(min(self.timeout, PROBE_TIMEOUT))
            try:
                with self._tls_context().wrap_socket(sock, server_hostname=host):
                    return "https"
            except (ssl.SSLError, socket.timeout, ConnectionResetError):
                return "http"

    def _tls_context(self):
        if self._ssl_context is None:
            import ssl
            if self.tls_verify:
                ctx = ssl.create_default_context()
            else:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.cert_dir:
                _load_cert_dir(ctx, self.cert_dir)
            self._ssl_context = ctx
        return self._ssl_context

    def _wait(self, attempt, hint=None):
        delay = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        if hint is not None:
            delay = min(self.max_backoff, max(delay, hint))
        self.sleep(delay)

    def _discard(self, resp, limit=MAX_ERROR_BODY):
        """Up to ``limit`` bytes of the body; the connection is dropped if more remain, since
        the next response on it would start with the rest."""
        try:
            data = resp.read(limit) if limit else b""
        except (OSError, http.client.HTTPException):
            data = b""
        if not resp.isclosed():
            resp.close()
            conn = self._connections.pop(resp.connection_key, None)
            if conn is not None:
                conn.close()
        return data

    # -- auth --------------------------------------------------------------------------------

    def _authorization(self, repo):
        if self._basic:
            return self._basic
        token = self._tokens.get(repo)
        if token is not None and token.expires_at > self.monotonic():
            return _auth.bearer_authorization(token)
        return None

    def _authenticate(self, header, repo, image):
        try:
            scheme, params = _auth.choose_challenge(_auth.parse_challenges(header))
        except _auth.AuthError as e:
            raise _auth.AuthError("registry %s (image %s): %s" % (self.host, image, e)) from None
        if scheme == "basic":
            if self.creds is None:
                raise self._auth_failed(image)
            if self.creds.password is None:
                raise _auth.AuthError("registry %s (image %s) wants a password; the identity "
                                      "token works only with token auth" % (self.host, image))
            self._basic = _auth.basic_authorization(self.creds)
            return
        try:
            method, url, headers, body = _auth.token_request(params, repo, self.creds)
        except _auth.AuthError as e:
            raise _auth.AuthError("registry %s (image %s): %s" % (self.host, image, e)) from None
        self._tokens[repo] = self._fetch_token(method, url, headers, body, image)

    def _fetch_token(self, method, url, headers, body, image):
        attempt = 0
        while True:
            scheme, netloc, target = _split_url(url)
            try:
                resp = self._send(scheme, netloc, method, target, headers, body)
                data = self._discard(resp, MAX_ERROR_BODY + 1)
            except _TLSError as e:
                raise self._tls_error(e.__cause__, netloc, image) from None
            except (OSError, http.client.HTTPException) as e:
                resp, data = None, _describe(e)
            if resp is not None and resp.status == 200:
                return _auth.parse_token_response(data, self.monotonic())
            if resp is not None and resp.status in (401, 403):
                raise self._auth_failed(image)
            if resp is not None and resp.status < 500 and resp.status != 429:
                raise _auth.AuthError("token server %s for registry %s (image %s): HTTP %d %s"
                                      % (netloc, self.host, image, resp.status, resp.reason))
            attempt += 1
            if attempt > self.retries:
                what = ("HTTP %d" % resp.status) if resp is not None else data
                raise _auth.AuthError("token server %s for registry %s (image %s): %s"
                                      % (netloc, self.host, image, what))
            self._wait(attempt)

    def _auth_failed(self, image):
        if self.creds is None:
            return _auth.AuthError("authentication required for registry %s (image %s): give "
                                   "--creds or --authfile" % (self.host, image))
        return _auth.AuthError("authentication failed for registry %s (image %s) as user %r: "
                               "check --creds or --authfile"
                               % (self.host, image, self.creds.username))

    # -- errors ------------------------------------------------------------------------------

    def _http_error(self, resp, image):
        detail = self._error_detail(resp)
        if resp.status == 403:
            return _auth.AuthError("registry %s (image %s): access denied%s" % (
                self.host, image, ": " + detail if detail else ""))
        return RegistryError("registry %s (image %s): HTTP %d %s%s" % (
            self.host, image, resp.status, resp.reason, ": " + detail if detail else ""))

    def _error_detail(self, resp, with_code=True):
        """The registry's reason from an error body, with any secret it echoes removed."""
        detail = _error_detail(self._discard(resp), with_code)
        return _auth.redact(detail, self.creds, *self._tokens.values())

    def _tls_error(self, error, netloc, image):
        reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or error
        message = "registry %s (image %s): TLS certificate verification failed for %s: %s" % (
            self.host, image, netloc, reason)
        now = self.clock()
        year = time.gmtime(now).tm_year
        if self.clock_synced is False:
            message += (" (the host clock is not NTP-synced yet, so certificate dates cannot "
                        "be trusted: the system time is %s; the pull is retried)"
                        % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now)))
        elif self.clock_synced is None and not PLAUSIBLE_YEARS[0] <= year < PLAUSIBLE_YEARS[1]:
            message += " (possibly caused by an unsynced clock: the system time is %s)" % (
                time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now)))
        else:
            message += " (give --cert-dir with the registry's CA certificate, or " \
                       "--tls-verify=false for a lab registry)"
        return RegistryError(message)


def load_credentials(host, repository, creds=None, authfile=None, environ=None, uid=None):
    """Credentials for pulling ``host/repository``, or None for anonymous access.

    ``creds`` (``--creds USER:PASS``) wins; then ``authfile`` (``--authfile``), which must
    exist; then the auth files podman and docker read by default (auth.authfile_paths).
    ``host`` is the reference's (``docker.io``, not the API host).
    """
    if creds:
        return _auth.parse_creds(creds)
    if authfile:
        paths = [authfile]
    else:
        paths = _auth.authfile_paths(os.environ if environ is None else environ,
                                     os.getuid() if uid is None else uid)
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            if authfile:
                raise NotFound("--authfile %s: no such file" % path) from None
            continue
        try:
            doc = jsonfast.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ConfigError("%s: not a JSON auth file" % path) from None
        found = _auth.find_credentials(doc, host, repository, source=path)
        if found is not None:
            return found
    return None


class _TLSError(Exception):
    """Marks a certificate verification failure (the ssl error is its __cause__)."""


def _image_name(host, repo, ref=None):
    if ref is None:
        return "%s/%s" % (host, repo)
    return "%s/%s%s%s" % (host, repo, "@" if ":" in ref else ":", ref)


def _default_cert_dir(host):
    for base in CERT_DIRS:
        path = os.path.join(base, host)
        if os.path.isdir(path):
            return path
    return None


def _load_cert_dir(ctx, cert_dir):
    try:
        names = sorted(os.listdir(cert_dir))
    except OSError as e:
        raise OSError(e.errno, "read --cert-dir: %s" % os.strerror(e.errno), cert_dir) from None
    for name in names:
        path = os.path.join(cert_dir, name)
        try:
            if name.endswith(".crt"):
                ctx.load_verify_locations(cafile=path)
            elif name.endswith(".cert"):
                ctx.load_cert_chain(path, path[:-5] + ".key")
        except (OSError, ValueError) as e:
            raise ConfigError("--cert-dir %s: %s: %s" % (cert_dir, name, e)) from None


def _split_url(url):
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise RegistryError("unsupported URL %r" % url)
    netloc, slash, path = rest.partition("/")
    return scheme, netloc, slash + path if slash else "/"


def _join_url(base, location):
    if "://" in location.partition("?")[0]:
        return location
    scheme, netloc, path = _split_url(base)
    if location.startswith("//"):
        return scheme + ":" + location
    if not location.startswith("/"):
        location = path.partition("?")[0].rpartition("/")[0] + "/" + location
    return "%s://%s%s" % (scheme, netloc, location)


def _host_port(netloc):
    if netloc.startswith("["):
        address, _, port = netloc[1:].partition("]")
        return address, int(port[1:]) if port else None
    host, _, port = netloc.partition(":")
    return host, int(port) if port else None


def _error_detail(body, with_code=True):
    """The first ``errors[].code: message`` of a distribution API error body, or ""."""
    try:
        error = jsonfast.loads(body.decode("utf-8"))["errors"][0]
        text = error.get("message", "")
        if with_code:
            text = ("%s: %s" % (error.get("code", ""), text)).strip(": ")
        return text[:200]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, UnicodeDecodeError):
        return ""


def _retry_after(resp):
    value = resp.getheader("Retry-After") or ""
    return int(value) if value.isdigit() else None


def _describe(error):
    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return "connection closed mid-body"
    if isinstance(error, http.client.RemoteDisconnected):
        return "connection closed by the server"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower() if error.errno else error.strerror
    return str(error) or type(error).__name__


def _range_start(resp):
    # "bytes START-END/TOTAL"
    value = resp.getheader("Content-Range") or ""
    unit, _, spec = value.partition(" ")
    start = spec.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


def _check_length(resp, expected, name):
    length = resp.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) != expected:
        resp.close()
        raise _digest.DigestMismatch("%s: the registry sends %s bytes, expected %d"
                                     % (name, length, expected))


def _resume(partial, digest, size, name):
    """(verifier fed with the saved prefix, its length); a too-long prefix is discarded."""
    verifier = _digest.Verifier(digest, size, name)
    try:
        with open(partial, "rb") as f:
            if os.fstat(f.fileno()).st_size > size:
                return _restart(partial, digest, size, name)
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                verifier.update(chunk)
    except FileNotFoundError:
        return verifier, 0
    return verifier, verifier.received


def _restart(partial, digest, size, name):
    with open(partial, "wb"):
        pass
    return _digest.Verifier(digest, size, name), 0


def _remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _commit(partial, dest_path):
    """Makes the verified download durable, then gives it its final name."""
    if not os.path.exists(partial):  # a zero-byte blob never opened one
        open(partial, "wb").close()
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(partial, dest_path)
    fsync_dir(os.path.dirname(os.path.abspath(dest_path)))
