"""LAN subnets of node service instances: the allocator and the LAN plan (pure).

A node service with ``access_provided_subnet`` 10.190.0.1/16 and ``dhcp_range_template``
10.190.0.1/24 gives instance k the k-th /24 of the /16 (10.190.k.0/24); its LAN address is
the template's host part inside that /24 with the access subnet's prefix (10.190.k.1/16), and
its DHCP pool is the rest of the /24. ``dhcp_range`` gives every instance the same /24 and
address; without either, the access subnet itself is the range.

``allocate`` is a function of the set of subnets already handed out, so a fleet controller
runs the same code over the fleet's set that the device runs over its own (``ipam_store``).
"""

from ..daemon.model import format_ipv4, network_of, parse_cidr
from ..errors import ConfigError, StateError

MAX_NAMED = 8  # instances named in an exhaustion message
MAX_POOL_PREFIX = 30  # a /31 or /32 has no room for a router and one client


def _cidr(text, what):
    parsed = parse_cidr(text)
    if parsed is None:
        raise ConfigError("%s: %r is not an IPv4 subnet such as \"10.190.0.1/16\"" % (what, text))
    return parsed


def _mask(prefix):
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def _span(network, prefix):
    """[first, last] addresses of a subnet."""
    return network, network | (~_mask(prefix) & 0xFFFFFFFF)


def _show(network, prefix):
    return "%s/%d" % (format_ipv4(network), prefix)


def _owner(service):
    return "node service \"%s\"" % service if service else "node service"


def check_template(access_subnet, template, service=None):
    """(access network, access prefix, template host part, template prefix) or ConfigError."""
    owner = _owner(service)
    access, access_prefix = _cidr(access_subnet, "%s: access_provided_subnet" % owner)
    address, prefix = _cidr(template, "%s: dhcp_range_template" % owner)
    if prefix <= access_prefix:
        raise ConfigError("%s: dhcp_range_template %s must have a longer prefix than "
                          "access_provided_subnet %s (it cuts subnets out of it)"
                          % (owner, template, access_subnet))
    if network_of(address, access_prefix) != network_of(access, access_prefix):
        raise ConfigError("%s: dhcp_range_template %s does not lie inside "
                          "access_provided_subnet %s; use a template inside it"
                          % (owner, template, access_subnet))
    _check_host_part(address, prefix, "dhcp_range_template %s" % template, owner)
    return network_of(access, access_prefix), access_prefix, address & ~_mask(prefix), prefix


def _check_host_part(address, prefix, what, owner):
    if prefix > MAX_POOL_PREFIX:
        raise ConfigError("%s: %s leaves no addresses for DHCP clients; use a prefix of /%d or "
                          "shorter" % (owner, what, MAX_POOL_PREFIX))
    first, last = _span(network_of(address, prefix), prefix)
    if address == last:
        raise ConfigError("%s: %s names the broadcast address as the LAN address; use a host "
                          "address such as %s/%d" % (owner, what, format_ipv4(first + 1), prefix))


def allocate(access_subnet, template, allocated, reserved=(), service=None):
    """The lowest free template-sized subnet of ``access_subnet``, as "a.b.c.d/p".

    ``allocated``: subnets already handed out (a set, or a dict subnet -> instance id, whose
    ids then appear in the exhaustion message); ``reserved``: subnets never to hand out (fixed
    subnets of other services, the host's networks). A candidate overlapping either is taken.
    """
    base, access_prefix, _, prefix = check_template(access_subnet, template, service)
    count = 1 << (prefix - access_prefix)
    size = 1 << (32 - prefix)
    taken = []
    for subnet in list(allocated) + list(reserved):
        network, length = _cidr(subnet, "allocated subnet")
        first, last = _span(network_of(network, length), length)
        lo, hi = max(first, base), min(last, base + count * size - 1)
        if lo <= hi:
            taken.append(((lo - base) // size, (hi - base) // size))
    candidate = 0
    for lo, hi in sorted(taken):
        if lo > candidate:
            break
        candidate = max(candidate, hi + 1)
    if candidate >= count:
        raise StateError(_exhausted(service, count, prefix, _show(base, access_prefix),
                                    allocated, reserved), code="subnets-exhausted")
    return _show(base + candidate * size, prefix)


def _exhausted(service, count, prefix, space, allocated, reserved):
    if isinstance(allocated, dict):
        ids = sorted(set(allocated.values()))
        named = ", ".join(ids[:MAX_NAMED]) + (", ..." if len(ids) > MAX_NAMED else "")
        to = " (to instances %s)" % named if ids else ""
    else:
        to = ""
    also = " or reserved" if reserved else ""
    return ("%s: all %d /%d subnets of %s are allocated%s%s: remove an instance or use a "
            "larger access_provided_subnet" % (_owner(service), count, prefix, space, also, to))


def lan_plan(network_config, subnet=None, service=None):
    """The LAN side of an instance: address, prefix, DHCP pool, router, netmask.

    ``subnet`` is the instance's allocated subnet when the service has a
    ``dhcp_range_template``, and must be None otherwise. The pool is ``pool_start`` ..
    ``pool_end`` without ``router`` (the DHCP server never offers the router's address).
    """
    owner = _owner(service)
    access_subnet = network_config.get("access_provided_subnet")
    if access_subnet is None:
        raise ConfigError("%s: the LAN needs access_provided_subnet" % owner)
    access, access_prefix = _cidr(access_subnet, "%s: access_provided_subnet" % owner)
    template = network_config.get("dhcp_range_template")
    if template is not None:
        if subnet is None:
            raise StateError("%s: the instance has no subnet allocated from dhcp_range_template "
                             "%s; allocate one first" % (owner, template))
        _, _, host, prefix = check_template(access_subnet, template, service)
        network, length = _cidr(subnet, "%s: allocated subnet" % owner)
        if length != prefix or network_of(network, access_prefix) != network_of(
                access, access_prefix) or network_of(network, length) != network:
            raise StateError("%s: allocated subnet %s is not a /%d of %s; release it and "
                             "allocate again" % (owner, subnet, prefix, access_subnet))
        address = network | host
    else:
        if subnet is not None:
            raise StateError("%s: has no dhcp_range_template, so its instances get no subnet "
                             "of their own (got %s)" % (owner, subnet))
        fixed = network_config.get("dhcp_range")
        address, prefix = _cidr(fixed, "%s: dhcp_range" % owner) if fixed else (
            access, access_prefix)
        _check_host_part(address, prefix, "dhcp_range %s" % fixed if fixed else
                         "access_provided_subnet %s" % access_subnet, owner)
    first, last = _span(network_of(address, prefix), prefix)
    if address == first:  # a zero host part: the first host address is the LAN address
        address = first + 1
    start, end = first + 1, last - 1
    if address == start:
        start += 1
    elif address == end:
        end -= 1
    return {
        "address": format_ipv4(address),
        "prefix": access_prefix,
        "netmask": format_ipv4(_mask(access_prefix)),
        "router": format_ipv4(address),
        "subnet": _show(first, prefix),
        "pool_start": format_ipv4(start),
        "pool_end": format_ipv4(end),
    }


def check_disjoint(subnets):
    """ConfigError naming two of ``subnets`` ({owner: "a.b.c.d/p"}) that overlap, if any do.

    For fixed LAN ranges of different node services on one device: their LANs would share
    addresses.
    """
    spans = []
    for owner, subnet in subnets.items():
        address, prefix = _cidr(subnet, owner)
        spans.append((_span(network_of(address, prefix), prefix), owner))
    spans.sort()
    for ((_, last), owner), ((first, _), other) in zip(spans, spans[1:]):
        if first <= last:
            raise ConfigError("%s (%s) overlaps %s (%s): give one of them another subnet"
                              % (owner, subnets[owner], other, subnets[other]),
                              code="subnets-overlap")
