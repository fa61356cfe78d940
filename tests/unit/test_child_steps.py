"""Order of the container setup steps, read back from a recording fake of the syscall seam."""

import os

from edgert import linuxconst as K
from edgert.oci.mountopts import MountOptions
from edgert.runtime import child as C
from edgert.runtime.linux import Recorder


def opts(flags=0, bind=False, recursive=False, data="", propagation=(), clear=0, idmap=False,
         ridmap=False, copyup=False):
    return MountOptions(flags=flags, clear=clear, propagation=list(propagation), bind=bind,
                        recursive=recursive, data=data, rec_attr_set=0, rec_attr_clr=0,
                        idmap=idmap, ridmap=ridmap, copyup=copyup)


def test_prepare_root_isolates_propagation_then_binds_rootfs():
    sc = Recorder()
    C.prepare_root(sc, "/b/rootfs", None)
    assert sc.calls == [("mount", None, "/", None, K.MS_REC | K.MS_SLAVE, None),
                        ("mount", "/b/rootfs", "/b/rootfs", None, K.MS_BIND | K.MS_REC, None)]
    sc = Recorder()
    C.prepare_root(sc, "/r", "rprivate")
    assert sc.calls[0][4] == K.MS_REC | K.MS_PRIVATE


def test_fs_mount_creates_target_then_mounts_then_propagation(tmp_path):
    root = str(tmp_path)
    sc = Recorder()
    m = {"destination": "/dev/shm", "type": "tmpfs", "source": "shm"}
    C.mount_entry(sc, root, "/bundle", m,
                  opts(flags=K.MS_NOSUID | K.MS_NODEV, data="mode=1777",
                       propagation=[K.MS_PRIVATE]))
    assert sc.calls == [
        ("mkdir", root + "/dev", 0o755), ("mkdir", root + "/dev/shm", 0o755),
        ("mount", "shm", root + "/dev/shm", "tmpfs", K.MS_NOSUID | K.MS_NODEV, "mode=1777"),
        ("mount", None, root + "/dev/shm", None, K.MS_PRIVATE, None)]


def test_readonly_bind_is_bind_then_remount(tmp_path):
    root = str(tmp_path / "root")
    os.mkdir(root)
    src = tmp_path / "data"
    src.mkdir()
    sc = Recorder()
    m = {"destination": "/data", "type": "bind", "source": str(src)}
    C.mount_entry(sc, root, "/bundle", m,
                  opts(flags=K.MS_BIND | K.MS_REC | K.MS_RDONLY, bind=True, recursive=True))
    assert sc.names() == ["mkdir", "mount", "mount"]
    assert sc.calls[1] == ("mount", str(src), root + "/data", None, K.MS_BIND | K.MS_REC, None)
    assert sc.calls[2][4] & (K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY) == \
        K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY


def test_relative_bind_source_is_bundle_relative_and_files_get_a_file_target(tmp_path):
    bundle = tmp_path
    (bundle / "hosts").write_text("x")
    root = bundle / "rootfs"
    (root / "etc").mkdir(parents=True)
    sc = Recorder()
    C.mount_entry(sc, str(root), str(bundle), {"destination": "/etc/hosts", "source": "hosts"},
                  opts(flags=K.MS_BIND, bind=True))
    assert sc.calls[0] == ("create_file", str(root) + "/etc/hosts", 0o644)
    assert sc.calls[1][1] == str(bundle / "hosts")


def test_mount_target_through_symlink_stays_in_rootfs(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/etc", root / "evil")
    sc = Recorder()
    C.mount_entry(sc, str(root), "/b", {"destination": "/evil/x", "type": "tmpfs"}, opts())
    assert all(str(root) in c[1] for c in sc.calls if c[0] == "mkdir")
    assert sc.calls[-1][2] == str(root) + "/etc/x"


def test_cgroup_v1_mount_is_tmpfs_with_per_hierarchy_binds(tmp_path):
    root = str(tmp_path)
    sc = Recorder()
    binds = [("memory", "/sys/fs/cgroup/memory/x"), ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/x")]
    C.mount_entry(sc, root, "/b", {"destination": "/sys/fs/cgroup", "type": "cgroup"},
                  opts(flags=K.MS_RDONLY | K.MS_NOSUID), binds)
    names = [(c[0], c[2] if c[0] == "mount" else c[-1]) for c in sc.calls]
    assert ("mount", root + "/sys/fs/cgroup") in names
    assert ("symlink", root + "/sys/fs/cgroup/cpu") in names
    assert ("symlink", root + "/sys/fs/cgroup/cpuacct") in names
    assert sc.calls[-1][4] & K.MS_RDONLY


def test_devices_default_set_and_links(tmp_path):
    root = str(tmp_path)
    sc = Recorder()
    C.create_devices(sc, root, [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                 "fileMode": 0o600, "uid": 0, "gid": 0}], False)
    nodes = [c for c in sc.calls if c[0] == "mknod"]
    assert [os.path.basename(c[1]) for c in nodes] == [
        "null", "zero", "full", "random", "urandom", "tty", "fuse"]
    assert nodes[-1][3] == os.makedev(10, 229)
    links = {c[2]: c[1] for c in sc.calls if c[0] == "symlink"}
    assert links[root + "/dev/ptmx"] == "pts/ptmx"
    assert links[root + "/dev/fd"] == "/proc/self/fd"


def test_devices_in_user_namespace_are_bind_mounted(tmp_path):
    sc = Recorder()
    C.create_devices(sc, str(tmp_path), [], True)
    assert "mknod" not in sc.names()
    assert ("mount", "/dev/null", str(tmp_path) + "/dev/null", None, K.MS_BIND, None) in sc.calls


def test_pivot_detaches_old_root_after_making_it_slave():
    sc = Recorder()
    C.pivot(sc, "/r")
    assert sc.calls == [("chdir", "/r"), ("pivot_root", ".", "."),
                        ("mount", None, ".", None, K.MS_SLAVE | K.MS_REC, None),
                        ("umount2", ".", K.MNT_DETACH), ("chdir", "/")]


def test_sysctl_paths():
    sc = Recorder()
    C.set_sysctl(sc, {"net.ipv4.ip_forward": "1"})
    assert sc.calls == [("write_file", "/proc/sys/net/ipv4/ip_forward", "1")]


def test_idmapped_bind_goes_through_the_mount_api(tmp_path):
    root = str(tmp_path / "root")
    os.mkdir(root)
    src = tmp_path / "vol"
    src.mkdir()
    sc = Recorder()
    C.mount_entry(sc, root, "/b", {"destination": "/vol", "source": str(src)},
                  opts(flags=K.MS_BIND | K.MS_REC, bind=True, recursive=True, idmap=True,
                       ridmap=True), userns_fd=7)
    assert sc.calls[1] == ("idmapped_bind", str(src), root + "/vol", True, True, 7)
    assert "mount" not in sc.names()


def test_tmpcopyup_mounts_then_copies_the_lower_directory_then_remounts_ro(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    sc = Recorder()
    C.mount_entry(sc, str(root), "/b", {"destination": "/etc", "type": "tmpfs"},
                  opts(flags=K.MS_RDONLY | K.MS_NOSUID, copyup=True))
    assert sc.names() == ["mount", "copy_tree", "mount"]
    assert sc.calls[0][4] == K.MS_NOSUID
    assert sc.calls[2][4] == K.MS_REMOUNT | K.MS_RDONLY | K.MS_NOSUID


def test_copy_tree_keeps_modes_owners_links_and_nodes(tmp_path):
    from edgert.runtime.linux import copy_tree
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("data")
    os.chmod(src / "sub" / "f", 0o640)
    os.chmod(src, 0o711)
    os.symlink("sub/f", src / "link")
    os.mkfifo(src / "fifo")
    os.utime(src / "sub" / "f", ns=(1, 2_000_000_000))
    dst = tmp_path / "dst"
    dst.mkdir()
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        copy_tree(fd, str(dst))
    finally:
        os.close(fd)
    assert (dst / "sub" / "f").read_text() == "data"
    assert os.stat(dst / "sub" / "f").st_mode & 0o777 == 0o640
    assert os.stat(dst / "sub" / "f").st_mtime_ns == 2_000_000_000
    assert os.readlink(dst / "link") == "sub/f"
    assert os.path.exists(dst / "fifo") and not os.path.isfile(dst / "fifo")
    assert os.stat(dst).st_mode & 0o777 == 0o711


def test_ambient_caps_that_cannot_be_raised_are_skipped_and_named():
    from edgert.runtime.container import Plan, plan_process
    plan = Plan()
    caps = ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    plan_process(plan, {"args": ["x"], "capabilities": {
        "bounding": caps, "effective": caps, "permitted": caps,
        "inheritable": ["CAP_KILL"], "ambient": caps}}, None)
    assert plan.ambient == [5]  # CAP_KILL
    assert plan.skipped_ambient == ["CAP_NET_BIND_SERVICE"]
