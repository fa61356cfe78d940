"""Content digests (``algorithm:hex``): validation and verification while streaming.

Only sha256 and sha512 are accepted: the OCI image-spec registers those two, and an
unknown algorithm cannot be verified, so it must not be trusted either.
"""

import hashlib

from ..errors import ConfigError, EdgertError

ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")


class DigestMismatch(EdgertError):
    """Downloaded or stored content does not match its digest or size."""

    code = "digest-mismatch"


def check(digest, what="digest"):
    """``digest`` if it is a well-formed sha256/sha512 digest, else ConfigError naming ``what``."""
    problem = problem_of(digest)
    if problem:
        raise ConfigError("%s %r: %s" % (what, digest, problem), code="invalid-digest")
    return digest


def problem_of(digest):
    """Why ``digest`` is not a valid digest, or None when it is."""
    if not isinstance(digest, str):
        return "must be a string"
    algorithm, sep, hexpart = digest.partition(":")
    if not sep:
        return "expected algorithm:hex"
    if algorithm not in ALGORITHMS:
        return "unsupported algorithm %r (expected sha256 or sha512)" % algorithm
    if len(hexpart) != ALGORITHMS[algorithm]:
        return "%s needs %d hex digits, got %d" % (algorithm, ALGORITHMS[algorithm], len(hexpart))
    if not _HEX.issuperset(hexpart):
        return "hex part must be lowercase hexadecimal"
    return None


def of(data, algorithm="sha256"):
    """The digest of ``data`` (bytes)."""
    return "%s:%s" % (algorithm, hashlib.new(algorithm, data).hexdigest())


class Verifier:
    """Hashes a stream and checks it against an expected digest and size.

    ``update`` fails as soon as the stream grows past ``size``, so a hostile server cannot
    fill the disk; ``finish`` checks the total and the digest. ``name`` goes into messages.
    """

    def __init__(self, digest, size=None, name=None):
        check(digest)
        self.digest = digest
        self.size = size
        self.name = name or "blob %s" % digest
        self.received = 0
        self._hash = hashlib.new(digest.partition(":")[0])

    def update(self, chunk):
        self.received += len(chunk)
        if self.size is not None and self.received > self.size:
            raise DigestMismatch("%s: more data than its declared size of %d bytes"
                                 % (self.name, self.size))
        self._hash.update(chunk)

    def finish(self):
        """Raises DigestMismatch unless size and digest match; returns the digest."""
        if self.size is not None and self.received != self.size:
            raise DigestMismatch("%s: got %d bytes, expected %d"
                                 % (self.name, self.received, self.size))
        got = "%s:%s" % (self.digest.partition(":")[0], self._hash.hexdigest())
        if got != self.digest:
            raise DigestMismatch("%s: digest mismatch (content hashes to %s)" % (self.name, got))
        return got
