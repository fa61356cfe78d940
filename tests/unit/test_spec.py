"""config.json validation: engine-generated configs pass; every rule fails with its message."""

import copy
import json

import pytest

from edgert import caps
from edgert.errors import ConfigError, NotFound, Unsupported
from edgert.oci import mountopts, schema, spec
from edgert.oci.features import features

BUNDLE = "/run/bundles/web1"

# What podman 4.3.1 handed its runtime (captured through a wrapper) for
#   podman run --network none -v /srv/volumes/data:/data:ro --device /dev/net/tun --memory 64m
#     --pids-limit 100 --cpus 0.5 --tmpfs /tmp:size=10m,notmpcopyup --read-only
#     --read-only-tmpfs=false --cap-add NET_ADMIN --cap-drop KILL
#     --sysctl net.ipv4.ip_forward=1 -e FOO=bar -w /data -u 1000:1000 --hostname cap1 ...
# with the 400-name seccomp allow list shortened.
PODMAN = r"""
{
    "ociVersion": "1.0.2-dev",
    "process": {
        "user": {"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [1000]},
        "args": ["/bin/true"],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm",
            "FOO=bar", "HOSTNAME=cap1"
        ],
        "cwd": "/data",
        "capabilities": {
            "bounding": [
                "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_NET_ADMIN",
                "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
                "CAP_SETUID", "CAP_SYS_CHROOT"
            ],
            "effective": ["CAP_NET_ADMIN"],
            "inheritable": ["CAP_NET_ADMIN"],
            "permitted": ["CAP_NET_ADMIN"],
            "ambient": ["CAP_NET_ADMIN"]
        },
        "rlimits": [
            {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000},
            {"type": "RLIMIT_NPROC", "hard": 32768, "soft": 32768}
        ]
    },
    "root": {
        "path": "/var/lib/containers/storage/overlay/3c7f0e0b5e0c1f3d9c8e5a2b7d4f6a1e9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e/merged",
        "readonly": true
    },
    "hostname": "cap1",
    "mounts": [
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["size=10m", "rw", "rprivate", "nosuid", "nodev"]
        },
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "noexec", "strictatime", "mode=755", "size=65536k"]
        },
        {
            "destination": "/data",
            "type": "bind",
            "source": "/srv/volumes/data",
            "options": ["ro", "rprivate", "rbind"]
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/run/.containerenv",
            "type": "bind",
            "source": "/run/containers/storage/overlay-containers/b49ee94255953f914ab774116f873d8e79b8203e60d666e918ff86e43cefc6d5/userdata/.containerenv",
            "options": ["bind", "rprivate", "ro", "nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/etc/group",
            "type": "bind",
            "source": "/var/lib/containers/storage/overlay-containers/b49ee94255953f914ab774116f873d8e79b8203e60d666e918ff86e43cefc6d5/userdata/group",
            "options": ["bind", "rprivate", "ro", "nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/etc/passwd",
            "type": "bind",
            "source": "/var/lib/containers/storage/overlay-containers/b49ee94255953f914ab774116f873d8e79b8203e60d666e918ff86e43cefc6d5/userdata/passwd",
            "options": ["bind", "rprivate", "ro", "nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/etc/hostname",
            "type": "bind",
            "source": "/run/containers/storage/overlay-containers/b49ee94255953f914ab774116f873d8e79b8203e60d666e918ff86e43cefc6d5/userdata/hostname",
            "options": ["bind", "rprivate", "ro", "nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/etc/hosts",
            "type": "bind",
            "source": "/run/containers/storage/overlay-containers/b49ee94255953f914ab774116f873d8e79b8203e60d666e918ff86e43cefc6d5/userdata/hosts",
            "options": ["bind", "rprivate", "ro", "nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/dev/shm",
            "type": "bind",
            "source": "/var/lib/containers/storage/overlay-containers/b49ee94255953f914ab774116f873d8e79b8203e60d666e918ff86e43cefc6d5/userdata/shm",
            "options": ["bind", "rprivate", "nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"]
        }
    ],
    "annotations": {
        "io.container.manager": "libpod",
        "io.kubernetes.cri-o.Created": "2026-12-03T13:35:24.463129579Z",
        "io.kubernetes.cri-o.TTY": "false",
        "io.podman.annotations.autoremove": "TRUE",
        "io.podman.annotations.init": "FALSE",
        "io.podman.annotations.privileged": "FALSE",
        "io.podman.annotations.publish-all": "FALSE",
        "org.opencontainers.image.stopSignal": "15"
    },
    "linux": {
        "sysctl": {"net.ipv4.ip_forward": "1", "net.ipv4.ping_group_range": "0 0"},
        "resources": {
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}
            ],
            "memory": {"limit": 67108864, "swap": 134217728},
            "cpu": {"quota": 50000, "period": 100000},
            "pids": {"limit": 100}
        },
        "cgroupsPath": "/libpod_parent/libpod-b49ee94255953f914ab774116f873d8e79b8203e60d666e918ff86e43cefc6d5",
        "namespaces": [
            {"type": "pid"},
            {"type": "network"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"}
        ],
        "devices": [
            {
                "path": "/dev/net/tun",
                "type": "c",
                "major": 10,
                "minor": 200,
                "fileMode": 8576,
                "uid": 0,
                "gid": 0
            }
        ],
        "seccomp": {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                {
                    "names": [
                        "bdflush", "io_pgetevents", "kexec_file_load", "kexec_load",
                        "migrate_pages", "move_pages", "nfsservctl", "nice", "oldfstat",
                        "oldlstat", "oldolduname", "oldstat", "olduname", "pciconfig_iobase",
                        "pciconfig_read", "pciconfig_write", "sgetmask", "ssetmask",
                        "swapcontext", "swapoff", "swapon", "sysfs", "uselib", "userfaultfd",
                        "ustat", "vm86", "vm86old", "vmsplice"
                    ],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1
                },
                {
                    "names": [
                        "_llseek", "_newselect", "accept", "accept4", "access", "adjtimex",
                        "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod", "chown",
                        "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
                        "clock_getres_time64", "clock_gettime", "clock_gettime64",
                        "clock_nanosleep", "clock_nanosleep_time64", "clone", "clone3",
                        "close", "close_range", "connect", "copy_file_range", "creat", "dup",
                        "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl",
                        "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait"
                    ],
                    "action": "SCMP_ACT_ALLOW"
                },
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]
                },
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]
                },
                {
                    "names": ["personality"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 131072, "op": "SCMP_CMP_EQ"}]
                },
                {
                    "names": ["socket"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 22,
                    "args": [
                        {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
                        {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}
                    ]
                },
                {
                    "names": ["socket"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]
                },
                {
                    "names": ["socket"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_NE"}]
                },
                {
                    "names": ["socket"],
                    "action": "SCMP_ACT_ALLOW",
                    "args": [{"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]
                }
            ]
        },
        "maskedPaths": [
            "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
            "/sys/firmware", "/sys/fs/selinux", "/sys/dev/block"
        ],
        "readonlyPaths": [
            "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
            "/proc/sysrq-trigger"
        ]
    }
}
"""

# What containerd 1.6 (ctr run) writes: its default spec plus the image's command.
CONTAINERD = r"""
{
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "exec httpd -f -p 8080"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {
            "bounding": [
                "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"
            ],
            "effective": [
                "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"
            ],
            "permitted": [
                "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"
            ]
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": true
    },
    "root": {"path": "rootfs"},
    "mounts": [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]
        },
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
        }
    ],
    "linux": {
        "resources": {"devices": [{"allow": false, "access": "rwm"}]},
        "cgroupsPath": "/default/web1",
        "namespaces": [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
            {"type": "network"}
        ],
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
            "/proc/scsi"
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    }
}
"""


def podman():
    return json.loads(PODMAN)


def containerd():
    return json.loads(CONTAINERD)


def minimal():
    return {"ociVersion": "1.2.0", "root": {"path": "rootfs"}, "process": {"args": ["sh"]},
            "linux": {"namespaces": [{"type": "mount"}]}}


def everything():
    """A config that sets every field edgert supports."""
    config = containerd()
    config["ociVersion"] = "1.2.0"
    config["hostname"] = "web1"
    config["domainname"] = "example.test"
    config["root"]["readonly"] = True
    config["process"].update({
        "consoleSize": {"height": 25, "width": 80},
        "terminal": True,
        "oomScoreAdj": -500,
        "scheduler": {"policy": "SCHED_FIFO", "priority": 10,
                      "flags": ["SCHED_FLAG_RESET_ON_FORK"]},
        "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
        "execCPUAffinity": {"initial": "0", "final": "0-1"},
    })
    config["process"]["user"].update({"umask": 0o22, "additionalGids": [5, 10]})
    config["process"]["capabilities"].update({"inheritable": ["CAP_NET_BIND_SERVICE"],
                                              "ambient": ["CAP_NET_BIND_SERVICE"]})
    config["mounts"].append({"destination": "/data", "type": "none", "source": "volumes/data",
                             "options": ["rbind", "rro", "rnoatime", "rprivate", "idmap"],
                             "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                             "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})
    hook = {"path": "/usr/libexec/edgert-hook", "args": ["edgert-hook", "x"], "env": ["A=1"],
            "timeout": 5}
    config["hooks"] = {name: [copy.deepcopy(hook)] for name in schema.HOOKS}
    config["annotations"] = {"com.example.key": "value", "empty": ""}
    linux = config["linux"]
    linux["namespaces"] += [{"type": "cgroup"}, {"type": "time"}, {"type": "user"}]
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["timeOffsets"] = {"monotonic": {"secs": 86400, "nanosecs": 0}, "boottime": {"secs": -5}}
    linux["devices"] = [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229,
                         "fileMode": 0o666, "uid": 0, "gid": 0},
                        {"type": "p", "path": "/dev/fifo"}]
    linux["netDevices"] = {"can0": {}, "eth1": {"name": "wan0"}}
    linux["resources"] = {
        "devices": [{"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}],
        "memory": {"limit": 67108864, "reservation": 33554432, "swap": -1, "kernel": -1,
                   "kernelTCP": -1, "swappiness": 0, "disableOOMKiller": False,
                   "useHierarchy": True, "checkBeforeUpdate": True},
        "cpu": {"shares": 1024, "quota": 50000, "burst": 1000, "period": 100000,
                "realtimeRuntime": 950000, "realtimePeriod": 1000000, "cpus": "0-1",
                "mems": "0", "idle": 0},
        "pids": {"limit": 128},
        "blockIO": {"weight": 500, "leafWeight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 60}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 60}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200},
                           {"pageSize": "64KB", "limit": 1000000}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"memory.high": "50M", "io.max": "259:0 rbps=2097152"},
    }
    linux["rootfsPropagation"] = "rslave"
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0,
                                "op": "SCMP_CMP_MASKED_EQ"}]},
                     {"names": ["ptrace"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }
    linux["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "65536",
                       "fs.mqueue.msg_max": "20", "kernel.domainname": "example.test"}
    linux["personality"] = {"domain": "LINUX32"}
    return config


def error(config, exc=ConfigError):
    with pytest.raises(exc) as e:
        spec.validate(config, BUNDLE)
    assert type(e.value) is exc
    return str(e.value)


# --- engine-generated configs ------------------------------------------------------------------

def test_podman_config_validates():
    config = podman()
    out = spec.validate(config, BUNDLE)
    assert config == podman(), "the input must not be modified"
    assert out["root"] == {"path": config["root"]["path"], "readonly": True}
    assert out["process"]["user"] == {"uid": 1000, "gid": 1000, "umask": 18,
                                      "additionalGids": [1000]}
    assert out["process"]["capabilities"]["ambient"] == ["CAP_NET_ADMIN"]
    assert out["mounts"][4] == config["mounts"][4]
    assert out["linux"]["cgroupsPath"].startswith("/libpod_parent/libpod-")
    assert out["linux"]["devices"][0]["fileMode"] == 0o20600  # podman keeps S_IFCHR
    assert out["linux"]["seccomp"]["syscalls"][-1]["args"] == [
        {"index": 2, "value": 9, "op": "SCMP_CMP_NE"}]
    assert json.loads(json.dumps(out)) == out


def test_podman_read_only_tmpfs_with_tmpcopyup_validates():
    config = podman()
    config["mounts"][1]["options"].append("tmpcopyup")  # podman's --tmpfs /tmp default
    out = spec.validate(config, "/b")
    assert "tmpcopyup" in out["mounts"][1]["options"]


def test_containerd_config_validates_and_gets_defaults():
    out = spec.validate(containerd(), BUNDLE)
    assert out["root"] == {"path": BUNDLE + "/rootfs", "readonly": False}
    process = out["process"]
    assert process["user"]["additionalGids"] == []
    assert process["capabilities"]["inheritable"] == []
    assert process["capabilities"]["ambient"] == []
    assert process["noNewPrivileges"] is True
    assert out["linux"]["cgroupsPath"] == "/default/web1"
    assert out["mounts"][6]["destination"] == "/run"
    for name in schema.HOOKS:
        assert out["hooks"][name] == []
    assert out["annotations"] == {}


def test_defaults_of_a_minimal_config():
    out = spec.validate(minimal(), "/b")
    assert out == {
        "ociVersion": "1.2.0",
        "root": {"path": "/b/rootfs", "readonly": False},
        "process": {"args": ["sh"], "terminal": False, "user": {"uid": 0, "gid": 0,
                                                                "additionalGids": []},
                    "env": [], "cwd": "/", "rlimits": [], "noNewPrivileges": False},
        "mounts": [],
        "hooks": {name: [] for name in schema.HOOKS},
        "annotations": {},
        "linux": {"namespaces": [{"type": "mount"}], "devices": [], "uidMappings": [],
                  "gidMappings": [], "sysctl": {}, "maskedPaths": [], "readonlyPaths": []},
    }


def test_every_supported_field_validates():
    config = everything()
    out = spec.validate(config, BUNDLE)
    assert out["mounts"][-1]["source"] == BUNDLE + "/volumes/data"
    assert out["process"]["scheduler"] == {"policy": "SCHED_FIFO", "priority": 10, "nice": 0,
                                           "flags": ["SCHED_FLAG_RESET_ON_FORK"], "runtime": 0,
                                           "deadline": 0, "period": 0}
    assert out["linux"]["personality"] == {"domain": "LINUX32", "flags": []}
    assert out["linux"]["seccomp"]["syscalls"][0]["args"] == []
    assert out["linux"]["resources"] == config["linux"]["resources"]
    assert out["hooks"] == config["hooks"]
    assert json.loads(json.dumps(out)) == out


def test_runc_spec_default_ambient_capabilities_are_accepted():
    # `runc spec` (1.1) asks for ambient capabilities that are not inheritable; the spec says
    # runtimes SHOULD NOT fail for them: the runtime skips them when it applies capabilities.
    config = minimal()
    three = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    config["process"]["capabilities"] = {"bounding": three, "effective": three,
                                         "permitted": three, "ambient": three}
    out = spec.validate(config, "/b")
    assert out["process"]["capabilities"]["ambient"] == three


# --- load --------------------------------------------------------------------------------------

def test_load_reads_and_validates(tmp_path):
    (tmp_path / "config.json").write_text(CONTAINERD)
    out = spec.load(str(tmp_path))
    assert out["root"]["path"] == str(tmp_path / "rootfs")


def test_load_missing_config(tmp_path):
    with pytest.raises(NotFound, match="config.json is missing"):
        spec.load(str(tmp_path))
    with pytest.raises(NotFound, match="no such directory"):
        spec.load(str(tmp_path / "nope"))


def test_load_bad_json_says_where(tmp_path):
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.2.0",\n  "root": {,}\n}\n')
    with pytest.raises(ConfigError) as e:
        spec.load(str(tmp_path))
    assert str(e.value) == ("%s/config.json: invalid JSON: Expecting property name enclosed in "
                            "double quotes at line 3 column 12" % tmp_path)


def test_load_refuses_duplicate_keys(tmp_path):
    (tmp_path / "config.json").write_text('{"ociVersion": "1.2.0", "root": {"path": "a", '
                                          '"path": "b"}}')
    with pytest.raises(ConfigError, match='key "path" appears twice'):
        spec.load(str(tmp_path))


def test_load_refuses_non_utf8(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"ociVersion": "\xff"}')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        spec.load(str(tmp_path))


def test_document_must_be_an_object():
    assert error([]) == "config.json: must be an object, got []"


# --- ociVersion --------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.0.0", "1.0.1", "1.0.2-dev", "1.1.0-rc.3", "1.1.0",
                                     "1.2.0", "1.2.1", "1.2.9+build.5"])
def test_supported_versions(version):
    config = minimal()
    config["ociVersion"] = version
    spec.validate(config, BUNDLE)


@pytest.mark.parametrize("version", ["1.2", "v1.2.0", "1.2.0-", "1.2.x", "", "1.2.0.0"])
def test_malformed_versions(version):
    config = minimal()
    config["ociVersion"] = version
    assert "ociVersion: must be a SemVer version" in error(config)


@pytest.mark.parametrize("version", ["1.3.0", "2.0.0", "0.5.0-dev", "1.0.0-rc5"])
def test_unsupported_versions(version):
    config = minimal()
    config["ociVersion"] = version
    assert error(config, Unsupported) == (
        "config.json: ociVersion: edgert supports runtime-spec 1.0.0 to 1.2.x, got \"%s\": "
        "have the engine write a config for one of these" % version)


def test_version_missing_or_not_a_string():
    config = minimal()
    del config["ociVersion"]
    assert error(config) == "config.json: ociVersion: required field is missing"
    config["ociVersion"] = 1.2
    assert error(config) == "config.json: ociVersion: must be a string, got 1.2"


# --- unknown fields and extension points -------------------------------------------------------

@pytest.mark.parametrize("where,key", [
    ("", "platform"),
    ("process", "capabilites"),
    ("process.user", "name"),
    ("root", "ro"),
    ("linux", "memory"),
    ("linux.resources", "oomScoreAdj"),
    ("linux.resources.memory", "memry"),
    ("linux.seccomp", "comment"),
    ("hooks", "prestop"),
])
def test_unknown_fields(where, key):
    config = everything()
    node = config
    for part in where.split(".") if where else ():
        node = node[part]
    node[key] = 1
    assert error(config) == "config.json: %s: unknown field" % (where + "." + key if where
                                                                  else key)


def test_unknown_field_in_a_list_entry():
    config = podman()
    config["mounts"][3]["readonly"] = True
    assert error(config) == "config.json: mounts[3].readonly: unknown field"
    config = podman()
    config["linux"]["seccomp"]["syscalls"][2]["args"][0]["valueThree"] = 1
    assert error(config) == ("config.json: linux.seccomp.syscalls[2].args[0].valueThree: "
                             "unknown field")


def test_the_briefs_example_message():
    config = everything()
    config["linux"]["resources"]["memry"] = {}
    assert error(config) == "config.json: linux.resources.memry: unknown field"
    config = everything()
    config["linux"]["resources"]["memory"]["limit"] = "12M"
    assert error(config) == ('config.json: linux.resources.memory.limit: must be an integer, '
                             'got "12M"')


def test_extension_points_take_any_key():
    config = minimal()
    config["annotations"] = {"io.kubernetes.anything": "x", "org.example/with space": ""}
    config["linux"]["resources"] = {"unified": {"whatever.file": "1"},
                                    "rdma": {"any_device": {"hcaObjects": 1}}}
    config["linux"]["namespaces"].append({"type": "network"})
    config["linux"]["sysctl"] = {"net.core.somaxconn": "256", "net/ipv4/ip_forward": "1"}
    spec.validate(config, BUNDLE)


@pytest.mark.parametrize("where", ["annotations", "linux.sysctl", "linux.resources.unified"])
def test_extension_values_must_be_strings(where):
    config = everything()
    node = config
    for part in where.split("."):
        node = node[part]
    node["k"] = 1
    assert error(config) == 'config.json: %s["k"]: must be a string, got 1' % where


def test_annotation_keys_must_not_be_empty():
    config = minimal()
    config["annotations"] = {"": "x"}
    assert error(config) == 'config.json: annotations[""]: keys must not be empty'


def test_null_means_unset():
    config = minimal()
    config["process"]["env"] = None
    config["hostname"] = None
    config["linux"]["seccomp"] = None
    out = spec.validate(config, BUNDLE)
    assert out["process"]["env"] == [] and "hostname" not in out and "seccomp" not in out["linux"]
    config["process"]["args"] = None
    assert error(config) == "config.json: process.args: required field is missing"


# --- fields edgert cannot honour ---------------------------------------------------------------

@pytest.mark.parametrize("change,where,says", [
    (lambda c: c.update(windows={"layerFolders": ["C:\\x"]}), "windows", "Windows containers"),
    (lambda c: c.update(solaris={"milestone": "x"}), "solaris", "Solaris zones"),
    (lambda c: c.update(vm={"kernel": {"path": "/k"}}), "vm", "virtual-machine containers"),
    (lambda c: c.update(zos={"namespaces": []}), "zos", "z/OS containers"),
    (lambda c: c["linux"].update(intelRdt={"closID": "x"}), "linux.intelRdt", "Intel RDT"),
    (lambda c: c["linux"].update(memoryPolicy={"mode": "MPOL_BIND", "nodes": "0"}),
     "linux.memoryPolicy", "runtime-spec 1.3"),
    (lambda c: c["process"].update(apparmorProfile="containers-default-0.50.0"),
     "process.apparmorProfile", "no LSM (AppArmor or SELinux) is available on this platform"),
    (lambda c: c["process"].update(selinuxLabel="system_u:system_r:container_t:s0"),
     "process.selinuxLabel", "label=disable"),
    (lambda c: c["linux"].update(mountLabel="system_u:object_r:container_file_t:s0"),
     "linux.mountLabel", "no LSM"),
    (lambda c: c["linux"]["seccomp"].update(listenerPath="/run/agent.sock"),
     "linux.seccomp.listenerPath", "SCMP_ACT_NOTIFY"),
    (lambda c: c["linux"]["seccomp"].update(defaultAction="SCMP_ACT_NOTIFY"),
     "linux.seccomp.defaultAction", "seccomp user notification"),
    (lambda c: c["linux"]["seccomp"]["syscalls"][2].update(action="SCMP_ACT_NOTIFY"),
     "linux.seccomp.syscalls[2].action", "seccomp user notification"),
    (lambda c: c["process"].update(commandLine="cmd.exe /c dir"), "process.commandLine",
     "set args"),
    (lambda c: c["process"]["user"].update(username="ContainerUser"), "process.user.username",
     "Windows users"),
    (lambda c: c["process"].update(scheduler={"policy": "SCHED_ISO"}),
     "process.scheduler.policy", "SCHED_ISO: the Linux kernel does not implement"),
    (lambda c: c["linux"]["namespaces"][3].update(path="/proc/1/ns/mnt"), "linux.namespaces",
     "joining an existing mount namespace"),
])
def test_unsupported(change, where, says):
    config = everything()
    change(config)
    message = error(config, Unsupported)
    assert message.startswith("config.json: %s: " % where)
    assert says in message


@pytest.mark.parametrize("profile", ["", "unconfined"])
def test_empty_lsm_fields_mean_unset(profile):
    config = minimal()
    config["process"].update(apparmorProfile=profile, selinuxLabel="")
    config["linux"]["mountLabel"] = ""
    config["windows"] = {}
    out = spec.validate(config, BUNDLE)
    assert "apparmorProfile" not in out["process"] and "windows" not in out


# --- types and ranges --------------------------------------------------------------------------

def _set(path, value):
    """A change that sets the value at a dotted path (list indexes as numbers)."""
    def change(config):
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return change


@pytest.mark.parametrize("path,value,message", [
    ("process.oomScoreAdj", 2000, "must be an integer in -1000..1000, got 2000"),
    ("process.oomScoreAdj", True, "must be an integer, got true"),
    ("process.terminal", 1, "must be true or false, got 1"),
    ("process.cwd", "data", 'must be an absolute path, got "data"'),
    ("process.args", [], "must have at least 1 entry"),
    ("process.args", "sh", 'must be an array, got "sh"'),
    ("process.args.0", "a\0b", 'must not contain a NUL byte, got "a\\u0000b"'),
    ("process.env.0", "PATH", 'must be "KEY=value", got "PATH"'),
    ("process.env.0", "=x", 'must be "KEY=value", got "=x"'),
    ("process.user.uid", -1, "must be an integer in 0..4294967295, got -1"),
    ("process.user.umask", 0o1000, "must be a umask in 0..511 (0o777), got 512"),
    ("process.consoleSize.width", 1.5, "must be an integer, got 1.5"),
    ("process.capabilities.bounding.0", "NET_ADMIN",
     'must be a capabilities(7) name such as "CAP_CHOWN", got "NET_ADMIN"'),
    ("process.rlimits.0.type", "NOFILE", 'must be an RLIMIT_* name from getrlimit(2), got "NOFILE"'),
    ("process.rlimits.0.soft", 2048, "must not exceed hard (1024), got 2048"),
    ("process.ioPriority.priority", 8, "must be an integer in 0..7, got 8"),
    ("process.ioPriority.class", "IOPRIO_CLASS_NONE",
     'must be one of IOPRIO_CLASS_RT, IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE, got "IOPRIO_CLASS_NONE"'),
    ("process.scheduler.priority", 0, "must be 1..99 for SCHED_FIFO, got 0"),
    ("process.scheduler.nice", -21, "must be an integer in -20..19, got -21"),
    ("process.execCPUAffinity.final", "3-1", 'must be a list such as "0-3,7", got "3-1"'),
    ("root.path", "", 'must not be empty, got ""'),
    ("root.readonly", "yes", 'must be true or false, got "yes"'),
    ("hostname", 7, "must be a string, got 7"),
    ("mounts.0.options", "nosuid", 'must be an array, got "nosuid"'),
    ("hooks.poststop.0.timeout", 0, "must be a number of seconds greater than 0, got 0"),
    ("hooks.prestart.0.path", "hook.sh", 'must be an absolute path, got "hook.sh"'),
    ("hooks.createRuntime.0.env.0", "A", 'must be "KEY=value", got "A"'),
    ("linux.namespaces.0.type", "net",
     'must be one of pid, network, mount, ipc, uts, user, cgroup, time, got "net"'),
    ("linux.namespaces.1.path", "proc/1/ns/ipc", 'must be an absolute path, got "proc/1/ns/ipc"'),
    ("linux.uidMappings.0.size", 0, "must be an integer in 1..4294967295, got 0"),
    ("linux.devices.0.type", "x", 'must be one of c, b, u, p, got "x"'),
    ("linux.devices.0.path", "dev/fuse", 'must be an absolute path, got "dev/fuse"'),
    ("linux.maskedPaths.0", "proc/kcore", 'must be an absolute path, got "proc/kcore"'),
    ("linux.rootfsPropagation", "recursive",
     'must be one of shared, slave, private, unbindable, rshared, rslave, rprivate, '
     'runbindable, got "recursive"'),
    ("linux.cgroupsPath", "/a/../../b", 'must not contain ".." components, got "/a/../../b"'),
    ("linux.resources.memory.limit", -2, "must be -1 (unlimited) or a number of bytes, got -2"),
    ("linux.resources.memory.swappiness", 101, "must be an integer in 0..100, got 101"),
    ("linux.resources.cpu.cpus", "0,,1", 'must be a list such as "0-3,7", got "0,,1"'),
    ("linux.resources.cpu.idle", 2, "must be 0 or 1, got 2"),
    ("linux.resources.pids.limit", "max", 'must be an integer, got "max"'),
    ("linux.resources.devices.1.access", "rwx", 'must be made of the letters r, w and m, got "rwx"'),
    ("linux.resources.devices.1.type", "p", 'must be one of a, c, b, got "p"'),
    ("linux.resources.blockIO.weight", 70000, "must be an integer in 0..65535, got 70000"),
    ("linux.resources.hugepageLimits.0.pageSize", "2M",
     'must be a size such as "64KB", "2MB" or "1GB", got "2M"'),
    ("linux.resources.network.priorities.0.name", "a/b",
     "must be a network interface name (1 to 15 bytes, no '/', ':' or spaces), got \"a/b\""),
    ("linux.seccomp.defaultErrnoRet", 5000, "must be an integer in 0..4095, got 5000"),
    ("linux.seccomp.architectures.0", "SCMP_ARCH_Z80", "must be one of SCMP_ARCH_X86, "),
    ("linux.seccomp.flags.0", "SECCOMP_FILTER_FLAG_NEW_LISTENER", "must be one of "),
    ("linux.seccomp.syscalls.1.args.0.index", 6, "must be an integer in 0..5, got 6"),
    ("linux.seccomp.syscalls.1.args.0.op", "SCMP_CMP_MASKED_NE", "must be one of SCMP_CMP_NE, "),
    ("linux.seccomp.syscalls.1.args.0.value", -1,
     "must be an integer in 0..18446744073709551615, got -1"),
    ("linux.seccomp.syscalls.0.names", [], "must have at least 1 entry"),
    ("linux.personality.domain", "LINUX64", 'must be one of LINUX, LINUX32, got "LINUX64"'),
])
def test_types_and_ranges(path, value, message):
    config = everything()
    _set(path, value)(config)
    json_path = "".join("[%s]" % p if p.isdigit() else "." + p
                        for p in path.split("."))[1:]
    text = error(config)
    assert text.startswith("config.json: %s: %s" % (json_path, message)), text


def test_map_entries_are_checked_too():
    config = everything()
    config["linux"]["timeOffsets"]["monotonic"]["nanosecs"] = 10 ** 9
    assert error(config) == ('config.json: linux.timeOffsets["monotonic"].nanosecs: must be an '
                             'integer in 0..999999999, got 1000000000')


def test_paths_of_list_entries_use_brackets():
    config = everything()
    config["process"]["rlimits"][0]["hard"] = -1
    assert error(config) == ("config.json: process.rlimits[0].hard: must be an integer in "
                             "0..18446744073709551615, got -1")


def test_long_values_are_cut_short():
    config = minimal()
    config["process"]["cwd"] = "x" * 100
    assert error(config).endswith('must be an absolute path, got "%s...' % ("x" * 36))


@pytest.mark.parametrize("change,message", [
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}),
     'process.rlimits[1]: duplicate "RLIMIT_NOFILE" (also in [0])'),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}),
     'linux.namespaces[8]: duplicate "pid" (also in [0])'),
    (lambda c: c["linux"]["devices"].append({"type": "c", "path": "/dev/fuse", "major": 1,
                                             "minor": 1}),
     'linux.devices[2]: duplicate "/dev/fuse" (also in [0])'),
    (lambda c: c["linux"]["devices"][0].pop("major"),
     'linux.devices[0].major: required field is missing (for device type "c")'),
    (lambda c: c["linux"]["resources"]["blockIO"]["weightDevice"][0].pop("weight"),
     "linux.resources.blockIO.weightDevice[0]: must set at least one of weight, leafWeight"),
    (lambda c: c["linux"]["resources"]["rdma"]["mlx5_1"].clear(),
     'linux.resources.rdma["mlx5_1"]: must set at least one of hcaHandles, hcaObjects'),
    (lambda c: c["linux"]["resources"]["hugepageLimits"][1].update(pageSize="2MB"),
     'linux.resources.hugepageLimits[1]: duplicate "2MB" (also in [0])'),
    (lambda c: c["linux"]["seccomp"]["syscalls"][0].update(errnoRet=1),
     "linux.seccomp.syscalls[0].errnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, "
     "not SCMP_ACT_ALLOW"),
    (lambda c: c["linux"]["seccomp"].update(defaultAction="SCMP_ACT_KILL"),
     "linux.seccomp.defaultErrnoRet: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, "
     "not SCMP_ACT_KILL"),
    (lambda c: c["linux"]["seccomp"].update(listenerMetadata="x"),
     "linux.seccomp.listenerMetadata: only valid with listenerPath"),
    (lambda c: c["linux"]["personality"].update(flags=["ADDR_NO_RANDOMIZE"]),
     'linux.personality.flags: must be empty: the runtime-spec defines no personality flags, '
     'got ["ADDR_NO_RANDOMIZE"]'),
    (lambda c: c["process"].update(scheduler={"policy": "SCHED_OTHER", "priority": 5}),
     "process.scheduler.priority: must be 0 for SCHED_OTHER, got 5"),
    (lambda c: c["process"].update(scheduler={"policy": "SCHED_DEADLINE", "runtime": 10,
                                              "deadline": 5}),
     "process.scheduler: SCHED_DEADLINE needs 0 < runtime <= deadline <= period (period 0: "
     "the deadline), got 10, 5, 0"),
    (lambda c: c["linux"]["timeOffsets"].update(realtime={"secs": 1}),
     'linux.timeOffsets["realtime"]: the clock must be one of monotonic, boottime'),
    (lambda c: c["linux"]["netDevices"].update({"a very long name": {}}),
     'linux.netDevices["a very long name"]: must be a network interface name'),
    (lambda c: c["root"].pop("path"), "root.path: required field is missing"),
    (lambda c: c.pop("process"), "process: required field is missing"),
    (lambda c: c["linux"]["seccomp"].pop("defaultAction"),
     "linux.seccomp.defaultAction: required field is missing"),
])
def test_object_rules(change, message):
    config = everything()
    change(config)
    text = error(config)
    assert text.startswith("config.json: " + message), text


# --- rules across sections ---------------------------------------------------------------------

def _drop_namespace(config, ns_type):
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                     if ns["type"] != ns_type]


@pytest.mark.parametrize("key,ns_type", [("net.ipv4.ip_forward", "network"),
                                         ("net/ipv4/ip_forward", "network"),
                                         ("kernel.shmmax", "ipc"),
                                         ("fs.mqueue.msg_max", "ipc"),
                                         ("kernel.hostname", "uts")])
def test_namespaced_sysctl_needs_its_namespace(key, ns_type):
    config = minimal()
    config["linux"]["sysctl"] = {key: "1"}
    assert error(config) == (
        'config.json: linux.sysctl["%s"]: needs a %s namespace of the container\'s own, or it '
        'would change the host: add {"type": "%s"} to linux.namespaces' % (key, ns_type, ns_type))
    config["linux"]["namespaces"].append({"type": ns_type})
    spec.validate(config, BUNDLE)
    config["linux"]["namespaces"][-1]["path"] = "/run/netns/other"  # a joined one is its own
    spec.validate(config, BUNDLE)


@pytest.mark.parametrize("key", ["vm.swappiness", "kernel.panic", "fs.file-max"])
def test_host_wide_sysctl_is_refused(key):
    config = everything()
    config["linux"]["sysctl"][key] = "1"
    assert error(config) == ('config.json: linux.sysctl["%s"]: not isolated by any namespace: '
                             'setting it would change the host; remove it' % key)


@pytest.mark.parametrize("key", ["hostname", "domainname"])
def test_hostname_needs_a_uts_namespace(key):
    config = minimal()
    config[key] = "box"
    assert error(config) == ('config.json: %s: needs a UTS namespace of the container\'s own, '
                             'or it would rename the host: add {"type": "uts"} to '
                             'linux.namespaces' % key)
    config[key] = ""
    spec.validate(config, BUNDLE)


def test_time_offsets_need_a_new_time_namespace():
    config = everything()
    _drop_namespace(config, "time")
    message = ('config.json: linux.timeOffsets: needs a new time namespace: add {"type": '
               '"time"} without a path to linux.namespaces')
    assert error(config) == message
    config["linux"]["namespaces"].append({"type": "time", "path": "/proc/1/ns/time"})
    assert error(config) == message


def test_id_mappings_need_a_user_namespace():
    config = everything()
    _drop_namespace(config, "user")
    config["mounts"].pop()
    assert error(config) == ('config.json: linux.uidMappings: needs a user namespace: add '
                             '{"type": "user"} to linux.namespaces')


def test_new_user_namespace_needs_both_mappings():
    config = everything()
    config["linux"]["gidMappings"] = []
    assert error(config) == ("config.json: linux.gidMappings: required with a new user "
                             "namespace: map at least the container's root")


def test_joined_user_namespace_takes_no_mappings():
    config = everything()
    config["linux"]["namespaces"][-1]["path"] = "/proc/42/ns/user"
    assert error(config) == ("config.json: linux.uidMappings: only valid for a new user "
                             "namespace, not one joined by path")
    config["linux"]["uidMappings"] = config["linux"]["gidMappings"] = []
    spec.validate(config, BUNDLE)


def test_effective_capabilities_must_be_permitted():
    config = everything()
    config["process"]["capabilities"]["effective"].append("CAP_SYS_ADMIN")
    assert error(config) == ("config.json: process.capabilities.effective: CAP_SYS_ADMIN must "
                             "also be in permitted")


def test_a_new_mount_namespace_is_required():
    config = minimal()
    config["linux"]["namespaces"] = [{"type": "pid"}]
    assert error(config) == ('config.json: linux.namespaces: edgert needs a new mount namespace '
                             'to set up the rootfs: add {"type": "mount"} to linux.namespaces')


def test_net_devices_need_a_network_namespace():
    config = everything()
    _drop_namespace(config, "network")
    config["linux"]["sysctl"] = {}
    assert error(config) == ('config.json: linux.netDevices: needs a network namespace to move '
                             'the devices into: add {"type": "network"} to linux.namespaces')


def test_net_devices_must_not_clash_in_the_container():
    config = everything()
    config["linux"]["netDevices"] = {"eth1": {"name": "wan0"}, "wan0": {}}
    assert error(config) == ('config.json: linux.netDevices["wan0"].name: two devices would '
                             'both be named "wan0" in the container')


# --- mounts ------------------------------------------------------------------------------------

def test_relative_destination_is_read_from_root():
    config = minimal()
    config["mounts"] = [{"destination": "data", "type": "tmpfs", "source": "tmpfs"}]
    out = spec.validate(config, BUNDLE)
    assert out["mounts"][0] == {"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                                "options": []}


def test_relative_bind_source_is_read_from_the_bundle():
    config = minimal()
    config["mounts"] = [{"destination": "/a", "source": "vol/a", "options": ["rbind"]},
                        {"destination": "/b", "type": "bind", "source": "../b"},
                        {"destination": "/c", "type": "tmpfs", "source": "relative-dummy"}]
    out = spec.validate(config, "/run/bundles/x")
    assert [m["source"] for m in out["mounts"]] == ["/run/bundles/x/vol/a",
                                                   "/run/bundles/x/../b", "relative-dummy"]


def test_bind_mount_needs_a_source():
    config = minimal()
    config["mounts"] = [{"destination": "/a", "type": "bind", "options": ["rbind"]}]
    assert error(config) == "config.json: mounts[0].source: required for a bind mount"


def test_other_mounts_need_a_type():
    config = minimal()
    config["mounts"] = [{"destination": "/a", "source": "tmpfs", "options": ["nosuid"]}]
    assert error(config) == ('config.json: mounts[0].type: required unless the mount is a bind '
                             'mount (options "bind" or "rbind")')


def test_mount_mappings_come_in_pairs():
    config = everything()
    del config["mounts"][-1]["gidMappings"]
    assert error(config) == ("config.json: mounts[7]: uidMappings and gidMappings must be set "
                             "together")


def test_mount_mappings_imply_idmap():
    config = everything()
    config["mounts"][-1]["options"].remove("idmap")
    out = spec.validate(config, BUNDLE)
    assert out["mounts"][-1]["options"][-1] == "idmap"


def test_idmap_needs_mappings_or_a_user_namespace():
    config = minimal()
    config["mounts"] = [{"destination": "/a", "source": "/srv/a", "options": ["rbind", "idmap"]}]
    assert error(config) == ("config.json: mounts[0].options: idmap needs uidMappings and "
                             "gidMappings on the mount, or a user namespace whose mapping it "
                             "can use")
    config["linux"]["namespaces"].append({"type": "user", "path": "/proc/7/ns/user"})
    spec.validate(config, BUNDLE)


def test_every_mount_option_parse_knows_validates():
    config = minimal()
    config["linux"]["namespaces"].append({"type": "user", "path": "/proc/7/ns/user"})
    config["mounts"] = [{"destination": "/m%d" % i, "type": "bind", "source": "/srv",
                         "options": [opt]} for i, opt in enumerate(mountopts.KNOWN)]
    spec.validate(config, BUNDLE)


# --- exec process ------------------------------------------------------------------------------

def test_validate_process_for_exec():
    out = spec.validate_process({"args": ["ps"], "cwd": "/", "env": ["A=1"]})
    assert out["user"] == {"uid": 0, "gid": 0, "additionalGids": []} and out["terminal"] is False
    with pytest.raises(ConfigError) as e:
        spec.validate_process({"args": [], "cwd": "/"})
    assert str(e.value) == "exec process: args: must have at least 1 entry"
    with pytest.raises(Unsupported, match="^exec process: apparmorProfile: AppArmor"):
        spec.validate_process({"args": ["x"], "apparmorProfile": "p"})
    with pytest.raises(ConfigError, match="^exec process: capabilities.effective: CAP_KILL"):
        spec.validate_process({"args": ["x"], "capabilities": {"effective": ["CAP_KILL"]}})


# --- the features document ---------------------------------------------------------------------

def test_features_document():
    doc = features()
    assert doc["ociVersionMin"] == "1.0.0" and doc["ociVersionMax"] == "1.2.0"
    assert doc["hooks"] == list(schema.HOOKS)
    assert doc["mountOptions"] == list(mountopts.KNOWN)
    linux = doc["linux"]
    assert linux["namespaces"] == ["pid", "network", "mount", "ipc", "uts", "user", "cgroup",
                                   "time"]
    assert linux["capabilities"][0] == "CAP_CHOWN"
    assert linux["capabilities"][-1] == "CAP_CHECKPOINT_RESTORE"
    assert len(linux["capabilities"]) == caps.LAST_KNOWN + 1
    assert linux["cgroup"] == {"v1": True, "v2": True, "systemd": False, "systemdUser": False,
                               "rdma": True}
    assert linux["apparmor"] == linux["selinux"] == linux["intelRdt"] == {"enabled": False}
    assert linux["mountExtensions"] == {"idmap": {"enabled": True}}
    assert linux["netDevices"] == {"enabled": True}
    assert "SCMP_ACT_NOTIFY" not in linux["seccomp"]["actions"]
    assert doc["annotations"] == {"io.edgert.version": __import__("edgert").__version__}
    assert json.loads(json.dumps(doc)) == doc


def test_features_promise_only_what_validate_accepts():
    doc = features()
    seccomp = doc["linux"]["seccomp"]
    config = minimal()
    config["linux"]["namespaces"] = [{"type": t} for t in doc["linux"]["namespaces"]]
    config["linux"]["uidMappings"] = config["linux"]["gidMappings"] = [
        {"containerID": 0, "hostID": 1000, "size": 1}]
    everyone = doc["linux"]["capabilities"]
    config["process"]["capabilities"] = {s: everyone for s in ("bounding", "effective",
                                                               "permitted", "inheritable",
                                                               "ambient")}
    config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": seccomp["archs"],
        "flags": seccomp["knownFlags"],
        "syscalls": [{"names": ["read"], "action": action,
                      "args": [{"index": 0, "value": 1, "op": op}
                               for op in seccomp["operators"]]}
                     for action in seccomp["actions"]]}
    config["hooks"] = {name: [{"path": "/bin/true"}] for name in doc["hooks"]}
    out = spec.validate(config, BUNDLE)
    # and the seccomp compiler takes every action, operator, arch and flag validate lets by
    from edgert import seccomp as compiler
    compiler.compile(out["linux"]["seccomp"], "x86_64")
