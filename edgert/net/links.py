"""A container's LAN and WAN interfaces: veth pairs into host bridges, or macvlans on host
interfaces; addresses and routes inside the container's network namespace (pyroute2).

Namespaces are given as paths (``/proc/<pid>/ns/net`` or a pinned file). A namespace's
netlink socket is made by entering the namespace just for the socket's creation (a socket
keeps its namespace), so there is no helper process and no thread. The "host" is the
caller's own namespace unless ``host_netns`` names another one: tests play the router with
namespaces they made.

Host-side names are derived from the instance id and the interface's role and index
(``ve`` + 8 hex digits of a hash + ``l0``/``w0``), so a restarted daemon finds and removes
the links of a container that died while it was down.
"""

import hashlib
import os

from ..errors import ConfigError, NotFound

def host_link_name(instance_id, role, index, prefix="ve"):
    digest = hashlib.sha256(instance_id.encode()).hexdigest()[:8]
    return "%s%s%s%d" % (prefix, digest, role[0], index)


class Netns:
    """A pyroute2 IPRoute bound to the namespace at ``path`` (None: our own)."""

    def __init__(self, path=None):
        from .rtnl import IPRoute
        self.path = path
        if path is None:
            self.ipr = IPRoute()
            return
        from . import in_netns
        try:
            self.ipr = in_netns(path, IPRoute)
        except FileNotFoundError as e:
            raise NotFound("network namespace %s: %s" % (path, e.strerror)) from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.ipr.close()

    def index(self, name):
        found = self.ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def kind(self, index):
        link = self.ipr.get_links(index)[0]
        info = link.get_attr("IFLA_LINKINFO")
        return info.get_attr("IFLA_INFO_KIND") if info is not None else None


def attach(container_netns, instance_id, role, index, spec, host_netns=None):
    """Creates interface ``spec["name"]`` in the container, joined to ``spec["host"]``: a
    veth pair whose host end is a port of that bridge (mode "veth"), or a macvlan on that
    host interface (mode "macvlan"). Returns a record for ``detach``."""
    name, host_if, mode = spec["name"], spec["host"], spec.get("mode", "veth")
    where = "%s interface %s of instance %s" % (role, name, instance_id)
    with Netns(host_netns) as host, Netns(container_netns) as ctr:
        host_index = host.index(host_if)
        if host_index is None:
            raise NotFound("%s: host interface %s does not exist" % (where, host_if),
                           code="no-interface")
        if ctr.index(name) is not None:
            raise ConfigError("%s: the container already has an interface %s" % (where, name))
        netns_fd = os.open(container_netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if mode == "veth":
                if host.kind(host_index) != "bridge":
                    raise ConfigError("%s: host interface %s is not a bridge: join it with "
                                      "mode macvlan, or name a bridge" % (where, host_if))
                link = host_link_name(instance_id, role, index)
                remove_link(host, link)  # a leftover of a container that died with its daemon
                host.ipr.link("add", ifname=link, kind="veth",
                              peer={"ifname": name, "net_ns_fd": netns_fd})
                host.ipr.link("set", index=host.index(link), master=host_index, state="up")
            elif mode == "macvlan":
                link = host_link_name(instance_id, role, index, prefix="mv")
                remove_link(host, link)
                host.ipr.link("add", ifname=link, kind="macvlan", link=host_index,
                              macvlan_mode="bridge")
                host.ipr.link("set", index=host.index(link), net_ns_fd=netns_fd)
                ctr.ipr.link("set", index=ctr.index(link), ifname=name)
                link = None  # lives and dies with the container's namespace
            else:
                raise ConfigError("%s: mode %r: expected veth or macvlan" % (where, mode))
        finally:
            os.close(netns_fd)
        ctr.ipr.link("set", index=ctr.index(name), state="up")
    return {"role": role, "index": index, "name": name, "host_link": link}


def detach(record, host_netns=None):
    """Removes the host end of a veth pair (its peer goes with it); idempotent."""
    if record.get("host_link"):
        with Netns(host_netns) as host:
            remove_link(host, record["host_link"])


def remove_link(ns, name):
    index = ns.index(name)
    if index is not None:
        ns.ipr.link("del", index=index)


def set_address(container_netns, ifname, address, prefix, gateway=None):
    """``address``/``prefix`` on ``ifname`` inside the container, replacing any other IPv4
    address there, and a default route via ``gateway`` when given."""
    with Netns(container_netns) as ctr:
        index = ctr.index(ifname)
        if index is None:
            raise NotFound("the container has no interface %s" % ifname)
        for addr in ctr.ipr.get_addr(index=index, family=2):
            old = addr.get_attr("IFA_ADDRESS")
            if (old, addr["prefixlen"]) != (address, prefix):
                ctr.ipr.addr("del", index=index, address=old, prefixlen=addr["prefixlen"])
        if not any(a.get_attr("IFA_ADDRESS") == address
                   for a in ctr.ipr.get_addr(index=index, family=2)):
            ctr.ipr.addr("add", index=index, address=address, prefixlen=prefix)
        if gateway:
            ctr.ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=index)
