"""Fuzzing the decode + validate path a request takes: whatever the bytes, the only outcomes
are messages, ProtocolError (connection closed) or RpcError (error answer)."""

import msgpack
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from edgert.proto import rpc, schema  # noqa: E402

METHOD_NAMES = sorted(schema.METHODS)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 64 - 1),
                    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)


def param_names(method):
    known = list(schema.METHODS[method].params) if method in schema.METHODS else []
    return st.sampled_from(known + ["bogus"]) if known else st.just("bogus")


@st.composite
def requests(draw):
    """Well-formed requests with wrong (and sometimes right) params."""
    method = draw(st.one_of(st.sampled_from(METHOD_NAMES), st.text(min_size=1, max_size=64)))
    params = draw(st.dictionaries(param_names(method), values, max_size=5))
    return [0, draw(st.integers(0, 2 ** 32 - 1)), method, params]


@st.composite
def broken_messages(draw):
    """Arrays of 3 or 4 arbitrary items: wrong types, shapes, kinds."""
    head = draw(st.one_of(st.integers(-1, 4), scalars))
    return [head] + draw(st.lists(values, min_size=2, max_size=3))


def decode_and_validate(data, chunk):
    decoder = rpc.Decoder(max_message=4096)
    for i in range(0, len(data), chunk):
        for message in decoder.feed(data[i:i + chunk]):
            if message[0] == "request":
                try:
                    schema.validate(message[2], message[3])
                except rpc.RpcError as e:
                    assert e.code in ("unknown-method", "bad-params")
                    assert str(e)


def survives(data, chunk):
    try:
        decode_and_validate(data, chunk)
    except rpc.ProtocolError as e:
        assert str(e)


@settings(max_examples=250, deadline=None, database=None)
@given(st.binary(max_size=300), st.integers(1, 64))
def test_random_bytes(data, chunk):
    survives(data, chunk)


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=200), st.integers(1, 64))
def test_random_bytes_after_an_array_header(data, chunk):
    survives(b"\x94" + data, chunk)


@settings(max_examples=150, deadline=None, database=None)
@given(requests(), st.integers(1, 64))
def test_well_formed_requests_with_wrong_params(message, chunk):
    survives(msgpack.packb(message, use_bin_type=True), chunk)


@settings(max_examples=100, deadline=None, database=None)
@given(broken_messages(), st.integers(1, 64))
def test_wrong_message_shapes(message, chunk):
    survives(msgpack.packb(message, use_bin_type=True), chunk)


@settings(max_examples=100, deadline=None, database=None)
@given(requests(), st.integers(0, 40), st.binary(min_size=1, max_size=8))
def test_corrupted_requests(message, position, garbage):
    data = bytearray(msgpack.packb(message, use_bin_type=True))
    position %= len(data)
    data[position:position + len(garbage)] = garbage
    survives(bytes(data), 7)
