"""What a layer unpack may do and how much: errors, limits, policy and the stats it returns.

Pure: no I/O, no edge module.
"""

from ..errors import EdgertError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30


class LayerError(EdgertError):
    """A layer is malformed, hostile or cannot be applied; the target must be discarded."""

    code = "bad-layer"


class LimitExceeded(LayerError):
    """A layer exceeds a size or count limit: a decompression bomb, or a limit to raise."""

    code = "layer-limit"


class DiffIDMismatch(LayerError):
    """The uncompressed tar's sha256 differs from the diff ID the image config declares."""

    code = "digest-mismatch"


class UnpackFailed(EdgertError):
    """The target filesystem failed (full, read-only, I/O error): not the layer's fault.

    ``errno`` is the failing call's; the layer blob stays valid, a retry may succeed.
    """

    code = "unpack-failed"

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


class UnpackLimits:
    """Size and count limits; every one exceeded is a LimitExceeded naming it.

    max_layer_bytes: uncompressed tar stream of one layer; max_file_bytes: one file's
    content; max_total_bytes: uncompressed bytes over all layers of one unpack_layers();
    max_entries: tar entries (headers) per layer; max_path_bytes: one path or link target;
    max_meta_bytes: one PAX or GNU long-name header's data (held in memory).
    """

    __slots__ = ("max_layer_bytes", "max_file_bytes", "max_total_bytes", "max_entries",
                 "max_path_bytes", "max_meta_bytes")

    def __init__(self, max_layer_bytes=16 * GiB, max_file_bytes=8 * GiB,
                 max_total_bytes=32 * GiB, max_entries=2_000_000, max_path_bytes=4096,
                 max_meta_bytes=1 * MiB):
        self.max_layer_bytes = max_layer_bytes
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_entries = max_entries
        self.max_path_bytes = max_path_bytes
        self.max_meta_bytes = max_meta_bytes


DEVICES_SKIP = "skip"
DEVICES_CREATE = "create"
DEVICES_REFUSE = "refuse"
DEFAULT_XATTR_PREFIXES = (b"user.", b"security.capability")


class UnpackPolicy:
    """What a layer may put into the rootfs.

    devices: char/block device nodes are skipped and counted ("skip", the default: a
    container gets its devices from its config, not from an image), created ("create", as
    root only) or refused with an error ("refuse"). FIFOs are always created.
    keep_setid: setuid/setgid bits kept (default) or stripped.
    xattr_prefixes: PAX xattrs whose names start with one of these are set (default: user.*
    and security.capability); others (trusted.*, security.selinux, ...) are skipped and
    counted: trusted.overlay.* in a layer could steer overlayfs.
    chown: set uid/gid from the tar; None means "when running as root".
    """

    __slots__ = ("devices", "keep_setid", "xattr_prefixes", "chown")

    def __init__(self, devices=DEVICES_SKIP, keep_setid=True,
                 xattr_prefixes=DEFAULT_XATTR_PREFIXES, chown=None):
        if devices not in (DEVICES_SKIP, DEVICES_CREATE, DEVICES_REFUSE):
            raise ValueError("devices policy must be skip, create or refuse, got %r" % (devices,))
        self.devices = devices
        self.keep_setid = keep_setid
        self.xattr_prefixes = tuple(p if isinstance(p, bytes) else p.encode()
                                    for p in xattr_prefixes)
        self.chown = chown


class LayerStats:
    """What one apply_layer() did."""

    __slots__ = ("diff_id", "tar_bytes", "entries", "files", "file_bytes", "dirs", "symlinks",
                 "hardlinks", "fifos", "devices", "devices_skipped", "whiteouts", "opaques",
                 "xattrs", "xattrs_skipped", "explicit_dirs", "notes")

    def __init__(self):
        self.diff_id = None
        self.tar_bytes = 0
        self.entries = self.files = self.file_bytes = self.dirs = self.symlinks = 0
        self.hardlinks = self.fifos = self.devices = self.devices_skipped = 0
        self.whiteouts = self.opaques = self.xattrs = self.xattrs_skipped = 0
        self.explicit_dirs = set()  # paths of the layer's directory entries (b"": the root)
        self.notes = []

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self):
        return "LayerStats(%s)" % ", ".join("%s=%r" % kv for kv in self.as_dict().items())
