"""Bad network configuration through a real daemon: each is refused with a clear error and
leaves nothing half-configured (no service, no allocation, no namespace, no link).

The LAN bridges named here do not exist, so nothing is ever attached to the machine's own
network: the bring-up stops at the lookup of the bridge."""

import json
import os

from helpers.services import service_input


def lan(subnet, template=None, fixed=None, bridge="edgt-nobr0"):
    config = {"lan_configure_network": "dhcp", "lan_interfaces": [{"host": bridge}],
              "access_provided_subnet": subnet}
    if template:
        config["dhcp_range_template"] = template
    if fixed:
        config["dhcp_range"] = fixed
    return config


def allocations(daemon):
    path = os.path.join(daemon.root, "daemon", "subnets.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {k: v.get("subnet") for k, v in json.load(f)["instances"].items()}


def leftovers(daemon):
    found = []
    for sub in ("netns", "net"):
        directory = os.path.join(daemon.run_dir, sub)
        if os.path.isdir(directory):
            found += [os.path.join(sub, n) for n in os.listdir(directory)]
    return found


def test_overlapping_fixed_subnets_are_refused(daemon, images):
    daemon.start()
    daemon.import_service(service_input("a", images["good"], network_config=lan(
        "10.60.0.1/16", fixed="10.60.1.1/24")))
    path = os.path.join(os.path.dirname(daemon.config), "b.json")
    with open(path, "w") as f:
        json.dump(service_input("b", images["good"], network_config=lan(
            "10.60.0.1/16", fixed="10.60.1.129/25")), f)
    proc = daemon.cli("service", "import", path, check=False)
    assert proc.returncode != 0
    err = proc.stderr.decode()
    assert 'node service "a" dhcp_range (10.60.1.1/24) overlaps node service "b" dhcp_range ' \
           '(10.60.1.129/25)' in err and "give one of them another subnet" in err
    assert [s["name"] for s in daemon.call("service.list")] == ["a"]
    # the same through apply: checked before anything changes
    document = {"node_services": [service_input("c", images["good"]),
                             service_input("b", images["good"], network_config=lan(
                                 "10.60.0.1/16", fixed="10.60.1.0/24"))]}
    with open(path, "w") as f:
        json.dump(document, f)
    proc = daemon.cli("apply", "-f", path, check=False)
    assert proc.returncode != 0 and "overlaps" in proc.stderr.decode()
    assert [s["name"] for s in daemon.call("service.list")] == ["a"]


def test_a_template_that_does_not_fit_is_refused(daemon, images):
    daemon.start()
    path = os.path.join(os.path.dirname(daemon.config), "t.json")
    for template, message in (
            ("10.61.0.1/16", "must lie inside access_provided_subnet 10.60.0.1/16 and have a "
                             "longer prefix"),
            ("10.60.0.1/12", "must lie inside access_provided_subnet"),
            ("10.60.0.255/24", "broadcast address")):
        with open(path, "w") as f:
            json.dump(service_input("t", images["good"], network_config=lan(
                "10.60.0.1/16", template=template)), f)
        proc = daemon.cli("service", "import", path, check=False)
        assert proc.returncode != 0, template
        assert message in proc.stderr.decode(), proc.stderr.decode()
    assert daemon.call("service.list") == []


def test_exhausted_template_and_missing_bridge(daemon, images):
    """A /23 holds two /24s: the third instance gets a clear error at its start. Every start
    here also meets a host bridge that does not exist: the error names it, and no namespace,
    record or link stays behind; the allocations stay until the instances go. Neither marks
    the version failed: the host lacks something, and the step is retried."""
    daemon.start()
    daemon.import_service(service_input("cams", images["good"], network_config=lan(
        "10.62.0.1/23", template="10.62.0.1/24")))
    for iid in ("cam1", "cam2", "cam3"):
        daemon.cli("instance", "add", "cams", "--id", iid)

    def failure(iid):  # the host lacks something: the step waits to retry, nothing failed
        info = daemon.inspect(iid)
        rollout = info["rollout"] or {}
        assert info["failed_versions"] == []
        return "last error" in rollout.get("text", "") and rollout["text"]
    texts = {iid: daemon.wait_for(lambda: failure(iid), "the failed start of " + iid)
             for iid in ("cam1", "cam2", "cam3")}
    got = allocations(daemon)   # who got a subnet: the order the pulls finished in
    assert sorted(got.values()) == ["10.62.0.0/24", "10.62.1.0/24"]
    (last,) = set(texts) - set(got)
    for iid in got:
        assert "lan interface lan0 of instance %s: host interface edgt-nobr0 does not exist" \
            % iid in texts[iid]
    assert "all 2 /24 subnets of 10.62.0.0/23 are allocated (to instances %s)" % ", ".join(
        sorted(got)) in texts[last] and "use a larger access_provided_subnet" in texts[last]
    assert leftovers(daemon) == []
    from edgert.net.links import host_link_name
    for iid in ("cam1", "cam2", "cam3"):
        assert not os.path.exists("/sys/class/net/" + host_link_name(iid, "lan", 0))
    first, second = sorted(got)
    daemon.cli("instance", "rm", first)
    daemon.wait_for(lambda: first not in allocations(daemon), "the subnet released")
    assert allocations(daemon) == {second: got[second]}
