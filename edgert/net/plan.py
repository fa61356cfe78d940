"""What to set up for an instance's network (pure): interfaces, addresses, NAT, DHCP.

The plan is a JSON-able dict the daemon records before a forked child carries it out
(``setup.bring_up``), so a daemon that died halfway still knows what to tear down.

Reading of the product documentation (docs/network.md, "Network modes"):
- every interface of ``lan_interfaces`` and ``wan_interface`` is created whatever the mode
  ("disabled" means no configuration, not no link: the workload may configure it);
- LAN "allocated" and "dhcp" put the LAN address (``ipam.lan_plan``) on the first LAN
  interface; "dhcp" also runs the DHCP server there;
- WAN "allocated" joins the host bridge ``wan_interface.host`` (the host's client network)
  and takes a free address of that bridge's subnet, with the bridge's address as gateway:
  traffic is routed by the host, over whatever uplinks it has;
- WAN "dhcp" runs the DHCP client on the WAN interface;
- ``masquerade`` adds NAT from the LAN interfaces to the WAN interface inside the
  container's namespace;
- ``net_devices`` of the version move into the namespace and back.
"""

import binascii

from ..daemon.model import format_ipv4, network_of, parse_cidr, parse_ipv4
from ..errors import ConfigError, StateError
from . import ipam
from .nat import check_ifname


def needed(network_config, net_devices):
    """True when the instance needs a prepared namespace (else the runtime makes an empty
    one, with loopback only)."""
    network_config = network_config or {}
    return bool(network_config.get("lan_interfaces") or network_config.get("wan_interface")
                or net_devices)


def make(instance_id, netns, network_config, net_devices, subnet=None, service=None,
         wan=None):
    """The plan for ``instance_id`` whose namespace is pinned at ``netns``.

    ``subnet``: its allocated subnet (services with a dhcp_range_template); ``wan``: for WAN
    "allocated", {"range": "a.b.c.d-a.b.c.e" or None, "taken": [addresses of other
    instances], "prefer": its previous address or None, "masquerade": bool}.
    """
    config = network_config or {}
    interfaces = []
    wan_if = config.get("wan_interface")
    wan_mode = config.get("wan_configure_network", "disabled")
    lan_mode = config.get("lan_configure_network", "disabled")
    if wan_if:
        interfaces.append({"role": "wan", "index": 0, "name": wan_if["name"],
                           "host": wan_if["host"], "mode": wan_if.get("mode", "veth")})
    for i, lan_if in enumerate(config.get("lan_interfaces") or []):
        interfaces.append({"role": "lan", "index": i, "name": lan_if["name"],
                           "host": lan_if["host"], "mode": lan_if.get("mode", "veth")})
    lans = [i["name"] for i in interfaces if i["role"] == "lan"]
    plan = {"instance": instance_id, "service": service, "netns": netns,
            "interfaces": interfaces,
            "net_devices": [d["name"] for d in net_devices or []],
            "lan": None, "wan": None, "masquerade": None}
    if lan_mode != "disabled" and lans:
        lan = ipam.lan_plan(config, subnet, service)
        plan["lan"] = dict(lan, mode=lan_mode, ifname=lans[0])
    if wan_mode != "disabled" and wan_if:
        plan["wan"] = {"mode": wan_mode, "ifname": wan_if["name"], "host": wan_if["host"]}
        if wan_mode == "allocated":
            plan["wan"].update(wan or {})
    if config.get("masquerade") and plan["lan"] and plan["wan"]:
        plan["masquerade"] = {"lans": lans, "wan": wan_if["name"]}
    return plan


def parse_range(text, what="wan_address_range"):
    """(first, last) addresses as ints from "a.b.c.d-a.b.c.e"."""
    first, dash, last = (text or "").partition("-")
    first, last = parse_ipv4(first.strip()), parse_ipv4(last.strip())
    if not dash or first is None or last is None or first > last:
        raise ConfigError("%s %r: expected a range such as \"10.77.0.100-10.77.0.199\""
                          % (what, text), code="bad-params")
    return first, last


def pick_wan_address(bridge_cidr, address_range, taken, prefer=None, bridge="the bridge"):
    """An address for a WAN "allocated" interface on the host bridge whose address is
    ``bridge_cidr`` ("10.77.0.1/24"): ``prefer`` if still free, else the lowest free one of
    ``address_range`` (default: the upper half of the bridge's subnet, where DHCP pools of
    firmwares rarely reach). Returns "a.b.c.d/p"."""
    parsed = parse_cidr(bridge_cidr or "")
    if parsed is None:
        raise StateError("host bridge %s has no IPv4 address: WAN \"allocated\" takes its "
                         "addresses from the bridge's subnet; give the bridge one" % bridge,
                         code="no-address")
    gateway, prefix = parsed
    network = network_of(gateway, prefix)
    broadcast = network | (0xFFFFFFFF >> prefix if prefix else 0xFFFFFFFF)
    if prefix > 30:
        raise StateError("host bridge %s: %s leaves no room for containers"
                         % (bridge, bridge_cidr), code="no-address")
    if address_range:
        first, last = parse_range(address_range)
        if network_of(first, prefix) != network or network_of(last, prefix) != network:
            raise ConfigError("wan_address_range %s is not inside host bridge %s's subnet %s/%d"
                              % (address_range, bridge, format_ipv4(network), prefix),
                              code="bad-params")
    else:
        first, last = network + (broadcast - network + 1) // 2, broadcast - 1
    used = {parse_ipv4(a.split("/")[0]) for a in taken} | {gateway, network, broadcast}
    want = parse_ipv4((prefer or "").split("/")[0])
    if want is not None and first <= want <= last and want not in used:
        return "%s/%d" % (format_ipv4(want), prefix)
    for candidate in range(max(first, network + 1), min(last, broadcast - 1) + 1):
        if candidate not in used:
            return "%s/%d" % (format_ipv4(candidate), prefix)
    raise StateError("host bridge %s: every address of %s-%s is taken by other instances; "
                     "widen wan_address_range or remove an instance"
                     % (bridge, format_ipv4(first), format_ipv4(last)), code="no-address")


def host_nat_table(bridge):
    """The name of the host's nftables table that masquerades a WAN bridge's subnet."""
    return "edgert_wan_%08x" % binascii.crc32(bridge.encode())


def host_nat_ruleset(bridge, subnet):
    """Masquerade what the bridge's subnet sends out of any other interface (the host's
    uplinks). A firewall that drops forwarded traffic stays the firmware's business."""
    table = host_nat_table(bridge)
    if parse_cidr(subnet) is None:
        raise ConfigError("subnet %r of bridge %s is not IPv4 CIDR" % (subnet, bridge))
    return ("table ip %(t)s\ndelete table ip %(t)s\ntable ip %(t)s {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            "    ip saddr %(s)s oifname != \"%(b)s\" masquerade\n"
            "  }\n"
            "}\n" % {"t": table, "s": subnet, "b": check_ifname(bridge)})
