"""Which cgroup hierarchies exist, where they are mounted, and where a container's cgroup goes.

A kernel offers cgroups in one of three layouts:

- v1: one mount per controller group (``cpu,cpuacct`` may share one), e.g. /sys/fs/cgroup/memory;
- v2: one ``cgroup2`` mount holding every controller;
- hybrid: v1 controllers plus a ``cgroup2`` mount (usually /sys/fs/cgroup/unified). A controller is
  bound to exactly one hierarchy, so the cgroup2 root offers only the controllers no v1 mount took.

Hierarchies are named by a key: the controller name for v1 (co-mounted controllers are separate
keys with the same mountpoint), and "" for the cgroup2 hierarchy. Paths are cgroup paths relative
to the hierarchy's mount ("/" is the mount itself). Pure: the caller reads the files.
"""

from ..errors import ConfigError, Unsupported

# v1 controllers edgert creates cgroups in; named hierarchies such as name=systemd hold none.
V1_CONTROLLERS = ("cpuset", "cpu", "cpuacct", "memory", "pids", "devices", "freezer", "blkio",
                  "hugetlb", "net_cls", "net_prio", "rdma", "perf_event")

CGROUP_ROOT = "/sys/fs/cgroup"


class Layout:
    """The cgroup hierarchies of this host and this process's place in each.

    ``v1``: controller -> mountpoint. ``unified``: the cgroup2 mountpoint or None.
    ``v2_controllers``: the controllers the cgroup2 root offers (its cgroup.controllers).
    ``own``: hierarchy key -> this process's cgroup path relative to that mount.
    ``mode``: "v1", "v2" or "hybrid".
    """

    def __init__(self, v1, unified, v2_controllers=(), own=None):
        if not v1 and not unified:
            raise Unsupported("cgroups: no cgroup or cgroup2 filesystem is mounted; "
                              "mount cgroup2 at /sys/fs/cgroup")
        self.v1 = dict(v1)
        self.unified = unified
        self.v2_controllers = frozenset(v2_controllers) if unified else frozenset()
        self.own = dict(own or {})
        if not self.v1:
            self.mode = "v2"
        elif unified:
            self.mode = "hybrid"
        else:
            self.mode = "v1"

    def version(self, controller):
        """1 or 2 for the hierarchy that holds ``controller``, None when neither does."""
        if controller in self.v1:
            return 1
        if controller in self.v2_controllers:
            return 2
        return None

    def key(self, controller):
        """The hierarchy key a controller's files are written under, None when unavailable."""
        version = self.version(controller)
        if version == 1:
            return controller
        return "" if version == 2 else None

    def hierarchies(self):
        """Hierarchy key -> mountpoint, for every hierarchy a container's cgroup is made in."""
        mounts = dict(self.v1)
        if self.unified:
            mounts[""] = self.unified
        return mounts

    def with_v2_controllers(self, controllers):
        return Layout(self.v1, self.unified, controllers, self.own)

    def __eq__(self, other):
        return isinstance(other, Layout) and vars(self) == vars(other)

    def __repr__(self):
        return (f"Layout(mode={self.mode!r}, v1={self.v1!r}, unified={self.unified!r}, "
                f"v2_controllers={sorted(self.v2_controllers)!r}, own={self.own!r})")


def detect(mountinfo_text, proc_cgroup_text, v2_controllers=()):
    """Builds the Layout from /proc/self/mountinfo and /proc/self/cgroup texts.

    ``v2_controllers`` is the content of the cgroup2 root's cgroup.controllers (split or not).
    """
    if isinstance(v2_controllers, str):
        v2_controllers = v2_controllers.split()
    memberships = _parse_proc_cgroup(proc_cgroup_text)
    v1, unified, mount_roots = {}, None, {}
    for mountpoint, root, fstype, options in _cgroup_mounts(mountinfo_text):
        if fstype == "cgroup2":
            if unified is None or _preferred(mountpoint, unified):
                unified = mountpoint
                mount_roots[""] = root
            continue
        for controller in options.split(","):
            if controller not in V1_CONTROLLERS:
                continue  # mount options and named hierarchies
            current = v1.get(controller)
            if current is None or _preferred(mountpoint, current):
                v1[controller] = mountpoint
                mount_roots[controller] = root
    own = {}
    for key in list(v1) + ([""] if unified else []):
        path = memberships.get(key, "/")
        own[key] = _below_mount_root(path, mount_roots[key])
    return Layout(v1, unified, v2_controllers, own)


def _preferred(candidate, current):
    """A second mount of a hierarchy wins only if it is the standard place and the first is not."""
    standard = CGROUP_ROOT + "/"
    return (candidate + "/").startswith(standard) and not (current + "/").startswith(standard)


def _cgroup_mounts(mountinfo_text):
    """(mountpoint, root, fstype, super options) of each cgroup and cgroup2 mount."""
    for line in mountinfo_text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if len(fields) < sep + 4 or sep < 5:
            continue
        fstype = fields[sep + 1]
        if fstype in ("cgroup", "cgroup2"):
            yield _unescape(fields[4]), _unescape(fields[3]), fstype, fields[sep + 3]


def _unescape(field):
    """mountinfo writes space, tab, newline and backslash as \\ooo octal escapes."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1:i + 4]
        if field[i] == "\\" and len(digits) == 3 and digits.isdigit():
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _parse_proc_cgroup(text):
    """Hierarchy key -> cgroup path from /proc/<pid>/cgroup ("4:cpu,cpuacct:/a", "0::/b")."""
    keys = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            keys[""] = path
            continue
        for controller in controllers.split(","):
            if controller in V1_CONTROLLERS:
                keys[controller] = path
    return keys


def _below_mount_root(path, mount_root):
    """A /proc/self/cgroup path relative to a mount of a subtree (mountinfo root field)."""
    if mount_root in ("/", ""):
        return path
    if path == mount_root:
        return "/"
    if path.startswith(mount_root + "/"):
        return path[len(mount_root):]
    return path


def resolve(cgroups_path, container_id, own_path, parent="edgert"):
    """The container's cgroup path in one hierarchy, from OCI ``linux.cgroupsPath``.

    Absolute paths are taken as given (relative to the hierarchy's root). Relative ones go below
    the runtime's own cgroup ``own_path``; a missing one becomes ``<own>/<parent>/<container_id>``.
    """
    field = "linux.cgroupsPath"
    if cgroups_path is not None and not isinstance(cgroups_path, str):
        raise ConfigError(f"config.json: {field}: must be a string, got {cgroups_path!r}")
    if cgroups_path and not cgroups_path.startswith("/") and cgroups_path.count(":") == 2:
        raise Unsupported(
            f"config.json: {field}: {cgroups_path!r} is a systemd slice:prefix:name path, and "
            "edgert manages cgroups itself (routers run no systemd); give a cgroupfs path such "
            "as \"/edgert/<name>\" or leave it out")
    if not container_id or "/" in container_id or container_id in (".", ".."):
        raise ConfigError(f"container id {container_id!r}: must be a non-empty name without '/'")
    if not cgroups_path:
        path = _join(field, own_path, parent, container_id)
    elif cgroups_path.startswith("/"):
        path = _join(field, cgroups_path)
    else:
        path = _join(field, own_path, cgroups_path)
    if path == _join(field, own_path) or path == "/":
        raise ConfigError(f"config.json: {field}: {cgroups_path!r} names the runtime's own cgroup "
                          f"{path!r}; name a cgroup below it")
    return path


def resolve_all(layout, cgroups_path, container_id, parent="edgert"):
    """Hierarchy key -> the container's cgroup path, for every hierarchy of ``layout``."""
    return {key: resolve(cgroups_path, container_id, layout.own.get(key, "/"), parent)
            for key in layout.hierarchies()}


def _join(field, *pieces):
    parts = []
    for piece in pieces:
        for part in piece.split("/"):
            if part == "..":
                raise ConfigError(f"config.json: {field}: {'/'.join(pieces)!r} contains '..'; "
                                  "cgroup paths may not climb out of their parent")
            if part and part != ".":
                parts.append(part)
    return "/" + "/".join(parts)
