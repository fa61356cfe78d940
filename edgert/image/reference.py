"""Image references in the transport:reference convention of podman and skopeo.

    docker://HOST[:PORT]/REPO[:TAG][@DIGEST]    a registry image (``docker://`` may be left out)
    oci:PATH[:TAG]                               an OCI image layout directory
    oci-archive:PATH[:TAG]                       a tar of an OCI image layout
    docker-archive:PATH[:NAME[:TAG]]             ``docker save`` output

Registry names follow the distribution spec's grammar: the first path component is a
registry host when it contains "." or ":" or is "localhost"; otherwise the image is on
Docker Hub (``docker.io``), and a one-component name gets the ``library/`` namespace.
Without a tag or digest the tag is "latest". ``PATH`` cannot contain ":" (as in skopeo).
The grammar is checked by hand, without ``re``, to keep imports light.
"""

from ..errors import ConfigError
from . import digest as _digest

TRANSPORTS = ("docker", "oci", "oci-archive", "docker-archive")
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
MAX_NAME_LENGTH = 255
MAX_TAG_LENGTH = 128

_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_TAG_CHARS = _ALNUM | frozenset("_.-")
_HOST_CHARS = _ALNUM | frozenset("-")
_DIGITS = frozenset("0123456789")
_OCI_TAG_SEPARATORS = frozenset("-._:@/+")


class Reference:
    """One parsed image reference. ``host``/``repository``/``tag``/``digest`` are set for
    registry images (and for a docker-archive name); ``path`` for the local transports."""

    __slots__ = ("transport", "host", "repository", "tag", "digest", "path")

    def __init__(self, transport, host=None, repository=None, tag=None, digest=None, path=None):
        self.transport = transport
        self.host = host
        self.repository = repository
        self.tag = tag
        self.digest = digest
        self.path = path

    @property
    def ref(self):
        """What to ask a registry for: the digest when there is one, else the tag."""
        return self.digest or self.tag

    @property
    def name(self):
        """``host/repository``, e.g. ``docker.io/library/busybox``."""
        return "%s/%s" % (self.host, self.repository) if self.repository else None

    @property
    def api_host(self):
        """The host serving the distribution API (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    def __str__(self):
        if self.transport == "docker":
            return self.name + (":" + self.tag if self.tag else "") + (
                "@" + self.digest if self.digest else "")
        text = "%s:%s" % (self.transport, self.path)
        if self.transport == "docker-archive" and self.repository:
            return "%s:%s:%s" % (text, self.name, self.tag)
        return text + (":" + self.tag if self.tag else "")

    def __repr__(self):
        return "Reference(%r)" % str(self)

    def __eq__(self, other):
        return isinstance(other, Reference) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __hash__(self):
        return hash(str(self))


def parse(text):
    """The Reference for ``text``; ConfigError ``image reference "TEXT": why`` if invalid."""
    if not isinstance(text, str) or not text:
        raise _invalid(text, "must be a non-empty string")
    transport, sep, rest = text.partition(":")
    if sep and rest.startswith("//"):
        if transport != "docker":
            raise _invalid(text, "unknown transport %r (expected %s)" % (
                transport + "://", ", ".join(t + ":" for t in TRANSPORTS)))
        return _parse_docker(text, rest[2:])
    if sep and transport in ("oci", "oci-archive"):
        path, _, tag = rest.partition(":")
        _check_path(text, path)
        if tag:
            _check_oci_tag(text, tag)
        return Reference(transport, tag=tag or None, path=path)
    if sep and transport == "docker-archive":
        path, _, name = rest.partition(":")
        _check_path(text, path)
        if not name:
            return Reference(transport, path=path)
        named = _parse_docker(text, name)
        if named.digest:
            raise _invalid(text, "a docker-archive name cannot have a digest")
        return Reference(transport, named.host, named.repository, named.tag, path=path)
    if sep and transport in ("docker", "containers-storage", "dir", "docker-daemon"):
        raise _invalid(text, "transport %r is not supported (use docker://, oci:, "
                             "oci-archive: or docker-archive:)" % (transport + ":"))
    return _parse_docker(text, text)


def _invalid(text, why):
    return ConfigError('image reference "%s": %s' % (text, why), code="invalid-reference")


def _check_path(text, path):
    if not path:
        raise _invalid(text, "missing the path after the transport")


def _check_oci_tag(text, tag):
    # The layout's org.opencontainers.image.ref.name: alphanumeric components joined by
    # separators, starting and ending with an alphanumeric.
    if tag[0] not in _ALNUM or tag[-1] not in _ALNUM:
        raise _invalid(text, "tag %r must start and end with a letter or digit" % tag)
    for ch in tag:
        if ch not in _ALNUM and ch not in _OCI_TAG_SEPARATORS:
            raise _invalid(text, "tag %r: character %r is not allowed" % (tag, ch))


def _parse_docker(text, rest):
    name, at, digest_text = rest.partition("@")
    digest = None
    if at:
        digest = digest_text
        problem = _digest.problem_of(digest)
        if problem:
            raise _invalid(text, "digest: " + problem)
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:  # a colon after the last "/" starts the tag, not a port
        name, tag = name[:colon], name[colon + 1:]
        _check_tag(text, tag)
    if not name:
        raise _invalid(text, "missing the repository name")
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, path = first, remainder
        _check_host(text, host)
    else:
        host, path = DOCKER_HUB, name
    if host == DOCKER_HUB and "/" not in path:
        path = "library/" + path
    _check_repository(text, path)
    if len(host) + 1 + len(path) > MAX_NAME_LENGTH:
        raise _invalid(text, "name longer than %d characters" % MAX_NAME_LENGTH)
    if tag is None and digest is None:
        tag = "latest"
    return Reference("docker", host, path, tag, digest)


def _check_tag(text, tag):
    if not tag:
        raise _invalid(text, "empty tag after ':'")
    if len(tag) > MAX_TAG_LENGTH:
        raise _invalid(text, "tag longer than %d characters" % MAX_TAG_LENGTH)
    if tag[0] == "." or tag[0] == "-":
        raise _invalid(text, "tag %r must start with a letter, digit or '_'" % tag)
    for ch in tag:
        if ch not in _TAG_CHARS:
            raise _invalid(text, "tag %r: character %r is not allowed" % (tag, ch))


def _check_host(text, host):
    if host.startswith("["):  # [IPv6]:port
        end = host.find("]")
        address, port = host[1:end], host[end + 1:]
        if end < 0 or not address or not all(c in "0123456789abcdefABCDEF:." for c in address):
            raise _invalid(text, "registry host %r: bad IPv6 address" % host)
        if port and (port[0] != ":" or not _is_port(port[1:])):
            raise _invalid(text, "registry host %r: bad port" % host)
        return
    name, sep, port = host.partition(":")
    if sep and not _is_port(port):
        raise _invalid(text, "registry host %r: port must be a number from 1 to 65535" % host)
    for label in name.split("."):
        if (not label or label[0] == "-" or label[-1] == "-"
                or not _HOST_CHARS.issuperset(label)):
            raise _invalid(text, "registry host %r: %r is not a valid host name label"
                           % (host, label))


def _is_port(text):
    return bool(text) and len(text) <= 5 and _DIGITS.issuperset(text) and 0 < int(text) < 65536


def _check_repository(text, path):
    # path-component: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*, joined by "/".
    for component in path.split("/"):
        if not component:
            raise _invalid(text, "empty path component in repository %r" % path)
        if not _valid_component(component):
            raise _invalid(text, "repository component %r: use lowercase letters and digits, "
                           "separated by '.', '_', '__' or dashes" % component)


def _valid_component(component):
    i, n = 0, len(component)
    while True:
        start = i
        while i < n and component[i] in _LOWER_ALNUM:
            i += 1
        if i == start:
            return False
        if i == n:
            return True
        sep_start = i
        while i < n and component[i] not in _LOWER_ALNUM:
            i += 1
        separator = component[sep_start:i]
        if not (separator in (".", "_", "__") or set(separator) == {"-"}):
            return False
