"""Carries out a network plan (``plan.make``) and tears it down: runs in a forked child
(``forked.call`` / ``forked.Job``), never in the daemon, because it imports pyroute2.

The instance's namespace is made here and pinned by a bind mount of its nsfs file at
``plan["netns"]``; the container joins it by path. It therefore outlives neither its pin nor
the container: ``tear_down`` moves passthrough devices back (the kernel would destroy
virtual ones with the namespace), deletes the host ends of the veth pairs and unpins.
Every step of ``tear_down`` tolerates what is already gone, so it also cleans up after a
daemon that died halfway, or a bring-up that failed halfway.
"""

import errno
import os

from .. import linuxconst as K
from .. import native
from ..errors import EdgertError, NotFound
from . import links, plan as planner
from ..runtime.netdev import unpin_netns

# the interface group of the links made for a container (in its namespace): teardown deletes
# them with one request ("ip link del group")
LINK_GROUP = 0xED6E


def bring_up(plan):
    """Returns {"macs": {ifname: mac}, "wan": {address, gateway, subnet} or None,
    "moved": [...]}; undoes everything and raises on failure."""
    result = {"macs": {}, "wan": None, "moved": []}
    try:
        _pin(plan["netns"])
        for interface in plan["interfaces"]:
            links.attach(plan["netns"], plan["instance"], interface["role"],
                         interface["index"], interface)
        _join_group(plan["netns"], [i["name"] for i in plan["interfaces"]])
        if plan["net_devices"]:
            _move_in(plan["netns"], plan["net_devices"], result["moved"])
        lan = plan.get("lan")
        if lan:
            links.set_address(plan["netns"], lan["ifname"], lan["address"], lan["prefix"])
        wan = plan.get("wan")
        if wan and wan["mode"] == "allocated":
            result["wan"] = _allocated_wan(plan["netns"], wan)
        if plan.get("masquerade"):
            from . import nat
            nat.masquerade(plan["netns"], plan["masquerade"]["lans"],
                           plan["masquerade"]["wan"])
        result["macs"] = _macs(plan["netns"], [i["name"] for i in plan["interfaces"]])
    except BaseException:
        try:
            tear_down(plan, result)
        except Exception:  # the first error is the one worth reporting
            pass
        raise
    return result


def tear_down(plan, result=None, drop_host_nat=None):
    """Devices back, host links gone, the pin unmounted; ``drop_host_nat``: the host bridge
    whose masquerade table goes too (no other instance uses it)."""
    problems = []
    pin = plan["netns"]
    pinned = os.path.exists(pin) and os.path.ismount(pin)
    if plan.get("net_devices") and pinned:
        try:
            _move_out(pin, plan["net_devices"], (result or {}).get("moved") or [])
        except Exception as e:
            problems.append("moving %s back: %s" % (", ".join(plan["net_devices"]), e))
    if pinned and plan["interfaces"]:
        try:  # every link of ours in one go: one RCU grace period instead of one per link
            with links.Netns(pin) as ctr:
                ctr.ipr.link("del", group=LINK_GROUP)
        except Exception as e:
            if getattr(e, "code", None) != errno.ENODEV:
                problems.append("removing the container's links: %s" % e)
    host = None
    try:
        for interface in plan["interfaces"]:  # what a namespace that is gone left
            if interface["mode"] == "veth":
                if host is None:
                    host = links.Netns(None)
                links.remove_link(host, links.host_link_name(
                    plan["instance"], interface["role"], interface["index"]))
    except Exception as e:
        problems.append("removing host links: %s" % e)
    finally:
        if host is not None:
            host.close()
    if drop_host_nat:
        table = planner.host_nat_table(drop_host_nat)
        # declared first, so the delete never fails: a refused transaction costs the
        # kernel's abort an RCU grace period (15-30 ms here), a successful one under 1 ms
        _nft_host("table ip %s\ndelete table ip %s\n" % (table, table), drop_host_nat,
                  missing_ok=True)
    unpin_netns(pin)
    if problems:
        raise EdgertError("network teardown of instance %s: %s"
                          % (plan["instance"], "; ".join(problems)), code="net-teardown")
    return True


def apply_lease(netns, ifname, lease):
    """A DHCP client's lease on ``ifname``: the address, and the default route via its
    router."""
    links.set_address(netns, ifname, lease["address"], lease["prefix"],
                      gateway=lease.get("router"))
    return True


def remove_lease(netns, ifname, lease):
    """Removing the address also removes the routes through it."""
    with links.Netns(netns) as ctr:
        index = ctr.index(ifname)
        if index is not None:
            try:
                ctr.ipr.addr("del", index=index, address=lease["address"],
                              prefixlen=lease["prefix"])
            except Exception as e:
                if getattr(e, "code", None) not in (errno.EADDRNOTAVAIL, errno.ESRCH):
                    raise
    return True


def _join_group(netns, names):
    with links.Netns(netns) as ctr:
        for name in names:
            ctr.ipr.link("set", index=ctr.index(name), group=LINK_GROUP)


# -- the namespace pin --------------------------------------------------------------------------

def _pin(path):
    """A new network namespace, loopback up, bind-mounted on ``path``; this process
    returns to its own namespace."""
    os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
    if os.path.lexists(path):
        unpin_netns(path)   # a leftover the caller failed to tear down
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        native.unshare(K.CLONE_NEWNET)
        try:
            native.mount("/proc/thread-self/ns/net", path, None, K.MS_BIND, None)
            from ..runtime.child import loopback_up
            loopback_up()
        finally:
            native.setns(home, K.CLONE_NEWNET)
    finally:
        os.close(home)


# -- WAN "allocated" --------------------------------------------------------------------------

def _allocated_wan(netns, wan):
    bridge = wan["host"]
    with links.Netns(None) as host:
        index = host.index(bridge)
        if index is None:
            raise NotFound("host bridge %s does not exist" % bridge, code="no-interface")
        found = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                 for a in host.ipr.get_addr(index=index, family=2)]
    bridge_cidr = "%s/%d" % found[0] if found else None
    address = planner.pick_wan_address(bridge_cidr, wan.get("range"), wan.get("taken") or [],
                                       wan.get("prefer"), bridge=bridge)
    ip, prefix = address.split("/")
    links.set_address(netns, wan["ifname"], ip, int(prefix), gateway=found[0][0])
    network, bits = planner.parse_cidr(bridge_cidr)
    subnet = "%s/%d" % (planner.format_ipv4(planner.network_of(network, bits)), bits)
    if wan.get("masquerade"):
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
        if not wan.get("host_nat_present"):
            _nft_host(planner.host_nat_ruleset(bridge, subnet), bridge)
    return {"address": address, "gateway": found[0][0], "subnet": subnet}


def _nft_host(script, bridge, missing_ok=False):
    """An nft script in the host's namespace (this process's); ``missing_ok``: a device
    without nftables is no failure (there is nothing to drop)."""
    from . import nat
    try:
        nat.apply_nft(script, what="wan_masquerade of host bridge %s" % bridge)
    except EdgertError as e:
        if not (missing_ok and e.code == "no-nat-tool"):
            raise


# -- passthrough devices ------------------------------------------------------------------------

def _move_in(netns, names, moved):
    from ..runtime import netdev
    netns_fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with links.Netns(None) as host, links.Netns(netns) as ctr:
            indexes = {}
            for name in names:
                indexes[name] = host.index(name)
                if indexes[name] is None:
                    raise NotFound("net device %s does not exist on the host: connect it or "
                                   "remove it from the node service's net_devices" % name,
                                   code="no-interface")
            for name in names:
                addrs, up = netdev._link_state(host.ipr, indexes[name])
                host.ipr.link("set", index=indexes[name], net_ns_fd=netns_fd)
                moved.append({"name": name, "addrs": addrs, "up": up})
                netdev._restore(ctr.ipr, name, addrs, up)
    finally:
        os.close(netns_fd)


def _move_out(netns, names, moved):
    from ..runtime import netdev
    state = {m["name"]: m for m in moved}
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with links.Netns(netns) as ctr:
            for name in names:
                index = ctr.index(name)
                if index is not None:
                    ctr.ipr.link("set", index=index, net_ns_fd=home)
    finally:
        os.close(home)
    with links.Netns(None) as host:
        for name in names:
            if name in state and host.index(name) is not None:
                netdev._restore(host.ipr, name, [tuple(a) for a in state[name]["addrs"]],
                                state[name]["up"])


def _macs(netns, names):
    with links.Netns(netns) as ctr:
        out = {}
        for name in names:
            index = ctr.index(name)
            if index is not None:
                out[name] = ctr.ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
        return out
