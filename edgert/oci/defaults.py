"""edgert's secure default config.json for the bundles it generates (and ``edgert-oci spec``).

Close to what Docker and containerd give a container by default, with two
product choices: CAP_SYS_BOOT is kept, because reboot(2) in a pid namespace
only ends that namespace and the product needs ``reboot -f`` inside a
container to restart it; and /run is a fresh tmpfs on every start.
"""

from .. import OCI_VERSION

# Docker's default capability set, plus CAP_SYS_BOOT (see above).
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE", "CAP_SYS_BOOT",
)
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MASKED_PATHS = (
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = (
    "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)


def _mount(destination, fstype, source, *options):
    return {"destination": destination, "type": fstype, "source": source,
            "options": list(options)}


def default_config(args=("sh",), rootfs="rootfs", terminal=False, hostname="edgert", env=None,
                   cwd="/", uid=0, gid=0, network="new"):
    """A config.json dict that passes spec.validate.

    ``network``: "new" (a network namespace of its own), "host" (share the
    host's), or the absolute path of a network namespace to join.
    A non-root ``uid`` keeps the capabilities in the bounding set only, as
    Docker does: the process can gain them only through file capabilities.
    """
    from ..seccomp_default import profile  # lazy: only generating a config needs it
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if network == "new":
        namespaces.append({"type": "network"})
    elif network.startswith("/"):
        namespaces.append({"type": "network", "path": network})
    elif network != "host":
        raise ValueError("network must be \"new\", \"host\" or a namespace path, got %r"
                         % (network,))
    if env is None:
        env = [PATH, "TERM=xterm"] if terminal else [PATH]
    granted = list(CAPABILITIES) if uid == 0 else []
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": uid, "gid": gid},
            "args": list(args),
            "env": list(env),
            "cwd": cwd,
            "capabilities": {
                "bounding": list(CAPABILITIES),
                "effective": granted,
                "permitted": list(granted),
                "inheritable": [],
                "ambient": [],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": False},
        "hostname": hostname,
        "mounts": [
            _mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
            _mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
            _mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance",
                   "ptmxmode=0666", "mode=0620", "gid=5"),
            _mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777",
                   "size=65536k"),
            _mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
            _mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
            _mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev",
                   "relatime", "ro"),
            _mount("/run", "tmpfs", "tmpfs", "nosuid", "nodev", "mode=755"),
        ],
        "linux": {
            "namespaces": namespaces,
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            # like Docker, keyed on the bounding set: what the process could ever hold
            "seccomp": profile(set(CAPABILITIES)),
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
        "annotations": {},
    }
