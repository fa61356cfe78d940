"""edgert's DHCP server and client against real peers, in network namespaces the tests make.

Two namespaces per test ("s": ours or dnsmasq serving, "c": the client) joined by a veth
pair; both are deleted afterwards, pass or fail, and no traffic leaves them. Our server and
client run in this process on edgert's own loop (the daemon's), with the sockets opened
inside the namespaces through setns; the peers run under `ip netns exec`.
"""

import itertools
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from edgert.daemon.loop import Loop

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
              pytest.mark.skipif(not shutil.which("ip"), reason="needs ip (iproute2)")]

SUBNET = "10.77.0"
SERVER_IP = SUBNET + ".1"
DNS = ["10.77.0.53", "10.77.0.54"]
_names = itertools.count()

RECORDER = """#!/bin/sh
# records what the DHCP client tells its script, one env dump per call, and configures the
# address (inside the test's namespace) so the client can unicast RENEW and RELEASE
n=$(ls %(dir)s | wc -l)
{ env; echo "event=$1"; } > %(dir)s/$(printf %%03d $n)
case "$1$reason" in
    bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
    BOUND|REBOOT|RENEW)
        ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
esac
exit 0
"""


def sh(*argv, check=True):
    return subprocess.run(argv, check=check, capture_output=True, text=True)


@pytest.fixture
def own_netns():
    before = os.readlink("/proc/thread-self/ns/net")
    yield
    assert os.readlink("/proc/thread-self/ns/net") == before


@pytest.fixture
def link(native_built, own_netns):
    """Namespaces s and c, veth "vs" (in s, SERVER_IP/24) to "vc" (in c, no address)."""
    base = "edgert-dhcp-%d-%d" % (os.getpid(), next(_names))
    s, c = base + "-s", base + "-c"
    made = []
    try:
        for name in (s, c):
            sh("ip", "netns", "add", name)
            made.append(name)
        sh("ip", "link", "add", "vs", "netns", s, "type", "veth", "peer", "name", "vc",
           "netns", c)
        for name, dev in ((s, "vs"), (c, "vc")):
            sh("ip", "-n", name, "link", "set", "lo", "up")
            sh("ip", "-n", name, "link", "set", dev, "up")
        sh("ip", "-n", s, "addr", "add", SERVER_IP + "/24", "dev", "vs")
        yield {"s": s, "c": c, "s_path": "/run/netns/" + s, "c_path": "/run/netns/" + c}
    finally:
        for name in made:
            sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def loop():
    messages = []
    loop = Loop(log=messages.append)
    loop.messages = messages
    return loop


def run_until(loop, done, limit, what):
    end = time.monotonic() + limit
    while not done():
        assert time.monotonic() < end, "%s did not happen within %s s" % (what, limit)
        loop.run_once(0.05)


def run_peer(loop, argv, limit=30):
    """Runs a peer to its exit while our side keeps answering on the loop."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        run_until(loop, lambda: proc.poll() is not None, limit, " ".join(argv))
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
    return proc.returncode, out


class OurServer:
    def __init__(self, loop, link, tmp_path, lease_s=3600, pool=("10.77.0.100", "10.77.0.199")):
        self.loop, self.link, self.lease_s, self.pool = loop, link, lease_s, pool
        self.lease_file = str(tmp_path / "leases.json")
        self.edge = None
        self.start()

    def start(self):
        from edgert.net.dhcp import Server
        from edgert.net.dhcpd import DhcpServer
        logic = Server(self.pool[0], self.pool[1], "255.255.255.0", SERVER_IP, SERVER_IP, DNS,
                       self.lease_s)
        self.logic = logic
        self.edge = DhcpServer(self.loop, self.link["s_path"], "vs", logic, self.lease_file)

    def stop(self):
        self.edge.close()

    def leases(self):
        with open(self.lease_file) as f:
            return {item["address"]: item for item in json.load(f)["leases"]}


@pytest.fixture
def server(loop, link, tmp_path):
    ours = OurServer(loop, link, tmp_path)
    yield ours
    ours.stop()


def recorder(tmp_path, name):
    calls = tmp_path / (name + "-calls")
    calls.mkdir()
    script = tmp_path / (name + "-script")
    script.write_text(RECORDER % {"dir": calls})
    script.chmod(0o755)
    return str(script), calls


def recorded(calls):
    """The env of every script call, in order."""
    result = []
    for name in sorted(os.listdir(calls)):
        env = {}
        for line in (calls / name).read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                env[key] = value
        result.append(env)
    return result


def netns_exec(link, *argv, side="c"):
    return ["ip", "netns", "exec", link[side]] + list(argv)


def addresses_in(link, dev="vc"):
    out = sh("ip", "-n", link["c"], "-4", "-o", "addr", "show", "dev", dev).stdout
    return [line.split()[3] for line in out.splitlines()]


class Peer:
    """A long-running peer: its output goes to a file shown when a wait fails."""

    def __init__(self, loop, argv, log):
        self.loop, self.log = loop, log
        self.proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def wait_for(self, done, limit, what):
        try:
            run_until(self.loop, done, limit, what)
        except AssertionError as e:
            raise AssertionError("%s\n--- peer output:\n%s" % (e, self.log.read_text()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def events(calls, name):
    return [env for env in recorded(calls) if env.get("reason", env.get("event")) == name]


# -- our server, busybox udhcpc ----------------------------------------------------------------

def udhcpc(link, script, *extra):
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("needs busybox (udhcpc)")
    return netns_exec(link, busybox, "udhcpc", "-f", "-q", "-n", "-t", "4", "-T", "1",
                      "-i", "vc", "-s", script, *extra)


def test_udhcpc_gets_a_lease_with_router_dns_and_lease_time(loop, link, server, tmp_path):
    script, calls = recorder(tmp_path, "udhcpc")
    code, out = run_peer(loop, udhcpc(link, script, "-x", "hostname:cam1"))
    assert code == 0, out
    env = events(calls, "bound")[-1]
    assert env["ip"].startswith(SUBNET + ".")
    assert 100 <= int(env["ip"].rsplit(".", 1)[1]) <= 199
    assert env["router"].split() == [SERVER_IP]
    assert env["dns"].split() == DNS
    assert env["lease"] == "3600"
    assert env["serverid"] == SERVER_IP
    assert env["mask"] in ("24", "255.255.255.0")
    lease = server.leases()[env["ip"]]
    assert lease["state"] == "bound" and lease["hostname"] == "cam1"


def test_udhcpc_renews_then_releases(loop, link, tmp_path):
    server = OurServer(loop, link, tmp_path, lease_s=600)
    script, calls = recorder(tmp_path, "udhcpc")
    argv = [a for a in udhcpc(link, script, "-R") if a != "-q"]
    peer = Peer(loop, argv, tmp_path / "udhcpc.log")
    try:
        peer.wait_for(lambda: events(calls, "bound"), 15, "udhcpc binding")
        # udhcpc waits at least 15 s for T1 (leases under 30 s count as 30): SIGUSR1 asks it
        # to renew now; it unicasts a REQUEST to us and runs its script with "renew"
        peer.proc.send_signal(signal.SIGUSR1)
        peer.wait_for(lambda: events(calls, "renew"), 15, "udhcpc renewing")
        bound, renewed = events(calls, "bound")[0], events(calls, "renew")[0]
        assert renewed["ip"] == bound["ip"] and renewed["lease"] == "600"
        peer.proc.terminate()    # -R: release on exit
        peer.wait_for(lambda: server.leases()[bound["ip"]]["state"] == "released", 10,
                      "udhcpc's RELEASE reaching the server")
    finally:
        peer.stop()
        server.stop()


def test_same_client_same_address_after_server_restart(loop, link, server, tmp_path):
    script, calls = recorder(tmp_path, "udhcpc")
    # an address the hash would not pick, so only the lease file can bring it back
    code, out = run_peer(loop, udhcpc(link, script, "-r", "10.77.0.150"))
    assert code == 0, out
    assert "10.77.0.150" in server.leases()
    server.stop()
    sh("ip", "-n", link["c"], "addr", "flush", "dev", "vc")
    server.start()
    assert server.logic.leases, "the restarted server did not load the lease file"
    code, out = run_peer(loop, udhcpc(link, script))
    assert code == 0, out
    assert recorded(calls)[-1]["ip"] == "10.77.0.150"


def test_a_second_client_gets_another_address(loop, link, server, tmp_path):
    script, calls = recorder(tmp_path, "udhcpc")
    code, out = run_peer(loop, udhcpc(link, script))
    assert code == 0, out
    first = recorded(calls)[-1]["ip"]
    sh("ip", "-n", link["c"], "addr", "flush", "dev", "vc")
    sh("ip", "-n", link["c"], "link", "set", "vc", "address", "02:00:00:77:00:02")
    code, out = run_peer(loop, udhcpc(link, script))
    assert code == 0, out
    assert recorded(calls)[-1]["ip"] != first
    assert len(server.leases()) == 2


# -- our server, ISC dhclient ------------------------------------------------------------------

def test_dhclient_binds_renews_reboots_and_releases(loop, link, tmp_path):
    dhclient = shutil.which("dhclient")
    if dhclient is None:
        pytest.skip("needs ISC dhclient (Debian package isc-dhcp-client)")
    server = OurServer(loop, link, tmp_path, lease_s=10)
    script, calls = recorder(tmp_path, "dhclient")
    conf = tmp_path / "dhclient.conf"
    conf.write_text('send host-name "dhc";\n'
                    'request subnet-mask, routers, domain-name-servers, dhcp-lease-time;\n')
    files = ["-cf", str(conf), "-sf", script, "-lf", str(tmp_path / "dhclient.leases"),
             "-pf", str(tmp_path / "dhclient.pid")]
    peer = None
    try:
        peer = Peer(loop, netns_exec(link, dhclient, "-d", "-1", "-v", *files, "vc"),
                    tmp_path / "dhclient.log")
        # T1 of a 10 s lease is 5 s: dhclient unicasts its renewal to us
        peer.wait_for(lambda: events(calls, "RENEW"), 20, "dhclient renewing")
        bound = events(calls, "BOUND")[0]
        assert bound["new_ip_address"].startswith(SUBNET + ".")
        assert bound["new_routers"] == SERVER_IP
        assert bound["new_domain_name_servers"].split() == DNS
        assert bound["new_dhcp_lease_time"] == "10"
        assert events(calls, "RENEW")[0]["new_ip_address"] == bound["new_ip_address"]
        assert server.leases()[bound["new_ip_address"]]["hostname"] == "dhc"
        peer.stop()
        # a restarted dhclient asks for its recorded lease (INIT-REBOOT) and gets it again
        peer = Peer(loop, netns_exec(link, dhclient, "-d", "-1", "-v", *files, "vc"),
                    tmp_path / "dhclient2.log")
        peer.wait_for(lambda: events(calls, "REBOOT"), 20, "dhclient rebooting")
        assert events(calls, "REBOOT")[0]["new_ip_address"] == bound["new_ip_address"]
        code, out = run_peer(loop, netns_exec(link, dhclient, "-r", "-v", *files, "vc"))
        assert code == 0, out
        run_until(loop, lambda: server.leases()[bound["new_ip_address"]]["state"] == "released",
                  5, "dhclient's RELEASE reaching the server")
    finally:
        if peer is not None:
            peer.stop()
        server.stop()


# -- our server, dhcpcd ------------------------------------------------------------------------

def dhcpcd_argv(link, tmp_path, *args):
    """dhcpcd keeps its lease and control socket in fixed directories: they are bind mounts
    of test directories, in the private mount namespace `ip netns exec` makes."""
    db, run = tmp_path / "dhcpcd-db", tmp_path / "dhcpcd-run"
    db.mkdir(exist_ok=True)
    run.mkdir(exist_ok=True)
    wrapper = ("mount --bind %s /var/lib/dhcpcd && mkdir -p /run/dhcpcd && "
               "mount --bind %s /run/dhcpcd && exec \"$@\"" % (db, run))
    return netns_exec(link, "sh", "-c", wrapper, "dhcpcd", shutil.which("dhcpcd"), *args)


def test_dhcpcd_binds_renews_and_releases(loop, link, tmp_path):
    if shutil.which("dhcpcd") is None:
        pytest.skip("needs dhcpcd (Debian package dhcpcd-base)")
    if not os.path.isdir("/var/lib/dhcpcd"):
        pytest.skip("dhcpcd's state directory /var/lib/dhcpcd is missing")
    server = OurServer(loop, link, tmp_path, lease_s=10)
    script, calls = recorder(tmp_path, "dhcpcd")
    conf = tmp_path / "dhcpcd.conf"
    # no IPv4LL, no ARP probe (seconds of delay), no IPv6: only the DHCP exchange
    conf.write_text("hostname dcd\noption domain_name_servers, routers, subnet_mask\n"
                    "noipv4ll\nnoarp\n")
    common = ["-4", "-f", str(conf), "-c", script]
    peer = Peer(loop, dhcpcd_argv(link, tmp_path, "-B", "-d", *common, "vc"),
                tmp_path / "dhcpcd.log")
    try:
        # dhcpcd raises a 10 s lease to its 20 s minimum but keeps our T1 (5 s)
        peer.wait_for(lambda: events(calls, "RENEW"), 20, "dhcpcd renewing")
        bound = events(calls, "BOUND")[0]
        address = bound["new_ip_address"]
        assert address.startswith(SUBNET + ".")
        assert bound["new_routers"] == SERVER_IP
        assert bound["new_domain_name_servers"].split() == DNS
        assert bound["new_dhcp_lease_time"] == "10"
        assert events(calls, "RENEW")[0]["new_ip_address"] == address
        # dhcpcd configures the address itself (inside the client namespace)
        assert address + "/24" in addresses_in(link)
        code, out = run_peer(loop, dhcpcd_argv(link, tmp_path, "-k", *common, "vc"))
        assert code == 0, out
        peer.wait_for(lambda: peer.proc.poll() is not None, 10, "dhcpcd exiting after -k")
        run_until(loop, lambda: server.leases()[address]["state"] == "released", 5,
                  "dhcpcd's RELEASE reaching the server")
    finally:
        peer.stop()
        server.stop()


# -- our client --------------------------------------------------------------------------------

def default_route_in(link):
    return sh("ip", "-n", link["c"], "-4", "route", "show", "default").stdout.split()


class LeaseLog:
    def __init__(self):
        self.leases, self.expired = [], 0

    def on_lease(self, lease):
        self.leases.append(lease)

    def on_expire(self):
        self.expired += 1


def our_client(loop, link, tmp_path, log):
    pytest.importorskip("pyroute2", reason="needs pyroute2 (Debian package python3-pyroute2)")
    from edgert.net.dhclient import DhcpClient
    return DhcpClient(loop, link["c_path"], "vc", log.on_lease, log.on_expire,
                      resolv_conf_path=str(tmp_path / "resolv.conf"), hostname="edge1")


def test_our_client_gets_and_renews_a_lease_from_dnsmasq(loop, link, tmp_path):
    dnsmasq = shutil.which("dnsmasq")
    if dnsmasq is None:
        pytest.skip("needs dnsmasq (Debian package dnsmasq-base)")
    leasefile = tmp_path / "dnsmasq.leases"
    # 2 minutes is dnsmasq's shortest lease; T1 and T2 as options make it renew in 4 s
    argv = netns_exec(link, dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--user=root",
                      "--interface=vs", "--bind-interfaces", "--port=0", "--log-dhcp",
                      "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,2m",
                      "--dhcp-option=option:router," + SERVER_IP,
                      "--dhcp-option=option:dns-server," + ",".join(DNS),
                      "--dhcp-option=option:T1,4", "--dhcp-option=option:T2,7",
                      "--dhcp-leasefile=%s" % leasefile,
                      "--pid-file=%s" % (tmp_path / "dnsmasq.pid"), side="s")
    peer = Peer(loop, argv, tmp_path / "dnsmasq.log")
    got = LeaseLog()
    client = None
    try:
        time.sleep(0.3)     # dnsmasq binds its socket
        client = our_client(loop, link, tmp_path, got)
        peer.wait_for(lambda: got.leases, 15, "our client getting a lease from dnsmasq")
        lease = got.leases[0]
        assert 50 <= int(lease["address"].rsplit(".", 1)[1]) <= 60
        assert lease["prefix"] == 24 and lease["router"] == SERVER_IP
        assert lease["dns"] == DNS and lease["server"] == SERVER_IP
        assert lease["lease_s"] == 120
        assert lease["address"] + "/24" in addresses_in(link)
        assert default_route_in(link)[:3] == ["default", "via", SERVER_IP]
        assert (tmp_path / "resolv.conf").read_text().splitlines()[1:] == [
            "nameserver " + d for d in DNS]
        assert lease["address"] in leasefile.read_text()
        peer.wait_for(lambda: len(got.leases) >= 2, 15, "our client renewing with dnsmasq")
        assert got.leases[1]["address"] == lease["address"] and got.expired == 0
        assert "edge1" in leasefile.read_text()
    finally:
        if client is not None:
            client.close()
        peer.stop()
    assert addresses_in(link) == [], "close() left the address behind"


def test_our_client_renews_then_expires_against_our_server(loop, link, tmp_path):
    server = OurServer(loop, link, tmp_path, lease_s=10)
    got = LeaseLog()
    client = our_client(loop, link, tmp_path, got)
    try:
        run_until(loop, lambda: len(got.leases) >= 2, 15, "bound, then renewed at T1 (5 s)")
        address = got.leases[0]["address"]
        assert got.leases[1]["address"] == address
        assert server.leases()[address]["hostname"] == "edge1"
        assert address + "/24" in addresses_in(link)
        server.stop()
        # no server: REBINDING at 8.75 s, then expiry at 10 s removes the address
        run_until(loop, lambda: got.expired, 15, "the lease expiring")
        assert addresses_in(link) == [] and default_route_in(link) == []
    finally:
        client.close()
        if server.edge.sock is not None:
            server.stop()


# -- our server's edge -------------------------------------------------------------------------

def test_server_survives_junk_and_a_corrupt_lease_file(loop, link, tmp_path):
    from edgert.net import udp_socket_on_device
    (tmp_path / "leases.json").write_text("{not json")
    server = OurServer(loop, link, tmp_path)
    try:
        assert any("not JSON" in m and "starting with none" in m for m in loop.messages)
        sender = udp_socket_on_device(link["c_path"], "vc", 68)
        try:
            for junk in (b"", b"x" * 100, b"\x01" * 300):
                sender.sendto(junk, ("255.255.255.255", 67))
            run_until(loop, lambda: server.edge.bad_packets == 3, 5, "three junk messages")
        finally:
            sender.close()
        script, calls = recorder(tmp_path, "udhcpc")
        code, out = run_peer(loop, udhcpc(link, script))
        assert code == 0, out
        assert len(server.leases()) == 1
        assert (tmp_path / "leases.json").stat().st_mode & 0o777 == 0o600
    finally:
        server.stop()
