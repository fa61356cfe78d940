import json

import pytest

from edgert import OCI_VERSION
from edgert.oci import spec
from edgert.oci.defaults import default_config

seccomp_default = pytest.importorskip("edgert.seccomp_default",
                                      reason="edgert.seccomp_default is not written yet")

DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def test_round_trips_through_validate_and_json():
    config = default_config()
    text = json.dumps(config)
    assert json.loads(text) == config
    out = spec.validate(json.loads(text), "/run/bundles/x")
    assert json.loads(json.dumps(out)) == out
    assert out["root"]["path"] == "/run/bundles/x/rootfs"


@pytest.mark.parametrize("kwargs", [
    {"terminal": True}, {"network": "host"}, {"network": "/run/netns/c1"},
    {"uid": 1000, "gid": 1000}, {"args": ["/bin/init", "--flag"], "cwd": "/srv",
                                 "env": ["A=1"], "hostname": "node7", "rootfs": "/srv/rootfs"},
])
def test_every_variant_validates(kwargs):
    spec.validate(default_config(**kwargs), "/b")


def test_process():
    process = default_config()["process"]
    assert process["args"] == ["sh"] and process["cwd"] == "/"
    assert process["terminal"] is False
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert process["noNewPrivileges"] is True
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert "TERM=xterm" in default_config(terminal=True)["process"]["env"]
    assert default_config(env=["X=1"])["process"]["env"] == ["X=1"]


def test_root_gets_dockers_capabilities_plus_sys_boot():
    capabilities = default_config()["process"]["capabilities"]
    expected = DOCKER_CAPS + ["CAP_SYS_BOOT"]
    for name in ("bounding", "effective", "permitted"):
        assert capabilities[name] == expected
    assert capabilities["inheritable"] == [] and capabilities["ambient"] == []


def test_other_users_keep_capabilities_only_in_the_bounding_set():
    capabilities = default_config(uid=1000, gid=1000)["process"]["capabilities"]
    assert capabilities["bounding"] == DOCKER_CAPS + ["CAP_SYS_BOOT"]
    assert capabilities["effective"] == capabilities["permitted"] == []


def test_namespaces():
    def types(**kwargs):
        return [ns["type"] for ns in default_config(**kwargs)["linux"]["namespaces"]]
    assert types() == ["pid", "ipc", "uts", "mount", "cgroup", "network"]
    assert types(network="host") == ["pid", "ipc", "uts", "mount", "cgroup"]
    joined = default_config(network="/run/netns/c1")["linux"]["namespaces"][-1]
    assert joined == {"type": "network", "path": "/run/netns/c1"}
    with pytest.raises(ValueError, match="network must be"):
        default_config(network="bridge")


def test_mounts():
    mounts = {m["destination"]: (m["type"], m["source"], m["options"])
              for m in default_config()["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                            "/sys/fs/cgroup", "/run"]
    assert mounts["/proc"] == ("proc", "proc", ["nosuid", "noexec", "nodev"])
    assert mounts["/dev"] == ("tmpfs", "tmpfs",
                              ["nosuid", "strictatime", "mode=755", "size=65536k"])
    assert mounts["/dev/pts"] == ("devpts", "devpts", ["nosuid", "noexec", "newinstance",
                                                       "ptmxmode=0666", "mode=0620", "gid=5"])
    assert mounts["/dev/shm"][0] == "tmpfs"
    assert mounts["/dev/mqueue"][0] == "mqueue"
    assert mounts["/sys"] == ("sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"])
    assert mounts["/sys/fs/cgroup"] == ("cgroup", "cgroup",
                                        ["nosuid", "noexec", "nodev", "relatime", "ro"])
    # /run is a fresh tmpfs on every start
    assert mounts["/run"] == ("tmpfs", "tmpfs", ["nosuid", "nodev", "mode=755"])


def test_linux_section():
    config = default_config()
    linux = config["linux"]
    assert linux["maskedPaths"] == [
        "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap"]
    assert linux["readonlyPaths"] == ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                                      "/proc/sys", "/proc/sysrq-trigger"]
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert "cgroupsPath" not in linux  # the runtime chooses
    assert config["annotations"] == {}
    assert config["ociVersion"] == OCI_VERSION == "1.2.0"
    assert config["hostname"] == "edgert"
    assert config["root"] == {"path": "rootfs", "readonly": False}


def test_seccomp_comes_from_the_default_profile():
    expected = seccomp_default.profile(set(DOCKER_CAPS + ["CAP_SYS_BOOT"]))
    assert default_config()["linux"]["seccomp"] == expected
    # keyed on the bounding set, so a non-root user gets the same filter
    assert default_config(uid=1000)["linux"]["seccomp"] == expected
    assert expected["defaultAction"] != "SCMP_ACT_ALLOW"


def test_each_call_returns_a_fresh_document():
    a, b = default_config(), default_config()
    a["mounts"][0]["options"].append("ro")
    a["process"]["capabilities"]["effective"].clear()
    assert b == default_config()
