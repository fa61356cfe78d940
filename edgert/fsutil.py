"""Atomic file writes (a crash leaves either the old content or the new, never a mix) and
reads of a pipe to its end."""

import os


def atomic_write(path, data, mode=0o644, sync=True):
    """Writes ``data`` (bytes or str) to ``path`` via temp file, fsync, rename, fsync dir.

    ``sync=False`` skips both fsyncs: for files on tmpfs (/run), where a crash
    loses everything anyway and fsync only costs time.
    """
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.dirname(path) or "."
    tmp = "%s/.%s.tmp-%d" % (directory, os.path.basename(path), os.getpid())
    # O_EXCL|O_NOFOLLOW: in a directory a container can write, a planted link at the temp
    # name must not make us write elsewhere; a leftover of a crash is removed first.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.rename(tmp, path)
    if sync:
        fsync_dir(directory)


def fsync_dir(path):
    """Makes a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_text(path):
    with open(path) as f:
        return f.read()


def read_until_eof(fd, limit):
    """What a blocking ``fd`` (a child's pipe) gives until its end, at most ``limit`` bytes
    kept: the rest is read and dropped, so the writer never blocks on a full pipe."""
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk[:limit - len(data)]
