"""Reads a bundle's config.json and checks it once, at the edge, against OCI runtime-spec 1.0-1.2.

``load(bundle)`` returns a validated copy of the document: the same JSON
shape with the spec's defaults filled in (schema.py lists them), root.path
absolute, relative mount destinations made absolute (the spec reads them from
"/") and relative bind-mount sources resolved against the bundle. Everything
past this point may index the result without ``.get`` for defaulted fields.

Errors name the JSON path and what to do. ConfigError: the document is
wrong. Unsupported: the document is valid but asks for something edgert
cannot do (another OS, LSM labels, seccomp notification, Intel RDT, ...).
Unlike the spec's "ignore unknown properties", an unknown field is an error:
a misspelt limit must not silently run a container without it.
"""

import os

from .. import jsonfast
from ..errors import ConfigError, NotFound, Unsupported
from . import mountopts
from .schema import CONFIG, PROCESS, fail, show

SUPPORTED_VERSIONS = "1.0.0 to 1.2.x"

# sysctl names (dotted) each namespace isolates; any other sysctl is host-wide.
_IPC_SYSCTLS = frozenset(("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.auto_msgmni",
                          "kernel.msg_next_id", "kernel.sem", "kernel.sem_next_id",
                          "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                          "kernel.shm_rmid_forced", "kernel.shm_next_id"))
_UTS_SYSCTLS = frozenset(("kernel.hostname", "kernel.domainname"))


def load(bundle_dir):
    """The validated config.json of the bundle at ``bundle_dir``."""
    path = os.path.join(bundle_dir, "config.json")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if not os.path.isdir(bundle_dir):
            raise NotFound("bundle %s: no such directory" % bundle_dir) from None
        raise NotFound("bundle %s: config.json is missing: write one (edgert-oci spec "
                       "--bundle %s makes a default)" % (bundle_dir, bundle_dir)) from None
    except OSError as e:
        raise OSError(e.errno, "read config.json: %s" % os.strerror(e.errno), path) from None
    try:
        config = jsonfast.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as e:
        raise ConfigError("%s: not UTF-8 text (bad byte at offset %d)" % (path, e.start)) from None
    except ValueError as e:
        raise ConfigError("%s: invalid JSON: %s" % (path, e)) from None
    return validate(config, bundle_dir)


def _unique_keys(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ConfigError("config.json: key %s appears twice in one object: keep one"
                                  % jsonfast.dumps(key))
            seen.add(key)
    return obj


def validate(config, bundle_dir):
    """A checked, defaulted copy of the parsed ``config``; ``bundle_dir`` anchors relative paths."""
    try:
        if type(config) is dict:
            check_version(config.get("ociVersion"))
        out = CONFIG.check(config, "")
        linux = out["linux"]
        namespaces = {ns["type"]: ns.get("path") for ns in linux["namespaces"]}
        _check_mount_namespace(namespaces)
        _check_capabilities(out["process"].get("capabilities"), "process.capabilities")
        _check_uts(out, namespaces)
        _check_sysctl(linux["sysctl"], namespaces)
        _check_user_namespace(linux, namespaces)
        _check_time_namespace(linux, namespaces)
        _check_net_devices(linux, namespaces)
        for i, mount in enumerate(out["mounts"]):
            _check_mount(mount, "mounts[%d]" % i, bundle_dir, namespaces)
    except (ConfigError, Unsupported) as e:
        raise type(e)("config.json: %s" % e) from None
    out["root"]["path"] = _in_bundle(bundle_dir, out["root"]["path"])
    return out


def _in_bundle(bundle_dir, path):
    """``path`` read from the bundle directory; not normalised, so symlinks resolve as given."""
    return path if path.startswith("/") else os.path.join(os.path.abspath(bundle_dir), path)


def validate_process(process, source="exec process"):
    """A checked, defaulted copy of a runtime-spec process object (``exec --process``)."""
    try:
        out = PROCESS.check(process, "")
        _check_capabilities(out.get("capabilities"), "capabilities")
    except (ConfigError, Unsupported) as e:
        raise type(e)("%s: %s" % (source, e)) from None
    return out


def check_version(version):
    """ConfigError unless ``version`` is SemVer; Unsupported unless it is 1.0.0 to 1.2.x."""
    if version is None:
        fail("ociVersion", "required field is missing")
    if type(version) is not str:
        fail("ociVersion", "must be a string, got %s" % show(version))
    release, dash, prerelease = version.partition("+")[0].partition("-")
    parts = release.split(".")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts) \
            or dash and not prerelease:
        fail("ociVersion", "must be a SemVer version such as \"1.2.0\", got %s" % show(version))
    major, minor, patch = (int(p) for p in parts)
    # "1.0.0-rc5" and older drafts predate 1.0.0 and differ from it.
    if major != 1 or minor > 2 or (minor, patch) == (0, 0) and dash:
        fail("ociVersion", "edgert supports runtime-spec %s, got %s: have the engine write a "
             "config for one of these" % (SUPPORTED_VERSIONS, show(version)), Unsupported)


def _add(ns_type):
    return "add {\"type\": \"%s\"} to linux.namespaces" % ns_type


def _check_mount_namespace(namespaces):
    if "mount" not in namespaces:
        fail("linux.namespaces", "edgert needs a new mount namespace to set up the rootfs: "
             + _add("mount"))
    if namespaces["mount"] is not None:
        fail("linux.namespaces", "joining an existing mount namespace is not supported: "
             "remove the path of the \"mount\" entry", Unsupported)


def _check_capabilities(capabilities, path):
    if not capabilities:
        return
    permitted = set(capabilities["permitted"])
    for name in capabilities["effective"]:
        if name not in permitted:
            fail(path + ".effective", "%s must also be in permitted" % name)
    # Ambient caps missing from permitted or inheritable are not an error: the runtime-spec says
    # runtimes SHOULD NOT fail for capabilities they cannot grant (runc's own `runc spec` output
    # has such entries). The runtime skips them and says so.


def _check_uts(config, namespaces):
    for key in ("hostname", "domainname"):
        if config.get(key) and "uts" not in namespaces:
            fail(key, "needs a UTS namespace of the container's own, or it would rename the "
                 "host: " + _add("uts"))


def _check_sysctl(sysctl, namespaces):
    for key in sysctl:
        name = key.replace("/", ".")
        if name.startswith("net."):
            needed = "network"
        elif name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
            needed = "ipc"
        elif name in _UTS_SYSCTLS:
            needed = "uts"
        else:
            fail("linux.sysctl[%s]" % jsonfast.dumps(key), "not isolated by any namespace: setting "
                 "it would change the host; remove it")
        if needed not in namespaces:
            fail("linux.sysctl[%s]" % jsonfast.dumps(key), "needs a %s namespace of the "
                 "container's own, or it would change the host: %s" % (needed, _add(needed)))


def _check_user_namespace(linux, namespaces):
    mapped = [key for key in ("uidMappings", "gidMappings") if linux[key]]
    if "user" not in namespaces:
        if mapped:
            fail("linux." + mapped[0], "needs a user namespace: " + _add("user"))
    elif namespaces["user"] is None:
        for key in ("uidMappings", "gidMappings"):
            if key not in mapped:
                fail("linux." + key, "required with a new user namespace: map at least the "
                     "container's root")
    elif mapped:
        fail("linux." + mapped[0], "only valid for a new user namespace, not one joined by path")


def _check_time_namespace(linux, namespaces):
    if linux.get("timeOffsets") and ("time" not in namespaces or namespaces["time"] is not None):
        fail("linux.timeOffsets", "needs a new time namespace: add {\"type\": \"time\"} "
             "without a path to linux.namespaces")


def _check_net_devices(linux, namespaces):
    devices = linux.get("netDevices")
    if not devices:
        return
    if "network" not in namespaces:
        fail("linux.netDevices", "needs a network namespace to move the devices into: "
             + _add("network"))
    seen = set()
    for host_name, device in devices.items():
        name = device.get("name") or host_name
        if name in seen:
            fail("linux.netDevices[%s].name" % jsonfast.dumps(host_name),
                 "two devices would both be named %s in the container" % show(name))
        seen.add(name)


def _check_mount(mount, path, bundle_dir, namespaces):
    opts = mountopts.parse(mount["options"], mount.get("type"), path + ".options")
    if not mount["destination"].startswith("/"):
        mount["destination"] = "/" + mount["destination"]
    if opts.bind:
        source = mount.get("source")
        if not source:
            fail(path + ".source", "required for a bind mount")
        mount["source"] = _in_bundle(bundle_dir, source)
    elif not mount.get("type"):
        fail(path + ".type", "required unless the mount is a bind mount (options \"bind\" or "
             "\"rbind\")")
    mapped = [key for key in ("uidMappings", "gidMappings") if key in mount]
    if len(mapped) == 1:
        fail(path, "uidMappings and gidMappings must be set together")
    if mapped:
        if not opts.idmap:
            # Mappings without the option still ask for an id-mapped mount (the option
            # only tells old runtimes to refuse); spell it out for the mount code.
            mount["options"].append("idmap")
    elif opts.idmap and "user" not in namespaces:
        fail(path + ".options", "idmap needs uidMappings and gidMappings on the mount, or a "
             "user namespace whose mapping it can use")
