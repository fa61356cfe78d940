"""msgpack-RPC framing: round trips, incremental decoding, shape checks and size limits."""

import msgpack
import pytest

from edgert.errors import EdgertError, NotFound
from edgert.proto import rpc


def decode_all(data, chunk=None, **kw):
    decoder = rpc.Decoder(**kw)
    if chunk is None:
        return decoder.feed(data)
    out = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i:i + chunk])
    assert decoder.pending == 0
    return out


def raw(message):
    return msgpack.packb(message, use_bin_type=True)


def test_round_trip_of_each_kind():
    data = (rpc.encode_request(7, "instance.stop", {"id": "a", "timeout": None})
            + rpc.encode_response(7, None, {"ok": True, "blob": b"\x00\xff", "f": 1.5})
            + rpc.encode_response(8, {"code": "not-found", "message": "no"}, None)
            + rpc.encode_notification("logs", {"data": b"line\n"}))
    assert decode_all(data) == [
        ("request", 7, "instance.stop", {"id": "a", "timeout": None}),
        ("response", 7, None, {"ok": True, "blob": b"\x00\xff", "f": 1.5}),
        ("response", 8, {"code": "not-found", "message": "no"}, None),
        ("notification", "logs", {"data": b"line\n"}),
    ]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
def test_byte_by_byte_equals_whole(chunk):
    data = b"".join(rpc.encode_request(i, "m%d" % i, {"x": "y" * i * 100, "l": list(range(i))})
                    for i in range(20))
    assert decode_all(data, chunk) == decode_all(data)


def test_pending_counts_an_unfinished_message():
    decoder = rpc.Decoder()
    data = rpc.encode_request(1, "ping", {})
    assert decoder.feed(data[:3]) == []
    assert decoder.pending == 3
    assert decoder.feed(data[3:]) == [("request", 1, "ping", {})]
    assert decoder.pending == 0


def test_msgid_limits():
    assert decode_all(rpc.encode_request(2 ** 32 - 1, "a", {}))[0][1] == 2 ** 32 - 1
    for bad in (-1, 2 ** 32, True, "1", 1.0):
        with pytest.raises(rpc.ProtocolError, match="msgid"):
            rpc.encode_request(bad, "a", {})
        with pytest.raises(rpc.ProtocolError, match="msgid"):
            decode_all(raw([0, bad, "a", {}]))


def test_method_must_be_a_short_string():
    assert decode_all(rpc.encode_request(1, "m" * 64, {}))[0][2] == "m" * 64
    for bad in ("", "m" * 65, b"ping", 3, None):
        with pytest.raises(rpc.ProtocolError, match="method"):
            decode_all(raw([0, 1, bad, {}]))


@pytest.mark.parametrize("params,match", [
    ([1, 2], "params must be a map"),
    (None, "params must be a map"),
    ({b"k": 1}, "param names must be strings"),
])
def test_params_must_be_a_map_with_string_keys(params, match):
    with pytest.raises(rpc.ProtocolError, match=match):
        decode_all(raw([0, 1, "ping", params]))
    with pytest.raises(rpc.ProtocolError, match=match):
        decode_all(raw([2, "ping", params]))


@pytest.mark.parametrize("error", [
    "boom", {"code": "x"}, {"message": "x"}, {"code": 1, "message": "x"}, [],
])
def test_error_must_be_nil_or_a_code_and_message_map(error):
    with pytest.raises(rpc.ProtocolError, match="error must be"):
        decode_all(raw([1, 1, error, None]))


@pytest.mark.parametrize("message", [
    [3, 1, "a", {}], [0, 1, "a"], [2, "a", {}, 4], ["0", 1, "a", {}], [None, 1, 2, 3],
])
def test_wrong_message_shapes(message):
    with pytest.raises(rpc.ProtocolError, match="message type"):
        decode_all(raw(message))


@pytest.mark.parametrize("data,match", [
    (raw({"a": 1}), "array of 3 or 4"),
    (raw([0, 1]), "array of 3 or 4"),
    (b"\xc1", "array of 3 or 4"),
    (b"\x94\xc1", "unsupported msgpack type byte 0xc1"),
    (b"\x94\x00\x01\xa1a\xd4\x00\x00", "unsupported msgpack type byte 0xd4"),  # ext
    (b"\x94\x00\x01\xa2\xc3\x28\x80", "UTF-8"),
    (raw([0, 1, "a", {1: 2}]), "undecodable"),  # int map key: strict_map_key
])
def test_malformed_bytes(data, match):
    with pytest.raises(rpc.ProtocolError, match=match):
        decode_all(data)


def test_a_huge_claimed_array_is_refused_at_its_header():
    # 5 bytes claiming 2**32-1 items: refused before anything is allocated or awaited
    with pytest.raises(rpc.ProtocolError, match="larger than"):
        rpc.Decoder().feed(b"\x94\x00\x01\xa1a\x81\xa1k\xdd\xff\xff\xff\xff")


def test_claims_add_up_across_nesting_levels():
    # two nested arrays each claiming 600 items fit one by one, not together, in 1000 bytes
    header = b"\xdc\x02\x58"
    with pytest.raises(rpc.ProtocolError, match="larger than 1000"):
        rpc.Decoder(max_message=1000).feed(b"\x94\x00\x01\xa1a\x81\xa1k" + header + header)


def test_a_long_string_is_refused_at_its_header():
    with pytest.raises(rpc.ProtocolError, match="larger than 100"):
        rpc.Decoder(max_message=100).feed(b"\x94\x00\x01\xdb\x00\x00\x01\x00")


def test_size_limit_is_exact():
    data = rpc.encode_request(1, "a", {"x": "y" * 50})
    assert decode_all(data, max_message=len(data))
    with pytest.raises(rpc.ProtocolError, match="larger than"):
        decode_all(data, max_message=len(data) - 1)


def test_nesting_depth_is_limited():
    deep = {"x": 1}
    for _ in range(rpc.MAX_DEPTH - 2):
        deep = [deep]
    with pytest.raises(rpc.ProtocolError, match="nested deeper"):
        decode_all(raw([0, 1, "a", {"d": deep}]))
    assert decode_all(raw([0, 1, "a", {"d": deep[0]}]))


def test_buffer_limit_per_feed():
    with pytest.raises(rpc.ProtocolError, match="buffered"):
        rpc.Decoder(max_message=100, max_buffer=150).feed(b"\x94" + b"\x00" * 200)


def test_error_map_round_trip():
    err = rpc.RpcError("instance x: not running", "bad-state", data={"state": "stopped"})
    back = rpc.error_from_map(rpc.error_map(err))
    assert (back.code, str(back), back.data) == ("bad-state", "instance x: not running",
                                                 {"state": "stopped"})
    assert isinstance(back, EdgertError)
    assert rpc.error_map(NotFound("no instance x")) == {"code": "not-found",
                                                        "message": "no instance x"}
    assert rpc.error_map(KeyError("k")) == {"code": "internal",
                                            "message": "internal error: KeyError: 'k'"}
    assert rpc.ProtocolError("x").code == "protocol"
