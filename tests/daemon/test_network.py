"""Container networking through a real edgertd (issue 6): LAN DHCP, NAT, WAN modes, teardown.

Network namespaces play the router. "rt" holds the LAN bridge (br-lan, no address), the
client network br-wan (10.77.0.1/24, forwarding on) and an uplink veth to "wh", a WAN host
(198.51.100.1 in rt, 198.51.100.2 in wh) that has no route back to the 10.77/10.190
networks. edgertd runs inside rt (`nsenter --net`, so its mounts stay in ours) with
wan_masquerade on, so a LAN client behind a container is NATed twice: by the container
(LAN -> WAN) and by the router (its client network -> uplink). LAN clients are namespaces
with a veth into br-lan running busybox udhcpc. Every namespace is deleted afterwards, pass
or fail; no traffic leaves them.
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

from edgert.net.links import host_link_name
from helpers.daemonevents import events
from helpers.services import service_input

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(not shutil.which("ip"), reason="needs ip (iproute2)"),
    pytest.mark.skipif(not shutil.which("nsenter"), reason="needs nsenter (util-linux)"),
    pytest.mark.skipif(not shutil.which("busybox"), reason="needs busybox (udhcpc)"),
]

PY = "/usr/bin/python3"
WAN_HOST, UPLINK = "198.51.100.2", "198.51.100.1"
RANGE = ("10.77.0.100", "10.77.0.199")
_seq = itertools.count()

SERVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], 8000))
    s.listen(4)
    print("ready", flush=True)
    while True:
        c, peer = s.accept()
        c.sendall(peer[0].encode())
        c.close()
""")

CONNECT = ("import socket, sys\ns = socket.create_connection((sys.argv[1], 8000), "
           "timeout=float(sys.argv[2]))\nprint(s.recv(100).decode())")

# udhcpc's script: configure the lease (inside the client's namespace) and record it
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        [ -z "$router" ] || ip route replace default via "${router%% *}" dev "$interface"
        env > %s ;;
esac
exit 0
"""

# edgertd's launcher, plus a record of any import of pyroute2 by the daemon process itself
# (its forked children may import it: that is where pyroute2 work belongs)
GUARDED_LAUNCHER = """#!%(py)s -I
import sys, os
sys.path.insert(0, %(repo)r)
_daemon = os.getpid()
class _Pyroute2Guard:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pyroute2" and os.getpid() == _daemon:
            import traceback
            with open(%(mark)r, "a") as f:
                f.write("".join(traceback.format_stack()))
        return None
sys.meta_path.insert(0, _Pyroute2Guard())
from edgert.daemon.main import main
code = main(sys.argv[1:])
sys.stdout.flush()
os._exit(code or 0)
"""


def sh(*argv, check=True, timeout=30):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("%s exited %d: %s%s" % (" ".join(argv), proc.returncode,
                                                      proc.stdout, proc.stderr))
    return proc


class World:
    """The router (edgertd's namespace), the WAN host and LAN clients; ``close`` deletes
    them all and stops what ran in them."""

    def __init__(self):
        tag = "%d-%d" % (os.getpid(), next(_seq))
        self.tag = tag
        self.rt, self.wh = "edg-rt-" + tag, "edg-wh-" + tag
        self.namespaces, self.procs, self.clients = [], [], 0
        try:
            for name in (self.rt, self.wh):
                sh("ip", "netns", "add", name)
                self.namespaces.append(name)
                sh("ip", "-n", name, "link", "set", "lo", "up")
            sh("ip", "-n", self.rt, "link", "add", "br-lan", "type", "bridge")
            sh("ip", "-n", self.rt, "link", "add", "br-wan", "type", "bridge")
            sh("ip", "-n", self.rt, "addr", "add", "10.77.0.1/24", "dev", "br-wan")
            for bridge in ("br-lan", "br-wan"):
                sh("ip", "-n", self.rt, "link", "set", bridge, "up")
            sh("ip", "netns", "exec", self.rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            sh("ip", "-n", self.rt, "link", "add", "up0", "type", "veth", "peer", "name",
               "up1", "netns", self.wh)
            sh("ip", "-n", self.rt, "addr", "add", UPLINK + "/24", "dev", "up0")
            sh("ip", "-n", self.rt, "link", "set", "up0", "up")
            sh("ip", "-n", self.wh, "addr", "add", WAN_HOST + "/24", "dev", "up1")
            sh("ip", "-n", self.wh, "link", "set", "up1", "up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def path(ns):
        return "/run/netns/" + ns

    def client(self, bridge="br-lan", host_end=None):
        """A LAN client namespace with interface c0, a veth whose other end is a port of
        ``bridge`` in rt (or, with ``host_end``, a plain rt interface of that name: the
        parent of a macvlan)."""
        self.clients += 1
        name = "edg-lc%d-%s" % (self.clients, self.tag)
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        peer = host_end or "lcp%d" % self.clients
        sh("ip", "-n", self.rt, "link", "add", peer, "type", "veth", "peer", "name", "c0",
           "netns", name)
        if host_end is None:
            sh("ip", "-n", self.rt, "link", "set", peer, "master", bridge)
        sh("ip", "-n", self.rt, "link", "set", peer, "up")
        sh("ip", "-n", name, "link", "set", "c0", "up")
        return name

    def udhcpc(self, ns, tmp_path, tries=10):
        """Runs busybox udhcpc in ``ns`` until it has a lease (configured on c0, default
        route set): the lease's variables, or None when no server answered."""
        record = tmp_path / ("lease-%s" % ns)
        script = tmp_path / ("udhcpc-%s.sh" % ns)
        script.write_text(UDHCPC_SCRIPT % record)
        script.chmod(0o755)
        proc = sh("ip", "netns", "exec", ns, shutil.which("busybox"), "udhcpc", "-f", "-q",
                  "-n", "-t", str(tries), "-T", "1", "-i", "c0", "-s", str(script),
                  check=False, timeout=tries * 4 + 10)
        if proc.returncode != 0:
            return None
        env = {}
        for line in record.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        return env

    def serve(self, ns, address):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, PY, "-c", SERVER, address],
                                stdout=subprocess.PIPE)
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == b"ready"

    def connect(self, ns, address, timeout=3):
        """What the server at ``address`` saw as our address, or None if unreachable."""
        proc = sh("ip", "netns", "exec", ns, PY, "-c", CONNECT, address, str(timeout),
                  check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def start(self, argv, log):
        proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def links(self):
        """Names of the interfaces in rt."""
        out = sh("ip", "-n", self.rt, "-o", "link", "show").stdout
        return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}

    def close(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for name in self.namespaces:
            sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def world(native_built):
    w = World()
    try:
        yield w
    finally:
        w.close()
    left = sh("ip", "netns", "list").stdout
    assert not any(name in left for name in w.namespaces), left


@pytest.fixture
def netdaemon(world, daemon, tmp_path):
    """The daemon fixture's edgertd, run inside the router namespace (set up after ``world``
    so that its teardown, which removes every instance, runs before the namespaces go)."""
    daemon.prefix = ["nsenter", "--net=" + world.path(world.rt)]
    daemon.pyroute2_mark = str(tmp_path / "pyroute2-imported-by-edgertd")
    launcher = tmp_path / "edgertd-guarded"
    launcher.write_text(GUARDED_LAUNCHER % {"py": PY, "repo": os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), "mark": daemon.pyroute2_mark})
    launcher.chmod(0o755)
    daemon.daemon_bin = str(launcher)
    with open(daemon.config, "w") as f:
        json.dump({"metrics_address": "127.0.0.1:0", "wan_masquerade": True,
                   "wan_address_range": "%s-%s" % RANGE}, f)
    yield daemon
    # a removed instance's teardown is a job the daemon queues: it must finish before the
    # daemon fixture's SIGTERM, which would leave it to the next daemon's start
    if daemon.proc is not None and daemon.proc.poll() is None:
        for row in daemon.call("instance.list"):
            daemon.call("instance.remove", id=row["id"], purge_volumes=True)
        daemon.wait_for(lambda: not netns_mounts(daemon), "every pin unmounted after "
                        "`instance rm`", timeout=15)


def gw_service(image, name="gw", **network):
    config = {"wan_configure_network": "allocated", "wan_interface": {"host": "br-wan"},
              "lan_configure_network": "dhcp", "lan_interfaces": [{"host": "br-lan"}],
              "access_provided_subnet": "10.190.0.1/16",
              "dhcp_range_template": "10.190.0.1/24", "masquerade": True}
    config.update(network)
    return service_input(name, image, network_config=config)


def running(daemon, iid):
    """Waits until ``iid`` runs with version 1 committed (a stop is refused while a rollout
    watches the new container)."""
    daemon.wait_for(lambda: daemon.inspect(iid)["good_version"] == 1, iid + " committed")
    daemon.wait_for(lambda: daemon.inspect(iid)["state"] == "running", iid + " running")
    return daemon.inspect(iid)


def pin_of(daemon, iid):
    return os.path.join(daemon.run_dir, "netns", iid)


def netns_mounts(daemon):
    prefix = os.path.join(daemon.run_dir, "netns") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return sum(1 for line in f if line.split()[4] == path)


def addresses(pin):
    """{ifname: ["a.b.c.d/p", ...]} inside the namespace pinned at ``pin``."""
    proc = sh("nsenter", "--net=" + pin, "ip", "-4", "-o", "addr", "show", check=False)
    found = {}
    if proc.returncode != 0:  # not pinned (yet, or any more)
        return found
    out = proc.stdout
    for line in out.splitlines():
        fields = line.split()
        found.setdefault(fields[1], []).append(fields[3])
    return found


def host_nat_tables(world):
    """The router's nftables tables that edgertd made (the host masquerade)."""
    out = sh("ip", "netns", "exec", world.rt, "nft", "list", "tables").stdout
    return [line.split()[-1] for line in out.splitlines() if "edgert" in line]


def host_links_of(iid):
    return {host_link_name(iid, "lan", 0), host_link_name(iid, "wan", 0)}


def torn_down(daemon, world, iid, timeout=10):
    """Waits for the teardown that follows a container's end (a queued job of the daemon,
    which may finish just after `edgert stop` answered)."""
    daemon.wait_for(lambda: not host_links_of(iid) & world.links() and mounted(
        pin_of(daemon, iid)) == 0, "%s's host links removed and its pin unmounted" % iid,
        timeout=timeout)


def in_range(address, first, last):
    def number(a):
        return tuple(int(x) for x in a.split("."))
    return number(first) <= number(address) <= number(last)


def assert_pyroute2_never_imported(daemon):
    if os.path.exists(daemon.pyroute2_mark):
        with open(daemon.pyroute2_mark) as f:
            raise AssertionError("edgertd imported pyroute2 in its own process:\n" + f.read())


def dead(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def start_failure(daemon, iid):
    event = events(daemon, lambda e: e.get("instance") == iid and e.get("kind") == "start-failed")
    assert event, "no start-failed event for %s\n--- daemon log:\n%s" % (iid, daemon.log())
    return event["message"]


# -- the traffic test -------------------------------------------------------------------------

def test_lan_client_reaches_the_wan_through_the_containers_nat(world, netdaemon, images,
                                                                tmp_path):
    d = netdaemon.start()
    d.import_service(gw_service(images["good"]))
    d.cli("instance", "add", "gw", "--id", "n1")
    running(d, "n1")
    pin = pin_of(d, "n1")
    d.wait_for(lambda: "lan0" in addresses(pin) and "wan0" in addresses(pin), "addresses")
    inside = addresses(pin)
    assert inside["lan0"] == ["10.190.0.1/16"], inside
    wan_address, wan_prefix = inside["wan0"][0].split("/")
    assert wan_prefix == "24" and in_range(wan_address, *RANGE), inside
    assert host_links_of("n1") <= world.links()
    assert mounted(pin) == 1

    client = world.client()
    lease = world.udhcpc(client, tmp_path)
    assert lease, "no DHCP lease on the container's LAN\n--- daemon log:\n" + d.log()
    assert in_range(lease["ip"], "10.190.0.2", "10.190.0.254"), lease
    assert lease["router"].split() == ["10.190.0.1"], lease
    assert lease["mask"] in ("16", "255.255.0.0"), lease
    assert lease["serverid"] == "10.190.0.1", lease

    # out: NATed by the container, then by the router's wan_masquerade
    world.serve(world.wh, WAN_HOST)
    assert world.connect(client, WAN_HOST) == UPLINK, d.log()

    # in: even with routes all the way, the WAN side cannot open a connection to the LAN
    for network in ("10.190.0.0/16", "10.77.0.0/24"):
        sh("ip", "-n", world.wh, "route", "add", network, "via", UPLINK)
    sh("ip", "-n", world.rt, "route", "add", "10.190.0.0/16", "via", wan_address)
    sh("ip", "netns", "exec", world.wh, "busybox", "ping", "-c", "1", "-W", "2", wan_address)
    world.serve(client, lease["ip"])
    assert world.connect(world.wh, lease["ip"], timeout=2) is None
    assert world.connect(client, WAN_HOST) == UPLINK  # still fine the other way

    info = d.inspect("n1")
    print("inspect network:", json.dumps(info.get("network")))
    assert info.get("network"), "inspect shows no network object: %r" % info

    # the traffic shows in the runtime's per-interface counters
    body = d.cli("metrics").stdout.decode()
    counters = {}
    for line in body.splitlines():
        if line.startswith("edgert_container_network_") and 'instance="n1"' in line:
            name, value = line.rsplit(" ", 1)
            counters[name] = int(value)
    for interface in ("lan0", "wan0"):
        for family in ("receive_bytes", "transmit_bytes", "receive_packets",
                       "transmit_packets"):
            key = ('edgert_container_network_%s_total{instance="n1",service="gw",'
                   'interface="%s"}' % (family, interface))
            assert counters.get(key, 0) > 0, (key, body)
    assert not any('interface="lo"' in name for name in counters)
    stats = d.json("stats", "n1")[0]
    assert stats["net"]["lan0"]["rx_bytes"] > 0 and stats["net"]["wan0"]["tx_bytes"] > 0, stats
    table = d.cli("stats", "n1").stdout.decode().splitlines()
    assert "NET RX/TX" in table[0], table
    assert "n1" in table[1] and "/" in table[1], table
    assert_pyroute2_never_imported(d)


def test_second_instance_gets_the_next_subnet_and_stop_removes_its_links(world, netdaemon,
                                                                          images):
    d = netdaemon.start()
    d.import_service(gw_service(images["good"]))
    for iid in ("s1", "s2"):
        d.cli("instance", "add", "gw", "--id", iid)
        running(d, iid)
    for iid in ("s1", "s2"):
        d.wait_for(lambda: "lan0" in addresses(pin_of(d, iid)), "lan0 of " + iid)
    one, two = addresses(pin_of(d, "s1")), addresses(pin_of(d, "s2"))
    assert one["lan0"] == ["10.190.0.1/16"] and two["lan0"] == ["10.190.1.1/16"], (one, two)
    assert one["wan0"] != two["wan0"], (one, two)
    network = json.dumps(d.json("inspect", "s2").get("network"))
    assert "10.190.1.0/24" in network, network
    assert host_links_of("s1") | host_links_of("s2") <= world.links()

    d.cli("stop", "s2")
    assert d.inspect("s2")["state"] == "stopped"
    # stop answers once the network is down too
    assert not host_links_of("s2") & world.links() and not os.path.exists(pin_of(d, "s2"))
    torn_down(d, world, "s2")
    assert host_links_of("s1") <= world.links()  # the other instance keeps its network
    assert host_nat_tables(world), "the host masquerade went while s1 still uses it"
    # a start brings it back, with the same subnet
    d.cli("start", "s2")
    running(d, "s2")
    d.wait_for(lambda: "lan0" in addresses(pin_of(d, "s2")), "lan0 of s2 again")
    assert addresses(pin_of(d, "s2"))["lan0"] == ["10.190.1.1/16"]
    # the host's masquerade of br-wan goes with the last instance on it
    for iid in ("s1", "s2"):
        d.cli("stop", iid)
        torn_down(d, world, iid)
    assert not host_nat_tables(world)
    assert_pyroute2_never_imported(d)


def test_container_restarted_by_its_policy_gets_its_network_back(world, netdaemon, images,
                                                                  tmp_path):
    d = netdaemon.start()
    d.import_service(gw_service(images["good"]))
    d.cli("instance", "add", "gw", "--id", "r1")
    pid = running(d, "r1")["pid"]
    pin = pin_of(d, "r1")
    d.wait_for(lambda: "lan0" in addresses(pin), "lan0")
    before = addresses(pin)
    os.kill(pid, signal.SIGKILL)
    d.wait_for(lambda: d.inspect("r1")["pid"] not in (None, pid), "restarted by the policy")
    d.wait_for(lambda: "lan0" in addresses(pin) and "wan0" in addresses(pin), "addresses back")
    assert addresses(pin) == before  # the same WAN address again
    assert mounted(pin) == 1 and host_links_of("r1") <= world.links()
    client = world.client()
    lease = world.udhcpc(client, tmp_path)
    assert lease and lease["router"] == "10.190.0.1", d.log()
    world.serve(world.wh, WAN_HOST)
    assert world.connect(client, WAN_HOST) == UPLINK, d.log()


# -- crashes and daemon restarts --------------------------------------------------------------

def test_restarted_daemon_removes_what_a_dead_container_left(world, netdaemon, images):
    d = netdaemon.start()
    doc = gw_service(images["good"])
    doc["restart_policy"] = {"mode": "never"}
    d.import_service(doc)
    d.cli("instance", "add", "gw", "--id", "k1")
    pid = running(d, "k1")["pid"]
    pin = pin_of(d, "k1")
    d.wait_for(lambda: host_links_of("k1") <= world.links(), "k1's links")
    d.kill(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    d.wait_for(lambda: dead(pid), "pid 1 gone")
    # the daemon died without tearing down: the pin keeps the namespace and its links alive
    assert mounted(pin) == 1 and host_links_of("k1") <= world.links()
    d.start()
    d.wait_for(lambda: not host_links_of("k1") & world.links(), "the links removed")
    d.wait_for(lambda: mounted(pin) == 0, "the pin unmounted")
    assert d.inspect("k1")["state"] != "running"


def test_restarted_daemon_keeps_the_host_masquerade_a_live_container_uses(world, netdaemon,
                                                                           images, tmp_path):
    """Two instances on br-wan: "a1" dies with the daemon (restart policy never), "b1" lives
    on. The restarted daemon tears a1's network down but must keep the host's masquerade of
    br-wan, which b1 still needs."""
    d = netdaemon.start()
    dying = gw_service(images["good"], name="gwa")
    dying["restart_policy"] = {"mode": "never"}
    d.import_service(dying)
    d.import_service(gw_service(images["good"], name="gwb"))
    d.cli("instance", "add", "gwa", "--id", "a1")
    pid = running(d, "a1")["pid"]
    d.cli("instance", "add", "gwb", "--id", "b1")
    running(d, "b1")
    d.wait_for(lambda: "lan0" in addresses(pin_of(d, "b1")), "b1's lan0")
    b1_subnet = addresses(pin_of(d, "b1"))["lan0"][0].split(".")[2]
    d.kill(signal.SIGKILL)
    os.kill(pid, signal.SIGKILL)
    d.wait_for(lambda: dead(pid), "a1's pid 1 gone")
    d.start()
    torn_down(d, world, "a1")
    assert host_nat_tables(world), "the host masquerade of br-wan went with a1's teardown"
    # b1's LAN still reaches the WAN host (b1's DHCP server: the other /24)
    client = world.client()
    lease = world.udhcpc(client, tmp_path)
    assert lease and lease["router"] == "10.190.%s.1" % b1_subnet, d.log()
    world.serve(world.wh, WAN_HOST)
    assert world.connect(client, WAN_HOST) == UPLINK, d.log()


def test_host_masquerade_stays_while_an_instance_on_the_bridge_comes_up(world, netdaemon,
                                                                         images, tmp_path):
    """b1 restarts (its bring-up is under way) while a1 stops: a1's teardown must not drop
    the host's masquerade of br-wan that b1 is bringing up again."""
    d = netdaemon.start()
    d.import_service(gw_service(images["good"]))
    for iid in ("a1", "b1"):
        d.cli("instance", "add", "gw", "--id", iid)
        running(d, iid)
    b1_pid = d.inspect("b1")["pid"]
    restart = subprocess.Popen([d.cli_bin, "--socket", d.socket, "restart", "b1"],
                               env=d.env, stdout=subprocess.DEVNULL)
    try:
        # b1's old container ended: its new network is being brought up; a1 stops meanwhile
        # (no grace)
        deadline = time.monotonic() + 15
        while d.inspect("b1")["pid"] == b1_pid and time.monotonic() < deadline:
            time.sleep(0.01)
        d.cli("stop", "a1", "-t", "0")
    finally:
        restart.wait(30)
    torn_down(d, world, "a1")
    d.wait_for(lambda: d.inspect("b1")["pid"] not in (None, b1_pid), "b1 restarted")
    d.wait_for(lambda: "lan0" in addresses(pin_of(d, "b1")), "b1's lan0")
    time.sleep(1)
    assert host_nat_tables(world), "the host masquerade went while b1 uses it"


def test_adopted_container_keeps_its_network_and_lan_dhcp(world, netdaemon, images, tmp_path):
    """A daemon restart (an edgert upgrade) leaves containers running: the new daemon keeps
    their links and serves DHCP on their LAN again."""
    d = netdaemon.start()
    d.import_service(gw_service(images["good"]))
    d.cli("instance", "add", "gw", "--id", "a1")
    pid = running(d, "a1")["pid"]
    pin = pin_of(d, "a1")
    d.wait_for(lambda: "lan0" in addresses(pin), "lan0")
    before = addresses(pin)
    d.kill(signal.SIGKILL)
    d.start()
    info = d.inspect("a1")
    assert info["pid"] == pid and info["state"] == "running"
    assert addresses(pin) == before and mounted(pin) == 1
    assert host_links_of("a1") <= world.links()
    client = world.client()
    lease = world.udhcpc(client, tmp_path)
    assert lease and lease["router"] == "10.190.0.1", d.log()
    world.serve(world.wh, WAN_HOST)
    assert world.connect(client, WAN_HOST) == UPLINK, d.log()


# -- errors ----------------------------------------------------------------------------------

def test_missing_host_bridge_fails_the_start_and_leaves_nothing(world, netdaemon, images):
    d = netdaemon.start()
    d.import_service(gw_service(images["good"], lan_interfaces=[{"host": "br-nope"}]))
    d.cli("instance", "add", "gw", "--id", "f1")
    message = start_failure(d, "f1")
    assert "br-nope" in message and "does not exist" in message, message
    # the WAN link (created first: br-wan exists) was removed with the rest
    for _ in range(10):
        assert not host_links_of("f1") & world.links(), world.links()
        time.sleep(0.2)
    assert not os.path.exists(pin_of(d, "f1"))
    assert not netns_mounts(d)
    # the host lacked a bridge: the version is not to blame, and once the bridge is there an
    # operator's start runs the waiting rollout step at once
    info = d.inspect("f1")
    assert info["failed_versions"] == [] and "br-nope" in info["rollout"]["text"]
    sh("ip", "-n", world.rt, "link", "add", "br-nope", "type", "bridge")
    sh("ip", "-n", world.rt, "link", "set", "br-nope", "up")
    d.cli("start", "f1")
    running(d, "f1")
    assert host_links_of("f1") <= world.links()


def test_wan_bridge_without_an_address_and_an_exhausted_range_fail_clearly(world, netdaemon,
                                                                          images):
    d = netdaemon
    with open(d.config, "w") as f:  # room for one WAN address only
        json.dump({"metrics_address": "127.0.0.1:0", "wan_masquerade": True,
                   "wan_address_range": "10.77.0.100-10.77.0.100"}, f)
    d.start()
    sh("ip", "-n", world.rt, "link", "add", "br-bare", "type", "bridge")
    sh("ip", "-n", world.rt, "link", "set", "br-bare", "up")
    d.import_service(gw_service(images["good"], name="bare",
                                wan_interface={"host": "br-bare"}))
    d.cli("instance", "add", "bare", "--id", "e1")
    message = start_failure(d, "e1")
    assert "br-bare" in message and "no IPv4 address" in message, message

    d.import_service(gw_service(images["good"]))
    d.cli("instance", "add", "gw", "--id", "e2")
    running(d, "e2")
    d.cli("instance", "add", "gw", "--id", "e3")
    message = start_failure(d, "e3")
    assert "10.77.0.100" in message and "taken" in message, message
    for iid in ("e1", "e3"):
        assert not host_links_of(iid) & world.links(), world.links()
        assert not os.path.exists(pin_of(d, iid))
    assert host_links_of("e2") <= world.links()


# -- other modes ------------------------------------------------------------------------------

def test_wan_dhcp_from_the_router_and_lan_allocated(world, netdaemon, images, tmp_path):
    """WAN "dhcp" against dnsmasq serving br-wan in the router: the container gets a lease
    and dnsmasq's DNS in /etc/resolv.conf. LAN "allocated": the address, no DHCP server."""
    dnsmasq = shutil.which("dnsmasq")
    if dnsmasq is None:
        pytest.skip("needs dnsmasq (Debian package dnsmasq-base)")
    world.start(["ip", "netns", "exec", world.rt, dnsmasq, "--no-daemon",
                 "--conf-file=/dev/null", "--user=root", "--interface=br-wan",
                 "--bind-interfaces", "--port=0", "--log-dhcp",
                 "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,2m",
                 "--dhcp-option=option:router,10.77.0.1",
                 "--dhcp-option=option:dns-server,10.77.0.53",
                 "--dhcp-leasefile=%s" % (tmp_path / "dnsmasq.leases"),
                 "--pid-file=%s" % (tmp_path / "dnsmasq.pid")], tmp_path / "dnsmasq.log")
    d = netdaemon.start()
    d.import_service(gw_service(images["good"], wan_configure_network="dhcp",
                                lan_configure_network="allocated"))
    d.cli("instance", "add", "gw", "--id", "w1")
    running(d, "w1")
    pin = pin_of(d, "w1")
    d.wait_for(lambda: "wan0" in addresses(pin), "a WAN lease", timeout=30)
    inside = addresses(pin)
    address, prefix = inside["wan0"][0].split("/")
    assert in_range(address, "10.77.0.50", "10.77.0.60") and prefix == "24", inside
    assert inside["lan0"] == ["10.190.0.1/16"], inside
    route = sh("nsenter", "--net=" + pin, "ip", "-4", "route", "show", "default").stdout
    assert route.split()[:3] == ["default", "via", "10.77.0.1"], route
    resolv = d.wait_for(lambda: d.cli("exec", "w1", "cat", "/etc/resolv.conf",
                                      check=False).stdout.decode(), "resolv.conf")
    assert "nameserver 10.77.0.53" in resolv.splitlines(), resolv
    assert address in (tmp_path / "dnsmasq.leases").read_text()

    client = world.client()
    assert world.udhcpc(client, tmp_path, tries=3) is None, "a DHCP server on an allocated LAN"
    # a LAN client configured by hand is NATed to the container's WAN lease (wan_masquerade
    # is for WAN "allocated" only: here the WAN host routes the router's client network)
    sh("ip", "-n", client, "addr", "add", "10.190.0.77/16", "dev", "c0")
    sh("ip", "-n", client, "route", "add", "default", "via", "10.190.0.1")
    sh("ip", "-n", world.wh, "route", "add", "10.77.0.0/24", "via", UPLINK)
    world.serve(world.wh, WAN_HOST)
    assert world.connect(client, WAN_HOST) == address, d.log()

    # a restarted daemon verifies the lease the container holds (INIT-REBOOT): a REQUEST,
    # no DISCOVER, the same address all along
    log = tmp_path / "dnsmasq.log"
    d.wait_for(lambda: "DHCPACK" in log.read_text(), "dnsmasq's log")
    seen = len(log.read_text())
    d.kill(signal.SIGTERM)
    d.start()
    d.wait_for(lambda: d.log().count("WAN lease %s/24" % address) >= 2, "the lease verified")
    after = log.read_text()[seen:]
    assert "DHCPREQUEST" in after and "DHCPDISCOVER" not in after, after
    assert addresses(pin)["wan0"] == ["%s/24" % address]
    assert world.connect(client, WAN_HOST) == address, d.log()


def test_macvlan_lan_serves_dhcp(world, netdaemon, images, tmp_path):
    """LAN mode macvlan: the container's lan0 is a macvlan on a plain router interface (a
    veth end here, whose other end is the client's c0)."""
    client = world.client(host_end="eth-lan")
    d = netdaemon.start()
    d.import_service(gw_service(images["good"], lan_interfaces=[
        {"host": "eth-lan", "mode": "macvlan"}]))
    d.cli("instance", "add", "gw", "--id", "m1")
    running(d, "m1")
    pin = pin_of(d, "m1")
    d.wait_for(lambda: "lan0" in addresses(pin), "lan0")
    kind = sh("nsenter", "--net=" + pin, "ip", "-d", "link", "show", "lan0").stdout
    assert "macvlan" in kind, kind
    lease = world.udhcpc(client, tmp_path)
    assert lease and in_range(lease["ip"], "10.190.0.2", "10.190.0.254"), d.log()
    world.serve(world.wh, WAN_HOST)
    assert world.connect(client, WAN_HOST) == UPLINK, d.log()
    d.cli("stop", "m1")
    torn_down(d, world, "m1")
