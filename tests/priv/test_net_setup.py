"""Bring-up and teardown of an instance network (edgert.net.setup) in forked children, as
the daemon runs them, with a test-made namespace playing the host: links, addresses, the
pinned namespace, NAT, WAN "allocated" with host masquerade, passthrough devices, and a
failed bring-up that leaves nothing behind."""

import os
import shutil
import subprocess

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 (ip)"),
]

pytest.importorskip("pyroute2", reason="needs pyroute2 (Debian package python3-pyroute2)")


def ip(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def as_host(host_path, func, *args):
    """``func`` in the test's "host" namespace (runs in the forked child)."""
    from edgert import linuxconst as K
    from edgert import native
    fd = os.open(host_path, os.O_RDONLY)
    native.setns(fd, K.CLONE_NEWNET)
    os.close(fd)
    return func(*args)


@pytest.fixture
def host(native_built):
    name = "edgt-host-%d" % os.getpid()
    ip("ip", "netns", "add", name)
    try:
        for bridge in ("br-lan", "br-wan"):
            ip("ip", "link", "add", bridge, "type", "bridge", ns=name)
            ip("ip", "link", "set", bridge, "up", ns=name)
        ip("ip", "addr", "add", "10.77.0.1/24", "dev", "br-wan", ns=name)
        yield name
    finally:
        ip("ip", "netns", "del", name, check=False)


def call(host, func, *args):
    from edgert.net import forked
    return forked.call(as_host, ("/run/netns/" + host, func) + args, "test")


def plan_for(pin, **network):
    from edgert.daemon import model
    from edgert.net import plan as planner
    devices = network.pop("_devices", [])
    cfg = model.validate_input({"name": "gw", "image_sources": [
        {"arch": "amd64", "image_reference": "r/gw:1"}], "network_config": network})
    wan = None
    if network.get("wan_configure_network") == "allocated":
        wan = {"range": "10.77.0.100-10.77.0.120", "taken": ["10.77.0.100/24"],
               "prefer": None, "masquerade": True}
    return planner.make("inst1", pin, cfg["network_config"], devices,
                        "10.190.0.0/24" if cfg["network_config"].get("dhcp_range_template")
                        else None, "gw", wan)


ROUTER = dict(wan_configure_network="allocated", wan_interface={"host": "br-wan"},
              lan_configure_network="dhcp", lan_interfaces=[{"host": "br-lan"}],
              access_provided_subnet="10.190.0.1/16", dhcp_range_template="10.190.0.1/24",
              masquerade=True)


def links_of(ns):
    return ip("ip", "-o", "link", "show", ns=ns).stdout


def test_bring_up_and_tear_down(host, tmp_path):
    from edgert.net import setup
    pin = str(tmp_path / "netns" / "inst1")
    plan = plan_for(pin, **ROUTER)
    result = call(host, setup.bring_up, plan)
    try:
        assert os.path.ismount(pin)
        assert result["wan"] == {"address": "10.77.0.101/24", "gateway": "10.77.0.1",
                                 "subnet": "10.77.0.0/24"}
        assert set(result["macs"]) == {"wan0", "lan0"}
        inside = subprocess.run(["nsenter", "--net=" + pin, "ip", "-4", "-o", "addr"],
                                capture_output=True, text=True, check=True).stdout
        assert "wan0    inet 10.77.0.101/24" in inside and "lan0    inet 10.190.0.1/16" in inside
        assert "lo    inet 127.0.0.1/8" in inside
        routes = subprocess.run(["nsenter", "--net=" + pin, "ip", "route"],
                                capture_output=True, text=True, check=True).stdout
        assert "default via 10.77.0.1 dev wan0" in routes
        host_links = links_of(host)
        assert host_links.count("master br-") == 2
        rules = ip("nft", "list", "ruleset", ns=host).stdout
        assert 'ip saddr 10.77.0.0/24 oifname != "br-wan" masquerade' in rules
        assert ip("cat", "/proc/sys/net/ipv4/ip_forward", ns=host).stdout.strip() == "1"
        inner = subprocess.run(["nsenter", "--net=" + pin, "nft", "list", "ruleset"],
                               capture_output=True, text=True, check=True).stdout
        assert 'oifname "wan0" masquerade' in inner
    finally:
        call(host, setup.tear_down, plan, result, "br-wan")
    assert not os.path.exists(pin)
    assert "master br-" not in links_of(host)
    assert "edgert_wan" not in ip("nft", "list", "ruleset", ns=host).stdout


def test_missing_bridge_leaves_nothing(host, tmp_path):
    from edgert.errors import EdgertError
    from edgert.net import setup
    pin = str(tmp_path / "netns" / "inst1")
    network = dict(ROUTER, lan_interfaces=[{"host": "br-lan"}, {"host": "br-gone"}])
    with pytest.raises(EdgertError, match="host interface br-gone does not exist"):
        call(host, setup.bring_up, plan_for(pin, **network))
    assert not os.path.exists(pin)
    assert "master br-" not in links_of(host)   # the WAN and first LAN link went again
    assert "edgert_wan" not in ip("nft", "list", "ruleset", ns=host).stdout


def test_wan_bridge_without_address(host, tmp_path):
    from edgert.errors import EdgertError
    from edgert.net import setup
    pin = str(tmp_path / "netns" / "inst1")
    network = dict(ROUTER, wan_interface={"host": "br-lan"})
    with pytest.raises(EdgertError, match="host bridge br-lan has no IPv4 address"):
        call(host, setup.bring_up, plan_for(pin, **network))
    assert not os.path.exists(pin) and "master br-" not in links_of(host)


def test_wan_masquerade_on_a_device_without_nftables(host, tmp_path, monkeypatch):
    """The forked child inherits the patched lookups: no libnftables, no nft, no iptables."""
    from edgert import native
    from edgert.errors import EdgertError
    from edgert.net import nat, setup
    monkeypatch.setattr(native, "nft_load", lambda: False)
    monkeypatch.setattr(nat, "find_tool", lambda name: None)
    pin = str(tmp_path / "netns" / "inst1")
    with pytest.raises(EdgertError, match="wan_masquerade of host bridge br-wan needs nftables "
                       "on the device: neither libnftables nor nft is installed") as raised:
        call(host, setup.bring_up, plan_for(pin, **ROUTER))
    assert raised.value.code == "no-nat-tool"
    assert not os.path.exists(pin) and "master br-" not in links_of(host)


def test_teardown_after_a_crash_is_idempotent(host, tmp_path):
    """A daemon that died after the child ran knows only the plan: teardown by plan alone,
    twice, leaves nothing and raises nothing."""
    from edgert.net import setup
    pin = str(tmp_path / "netns" / "inst1")
    plan = plan_for(pin, **ROUTER)
    call(host, setup.bring_up, plan)
    call(host, setup.tear_down, plan, None, "br-wan")
    call(host, setup.tear_down, plan, None, "br-wan")
    assert not os.path.exists(pin) and "master br-" not in links_of(host)


def test_passthrough_device_moves_in_and_back(host, tmp_path):
    from edgert.net import setup
    ip("ip", "link", "add", "pt0", "type", "veth", "peer", "name", "pt0peer", ns=host)
    ip("ip", "addr", "add", "192.0.2.5/24", "dev", "pt0", ns=host)
    ip("ip", "link", "set", "pt0", "up", ns=host)
    pin = str(tmp_path / "netns" / "inst1")
    plan = plan_for(pin, _devices=[{"name": "pt0"}])
    assert plan["net_devices"] == ["pt0"] and plan["interfaces"] == []
    result = call(host, setup.bring_up, plan)
    try:
        assert "pt0:" not in links_of(host)
        inside = subprocess.run(["nsenter", "--net=" + pin, "ip", "-4", "-o", "addr"],
                                capture_output=True, text=True, check=True).stdout
        assert "pt0    inet 192.0.2.5/24" in inside
    finally:
        call(host, setup.tear_down, plan, result)
    assert "192.0.2.5/24" in ip("ip", "-4", "-o", "addr", "show", "pt0", ns=host).stdout
    assert not os.path.exists(pin)


def test_missing_passthrough_device(host, tmp_path):
    from edgert.errors import EdgertError
    from edgert.net import setup
    pin = str(tmp_path / "netns" / "inst1")
    with pytest.raises(EdgertError, match="net device can9 does not exist on the host"):
        call(host, setup.bring_up, plan_for(pin, _devices=[{"name": "can9"}]))
    assert not os.path.exists(pin)
