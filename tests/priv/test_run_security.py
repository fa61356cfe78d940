"""edgert-oci's confinement of real containers: capabilities, seccomp, no_new_privs, masked and
read-only paths, fds, pid 1's protection, user namespaces, sysctl.

Each test runs the probe (tests/probe/probe.c) in a container on the shared busybox rootfs
and reads what it reports; the probe prints `name=ok` or `name=ENAME` for an operation.
Container ids carry the test process's pid because they also name cgroups, which concurrent
test sessions share.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

from helpers.probe import PATH, kv, unique  # noqa: F401

from edgert import caps
from edgert.oci.defaults import CAPABILITIES, MASKED_PATHS

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")


# -- helpers -------------------------------------------------------------------------------------

def run(oci, bundle, name, expect=0, **kw):
    """A foreground run; its stdout as text; fails unless it exits ``expect``."""
    proc = oci("run", "--bundle", bundle, unique(name), check=False, **kw)
    assert proc.returncode == expect, "exit %d, stderr: %s" % (
        proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout.decode(errors="replace")


def probe_script(*commands):
    """A shell line running each probe command; every command's output is kept."""
    return ["/bin/sh", "-c", "; ".join("/probe " + c for c in commands) + "; true"]


def read(path):
    with open(path) as f:
        return f.read().strip()


def proc_status(pid):
    return dict(line.split(":\t", 1) for line in read("/proc/%d/status" % pid).splitlines()
                if ":\t" in line)


@pytest.fixture
def detached(oci, make_bundle, tmp_path):
    """detached(edit=None, **defaults) -> (id, pid): `/probe sleep 60`, run --detach."""
    counter = iter(range(100))

    def start(edit=None, **defaults):
        cid = unique("sec%d" % next(counter))
        pid_file = tmp_path / (cid + ".pid")
        with open(tmp_path / (cid + ".log"), "ab") as log:
            proc = subprocess.run(
                [oci.binary, "--root", oci.root, "run", "--detach", "--pid-file", str(pid_file),
                 "--bundle", make_bundle(["/probe", "sleep", "60"], edit, **defaults), cid],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=30)
        assert proc.returncode == 0, read(tmp_path / (cid + ".log"))
        return cid, int(pid_file.read_text())
    return start


def drop_capability(name):
    def edit(config):
        for capset in config["process"]["capabilities"].values():
            if name in capset:
                capset.remove(name)
    return edit


DEFAULT_CAPS = caps.mask(CAPABILITIES)


# -- capabilities --------------------------------------------------------------------------------

def test_default_capabilities(oci, make_bundle):
    out = kv(run(oci, make_bundle(["/probe", "caps"]), "caps"))
    assert int(out["CapEff"], 16) == DEFAULT_CAPS
    assert int(out["CapPrm"], 16) == DEFAULT_CAPS
    assert int(out["CapBnd"], 16) == DEFAULT_CAPS
    assert int(out["CapInh"], 16) == 0
    assert int(out["CapAmb"], 16) == 0


def test_cap_sys_admin_is_not_held(oci, make_bundle):
    out = kv(run(oci, make_bundle(probe_script("syscall sethostname", "syscall mount",
                                               "syscall setns")), "noadmin"))
    assert out == {"sethostname": "EPERM", "mount": "EPERM", "setns": "EPERM"}


def test_dropped_capability_is_gone(oci, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "/probe caps; touch /run/f; chown 1000 /run/f "
                          "&& echo chown=ok || echo chown=failed"], drop_capability("CAP_CHOWN"))
    out = kv(run(oci, bundle, "nochown"))
    expected = DEFAULT_CAPS & ~caps.mask(["CAP_CHOWN"])
    assert int(out["CapEff"], 16) == expected
    assert int(out["CapBnd"], 16) == expected
    assert out["chown"] == "failed"


def test_non_root_user_holds_no_capabilities(oci, make_bundle):
    out = kv(run(oci, make_bundle(probe_script("caps", "ids", "syscall chroot"), uid=1000,
                                  gid=1000), "nonroot"))
    assert out["uid"] == "1000"
    assert int(out["CapEff"], 16) == 0 and int(out["CapPrm"], 16) == 0
    assert int(out["CapBnd"], 16) == DEFAULT_CAPS
    assert out["chroot"] == "EPERM"


def test_ambient_capability_for_non_root_user(oci, make_bundle):
    def edit(config):
        capset = config["process"]["capabilities"]
        for name in ("effective", "permitted", "inheritable", "ambient"):
            capset[name] = ["CAP_NET_BIND_SERVICE"]
    out = kv(run(oci, make_bundle(probe_script("caps", "ids"), edit, uid=1000, gid=1000),
                 "ambient"))
    bit = caps.mask(["CAP_NET_BIND_SERVICE"])
    assert out["uid"] == "1000"
    assert int(out["CapAmb"], 16) == bit
    assert int(out["CapEff"], 16) == bit


# -- seccomp and no_new_privs --------------------------------------------------------------------

def test_default_seccomp_profile(oci, make_bundle):
    out = kv(run(oci, make_bundle(probe_script("seccomp", "syscall keyctl", "syscall unshare",
                                               "syscall personality")), "seccomp"))
    assert out["seccomp"] == "2"
    assert out["keyctl"] == "EPERM"
    assert out["unshare"] == "EPERM"
    assert out["personality"] == "ok"


def test_seccomp_is_what_denies_keyctl(oci, make_bundle):
    def edit(config):
        del config["linux"]["seccomp"]
    out = kv(run(oci, make_bundle(probe_script("seccomp", "syscall keyctl"), edit),
                 "noseccomp"))
    assert out == {"seccomp": "0", "keyctl": "ok"}


def test_no_new_privs(oci, make_bundle):
    assert kv(run(oci, make_bundle(["/probe", "nnp"]), "nnp"))["nnp"] == "1"


def test_seccomp_without_no_new_privs(oci, make_bundle):
    def edit(config):
        config["process"]["noNewPrivileges"] = False
    out = kv(run(oci, make_bundle(probe_script("nnp", "seccomp", "syscall keyctl"), edit),
                 "nonnp"))
    assert out == {"nnp": "0", "seccomp": "2", "keyctl": "EPERM"}


def test_exec_keeps_the_container_confinement(detached, oci):
    """Like runc: an exec'd process gets process.capabilities, noNewPrivileges and seccomp of
    config.json unless told otherwise."""
    cid, _ = detached()
    out = kv(oci("exec", cid, "/bin/sh", "-c", "/probe caps; /probe nnp; /probe seccomp; "
                 "/probe syscall keyctl; true").stdout)
    assert out["seccomp"] == "2" and out["keyctl"] == "EPERM"
    assert out["nnp"] == "1"
    assert int(out["CapBnd"], 16) == DEFAULT_CAPS
    assert int(out["CapEff"], 16) == DEFAULT_CAPS


def test_exec_cap_adds_to_the_container_capabilities(detached, oci):
    """Like runc: --cap adds to process.capabilities of config.json."""
    cid, _ = detached()
    out = kv(oci("exec", "--cap", "CAP_SYS_ADMIN", cid, "/probe", "caps").stdout)
    expected = DEFAULT_CAPS | caps.mask(["CAP_SYS_ADMIN"])
    assert int(out["CapEff"], 16) == expected
    assert int(out["CapBnd"], 16) == expected


# -- paths ---------------------------------------------------------------------------------------

def test_masked_paths(oci, make_bundle):
    """Each masked path the host has: a file reads as /dev/null, a directory is an empty
    read-only tmpfs."""
    present = [p for p in MASKED_PATHS if os.path.exists(p)]
    if not present:
        pytest.skip("this kernel has none of the masked paths")
    script = "".join('echo "%s|$(/probe cat %s | wc -c)|$(/probe stat %s | tr \'\\n\' \' \')|'
                     '$(ls -A %s 2>/dev/null | wc -l)|$(/probe write %s/x y)"; '
                     % ((p,) * 5) for p in present)
    out = run(oci, make_bundle(["/bin/sh", "-c", script]), "masked")
    seen = {}
    for line in out.splitlines():
        path, size, stat, entries, write = line.split("|")
        seen[path] = kv(stat.replace(" ", "\n"))
        if os.path.isdir(path):
            assert (seen[path]["type"], entries, write) == ("dir", "0", "write=EROFS"), line
        else:
            assert (seen[path]["type"], seen[path]["major"], seen[path]["minor"], size) == (
                "chr", "1", "3", "0"), line
    assert sorted(seen) == sorted(present)


def test_readonly_paths(oci, make_bundle):
    checks = ["write /proc/sys/kernel/hostname x", "cat /proc/sys/kernel/ostype"]
    if os.path.exists("/proc/sysrq-trigger"):
        checks.append("open /proc/sysrq-trigger w")  # opening it writes nothing
    out = run(oci, make_bundle(probe_script(*checks)), "ro").splitlines()
    assert out[:2] == ["write=EROFS", "Linux"]
    assert out[2:] == ["open=EROFS"] * (len(checks) - 2)


def test_readonly_root(oci, make_bundle):
    def edit(config):
        config["root"]["readonly"] = True
    out = run(oci, make_bundle(probe_script("write /probe-was-here x", "write /run/x y",
                                            "write /dev/shm/x y"), edit), "roroot")
    assert out.splitlines() == ["write=EROFS", "write=ok", "write=ok"]


def test_cgroup_files_are_read_only(oci, make_bundle):
    """The container cannot raise its own limits (writing cgroup.procs would only move a
    process into the cgroup it is in already)."""
    out = run(oci, make_bundle(["/bin/sh", "-c", "for f in /sys/fs/cgroup/*/cgroup.procs; do "
                                "/probe write $f 1; done; true"]), "cgro").split()
    assert out and set(out) == {"write=EROFS"}, out


def test_host_mounts_are_not_visible(oci, make_bundle, busybox_rootfs):
    """pivot_root left no path to the host's tree behind."""
    out = run(oci, make_bundle(["/probe", "mounts"]), "mounts")
    mountpoints = [line.split()[4] for line in out.splitlines()]
    assert "/" in mountpoints
    host_only = [m for m in mountpoints if m.startswith((busybox_rootfs, "/work", "/tmp/pytest"))]
    assert not host_only, mountpoints
    assert len(mountpoints) < 60, mountpoints


def test_no_host_fds_leak(oci, make_bundle, tmp_path):
    secret = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(secret, True)
    try:
        out = kv(run(oci, make_bundle(["/probe", "fds"]), "fds", pass_fds=(secret,)))
    finally:
        os.close(secret)
    assert sorted(out) == ["fd.0", "fd.1", "fd.2"], out


def test_no_host_fds_leak_into_exec(detached, oci, tmp_path):
    cid, _ = detached()
    secret = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(secret, True)
    try:
        out = kv(oci("exec", cid, "/probe", "fds", pass_fds=(secret,)).stdout)
    finally:
        os.close(secret)
    assert sorted(out) == ["fd.0", "fd.1", "fd.2"], out


def test_cwd_is_inside_the_container(oci, make_bundle):
    out = run(oci, make_bundle(probe_script("cwd", "stat ./probe", "stat /proc/self/cwd/probe")),
              "cwd")
    assert out.splitlines()[0] == "cwd=/"
    assert out.count("type=reg") == 2


def test_exec_cwd_is_inside_the_container(detached, oci):
    cid, _ = detached()
    out = oci("exec", cid, "/bin/sh", "-c", "/probe cwd; /probe stat ./probe").stdout.decode()
    assert out.splitlines()[0] == "cwd=/" and "type=reg" in out


def test_pid_namespace(oci, make_bundle):
    assert kv(run(oci, make_bundle(["/probe", "pid"]), "pidns")) == {"pid": "2", "ppid": "1"}
    listed = run(oci, make_bundle(["/bin/ls", "/proc"]), "pidls").split()
    assert sorted(int(p) for p in listed if p.isdigit()) == [1, 2]  # edgert-init and ls


# -- pid 1 ---------------------------------------------------------------------------------------

def test_pid1_is_protected_from_the_workload(oci, make_bundle):
    out = run(oci, make_bundle(probe_script("open /proc/1/environ r", "open /proc/1/mem r",
                                            "cat /proc/1/exe")), "dump")
    results = [line.split("=", 1)[1] for line in out.splitlines()]
    assert len(results) == 3 and "ok" not in results, out


def test_pid1_runs_from_a_sealed_memfd(detached):
    _, pid = detached()
    exe = os.readlink("/proc/%d/exe" % pid)
    assert exe.startswith("/memfd:edgert-init"), exe
    status = proc_status(pid)
    assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "1")
    assert int(status["CapBnd"], 16) == DEFAULT_CAPS


# -- user namespace ------------------------------------------------------------------------------

def user_namespaces_available():
    try:
        return int(read("/proc/sys/user/max_user_namespaces")) > 0
    except (OSError, ValueError):
        return False


needs_userns = pytest.mark.skipif(not user_namespaces_available(),
                                  reason="user namespaces are disabled "
                                         "(/proc/sys/user/max_user_namespaces)")


@pytest.fixture(scope="module")
def userns_rootfs(busybox_rootfs):
    """A rootfs owned by the mapped root, on a path it can traverse (pytest's tmp is 0700)."""
    top = tempfile.mkdtemp(prefix="edgert-userns-", dir="/tmp")
    try:
        os.chmod(top, 0o755)
        dest = os.path.join(top, "rootfs")
        subprocess.run(["cp", "-a", busybox_rootfs, dest], check=True)
        subprocess.run(["chown", "-R", "-h", "100000:100000", dest], check=True)
        yield dest
    finally:
        shutil.rmtree(top)


@pytest.fixture
def map_to_100000(userns_rootfs):
    def edit(config):
        config["root"]["path"] = userns_rootfs
        config["linux"]["namespaces"].append({"type": "user"})
        for key in ("uidMappings", "gidMappings"):
            config["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    return edit


@needs_userns
def test_user_namespace_ids_inside(oci, make_bundle, map_to_100000):
    bundle = make_bundle(["/bin/sh", "-c", "/probe ids; /probe caps; echo uid_map=$(cat "
                          "/proc/self/uid_map); echo gid_map=$(cat /proc/self/gid_map)"],
                         map_to_100000)
    out = kv(run(oci, bundle, "userns"))
    assert (out["uid"], out["gid"]) == ("0", "0")
    assert out["uid_map"].split() == ["0", "100000", "65536"]
    assert out["gid_map"].split() == ["0", "100000", "65536"]
    assert int(out["CapEff"], 16) == DEFAULT_CAPS


@needs_userns
def test_user_namespace_host_view_and_exec(detached, oci, map_to_100000):
    cid, pid = detached(map_to_100000)
    status = proc_status(pid)
    assert status["Uid"].split()[0] == "100000"
    assert status["Gid"].split()[0] == "100000"
    assert os.readlink("/proc/%d/ns/user" % pid) != os.readlink("/proc/self/ns/user")
    out = kv(oci("exec", cid, "/bin/sh", "-c", "/probe ids; echo map=$(cat /proc/self/uid_map)")
             .stdout)
    assert out["uid"] == "0"
    assert out["map"].split() == ["0", "100000", "65536"]


# -- sysctl --------------------------------------------------------------------------------------

def test_sysctl_in_the_container_network_namespace_only(oci, make_bundle):
    host = read("/proc/sys/net/ipv4/ip_forward")
    wanted = "0" if host == "1" else "1"

    def edit(config):
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": wanted}
    out = run(oci, make_bundle(["/probe", "cat", "/proc/sys/net/ipv4/ip_forward"], edit),
              "sysctl")
    assert out.strip() == wanted
    assert read("/proc/sys/net/ipv4/ip_forward") == host


@pytest.mark.parametrize("key", ["net/../vm/swappiness",
                                 "net.ipv4.conf.all/../../../vm/swappiness"])
def test_sysctl_name_cannot_climb_out_of_its_namespace(oci, make_bundle, key):
    """A namespaced prefix with ".." names a host-wide sysctl. The value is the host's current
    one, so a runtime that wrongly accepts it changes nothing."""
    host = read("/proc/sys/vm/swappiness")

    def edit(config):
        config["linux"]["sysctl"] = {key: host}
    proc = oci("run", "--bundle", make_bundle(["/probe", "true"], edit), unique("climb"),
               check=False)
    assert proc.returncode != 0, "sysctl %r reached the host's vm.swappiness" % key
    assert b"Traceback" not in proc.stderr
    assert read("/proc/sys/vm/swappiness") == host


def test_network_sysctl_in_the_host_network_namespace_is_refused(oci, make_bundle):
    """Joining a network namespace by path is no isolation when the path is the host's.
    The value is the host's current one, so a runtime that wrongly accepts it changes
    nothing."""
    host = read("/proc/sys/net/ipv4/ip_forward")

    def edit(config):
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": host}
    bundle = make_bundle(["/probe", "true"], edit, network="/proc/%d/ns/net" % os.getpid())
    proc = oci("run", "--bundle", bundle, unique("hostnet"), check=False)
    assert proc.returncode != 0, "a net.* sysctl was written in the host's network namespace"
    assert b"sysctl" in proc.stderr and b"host" in proc.stderr
    assert read("/proc/sys/net/ipv4/ip_forward") == host
