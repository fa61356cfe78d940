"""Container LAN/WAN links and NAT on namespaces the test makes: a "host" namespace with a
LAN and a WAN bridge plays the router, a LAN client and a WAN host hang off the bridges,
and the "container" namespace gets lan0/wan0 from edgert.net.links and NAT from
edgert.net.nat. Traffic from the LAN client must reach the WAN host masqueraded; the WAN
side must not reach into the LAN. Nothing touches the machine's own namespace."""

import os
import shutil
import subprocess
import textwrap

import pytest

from helpers.natway import NAT_WAYS, use

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 (ip)"),
]

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


def ip(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


class World:
    def __init__(self):
        tag = "%d" % os.getpid()
        self.names = {role: "edgt-%s-%s" % (role, tag) for role in ("h", "x", "c", "w")}
        self.servers = []
        for name in self.names.values():
            ip("ip", "netns", "add", name)
        self.h, self.x, self.c, self.w = (self.names[r] for r in ("h", "x", "c", "w"))
        for bridge in ("br-lan", "br-wan"):
            ip("ip", "link", "add", bridge, "type", "bridge", ns=self.h)
            ip("ip", "link", "set", bridge, "up", ns=self.h)
        for ns, side, bridge, address, gateway in (
                (self.c, "c0", "br-lan", "10.190.1.50/24", "10.190.1.1"),
                (self.w, "w0", "br-wan", "192.0.2.1/24", None)):
            ip("ip", "link", "add", side, "netns", ns, "type", "veth", "peer", "name",
               side + "p", ns=self.h)
            ip("ip", "link", "set", side + "p", "master", bridge, "up", ns=self.h)
            ip("ip", "addr", "add", address, "dev", side, ns=ns)
            ip("ip", "link", "set", side, "up", ns=ns)
            ip("ip", "link", "set", "lo", "up", ns=ns)
            if gateway:
                ip("ip", "route", "add", "default", "via", gateway, ns=ns)

    def path(self, ns):
        return "/run/netns/" + ns

    def serve(self, ns, address):
        proc = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", SERVER,
                                 address], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        self.servers.append(proc)

    def connect(self, ns, address, timeout=3):
        """What the server at ``address`` saw as our address, or None if unreachable."""
        code = ("import socket, sys\ns = socket.create_connection((sys.argv[1], 8000), "
                "timeout=%d)\nprint(s.recv(100).decode())" % timeout)
        proc = ip("/usr/bin/python3", "-c", code, address, ns=ns, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    def close(self):
        for proc in self.servers:
            proc.kill()
            proc.wait()
        for name in self.names.values():
            ip("ip", "netns", "del", name, check=False)


@pytest.fixture
def world(native_built):
    w = World()
    yield w
    w.close()
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in left for name in w.names.values())


@pytest.mark.parametrize("way", NAT_WAYS)
def test_lan_client_reaches_the_wan_through_the_containers_nat(world, way, monkeypatch):
    from edgert.net import links, nat
    use(way, monkeypatch)
    x, h = world.path(world.x), world.path(world.h)
    lan = links.attach(x, "inst1", "lan", 0, {"host": "br-lan", "name": "lan0"}, host_netns=h)
    wan = links.attach(x, "inst1", "wan", 0, {"host": "br-wan", "name": "wan0"}, host_netns=h)
    links.set_address(x, "lan0", "10.190.1.1", 24)
    links.set_address(x, "wan0", "192.0.2.2", 24, gateway="192.0.2.1")
    assert nat.masquerade(x, ["lan0"], "wan0") == ("iptables" if way == "iptables" else "nft")
    world.serve(world.w, "192.0.2.1")
    # the WAN host sees the container's WAN address, not the LAN client's
    assert world.connect(world.c, "192.0.2.1") == "192.0.2.2"
    # and nothing from the WAN side gets into the LAN
    world.serve(world.c, "10.190.1.50")
    ip("ip", "route", "add", "10.190.1.0/24", "via", "192.0.2.2", ns=world.w)
    assert world.connect(world.w, "10.190.1.50", timeout=1) is None
    # applying NAT again is idempotent
    nat.masquerade(x, ["lan0"], "wan0")
    assert world.connect(world.c, "192.0.2.1") == "192.0.2.2"
    links.detach(lan, host_netns=h)
    links.detach(wan, host_netns=h)
    links.detach(wan, host_netns=h)  # twice is fine
    host_links = ip("ip", "-o", "link", ns=world.h).stdout
    assert "ve" not in "".join(line.split(":")[1] for line in host_links.splitlines())


def test_macvlan_lan_interface(world):
    from edgert.net import links
    x, h = world.path(world.x), world.path(world.h)
    # a macvlan needs an ethernet parent: a veth end in the host namespace
    ip("ip", "link", "add", "eth-lan", "type", "veth", "peer", "name", "eth-lanp", ns=world.h)
    ip("ip", "link", "set", "eth-lan", "up", ns=world.h)
    ip("ip", "link", "set", "eth-lanp", "up", ns=world.h)
    record = links.attach(x, "inst2", "lan", 0, {"host": "eth-lan", "mode": "macvlan",
                                                  "name": "lan0"}, host_netns=h)
    assert record["host_link"] is None
    out = ip("ip", "-d", "link", "show", "lan0", ns=world.x).stdout
    assert "macvlan" in out and "UP" in out
    links.detach(record, host_netns=h)


def test_clear_errors(world):
    from edgert.errors import EdgertError
    from edgert.net import links, nat
    x, h = world.path(world.x), world.path(world.h)
    with pytest.raises(EdgertError, match="br-nope does not exist"):
        links.attach(x, "i", "lan", 0, {"host": "br-nope", "name": "lan0"}, host_netns=h)
    ip("ip", "link", "add", "plain0", "type", "veth", "peer", "name", "plain1", ns=world.h)
    with pytest.raises(EdgertError, match="not a bridge"):
        links.attach(x, "i", "lan", 0, {"host": "plain0", "name": "lan0"}, host_netns=h)
    with pytest.raises(EdgertError, match="cannot be used"):
        nat.nft_ruleset(['lan0"; flush ruleset; "'], "wan0")


def test_host_link_names_fit_and_differ():
    from edgert.net.links import host_link_name
    names = {host_link_name("instance%d" % i, role, n) for i in range(200)
             for role in ("lan", "wan") for n in range(3)}
    assert len(names) == 1200 and all(len(n) <= 15 for n in names)


def test_socket_family_import_is_cheap():
    # the daemon imports links only when a container has networking (pyroute2 is heavy)
    code = "import sys; sys.path.insert(0, %r); import edgert.net.links, edgert.net.nat; " \
           "print('pyroute2' in sys.modules)" % os.path.dirname(os.path.dirname(
               os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(["/usr/bin/python3", "-I", "-c", code], capture_output=True,
                         text=True)
    assert out.stdout.strip() == "False", out

