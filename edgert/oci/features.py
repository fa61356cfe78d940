"""The runtime-spec features document (``edgert-oci features``): what edgert recognises.

Built from the same tables that validate config.json, so the document cannot
promise a value the validator refuses (edgert.seccomp compiles every seccomp
action, operator and architecture those tables accept; SCMP_ACT_NOTIFY is refused).
"""

from .. import caps
from .. import linuxconst as K
from . import mountopts, schema


def features():
    from .. import OCI_VERSION, __version__
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(schema.HOOKS),
        "mountOptions": list(mountopts.KNOWN),
        "linux": {
            "namespaces": list(K.NAMESPACE_FLAGS),
            "capabilities": sorted(caps.NAMES, key=caps.NAMES.get),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                       "rdma": True},
            "seccomp": {
                "enabled": True,
                "actions": list(schema.SECCOMP_ACTIONS),
                "operators": list(schema.SECCOMP_OPERATORS),
                "archs": list(schema.SECCOMP_ARCHES),
                "knownFlags": list(schema.SECCOMP_FLAGS),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
            "netDevices": {"enabled": True},
        },
        "annotations": {"io.edgert.version": __version__},
        "potentiallyUnsafeConfigAnnotations": [],
    }
