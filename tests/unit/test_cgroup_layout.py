"""cgroup layout detection from real-world /proc texts, and cgroupsPath resolution."""

import pytest

from edgert.cgroup import layout
from edgert.cgroup.layout import Layout, detect, resolve, resolve_all
from edgert.errors import ConfigError, Unsupported

# This machine: Debian 12 with v1 controllers and a cgroup2 mount holding only hugetlb.
HYBRID_MOUNTINFO = """\
22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = """\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/320b785154c80cd1c0b0d5b80c815b37
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""

# Debian 12 / Fedora with systemd: cgroup2 only.
V2_MOUNTINFO = """\
24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
"""
V2_CGROUP = "0::/user.slice/user-1000.slice/session-3.scope\n"

# CentOS 7 style v1: cpu and cpuacct co-mounted, net_cls,net_prio too, a named systemd hierarchy.
V1_MOUNTINFO = """\
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:6 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup \
rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup \
cgroup rw,cpuacct,cpu
29 24 0:25 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:11 - cgroup \
cgroup rw,net_prio,net_cls
30 24 0:26 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup \
rw,memory
31 24 0:27 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup \
rw,cpuset
32 24 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
33 24 0:29 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,blkio
34 24 0:30 / /sys/fs/cgroup/devices rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup \
rw,devices
35 24 0:31 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup \
rw,freezer
36 24 0:32 / /sys/fs/cgroup/hugetlb rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup \
rw,hugetlb
37 24 0:33 / /sys/fs/cgroup/perf_event rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup \
rw,perf_event
"""
V1_CGROUP = """\
11:hugetlb:/
10:perf_event:/
9:freezer:/
8:devices:/system.slice/sshd.service
7:blkio:/system.slice/sshd.service
6:pids:/system.slice/sshd.service
5:cpuset:/
4:memory:/system.slice/sshd.service
3:net_prio,net_cls:/
2:cpuacct,cpu:/system.slice/sshd.service
1:name=systemd:/system.slice/sshd.service
"""

# OpenWrt 22.03+: procd mounts cgroup2 at /sys/fs/cgroup and runs services in /services/<name>.
OPENWRT_MOUNTINFO = """\
13 1 31:3 / /rom ro,relatime - squashfs /dev/root ro
17 15 0:17 / /sys rw,nosuid,nodev,noexec,noatime - sysfs sysfs rw
19 17 0:18 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
20 17 0:19 / /sys/fs/bpf rw,nosuid,nodev,noexec,noatime - bpf bpffs rw,mode=700
"""
OPENWRT_CGROUP = "0::/services/edgert/instance1\n"


def test_hybrid_machine():
    found = detect(HYBRID_MOUNTINFO, HYBRID_CGROUP, "hugetlb\n")
    assert found.mode == "hybrid"
    assert found.unified == "/sys/fs/cgroup/unified"
    assert found.v1 == {c: "/sys/fs/cgroup/" + c for c in
                        ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio",
                         "pids")}
    assert found.v2_controllers == {"hugetlb"}
    assert found.own["memory"] == "/process_api/320b785154c80cd1c0b0d5b80c815b37"
    assert found.own["cpu"] == found.own[""] == "/"
    assert "name=systemd" not in found.own and "systemd" not in found.v1
    assert found.version("memory") == 1 and found.version("hugetlb") == 2
    assert found.version("io") is None
    assert found.key("memory") == "memory" and found.key("hugetlb") == ""
    assert found.key("rdma") is None
    assert found.hierarchies()[""] == "/sys/fs/cgroup/unified"


def test_pure_v2():
    found = detect(V2_MOUNTINFO, V2_CGROUP, ["cpuset", "cpu", "io", "memory", "pids"])
    assert found.mode == "v2"
    assert found.v1 == {}
    assert found.unified == "/sys/fs/cgroup"
    assert found.own == {"": "/user.slice/user-1000.slice/session-3.scope"}
    assert found.version("memory") == 2 and found.key("memory") == ""
    assert found.version("hugetlb") is None
    assert found.hierarchies() == {"": "/sys/fs/cgroup"}


def test_pure_v1_with_comounted_controllers():
    found = detect(V1_MOUNTINFO, V1_CGROUP)
    assert found.mode == "v1"
    assert found.unified is None and found.v2_controllers == frozenset()
    assert found.v1["cpu"] == found.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert found.v1["net_cls"] == found.v1["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert found.own["cpu"] == found.own["cpuacct"] == "/system.slice/sshd.service"
    assert found.own["cpuset"] == "/"
    assert set(found.v1) == {"cpu", "cpuacct", "net_cls", "net_prio", "memory", "cpuset", "pids",
                             "blkio", "devices", "freezer", "hugetlb", "perf_event"}
    assert "" not in found.hierarchies()


def test_openwrt_v2_only():
    found = detect(OPENWRT_MOUNTINFO, OPENWRT_CGROUP, "cpu memory pids\n")
    assert found.mode == "v2"
    assert found.unified == "/sys/fs/cgroup"
    assert found.own == {"": "/services/edgert/instance1"}
    assert found.v2_controllers == {"cpu", "memory", "pids"}


def test_mount_of_a_subtree_gives_paths_relative_to_it():
    # inside a container without a cgroup namespace: the host's /docker/abc is mounted
    mountinfo = ("50 40 0:30 /docker/abc /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n")
    found = detect(mountinfo, "0::/docker/abc/inner\n")
    assert found.own[""] == "/inner"
    found = detect(mountinfo, "0::/docker/abc\n")
    assert found.own[""] == "/"


def test_escaped_mountpoint_and_standard_place_preferred():
    mountinfo = ("60 1 0:40 / /mnt/my\\040cgroup rw - cgroup cgroup rw,memory\n"
                 "61 1 0:40 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
                 "62 1 0:41 / /mnt/other\\134dir rw - cgroup cgroup rw,pids\n")
    found = detect(mountinfo, "3:memory:/\n2:pids:/\n")
    assert found.v1["memory"] == "/sys/fs/cgroup/memory"
    assert found.v1["pids"] == "/mnt/other\\dir"
    found = detect(mountinfo.splitlines()[0] + "\n", "3:memory:/\n")
    assert found.v1["memory"] == "/mnt/my cgroup"


def test_no_cgroups_mounted():
    with pytest.raises(Unsupported, match="no cgroup or cgroup2 filesystem"):
        detect("22 1 0:21 / / rw - ext4 /dev/sda1 rw\n", "0::/\n")


def test_with_v2_controllers_and_equality():
    found = detect(HYBRID_MOUNTINFO, HYBRID_CGROUP)
    assert found.v2_controllers == frozenset()
    filled = found.with_v2_controllers(["hugetlb"])
    assert filled == detect(HYBRID_MOUNTINFO, HYBRID_CGROUP, "hugetlb")
    assert filled != found
    assert "hybrid" in repr(filled)


# -- resolve --------------------------------------------------------------------------------------

def test_resolve_missing_goes_below_own_cgroup():
    assert resolve(None, "web", "/process_api/h") == "/process_api/h/edgert/web"
    assert resolve("", "web", "/") == "/edgert/web"
    assert resolve(None, "web", "/", parent="fleet/apps") == "/fleet/apps/web"


def test_resolve_absolute_and_relative():
    assert resolve("/machine/web", "web", "/process_api/h") == "/machine/web"
    assert resolve("/machine//./web/", "web", "/") == "/machine/web"
    assert resolve("apps/web", "web", "/process_api/h") == "/process_api/h/apps/web"


def test_resolve_rejects_systemd_paths():
    with pytest.raises(Unsupported, match="systemd slice:prefix:name.*cgroupfs path"):
        resolve("system.slice:edgert:web", "web", "/")


def test_resolve_rejects_climbing_and_own_cgroup():
    with pytest.raises(ConfigError, match=r"linux.cgroupsPath.*'\.\.'"):
        resolve("../escape", "web", "/a")
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        resolve("/a/../../b", "web", "/")
    with pytest.raises(ConfigError, match="'..'"):
        resolve(None, "web", "/", parent="..")
    with pytest.raises(ConfigError, match="runtime's own cgroup"):
        resolve(".", "web", "/a")
    with pytest.raises(ConfigError, match="runtime's own cgroup"):
        resolve("/", "web", "/a")


def test_resolve_rejects_bad_input():
    with pytest.raises(ConfigError, match="must be a string"):
        resolve(42, "web", "/")
    for bad in ("", "a/b", ".."):
        with pytest.raises(ConfigError, match="container id"):
            resolve(None, bad, "/")


def test_resolve_all_uses_each_hierarchys_own_cgroup():
    found = detect(HYBRID_MOUNTINFO, HYBRID_CGROUP, "hugetlb")
    paths = resolve_all(found, None, "web")
    assert paths["memory"] == "/process_api/320b785154c80cd1c0b0d5b80c815b37/edgert/web"
    assert paths["pids"] == paths[""] == "/edgert/web"
    assert set(paths) == set(found.hierarchies())
    assert resolve_all(found, "/abs", "web") == dict.fromkeys(found.hierarchies(), "/abs")


def test_layout_built_directly():
    direct = Layout({}, "/sys/fs/cgroup", ["memory"], {"": "/x"})
    assert direct.mode == "v2" and direct.version("memory") == 2
    assert Layout({"memory": "/m"}, None, ["memory"]).v2_controllers == frozenset()
    assert layout.V1_CONTROLLERS[0] == "cpuset"
