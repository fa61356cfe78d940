"""Resolve a container path inside a rootfs without ever leaving it.

Symlinks are followed as the container would see them: an absolute link
restarts at the rootfs, and ``..`` never climbs above it. Used for mount
targets and device paths before pivot_root, while the host is still visible.
"""

import os
import stat

MAX_LINKS = 255


def secure_join(root, path, lstat=os.lstat, readlink=os.readlink):
    """Returns the host path of container path ``path`` below ``root``."""
    pending = [p for p in reversed(path.split("/"))]
    resolved = []
    links = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root + "/" + "/".join(resolved + [part])
        try:
            st = lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                raise OSError(40, "resolve %r in %r: too many levels of symbolic links"
                              % (path, root), candidate)
            target = readlink(candidate)
            if target.startswith("/"):
                resolved = []
            pending.extend(reversed(target.split("/")))
            continue
        resolved.append(part)
    return root.rstrip("/") + "/" + "/".join(resolved)
