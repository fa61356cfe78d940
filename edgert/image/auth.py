"""Registry authentication without I/O: challenges, token requests, credentials, redaction.

The distribution API's flow:

    client                         registry                       token server (realm)
      | GET /v2/REPO/manifests/TAG --> |
      | <-- 401 WWW-Authenticate: Bearer realm=R,service=S,scope=repository:REPO:pull
      | GET R?service=S&scope=repository:REPO:pull  (Authorization: Basic, if creds) ------> |
      | <------------------------------------------------- {"token": T, "expires_in": 300} |
      | GET ... Authorization: Bearer T --> |
      | <-- 200                             |

A ``Basic`` challenge instead means sending the credentials to the registry itself.
GCR (user ``oauth2accesstoken`` + access token, or ``_json_key`` + a JSON key file) and
GHCR (user + personal access token) need nothing special: they are basic credentials given
to the token server. An auth file's ``identitytoken`` is an OAuth2 refresh token, POSTed to
the realm instead. Secrets never reach a repr, a log line or an error: see ``redact``.
"""

import binascii

from .. import jsonfast
from ..errors import ConfigError, EdgertError, Unsupported

DEFAULT_TOKEN_LIFETIME = 60  # seconds; the spec's default when expires_in is missing
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                         "!#$%&'*+-.^_`|~")
_UNRESERVED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
# Auth-file keys that mean Docker Hub.
_DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io",
                    "https://index.docker.io/v1/", "https://index.docker.io/v1")


class AuthError(EdgertError):
    """The registry or token server refused us, or its answer made no sense."""

    code = "auth"


class Credentials:
    """A user name with a password or an identity (refresh) token; repr shows no secret."""

    __slots__ = ("username", "password", "identity_token")

    def __init__(self, username, password=None, identity_token=None):
        self.username = username
        self.password = password
        self.identity_token = identity_token

    def secrets(self):
        """Every string that must never be shown, including encoded forms."""
        found = [s for s in (self.password, self.identity_token) if s]
        if self.password:
            found.append(_b64("%s:%s" % (self.username, self.password)))
        return found

    def __repr__(self):
        return "Credentials(%r, ***)" % self.username

    def __eq__(self, other):
        return isinstance(other, Credentials) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)


class Token:
    """A bearer token and when (on the caller's monotonic clock) to stop using it."""

    __slots__ = ("value", "expires_at", "issued_at")

    def __init__(self, value, expires_at, issued_at=None):
        self.value = value
        self.expires_at = expires_at
        self.issued_at = issued_at

    def __repr__(self):
        return "Token(***, expires_at=%r)" % self.expires_at


def parse_creds(text):
    """Credentials from ``--creds USER[:PASS]``; the password may itself contain ":"."""
    username, sep, password = text.partition(":")
    if not username:
        raise ConfigError("--creds: expected USER:PASSWORD, the user name is empty")
    if not sep or not password:
        raise ConfigError("--creds: no password given for user %r (expected USER:PASSWORD)"
                          % username)
    return Credentials(username, password)


def find_credentials(authfile, host, repository=None, source="auth file"):
    """Credentials for ``host`` (and ``repository``) from a parsed docker/podman auth.json.

    Keys may name a repository (``host/ns/repo``, podman) or a namespace; the longest match
    wins, then the host, then Docker Hub's legacy URL keys. None when nothing matches.
    """
    if not isinstance(authfile, dict):
        raise ConfigError("%s: must be a JSON object" % source)
    auths = authfile.get("auths", {})
    if not isinstance(auths, dict):
        raise ConfigError("%s: auths must be an object" % source)
    candidates = []
    if repository:
        parts = repository.split("/")
        candidates += ["%s/%s" % (host, "/".join(parts[:n])) for n in range(len(parts), 0, -1)]
    candidates.append(host)
    if host in _DOCKER_HUB_KEYS:
        candidates += _DOCKER_HUB_KEYS
    normalised = {}
    for key in auths:
        bare = key
        for prefix in ("https://", "http://"):
            if bare.startswith(prefix):
                bare = bare[len(prefix):]
        normalised.setdefault(bare.rstrip("/"), key)
        normalised.setdefault(key, key)
    for candidate in candidates:
        key = normalised.get(candidate)
        if key is not None:
            return _entry_credentials(auths[key], "%s: auths[%r]" % (source, key))
    helpers = authfile.get("credHelpers") or {}
    if host in helpers or authfile.get("credsStore"):
        raise Unsupported("%s: credential helpers (credHelpers/credsStore) are not supported: "
                          "log in with an auth file entry or give --creds" % source)
    return None


def _entry_credentials(entry, where):
    if not isinstance(entry, dict):
        raise ConfigError("%s: must be an object" % where)
    identity_token = entry.get("identitytoken") or None
    encoded = entry.get("auth")
    if encoded:
        try:
            decoded = binascii.a2b_base64(encoded.encode("ascii")).decode("utf-8")
        except (binascii.Error, UnicodeError, AttributeError):
            raise ConfigError("%s: auth is not base64 of USER:PASSWORD" % where) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ConfigError("%s: auth is not base64 of USER:PASSWORD" % where)
        return Credentials(username, password or None, identity_token)
    username, password = entry.get("username"), entry.get("password")
    if username and (password or identity_token):
        return Credentials(username, password or None, identity_token)
    if identity_token:
        return Credentials("", None, identity_token)
    return None


def authfile_paths(environ, uid):
    """Where podman and docker look for auth files, in their order of precedence."""
    paths = []
    if environ.get("REGISTRY_AUTH_FILE"):
        paths.append(environ["REGISTRY_AUTH_FILE"])
    if environ.get("XDG_RUNTIME_DIR"):
        paths.append(environ["XDG_RUNTIME_DIR"].rstrip("/") + "/containers/auth.json")
    elif uid == 0:
        paths.append("/run/containers/0/auth.json")
    else:
        paths.append("/run/user/%d/containers/auth.json" % uid)
    if environ.get("DOCKER_CONFIG"):
        paths.append(environ["DOCKER_CONFIG"].rstrip("/") + "/config.json")
    if environ.get("HOME"):
        paths.append(environ["HOME"].rstrip("/") + "/.docker/config.json")
    return paths


def parse_challenges(header):
    """[(scheme, {param: value})] from a WWW-Authenticate header (RFC 7235).

    Scheme names are lowercased; parameter names too. Malformed input raises AuthError.
    """
    parser = _HeaderParser(header)
    challenges = []
    while parser.skip_separators():
        scheme = parser.token()
        if not scheme:
            raise AuthError("WWW-Authenticate %r: expected an auth scheme at offset %d"
                            % (header, parser.pos))
        params = {}
        parser.skip_spaces()
        while not parser.done():
            mark = parser.pos
            name = parser.token()
            parser.skip_spaces()
            if not (name and parser.peek() == "=" and parser.peek(1) != "="):
                parser.pos = mark
                if not params:  # a token68 credential (e.g. Negotiate): not used here
                    parser.take_token68()
                break
            parser.pos += 1
            parser.skip_spaces()
            params[name.lower()] = parser.quoted() if parser.peek() == '"' else parser.token()
            parser.skip_spaces()
            if not parser.take(",") or _starts_challenge(parser):
                break
        challenges.append((scheme.lower(), params))
    return challenges


def _starts_challenge(parser):
    # After a comma: "name=" continues the parameters, "Scheme name=..." starts a challenge.
    parser.skip_spaces()
    mark = parser.pos
    parser.token()
    parser.skip_spaces()
    is_param = parser.peek() == "="
    parser.pos = mark
    return not is_param


class _HeaderParser:
    def __init__(self, text):
        self.text = text
        self.pos = 0

    def done(self):
        return self.pos >= len(self.text)

    def peek(self, ahead=0):
        return self.text[self.pos + ahead:self.pos + ahead + 1]

    def take(self, ch):
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def skip_spaces(self):
        while not self.done() and self.peek() in " \t":
            self.pos += 1

    def skip_separators(self):
        while not self.done() and self.peek() in " \t,":
            self.pos += 1
        return not self.done()

    def token(self):
        start = self.pos
        while not self.done() and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        return self.text[start:self.pos]

    def take_token68(self):
        start = self.pos
        while not self.done() and self.text[self.pos] not in " \t,":
            self.pos += 1
        return self.pos > start

    def quoted(self):
        self.pos += 1
        out = []
        while not self.done():
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "\\" and not self.done():
                out.append(self.text[self.pos])
                self.pos += 1
            elif ch == '"':
                return "".join(out)
            else:
                out.append(ch)
        raise AuthError("WWW-Authenticate %r: unterminated quoted string" % self.text)


def choose_challenge(challenges):
    """The challenge to answer: Bearer over Basic; AuthError when neither is offered."""
    for wanted in ("bearer", "basic"):
        for scheme, params in challenges:
            if scheme == wanted:
                return scheme, params
    raise AuthError("registry offers only %s authentication; edgert supports Bearer and Basic"
                    % (", ".join(s for s, _ in challenges) or "no"))


def scope_for(repository, actions="pull"):
    return "repository:%s:%s" % (repository, actions)


def token_request(params, repository, creds=None, actions="pull"):
    """(method, url, headers, body) asking the token server of a Bearer challenge for a token.

    The scope is the challenge's when it names one (the registry knows best), else
    ``repository:REPO:pull``. With an identity token: an OAuth2 refresh-token POST.
    """
    realm = params.get("realm")
    if not realm or not (realm.startswith("https://") or realm.startswith("http://")):
        raise AuthError("Bearer challenge without a usable realm URL (got %r)" % realm)
    scope = params.get("scope") or scope_for(repository, actions)
    query = [("scope", scope)]
    if params.get("service"):
        query.insert(0, ("service", params["service"]))
    headers = {}
    if creds is not None and creds.identity_token:
        form = query + [("grant_type", "refresh_token"), ("client_id", "edgert"),
                        ("refresh_token", creds.identity_token)]
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return "POST", realm, headers, urlencode(form).encode()
    if creds is not None and creds.password is not None:
        headers["Authorization"] = basic_authorization(creds)
    separator = "&" if "?" in realm else "?"
    return "GET", realm + separator + urlencode(query), headers, None


def parse_token_response(body, now):
    """A Token from the token server's JSON; ``now`` is the caller's monotonic clock.

    The expiry counts from ``now``, not from ``issued_at``: a device's wall clock may be far
    off, and the token server's lifetime is what matters.
    """
    try:
        doc = jsonfast.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise AuthError("token server answered with something that is not JSON") from None
    if not isinstance(doc, dict):
        raise AuthError("token server answer is not a JSON object")
    value = doc.get("token") or doc.get("access_token")
    if not isinstance(value, str) or not value:
        raise AuthError("token server answer has no token")
    lifetime = doc.get("expires_in", DEFAULT_TOKEN_LIFETIME)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    issued_at = doc.get("issued_at")
    return Token(value, now + max(lifetime, DEFAULT_TOKEN_LIFETIME) - 10,
                 issued_at if isinstance(issued_at, str) else None)


def basic_authorization(creds):
    return "Basic " + _b64("%s:%s" % (creds.username, creds.password or ""))


def bearer_authorization(token):
    return "Bearer " + token.value


def redact(text, *secret_holders):
    """``text`` with every secret of the given Credentials/Tokens/strings replaced by ***."""
    secrets = []
    for holder in secret_holders:
        if holder is None:
            continue
        if isinstance(holder, Credentials):
            secrets += holder.secrets()
        elif isinstance(holder, Token):
            secrets.append(holder.value)
        else:
            secrets.append(holder)
    for secret in sorted(set(s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
        quoted = quote(secret)  # it may have travelled in a URL
        if quoted != secret:
            text = text.replace(quoted, "***")
    return text


def quote(text):
    """Percent-encodes everything but RFC 3986's unreserved characters."""
    return "".join(chr(b) if b in _UNRESERVED else "%%%02X" % b for b in text.encode("utf-8"))


def urlencode(pairs):
    return "&".join("%s=%s" % (quote(k), quote(v)) for k, v in pairs)


def _b64(text):
    return binascii.b2a_base64(text.encode("utf-8"), newline=False).decode("ascii")
