"""Builders of tar layers byte by byte, hostile ones included: every header field is a parameter.

Python's tarfile refuses to write most malformed archives, so members are assembled here
from raw 512-byte headers (ustar layout; GNU magic on request) with a correct checksum
unless a test asks for a bad one.
"""

import gzip
import hashlib
import subprocess

BLOCK = 512
POSIX_MAGIC = b"ustar\x0000"
GNU_MAGIC = b"ustar  \x00"

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _b(text):
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text


def _octal(value, width):
    return (b"%0*o" % (width - 1, value)) + b"\x00"


def header(name, kind=b"0", size=0, mode=0o644, uid=0, gid=0, mtime=1_600_000_000,
           linkname=b"", magic=POSIX_MAGIC, prefix=b"", devmajor=0, devminor=0,
           checksum=None, size_field=None):
    """One 512-byte header. ``checksum``: an int to store instead of the right one;
    ``size_field``: raw bytes for the 12-byte size field (malformed numbers)."""
    name, linkname, prefix = _b(name), _b(linkname), _b(prefix)
    hdr = bytearray(BLOCK)
    hdr[0:len(name[:100])] = name[:100]
    hdr[100:108] = _octal(mode, 8)
    hdr[108:116] = _octal(uid, 8)
    hdr[116:124] = _octal(gid, 8)
    hdr[124:136] = size_field if size_field is not None else _octal(size, 12)
    hdr[136:148] = _octal(mtime, 12)
    hdr[148:156] = b" " * 8
    hdr[156:157] = kind
    hdr[157:157 + len(linkname[:100])] = linkname[:100]
    hdr[257:265] = magic
    hdr[329:337] = _octal(devmajor, 8)
    hdr[337:345] = _octal(devminor, 8)
    if prefix:
        hdr[345:345 + len(prefix)] = prefix
    total = sum(hdr) if checksum is None else checksum
    hdr[148:156] = b"%06o\x00 " % total
    return bytes(hdr)


def pad(data):
    return data + bytes(-len(data) % BLOCK)


def member(name, data=b"", kind=b"0", **fields):
    """A header and its padded data; names or link targets over 100 bytes get a PAX header."""
    data = _b(data)
    fields.setdefault("size", len(data) if kind in (b"0", b"\x00", b"7") else 0)
    records = {}
    if len(_b(name)) > 100:
        records["path"] = name
    if len(_b(fields.get("linkname", b""))) > 100:
        records["linkpath"] = fields["linkname"]
    return (pax(records) if records else b"") + header(name, kind, **fields) + pad(data)


def file(name, data=b"", mode=0o644, **fields):
    return member(name, data, b"0", mode=mode, **fields)


def directory(name, mode=0o755, **fields):
    return member(name, b"", b"5", mode=mode, **fields)


def symlink(name, target, **fields):
    return member(name, b"", b"2", linkname=target, mode=0o777, **fields)


def hardlink(name, target, **fields):
    return member(name, b"", b"1", linkname=target, **fields)


def fifo(name, mode=0o644, **fields):
    return member(name, b"", b"6", mode=mode, **fields)


def device(name, char=True, major=1, minor=3, mode=0o666, **fields):
    return member(name, b"", b"3" if char else b"4", mode=mode, devmajor=major, devminor=minor,
                  **fields)


def whiteout(path):
    """``.wh.NAME`` beside NAME (path is NAME's full path)."""
    path = _b(path)
    head, _, name = path.rpartition(b"/")
    return file((head + b"/" if head else b"") + b".wh." + name)


def opaque(dirpath):
    return file(_b(dirpath).rstrip(b"/") + b"/.wh..wh..opq")


def pax_records(records):
    out = b""
    for key, value in records.items():
        body = b" " + _b(key) + b"=" + _b(value) + b"\n"
        length = len(body) + 1
        while len(b"%d" % length) + len(body) != length:
            length += 1
        out += b"%d" % length + body
    return out


def pax(records, kind=b"x", name=b"././@PaxHeader"):
    """A PAX extended header ('x', or 'g' for global) applying ``records`` (dict)."""
    data = pax_records(records)
    return header(name, kind, size=len(data)) + pad(data)


def gnu_long(text, kind=b"L"):
    """A GNU long-name ('L') or long-link ('K') header for the member that follows."""
    data = _b(text) + b"\x00"
    return header(b"././@LongLink", kind, size=len(data), magic=GNU_MAGIC) + pad(data)


def archive(*members, end=True):
    """The members followed by the two zero blocks of the end-of-archive marker."""
    return b"".join(members) + (bytes(2 * BLOCK) if end else b"")


def gz(data):
    return gzip.compress(data, 6)


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def diff_id(tar_bytes):
    return "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
