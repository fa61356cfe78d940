"""edgert-oci against the real kernel: device nodes and the device cgroup, netDevices, sysctl.

Device checks run the probe inside the container (stat, mknod, open). The container's /dev is a
tmpfs of its own, so nodes the container makes go there, never into the shared rootfs.
Network tests create their host interfaces themselves (names starting "edgt") and delete them
in finally blocks; the containers get network namespaces of their own.
"""

import os
import shutil
import subprocess

import pytest

from edgert.cgroup import fs
from edgert.cgroup.layout import resolve_all

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for containers")


# -- helpers -------------------------------------------------------------------------------------

def unique(name):
    return "%s-%d" % (name, os.getpid())


def cgroup_dirs(cid):
    lay = fs.host_layout()
    return fs.Cgroup(lay, resolve_all(lay, None, cid)).dirs


def read(path):
    with open(path) as f:
        return f.read().strip()


def sections(stdout):
    """Output of a script that prints `== NAME` before each probe call -> {NAME: {key: value}}."""
    out, current = {}, None
    for line in stdout.decode(errors="replace").splitlines():
        if line.startswith("== "):
            current = out.setdefault(line[3:], {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    return out


def probe_script(*steps):
    """sh -c running `/probe ARGS` per step, each headed by `== NAME` (steps: (NAME, ARGS))."""
    lines = ["echo '== %s'; /probe %s" % (name, args) for name, args in steps]
    return ["/bin/sh", "-c", "; ".join(lines) + "; true"]


def devices_edit(listed=(), rules=()):
    def edit(config):
        config["linux"].setdefault("devices", []).extend(listed)
        config["linux"]["resources"]["devices"].extend(rules)
    return edit


def host_char_device(path):
    """(major, minor) of a character device the host has, or skip the test."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pytest.skip("the host has no %s" % path)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def assert_nothing_left(oci, cid):
    left = sorted(d for d in set(cgroup_dirs(cid).values()) if os.path.isdir(d))
    assert left == [], "cgroup directories left behind"
    assert oci("state", cid, check=False).returncode != 0
    assert not os.path.exists(os.path.join(oci.root, cid)), "state directory left behind"


def stderr_of(proc):
    return proc.stderr.decode(errors="replace")


# -- default devices -----------------------------------------------------------------------------

DEFAULT_NODES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                 "urandom": (1, 9), "tty": (5, 0)}


def test_default_devices_exist_with_numbers_and_modes(oci, make_bundle):
    steps = [(name, "stat /dev/" + name) for name in DEFAULT_NODES]
    steps += [("ptmx", "stat /dev/ptmx"), ("pts-ptmx", "stat /dev/pts/ptmx"),
              ("fd", "stat /dev/fd")]
    proc = oci("run", "--bundle", make_bundle(probe_script(*steps)), unique("dev-default"))
    found = sections(proc.stdout)
    for name, (major, minor) in DEFAULT_NODES.items():
        node = found[name]
        assert (node["type"], int(node["major"]), int(node["minor"])) == ("chr", major, minor), \
            (name, node)
        assert (node["mode"], node["uid"], node["gid"]) == ("0666", "0", "0"), (name, node)
    assert found["ptmx"]["type"] == "lnk"
    assert (found["pts-ptmx"]["type"], found["pts-ptmx"]["major"], found["pts-ptmx"]["minor"],
            found["pts-ptmx"]["mode"]) == ("chr", "5", "2", "0666")
    assert found["fd"]["type"] == "lnk"


def test_default_devices_are_usable(oci, make_bundle):
    steps = [("null", "open /dev/null rw"), ("zero", "open /dev/zero r"),
             ("full", "open /dev/full w"), ("random", "open /dev/random r"),
             ("urandom", "open /dev/urandom r"), ("ptmx", "open /dev/ptmx rw")]
    proc = oci("run", "--bundle", make_bundle(probe_script(*steps)), unique("dev-use"))
    found = sections(proc.stdout)
    assert {name: found[name].get("open") for name, _ in steps} == \
        {name: "ok" for name, _ in steps}


def test_device_cgroup_denies_all_but_the_defaults(oci, make_bundle, tmp_path):
    cid = unique("dev-cgroup")
    lay = fs.host_layout()
    if "devices" not in lay.v1:
        pytest.skip("no v1 devices controller (cgroup v2 enforces with eBPF: nothing to read)")
    log = tmp_path / "log"
    with open(log, "wb") as out:
        subprocess.run([oci.binary, "--root", oci.root, "run", "--detach", "--bundle",
                        make_bundle(["/probe", "sleep", "30"]), cid],
                       stdout=out, stderr=subprocess.STDOUT, timeout=60, check=True)
    allowed = read(cgroup_dirs(cid)["devices"] + "/devices.list").splitlines()
    assert "a *:* rwm" not in allowed
    for major, minor in DEFAULT_NODES.values():
        assert "c %d:%d rwm" % (major, minor) in allowed, allowed
    assert "c 136:* rwm" in allowed and "c 5:2 rwm" in allowed
    oci("delete", "--force", cid)


# -- linux.devices -------------------------------------------------------------------------------

def test_listed_devices_are_created_and_usable(oci, make_bundle):
    fuse = host_char_device("/dev/fuse")
    tun = host_char_device("/dev/net/tun")
    listed = [
        {"path": "/dev/fuse", "type": "c", "major": fuse[0], "minor": fuse[1],
         "fileMode": 0o666, "uid": 0, "gid": 0},
        {"path": "/dev/net/tun", "type": "c", "major": tun[0], "minor": tun[1],
         "fileMode": 0o640, "uid": 1000, "gid": 1001},
    ]
    steps = [("fuse", "stat /dev/fuse"), ("fuse-open", "open /dev/fuse rw"),
             ("tun", "stat /dev/net/tun"), ("tun-open", "open /dev/net/tun rw")]
    proc = oci("run", "--bundle", make_bundle(probe_script(*steps),
                                              edit=devices_edit(listed)), unique("dev-listed"))
    found = sections(proc.stdout)
    assert (found["fuse"]["type"], int(found["fuse"]["major"]), int(found["fuse"]["minor"]),
            found["fuse"]["mode"]) == ("chr", fuse[0], fuse[1], "0666")
    assert found["fuse-open"]["open"] == "ok"
    assert (found["tun"]["type"], int(found["tun"]["major"]), int(found["tun"]["minor"]),
            found["tun"]["mode"], found["tun"]["uid"], found["tun"]["gid"]) \
        == ("chr", tun[0], tun[1], "0640", "1000", "1001")
    assert found["tun-open"]["open"] == "ok"


def test_listed_fifo_is_created(oci, make_bundle):
    listed = [{"path": "/dev/edgt-fifo", "type": "p", "fileMode": 0o620, "uid": 5, "gid": 6}]
    proc = oci("run", "--bundle", make_bundle(["/probe", "stat", "/dev/edgt-fifo"],
                                              edit=devices_edit(listed)), unique("dev-fifo"))
    found = sections(b"== fifo\n" + proc.stdout)["fifo"]
    assert (found["type"], found["mode"], found["uid"], found["gid"]) == ("fifo", "0620", "5", "6")


def test_unlisted_device_is_denied_even_when_the_container_makes_the_node(oci, make_bundle):
    fuse = host_char_device("/dev/fuse")
    steps = [("mknod", "mknod /dev/x c %d %d" % fuse), ("open", "open /dev/x r"),
             ("control-mknod", "mknod /dev/z c 1 3"), ("control-open", "open /dev/z rw")]
    proc = oci("run", "--bundle", make_bundle(probe_script(*steps)), unique("dev-mknod"))
    found = sections(proc.stdout)
    # CAP_MKNOD is in the default set, so only the device cgroup can say no
    assert found["control-mknod"]["mknod"] == "ok"
    assert found["control-open"]["open"] == "ok"
    assert found["mknod"]["mknod"] == "EPERM"
    assert found["open"]["open"] == "ENOENT"


def test_wildcard_allow_rule(oci, make_bundle):
    fuse = host_char_device("/dev/fuse")
    rules = [{"allow": True, "type": "c", "major": fuse[0], "access": "rwm"}]
    steps = [("mknod", "mknod /dev/x c %d %d" % fuse), ("open", "open /dev/x rw"),
             ("other", "mknod /dev/y c 4 1")]
    proc = oci("run", "--bundle", make_bundle(probe_script(*steps), edit=devices_edit(rules=rules)),
               unique("dev-wild"))
    found = sections(proc.stdout)
    assert found["mknod"]["mknod"] == "ok"
    assert found["open"]["open"] == "ok"
    assert found["other"]["mknod"] == "EPERM"


def test_allow_rule_grants_only_its_access(oci, make_bundle):
    fuse = host_char_device("/dev/fuse")
    rules = [{"allow": True, "type": "c", "major": fuse[0], "minor": fuse[1], "access": "rm"}]
    steps = [("mknod", "mknod /dev/x c %d %d" % fuse), ("read", "open /dev/x r"),
             ("write", "open /dev/x w")]
    proc = oci("run", "--bundle", make_bundle(probe_script(*steps), edit=devices_edit(rules=rules)),
               unique("dev-access"))
    found = sections(proc.stdout)
    assert (found["mknod"]["mknod"], found["read"]["open"], found["write"]["open"]) \
        == ("ok", "ok", "EPERM")


def test_deny_rules_do_not_take_away_listed_or_default_devices(oci, make_bundle):
    fuse = host_char_device("/dev/fuse")
    listed = [{"path": "/dev/fuse", "type": "c", "major": fuse[0], "minor": fuse[1],
               "fileMode": 0o666}]
    rules = [{"allow": False, "type": "c", "major": fuse[0], "minor": fuse[1], "access": "rwm"},
             {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]
    steps = [("fuse", "open /dev/fuse rw"), ("null", "open /dev/null rw")]
    proc = oci("run", "--bundle", make_bundle(probe_script(*steps),
                                              edit=devices_edit(listed, rules)),
               unique("dev-deny"))
    found = sections(proc.stdout)
    assert (found["fuse"]["open"], found["null"]["open"]) == ("ok", "ok")


def test_invalid_device_rule_is_a_clear_error(oci, make_bundle):
    cid = unique("dev-bad")
    rules = [{"allow": True, "type": "c", "major": 10, "access": "rwx"}]
    proc = oci("run", "--bundle", make_bundle(["/probe", "true"], edit=devices_edit(rules=rules)),
               cid, check=False)
    assert proc.returncode != 0
    assert "linux.resources.devices[1].access" in stderr_of(proc), stderr_of(proc)
    assert_nothing_left(oci, cid)


# -- linux.netDevices ----------------------------------------------------------------------------

def ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          check=check, timeout=10)


def make_host_interface(name):
    """A virtual interface in the host netns: dummy if the kernel has it, else veth or ifb
    (ifb last: loading its module makes ifb0 and ifb1 appear as a side effect).
    Returns the kind; the caller deletes ``name``."""
    for kind, extra in (("dummy", []), ("veth", ["peer", "name", name + "p"]), ("ifb", [])):
        if ip("link", "add", name, "type", kind, *extra, check=False).returncode == 0:
            return kind
    pytest.skip("the kernel offers no dummy, ifb or veth interfaces")


@pytest.fixture
def host_interface():
    """(name, kind, address): a virtual interface with an address, removed after the test."""
    name = "edgt%d" % (os.getpid() % 100000)
    address = "10.254.%d.1/24" % (os.getpid() % 250)
    kind = make_host_interface(name)
    try:
        ip("addr", "add", address, "dev", name)
        ip("link", "set", name, "up")
        yield name, kind, address
    finally:
        ip("link", "del", name, check=False)


def net_devices(mapping):
    def edit(config):
        config["linux"]["netDevices"] = mapping
    return edit


def host_has(name):
    return ip("link", "show", "dev", name, check=False).returncode == 0


def test_net_device_moves_in_renamed_and_back_after_delete(oci, make_bundle, host_interface):
    name, kind, address = host_interface
    bundle = make_bundle(["ip", "addr", "show"],
                         edit=net_devices({name: {"name": "eth9"}}))
    proc = oci("run", "--bundle", bundle, unique("netdev"))
    shown = proc.stdout.decode()
    eth9 = shown[shown.index(": eth9"):]
    assert "inet " + address in eth9, shown
    assert ",UP" in eth9.splitlines()[0], shown
    assert name not in shown
    # the container has exited and been deleted: a virtual device must have come back
    assert host_has(name), "%s (%s) did not come back to the host" % (name, kind)
    assert "inet " + address in ip("-o", "addr", "show", "dev", name).stdout.decode()
    assert not host_has("eth9")


def test_net_device_leaves_the_host_while_the_container_runs(oci, make_bundle, host_interface,
                                                              tmp_path):
    name, _, address = host_interface
    cid = unique("netdev-bg")
    bundle = make_bundle(["/probe", "sleep", "30"], edit=net_devices({name: {}}))
    with open(tmp_path / "log", "wb") as out:
        subprocess.run([oci.binary, "--root", oci.root, "run", "--detach", "--bundle", bundle,
                        cid], stdout=out, stderr=subprocess.STDOUT, timeout=60, check=True)
    assert not host_has(name)
    pid = oci.state(cid)["pid"]
    inside = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % pid, "ip", "-o", "addr",
                             "show", "dev", name], stdout=subprocess.PIPE, timeout=10)
    assert "inet " + address in inside.stdout.decode()
    oci("delete", "--force", cid)
    assert host_has(name)
    assert "inet " + address in ip("-o", "addr", "show", "dev", name).stdout.decode()


def test_missing_net_device_fails_and_gives_back_the_ones_moved(oci, make_bundle,
                                                                host_interface):
    name, _, address = host_interface
    cid = unique("netdev-missing")
    bundle = make_bundle(["/probe", "true"],
                         edit=net_devices({name: {"name": "eth9"}, "edgt-absent0": {}}))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    assert proc.returncode != 0
    assert "edgt-absent0" in stderr_of(proc), stderr_of(proc)
    assert host_has(name), "a device moved before the failure is lost"
    assert "inet " + address in ip("-o", "addr", "show", "dev", name).stdout.decode()
    assert_nothing_left(oci, cid)


def test_failed_create_gives_the_net_device_back(oci, make_bundle, host_interface):
    name, _, address = host_interface
    cid = unique("netdev-fail")
    bundle = make_bundle(["/no/such/program"], edit=net_devices({name: {"name": "eth9"}}))
    proc = oci("run", "--bundle", bundle, cid, check=False)
    assert proc.returncode != 0
    assert "/no/such/program" in stderr_of(proc), stderr_of(proc)
    assert host_has(name), "the device was lost with the failed container's netns"
    assert "inet " + address in ip("-o", "addr", "show", "dev", name).stdout.decode()
    assert_nothing_left(oci, cid)


def test_vcan_survives_delete(oci, make_bundle):
    name = "edgtcan%d" % (os.getpid() % 10000)
    if ip("link", "add", name, "type", "vcan", check=False).returncode != 0:
        if shutil.which("modprobe"):
            subprocess.run(["modprobe", "vcan"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        if ip("link", "add", name, "type", "vcan", check=False).returncode != 0:
            pytest.skip("the kernel has no vcan (module missing or not loadable)")
    try:
        bundle = make_bundle(["ip", "link", "show", "can0"],
                             edit=net_devices({name: {"name": "can0"}}))
        proc = oci("run", "--bundle", bundle, unique("vcan"))
        assert b"can0" in proc.stdout
        assert host_has(name), "the vcan device died with the container's netns"
    finally:
        ip("link", "del", name, check=False)


# -- sysctl and namespaces -----------------------------------------------------------------------

def test_network_sysctl_in_a_network_namespace(oci, make_bundle):
    key = "/proc/sys/net/ipv4/ip_forward"
    host_value = read(key)
    wanted = "0" if host_value == "1" else "1"

    def edit(config):
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": wanted}
    proc = oci("run", "--bundle", make_bundle(["/bin/cat", key], edit=edit), unique("sysctl"))
    assert proc.stdout.decode().strip() == wanted
    assert read(key) == host_value


def test_a_new_network_namespace_has_loopback_up(oci, make_bundle):
    # as runc and crun do: 127.0.0.1 works in a fresh network namespace
    proc = oci("run", "--bundle", make_bundle(["/bin/cat", "/sys/class/net/lo/flags"]),
               unique("lo"))
    assert int(proc.stdout.decode().strip(), 16) & 0x1


def test_network_sysctl_without_a_network_namespace_is_refused(oci, make_bundle):
    cid = unique("sysctl-host")

    def edit(config):
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    proc = oci("run", "--bundle", make_bundle(["/probe", "true"], edit=edit, network="host"),
               cid, check=False)
    assert proc.returncode != 0
    message = stderr_of(proc)
    assert 'linux.sysctl["net.ipv4.ip_forward"]' in message and "network" in message, message
    assert_nothing_left(oci, cid)


def test_host_wide_sysctl_is_refused(oci, make_bundle):
    cid = unique("sysctl-vm")

    def edit(config):
        config["linux"]["sysctl"] = {"vm.swappiness": "10"}
    proc = oci("run", "--bundle", make_bundle(["/probe", "true"], edit=edit), cid, check=False)
    assert proc.returncode != 0
    assert "vm.swappiness" in stderr_of(proc) and "namespace" in stderr_of(proc)
    assert_nothing_left(oci, cid)


def test_hostname_needs_a_uts_namespace(oci, make_bundle):
    cid = unique("no-uts")

    def edit(config):
        config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"]
                                         if ns["type"] != "uts"]
    proc = oci("run", "--bundle", make_bundle(["/probe", "hostname"], edit=edit), cid,
               check=False)
    assert proc.returncode != 0
    message = stderr_of(proc)
    assert "hostname" in message and "uts" in message.lower(), message
    assert os.uname().nodename != "edgert"
    assert_nothing_left(oci, cid)
