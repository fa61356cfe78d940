"""Layer blobs to uncompressed tar chunks: gzip (zlib), zstd, or none.

zstd is optional: the ``zstandard`` module (python3-zstandard) when it imports, streaming
in-process; else the ``zstd`` program fed through pipes; else Unsupported, before anything
is read.

A source has ``fill(view) -> count`` (0 at the end) and ``close()``. Decompressors work in
chunks of at most CHUNK bytes, so a decompression bomb never holds more than one chunk in
memory; the tar reader counts and limits the total.
"""

import os
import sys
import zlib

from ..errors import Unsupported
from .tarstream import CHUNK
from .unpacklimits import LayerError

_READ = 256 << 10  # compressed bytes per read: inflates to a few output chunks
_GZIP_MAGIC = b"\x1f\x8b"

# media type -> compression (None: a plain tar)
MEDIA_TYPES = {
    "application/vnd.oci.image.layer.v1.tar": None,
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": None,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": "gzip",
}


def compression_of(media_type):
    try:
        return MEDIA_TYPES[media_type]
    except (KeyError, TypeError):
        raise Unsupported("layer media type %r is not a layer type edgert can unpack (known: %s)"
                          % (media_type, ", ".join(sorted(MEDIA_TYPES)))) from None


def raw_chunks(read, size=CHUNK):
    """Chunks of ``read(size)`` until it returns nothing."""
    while True:
        data = read(size)
        if not data:
            return
        yield data


def gunzip_chunks(read):
    """Inflates a gzip stream (several members allowed, and zero padding after them, as gzip(1))."""
    inflater = None
    started = False
    for data in raw_chunks(read, _READ):
        pending = False  # True while zlib may still hold output for input already given
        while data or pending:
            if inflater is None:
                if not data.strip(b"\x00"):
                    break  # zero padding after the last member, as tape-style writers add
                if len(data) >= 2 and not data.startswith(_GZIP_MAGIC):
                    raise LayerError("layer: garbage after the gzip stream" if started else
                                     "layer: not a gzip stream although its media type says so")
                inflater = zlib.decompressobj(31)
                started = True
            try:
                out = inflater.decompress(data, CHUNK)
            except zlib.error as e:
                raise LayerError("layer: corrupt gzip stream (%s)" % e) from None
            if out:
                yield out
            if inflater.eof:
                data = inflater.unused_data
                inflater = None
                pending = False
            else:
                data = inflater.unconsumed_tail
                pending = len(out) == CHUNK
    if not started:
        raise LayerError("layer: empty blob where a gzip stream was expected")
    if inflater is not None:
        raise LayerError("layer: truncated gzip stream")


def _find_program(name):
    for directory in os.get_exec_path():
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def zstd_decoder():
    """"module", "program" or None: how this machine can decompress zstd layers."""
    try:
        import zstandard  # noqa: F401 (optional dependency)
        return "module"
    except ImportError:
        pass
    return "program" if _find_program("zstd") is not None else None


def require_zstd(layer, image=None):
    """zstd_decoder(), or Unsupported naming ``layer`` (a digest or path) and ``image`` when
    there is none."""
    decoder = zstd_decoder()
    if decoder is None:
        raise Unsupported("layer %s is zstd-compressed: install python3-zstandard or the zstd "
                          "binary%s" % (layer, " (image %s)" % image if image else ""))
    return decoder


def unzstd_chunks(read, layer="(unnamed)"):
    """Decompresses a zstd stream with the zstandard module, else the zstd program."""
    if require_zstd(layer) == "module":
        return _unzstd_module(read)
    return _unzstd_program(read)


class _ZstdFrames:
    """Follows the frame and block headers of a zstd stream as it passes, to tell a complete
    stream from a truncated one (the zstandard module's reader stops silently at the end of
    its input). Block sizes come from the headers, so the cost is a few steps per block."""

    _FRAME_MAGIC = 0xFD2FB528

    def __init__(self):
        self.header = b""
        self.want = 4  # bytes of the next header to collect
        self.state = "magic"
        self.skip = 0  # payload bytes to pass over before the next header
        self.checksum = False
        self.started = False

    def feed(self, data):
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                step = min(self.skip, n - i)
                self.skip -= step
                i += step
                continue
            step = min(self.want - len(self.header), n - i)
            self.header += data[i:i + step]
            i += step
            if len(self.header) == self.want:
                header, self.header = self.header, b""
                self._parse(int.from_bytes(header, "little"))

    def _parse(self, value):
        state = self.state
        if state == "magic":
            self.started = True
            if value == self._FRAME_MAGIC:
                self.state, self.want = "descriptor", 1
            elif value & 0xFFFFFFF0 == 0x184D2A50:  # a skippable frame
                self.state, self.want = "skippable", 4
            else:
                raise LayerError("layer: not a zstd stream (or garbage after it) although its "
                                 "media type says zstd")
        elif state == "skippable":
            self.skip, self.state, self.want = value, "magic", 4
        elif state == "descriptor":
            single_segment = value >> 5 & 1
            self.checksum = bool(value >> 2 & 1)
            self.skip = ((0, 1, 2, 4)[value & 3] + (1 - single_segment)
                         + (single_segment, 2, 4, 8)[value >> 6])
            self.state, self.want = "block", 3
        else:  # a block header: last flag, type, size
            kind, size = value >> 1 & 3, value >> 3
            if kind == 3:
                raise LayerError("layer: corrupt zstd stream (reserved block type)")
            self.skip = 1 if kind == 1 else size
            if value & 1:
                self.skip += 4 if self.checksum else 0
                self.state, self.want = "magic", 4

    def finish(self):
        if not self.started:
            raise LayerError("layer: empty blob where a zstd stream was expected")
        if self.state != "magic" or self.header or self.skip:
            raise LayerError("layer: truncated zstd stream")


class _TrackedReader:
    """A file-like ``read`` that shows every byte to a _ZstdFrames."""

    def __init__(self, read, frames):
        self._read = read
        self._frames = frames

    def read(self, size=-1):
        data = self._read(_READ if size is None or size < 0 else size)
        self._frames.feed(data)
        return data


def _unzstd_module(read):
    import zstandard
    frames = _ZstdFrames()
    reader = zstandard.ZstdDecompressor().stream_reader(
        _TrackedReader(read, frames), read_size=_READ, read_across_frames=True)
    try:
        while True:
            try:
                out = reader.read(CHUNK)  # never more than CHUNK: bombs stay bounded
            except zstandard.ZstdError as e:
                raise LayerError("layer: corrupt zstd stream (%s)" % e) from None
            if not out:
                break
            yield out
        frames.finish()
    finally:
        reader.close()


def _unzstd_program(read):
    """Decompresses a zstd stream with the zstd program (a child fed through pipes)."""
    program = _find_program("zstd")
    import select
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(program, [program, "-dcq"], os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    except BaseException:
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)
        raise
    os.close(in_r)
    os.close(out_w)
    os.set_blocking(in_w, False)
    pending = b""
    frames = _ZstdFrames()  # the program would also take gzip and xz: zstd frames only
    source = raw_chunks(_TrackedReader(read, frames).read, _READ)
    finished = False
    try:
        while True:
            writers = [in_w] if in_w >= 0 else []
            readable, writable, _ = select.select([out_r], writers, [])
            if writable:
                if not pending:
                    pending = next(source, b"")
                    if not pending:
                        os.close(in_w)
                        in_w = -1
                if pending:
                    try:
                        pending = pending[os.write(in_w, pending):]
                    except BlockingIOError:
                        pass
            if readable:
                out = os.read(out_r, CHUNK)
                if not out:
                    break
                yield out
        _, status = os.waitpid(pid, 0)
        finished = True
        code = os.waitstatus_to_exitcode(status)
        if code:
            raise LayerError("layer: corrupt or truncated zstd stream (zstd exited with status %d)"
                             % code)
        frames.finish()
    finally:
        if in_w >= 0:
            os.close(in_w)
        os.close(out_r)
        if not finished:
            os.kill(pid, 9)
            os.waitpid(pid, 0)


class ChildInflater:
    """Inflated chunks of the gzip blob open as ``fd``, produced by unpackinflate.py in a child.

    The child also hashes what it inflates: after iteration ends, ``sha256_hex`` and ``size``
    hold its report (the reader uses them instead of hashing again).
    """

    reports_sha256 = True

    def __init__(self, fd):
        import fcntl
        self.sha256_hex = None
        self.size = None
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unpackinflate.py")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            fcntl.fcntl(out_r, fcntl.F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass  # over /proc/sys/fs/pipe-max-size: smaller reads, same result
        try:
            self._pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", script],
                                       os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, fd, 0),
                                                                 (os.POSIX_SPAWN_DUP2, out_w, 1),
                                                                 (os.POSIX_SPAWN_DUP2, err_w, 2)])
        except BaseException:
            for pipe_fd in (out_r, out_w, err_r, err_w):
                os.close(pipe_fd)
            raise
        os.close(out_w)
        os.close(err_w)
        self._out = out_r
        self._err = err_r

    def fill(self, view):
        count = os.readv(self._out, [view])
        if not count and self._pid is not None:
            self._collect()
        return count

    def _collect(self):
        parts = []
        while True:
            data = os.read(self._err, 65536)
            if not data:
                break
            parts.append(data)
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        report = b"".join(parts).rstrip(b"\n").rpartition(b"\n")[2]
        if report.startswith(b"ok ") and status == 0:
            _, hexdigest, size = report.split()
            self.sha256_hex = hexdigest.decode()
            self.size = int(size)
        elif report.startswith(b"error "):
            raise LayerError(report[6:].decode("utf-8", "replace"))
        else:
            raise LayerError("layer: the gzip inflater process failed (status %d): %s"
                             % (os.waitstatus_to_exitcode(status),
                                report.decode("utf-8", "replace") or "no report"))

    def close(self):
        for fd in (self._out, self._err):
            if fd >= 0:
                os.close(fd)
        self._out = self._err = -1
        if self._pid is not None:
            os.kill(self._pid, 9)
            os.waitpid(self._pid, 0)
            self._pid = None


class ChunkSource:
    """A source (``fill(view)``) over a generator of chunks."""

    def __init__(self, chunks):
        self._chunks = chunks
        self._chunk = memoryview(b"")

    def fill(self, view):
        chunk = self._chunk
        while not chunk:
            data = next(self._chunks, None)
            if data is None:
                return 0
            chunk = memoryview(data)
        count = min(len(view), len(chunk))
        view[:count] = chunk[:count]
        self._chunk = chunk[count:]
        return count

    def close(self):
        self._chunks.close()


class FileSource:
    """A source reading an uncompressed tar straight into the reader's buffer."""

    def __init__(self, blob):
        self._readinto = getattr(blob, "readinto", None)
        self._read = blob.read

    def fill(self, view):
        if self._readinto is not None:
            return self._readinto(view) or 0
        data = self._read(len(view))
        view[:len(data)] = data
        return len(data)

    def close(self):
        pass


def open_source(blob, compression, fd=None, name="(unnamed)"):
    """The uncompressed tar of ``blob`` as a source; with ``fd``, gzip is inflated by a child.
    ``name`` identifies the layer in errors."""
    if compression == "gzip":
        if fd is not None:
            return ChildInflater(fd)
        return ChunkSource(gunzip_chunks(blob.read))
    if compression == "zstd":
        return ChunkSource(unzstd_chunks(blob.read, name))
    return FileSource(blob)
