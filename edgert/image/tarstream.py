"""A streaming tar reader for untrusted layers: ustar, PAX and GNU headers, fixed-size blocks.

The uncompressed stream is read into one fixed buffer from a source (unpackstream). The
reader hashes and counts every byte it takes (the diff ID is the sha256 of the whole
uncompressed tar, trailing blocks included) and hands file data out as memoryview
slices of that buffer: a file is never held whole. Written for speed: one 512-byte
header costs a few slices and int() calls, PAX and GNU long names are rare paths.

Refused with a LayerError: bad checksums, truncation, malformed numbers or PAX records,
sparse entries (GNU 0.0/0.1/1.0), multi-volume and other exotic types.
"""

import hashlib

from .unpacklimits import LayerError, LimitExceeded

CHUNK = 1 << 20
BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_OCTAL = b"01234567"

REGULAR = 0x30        # '0'
REGULAR_OLD = 0       # NUL, pre-POSIX
CONTIGUOUS = 0x37     # '7', treated as regular
HARDLINK = 0x31       # '1'
SYMLINK = 0x32        # '2'
CHARDEV = 0x33        # '3'
BLOCKDEV = 0x34       # '4'
DIRECTORY = 0x35      # '5'
FIFO = 0x36           # '6'
_PAX = 0x78           # 'x'
_PAX_GLOBAL = 0x67    # 'g'
_GNU_LONGNAME = 0x4C  # 'L'
_GNU_LONGLINK = 0x4B  # 'K'
_GNU_SPARSE = 0x53    # 'S'

_ENTRY_TYPES = frozenset((REGULAR, REGULAR_OLD, CONTIGUOUS, HARDLINK, SYMLINK, CHARDEV,
                          BLOCKDEV, DIRECTORY, FIFO))
_POSIX_MAGIC = b"ustar\x00"
_MAX_ID = 0xFFFFFFFE  # uid_t/gid_t; -1 means "unchanged" to chown(2)
_MAX_TIME_NS = 1 << 63


class TarEntry:
    """One member: name and linkname are raw bytes as stored (not yet normalised)."""

    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime_ns", "linkname",
                 "devmajor", "devminor", "xattrs")

    def __repr__(self):
        return "TarEntry(%r, type=%r, size=%d)" % (self.name, chr(self.type), self.size)


def _octal(field, what, name):
    """A numeric header field: octal text (NUL/space padded) or GNU base-256."""
    if field[0] & 0x80:
        if field[0] != 0x80:
            raise LayerError("tar entry %r: negative %s (base-256) is not allowed" % (name, what))
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    if text.strip(_OCTAL):
        raise LayerError("tar entry %r: %s field %r is not an octal number" % (name, what, field))
    return int(text, 8)


def _decimal(value, key):
    if not value.isdigit():
        raise LayerError("PAX record %s=%r is not a non-negative integer" % (key.decode(), value))
    return int(value)


def _pax_time_ns(value):
    """A PAX time ("1700000000.123456789", possibly negative) in integer nanoseconds."""
    sign = -1 if value.startswith(b"-") else 1
    whole, _, frac = value.lstrip(b"-").partition(b".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise LayerError("PAX record mtime=%r is not a time" % (value,))
    return sign * (int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, b"0") or b"0"))


def parse_pax(data):
    """PAX extended-header records ("LEN key=value\\n") as a dict of bytes to bytes."""
    records = {}
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos] == 0:  # NUL padding some writers leave after the records
            if data[pos:].strip(b"\x00"):
                raise LayerError("PAX header: data after NUL padding")
            break
        space = data.find(b" ", pos, pos + 24)
        if space < 0 or not data[pos:space].isdigit():
            raise LayerError("PAX header: malformed record length at offset %d" % pos)
        length = int(data[pos:space])
        stop = pos + length
        if length < 5 or stop > end or data[stop - 1] != 0x0A:
            raise LayerError("PAX header: record at offset %d overruns or lacks its newline" % pos)
        key, eq, value = data[space + 1:stop - 1].partition(b"=")
        if not eq or not key:
            raise LayerError("PAX header: record at offset %d has no key=value" % pos)
        records[key] = value
        pos = stop
    return records


class TarReader:
    """Reads members from ``source``, hashing what it consumes.

    ``source.fill(view)`` writes up to len(view) bytes of the uncompressed tar into the
    memoryview and returns the count (0 at the end). Everything lives in one fixed buffer,
    so memory stays flat however large the layer or its files. A source with a true
    ``reports_sha256`` hashes for the reader and reports ``sha256_hex`` and ``size`` when
    drained.

    ``next_entry()`` returns the next TarEntry (None at the end marker); the entry's data is
    then read with ``copy_data(fd, write)`` or skipped automatically by the next call.
    ``finish()`` consumes the rest of the stream and returns the sha256 hex of all of it.
    """

    def __init__(self, source, limits, layer_bytes_left=None):
        self._source = source
        self._hashed_by_source = getattr(source, "reports_sha256", False)
        self._limits = limits
        self._budget = limits.max_layer_bytes if layer_bytes_left is None else min(
            limits.max_layer_bytes, layer_bytes_left)
        self._hash = hashlib.sha256()
        self._buf = bytearray(max(2 * CHUNK, limits.max_meta_bytes + CHUNK))
        self._view = memoryview(self._buf)
        self._pos = 0  # next unread byte in _buf
        self._end = 0  # end of the valid bytes in _buf
        self.consumed = 0  # bytes taken from the stream (all hashed)
        self._data_left = 0
        self._pad = 0
        self._global = {}
        self.entries = 0

    # -- the byte stream --------------------------------------------------

    def _refill(self):
        """Moves unread bytes to the front and reads more after them; False at the end."""
        rest = self._end - self._pos
        if rest:
            self._buf[:rest] = bytes(self._view[self._pos:self._end])  # may overlap: copy
        self._pos = 0
        self._end = rest
        count = self._source.fill(self._view[rest:])
        if not count:
            return False
        self.consumed += count
        if self.consumed > self._budget:
            raise LimitExceeded(
                "layer: uncompressed size exceeds the limit of %d bytes (max_layer_bytes or "
                "max_total_bytes; a decompression bomb, or raise the limit)" % self._budget)
        if not self._hashed_by_source:
            self._hash.update(self._view[rest:rest + count])
        self._end = rest + count
        return True

    def _take(self, size, what):
        """``size`` contiguous bytes (small: headers and metadata)."""
        while self._end - self._pos < size:
            if not self._refill():
                raise LayerError("layer: truncated tar stream (in %s)" % what)
        start = self._pos
        self._pos = start + size
        return bytes(self._view[start:start + size])

    def _skip(self, size, what):
        while size:
            avail = self._end - self._pos
            if not avail:
                if not self._refill():
                    raise LayerError("layer: truncated tar stream (in %s)" % what)
                continue
            step = avail if avail < size else size
            self._pos += step
            size -= step

    def copy_data(self, fd, write):
        """Writes the current entry's data to ``fd`` with ``write(fd, view)`` (os.write)."""
        left = self._data_left
        while left:
            avail = self._end - self._pos
            if not avail:
                if not self._refill():
                    raise LayerError("layer: truncated tar stream (in file data)")
                continue
            step = avail if avail < left else left
            view = self._view[self._pos:self._pos + step]
            while view:
                view = view[write(fd, view):]
            self._pos += step
            left -= step
        self._data_left = 0

    def read_data(self, limit):
        """The current entry's data as bytes (for PAX and GNU headers: at most ``limit``)."""
        if self._data_left > limit:
            raise LimitExceeded("layer: a PAX or GNU long-name header of %d bytes exceeds "
                                "max_meta_bytes (%d)" % (self._data_left, limit))
        data = self._take(self._data_left, "metadata")
        self._data_left = 0
        return data

    def finish(self):
        """Drains the stream (the trailing zero blocks count in the diff ID); returns sha256 hex."""
        self._pos = self._end
        while self._refill():
            self._pos = self._end
        if self._hashed_by_source:
            if self._source.size != self.consumed:
                raise LayerError("layer: the inflater reported %s bytes, the reader took %d"
                                 % (self._source.size, self.consumed))
            return self._source.sha256_hex
        return self._hash.hexdigest()

    # -- headers ----------------------------------------------------------

    def _header(self):
        """The next raw 512-byte header after skipping the previous entry's data and padding."""
        if self._data_left or self._pad:
            self._skip(self._data_left + self._pad, "entry data")
            self._data_left = self._pad = 0
        while self._end - self._pos < BLOCK:
            if not self._refill():
                if self._end == self._pos:
                    raise LayerError("layer: tar stream ends without an end-of-archive marker "
                                     "(truncated)")
                raise LayerError("layer: truncated tar stream (in a header)")
        start = self._pos
        self._pos = start + BLOCK
        return bytes(self._view[start:start + BLOCK])

    def _check_end_marker(self):
        """After one zero block, a second one (or the end of the stream) must follow: an
        entry after a lone zero block is something other readers would see and we would not."""
        while self._end - self._pos < BLOCK:
            if not self._refill():
                if self._end == self._pos:
                    return
                break
        if bytes(self._view[self._pos:min(self._end, self._pos + BLOCK)]).strip(b"\x00"):
            raise LayerError("layer: data after a lone zero block in the tar stream (an "
                             "end-of-archive marker is two zero blocks)")

    def _start_data(self, size):
        self._data_left = size
        self._pad = -size % BLOCK

    def next_entry(self):
        limits = self._limits
        pax = None
        long_name = long_link = None
        while True:
            hdr = self._header()
            if hdr == _ZERO_BLOCK:
                self._check_end_marker()
                return None
            self.entries += 1
            if self.entries > limits.max_entries:
                raise LimitExceeded("layer: more than %d tar entries (max_entries)"
                                    % limits.max_entries)
            name = hdr[:100].split(b"\x00", 1)[0]
            stored = _octal(hdr[148:156], "checksum", name)
            total = sum(hdr) - sum(hdr[148:156]) + 8 * 32
            if stored != total and stored != total - 256 * sum(b >= 128 for b in hdr):
                raise LayerError("layer: tar header checksum mismatch at entry %r (corrupt or "
                                 "not a tar stream: check the layer's media type)" % (name,))
            kind = hdr[156]
            size = _octal(hdr[124:136], "size", name)
            self._start_data(size)
            if kind == _PAX or kind == _PAX_GLOBAL:
                records = parse_pax(self.read_data(limits.max_meta_bytes))
                if kind == _PAX_GLOBAL:
                    self._global.update(records)
                else:
                    pax = records if pax is None else {**pax, **records}
                continue
            if kind == _GNU_LONGNAME or kind == _GNU_LONGLINK:
                data = self.read_data(min(limits.max_meta_bytes, limits.max_path_bytes + 1))
                text = data.split(b"\x00", 1)[0]
                if kind == _GNU_LONGNAME:
                    long_name = text
                else:
                    long_link = text
                continue
            return self._entry(hdr, kind, name, size, pax, long_name, long_link)

    def _entry(self, hdr, kind, name, size, pax, long_name, long_link):
        if kind == _GNU_SPARSE:
            raise LayerError("layer: entry %r is a GNU sparse file: sparse entries are not "
                             "supported; rebuild the layer without --sparse" % (name,))
        if kind not in _ENTRY_TYPES:
            raise LayerError("layer: entry %r has unsupported tar type %r" % (name, chr(kind)))
        if hdr[257:263] == _POSIX_MAGIC and hdr[345] and long_name is None:
            name = hdr[345:500].split(b"\x00", 1)[0] + b"/" + name
        entry = TarEntry()
        entry.type = kind
        entry.mode = _octal(hdr[100:108], "mode", name)
        entry.uid = _octal(hdr[108:116], "uid", name)
        entry.gid = _octal(hdr[116:124], "gid", name)
        entry.mtime_ns = _octal(hdr[136:148], "mtime", name) * 1_000_000_000
        entry.linkname = long_link if long_link is not None else hdr[157:257].split(b"\x00", 1)[0]
        entry.name = long_name if long_name is not None else name
        entry.size = size
        entry.xattrs = None
        if kind == CHARDEV or kind == BLOCKDEV:
            entry.devmajor = _octal(hdr[329:337], "devmajor", name)
            entry.devminor = _octal(hdr[337:345], "devminor", name)
        else:
            entry.devmajor = entry.devminor = 0
        if self._global:
            pax = {**self._global, **(pax or {})}
        if pax:
            self._apply_pax(entry, pax)
        if entry.uid > _MAX_ID or entry.gid > _MAX_ID:
            raise LayerError("layer: entry %r: uid/gid %d/%d out of range"
                             % (entry.name, entry.uid, entry.gid))
        if not -_MAX_TIME_NS < entry.mtime_ns < _MAX_TIME_NS:
            raise LayerError("layer: entry %r: mtime out of range" % (entry.name,))
        if entry.devmajor > _MAX_ID or entry.devminor > _MAX_ID:
            raise LayerError("layer: entry %r: device number out of range" % (entry.name,))
        if (kind == REGULAR_OLD or kind == REGULAR) and entry.name.endswith(b"/"):
            entry.type = DIRECTORY  # pre-POSIX archives mark directories by a trailing slash
        if entry.size and entry.type not in (REGULAR, REGULAR_OLD, CONTIGUOUS):
            # tar readers disagree on whether such data exists; guessing would desync the stream
            raise LayerError("layer: entry %r of type %r carries %d bytes of data"
                             % (entry.name, chr(entry.type), entry.size))
        return entry

    def _apply_pax(self, entry, pax):
        xattrs = None
        for key, value in pax.items():
            if key == b"path":
                entry.name = value
            elif key == b"linkpath":
                entry.linkname = value
            elif key == b"size":
                entry.size = _decimal(value, key)
                self._start_data(entry.size)
            elif key == b"uid":
                entry.uid = _decimal(value, key)
            elif key == b"gid":
                entry.gid = _decimal(value, key)
            elif key == b"mtime":
                entry.mtime_ns = _pax_time_ns(value)
            elif key.startswith(b"SCHILY.xattr."):
                if xattrs is None:
                    xattrs = {}
                if b"\x00" in key or len(key) == 13:
                    raise LayerError("layer: entry %r: malformed xattr name %r" % (entry.name, key))
                xattrs[key[13:]] = value
            elif key.startswith(b"GNU.sparse."):
                raise LayerError("layer: entry %r is a GNU sparse file (PAX %s): sparse entries "
                                 "are not supported; rebuild the layer without --sparse"
                                 % (entry.name, key.decode("ascii", "replace")))
            elif key.startswith(b"LIBARCHIVE.xattr."):
                raise LayerError("layer: entry %r carries libarchive-encoded xattrs (%s), which "
                                 "are not supported; write xattrs as SCHILY.xattr.*"
                                 % (entry.name, key.decode("ascii", "replace")))
            # other keys (atime, ctime, uname, gname, comment, charset) do not change the rootfs
        entry.xattrs = xattrs
