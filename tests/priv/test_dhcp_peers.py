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


def netns_exec(link, *argv):
    return ["ip", "netns", "exec", link["c"]] + list(argv)


def addresses_in(link, dev="vc"):
    out = sh("ip", "-n", link["c"], "-4", "-o", "addr", "show", "dev", dev).stdout
    return [line.split()[3] for line in out.splitlines()]


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
    bound = [env for env in recorded(calls) if env.get("event") == "bound" or "ip" in env]
    env = bound[-1]
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
    server = OurServer(loop, link, tmp_path, lease_s=10)
    script, calls = recorder(tmp_path, "udhcpc")
    argv = [a for a in udhcpc(link, script, "-R") if a != "-q"]
    log = tmp_path / "udhcpc.log"
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        # T1 is 5 s: udhcpc unicasts a REQUEST to us and runs its script with "renew"
        run_until(loop, lambda: any(env.get("event") == "renew" for env in recorded(calls)),
                  15, "udhcpc renewing")
        renewed = [env for env in recorded(calls) if env.get("event") == "renew"][0]
        bound = [env for env in recorded(calls) if env.get("event") == "bound"][0]
        assert renewed["ip"] == bound["ip"] and renewed["lease"] == "10"
        proc.terminate()    # -R: release on exit
        run_until(loop, lambda: proc.poll() is not None, 10, "udhcpc exiting")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        server.stop()
        print(log.read_text())
    run_until(loop, lambda: server.leases()[bound["ip"]]["state"] == "released", 5,
              "the RELEASE reaching the server")


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
