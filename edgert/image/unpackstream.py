"""Layer blobs to uncompressed tar chunks: gzip (zlib), zstd (the zstd program), or none.

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


def unzstd_chunks(read):
    """Decompresses a zstd stream with the zstd program (a child fed through pipes)."""
    program = _find_program("zstd")
    if program is None:
        raise Unsupported("layer: zstd-compressed layers need the zstd program, which is not on "
                          "PATH; install zstd")
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
    source = raw_chunks(read, _READ)
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


def open_source(blob, compression, fd=None):
    """The uncompressed tar of ``blob`` as a source; with ``fd``, gzip is inflated by a child."""
    if compression == "gzip":
        if fd is not None:
            return ChildInflater(fd)
        return ChunkSource(gunzip_chunks(blob.read))
    if compression == "zstd":
        return ChunkSource(unzstd_chunks(blob.read))
    return FileSource(blob)
