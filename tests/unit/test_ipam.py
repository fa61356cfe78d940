"""Subnet allocation and LAN plans (edgert/net/ipam.py) and their store (ipam_store.py)."""

import ipaddress
import json

import pytest

from edgert.errors import ConfigError, StateError
from edgert.net import ipam
from edgert.net.ipam_store import Allocations

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

ACCESS, TEMPLATE = "10.190.0.1/16", "10.190.0.1/24"


def test_lowest_free_subnet_first():
    assert ipam.allocate(ACCESS, TEMPLATE, set()) == "10.190.0.0/24"
    assert ipam.allocate(ACCESS, TEMPLATE, {"10.190.0.0/24", "10.190.2.0/24"}) == "10.190.1.0/24"
    assert ipam.allocate(ACCESS, TEMPLATE, {"10.190.0.0/24", "10.190.1.0/24"}) == "10.190.2.0/24"


def test_reserved_and_overlapping_subnets_are_skipped():
    # a reserved /23 covers two candidates; an allocation from another service's /16 none
    assert ipam.allocate(ACCESS, TEMPLATE, {"10.191.0.0/24"},
                         reserved=["10.190.0.0/23"]) == "10.190.2.0/24"
    # a reserved address inside a /24 takes the whole /24
    assert ipam.allocate(ACCESS, TEMPLATE, set(), reserved=["10.190.0.77/32"]) == "10.190.1.0/24"


def test_exhaustion_names_the_space_and_the_instances():
    taken = {"10.190.%d.0/24" % k: "inst%03d" % k for k in range(256)}
    with pytest.raises(StateError) as err:
        ipam.allocate(ACCESS, TEMPLATE, taken, service="cams")
    text = str(err.value)
    assert text.startswith('node service "cams": all 256 /24 subnets of 10.190.0.0/16 are '
                           "allocated (to instances inst000, inst001")
    assert text.endswith("...): remove an instance or use a larger access_provided_subnet")
    assert err.value.code == "subnets-exhausted"


@pytest.mark.parametrize("template,why", [
    ("10.191.0.1/24", "does not lie inside access_provided_subnet 10.190.0.1/16"),
    ("10.190.0.1/16", "must have a longer prefix"),
    ("10.190.0.1/8", "must have a longer prefix"),
    ("10.190.0.1/31", "leaves no addresses for DHCP clients"),
    ("10.190.0.255/24", "names the broadcast address"),
    ("10.190.0/24", "is not an IPv4 subnet"),
])
def test_template_that_does_not_fit_is_refused(template, why):
    with pytest.raises(ConfigError) as err:
        ipam.allocate(ACCESS, template, set(), service="cams")
    assert why in str(err.value) and 'node service "cams"' in str(err.value)


def test_lan_plan_from_the_template_reading():
    config = {"access_provided_subnet": ACCESS, "dhcp_range_template": TEMPLATE}
    assert ipam.lan_plan(config, "10.190.7.0/24") == {
        "address": "10.190.7.1", "prefix": 16, "netmask": "255.255.0.0",
        "router": "10.190.7.1", "subnet": "10.190.7.0/24",
        "pool_start": "10.190.7.2", "pool_end": "10.190.7.254"}


def test_lan_plan_template_host_part_is_kept_and_the_pool_skips_it():
    config = {"access_provided_subnet": "10.0.0.0/8", "dhcp_range_template": "10.0.0.254/24"}
    plan = ipam.lan_plan(config, "10.3.4.0/24")
    assert (plan["address"], plan["prefix"]) == ("10.3.4.254", 8)
    assert (plan["pool_start"], plan["pool_end"]) == ("10.3.4.1", "10.3.4.253")


def test_lan_plan_zero_host_part_means_the_first_host():
    config = {"access_provided_subnet": ACCESS, "dhcp_range_template": "10.190.0.0/24"}
    plan = ipam.lan_plan(config, "10.190.9.0/24")
    assert plan["address"] == "10.190.9.1" and plan["pool_start"] == "10.190.9.2"


def test_lan_plan_fixed_range_is_the_same_for_every_instance():
    config = {"access_provided_subnet": ACCESS, "dhcp_range": "10.190.0.1/24"}
    assert ipam.lan_plan(config) == {
        "address": "10.190.0.1", "prefix": 16, "netmask": "255.255.0.0",
        "router": "10.190.0.1", "subnet": "10.190.0.0/24",
        "pool_start": "10.190.0.2", "pool_end": "10.190.0.254"}


def test_lan_plan_without_a_range_uses_the_access_subnet():
    plan = ipam.lan_plan({"access_provided_subnet": "192.168.8.1/24"})
    assert (plan["address"], plan["prefix"]) == ("192.168.8.1", 24)
    assert (plan["pool_start"], plan["pool_end"]) == ("192.168.8.2", "192.168.8.254")


def test_lan_plan_refuses_mismatched_subnets():
    config = {"access_provided_subnet": ACCESS, "dhcp_range_template": TEMPLATE}
    with pytest.raises(StateError, match="allocate one first"):
        ipam.lan_plan(config, None)
    for wrong in ("10.191.1.0/24", "10.190.1.0/25", "10.190.1.5/24"):
        with pytest.raises(StateError, match="is not a /24 of"):
            ipam.lan_plan(config, wrong)
    with pytest.raises(StateError, match="no dhcp_range_template"):
        ipam.lan_plan({"access_provided_subnet": ACCESS, "dhcp_range": TEMPLATE},
                      "10.190.1.0/24")
    with pytest.raises(ConfigError, match="needs access_provided_subnet"):
        ipam.lan_plan({})


# --- properties ----------------------------------------------------------------------------------

@st.composite
def spaces(draw):
    """(access subnet, template) with up to 256 candidates, host bits set as in the docs."""
    access_prefix = draw(st.integers(8, 28))
    prefix = draw(st.integers(access_prefix + 1, min(30, access_prefix + 8)))
    base = draw(st.integers(0, (1 << 32) - 1)) >> (32 - access_prefix) << (32 - access_prefix)
    offset = draw(st.integers(0, (1 << (prefix - access_prefix)) - 1)) << (32 - prefix)
    host = draw(st.integers(0, (1 << (32 - prefix)) - 2))
    address = ipaddress.IPv4Address(base + 1)
    template = ipaddress.IPv4Address(base + offset + host)
    return "%s/%d" % (address, access_prefix), "%s/%d" % (template, prefix)


@hypothesis.settings(max_examples=100, deadline=None, database=None)
@hypothesis.given(spaces(), st.data())
def test_allocations_are_distinct_inside_and_exhaust_exactly_at_the_count(space, data):
    access, template = space
    access_net = ipaddress.ip_network(access, strict=False)
    count = 1 << (int(template.split("/")[1]) - access_net.prefixlen)
    # halfway, maybe free one, as an instance removal does, and keep allocating
    allocated = set()
    for step in range(count):
        subnet = ipam.allocate(access, template, allocated)
        assert subnet not in allocated
        net = ipaddress.ip_network(subnet)
        assert net.subnet_of(access_net)
        assert all(not net.overlaps(ipaddress.ip_network(o)) for o in allocated)
        allocated.add(subnet)
        plan = ipam.lan_plan({"access_provided_subnet": access, "dhcp_range_template": template},
                             subnet)
        router = ipaddress.ip_address(plan["router"])
        pool = (ipaddress.ip_address(plan["pool_start"]), ipaddress.ip_address(plan["pool_end"]))
        assert router in net and router not in (net.network_address, net.broadcast_address)
        assert net.network_address < pool[0] <= pool[1] < net.broadcast_address
        offered = int(pool[1]) - int(pool[0]) + 1 - (pool[0] <= router <= pool[1])
        assert offered == net.num_addresses - 3  # all but network, broadcast and router
        if step == count // 2 and data.draw(st.booleans()):
            freed = data.draw(st.sampled_from(sorted(allocated)))
            allocated.discard(freed)
            assert ipam.allocate(access, template, allocated) == _lowest_free(
                access_net, template, allocated)
            allocated.add(ipam.allocate(access, template, allocated))
    assert len(allocated) == count
    with pytest.raises(StateError, match="all %d /" % count):
        ipam.allocate(access, template, allocated)


def _lowest_free(access_net, template, allocated):
    prefix = int(template.split("/")[1])
    for net in access_net.subnets(new_prefix=prefix):
        if str(net) not in allocated:
            return str(net)


# --- the store -----------------------------------------------------------------------------------

NET = {"access_provided_subnet": "10.190.0.1/22", "dhcp_range_template": "10.190.0.1/24"}


def test_store_keeps_allocations_across_reopen_and_releases(tmp_path):
    path = str(tmp_path / "subnets.json")
    store = Allocations(path)
    assert store.allocate("a", "cams", NET) == "10.190.0.0/24"
    assert store.allocate("b", "cams", NET) == "10.190.1.0/24"
    assert store.allocate("a", "cams", NET) == "10.190.0.0/24"  # idempotent
    again = Allocations(path)
    assert again.subnet_of("b") == "10.190.1.0/24"
    assert again.allocate("c", "cams", NET) == "10.190.2.0/24"
    assert again.release("a") and not again.release("a")
    assert Allocations(path).allocate("d", "cams", NET) == "10.190.0.0/24"
    doc = json.loads((tmp_path / "subnets.json").read_text())
    assert doc["instances"]["d"] == {"service": "cams", "subnet": "10.190.0.0/24"}


def test_store_exhaustion_names_instances_and_saves_nothing(tmp_path):
    path = str(tmp_path / "subnets.json")
    store = Allocations(path)
    for name in "abcd":
        store.allocate(name, "cams", NET)
    before = (tmp_path / "subnets.json").read_bytes()
    with pytest.raises(StateError, match=r"all 4 /24 subnets of 10\.190\.0\.0/22 are allocated "
                                         r"\(to instances a, b, c, d\)"):
        store.allocate("e", "cams", NET)
    assert (tmp_path / "subnets.json").read_bytes() == before
    assert store.subnet_of("e") is None


def test_store_allocates_only_for_templates(tmp_path):
    store = Allocations(str(tmp_path / "subnets.json"))
    with pytest.raises(StateError, match="no dhcp_range_template"):
        store.allocate("a", "cams", {"access_provided_subnet": ACCESS,
                                     "dhcp_range_template": None, "dhcp_range": TEMPLATE})
    assert not (tmp_path / "subnets.json").exists()


def test_store_refuses_a_damaged_file(tmp_path):
    path = tmp_path / "subnets.json"
    path.write_text("{not json")
    with pytest.raises(StateError, match="unreadable"):
        Allocations(str(path))
    path.write_text('{"instances": {"a": "10.190.0.0/24"}}')
    with pytest.raises(StateError, match="malformed"):
        Allocations(str(path))


def test_overlapping_fixed_subnets_are_named():
    ipam.check_disjoint({"a": "10.1.0.1/24", "b": "10.1.1.1/24", "c": "192.168.0.1/16"})
    with pytest.raises(ConfigError) as err:
        ipam.check_disjoint({"a": "10.1.0.1/24", "big": "10.0.0.1/8", "c": "192.168.0.1/16"})
    assert str(err.value) == ("big (10.0.0.1/8) overlaps a (10.1.0.1/24): give one of them "
                              "another subnet")
    assert err.value.code == "subnets-overlap"
    with pytest.raises(ConfigError, match="not an IPv4 subnet"):
        ipam.check_disjoint({"a": "10.1.0.1"})


@hypothesis.settings(max_examples=60, deadline=None, database=None)
@hypothesis.given(ops=st.lists(st.tuples(st.sampled_from(["allocate", "release", "reopen"]),
                                         st.integers(0, 6)), max_size=40))
def test_store_never_hands_a_held_subnet_out_again(ops, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ipam") / "subnets.json")
    store, held = Allocations(path), {}
    for op, n in ops:
        instance = "i%d" % n
        if op == "reopen":
            store = Allocations(path)
        elif op == "release":
            assert store.release(instance) == (held.pop(instance, None) is not None)
        else:
            try:
                subnet = store.allocate(instance, "cams", NET)
            except StateError:
                assert len(held) == 4 and instance not in held
                continue
            assert held.setdefault(instance, subnet) == subnet
        assert len(set(held.values())) == len(held)
        assert {i: store.subnet_of(i) for i in held} == held
