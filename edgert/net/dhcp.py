"""DHCPv4 (RFC 2131/2132), pure: packets, the server's lease logic, the client's state machine.

No I/O here: the edges (``dhcpd.py``, ``dhclient.py``) own the sockets and pass ``now`` in
(seconds on any clock that does not jump; leases are exported as remaining seconds, so the
clock may restart between an export and an import).
"""

import struct
import zlib

from ..errors import EdgertError

SERVER_PORT = 67
CLIENT_PORT = 68
BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE",
                 ACK: "ACK", NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}

OPT_PAD, OPT_END = 0, 255
OPT_NETMASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME = 1, 3, 6, 12
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD, OPT_MESSAGE_TYPE = 50, 51, 52, 53
OPT_SERVER_ID, OPT_PARAMETER_LIST, OPT_MESSAGE, OPT_MAX_SIZE = 54, 55, 56, 57
OPT_T1, OPT_T2, OPT_CLIENT_ID = 58, 59, 61

MAGIC_COOKIE = b"\x63\x82\x53\x63"
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")   # 236 bytes, then the cookie
OPTIONS_AT = HEADER.size + len(MAGIC_COOKIE)
# BOOTP relays and old clients drop shorter messages (RFC 1542 section 2.1)
MIN_PACKET = 300
BROADCAST_FLAG = 0x8000
BROADCAST = "broadcast"

# options whose value has a fixed shape: code -> (unit, exact) ; exact: length == unit
_SHAPES = {OPT_NETMASK: (4, True), OPT_ROUTER: (4, False), OPT_DNS: (4, False),
           OPT_REQUESTED_IP: (4, True), OPT_LEASE_TIME: (4, True), OPT_OVERLOAD: (1, True),
           OPT_MESSAGE_TYPE: (1, True), OPT_SERVER_ID: (4, True), OPT_MAX_SIZE: (2, True),
           OPT_T1: (4, True), OPT_T2: (4, True)}


class DhcpError(EdgertError):
    """A DHCP message that cannot be used, or a lease document that cannot be read."""

    code = "dhcp"


# -- addresses ---------------------------------------------------------------------------------

def ip_to_int(text):
    parts = text.split(".") if isinstance(text, str) else ()
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise DhcpError("%r is not an IPv4 address (a.b.c.d)" % (text,))
    a, b, c, d = (int(p) for p in parts)
    return (a << 24) | (b << 16) | (c << 8) | d


def int_to_ip(value):
    return "%d.%d.%d.%d" % (value >> 24, (value >> 16) & 255, (value >> 8) & 255, value & 255)


def _ip_bytes(text):
    return struct.pack("!I", ip_to_int(text))


def _checked_list(addresses):
    """``addresses`` (None or a list), each checked to be a dotted IPv4 address."""
    for address in addresses or ():
        ip_to_int(address)
    return list(addresses or ())


def _bytes_ip(raw):
    return int_to_ip(struct.unpack("!I", raw)[0])


def prefix_of(netmask):
    value = ip_to_int(netmask)
    prefix = bin(value).count("1")
    if value != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF:
        raise DhcpError("netmask %s is not contiguous ones then zeros" % netmask)
    return prefix


def netmask_of(prefix):
    return int_to_ip((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF)


# -- packets -----------------------------------------------------------------------------------

class Packet:
    """One BOOTP/DHCP message. Addresses are dotted strings, ``chaddr`` the hardware address
    (``hlen`` bytes), ``options`` a dict code -> bytes (split options already joined)."""

    def __init__(self, op=BOOTREQUEST, xid=0, chaddr=b"", options=None, htype=1, hops=0,
                 secs=0, flags=0, ciaddr="0.0.0.0", yiaddr="0.0.0.0", siaddr="0.0.0.0",
                 giaddr="0.0.0.0", sname=b"", file=b""):
        self.op, self.xid, self.chaddr, self.htype, self.hops = op, xid, chaddr, htype, hops
        self.secs, self.flags = secs, flags
        self.ciaddr, self.yiaddr, self.siaddr, self.giaddr = ciaddr, yiaddr, siaddr, giaddr
        self.sname, self.file = sname, file
        self.options = dict(options or {})

    @property
    def message_type(self):
        raw = self.options.get(OPT_MESSAGE_TYPE)
        return raw[0] if raw else None

    def address_option(self, code):
        raw = self.options.get(code)
        return _bytes_ip(raw[:4]) if raw else None

    def address_list(self, code):
        raw = self.options.get(code, b"")
        return [_bytes_ip(raw[i:i + 4]) for i in range(0, len(raw), 4)]

    def seconds_option(self, code):
        raw = self.options.get(code)
        return struct.unpack("!I", raw)[0] if raw else None


def parse(data):
    """The Packet in ``data``; DhcpError (with what is wrong) for anything malformed."""
    if len(data) < OPTIONS_AT:
        raise DhcpError("DHCP message of %d bytes is shorter than the %d-byte minimum"
                        % (len(data), OPTIONS_AT))
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
     sname, file) = HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise DhcpError("DHCP message has op %d (expected 1 or 2)" % op)
    if hlen > 16:
        raise DhcpError("DHCP message has a hardware address length of %d (at most 16)" % hlen)
    if data[HEADER.size:OPTIONS_AT] != MAGIC_COOKIE:
        raise DhcpError("not a DHCP message: bad magic cookie %s"
                        % data[HEADER.size:OPTIONS_AT].hex())
    options = {}
    _parse_options(data[OPTIONS_AT:], options, "options")
    overload = options.pop(OPT_OVERLOAD, None)
    if overload is not None:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise DhcpError("DHCP option 52 (overload) has value %s (expected one byte: 1, 2 "
                            "or 3)" % (overload.hex() or "none"))
        # RFC 2131 section 4.1: the file field is read before sname
        if overload[0] & 1:
            _parse_options(file, options, "the file field")
        if overload[0] & 2:
            _parse_options(sname, options, "the sname field")
        if OPT_OVERLOAD in options:
            raise DhcpError("DHCP option 52 (overload) appears inside an overloaded field")
    for code, value in options.items():
        shape = _SHAPES.get(code)
        if shape and (not value or len(value) % shape[0]
                      or (shape[1] and len(value) != shape[0])):
            raise DhcpError("DHCP option %d has %d bytes of value (expected %s %d)"
                            % (code, len(value), "exactly" if shape[1] else "a multiple of",
                               shape[0]))
    return Packet(op, xid, chaddr[:hlen], options, htype, hops, secs, flags,
                  _bytes_ip(ciaddr), _bytes_ip(yiaddr), _bytes_ip(siaddr), _bytes_ip(giaddr),
                  sname.split(b"\0", 1)[0] if overload is None or not overload[0] & 2 else b"",
                  file.split(b"\0", 1)[0] if overload is None or not overload[0] & 1 else b"")


def _parse_options(area, options, where):
    """Adds the options of ``area`` to ``options``; a repeated code is concatenated (RFC 3396:
    how a value longer than 255 bytes is carried). Stops at END; running out of bytes without
    END is accepted (some clients end with padding only), an option cut off is not."""
    i = 0
    while i < len(area):
        code = area[i]
        if code == OPT_END:
            return
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(area):
            raise DhcpError("DHCP option %d in %s has no length byte" % (code, where))
        length = area[i + 1]
        if i + 2 + length > len(area):
            raise DhcpError("DHCP option %d in %s claims %d bytes but only %d are left"
                            % (code, where, length, len(area) - i - 2))
        options[code] = options.get(code, b"") + area[i + 2:i + 2 + length]
        i += 2 + length


def build(packet):
    """The wire form of ``packet``: message type first, long values split, END, padded."""
    chaddr = bytes(packet.chaddr)
    if len(chaddr) > 16:
        raise DhcpError("hardware address of %d bytes does not fit DHCP's 16" % len(chaddr))
    head = HEADER.pack(packet.op, packet.htype, len(chaddr), packet.hops, packet.xid,
                       packet.secs, packet.flags, _ip_bytes(packet.ciaddr),
                       _ip_bytes(packet.yiaddr), _ip_bytes(packet.siaddr),
                       _ip_bytes(packet.giaddr), chaddr, packet.sname, packet.file)
    out = [head, MAGIC_COOKIE]
    codes = sorted(packet.options, key=lambda c: (c != OPT_MESSAGE_TYPE, c))
    for code in codes:
        if code in (OPT_PAD, OPT_END) or not 0 < code < 255:
            raise DhcpError("DHCP option code %r cannot carry a value" % (code,))
        value = bytes(packet.options[code])
        for start in range(0, max(len(value), 1), 255):
            chunk = value[start:start + 255]
            out.append(bytes((code, len(chunk))) + chunk)
    out.append(bytes((OPT_END,)))
    data = b"".join(out)
    return data + b"\0" * (MIN_PACKET - len(data)) if len(data) < MIN_PACKET else data


def client_key(packet):
    """Who a request is from: option 61 when present, else hardware type + address."""
    raw = packet.options.get(OPT_CLIENT_ID) or bytes((packet.htype,)) + bytes(packet.chaddr)
    return raw.hex()


# -- the server --------------------------------------------------------------------------------

OFFER_HOLD_S = 60       # an offered address is kept for the client this long
DECLINE_HOLD_S = 600    # an address a client found in use is not offered for this long
# what a reply carries when the client sends no parameter request list (option 55)
DEFAULT_PARAMETERS = (OPT_NETMASK, OPT_ROUTER, OPT_DNS, OPT_T1, OPT_T2)


class Server:
    """The lease logic of one server on one link (no relays: giaddr is refused).

    Leases: address (int) -> {"client": key, "chaddr": hex, "hostname": str or None,
    "expires": now-clock seconds, "state": "offered" | "bound" | "released"}. A record
    outlives its lease so the client gets the same address again while it is free.
    ``revision`` grows on every change worth persisting (offers are not: they are short-lived,
    and a DISCOVER flood must not turn into a flood of flash writes).
    """

    def __init__(self, pool_start, pool_end, netmask, server_ip, router, dns, lease_s,
                 leases=None, now=0.0):
        self.first, self.last = ip_to_int(pool_start), ip_to_int(pool_end)
        self.prefix = prefix_of(netmask)
        self.netmask = netmask
        self.mask = ip_to_int(netmask)
        self.server_ip = server_ip
        self.server_int = ip_to_int(server_ip)
        self.router = _checked_list([router] if isinstance(router, str) else router)
        self.dns = _checked_list([dns] if isinstance(dns, str) else dns)
        if self.first > self.last:
            raise DhcpError("DHCP pool %s-%s: the start is after the end" % (pool_start, pool_end))
        network = self.server_int & self.mask
        if (self.first & self.mask) != network or (self.last & self.mask) != network:
            raise DhcpError("DHCP pool %s-%s is not inside the server's subnet %s/%d"
                            % (pool_start, pool_end, int_to_ip(network), self.prefix))
        if not isinstance(lease_s, int) or lease_s < 10:
            raise DhcpError("DHCP lease time %r: give whole seconds, at least 10" % (lease_s,))
        self.lease_s = lease_s
        self.leases = {}
        self.declined = {}      # address -> until
        self.revision = 0
        if leases is not None:
            self.import_leases(leases, now)

    # persistence

    def export_leases(self, now):
        """A JSON-able document of the leases; times as seconds remaining after ``now``."""
        return {"version": 1,
                "leases": [{"address": int_to_ip(a), "client": r["client"],
                            "chaddr": r["chaddr"], "hostname": r["hostname"], "state": r["state"],
                            "remaining_s": max(0, int(r["expires"] - now + 0.999))}
                           for a, r in sorted(self.leases.items())],
                "declined": [{"address": int_to_ip(a), "remaining_s": int(u - now + 0.999)}
                             for a, u in sorted(self.declined.items()) if u > now]}

    def import_leases(self, document, now):
        """Loads what export_leases wrote; the remaining time counts from ``now``."""
        try:
            if document.get("version") != 1:
                raise DhcpError("DHCP lease document has version %r (this edgert reads 1)"
                                % (document.get("version"),))
            leases = {}
            for item in document["leases"]:
                if item["state"] not in ("offered", "bound", "released"):
                    raise DhcpError("DHCP lease of %s has state %r" % (item["address"],
                                                                       item["state"]))
                leases[ip_to_int(item["address"])] = {
                    "client": str(item["client"]), "chaddr": str(item["chaddr"]),
                    "hostname": item["hostname"], "state": item["state"],
                    "expires": now + float(item["remaining_s"])}
            declined = {ip_to_int(item["address"]): now + float(item["remaining_s"])
                        for item in document["declined"]}
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise DhcpError("DHCP lease document is malformed (%s: %s); remove it to start "
                            "with no leases" % (type(e).__name__, e))
        self.leases, self.declined = leases, declined

    # requests

    def handle(self, data, now):
        """Replies to one message from a client: a list of (bytes, destination), destination
        "broadcast" or an address (the client's port 68 either way). Messages that are not
        for us, relayed or malformed get no reply (DhcpError is raised only for malformed
        ones, so the edge can count or log them)."""
        packet = parse(data)
        if packet.op != BOOTREQUEST or packet.giaddr != "0.0.0.0":
            return []
        kind = packet.message_type
        handler = {DISCOVER: self._discover, REQUEST: self._request, RELEASE: self._release,
                   DECLINE: self._decline, INFORM: self._inform}.get(kind)
        if handler is None:
            return []
        return handler(packet, client_key(packet), now)

    def _discover(self, packet, key, now):
        address = self._choose(packet, key, now)
        if address is None:
            return []
        record = self.leases.get(address)
        if record is None or record["client"] != key or not (
                record["state"] == "bound" and record["expires"] > now):
            self._record(address, packet, key, "offered", now + OFFER_HOLD_S)
        return [self._reply(packet, OFFER, address, now)]

    def _request(self, packet, key, now):
        server_id = packet.address_option(OPT_SERVER_ID)
        requested = packet.address_option(OPT_REQUESTED_IP)
        if server_id is not None:                                   # SELECTING
            if server_id != self.server_ip:
                self._forget_offer(key)
                return []
            address = ip_to_int(requested) if requested else None
            record = self.leases.get(address)
            if address is None or packet.ciaddr != "0.0.0.0" or record is None or \
                    record["client"] != key or record["state"] == "released":
                return [self._nak(packet, "no offer of that address to this client")]
            return [self._ack(packet, address, key, now)]
        wanted = requested if requested is not None else packet.ciaddr  # INIT-REBOOT / RENEW
        if wanted == "0.0.0.0":
            return [self._nak(packet, "REQUEST names no address")]
        address = ip_to_int(wanted)
        if (address & self.mask) != (self.server_int & self.mask):
            return [self._nak(packet, "%s is not on this network" % wanted)]
        if not self._available_to(address, key, now):
            return [self._nak(packet, "%s is not available to this client" % wanted)]
        return [self._ack(packet, address, key, now)]

    def _release(self, packet, key, now):
        if packet.ciaddr == "0.0.0.0":
            return []
        record = self.leases.get(ip_to_int(packet.ciaddr))
        if record is not None and record["client"] == key and record["state"] != "released":
            record["state"], record["expires"] = "released", now
            self.revision += 1
        return []

    def _decline(self, packet, key, now):
        requested = packet.address_option(OPT_REQUESTED_IP)
        if requested is None:
            return []
        address = ip_to_int(requested)
        record = self.leases.get(address)
        if record is not None and record["client"] == key:
            del self.leases[address]
            self.declined[address] = now + DECLINE_HOLD_S
            self.revision += 1
        return []

    def _inform(self, packet, key, now):
        if packet.ciaddr == "0.0.0.0":
            return []
        reply = self._reply(packet, ACK, None, now)
        return [reply]

    # addresses

    def _available_to(self, address, key, now):
        """May ``key`` have ``address``: in the pool, not declined, not the server's, and
        not held by another client."""
        host = address & ~self.mask & 0xFFFFFFFF
        if not self.first <= address <= self.last or address == self.server_int or \
                host in (0, ~self.mask & 0xFFFFFFFF):   # the network and broadcast addresses
            return False
        if self.declined.get(address, 0) > now:
            return False
        record = self.leases.get(address)
        return record is None or record["client"] == key or record["expires"] <= now

    def _choose(self, packet, key, now):
        """The address to offer: the client's current or previous one, else the one it asks
        for, else a stable pick from a hash of its key (the same client tends to get the
        same address even after the lease records are gone), never-used addresses first."""
        own = [a for a, r in self.leases.items() if r["client"] == key]
        own.sort(key=lambda a: -self.leases[a]["expires"])
        for address in own:
            if self._available_to(address, key, now):
                return address
        requested = packet.address_option(OPT_REQUESTED_IP)
        if requested is not None and self._available_to(ip_to_int(requested), key, now):
            return ip_to_int(requested)
        size = self.last - self.first + 1
        start = zlib.crc32(key.encode()) % size
        reusable = None
        for step in range(size):
            address = self.first + (start + step) % size
            if not self._available_to(address, key, now):
                continue
            record = self.leases.get(address)
            if record is None:
                return address
            if reusable is None or record["expires"] < self.leases[reusable]["expires"]:
                reusable = address
        return reusable

    def _record(self, address, packet, key, state, expires):
        for other, record in list(self.leases.items()):
            # one address per client: a client moving on frees what it held
            if other != address and record["client"] == key:
                del self.leases[other]
        hostname = packet.options.get(OPT_HOSTNAME)
        previous = self.leases.get(address)
        if hostname:
            hostname = hostname.decode("utf-8", "replace")
        elif previous is not None and previous["client"] == key:
            hostname = previous["hostname"]
        self.leases[address] = {
            "client": key, "chaddr": bytes(packet.chaddr).hex(), "state": state,
            "hostname": hostname or None, "expires": expires}
        if state != "offered":  # an offer lost in a restart costs the client one DISCOVER
            self.revision += 1

    def _forget_offer(self, key):
        for address, record in list(self.leases.items()):
            if record["client"] == key and record["state"] == "offered":
                del self.leases[address]

    def _ack(self, packet, address, key, now):
        self._record(address, packet, key, "bound", now + self.lease_s)
        return self._reply(packet, ACK, address, now)

    # replies

    def _reply(self, packet, kind, address, now):
        options = {OPT_MESSAGE_TYPE: bytes((kind,)), OPT_SERVER_ID: _ip_bytes(self.server_ip)}
        if OPT_CLIENT_ID in packet.options:     # RFC 6842
            options[OPT_CLIENT_ID] = packet.options[OPT_CLIENT_ID]
        if address is not None:
            options[OPT_LEASE_TIME] = struct.pack("!I", self.lease_s)
        wanted = packet.options.get(OPT_PARAMETER_LIST)
        wanted = set(wanted) if wanted is not None else set(DEFAULT_PARAMETERS)
        available = {OPT_NETMASK: _ip_bytes(self.netmask)}
        if self.router:
            available[OPT_ROUTER] = b"".join(_ip_bytes(r) for r in self.router)
        if self.dns:
            available[OPT_DNS] = b"".join(_ip_bytes(d) for d in self.dns)
        if address is not None:
            available[OPT_T1] = struct.pack("!I", self.lease_s // 2)
            available[OPT_T2] = struct.pack("!I", self.lease_s * 7 // 8)
        for code, value in available.items():
            if code in wanted:
                options[code] = value
        reply = Packet(BOOTREPLY, packet.xid, packet.chaddr, options, packet.htype,
                       flags=packet.flags, ciaddr=packet.ciaddr, siaddr=self.server_ip,
                       yiaddr=int_to_ip(address) if address is not None else "0.0.0.0")
        return build(reply), self._destination(packet)

    def _nak(self, packet, why):
        options = {OPT_MESSAGE_TYPE: bytes((NAK,)), OPT_SERVER_ID: _ip_bytes(self.server_ip),
                   OPT_MESSAGE: why.encode()}
        if OPT_CLIENT_ID in packet.options:
            options[OPT_CLIENT_ID] = packet.options[OPT_CLIENT_ID]
        reply = Packet(BOOTREPLY, packet.xid, packet.chaddr, options, packet.htype,
                       flags=packet.flags)
        return build(reply), BROADCAST

    @staticmethod
    def _destination(packet):
        """RFC 2131 section 4.1, without relays: a client with an address (ciaddr) gets
        unicast; one without gets a broadcast, whether or not it set the broadcast flag,
        since unicast to yiaddr would need an ARP entry we do not write (the RFC allows the
        broadcast when unicast is not possible)."""
        return packet.ciaddr if packet.ciaddr != "0.0.0.0" else BROADCAST


# -- the client --------------------------------------------------------------------------------

INIT, SELECTING, REQUESTING, BOUND, RENEWING, REBINDING, REBOOTING = (
    "init", "selecting", "requesting", "bound", "renewing", "rebinding", "rebooting")
FIRST_RETRY_S = 4
MAX_RETRY_S = 64
REQUEST_TRIES = 4           # REQUESTs sent after an OFFER before discovering again
CLIENT_PARAMETERS = bytes((OPT_NETMASK, OPT_ROUTER, OPT_DNS, OPT_LEASE_TIME, OPT_SERVER_ID,
                           OPT_T1, OPT_T2))


class Client:
    """One interface's DHCP client life cycle (RFC 2131 section 4.4).

    ``jitter()`` gives the random part of a retransmission delay (RFC: -1..+1 s) and
    ``new_xid()`` a transaction id; both come from the edge so this stays deterministic.
    Every call returns a list of actions: ("send", bytes, "broadcast" or server address),
    ("bound", lease), ("renewed", lease), ("expired",) and last ("wait_until", t): call
    tick() then. A lease is {address, prefix, router, dns, lease_s, server, t1_s, t2_s}.
    ``start(now, previous)`` with the lease the interface still holds (a restarted daemon)
    verifies it first (INIT-REBOOT, section 3.2): kept on an ACK ("renewed" when nothing
    changed), "expired" on a NAK, and DISCOVER after REQUEST_TRIES unanswered requests.
    """

    def __init__(self, chaddr, hostname=None, jitter=None, new_xid=None):
        self.chaddr = bytes(chaddr)
        self.hostname = hostname
        self.jitter = jitter or (lambda: 0.0)
        self._xid_counter = zlib.crc32(self.chaddr)
        self.new_xid = new_xid or self._next_xid
        self.state = INIT
        self.xid = 0
        self.lease = None
        self.bound_at = None
        self.offer = None           # (address, server) while REQUESTING
        self.deadline = None        # next retransmission or state change
        self.tries = 0

    def _next_xid(self):
        self._xid_counter = (self._xid_counter * 1103515245 + 12345) & 0xFFFFFFFF
        return self._xid_counter

    # entry points

    def start(self, now, previous=None):
        if previous is None:
            return self._discover(now, [])
        self.state, self.lease, self.bound_at = REBOOTING, dict(previous), now
        self.offer = (previous["address"], None)
        self.xid, self.tries = self.new_xid(), 0
        actions = []
        self._send_request(now, actions)
        return self._wait(actions)

    def tick(self, now):
        actions = []
        if self.deadline is not None and now >= self.deadline:
            if self.state == SELECTING:
                self._send_discover(now, actions)
            elif self.state in (REQUESTING, REBOOTING):
                if self.tries >= REQUEST_TRIES:
                    if self.state == REBOOTING:  # nobody confirms it: start over
                        actions.append(("expired",))
                    return self._discover(now, actions)
                self._send_request(now, actions)
            elif self.state in (BOUND, RENEWING, REBINDING):
                self._lease_timers(now, actions)
        return self._wait(actions)

    def receive(self, data, now):
        try:
            packet = parse(data)
        except DhcpError:
            return self._wait([])
        if packet.op != BOOTREPLY or packet.xid != self.xid or \
                bytes(packet.chaddr) != self.chaddr:
            return self._wait([])
        kind = packet.message_type
        actions = []
        if kind == OFFER and self.state == SELECTING and packet.yiaddr != "0.0.0.0" and \
                packet.address_option(OPT_SERVER_ID):
            self.offer = (packet.yiaddr, packet.address_option(OPT_SERVER_ID))
            self.state, self.tries = REQUESTING, 0
            self._send_request(now, actions)
        elif kind == ACK and self.state in (REQUESTING, RENEWING, REBINDING, REBOOTING) and \
                packet.yiaddr != "0.0.0.0":
            lease = self._lease_from(packet)
            if lease is not None:
                same = self.lease is not None and self.lease["address"] == lease["address"] \
                    and self.lease["prefix"] == lease["prefix"]
                renewal = self.state in (RENEWING, REBINDING, REBOOTING) and same
                self.lease, self.bound_at, self.state = lease, now, BOUND
                self.deadline = now + lease["t1_s"]
                actions.append(("renewed", lease) if renewal else ("bound", lease))
        elif kind == NAK and self.state in (REQUESTING, RENEWING, REBINDING, REBOOTING):
            server = packet.address_option(OPT_SERVER_ID)
            expected = self.offer[1] if self.state == REQUESTING else self.lease["server"]
            if self.state not in (REBINDING, REBOOTING) and server is not None and \
                    server != expected:
                return self._wait([])   # another server's NAK about another exchange
            if self.lease is not None:
                actions.append(("expired",))
                self.lease = None
            return self._discover(now, actions)
        return self._wait(actions)

    # states

    def _discover(self, now, actions):
        self.state, self.lease, self.offer = SELECTING, None, None
        self.xid, self.tries = self.new_xid(), 0
        self._send_discover(now, actions)
        return self._wait(actions)

    def _retry_in(self):
        delay = min(FIRST_RETRY_S << self.tries, MAX_RETRY_S)
        self.tries += 1
        return max(1.0, delay + self.jitter())

    def _send_discover(self, now, actions):
        actions.append(("send", self._message(DISCOVER), BROADCAST))
        self.deadline = now + self._retry_in()

    def _send_request(self, now, actions):
        address, server = self.offer
        actions.append(("send", self._message(REQUEST, requested=address, server=server),
                        BROADCAST))
        self.deadline = now + self._retry_in()

    def _lease_timers(self, now, actions):
        lease = self.lease
        t2 = self.bound_at + lease["t2_s"]
        end = self.bound_at + lease["lease_s"]
        if now >= end:
            actions.append(("expired",))
            self._discover(now, actions)
            return
        if self.state == BOUND:         # T1 is due: one xid for the renewal's messages
            self.state, self.xid = RENEWING, self.new_xid()
        if self.state == RENEWING and now >= t2:
            self.state, self.xid = REBINDING, self.new_xid()
        if self.state == RENEWING:
            destination, limit = lease["server"], t2
        else:
            destination, limit = BROADCAST, end
        actions.append(("send", self._message(REQUEST, ciaddr=lease["address"]), destination))
        # RFC 2131 4.4.5: wait half the time left, at least 60 s (but never past the limit)
        self.deadline = min(limit, now + max((limit - now) / 2, 60))

    def _message(self, kind, requested=None, server=None, ciaddr="0.0.0.0"):
        options = {OPT_MESSAGE_TYPE: bytes((kind,)),
                   OPT_CLIENT_ID: b"\x01" + self.chaddr,
                   OPT_PARAMETER_LIST: CLIENT_PARAMETERS,
                   OPT_MAX_SIZE: struct.pack("!H", 1500)}
        if requested:
            options[OPT_REQUESTED_IP] = _ip_bytes(requested)
        if server:
            options[OPT_SERVER_ID] = _ip_bytes(server)
        if self.hostname:
            options[OPT_HOSTNAME] = self.hostname.encode()
        # without an address we cannot receive unicast: ask for broadcast replies
        flags = BROADCAST_FLAG if ciaddr == "0.0.0.0" else 0
        return build(Packet(BOOTREQUEST, self.xid, self.chaddr, options, flags=flags,
                            ciaddr=ciaddr))

    def _lease_from(self, packet):
        lease_s = packet.seconds_option(OPT_LEASE_TIME)
        server = packet.address_option(OPT_SERVER_ID) or (
            self.lease["server"] if self.lease else None)
        if lease_s is None or server is None:
            return None
        netmask = packet.address_option(OPT_NETMASK)
        try:
            prefix = prefix_of(netmask) if netmask else _classful_prefix(packet.yiaddr)
        except DhcpError:
            return None
        t1 = packet.seconds_option(OPT_T1)
        t2 = packet.seconds_option(OPT_T2)
        if t2 is None or not 0 < t2 <= lease_s:
            t2 = lease_s * 7 // 8
        if t1 is None or not 0 < t1 <= t2:
            t1 = min(lease_s // 2, t2)
        routers = packet.address_list(OPT_ROUTER)
        return {"address": packet.yiaddr, "prefix": prefix,
                "router": routers[0] if routers else None,
                "dns": packet.address_list(OPT_DNS), "lease_s": lease_s, "server": server,
                "t1_s": t1, "t2_s": t2}

    def _wait(self, actions):
        actions.append(("wait_until", self.deadline))
        return actions


def _classful_prefix(address):
    first = ip_to_int(address) >> 24
    return 8 if first < 128 else 16 if first < 192 else 24
