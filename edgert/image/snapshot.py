"""Snapshots: each layer extracted once, keyed by its chain ID, shared between images.

Glossary (containerd's): a *committed snapshot* is one layer's content, read-only,
named by the chain ID of the layer stack it ends; its *parent* is the snapshot below it.
An *active snapshot* is a container's writable view of a parent, named by a caller's key.

Layout under the store root::

    snapshots/HEX/fs          the layer's files (what the layer added or changed)
    snapshots/HEX/whiteouts   JSON {"whiteouts": [path], "opaques": [path]} when the layer
                              hides lower content (both backends read it)
    snapshots/HEX/complete    JSON marker, written last: only a snapshot with it exists
    snapshots/HEX.lock        flock held while one process extracts that snapshot
    active/KEY/info.json      {"key", "parent", "backend"}
    active/KEY/upper, work    overlay backend: the container's writable layer
    active/KEY/rootfs         copy backend: a private flattened copy of the parent chain
    l/SHORT                   symlink to ../snapshots/HEX/fs: a short lowerdir name
    flat/HEX                  the flattened view of chain HEX: the bottom lowerdir of
                              overlays whose chain is too long for one mount (see below)

Lifecycle: ``commit_layer`` extracts into ``snapshots/.tmp-HEX-PID``, renames it to
``snapshots/HEX`` and writes ``complete`` last, so an unpack killed at any point leaves no
snapshot that looks complete (the next one removes the debris and extracts again).
``prepare(key, parent)`` returns the mounts for a container's rootfs and mounts nothing;
``mounts_for(key)`` returns them again; ``remove(key)`` deletes the active snapshot.

Backends: "overlay" returns one overlay mount (lowerdir = the parent chain, topmost first;
upperdir/workdir per container). mount(2) takes at most a page of options and overlayfs
at most 500 lowerdirs: a chain whose snapshot paths do not fit is named through short
symlinks under ``l/`` (about 30 bytes a layer under /var/lib/edgert, as Docker's overlay2
does), and one whose short names still do not fit keeps its top layers and has
``prepare`` merge the rest into one flattened snapshot under ``flat/`` (shared by every
container of that chain, removed by prune when none uses it). "copy" flattens the chain
into the container's directory and returns a bind mount, for kernels without overlayfs.
As root, overlay whiteouts (0/0 character devices) and opaque markers
(trusted.overlay.opaque) are also written into ``fs`` so overlayfs hides lower content
(the directory keeps its mtime: the marker is not the layer's change); the copy backend
skips those and applies the whiteouts file instead.
"""

import errno
import fcntl
import os
import stat

from .. import jsonfast
from ..errors import ConfigError, NotFound, StateError, Unsupported
from ..fsutil import atomic_write
from .unpackfs import empty_dir_at, remove_tree_at

BACKENDS = ("overlay", "copy")
# Mount option data is one page; longer lowerdir lists need shorter paths.
MAX_MOUNT_DATA = 4000
MAX_LOWER_DIRS = 500  # overlayfs' OVL_MAX_STACK
_SHORT_LINK = 10  # hex digits of a chain ID naming its link under l/ (more on a clash)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY_XATTRS = ("user.", "security.capability")
_OPAQUE_XATTR = "trusted.overlay.opaque"


def overlay_supported():
    """Whether this kernel has overlayfs (listed in /proc/filesystems)."""
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1:] == ["overlay"] for line in f)
    except OSError:
        return False


def default_backend():
    return "overlay" if os.geteuid() == 0 and overlay_supported() else "copy"


class Snapshotter:
    """Committed and active snapshots under ``root`` (the store root), one backend."""

    def __init__(self, root, backend=None, sync=True):
        backend = backend or default_backend()
        if backend not in BACKENDS:
            raise ConfigError("snapshot backend %r: expected %s" % (backend, " or ".join(BACKENDS)))
        self.root = os.path.abspath(root)
        self.backend = backend
        self.sync = sync
        self.snapshot_dir = os.path.join(self.root, "snapshots")
        self.active_dir = os.path.join(self.root, "active")
        self.link_dir = os.path.join(self.root, "l")
        self.flat_dir = os.path.join(self.root, "flat")
        for path in (self.snapshot_dir, self.active_dir):
            os.makedirs(path, 0o700, exist_ok=True)

    # -- committed snapshots ------------------------------------------------

    def path(self, chain_id):
        return os.path.join(self.snapshot_dir, _hex(chain_id))

    def fs_path(self, chain_id):
        return os.path.join(self.path(chain_id), "fs")

    def info(self, chain_id):
        """The ``complete`` marker of a committed snapshot, or None when it does not exist."""
        try:
            with open(os.path.join(self.path(chain_id), "complete"), "rb") as f:
                return jsonfast.loads(f.read().decode())
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError):
            return None  # a torn marker cannot happen (atomic write); treat as absent anyway

    def exists(self, chain_id):
        return self.info(chain_id) is not None

    def commit_layer(self, chain_id, parent, apply, scan_whiteouts=None):
        """Creates the committed snapshot ``chain_id`` over ``parent`` (None for a base
        layer) unless it exists; returns its info.

        ``apply(fs_dir)`` extracts the layer into the new empty directory and returns its
        LayerStats; ``scan_whiteouts()`` lists the layer's ([whiteout paths], [opaque dirs])
        as bytes relative paths, and is called only when the stats count any.
        """
        if parent is not None and not self.exists(parent):
            raise NotFound("snapshot %s: parent snapshot %s is missing: unpack the image again"
                           % (chain_id, parent))
        hexid = _hex(chain_id)
        lock_fd = os.open(os.path.join(self.snapshot_dir, hexid + ".lock"),
                          os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            info = self.info(chain_id)
            if info is not None:
                return info
            final = self.path(chain_id)
            self._remove_path(final)  # debris of an interrupted commit (no marker)
            tmp = os.path.join(self.snapshot_dir, ".tmp-%s-%d" % (hexid, os.getpid()))
            self._remove_path(tmp)
            os.mkdir(tmp, 0o700)
            try:
                fs_dir = os.path.join(tmp, "fs")
                os.mkdir(fs_dir, 0o755)
                stats = apply(fs_dir)
                hidden = None
                if stats is not None and (stats.whiteouts or stats.opaques) and scan_whiteouts:
                    whiteouts, opaques = scan_whiteouts()
                    hidden = {"whiteouts": [os.fsdecode(p) for p in whiteouts],
                              "opaques": [os.fsdecode(p) for p in opaques]}
                    atomic_write(os.path.join(tmp, "whiteouts"), jsonfast.dumps(hidden), 0o600,
                                 False)
                markers = os.geteuid() == 0
                if markers and hidden:
                    _write_overlay_markers(fs_dir, whiteouts, opaques)
                size = _disk_usage(tmp)
                if self.sync:
                    _sync_tree(tmp)
                os.rename(tmp, final)
            except BaseException:
                self._remove_path(tmp)
                raise
            info = {"chain_id": chain_id, "parent": parent, "size": size,
                    "whiteouts": hidden is not None, "overlay_markers": markers,
                    "diff_id": getattr(stats, "diff_id", None),
                    "root_entry": b"" in getattr(stats, "explicit_dirs", ())}
            atomic_write(os.path.join(final, "complete"), jsonfast.dumps(info), 0o600, self.sync)
            return info
        finally:
            os.close(lock_fd)

    def commit_blob(self, chain_id, parent, blob_path, media_type, diff_id, limits=None,
                    policy=None):
        """``commit_layer`` for a layer blob file: verified against ``diff_id`` while it
        is extracted (see unpack.apply_layer).

        A layer may hardlink a file of a lower layer, which is not in its own empty
        directory: then the layer is applied again after those files are copied up from
        the parent chain (what overlayfs would do on link(2)).
        """
        from .unpack import LayerError, apply_layer

        def extract(fs_dir):
            try:
                return apply_layer(blob_path, media_type, fs_dir, limits, diff_id, policy)
            except LayerError as e:
                if parent is None or "not in the rootfs" not in str(e):
                    raise
            fd = os.open(fs_dir, _DIR_FLAGS)
            try:
                empty_dir_at(fd)
            finally:
                os.close(fd)
            self._copy_up(parent, layer_lower_links(blob_path, media_type, limits), fs_dir)
            return apply_layer(blob_path, media_type, fs_dir, limits, diff_id, policy)

        def apply(fs_dir):
            stats = extract(fs_dir)
            if parent is not None:
                self._inherit_dirs(parent, fs_dir, stats.explicit_dirs)
            return stats

        def scan():
            return layer_whiteouts(blob_path, media_type, limits)

        return self.commit_layer(chain_id, parent, apply, scan)

    def _inherit_dirs(self, parent, fs_dir, explicit):
        """Gives each directory of ``fs_dir`` the layer made without an entry of its own
        (a parent of something it adds) the mode, owner and xattrs the directory has in
        the view of ``parent``, as extracting onto that view would have kept them: else
        overlay and flatten would show 0755 root for a lower 1777 /tmp."""
        chain = self.chain(parent)
        hidden = {}
        top = os.fsencode(fs_dir)
        for dirpath, _, _ in os.walk(top):  # never descends into symlinks
            rel = os.path.relpath(dirpath, top)
            if rel == b"." or rel in explicit:
                continue
            self._inherit_dir(chain, rel, dirpath, hidden)

    def _inherit_dir(self, chain, rel, dst, hidden):
        """Copies the attributes of directory ``rel`` (bytes) in the view of ``chain``
        (topmost first) onto ``dst``, when that view has a directory there. ``hidden``
        caches each snapshot's (whiteout paths, opaque directories)."""
        parts = rel.split(b"/")
        ancestors = {b"/".join(parts[:i]) for i in range(1, len(parts))}
        for chain_id in chain:
            if chain_id not in hidden:
                hidden[chain_id] = self._hidden(chain_id)
            whiteouts, opaques = hidden[chain_id]
            if rel in whiteouts or ancestors & whiteouts:
                return
            fs_fd = os.open(self.fs_path(chain_id), _DIR_FLAGS)
            try:
                fd = _open_beneath(fs_fd, parts[:-1])
            finally:
                os.close(fs_fd)
            if fd is not None:
                try:
                    st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                try:
                    if st is not None:
                        if stat.S_ISDIR(st.st_mode):
                            _copy_attributes("/proc/self/fd/%d/%s" % (fd, os.fsdecode(parts[-1])),
                                             dst, st, times=False)
                        return  # a non-directory (or whiteout marker) hides lower ones
                finally:
                    os.close(fd)
            if ancestors & opaques:
                return  # lower layers' content of an ancestor is hidden

    def _hidden(self, chain_id):
        """(set of whiteout paths, set of opaque directories) of a snapshot, as bytes."""
        if not self.info(chain_id).get("whiteouts"):
            return set(), set()
        with open(os.path.join(self.path(chain_id), "whiteouts"), "rb") as f:
            doc = jsonfast.loads(f.read().decode())
        return ({os.fsencode(p) for p in doc["whiteouts"]},
                {os.fsencode(p) for p in doc["opaques"]})

    def _copy_up(self, parent, paths, fs_dir):
        """Copies the files ``paths`` (bytes, relative) of the view of ``parent`` into
        ``fs_dir`` at the same paths."""
        if not paths:
            return
        view = os.path.join(self.snapshot_dir, ".tmp-view-%d" % os.getpid())
        self._remove_path(view)
        self.flatten(parent, view)
        try:
            view_fd, dest_fd = os.open(view, _DIR_FLAGS), os.open(fs_dir, _DIR_FLAGS)
            try:
                for path in paths:
                    head, _, name = path.rpartition(b"/")
                    src_dir = _open_beneath(view_fd, head.split(b"/") if head else [])
                    if src_dir is None:
                        continue
                    try:
                        try:
                            st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        if not stat.S_ISREG(st.st_mode):
                            continue
                        dst_dir = _open_beneath(dest_fd, head.split(b"/") if head else [],
                                                create=True)
                        try:
                            dst = "/proc/self/fd/%d/%s" % (dst_dir, os.fsdecode(name))
                            _copy_file("/proc/self/fd/%d/%s" % (src_dir, os.fsdecode(name)),
                                       dst)
                            _copy_attributes("/proc/self/fd/%d/%s" % (src_dir,
                                                                      os.fsdecode(name)),
                                             dst, st)
                        finally:
                            os.close(dst_dir)
                    finally:
                        os.close(src_dir)
            finally:
                os.close(view_fd)
                os.close(dest_fd)
        finally:
            self._remove_path(view)

    def chain(self, chain_id):
        """[chain_id, parent, grandparent, ...]: the committed snapshots a view needs."""
        chain = []
        while chain_id is not None:
            info = self.info(chain_id)
            if info is None:
                raise NotFound("snapshot %s is missing or incomplete: unpack the image again"
                               % chain_id)
            chain.append(chain_id)
            if len(chain) > 1000:
                raise StateError("snapshot %s: parent chain loops" % chain[0])
            chain_id = info.get("parent")
        return chain

    def committed(self):
        """{chain_id: info} of every complete committed snapshot."""
        found = {}
        for name in os.listdir(self.snapshot_dir):
            if len(name) == 64 and not name.strip("0123456789abcdef"):
                info = self.info("sha256:" + name)
                if info is not None:
                    found["sha256:" + name] = info
        return found

    def flatten(self, chain_id, dest):
        """Writes the rootfs ``chain_id`` shows into the new directory ``dest`` (a copy,
        whatever the backend), atomically: built beside it, then renamed."""
        dest = os.path.abspath(dest)
        if os.path.lexists(dest):
            raise StateError("unpack: %s already exists; remove it or choose another "
                             "destination" % dest)
        from .unpack import remove_stale_temps
        chain = self.chain(chain_id)
        parent, name = os.path.split(dest)
        os.makedirs(parent, exist_ok=True)  # like `umoci unpack` making the bundle directory
        remove_stale_temps(parent, name)
        tmp = os.path.join(parent, ".%s.unpack-%d" % (name, os.getpid()))
        os.mkdir(tmp, 0o755)
        try:
            for each in reversed(chain):
                self._apply_snapshot(each, tmp)
            os.rename(tmp, dest)
        except BaseException:
            self._remove_path(tmp)
            raise

    # -- active snapshots ---------------------------------------------------

    def prepare(self, key, parent):
        """Creates the active snapshot ``key`` over committed snapshot ``parent`` (a chain
        ID, or None for an empty rootfs) and returns its mounts (nothing is mounted)."""
        _check_key(key)
        chain = self.chain(parent) if parent is not None else []
        if self.backend == "overlay":
            unmarked = [c for c in chain if self.info(c).get("whiteouts")
                        and not self.info(c).get("overlay_markers")]
            if unmarked:
                raise Unsupported("snapshot %s was unpacked without root, so it lacks overlay "
                                  "whiteouts: use the copy backend or prune and pull as root"
                                  % unmarked[0])
        final = os.path.join(self.active_dir, key)
        if os.path.lexists(final):
            raise StateError("active snapshot %r already exists: remove it first" % key)
        tmp = os.path.join(self.active_dir, ".tmp-%s-%d" % (key, os.getpid()))
        self._remove_path(tmp)
        os.mkdir(tmp, 0o700)
        flat_lock = None
        try:
            info = {"key": key, "parent": parent, "backend": self.backend}
            if self.backend == "overlay":
                os.mkdir(os.path.join(tmp, "upper"), 0o755)
                os.mkdir(os.path.join(tmp, "work"), 0o700)
                flat = self._overlay_layout(key, chain)[1]
                if flat is not None:
                    flat_lock = self._make_flat(flat)
                    info["flat"] = flat
            else:
                rootfs = os.path.join(tmp, "rootfs")
                os.mkdir(rootfs, 0o755)
                for chain_id in reversed(chain):
                    self._apply_snapshot(chain_id, rootfs)
            atomic_write(os.path.join(tmp, "info.json"), jsonfast.dumps(info), 0o600, self.sync)
            os.rename(tmp, final)
        except BaseException:
            self._remove_path(tmp)
            raise
        finally:
            if flat_lock is not None:
                os.close(flat_lock)  # the active snapshot now names it: prune keeps it
        return self.mounts_for(key)

    def active_info(self, key):
        _check_key(key)
        try:
            with open(os.path.join(self.active_dir, key, "info.json"), "rb") as f:
                return jsonfast.loads(f.read().decode())
        except FileNotFoundError:
            raise NotFound("active snapshot %r does not exist" % key) from None

    def mounts_for(self, key):
        """The mounts of active snapshot ``key``: [{"type", "source", "options"}]."""
        info = self.active_info(key)
        base = os.path.join(self.active_dir, key)
        if info["backend"] == "copy":
            return [{"type": "bind", "source": os.path.join(base, "rootfs"),
                     "options": ["rbind", "rw"]}]
        upper = os.path.join(base, "upper")
        chain = self.chain(info["parent"]) if info["parent"] is not None else []
        if not chain:
            return [{"type": "bind", "source": upper, "options": ["rbind", "rw"]}]
        lowers, flat = self._overlay_layout(key, chain, info.get("flat"))
        if flat is not None and flat != info.get("flat"):
            raise StateError("active snapshot %r: its layers no longer fit one overlay mount "
                             "(was the store moved?): remove it and prepare it again" % key)
        return [{"type": "overlay", "source": "overlay",
                 "options": _overlay_options(lowers, base)}]

    def _overlay_layout(self, key, chain, flat=None):
        """(lowerdirs topmost first, chain ID of the flattened bottom or None) for ``chain``.

        Snapshot paths when they fit in a mount; else short links; else the top layers'
        links over the flattened rest (``flat``: the one prepare chose, if any).
        """
        base = os.path.join(self.active_dir, key)
        if flat is None:
            lowers = [self.fs_path(c) for c in chain]
            if _fits(lowers, base):
                return lowers, None
            lowers = [self._short_link(c) for c in chain]
            if _fits(lowers, base):
                return lowers, None
            keep = 0  # the most top layers that fit over one flattened snapshot
            while (keep + 1 < len(chain)
                   and _fits(lowers[:keep + 1] + [self.flat_path(chain[keep + 1])], base)):
                keep += 1
            flat = chain[keep]
        keep = chain.index(flat)
        return [self._short_link(c) for c in chain[:keep]] + [self.flat_path(flat)], flat

    def _short_link(self, chain_id):
        """``l/NAME``, a symlink to the snapshot's fs: the shortest unused prefix of its
        hex ID (at least _SHORT_LINK digits) names it, or the one that names it already."""
        hexid = _hex(chain_id)
        target = os.path.join("..", "snapshots", hexid, "fs")
        os.makedirs(self.link_dir, 0o700, exist_ok=True)
        for length in range(_SHORT_LINK, len(hexid) + 1):
            path = os.path.join(self.link_dir, hexid[:length])
            try:
                os.symlink(target, path)
                return path
            except FileExistsError:
                try:
                    if os.readlink(path) == target:
                        return path
                except OSError:
                    pass  # not a link: a clash, try a longer name
        raise StateError("snapshot %s: no free name under %s" % (chain_id, self.link_dir))

    def flat_path(self, chain_id):
        return os.path.join(self.flat_dir, _hex(chain_id))

    def _make_flat(self, chain_id):
        """Creates ``flat/HEX``, the flattened view of ``chain_id``, unless it exists;
        returns an fd holding a shared flock on it (prune leaves it alone meanwhile)."""
        os.makedirs(self.flat_dir, 0o700, exist_ok=True)
        hexid = _hex(chain_id)
        lock_fd = os.open(os.path.join(self.flat_dir, hexid + ".lock"),
                          os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            final = self.flat_path(chain_id)
            if not os.path.exists(final):
                tmp = os.path.join(self.flat_dir, ".tmp-%s-%d" % (hexid, os.getpid()))
                self._remove_path(tmp)
                try:
                    self.flatten(chain_id, tmp)
                    if self.sync:
                        _sync_tree(tmp)
                    os.rename(tmp, final)
                except BaseException:
                    self._remove_path(tmp)
                    raise
            fcntl.flock(lock_fd, fcntl.LOCK_SH)  # other prepares of this chain may proceed
        except BaseException:
            os.close(lock_fd)
            raise
        return lock_fd

    def active(self):
        """{key: info} of every active snapshot."""
        found = {}
        for name in os.listdir(self.active_dir):
            if not name.startswith("."):
                try:
                    found[name] = self.active_info(name)
                except NotFound:
                    pass
        return found

    def remove(self, key):
        """Deletes active snapshot ``key`` (its mounts must be unmounted by the caller).

        The directory is first renamed out of the way, so a crash midway never leaves a
        half-deleted ``key`` that looks present to prepare and absent to remove; what such
        a crash leaves (``.rm-*``) goes with the next prune."""
        _check_key(key)
        path = os.path.join(self.active_dir, key)
        if not os.path.lexists(path):
            raise NotFound("active snapshot %r does not exist" % key)
        doomed = os.path.join(self.active_dir, ".rm-%s-%d" % (key, os.getpid()))
        os.rename(path, doomed)
        self._remove_path(doomed)

    # -- space --------------------------------------------------------------

    def _needed(self, keep):
        needed = set()
        for chain_id in list(keep) + [i.get("parent") for i in self.active().values()]:
            while chain_id is not None and chain_id not in needed:
                needed.add(chain_id)
                info = self.info(chain_id)
                chain_id = info.get("parent") if info else None
        return needed

    def usage(self, keep):
        """{"count", "bytes", "reclaimable", "active"} with ``keep`` the chain IDs images use."""
        needed = self._needed(keep)
        committed = self.committed()
        total = sum(i.get("size", 0) for i in committed.values())
        unused = sum(i.get("size", 0) for c, i in committed.items() if c not in needed)
        debris = sum(_disk_usage(p) for p in self._debris()
                     + [path for path, _, _ in self._unused_flats()])
        flats = _disk_usage(self.flat_dir)
        return {"count": len(committed), "bytes": total + flats + debris,
                "reclaimable": unused + debris, "active": len(self.active())}

    def prune(self, keep):
        """Removes committed snapshots outside ``keep`` and the chains of active snapshots,
        and debris of interrupted unpacks; returns (snapshots removed, bytes freed)."""
        needed = self._needed(keep)
        removed = freed = 0
        for chain_id, info in self.committed().items():
            if chain_id not in needed:
                self._remove_path(self.path(chain_id))
                _unlink(self.path(chain_id) + ".lock")
                removed += 1
                freed += info.get("size", 0)
        for path in self._debris():
            freed += _disk_usage(path)
            self._remove_path(path)
        for path, lock_path, chain_id in self._unused_flats():
            # Under the flat's lock, and checked again: a prepare may have just chosen it.
            # The lock file stays: removing it could let two prepares lock different files.
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                if chain_id not in {i.get("flat") for i in self.active().values()}:
                    freed += _disk_usage(path)
                    self._remove_path(path)
            finally:
                os.close(fd)
        self._remove_stale_links()
        return removed, freed

    def _unused_flats(self):
        """[(path, lock path, chain ID or None)] of flattened snapshots no active snapshot
        uses, and of debris of interrupted ones (None), whose lock nobody holds."""
        if not os.path.isdir(self.flat_dir):
            return []
        used = {i.get("flat") for i in self.active().values()}
        found = []
        for name in os.listdir(self.flat_dir):
            if name.endswith(".lock"):
                continue
            temporary = name.startswith(".")  # .tmp-HEX-PID and flatten's own temp in it
            hexid = name.lstrip(".")[4:68] if temporary else name
            lock_path = os.path.join(self.flat_dir, hexid + ".lock")
            if (temporary or "sha256:" + name not in used) and not _locked(lock_path):
                found.append((os.path.join(self.flat_dir, name), lock_path,
                              None if temporary else "sha256:" + name))
        return found

    def _remove_stale_links(self):
        if not os.path.isdir(self.link_dir):
            return
        for name in os.listdir(self.link_dir):
            path = os.path.join(self.link_dir, name)
            if not os.path.exists(path):  # its snapshot is gone
                _unlink(path)

    def _debris(self):
        """Temporary and marker-less snapshot directories nobody is writing right now."""
        found = []
        for name in os.listdir(self.snapshot_dir):
            path = os.path.join(self.snapshot_dir, name)
            if name.endswith(".lock") or not os.path.isdir(path):
                continue
            if name.startswith(".tmp-"):
                hexid = name[5:].partition("-")[0]
            elif not os.path.exists(os.path.join(path, "complete")):
                hexid = name
            else:
                continue
            if not _locked(os.path.join(self.snapshot_dir, hexid + ".lock")):
                found.append(path)
        return found

    # -- the copy backend ---------------------------------------------------

    def _apply_snapshot(self, chain_id, rootfs):
        """Applies one committed snapshot onto the flattened ``rootfs``: hides what its
        whiteouts name, then copies its files over."""
        base = self.path(chain_id)
        info = self.info(chain_id)
        skip = set()
        if info.get("whiteouts"):
            with open(os.path.join(base, "whiteouts"), "rb") as f:
                hidden = jsonfast.loads(f.read().decode())
            root_fd = os.open(rootfs, _DIR_FLAGS)
            try:
                for path in hidden["opaques"]:
                    fd = _open_beneath(root_fd, os.fsencode(path).split(b"/"))
                    if fd is not None:
                        try:
                            empty_dir_at(fd)
                        finally:
                            os.close(fd)
                for path in hidden["whiteouts"]:
                    head, _, name = os.fsencode(path).rpartition(b"/")
                    fd = _open_beneath(root_fd, head.split(b"/") if head else [])
                    if fd is not None:
                        try:
                            remove_tree_at(fd, name)
                        finally:
                            os.close(fd)
                    skip.add(os.fsencode(path))
            finally:
                os.close(root_fd)
        fs = os.fsencode(os.path.join(base, "fs"))
        _copy_tree(fs, os.fsencode(rootfs), b"", skip, {})
        if info.get("root_entry"):  # the layer's "./" entry
            _copy_attributes(fs, os.fsencode(rootfs), os.lstat(fs))

    def _remove_path(self, path):
        parent, name = os.path.split(path)
        fd = os.open(parent, _DIR_FLAGS)
        try:
            remove_tree_at(fd, os.fsencode(name))
        finally:
            os.close(fd)


def _layer_entries(blob_path, media_type, limits=None):
    """The tar entries of a layer blob, read again (apply_layer already accepted it)."""
    from .tarstream import TarReader
    from .unpacklimits import UnpackLimits
    from .unpackstream import compression_of, open_source
    with open(blob_path, "rb", buffering=0) as blob:
        source = open_source(blob, compression_of(media_type))
        try:
            reader = TarReader(source, limits or UnpackLimits())
            while True:
                entry = reader.next_entry()
                if entry is None:
                    return
                yield entry
        finally:
            source.close()


def layer_whiteouts(blob_path, media_type, limits=None):
    """([whiteout target paths], [opaque directory paths]) of a layer blob, as bytes paths
    relative to the rootfs."""
    whiteouts, opaques = [], []
    for entry in _layer_entries(blob_path, media_type, limits):
        parts = _relative(entry.name).split(b"/")
        if not parts[-1].startswith(b".wh."):
            continue
        head = b"/".join(parts[:-1])
        if parts[-1] == b".wh..wh..opq":
            opaques.append(head)
        else:
            whiteouts.append(b"/".join(parts[:-1] + [parts[-1][4:]]))
    return whiteouts, opaques


def layer_lower_links(blob_path, media_type, limits=None):
    """The hardlink targets of a layer that the layer itself has not written before the
    link (bytes relative paths): files it links from lower layers."""
    from .tarstream import HARDLINK
    seen, lower = set(), []
    for entry in _layer_entries(blob_path, media_type, limits):
        name = _relative(entry.name)
        if entry.type == HARDLINK:
            target = _relative(entry.linkname)
            if target not in seen and target not in lower:
                lower.append(target)
        seen.add(name)
    return lower


def _relative(name):
    parts = [p for p in name.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise ConfigError("layer entry %r has a '..' component" % name)
    return b"/".join(parts)


def _copy_tree(src, dst, rel, skip, links):
    """Merges directory ``src`` into existing directory ``dst`` (never following symlinks).
    ``links`` maps (st_dev, st_ino) of multiply-linked files to their first copy."""
    with os.scandir(src) as it:
        names = sorted(os.fsencode(e.name) for e in it)
    for name in names:
        s, d = src + b"/" + name, dst + b"/" + name
        child_rel = rel + b"/" + name if rel else name
        st = os.lstat(s)
        mode = st.st_mode
        if child_rel in skip and stat.S_ISCHR(mode) and st.st_rdev == 0:
            continue  # an overlay whiteout marker
        try:
            existing = os.lstat(d)
        except FileNotFoundError:
            existing = None
        if stat.S_ISDIR(mode):
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(d)
                existing = None
            if existing is None:
                os.mkdir(d, 0o700)
            _copy_tree(s, d, child_rel, skip, links)
        else:
            if existing is not None:
                parent_fd = os.open(dst, _DIR_FLAGS)
                try:
                    remove_tree_at(parent_fd, name)
                finally:
                    os.close(parent_fd)
            if st.st_nlink > 1 and not stat.S_ISDIR(mode) and (st.st_dev, st.st_ino) in links:
                os.link(links[(st.st_dev, st.st_ino)], d, follow_symlinks=False)
                continue
            if stat.S_ISREG(mode):
                _copy_file(s, d)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(s), d)
            else:
                os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            if st.st_nlink > 1:
                links[(st.st_dev, st.st_ino)] = d
        _copy_attributes(s, d, st)


def _copy_attributes(src, dst, st, times=True):
    """Xattrs, owner (as root), mode and (``times``) times of ``src`` (lstat ``st``) onto
    ``dst``."""
    _copy_xattrs(src, dst)
    if os.geteuid() == 0:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    if times:
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src, dst):
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
        try:
            size = os.fstat(fd_in).st_size
            copied = 0
            while copied < size:
                n = os.copy_file_range(fd_in, fd_out, size - copied)
                if n == 0:
                    break
                copied += n
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _copy_xattrs(src, dst):
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return
        raise
    for name in names:
        if name.startswith(_COPY_XATTRS):
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=False)


def _write_overlay_markers(fs_dir, whiteouts, opaques):
    """Writes overlayfs' own whiteouts (0/0 char devices) and opaque xattrs into ``fs_dir``.
    Paths come from a hostile layer: each is reached component by component, never
    following a symlink, and a whiteout never replaces this layer's own entry."""
    root_fd = os.open(fs_dir, _DIR_FLAGS)
    try:
        for path in opaques:
            fd = _open_beneath(root_fd, path.split(b"/") if path else [])
            if fd is not None:
                try:
                    os.setxattr(fd, _OPAQUE_XATTR, b"y")
                finally:
                    os.close(fd)
        for path in whiteouts:
            head, _, name = path.rpartition(b"/")
            fd = _open_beneath(root_fd, head.split(b"/") if head else [], create=True)
            try:
                before = os.fstat(fd)
                os.mknod(name, stat.S_IFCHR | 0o600, 0, dir_fd=fd)
                # the marker is not the layer's change: keep the directory's mtime
                os.utime(fd, ns=(before.st_atime_ns, before.st_mtime_ns))
            except FileExistsError:
                pass  # the layer itself put something here: it stays visible
            finally:
                os.close(fd)
    finally:
        os.close(root_fd)


def _open_beneath(root_fd, parts, create=False):
    """An fd of directory ``parts`` under ``root_fd`` without following symlinks; None
    when a component is missing or not a directory (unless ``create``)."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if not part or part in (b".", b".."):
                raise ConfigError("whiteout path component %r is not allowed" % part)
            try:
                sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if create and e.errno == errno.ENOENT:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                elif e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP) and not create:
                    os.close(fd)
                    return None
                else:
                    raise
            os.close(fd)
            fd = sub
        return fd
    except BaseException:
        os.close(fd)
        raise


def _overlay_options(lowers, base):
    return ["lowerdir=" + ":".join(lowers), "upperdir=" + os.path.join(base, "upper"),
            "workdir=" + os.path.join(base, "work")]


def _fits(lowers, base):
    """Whether an overlay of ``lowers`` fits one mount(2) call."""
    return (len(lowers) <= MAX_LOWER_DIRS
            and len(",".join(_overlay_options(lowers, base))) <= MAX_MOUNT_DATA)


def _disk_usage(path):
    total = 0
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    total += st.st_blocks * 512
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as it:
            for entry in it:
                total += _disk_usage(entry.path)
    return total


def _sync_tree(path):
    """Makes everything below ``path`` durable before the rename publishes it: one syncfs of
    its filesystem (an fsync per file costs minutes on flash for a 10k-file layer)."""
    from .. import native
    fd = os.open(path, _DIR_FLAGS)
    try:
        native.syncfs(fd)
    finally:
        os.close(fd)


def _locked(path):
    """Whether another process holds the flock on ``path``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _check_key(key):
    if (not isinstance(key, str) or not key or key.startswith(".") or "/" in key
            or "\0" in key or len(key) > 200):
        raise ConfigError("snapshot key %r: use 1-200 characters, no '/', not starting with '.'"
                          % (key,))


def _hex(chain_id):
    algorithm, _, hexpart = str(chain_id).partition(":")
    if algorithm != "sha256" or len(hexpart) != 64 or hexpart.strip("0123456789abcdef"):
        raise ConfigError("chain ID %r is not a sha256 digest" % (chain_id,))
    return hexpart


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
