"""Foreign-architecture containers: the in-tree (x86_64) edgert-oci runs an arm64 busybox.

The container's programs run through binfmt_misc and qemu-aarch64-static with the F flag
(the kernel opens the interpreter at registration, so the rootfs needs no qemu binary) and
the P flag (busybox needs its argv[0]).
Debian's busybox-static:arm64 comes from the cross tier's private apt root
(`cross/vm --busybox arm64`), never from the host's dpkg architectures. The binfmt entry is
registered here under a name of our own and removed afterwards, unless the system already has
an enabled qemu-aarch64 entry with the F flag; binfmt_misc is mounted only when it is not,
and unmounted again only when nothing else was registered meanwhile.
"""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINFMT = "/proc/sys/fs/binfmt_misc"
# qemu-user-static's own registration line: its interpreter is a wrapper that passes argv[0]
# on (flag P), which busybox needs to pick the applet, and F opens it at registration.
CONF = "/usr/lib/binfmt.d/qemu-aarch64.conf"
ENTRY_PREFIX = "edgert-foreign-aarch64-"

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root for binfmt_misc and containers")


def entry_fields(name):
    with open(os.path.join(BINFMT, name)) as f:
        lines = f.read().splitlines()
    fields = {"enabled": lines[:1] == ["enabled"]}
    for line in lines[1:]:
        key, _, value = line.partition(" ")
        fields[key.rstrip(":")] = value
    return fields


def system_entry_with_f_flag():
    """The system's own qemu-aarch64 entry, when it is enabled and has the F flag."""
    path = os.path.join(BINFMT, "qemu-aarch64")
    if not os.path.exists(path):
        return None
    fields = entry_fields("qemu-aarch64")
    return path if fields["enabled"] and "F" in fields.get("flags", "") else None


def remove_orphaned_entries():
    """Entries of this test whose process died before it could remove them."""
    for name in os.listdir(BINFMT):
        if name.startswith(ENTRY_PREFIX):
            pid = name[len(ENTRY_PREFIX):]
            if pid.isdigit() and not os.path.exists("/proc/" + pid):
                with open(os.path.join(BINFMT, name), "w") as f:
                    f.write("-1")


@pytest.fixture(scope="module")
def aarch64_binfmt():
    """Makes arm64 ELF binaries runnable on this host for the module; undoes only its own."""
    try:
        with open(CONF) as f:
            line = [ln for ln in f.read().splitlines() if ln.startswith(":qemu-aarch64:")][0]
    except (FileNotFoundError, IndexError):
        pytest.skip("%s missing: apt-get install qemu-user-static" % CONF)
    if "F" not in line.rsplit(":", 1)[1]:
        line += "F"
    mounted = False
    if not os.path.exists(os.path.join(BINFMT, "register")):
        proc = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            pytest.skip("binfmt_misc cannot be mounted on %s: %s"
                        % (BINFMT, proc.stdout.decode().strip()))
        mounted = True
    remove_orphaned_entries()
    if system_entry_with_f_flag():
        yield "qemu-aarch64"
        return
    name = ENTRY_PREFIX + str(os.getpid())
    with open(os.path.join(BINFMT, "register"), "w") as f:
        f.write(line.replace(":qemu-aarch64:", ":%s:" % name, 1))
    try:
        yield name
    finally:
        with open(os.path.join(BINFMT, name), "w") as f:
            f.write("-1")
        if mounted and set(os.listdir(BINFMT)) <= {"register", "status"}:
            subprocess.run(["umount", BINFMT], check=True)


@pytest.fixture(scope="module")
def arm64_rootfs(aarch64_binfmt, tmp_path_factory):
    """A busybox rootfs from Debian's busybox-static:arm64."""
    proc = subprocess.run([os.path.join(REPO, "cross", "vm"), "--busybox", "arm64"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=600)
    if proc.returncode == 77:
        pytest.skip("busybox-static:arm64 cannot be had: %s" % proc.stderr.decode().strip())
    assert proc.returncode == 0, proc.stderr.decode()
    busybox = proc.stdout.decode().strip().splitlines()[-1]
    from edgert import rootfs
    # Listing the applets runs the arm64 binary: it needs the binfmt entry already.
    return rootfs.build_busybox_rootfs(str(tmp_path_factory.mktemp("arm64") / "rootfs"),
                                       busybox=busybox, arch="arm64")


@pytest.fixture
def arm64_bundle(make_bundle, arm64_rootfs):
    def make(args):
        return make_bundle(args, edit=lambda config: config["root"].__setitem__(
            "path", arm64_rootfs))
    return make


def run(oci, bundle, name):
    return oci("run", "--bundle", bundle, "%s-%d" % (name, os.getpid()), check=False)


def test_arm64_container_reports_aarch64(oci, arm64_bundle):
    proc = run(oci, arm64_bundle(["uname", "-m"]), "uname")
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "aarch64"


def test_arm64_rootfs_holds_only_arm64_code(arm64_rootfs):
    with open(os.path.join(arm64_rootfs, "bin", "busybox"), "rb") as f:
        header = f.read(20)
    assert header[:4] == b"\x7fELF" and header[18:20] == b"\xb7\x00"  # EM_AARCH64
    assert not os.path.exists(os.path.join(arm64_rootfs, "usr", "bin", "qemu-aarch64-static"))


def test_exit_code_passes_through(oci, arm64_bundle):
    proc = run(oci, arm64_bundle(["sh", "-c", "exit 42"]), "exit")
    assert proc.returncode == 42, proc.stderr.decode()


def test_death_by_signal_passes_through(oci, arm64_bundle):
    proc = run(oci, arm64_bundle(["sh", "-c", "kill -TERM $$; sleep 10"]), "signal")
    assert proc.returncode == 128 + 15, proc.stderr.decode()


def test_container_namespaces_hold_under_emulation(oci, arm64_bundle):
    proc = run(oci, arm64_bundle(["sh", "-c", "hostname; ls /sys/class/net | tr '\\n' ' '; "
                                              "echo; cat /proc/1/comm"]), "ns")
    assert proc.returncode == 0, proc.stderr.decode()
    hostname, links, init = proc.stdout.decode().splitlines()
    assert hostname == "edgert"
    assert links.split() == ["lo"]
    assert init == "edgert-init"
