"""Applies OCI image layers to a directory: streaming, verified, confined to it, bounded.

``apply_layer(blob, media_type, dest_dir, ...)`` reads one layer blob (gzip, zstd or plain
tar) in fixed-size chunks, verifies its diff ID (the sha256 of the uncompressed tar) while
it streams, and applies each member to ``dest_dir``: files, directories, symlinks,
hardlinks, FIFOs and (by policy) device nodes, with ownership, modes, mtimes and xattrs,
then OCI whiteouts (``.wh.NAME`` removes NAME of lower layers; ``.wh..wh..opq`` empties a
directory of lower content but keeps what this layer put there).

Errors: LayerError (and its LimitExceeded, DiffIDMismatch) when the layer is at fault;
UnpackFailed when the target filesystem is (full, read-only, I/O error): the blob is fine
and a retry after freeing space may succeed; Unsupported for an unknown media type or zstd
with neither the zstandard module nor the zstd program.

The atomicity contract: apply_layer() changes ``dest_dir`` in place and cannot undo what it
did when it fails. Callers therefore extract into
a directory nobody treats as complete yet (a temporary snapshot directory), and rename or
mark it complete only after every layer succeeded, discarding it on any error.
``unpack_layers()`` does exactly that for a flattened rootfs.

Hostile input: every path is resolved inside ``dest_dir`` (unpackfs.ConfinedRoot) and the
last component is never followed; ``..`` components are refused, leading ``/`` stripped;
hardlinks must point at something already in the rootfs; limits (unpacklimits) bound
sizes and counts. Device nodes, setid bits and xattr namespaces follow UnpackPolicy.
"""

import errno
import os
import stat
import sys

from ..errors import NotFound, StateError
from .tarstream import (BLOCKDEV, CHARDEV, CONTIGUOUS, DIRECTORY, FIFO, HARDLINK, REGULAR,
                        REGULAR_OLD, SYMLINK, TarReader)
from .unpackfs import ConfinedRoot, remove_tree_at
from .unpacklimits import (DEVICES_CREATE, DEVICES_REFUSE, MiB, DiffIDMismatch, LayerError,
                           LayerStats, LimitExceeded, UnpackFailed, UnpackLimits, UnpackPolicy)
from .unpackstream import compression_of, open_source

__all__ = ["apply_layer", "unpack_layers", "LayerError", "LimitExceeded", "DiffIDMismatch",
           "UnpackFailed", "LayerStats", "UnpackLimits", "UnpackPolicy"]

_WHITEOUT = b".wh."
_OPAQUE = b".wh..wh..opq"
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SETID = stat.S_ISUID | stat.S_ISGID
_NOT_THE_LAYERS_FAULT = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS,
                                   errno.EMFILE, errno.ENFILE, errno.ENOMEM))


def apply_layer(blob_path_or_fileobj, media_type, dest_dir, limits=None, diff_id=None,
                policy=None, *, use_openat2=None, bytes_left=None, inflate_in_child=None):
    """Applies one layer blob to the existing directory ``dest_dir``; returns LayerStats.

    ``diff_id`` ("sha256:<hex>"), when given, must match the uncompressed tar, else
    DiffIDMismatch. ``use_openat2`` forces (True) or avoids (False) openat2 path resolution
    (None: use it where the kernel has it). ``bytes_left`` caps the uncompressed size further
    (unpack_layers' running total). ``inflate_in_child``: inflate gzip in a child process,
    on another CPU (None: when the blob is a path of at least 1 MiB and there are several
    CPUs). On any error ``dest_dir`` is left half-applied: see the module docstring.
    Nothing is fsynced: callers that need durability sync the filesystem before marking
    the result complete.
    """
    compression = compression_of(media_type)
    expected = _expected_diff_id(diff_id)
    limits = limits or UnpackLimits()
    policy = policy or UnpackPolicy()
    if isinstance(blob_path_or_fileobj, (str, bytes, os.PathLike)):
        try:
            blob = open(blob_path_or_fileobj, "rb", buffering=0)
        except FileNotFoundError:
            raise NotFound("layer blob %s: not found" % os.fsdecode(blob_path_or_fileobj)) from None
        own = True
    else:
        blob = blob_path_or_fileobj
        own = False
    if inflate_in_child is None:
        inflate_in_child = (own and compression == "gzip" and (os.cpu_count() or 1) > 1
                            and bool(sys.executable) and os.fstat(blob.fileno()).st_size >= MiB)
    try:
        source = open_source(blob, compression, blob.fileno() if inflate_in_child else None,
                             _layer_name(blob_path_or_fileobj, expected))
        try:
            reader = TarReader(source, limits, bytes_left)
            root = ConfinedRoot(dest_dir, use_openat2)
            try:
                stats = _Applier(root, reader, limits, policy).run()
            finally:
                root.close()
        finally:
            source.close()
    finally:
        if own:
            blob.close()
    if expected is not None and stats.diff_id != expected:
        raise DiffIDMismatch("layer %s: diff ID mismatch: the uncompressed tar is %s (the blob "
                             "is corrupt or does not belong to this image)"
                             % (expected, stats.diff_id))
    return stats


def _layer_name(blob, diff_id):
    """How errors name a layer: its digest when ``blob`` is a store path, else the path or
    the diff ID."""
    if isinstance(blob, (str, bytes, os.PathLike)):
        base = os.path.basename(os.fsdecode(blob))
        if len(base) == 64 and not base.strip("0123456789abcdef"):
            return "sha256:" + base
        return os.fsdecode(blob)
    return diff_id or "(stream)"


def remove_stale_temps(parent, name):
    """Temp trees of earlier unpacks of ``name`` whose process died (kill -9, power loss)."""
    prefix = ".%s.unpack-" % name
    for entry in os.listdir(parent):
        pid = entry[len(prefix):]
        if not entry.startswith(prefix) or not pid.isdigit():
            continue
        if int(pid) == os.getpid() or not os.path.exists("/proc/%s" % pid):
            _remove_tree(os.path.join(parent, entry))


def unpack_layers(layers, dest, limits=None, policy=None, *, use_openat2=None,
                  inflate_in_child=None):
    """Flattens ``layers`` into the new directory ``dest``, atomically; returns [LayerStats].

    ``layers``: (blob, media_type) or (blob, media_type, diff_id) tuples, lowest first.
    Extracts into a temporary sibling of ``dest`` and renames it into place only when every
    layer applied and verified; on failure the temporary directory is removed.
    ``use_openat2`` and ``inflate_in_child`` are passed to apply_layer().
    """
    dest = os.path.abspath(os.fsdecode(dest))
    if os.path.lexists(dest):
        raise StateError("unpack: %s already exists; remove it or choose another destination"
                         % dest)
    limits = limits or UnpackLimits()
    parent, name = os.path.split(dest)
    os.makedirs(parent, exist_ok=True)  # like `umoci unpack` making the bundle directory
    remove_stale_temps(parent, name)
    tmp = os.path.join(parent, ".%s.unpack-%d" % (name, os.getpid()))
    os.mkdir(tmp, 0o755)
    try:
        all_stats = []
        left = limits.max_total_bytes
        for layer in layers:
            blob, media_type = layer[0], layer[1]
            diff_id = layer[2] if len(layer) > 2 else None
            stats = apply_layer(blob, media_type, tmp, limits, diff_id, policy,
                                use_openat2=use_openat2, bytes_left=left,
                                inflate_in_child=inflate_in_child)
            left -= stats.tar_bytes
            all_stats.append(stats)
        os.rename(tmp, dest)
    except BaseException:
        try:
            _remove_tree(tmp)
        except OSError:
            pass  # the original error matters more; the next attempt removes the leftover
        raise
    return all_stats


def _remove_tree(path):
    parent, name = os.path.split(path)
    fd = os.open(parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_tree_at(fd, os.fsencode(name))
    finally:
        os.close(fd)


def _expected_diff_id(diff_id):
    if diff_id is None:
        return None
    algorithm, _, hexdigest = str(diff_id).partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64 or hexdigest.strip("0123456789abcdef"):
        raise LayerError("layer diff ID %r is not a sha256 digest (sha256:<64 hex digits>)"
                         % (diff_id,))
    return diff_id


def _clean_path(name, limits, what="entry"):
    """``name`` relative to the rootfs: no empty or ``.`` components, no leading ``/``."""
    if len(name) > limits.max_path_bytes:
        raise LimitExceeded("layer: %s %r...: path longer than %d bytes (max_path_bytes)"
                            % (what, name[:64], limits.max_path_bytes))
    if b"\x00" in name:
        raise LayerError("layer: %s %r contains a NUL byte" % (what, name))
    parts = name.split(b"/")
    if b"" in parts or b"." in parts or b".." in parts:
        parts = [p for p in parts if p and p != b"."]
        if b".." in parts:
            raise LayerError("layer: %s %r has a '..' component: refused (it could escape the "
                             "rootfs)" % (what, name))
        return b"/".join(parts)
    return name


class _Applier:
    """Applies the members of one layer; one instance per apply_layer() call."""

    def __init__(self, root, reader, limits, policy):
        self.root = root
        self.reader = reader
        self.limits = limits
        self.policy = policy
        self.stats = LayerStats()
        self.chown = os.geteuid() == 0 if policy.chown is None else policy.chown
        self.mode_mask = 0o7777 if policy.keep_setid else 0o7777 & ~_SETID
        self.seen = {b""}  # paths this layer put in place, and their parents
        self.dirs = {}  # directory path -> (mode, mtime_ns), applied after their contents

    def run(self):
        reader = self.reader
        stats = self.stats
        handlers = {REGULAR: self._file, REGULAR_OLD: self._file, CONTIGUOUS: self._file,
                    DIRECTORY: self._directory, SYMLINK: self._symlink, HARDLINK: self._hardlink,
                    CHARDEV: self._device, BLOCKDEV: self._device, FIFO: self._fifo}
        limits = self.limits
        while True:
            entry = reader.next_entry()
            if entry is None:
                break
            stats.entries += 1
            path = _clean_path(entry.name, limits)
            base = path.rpartition(b"/")[2]
            try:
                if base.startswith(_WHITEOUT):
                    self._whiteout(path, base, entry)
                    continue
                handlers[entry.type](path, entry)
            except OSError as e:
                if e.errno in _NOT_THE_LAYERS_FAULT:
                    raise UnpackFailed("unpack: entry %r: %s (free space or fix the target "
                                       "filesystem, then retry)" % (entry.name, e.strerror),
                                       e.errno) from e
                raise LayerError("layer: entry %r: %s" % (entry.name, e.strerror or e)) from e
            except (ValueError, OverflowError) as e:  # a value the kernel interface cannot take
                raise LayerError("layer: entry %r: invalid value (%s)" % (entry.name, e)) from e
            seen = self.seen
            while path not in seen:
                seen.add(path)
                path = path.rpartition(b"/")[0]
        self._finish_dirs()
        stats.diff_id = "sha256:" + reader.finish()
        stats.tar_bytes = reader.consumed
        return stats

    # -- helpers ------------------------------------------------------------

    def _replace(self, pfd, base, path):
        """Removes what is at ``base`` so a later duplicate entry can take its place;
        returns the parent's fd to use from now on (removing a directory or symlink empties
        the fd cache, which closes ``pfd``)."""
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            remove_tree_at(pfd, base)
            self._forget_dirs(path)
        else:
            os.unlink(base, dir_fd=pfd)
            if not stat.S_ISLNK(st.st_mode):
                return pfd
        self.root.invalidate()
        return self.root.split(path)[0]

    def _forget_dirs(self, path):
        prefix = path + b"/"
        for known in [d for d in self.dirs if d == path or d.startswith(prefix)]:
            del self.dirs[known]

    def _set_xattrs(self, target, entry):
        """Sets the entry's allowed xattrs on ``target`` (an fd, or a path not to follow)."""
        allowed = self.policy.xattr_prefixes
        for key, value in entry.xattrs.items():
            if not key.startswith(allowed):
                self.stats.xattrs_skipped += 1
                self.stats.note("xattrs outside %s skipped by policy"
                                % ", ".join(p.decode() + "*" for p in allowed))
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
                self.stats.xattrs += 1
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EPERM):
                    raise
                self.stats.xattrs_skipped += 1
                self.stats.note("xattrs the filesystem refused (%s) skipped" % e.strerror)

    # -- member types ---------------------------------------------------------

    def _file(self, path, entry):
        if not path:
            raise LayerError("layer: a regular file entry names the rootfs itself")
        size = entry.size
        if size > self.limits.max_file_bytes:
            raise LimitExceeded("layer: file %r is %d bytes, over the limit of %d (max_file_bytes)"
                                % (entry.name, size, self.limits.max_file_bytes))
        pfd, base = self.root.split(path)
        try:
            fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=pfd)
        except FileExistsError:
            pfd = self._replace(pfd, base, path)
            fd = os.open(base, _FILE_FLAGS, 0o600, dir_fd=pfd)
        try:
            if size:
                self.reader.copy_data(fd, os.write)
            if self.chown:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, entry.mode & self.mode_mask)
            if entry.xattrs:
                self._set_xattrs(fd, entry)
            mtime = entry.mtime_ns
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)
        self.stats.files += 1
        self.stats.file_bytes += size

    def _directory(self, path, entry):
        if path:
            pfd, base = self.root.split(path)
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    pfd = self._replace(pfd, base, path)
                    os.mkdir(base, 0o700, dir_fd=pfd)
            fd = os.open(base, _DIR_OPEN, dir_fd=pfd)
        else:
            fd = os.open(b".", _DIR_OPEN, dir_fd=self.root.fd)
        try:
            if self.chown:
                os.fchown(fd, entry.uid, entry.gid)
            if entry.xattrs:
                self._set_xattrs(fd, entry)
        finally:
            os.close(fd)
        self.dirs[path] = (entry.mode & self.mode_mask, entry.mtime_ns)
        self.stats.explicit_dirs.add(path)
        self.stats.dirs += 1

    def _finish_dirs(self):
        """Modes and mtimes of directories, now that nothing is written into them any more."""
        root = self.root
        for path, (mode, mtime) in self.dirs.items():
            try:
                if path:
                    pfd, base = root.split(path, create=False)
                    fd = os.open(base, _DIR_OPEN, dir_fd=pfd)
                else:
                    fd = os.open(b".", _DIR_OPEN, dir_fd=root.fd)
            except (OSError, LayerError):
                continue  # replaced by a later entry or removed by a whiteout
            try:
                os.fchmod(fd, mode)
                os.utime(fd, ns=(mtime, mtime))
            finally:
                os.close(fd)

    def _symlink(self, path, entry):
        if not path:
            raise LayerError("layer: a symlink entry names the rootfs itself")
        target = entry.linkname
        if len(target) > self.limits.max_path_bytes:
            raise LimitExceeded("layer: symlink %r: target longer than %d bytes (max_path_bytes)"
                                % (entry.name, self.limits.max_path_bytes))
        if not target or b"\x00" in target:
            raise LayerError("layer: symlink %r has an empty target or one with a NUL byte"
                             % (entry.name,))
        pfd, base = self.root.split(path)
        try:
            os.symlink(target, base, dir_fd=pfd)
        except FileExistsError:
            pfd = self._replace(pfd, base, path)
            os.symlink(target, base, dir_fd=pfd)
        self._set_owner_time(pfd, base, entry)
        if entry.xattrs:
            self.stats.xattrs_skipped += len(entry.xattrs)
            self.stats.note("xattrs on symlinks skipped")
        self.stats.symlinks += 1

    def _set_owner_time(self, pfd, base, entry):
        if self.chown:
            os.chown(base, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
        mtime = entry.mtime_ns
        os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, path, entry):
        if not path:
            raise LayerError("layer: a hardlink entry names the rootfs itself")
        target = _clean_path(entry.linkname, self.limits, "hardlink target")
        if not target or target == path:
            raise LayerError("layer: hardlink %r points at %r: not a file in the rootfs"
                             % (entry.name, entry.linkname))
        try:
            tfd, tbase = self.root.split(target, create=False)
            st = os.stat(tbase, dir_fd=tfd, follow_symlinks=False)
        except (FileNotFoundError, LayerError):
            raise LayerError("layer: hardlink %r points at %r, which is not in the rootfs (yet)"
                             % (entry.name, entry.linkname)) from None
        if stat.S_ISDIR(st.st_mode):
            raise LayerError("layer: hardlink %r points at the directory %r"
                             % (entry.name, entry.linkname))
        tfd = os.dup(tfd)  # the next lookup may empty the fd cache
        try:
            pfd, base = self.root.split(path)
            try:
                os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
            except FileExistsError:
                mine = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                if (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino):
                    return
                pfd = self._replace(pfd, base, path)
                os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)
        self.stats.hardlinks += 1

    def _device(self, path, entry):
        policy = self.policy.devices
        if policy == DEVICES_REFUSE:
            raise LayerError("layer: device node %r refused by policy (devices=refuse)"
                             % (entry.name,))
        if policy != DEVICES_CREATE:
            self.stats.devices_skipped += 1
            self.stats.note("device nodes skipped by policy (devices=skip): a container's "
                            "devices come from its config")
            return
        kind = stat.S_IFCHR if entry.type == CHARDEV else stat.S_IFBLK
        self._special(path, entry, kind, os.makedev(entry.devmajor, entry.devminor))
        self.stats.devices += 1

    def _fifo(self, path, entry):
        self._special(path, entry, stat.S_IFIFO, 0)
        self.stats.fifos += 1

    def _special(self, path, entry, kind, device):
        if not path:
            raise LayerError("layer: a device or FIFO entry names the rootfs itself")
        pfd, base = self.root.split(path)
        mode = entry.mode & self.mode_mask
        try:
            os.mknod(base, kind | 0o600, device, dir_fd=pfd)
        except FileExistsError:
            pfd = self._replace(pfd, base, path)
            os.mknod(base, kind | 0o600, device, dir_fd=pfd)
        if self.chown:
            os.chown(base, entry.uid, entry.gid, dir_fd=pfd, follow_symlinks=False)
        # follows: base is the node created just above in a directory nobody else writes to
        os.chmod(base, mode, dir_fd=pfd)
        if entry.xattrs:
            self._set_xattrs("/proc/self/fd/%d/%s" % (pfd, os.fsdecode(base)), entry)
        mtime = entry.mtime_ns
        os.utime(base, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

    def _whiteout(self, path, base, entry):
        if entry.type == DIRECTORY:
            raise LayerError("layer: whiteout %r is a directory" % (entry.name,))
        head = path[:len(path) - len(base)].rstrip(b"/")
        if base == _OPAQUE:
            self._opaque(head)
            self.stats.opaques += 1
            return
        name = base[len(_WHITEOUT):]
        if not name or name in (b".", b".."):
            raise LayerError("layer: whiteout %r names no file (empty, '.' or '..')"
                             % (entry.name,))
        if name.startswith(_WHITEOUT):
            raise LayerError("layer: whiteout %r: aufs metadata whiteouts are not supported"
                             % (entry.name,))
        self.stats.whiteouts += 1
        target = head + b"/" + name if head else name
        if target in self.seen:
            return  # a whiteout hides lower layers only, not this layer's own entries
        try:
            pfd = self.root.directory(head)
        except (FileNotFoundError, LayerError):
            return  # nothing below to hide
        remove_tree_at(pfd, name)
        self._forget_dirs(target)
        self.root.invalidate()

    def _opaque(self, head):
        """Removes the lower layers' content of directory ``head``, keeping this layer's."""
        seen = self.seen
        todo = [head]
        while todo:  # a worklist, not recursion: directories may nest thousands deep
            path = todo.pop()
            prefix = path + b"/" if path else b""
            fd = os.open(b".", _DIR_OPEN & ~os.O_NOFOLLOW,
                         dir_fd=self.root.directory(path, create=path == head))
            try:
                for child in os.listdir(fd):
                    child = os.fsencode(child)
                    if prefix + child not in seen:
                        remove_tree_at(fd, child)
                        self._forget_dirs(prefix + child)
                    elif stat.S_ISDIR(os.stat(child, dir_fd=fd, follow_symlinks=False).st_mode):
                        todo.append(prefix + child)  # kept, but may hold lower content
            finally:
                os.close(fd)
            self.root.invalidate()
