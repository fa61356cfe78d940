"""edgert.net.nat against the kernel, on a namespace the test makes: the rules land in the
namespace asked for and nowhere else, through libnftables, the nft tool and iptables alike,
and applying them again replaces them; a refused ruleset comes back with nft's own message
and leaves nothing behind; a device without nftables or iptables gets a clear error; the
helper children are all reaped."""

import os
import shutil
import subprocess

import pytest

from edgert.errors import EdgertError
from helpers.natway import NAT_WAYS, use

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2 (ip)"),
]


def sh(*args, ns=None, check=True):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@pytest.fixture
def netns(native_built):
    name = "edgt-nat-%d" % os.getpid()
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "wan0", ns=name)
        yield name
    finally:
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture(params=["libnftables", "nft tool"])
def way(request, monkeypatch, native_built):
    """The ways to apply an nft script."""
    use(request.param, monkeypatch)
    return request.param


@pytest.fixture(params=NAT_WAYS)
def nat_way(request, monkeypatch, native_built):
    """The ways to NAT."""
    use(request.param, monkeypatch)
    return request.param


def tables(ns=None):
    if shutil.which("nft") is None:
        pytest.skip("needs nft (Debian package nftables) to read the rules back")
    return sh("nft", "list", "tables", ns=ns).stdout.split("\n")


def test_masquerade_lands_in_the_containers_namespace_only(netns, nat_way):
    from edgert.net import nat
    ours_before = tables()
    tool = "iptables" if nat_way == "iptables" else "nft"
    for _ in range(2):  # again: the rules are replaced, not doubled
        assert nat.masquerade("/run/netns/" + netns, ["lan0"], "wan0") == tool
    if tool == "nft":
        ruleset = sh("nft", "list", "table", "ip", "edgert", ns=netns).stdout
        assert 'oifname "wan0" masquerade' in ruleset
        assert 'iifname "lan0" oifname "wan0" accept' in ruleset
    else:
        ruleset = (sh("iptables", "-t", "nat", "-S", ns=netns).stdout
                   + sh("iptables", "-S", ns=netns).stdout)
        assert "-A POSTROUTING -o wan0 -j MASQUERADE" in ruleset
        assert "-P FORWARD DROP" in ruleset
        assert "-A FORWARD -i lan0 -o wan0 -j ACCEPT" in ruleset
    assert ruleset.lower().count("masquerade") == 1
    assert sh("cat", "/proc/sys/net/ipv4/ip_forward", ns=netns).stdout.strip() == "1"
    assert tables() == ours_before
    nat.reap(block=True)
    assert nat._unreaped == []


def test_a_refused_ruleset_comes_back_with_nfts_message(netns, way):
    from edgert.net import nat
    with pytest.raises(EdgertError) as raised:
        nat.apply_nft("table ip half {\n  chain c {\n    bogus\n  }\n}\n",
                      "/run/netns/" + netns, what="NAT in x")
    assert raised.value.code == "nat-failed"
    assert str(raised.value).startswith("NAT in x failed: ")
    assert "syntax error" in str(raised.value)
    assert not any("half" in t for t in tables(netns)), "half a ruleset was applied"
    nat.reap(block=True)
    assert nat._unreaped == []


def test_a_namespace_that_is_gone(nat_way):
    from edgert.net import nat
    with pytest.raises(EdgertError) as raised:
        nat.masquerade("/run/netns/edgt-nat-gone-%d" % os.getpid(), ["lan0"], "wan0")
    assert raised.value.code == "nat-failed"
    assert "No such file" in str(raised.value)


def test_a_device_without_nftables_or_iptables(monkeypatch, native_built):
    from edgert import native
    from edgert.net import nat
    monkeypatch.setattr(native, "nft_load", lambda: False)
    monkeypatch.setattr(nat, "find_tool", lambda name: None)
    with pytest.raises(EdgertError) as raised:
        nat.masquerade("/run/netns/unused", ["lan0"], "wan0")
    assert raised.value.code == "no-nat-tool"
    assert "neither is installed" in str(raised.value)


@pytest.mark.parametrize("body, expected", [
    ("echo 'nft: table refused' >&2; exit 1", "nft: nft: table refused"),
    ("exit 3", "nft: wait status 768"),
    ("exec sleep 60", "nft: no answer after 1 s"),
])
def test_a_failing_or_hung_tool_is_reported(tmp_path, monkeypatch, native_built, body,
                                            expected):
    from edgert import native
    from edgert.net import nat
    tool = tmp_path / "nft"
    tool.write_text("#!/bin/sh\nPATH=/usr/bin:/bin\n%s\n" % body)
    tool.chmod(0o755)
    monkeypatch.setattr(native, "nft_load", lambda: False)
    monkeypatch.setattr(nat, "find_tool", lambda name: str(tool) if name == "nft" else None)
    monkeypatch.setattr(nat, "TOOL_TIMEOUT_S", 1)
    with pytest.raises(EdgertError) as raised:
        nat.apply_nft("table ip t\n", None, what="NAT in x")
    assert str(raised.value) == "NAT in x failed: " + expected
    nat.reap(block=True)
