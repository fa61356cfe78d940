"""Mount extensions in real containers: tmpcopyup (podman --tmpfs/--read-only) and idmapped
binds (runtime-spec mount uidMappings/gidMappings)."""

import os

import pytest


def add_mount(mount):
    def edit(config):
        config["mounts"].append(mount)
    return edit


def test_tmpcopyup_fills_the_tmpfs_with_the_image_files(oci, make_bundle, busybox_rootfs):
    bundle = make_bundle(["/bin/sh", "-c", "cat /etc/passwd | head -n 1; echo new > /etc/x; "
                          "cat /etc/x; grep ' /etc ' /proc/self/mounts | cut -d' ' -f3"],
                         edit=add_mount({"destination": "/etc", "type": "tmpfs",
                                         "source": "tmpfs",
                                         "options": ["nosuid", "tmpcopyup", "mode=755"]}))
    out = oci("run", "--bundle", bundle, "copyup").stdout.decode().split()
    assert out == ["root:x:0:0:root:/root:/bin/sh", "new", "tmpfs"]
    assert not os.path.exists(os.path.join(busybox_rootfs, "etc", "x"))


def test_idmapped_bind_shows_files_through_the_mapping(oci, make_bundle, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("x")  # owned by 0 on disk: the mapping shows it as 1000
    mapping = [{"containerID": 0, "hostID": 1000, "size": 1}]
    bundle = make_bundle(["/bin/sh", "-c", "stat -c '%u %g' /vol/f"],
                         edit=add_mount({"destination": "/vol", "type": "bind",
                                         "source": str(vol), "options": ["rbind", "idmap"],
                                         "uidMappings": mapping, "gidMappings": mapping}))
    proc = oci("run", "--bundle", bundle, "idmap", check=False)
    err = proc.stderr.decode()
    if proc.returncode and ("Invalid argument" in err or "not supported" in err):
        pytest.skip("the filesystem under %s has no idmapped mounts: %s" % (vol, err.strip()))
    assert proc.returncode == 0, err
    assert proc.stdout.decode().split() == ["1000", "1000"]
