"""The OCI config.json of an instance's container: image config + version + instance + paths
(pure).

The base is edgert.oci.defaults.default_config. On top of it:
- process: the version's command, else the image's Entrypoint + Cmd; the image's Env with the
  version's env over it; the version's working_dir, else the image's WorkingDir, else "/";
  the user the edge resolved (``parse_user`` against the image's /etc/passwd and /etc/group).
- /run is a fresh tmpfs of at most RUN_TMPFS_SIZE: small, because its pages are memory (they
  count against the container's memory limit, and without one against the host's).
- each volume is a bind mount of its directory under ``<root>/volumes``; /host is a bind
  (nosuid, nodev, noexec) of the instance's host directory, a small tmpfs of its own:
  lxc.env, .time-status and config maps come from the daemon, prometheus.prom from the
  container (written atomically by rename, as the product documentation asks, so the
  directory must be writable).
- limits: memory (swap the same, so none), CPU quota per 100 ms period, pids.
- devices: a node and a cgroup allow rule for each device of the version; the edge reads
  type, major, minor, mode and owner from the host (``paths["devices"]``).
"""

from ..errors import ConfigError, NotFound
from ..oci.defaults import PATH, default_config

RUN_TMPFS_SIZE = "16m"
CPU_PERIOD = 100000  # microseconds: the kernel's default CFS period


def _strings(value, what, image):
    if value is None:
        return []
    if type(value) is not list or not all(type(v) is str for v in value):
        raise ConfigError("image %s: %s must be a list of strings: the image config is "
                          "broken; rebuild the image or set \"command\" in the node service"
                          % (image, what))
    return value


def _args(version, image_config, image):
    if version["command"]:
        return list(version["command"])
    args = (_strings(image_config.get("Entrypoint"), "config.Entrypoint", image)
            + _strings(image_config.get("Cmd"), "config.Cmd", image))
    if not args:
        raise ConfigError("image %s has no Entrypoint or Cmd: set \"command\" in the node "
                          "service" % image)
    return args


def _env(version, image_config, image):
    env = {}
    for entry in _strings(image_config.get("Env"), "config.Env", image):
        key, equals, value = entry.partition("=")
        if not key or not equals:
            raise ConfigError("image %s: config.Env entry %r is not KEY=value: rebuild the "
                              "image or override it in the node service's env" % (image, entry))
        env[key] = value
    env.update(version["env"])
    if "PATH" not in env:
        env = dict([PATH.split("=", 1)], **env)
    return ["%s=%s" % item for item in env.items()]


def _cwd(version, image_config):
    cwd = version["working_dir"] or image_config.get("WorkingDir")
    if type(cwd) is not str or not cwd:
        return "/"
    return cwd if cwd.startswith("/") else "/" + cwd  # Docker reads a relative one from "/"


def _bind(destination, source, read_only):
    return {"destination": destination, "type": "bind", "source": source,
            "options": ["bind", "nosuid", "nodev", "ro" if read_only else "rw"]}


def _mounts(config, version, paths):
    mounts = []
    for mount in config["mounts"]:
        if mount["destination"] == "/run":
            mount = dict(mount, options=["nosuid", "nodev", "mode=755",
                                         "size=" + RUN_TMPFS_SIZE])
        mounts.append(mount)
    for volume in version["volumes"]:
        mounts.append(_bind(volume["path"], paths["volumes"][volume["name"]],
                            volume["read_only"]))
    if paths.get("host_dir"):
        host = _bind("/host", paths["host_dir"], False)  # the container writes its metrics
        host["options"].insert(3, "noexec")
        mounts.append(host)
    if paths.get("resolv_conf"):
        mounts.append(_bind("/etc/resolv.conf", paths["resolv_conf"], True))
    return mounts


def _resources(version):
    resources = {}
    if version["memory_limit"] is not None:
        resources["memory"] = {"limit": version["memory_limit"], "swap": version["memory_limit"]}
    if version["cpu_limit"] is not None:
        resources["cpu"] = {"quota": max(1000, int(round(version["cpu_limit"] * CPU_PERIOD))),
                            "period": CPU_PERIOD}
    if version["pids_limit"] is not None:
        resources["pids"] = {"limit": version["pids_limit"]}
    return resources


def _devices(version, paths, instance):
    """(linux.devices, cgroup allow rules) for the version's devices."""
    nodes, rules = [], []
    found = paths.get("devices") or {}
    for device in version["devices"]:
        path = device["path"]
        if path not in found:
            raise NotFound("instance %s: device %s is not on this device: connect it or remove "
                           "it from the node service" % (instance["id"], path))
        kind, major, minor, mode, uid, gid = found[path]
        nodes.append({"path": path, "type": kind, "major": major, "minor": minor,
                      "fileMode": mode, "uid": uid, "gid": gid})
        if kind != "p":  # fifos need no cgroup permission
            rules.append({"allow": True, "type": "b" if kind == "b" else "c", "major": major,
                          "minor": minor, "access": device["permissions"]})
    return nodes, rules


def build_config(version, instance, image_config, paths, user=(0, 0, ())):
    """The config.json dict for ``instance`` running ``version`` (a version record).

    ``image_config``: the image config's "config" object (Entrypoint, Cmd, Env, WorkingDir).
    ``instance``: its "id", and "node_service" unless it is a one-off container.
    ``paths``: "rootfs", "volumes" {name: directory}, "devices" {path: (type, major, minor,
    mode, uid, gid)}; optional: "host_dir" (None: no /host), "cgroup" (cgroupsPath; None: the
    runtime's default), "image" (the image reference, for messages), "netns": a network
    namespace (path) prepared by the network setup for the container to join, with the
    version's net_devices in it already (without it the container gets a new one of its own,
    with only loopback, and the runtime moves the net_devices in), and "resolv_conf": a file
    bound read-only on /etc/resolv.conf. ``user``: (uid, gid, additional gids), see
    ``parse_user``.
    """
    image_config = image_config or {}
    service = instance.get("node_service")
    image = paths.get("image") or "of %s %s" % (("node service", service) if service
                                                 else ("container", instance["id"]))
    uid, gid, extra_gids = user
    config = default_config(args=_args(version, image_config, image), rootfs=paths["rootfs"],
                            hostname=instance["id"], env=_env(version, image_config, image),
                            cwd=_cwd(version, image_config), uid=uid, gid=gid,
                            network=paths.get("netns") or "new")
    config["process"]["user"]["additionalGids"] = list(extra_gids)
    config["mounts"] = _mounts(config, version, paths)
    linux = config["linux"]
    if paths.get("cgroup"):
        linux["cgroupsPath"] = paths["cgroup"]
    nodes, rules = _devices(version, paths, instance)
    linux["devices"] = nodes
    linux["resources"].update(_resources(version))
    linux["resources"]["devices"].extend(rules)
    if version["net_devices"] and not paths.get("netns"):
        linux["netDevices"] = {device["name"]: {} for device in version["net_devices"]}
    config["annotations"] = {"edgert.instance": instance["id"],
                             "edgert.version": str(version["version"])}
    if service:
        config["annotations"]["edgert.service"] = service
    return config


# --- users --------------------------------------------------------------------------------------

MAX_ID = 0xFFFFFFFE  # (uid_t)-1 means "no change" to the kernel


def _entries(text, fields):
    """The colon-separated lines of an /etc/passwd or /etc/group text with enough fields."""
    for line in (text or "").splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            yield parts


def _number(text):
    if text.isascii() and text.isdigit() and int(text) <= MAX_ID:
        return int(text)
    return None


def parse_user(user, passwd_text=None, group_text=None):
    """(uid, gid, additional gids) for ``user`` ("name", "uid", "name:group", "uid:gid"...),
    resolved as Docker and runc do against the image's /etc/passwd and /etc/group texts
    (None: the file is missing). Numeric ids need no files: a uid missing from passwd gets
    gid 0. Additional groups are those listing the user by name, unless a group is given.
    None or "" is root."""
    if not user:
        user = "0"
    name, colon, group = user.partition(":")
    if not name or colon and not group:
        raise ConfigError("user %r: expected \"user\" or \"user:group\"" % user)
    uid, gid, login = _number(name), 0, None
    for fields in _entries(passwd_text, 4):
        if (fields[0] == name if uid is None else _number(fields[2]) == uid):
            uid, login = _number(fields[2]), fields[0]
            gid = _number(fields[3])
            if uid is None or gid is None:
                raise ConfigError("user %r: the image's /etc/passwd entry has a bad uid or "
                                  "gid: %r" % (user, ":".join(fields)))
            break
    if uid is None:
        raise ConfigError("user %r: %s is not in the image's /etc/passwd: use a numeric uid or "
                          "add the user to the image" % (user, name))
    if colon:
        gid = _number(group)
        if gid is None:
            gid = next((_number(f[2]) for f in _entries(group_text, 3) if f[0] == group), None)
        if gid is None:
            raise ConfigError("user %r: group %s is not in the image's /etc/group: use a "
                              "numeric gid or add the group to the image" % (user, group))
        return uid, gid, []
    extra = []
    if login is not None:
        for fields in _entries(group_text, 4):
            number = _number(fields[2])
            if number is not None and number != gid and number not in extra and \
                    login in fields[3].split(","):
                extra.append(number)
    return uid, gid, extra
