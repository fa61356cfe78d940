"""edgert.rootfs: the busybox rootfs builder. No root needed."""

import os
import stat
import struct
import subprocess

import pytest

from edgert import rootfs
from edgert.errors import ConfigError, NotFound, StateError

BUSYBOX = "/bin/busybox"
needs_busybox = pytest.mark.skipif(not os.path.exists(BUSYBOX),
                                   reason="needs busybox-static (/bin/busybox)")


def write_fake_elf(path, elf_class=2, with_interp=False, machine=62):
    """A header-only ELF with one program header: PT_INTERP (3) or PT_LOAD (1)."""
    p_type = 3 if with_interp else 1
    if elf_class == 2:
        header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, machine,
                             1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
        phdr = struct.pack("<IIQQQQQQ", p_type, 5, 0, 0, 0, 0, 0, 0)
    else:
        header = struct.pack("<16sHHIIIIIHHHHHH", b"\x7fELF\x01\x01\x01" + bytes(9), 2, machine,
                             1, 0, 52, 0, 0, 52, 32, 1, 0, 0, 0)
        phdr = struct.pack("<IIIIIIII", p_type, 0, 0, 0, 0, 0, 5, 0)
    with open(path, "wb") as f:
        f.write(header + phdr)
    os.chmod(path, 0o755)
    return path


def listed_applets():
    out = subprocess.run([BUSYBOX, "--list-full"], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not os.path.exists(BUSYBOX):
        pytest.skip("needs busybox-static (/bin/busybox)")
    return rootfs.build_busybox_rootfs(str(tmp_path_factory.mktemp("rootfs") / "rootfs"))


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


@needs_busybox
def test_returns_absolute_path_and_leaves_no_temp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = rootfs.build_busybox_rootfs("rootfs")
    assert result == str(tmp_path / "rootfs")
    assert os.listdir(tmp_path) == ["rootfs"]


def test_busybox_is_a_copied_executable(built):
    path = os.path.join(built, "bin", "busybox")
    assert stat.S_ISREG(os.lstat(path).st_mode)
    assert mode_of(path) == 0o755
    with open(path, "rb") as copy, open(BUSYBOX, "rb") as original:
        assert copy.read() == original.read()


def test_every_applet_is_a_relative_link_to_busybox(built):
    target = os.path.join(built, "bin", "busybox")
    applets = [a for a in listed_applets() if a != "bin/busybox"]
    assert applets
    for applet in applets:
        link = os.path.join(built, applet)
        assert os.path.islink(link), applet
        assert not os.readlink(link).startswith("/"), applet
        assert os.path.realpath(link) == os.path.realpath(target), applet


def test_applet_runs_through_its_link(built):
    out = subprocess.run([os.path.join(built, "bin", "sh"), "-c", "echo hi"],
                         capture_output=True, text=True, check=True)
    assert out.stdout == "hi\n"


def test_directories_and_modes(built):
    expected = {"proc": 0o555, "sys": 0o555, "dev": 0o755, "tmp": 0o1777, "run": 0o755,
                "root": 0o700, "etc": 0o755, "var/tmp": 0o1777}
    for rel, mode in expected.items():
        path = os.path.join(built, rel)
        assert os.path.isdir(path) and not os.path.islink(path), rel
        assert mode_of(path) == mode, rel
    for mount_point in ("proc", "sys", "dev", "tmp", "run"):
        assert os.listdir(os.path.join(built, mount_point)) == [], mount_point


def test_passwd_and_group(built):
    with open(os.path.join(built, "etc", "passwd")) as f:
        users = {line.split(":")[0]: line.split(":") for line in f.read().splitlines()}
    assert users["root"][2:4] == ["0", "0"]
    assert users["nobody"][2:4] == ["65534", "65534"]
    with open(os.path.join(built, "etc", "group")) as f:
        groups = {line.split(":")[0]: line.split(":")[2] for line in f.read().splitlines()}
    assert groups == {"root": "0", "nogroup": "65534"}


@needs_busybox
def test_existing_destination_is_refused(tmp_path):
    (tmp_path / "rootfs").mkdir()
    with pytest.raises(StateError, match="already exists"):
        rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"))


@pytest.mark.parametrize("elf_class", [1, 2])
def test_dynamic_binary_is_refused(tmp_path, elf_class):
    fake = write_fake_elf(str(tmp_path / "busybox"), elf_class=elf_class, with_interp=True)
    with pytest.raises(ConfigError, match="dynamically linked.*busybox-static"):
        rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"), busybox=fake)
    assert sorted(os.listdir(tmp_path)) == ["busybox"]


def test_non_elf_is_refused(tmp_path):
    script = tmp_path / "busybox"
    script.write_text("#!/bin/sh\necho bin/sh\n")
    with pytest.raises(ConfigError, match="not an ELF"):
        rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"), busybox=str(script))


def test_missing_binary_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="busybox-static"):
        rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"), busybox=str(tmp_path / "none"))


def test_wrong_architecture_is_refused(tmp_path):
    fake = write_fake_elf(str(tmp_path / "busybox"), machine=183)
    with pytest.raises(ConfigError, match="not amd64"):
        rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"), busybox=fake, arch="amd64")


def test_unknown_architecture_is_refused(tmp_path):
    fake = write_fake_elf(str(tmp_path / "busybox"))
    with pytest.raises(ConfigError, match="unknown architecture"):
        rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"), busybox=fake, arch="vax")


def test_matching_architecture_passes_the_check(tmp_path, monkeypatch):
    fake = write_fake_elf(str(tmp_path / "busybox"), machine=183)
    monkeypatch.setattr(rootfs, "_list_applets", lambda busybox: ["bin/sh"])
    result = rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"), busybox=fake, arch="arm64")
    assert os.readlink(os.path.join(result, "bin", "sh")) == "busybox"


def test_self_entry_and_duplicates_do_not_replace_the_binary(tmp_path, monkeypatch):
    fake = write_fake_elf(str(tmp_path / "busybox"))
    monkeypatch.setattr(rootfs, "_list_applets",
                        lambda busybox: ["bin/busybox", "bin/sh", "bin/sh", "linuxrc",
                                         "usr/local/bin/x"])
    result = rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"), busybox=fake)
    assert not os.path.islink(os.path.join(result, "bin", "busybox"))
    assert os.readlink(os.path.join(result, "linuxrc")) == "bin/busybox"
    assert os.readlink(os.path.join(result, "usr/local/bin/x")) == "../../../bin/busybox"


def test_failed_build_removes_its_temp_dir(tmp_path, monkeypatch):
    fake = write_fake_elf(str(tmp_path / "busybox"))
    monkeypatch.setattr(rootfs, "_list_applets", lambda busybox: ["bin/sh"])

    def fail(src, dest):
        raise OSError(28, "write: No space left on device", dest)

    monkeypatch.setattr(rootfs, "_copy_executable", fail)
    with pytest.raises(OSError):
        rootfs.build_busybox_rootfs(str(tmp_path / "rootfs"), busybox=fake)
    assert sorted(os.listdir(tmp_path)) == ["busybox"]


@pytest.mark.parametrize("line", ["../escape", "/bin/abs", "usr//bin/x", "usr/./x"])
def test_unsafe_applet_paths_are_refused(tmp_path, line):
    lister = tmp_path / "lister"
    lister.write_text("#!/bin/sh\necho bin/sh\necho '%s'\n" % line)
    lister.chmod(0o755)
    with pytest.raises(ConfigError, match="unsafe applet path"):
        rootfs._list_applets(str(lister))


def test_failing_lister_is_reported(tmp_path):
    lister = tmp_path / "lister"
    lister.write_text("#!/bin/sh\nexit 1\n")
    lister.chmod(0o755)
    with pytest.raises(ConfigError, match="--list-full failed"):
        rootfs._list_applets(str(lister))


def test_unrunnable_binary_is_explained(tmp_path):
    # A machine number no kernel or binfmt handler knows: exec fails with ENOEXEC.
    fake = write_fake_elf(str(tmp_path / "busybox"), machine=0x1234)
    with pytest.raises(ConfigError, match="cannot run it to list applets"):
        rootfs._list_applets(fake)
