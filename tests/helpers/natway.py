"""The ways edgert.net.nat can apply NAT, for tests that run once per way."""

import pytest

NAT_WAYS = ["libnftables", "nft tool", "iptables"]


def use(way, monkeypatch):
    """Makes ``way`` the one edgert.net.nat finds, or skips."""
    from edgert import native
    from edgert.net import nat
    find_tool = nat.find_tool
    if way == "libnftables":
        if not native.nft_load():
            pytest.skip("needs libnftables 0.9.1 or later (Debian package libnftables1)")
        return
    monkeypatch.setattr(native, "nft_load", lambda: False)
    if way == "nft tool":
        if find_tool("nft") is None:
            pytest.skip("needs nft (Debian package nftables)")
    elif find_tool("iptables") is None:
        pytest.skip("needs iptables (Debian package iptables)")
    else:
        monkeypatch.setattr(nat, "find_tool", lambda name: None if name == "nft"
                            else find_tool(name))
