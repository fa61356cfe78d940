"""The network plan of an instance (pure): interfaces, LAN plan, WAN address choice, host NAT;
the allocation store's WAN addresses; the daemon's fixed-range checks."""

import json

import pytest
from hypothesis import given, strategies as st

from edgert.daemon import model, network
from edgert.errors import ConfigError, StateError
from edgert.net import plan as planner
from edgert.net.ipam_store import Allocations


def config(**fields):
    return model.validate_input(dict({"name": "gw", "image_sources": [
        {"arch": "amd64", "image_reference": "r/gw:1"}]}, network_config=fields))[
        "network_config"]


ROUTER = dict(wan_configure_network="allocated", wan_interface={"host": "br-wan"},
              lan_configure_network="dhcp",
              lan_interfaces=[{"host": "br-lan"}, {"host": "eth2", "mode": "macvlan"}],
              access_provided_subnet="10.190.0.1/16", dhcp_range_template="10.190.0.1/24",
              masquerade=True)


def test_router_plan():
    wan = {"range": None, "taken": [], "prefer": None, "masquerade": True}
    plan = planner.make("abc", "/run/edgert/netns/abc", config(**ROUTER), [], "10.190.3.0/24",
                        "gw", wan)
    assert [(i["role"], i["index"], i["name"], i["host"], i["mode"])
            for i in plan["interfaces"]] == [
        ("wan", 0, "wan0", "br-wan", "veth"), ("lan", 0, "lan0", "br-lan", "veth"),
        ("lan", 1, "lan1", "eth2", "macvlan")]
    assert plan["lan"]["ifname"] == "lan0" and plan["lan"]["mode"] == "dhcp"
    assert (plan["lan"]["address"], plan["lan"]["prefix"]) == ("10.190.3.1", 16)
    assert (plan["lan"]["pool_start"], plan["lan"]["pool_end"]) == ("10.190.3.2",
                                                                    "10.190.3.254")
    assert plan["wan"] == dict(wan, mode="allocated", ifname="wan0", host="br-wan")
    assert plan["masquerade"] == {"lans": ["lan0", "lan1"], "wan": "wan0"}
    assert json.loads(json.dumps(plan)) == plan  # the record on disk


def test_disabled_modes_still_make_the_links():
    cfg = config(wan_interface={"host": "br-wan"}, lan_interfaces=[{"host": "br-lan"}])
    plan = planner.make("abc", "/ns", cfg, [], None, "gw")
    assert len(plan["interfaces"]) == 2
    assert plan["lan"] is None and plan["wan"] is None and plan["masquerade"] is None


def test_needed():
    assert not planner.needed(model.default_network(), [])
    assert not planner.needed(None, [])
    assert planner.needed(model.default_network(), [{"name": "can0"}])
    assert planner.needed(config(lan_interfaces=[{"host": "br"}]), [])


def test_lan_allocated_without_template_uses_the_fixed_range():
    cfg = config(lan_configure_network="allocated", lan_interfaces=[{"host": "br"}],
                 access_provided_subnet="10.200.0.1/16", dhcp_range="10.200.5.1/24")
    plan = planner.make("abc", "/ns", cfg, [], None, "gw")
    assert (plan["lan"]["address"], plan["lan"]["prefix"]) == ("10.200.5.1", 16)


def test_template_without_allocated_subnet_is_refused():
    with pytest.raises(StateError, match="no subnet allocated"):
        planner.make("abc", "/ns", config(**ROUTER), [], None, "gw")


def test_wan_allocated_cannot_be_macvlan():
    with pytest.raises(ConfigError, match="wan_interface.mode.*veth"):
        config(wan_configure_network="allocated",
               wan_interface={"host": "eth0", "mode": "macvlan"})


# -- WAN addresses ----------------------------------------------------------------------------

def test_wan_address_default_range_is_the_upper_half():
    assert planner.pick_wan_address("10.77.0.1/24", None, []) == "10.77.0.128/24"
    assert planner.pick_wan_address("10.77.0.1/24", None, ["10.77.0.128/24"]) == \
        "10.77.0.129/24"


def test_wan_address_keeps_the_previous_one_and_skips_taken_ones():
    taken = ["10.77.0.100/24", "10.77.0.101/24"]
    assert planner.pick_wan_address("10.77.0.1/24", "10.77.0.100-10.77.0.110", taken) == \
        "10.77.0.102/24"
    assert planner.pick_wan_address("10.77.0.1/24", "10.77.0.100-10.77.0.110", taken,
                                    prefer="10.77.0.107/24") == "10.77.0.107/24"
    # a previous address another instance holds now, or outside the range, is not kept
    assert planner.pick_wan_address("10.77.0.1/24", "10.77.0.100-10.77.0.110", taken,
                                    prefer="10.77.0.101/24") == "10.77.0.102/24"
    assert planner.pick_wan_address("10.77.0.1/24", "10.77.0.100-10.77.0.110", taken,
                                    prefer="10.77.0.5/24") == "10.77.0.102/24"


def test_wan_address_never_the_gateway_network_or_broadcast():
    with pytest.raises(StateError, match="every address of 10.77.0.254-10.77.0.255"):
        planner.pick_wan_address("10.77.0.254/24", "10.77.0.254-10.77.0.255", [],
                                 bridge="br-wan")
    assert planner.pick_wan_address("10.77.0.2/24", "10.77.0.0-10.77.0.3", []) == \
        "10.77.0.1/24"


@pytest.mark.parametrize("bridge_cidr,address_range,taken,message", [
    (None, None, [], "host bridge br-wan has no IPv4 address"),
    ("10.77.0.1/31", None, [], "leaves no room"),
    ("10.77.0.1/24", "10.78.0.1-10.78.0.9", [], "not inside host bridge br-wan's subnet"),
    ("10.77.0.1/24", "10.77.0.9-10.77.0.1", [], "expected a range"),
    ("10.77.0.1/24", "10.77.0.9", [], "expected a range"),
    ("10.77.0.1/30", None, ["10.77.0.2/30"], "every address of"),
])
def test_wan_address_errors(bridge_cidr, address_range, taken, message):
    with pytest.raises((StateError, ConfigError), match=message):
        planner.pick_wan_address(bridge_cidr, address_range, taken, bridge="br-wan")


@given(st.integers(16, 29), st.sets(st.integers(0, 1000), max_size=40), st.integers(0, 1000))
def test_wan_address_is_free_and_in_the_subnet(prefix, taken_offsets, prefer_offset):
    size = 1 << (32 - prefix)
    base = (10 << 24) | (77 << 16)
    gateway = base + 1
    taken = ["%s/%d" % (model.format_ipv4(base + o % size), prefix) for o in taken_offsets]
    prefer = "%s/%d" % (model.format_ipv4(base + prefer_offset % size), prefix)
    try:
        got = planner.pick_wan_address("%s/%d" % (model.format_ipv4(gateway), prefix), None,
                                       taken, prefer)
    except StateError:
        return  # the upper half is full
    address = model.parse_ipv4(got.split("/")[0])
    assert got not in taken and address != gateway
    assert base + size // 2 <= address < base + size - 1


def test_host_nat_ruleset():
    text = planner.host_nat_ruleset("br-wan", "10.77.0.0/24")
    assert "table ip %s {" % planner.host_nat_table("br-wan") in text
    assert 'ip saddr 10.77.0.0/24 oifname != "br-wan" masquerade' in text
    assert planner.host_nat_table("br-wan") != planner.host_nat_table("br-wan2")
    with pytest.raises(Exception):
        planner.host_nat_ruleset('br"; flush ruleset', "10.77.0.0/24")


# -- the allocation store ------------------------------------------------------------------------

def test_store_keeps_subnets_and_wan_addresses(tmp_path):
    path = str(tmp_path / "subnets.json")
    store = Allocations(path)
    store.set_wan_address("a", "gw", "10.77.0.128/24")
    assert store.allocate("a", "gw", config(**ROUTER)) == "10.190.0.0/24"
    assert store.allocate("b", "gw", config(**ROUTER)) == "10.190.1.0/24"
    store.set_wan_address("b", "gw", "10.77.0.129/24")
    again = Allocations(path)
    assert again.subnet_of("a") == "10.190.0.0/24"
    assert again.wan_addresses() == {"a": "10.77.0.128/24", "b": "10.77.0.129/24"}
    assert again.by_subnet() == {"10.190.0.0/24": "a", "10.190.1.0/24": "b"}
    assert again.release("a") and not again.release("a")
    assert Allocations(path).wan_address_of("a") is None
    only_wan = Allocations(path)
    only_wan.set_wan_address("c", "other", "10.77.0.130/24")
    assert only_wan.by_subnet() == {"10.190.1.0/24": "b"}  # c has no subnet


def test_store_refuses_a_malformed_file(tmp_path):
    path = tmp_path / "subnets.json"
    path.write_text('{"instances": {"a": {"subnet": 5}}}')
    with pytest.raises(StateError, match="malformed"):
        Allocations(str(path))


# -- fixed ranges of node services ---------------------------------------------------------------

def service(name, **fields):
    return {"name": name, "network_config": config(**fields)}


def fixed(subnet, **extra):
    return dict(lan_configure_network="dhcp", lan_interfaces=[{"host": "br"}],
                access_provided_subnet="10.0.0.1/8", dhcp_range=subnet, **extra)


def test_overlapping_fixed_ranges_are_refused():
    services = {"a": service("a", **fixed("10.1.0.1/24")),
                "b": service("b", **fixed("10.1.0.129/25"))}
    with pytest.raises(ConfigError, match='node service "a" dhcp_range .* overlaps node '
                                          'service "b" dhcp_range'):
        network.check_fixed_ranges(services)
    services["b"] = service("b", **fixed("10.2.0.1/24"))
    network.check_fixed_ranges(services)
    # a service without a LAN configuration holds no range
    services["c"] = service("c", access_provided_subnet="10.0.0.1/8", dhcp_range="10.1.0.1/24")
    network.check_fixed_ranges(services)


def test_fixed_ranges_of_others_are_reserved_for_templates():
    services = {"a": service("a", **fixed("10.190.0.1/24")), "b": service("b", **ROUTER)}
    assert network.fixed_ranges(services, but="b") == {
        'node service "a" dhcp_range': "10.190.0.1/24"}
    assert network.fixed_ranges(services, but="a") == {}


def test_new_service_overlapping_an_allocated_subnet_is_refused(tmp_path):
    class Net(network.Network):
        def __init__(self, services, path):
            self.services = lambda: services
            self.allocations = Allocations(path)
    services = {"b": service("b", **ROUTER)}
    net = Net(services, str(tmp_path / "subnets.json"))
    net.allocations.allocate("i1", "b", services["b"]["network_config"])
    with pytest.raises(ConfigError, match="overlaps the subnet of instance i1"):
        net.check_new_service(service("a", **fixed("10.190.0.1/24")))
    net.check_new_service(service("a", **fixed("10.191.0.1/24")))


def test_host_nameservers_skip_loopback(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# x\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch lan\n"
                    "nameserver ::1\nnameserver 192.0.2.1\nnameserver 198.51.100.1\n")
    assert network.host_nameservers(str(path)) == ["192.0.2.1", "198.51.100.1"]
    assert network.host_nameservers(str(tmp_path / "missing")) == []


def test_write_in_place_keeps_the_inode(tmp_path):
    import os
    path = str(tmp_path / "resolv.conf")
    network.write_in_place(path, "nameserver 192.0.2.1\nnameserver 192.0.2.2\n")
    inode = os.stat(path).st_ino
    network.write_in_place(path, "nameserver 192.0.2.3\n")
    assert os.stat(path).st_ino == inode
    assert open(path).read() == "nameserver 192.0.2.3\n"
