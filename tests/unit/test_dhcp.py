"""The pure DHCP core (edgert/net/dhcp.py): packets, the server's leases, the client's life
cycle. Real peers are in tests/priv/test_dhcp_peers.py."""

import json
import struct

import pytest

from edgert.net import dhcp
from edgert.net.dhcp import (ACK, BROADCAST, DECLINE, DISCOVER, INFORM, NAK, OFFER, RELEASE,
                             REQUEST, Client, DhcpError, Packet, Server, build, parse)

MAC = bytes.fromhex("020000000001")
OTHER_MAC = bytes.fromhex("020000000002")
SERVER_IP = "10.0.0.1"


def server(lease_s=3600, pool=("10.0.0.10", "10.0.0.20"), **kw):
    return Server(pool[0], pool[1], "255.255.255.0", SERVER_IP, SERVER_IP,
                  ["10.0.0.53", "10.0.0.54"], lease_s, **kw)


def request(kind, mac=MAC, xid=7, ciaddr="0.0.0.0", flags=0, giaddr="0.0.0.0", **options):
    opts = {dhcp.OPT_MESSAGE_TYPE: bytes((kind,))}
    for name, value in options.items():
        code = {"requested": dhcp.OPT_REQUESTED_IP, "server_id": dhcp.OPT_SERVER_ID,
                "hostname": dhcp.OPT_HOSTNAME, "prl": dhcp.OPT_PARAMETER_LIST,
                "client_id": dhcp.OPT_CLIENT_ID}[name]
        if name in ("requested", "server_id"):
            value = bytes(int(p) for p in value.split("."))
        opts[code] = value
    return build(Packet(dhcp.BOOTREQUEST, xid, mac, opts, flags=flags, ciaddr=ciaddr,
                        giaddr=giaddr))


def one_reply(srv, data, now=0.0):
    replies = srv.handle(data, now)
    assert len(replies) == 1, replies
    payload, destination = replies[0]
    return parse(payload), destination


def lease_of(srv, mac=MAC, now=0.0, **options):
    offer, _ = one_reply(srv, request(DISCOVER, mac=mac, **options), now)
    ack, _ = one_reply(srv, request(REQUEST, mac=mac, requested=offer.yiaddr,
                                    server_id=SERVER_IP, **options), now)
    assert ack.message_type == ACK
    return ack


# -- packets -------------------------------------------------------------------------------------

def test_build_then_parse_round_trips():
    packet = Packet(dhcp.BOOTREPLY, 0xDEADBEEF, MAC, {53: b"\x02", 1: b"\xff\xff\xff\x00",
                                                      12: b"x" * 600},
                    flags=0x8000, ciaddr="1.2.3.4", yiaddr="10.0.0.9", siaddr=SERVER_IP)
    data = build(packet)
    assert len(data) >= dhcp.MIN_PACKET
    back = parse(data)
    assert (back.op, back.xid, back.chaddr, back.flags) == (2, 0xDEADBEEF, MAC, 0x8000)
    assert (back.ciaddr, back.yiaddr, back.siaddr) == ("1.2.3.4", "10.0.0.9", SERVER_IP)
    # a 600-byte value goes out as three options and comes back as one (RFC 3396)
    assert back.options[12] == b"x" * 600
    assert back.message_type == OFFER


def raw(options, cookie=dhcp.MAGIC_COOKIE, hlen=6, op=1, sname=b"", file=b""):
    head = dhcp.HEADER.pack(op, 1, hlen, 0, 1, 0, 0, b"\0" * 4, b"\0" * 4, b"\0" * 4,
                            b"\0" * 4, MAC.ljust(16, b"\0"), sname, file)
    return head + cookie + options


@pytest.mark.parametrize("data,why", [
    (b"", "shorter than"),
    (raw(b"")[:239], "shorter than"),
    (raw(b"\x35\x01\x01\xff", cookie=b"\x63\x82\x53\x00"), "magic cookie"),
    (raw(b"\x35\x01\x01\xff", op=3), "op 3"),
    (raw(b"\x35\x01\x01\xff", hlen=17), "hardware address length"),
    (raw(b"\x35\x05\x01"), "claims 5 bytes but only 1"),
    (raw(b"\x35\x01\x01\x0c"), "no length byte"),
    (raw(b"\x35\x01\x01\x35\x01\x03\xff"), "option 53 has 2 bytes"),   # duplicate type
    (raw(b"\x35\x00\xff"), "option 53 has 0 bytes"),
    (raw(b"\x32\x03\x0a\x00\x00\xff"), "option 50 has 3 bytes"),
    (raw(b"\x03\x06" + b"\x0a" * 6 + b"\xff"), "a multiple of 4"),
    (raw(b"\x34\x01\x07\xff"), "52 .overload. has value 07"),
    (raw(b"\x34\x00"), "52 .overload. has value none"),   # found by the fuzz test
    (raw(b"\x34\x02\x01\x01\xff"), "52 .overload. has value 0101"),
    (raw(b"\x34\x01\x01\xff", file=b"\x34\x01\x02\xff".ljust(128, b"\0")),
     "inside an overloaded field"),
    (raw(b"\x34\x01\x01\xff", file=b"\x0c\xf0abc".ljust(128, b"\0")), "in the file field"),
], ids=lambda value: value.replace(" ", "-") if isinstance(value, str) else "")
def test_parse_refuses_malformed_messages_with_a_reason(data, why):
    with pytest.raises(DhcpError, match=why):
        parse(data)


def test_parse_pad_end_and_what_follows_end():
    # pads are skipped; everything after END is ignored, even garbage
    packet = parse(raw(b"\x00\x00\x35\x01\x01\x00\xff\x35\x99garbage"))
    assert packet.message_type == DISCOVER and list(packet.options) == [53]
    # no END at all (some clients just stop) is accepted
    assert parse(raw(b"\x35\x01\x03")).message_type == REQUEST


def test_parse_overloaded_file_and_sname():
    file = b"\x0c\x03box\xff".ljust(128, b"\0")
    sname = b"\x32\x04\x0a\x00\x00\x05\xff".ljust(64, b"\0")
    packet = parse(raw(b"\x35\x01\x01\x34\x01\x03\xff", sname=sname, file=file))
    assert packet.options[12] == b"box"
    assert packet.address_option(dhcp.OPT_REQUESTED_IP) == "10.0.0.5"
    assert dhcp.OPT_OVERLOAD not in packet.options
    assert packet.file == b"" and packet.sname == b""


def test_parse_hostile_bytes_raise_only_dhcp_error():
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=400, deadline=None)
    @hypothesis.given(st.binary(max_size=80), st.integers(0, 3))
    def check(options, overload):
        srv = server()
        client = Client(MAC)
        client.start(0)
        for data in (raw(options), raw(b"\x34\x01" + bytes((overload,)) + options,
                                       file=options[:128].ljust(128, b"\0"))):
            try:
                parse(data)
            except DhcpError:
                pass
            try:
                srv.handle(data, 1.0)
            except DhcpError:
                pass
            client.receive(data, 1.0)     # the client drops what it cannot parse
    check()


def test_build_refuses_what_does_not_fit():
    with pytest.raises(DhcpError, match="16"):
        build(Packet(chaddr=b"x" * 17))
    with pytest.raises(DhcpError, match="code"):
        build(Packet(chaddr=MAC, options={255: b"x"}))


def test_addresses_and_masks():
    assert dhcp.prefix_of("255.255.255.0") == 24 and dhcp.prefix_of("255.255.255.255") == 32
    assert dhcp.netmask_of(20) == "255.255.240.0"
    with pytest.raises(DhcpError, match="not contiguous"):
        dhcp.prefix_of("255.0.255.0")
    for bad in ("10.0.0", "10.0.0.256", "a.b.c.d", None, "1.2.3.4 "):
        with pytest.raises(DhcpError, match="IPv4"):
            dhcp.ip_to_int(bad)


# -- server ----------------------------------------------------------------------------------------

def test_server_configuration_errors():
    with pytest.raises(DhcpError, match="start is after the end"):
        server(pool=("10.0.0.20", "10.0.0.10"))
    with pytest.raises(DhcpError, match="not inside the server's subnet"):
        server(pool=("10.0.0.10", "10.0.1.20"))
    with pytest.raises(DhcpError, match="at least 10"):
        server(lease_s=5)
    with pytest.raises(DhcpError, match="IPv4"):
        Server("10.0.0.10", "10.0.0.20", "255.255.255.0", SERVER_IP, "router", [], 60)


def test_discover_offer_request_ack_with_the_options():
    srv = server()
    offer, destination = one_reply(srv, request(DISCOVER, hostname=b"cam"))
    assert offer.message_type == OFFER and destination == BROADCAST
    assert offer.op == dhcp.BOOTREPLY and offer.xid == 7 and offer.chaddr == MAC
    assert "10.0.0.10" <= offer.yiaddr <= "10.0.0.20"
    assert offer.address_option(dhcp.OPT_SERVER_ID) == SERVER_IP
    assert offer.seconds_option(dhcp.OPT_LEASE_TIME) == 3600
    assert offer.address_option(dhcp.OPT_NETMASK) == "255.255.255.0"
    assert offer.address_list(dhcp.OPT_ROUTER) == [SERVER_IP]
    assert offer.address_list(dhcp.OPT_DNS) == ["10.0.0.53", "10.0.0.54"]
    assert offer.seconds_option(dhcp.OPT_T1) == 1800
    assert offer.seconds_option(dhcp.OPT_T2) == 3150
    ack, destination = one_reply(srv, request(REQUEST, requested=offer.yiaddr,
                                              server_id=SERVER_IP))
    assert ack.message_type == ACK and ack.yiaddr == offer.yiaddr
    assert destination == BROADCAST
    record = srv.leases[dhcp.ip_to_int(ack.yiaddr)]
    assert record["state"] == "bound" and record["expires"] == 3600
    assert record["hostname"] == "cam"      # kept from the DISCOVER


def test_parameter_request_list_is_honoured():
    srv = server()
    offer, _ = one_reply(srv, request(DISCOVER, prl=bytes((dhcp.OPT_DNS,))))
    assert dhcp.OPT_DNS in offer.options
    assert dhcp.OPT_ROUTER not in offer.options and dhcp.OPT_NETMASK not in offer.options
    # these are not optional (RFC 2131 table 3)
    for code in (dhcp.OPT_MESSAGE_TYPE, dhcp.OPT_SERVER_ID, dhcp.OPT_LEASE_TIME):
        assert code in offer.options


def test_client_identifier_is_the_key_and_is_echoed():
    srv = server()
    ack = lease_of(srv, client_id=b"\xffmy-id")
    assert ack.options[dhcp.OPT_CLIENT_ID] == b"\xffmy-id"
    # the same identifier from another MAC is the same client
    ack2 = lease_of(srv, mac=OTHER_MAC, client_id=b"\xffmy-id")
    assert ack2.yiaddr == ack.yiaddr and len(srv.leases) == 1


def test_offers_are_stable_and_distinct():
    srv = server()
    first, _ = one_reply(srv, request(DISCOVER))
    again, _ = one_reply(srv, request(DISCOVER), 5.0)
    assert again.yiaddr == first.yiaddr
    other, _ = one_reply(srv, request(DISCOVER, mac=OTHER_MAC))
    assert other.yiaddr != first.yiaddr
    # a fresh server (no records) picks the same address for the same client
    fresh, _ = one_reply(server(), request(DISCOVER))
    assert fresh.yiaddr == first.yiaddr


def test_requested_address_is_offered_when_free():
    srv = server()
    offer, _ = one_reply(srv, request(DISCOVER, requested="10.0.0.17"))
    assert offer.yiaddr == "10.0.0.17"
    taken, _ = one_reply(srv, request(DISCOVER, mac=OTHER_MAC, requested="10.0.0.17"))
    assert taken.yiaddr != "10.0.0.17"
    outside, _ = one_reply(srv, request(DISCOVER, mac=b"\x02" * 6, requested="10.0.0.99"))
    assert outside.yiaddr != "10.0.0.99"


def test_previous_lease_is_preferred_over_the_requested_one():
    srv = server()
    ack = lease_of(srv)
    offer, _ = one_reply(srv, request(DISCOVER, requested="10.0.0.19"), 10.0)
    assert offer.yiaddr == ack.yiaddr
    # released, it is still this client's when it comes back
    srv.handle(request(RELEASE, ciaddr=ack.yiaddr), 20.0)
    offer, _ = one_reply(srv, request(DISCOVER), 30.0)
    assert offer.yiaddr == ack.yiaddr


def test_selecting_another_server_drops_our_offer():
    srv = server()
    one_reply(srv, request(DISCOVER))
    assert srv.handle(request(REQUEST, requested="10.0.0.10", server_id="10.0.0.2"), 1) == []
    assert srv.leases == {}


def test_selecting_an_address_we_did_not_offer_is_nakked():
    srv = server()
    offer, _ = one_reply(srv, request(DISCOVER))
    other = "10.0.0.13" if offer.yiaddr != "10.0.0.13" else "10.0.0.14"
    nak, destination = one_reply(srv, request(REQUEST, requested=other,
                                              server_id=SERVER_IP, xid=9))
    assert nak.message_type == NAK and destination == BROADCAST
    assert nak.xid == 9 and nak.yiaddr == "0.0.0.0" and dhcp.OPT_LEASE_TIME not in nak.options
    assert b"no offer" in nak.options[dhcp.OPT_MESSAGE]


def test_init_reboot():
    srv = server()
    ack = lease_of(srv)
    again, _ = one_reply(srv, request(REQUEST, requested=ack.yiaddr), 100.0)
    assert again.message_type == ACK and again.yiaddr == ack.yiaddr
    # another client asking for it, or for an address off this network: NAK
    nak, _ = one_reply(srv, request(REQUEST, mac=OTHER_MAC, requested=ack.yiaddr), 100.0)
    assert nak.message_type == NAK
    nak, _ = one_reply(srv, request(REQUEST, requested="192.168.1.5"), 100.0)
    assert nak.message_type == NAK and b"not on this network" in nak.options[dhcp.OPT_MESSAGE]
    # unknown to us but free in the pool: we are the only server on the link, so ACK
    fresh = server()
    ack2, _ = one_reply(fresh, request(REQUEST, mac=OTHER_MAC, requested="10.0.0.15"))
    assert ack2.message_type == ACK and ack2.yiaddr == "10.0.0.15"


def test_renewing_is_unicast_and_extends_the_lease():
    srv = server(lease_s=100)
    ack = lease_of(srv)
    renewed, destination = one_reply(srv, request(REQUEST, ciaddr=ack.yiaddr), 50.0)
    assert renewed.message_type == ACK and renewed.yiaddr == ack.yiaddr
    assert renewed.ciaddr == ack.yiaddr
    assert destination == ack.yiaddr        # RFC 2131 4.1: the client has its address
    assert srv.leases[dhcp.ip_to_int(ack.yiaddr)]["expires"] == 150.0


def test_renewing_an_address_held_by_another_client_is_nakked():
    srv = server()
    ack = lease_of(srv)
    nak, destination = one_reply(srv, request(REQUEST, mac=OTHER_MAC, ciaddr=ack.yiaddr), 5)
    assert nak.message_type == NAK and destination == BROADCAST


def test_broadcast_flag_is_kept_and_relayed_messages_are_refused():
    srv = server()
    offer, destination = one_reply(srv, request(DISCOVER, flags=dhcp.BROADCAST_FLAG))
    assert destination == BROADCAST and offer.flags == dhcp.BROADCAST_FLAG
    assert srv.handle(request(DISCOVER, giaddr="10.9.9.9"), 0) == []


def test_lease_expiry_frees_the_address_for_others():
    srv = server(lease_s=60, pool=("10.0.0.10", "10.0.0.10"))
    ack = lease_of(srv)
    assert srv.handle(request(DISCOVER, mac=OTHER_MAC), 30.0) == []     # pool exhausted
    offer, _ = one_reply(srv, request(DISCOVER, mac=OTHER_MAC), 61.0)
    assert offer.yiaddr == ack.yiaddr


def test_an_unanswered_offer_is_held_only_for_a_while():
    srv = server(pool=("10.0.0.10", "10.0.0.10"))
    one_reply(srv, request(DISCOVER))
    assert srv.handle(request(DISCOVER, mac=OTHER_MAC), 10.0) == []
    offer, _ = one_reply(srv, request(DISCOVER, mac=OTHER_MAC), dhcp.OFFER_HOLD_S + 1.0)
    assert offer.yiaddr == "10.0.0.10"


def test_release():
    srv = server()
    ack = lease_of(srv)
    revision = srv.revision
    # a RELEASE from someone else changes nothing
    assert srv.handle(request(RELEASE, mac=OTHER_MAC, ciaddr=ack.yiaddr), 10.0) == []
    assert srv.revision == revision
    assert srv.handle(request(RELEASE, ciaddr=ack.yiaddr), 10.0) == []
    record = srv.leases[dhcp.ip_to_int(ack.yiaddr)]
    assert record["state"] == "released" and record["expires"] == 10.0
    offer, _ = one_reply(srv, request(DISCOVER, mac=OTHER_MAC, requested=ack.yiaddr), 11.0)
    assert offer.yiaddr == ack.yiaddr


def test_decline_marks_the_address_bad_for_a_while():
    srv = server(pool=("10.0.0.10", "10.0.0.11"))
    ack = lease_of(srv)
    assert srv.handle(request(DECLINE, requested=ack.yiaddr, server_id=SERVER_IP), 1.0) == []
    assert dhcp.ip_to_int(ack.yiaddr) not in srv.leases
    offer, _ = one_reply(srv, request(DISCOVER), 2.0)
    assert offer.yiaddr != ack.yiaddr
    nak, _ = one_reply(srv, request(REQUEST, mac=OTHER_MAC, requested=ack.yiaddr), 3.0)
    assert nak.message_type == NAK
    later, _ = one_reply(srv, request(DISCOVER, mac=b"\x02" * 6, requested=ack.yiaddr),
                         dhcp.DECLINE_HOLD_S + 2.0)
    assert later.yiaddr == ack.yiaddr


def test_inform_gets_an_ack_without_a_lease():
    srv = server()
    ack, destination = one_reply(srv, request(INFORM, ciaddr="10.0.0.200"))
    assert ack.message_type == ACK and destination == "10.0.0.200"
    assert ack.yiaddr == "0.0.0.0" and dhcp.OPT_LEASE_TIME not in ack.options
    assert dhcp.OPT_T1 not in ack.options
    assert ack.address_list(dhcp.OPT_DNS) == ["10.0.0.53", "10.0.0.54"]
    assert srv.leases == {}
    assert srv.handle(request(INFORM), 0) == []     # no ciaddr: nowhere to answer


def test_replies_and_other_types_are_ignored():
    srv = server()
    reply = build(Packet(dhcp.BOOTREPLY, 1, MAC, {53: bytes((DISCOVER,))}))
    assert srv.handle(reply, 0) == []
    assert srv.handle(request(OFFER), 0) == []
    assert srv.handle(build(Packet(chaddr=MAC)), 0) == []    # plain BOOTP: no type


def test_network_broadcast_and_server_addresses_are_never_offered():
    srv = Server("10.0.0.0", "10.0.0.3", "255.255.255.252", "10.0.0.1", None, None, 60)
    offers = set()
    for n in range(4):
        replies = srv.handle(request(DISCOVER, mac=bytes((2, 0, 0, 0, 0, n))), 0)
        offers |= {parse(r[0]).yiaddr for r in replies}
    assert offers == {"10.0.0.2"}


def test_leases_survive_export_and_import_through_json():
    srv = server(lease_s=100)
    ack = lease_of(srv, hostname=b"cam")
    lease_of(srv, mac=OTHER_MAC)
    srv.handle(request(RELEASE, mac=OTHER_MAC, ciaddr=lease_of(srv, mac=OTHER_MAC).yiaddr), 5)
    bad = lease_of(srv, mac=b"\x02" * 6)
    srv.handle(request(DECLINE, mac=b"\x02" * 6, requested=bad.yiaddr), 6.0)
    document = json.loads(json.dumps(srv.export_leases(40.0)))
    # the clock restarts (a reboot): remaining time counts from the import
    restored = server(lease_s=100, leases=document, now=1000.0)
    record = restored.leases[dhcp.ip_to_int(ack.yiaddr)]
    assert record["expires"] == 1060.0 and record["hostname"] == "cam"
    assert restored.declined == {dhcp.ip_to_int(bad.yiaddr): 1000.0 + dhcp.DECLINE_HOLD_S - 34}
    offer, _ = one_reply(restored, request(DISCOVER), 1001.0)
    assert offer.yiaddr == ack.yiaddr
    assert restored.export_leases(1040.0) == json.loads(json.dumps(
        restored.export_leases(1040.0)))


@pytest.mark.parametrize("document,why", [
    ({"version": 2, "leases": [], "declined": []}, "version 2"),
    ({"version": 1}, "malformed"),
    ({"version": 1, "leases": [{"address": "x"}], "declined": []}, "malformed"),
    ({"version": 1, "leases": [{"address": "10.0.0.300", "client": "", "chaddr": "",
                                "hostname": None, "state": "bound", "remaining_s": 1}],
      "declined": []}, "IPv4"),
    ({"version": 1, "leases": [{"address": "10.0.0.3", "client": "", "chaddr": "",
                                "hostname": None, "state": "odd", "remaining_s": 1}],
      "declined": []}, "state"),
    ([], "malformed"),
])
def test_bad_lease_documents_are_refused(document, why):
    with pytest.raises(DhcpError, match=why):
        server(leases=document)


# -- client ----------------------------------------------------------------------------------------

def sends(actions):
    return [(parse(a[1]), a[2]) for a in actions if a[0] == "send"]


def wait_of(actions):
    assert actions[-1][0] == "wait_until"
    return actions[-1][1]


def bind(client, srv, now=0.0):
    """Runs the client to BOUND against ``srv``; returns the actions of the ACK."""
    actions = client.start(now)
    for _ in range(3):
        replies = []
        for action in actions:
            if action[0] == "send":
                replies += srv.handle(action[1], now)
        actions = []
        for payload, _ in replies:
            actions += client.receive(payload, now)
        if any(a[0] == "bound" for a in actions):
            return actions
    raise AssertionError("not bound: %r" % actions)


def test_client_discovers_requests_and_binds():
    srv = server(lease_s=100)
    client = Client(MAC, hostname="edge1")
    actions = client.start(0.0)
    [(discover, destination)] = sends(actions)
    assert discover.message_type == DISCOVER and destination == BROADCAST
    assert discover.flags == dhcp.BROADCAST_FLAG and discover.options[12] == b"edge1"
    assert discover.options[dhcp.OPT_CLIENT_ID] == b"\x01" + MAC
    assert wait_of(actions) == 4.0
    [(offer_bytes, _)] = srv.handle(build(discover), 0.0)
    actions = client.receive(offer_bytes, 0.5)
    [(req, destination)] = sends(actions)
    assert req.message_type == REQUEST and destination == BROADCAST
    assert req.address_option(dhcp.OPT_SERVER_ID) == SERVER_IP
    assert req.address_option(dhcp.OPT_REQUESTED_IP) == parse(offer_bytes).yiaddr
    assert req.ciaddr == "0.0.0.0" and req.xid == discover.xid
    [(ack_bytes, _)] = srv.handle(build(req), 0.5)
    actions = client.receive(ack_bytes, 1.0)
    assert actions[0] == ("bound", {
        "address": parse(offer_bytes).yiaddr, "prefix": 24, "router": SERVER_IP,
        "dns": ["10.0.0.53", "10.0.0.54"], "lease_s": 100, "server": SERVER_IP,
        "t1_s": 50, "t2_s": 87})
    assert client.state == dhcp.BOUND and wait_of(actions) == 51.0


def test_client_retransmits_with_backoff_and_jitter():
    jitters = iter([0.5, -0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0])
    client = Client(MAC, jitter=lambda: next(jitters))
    now = 0.0
    waits = []
    actions = client.start(now)
    for _ in range(7):
        assert len(sends(actions)) == 1
        when = wait_of(actions)
        waits.append(when - now)
        assert client.tick(when - 0.1)[:-1] == []       # not yet: nothing happens
        now = when
        actions = client.tick(now)
    assert waits == [4.5, 7.5, 16.25, 32.0, 64.0, 64.0, 64.0]
    xids = {parse(a[1]).xid for a in actions if a[0] == "send"}
    assert xids == {client.xid}


def test_client_gives_up_requesting_and_discovers_again():
    srv = server()
    client = Client(MAC)
    [(discover, _)] = sends(client.start(0))
    [(offer, _)] = srv.handle(build(discover), 0)
    actions = client.receive(offer, 0)
    first_xid = client.xid
    now = 0
    for _ in range(dhcp.REQUEST_TRIES - 1):
        now = wait_of(actions)
        actions = client.tick(now)
        assert sends(actions)[0][0].message_type == REQUEST
    actions = client.tick(wait_of(actions))
    assert sends(actions)[0][0].message_type == DISCOVER
    assert client.state == dhcp.SELECTING and client.xid != first_xid


def test_client_renews_at_t1_unicast_then_rebinds_at_t2_then_expires():
    srv = server(lease_s=100)
    client = Client(MAC)
    bind(client, srv, 0.0)
    lease = client.lease
    actions = client.tick(50.0)
    [(renew, destination)] = sends(actions)
    assert client.state == dhcp.RENEWING and destination == SERVER_IP
    assert renew.ciaddr == lease["address"] and renew.flags == 0
    assert dhcp.OPT_SERVER_ID not in renew.options
    assert dhcp.OPT_REQUESTED_IP not in renew.options
    assert wait_of(actions) == 87.0      # half of 37 s is under the 60 s floor: T2 itself
    actions = client.tick(87.0)
    [(rebind, destination)] = sends(actions)
    assert client.state == dhcp.REBINDING and destination == BROADCAST
    assert rebind.ciaddr == lease["address"] and rebind.xid != renew.xid
    assert wait_of(actions) == 100.0
    actions = client.tick(100.0)
    assert actions[0] == ("expired",)
    assert client.state == dhcp.SELECTING and client.lease is None
    assert sends(actions)[0][0].message_type == DISCOVER


def test_client_renewal_ack_reports_renewed():
    srv = server(lease_s=100)
    client = Client(MAC)
    bind(client, srv, 0.0)
    [(renew, _)] = sends(client.tick(50.0))
    [(ack, destination)] = srv.handle(build(renew), 50.0)
    assert destination == client.lease["address"]
    actions = client.receive(ack, 50.0)
    assert actions[0][0] == "renewed" and actions[0][1]["address"] == client.lease["address"]
    assert client.state == dhcp.BOUND and wait_of(actions) == 100.0


def test_client_nak_while_renewing_expires_and_restarts():
    srv = server(lease_s=100)
    client = Client(MAC)
    bind(client, srv, 0.0)
    [(renew, _)] = sends(client.tick(50.0))
    nak = build(Packet(dhcp.BOOTREPLY, renew.xid, MAC, {53: bytes((NAK,)),
                                                        54: bytes((10, 0, 0, 1))}))
    actions = client.receive(nak, 51.0)
    assert actions[0] == ("expired",)
    assert sends(actions)[0][0].message_type == DISCOVER


def test_client_ignores_what_is_not_for_it():
    srv = server()
    client = Client(MAC)
    [(discover, _)] = sends(client.start(0))
    [(offer, _)] = srv.handle(build(discover), 0)
    wrong_xid = parse(offer)
    wrong_xid.xid ^= 1
    wrong_mac = parse(offer)
    wrong_mac.chaddr = OTHER_MAC
    for data in (build(wrong_xid), build(wrong_mac), b"junk", build(discover)):
        assert client.receive(data, 1.0) == [("wait_until", 4.0)]
    assert client.state == dhcp.SELECTING
    # a NAK from another server while requesting is not ours to obey
    client.receive(offer, 1.0)
    stray = build(Packet(dhcp.BOOTREPLY, client.xid, MAC, {53: bytes((NAK,)),
                                                           54: bytes((10, 0, 0, 9))}))
    client.receive(stray, 1.5)
    assert client.state == dhcp.REQUESTING


def test_client_without_options_uses_rfc_defaults():
    client = Client(MAC)
    [(discover, _)] = sends(client.start(0))
    options = {53: bytes((OFFER,)), 54: bytes((10, 0, 0, 1))}
    offer = build(Packet(dhcp.BOOTREPLY, discover.xid, MAC, options, yiaddr="172.16.0.5"))
    client.receive(offer, 0)
    options = {53: bytes((ACK,)), 54: bytes((10, 0, 0, 1)), 51: struct.pack("!I", 1000)}
    ack = build(Packet(dhcp.BOOTREPLY, client.xid, MAC, options, yiaddr="172.16.0.5"))
    actions = client.receive(ack, 0)
    lease = actions[0][1]
    assert lease["prefix"] == 16 and lease["router"] is None and lease["dns"] == []
    assert (lease["t1_s"], lease["t2_s"]) == (500, 875)


def test_client_address_change_is_a_new_binding():
    srv = server(lease_s=100)
    client = Client(MAC)
    bind(client, srv, 0.0)
    [(rebind, _)] = sends(client.tick(50.0) and client.tick(87.0))
    options = {53: bytes((ACK,)), 54: bytes((10, 0, 0, 1)), 51: struct.pack("!I", 100),
               1: bytes((255, 255, 255, 0))}
    ack = build(Packet(dhcp.BOOTREPLY, rebind.xid, MAC, options, yiaddr="10.0.0.19"))
    actions = client.receive(ack, 88.0)
    assert actions[0][0] == "bound" and actions[0][1]["address"] == "10.0.0.19"


# -- INIT-REBOOT: a restarted daemon verifies the lease the interface still holds --------------

def test_client_reboot_keeps_a_confirmed_lease():
    srv = server(lease_s=100)
    first = Client(MAC)
    bind(first, srv, 0.0)
    lease = first.lease
    again = Client(MAC)
    actions = again.start(10.0, previous=lease)
    [(req, destination)] = sends(actions)
    assert req.message_type == REQUEST and destination == BROADCAST
    assert req.address_option(dhcp.OPT_REQUESTED_IP) == lease["address"]
    assert dhcp.OPT_SERVER_ID not in req.options and req.ciaddr == "0.0.0.0"
    [(ack, _)] = srv.handle(build(req), 10.0)
    actions = again.receive(ack, 10.5)
    assert actions[0] == ("renewed", lease) and again.state == dhcp.BOUND
    assert wait_of(actions) == 10.5 + lease["t1_s"]


def test_client_reboot_nakked_starts_over():
    srv = server(pool=("10.0.0.10", "10.0.0.20"))
    stale = {"address": "10.9.9.9", "prefix": 24, "router": "10.9.9.1", "dns": [],
             "lease_s": 100, "server": "10.9.9.1", "t1_s": 50, "t2_s": 87}
    client = Client(MAC)
    [(req, _)] = sends(client.start(0.0, previous=stale))
    [(nak, _)] = srv.handle(build(req), 0.0)
    assert parse(nak).message_type == dhcp.NAK
    actions = client.receive(nak, 0.1)
    assert actions[0] == ("expired",)
    assert sends(actions)[0][0].message_type == DISCOVER and client.state == dhcp.SELECTING


def test_client_reboot_unanswered_starts_over():
    lease = {"address": "10.0.0.12", "prefix": 24, "router": SERVER_IP, "dns": [],
             "lease_s": 100, "server": SERVER_IP, "t1_s": 50, "t2_s": 87}
    client = Client(MAC)
    actions = client.start(0.0, previous=lease)
    for _ in range(dhcp.REQUEST_TRIES - 1):
        actions = client.tick(wait_of(actions))
        assert sends(actions)[0][0].message_type == REQUEST
    actions = client.tick(wait_of(actions))
    assert actions[0] == ("expired",)
    assert sends(actions)[0][0].message_type == DISCOVER
