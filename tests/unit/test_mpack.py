"""mpack (the CLI's pure-Python msgpack) and the msgpack C extension agree byte for byte."""

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgert.proto import mpack

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=False)
    | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(), inner,
                                                                 max_size=20),
    max_leaves=50)


@settings(max_examples=300, deadline=None)
@given(values)
def test_same_bytes_and_round_trip(value):
    packed = mpack.packb(value)
    assert packed == msgpack.packb(value, use_bin_type=True)
    assert mpack.unpackb(packed) == value
    assert msgpack.unpackb(packed, raw=False, strict_map_key=False) == value


@pytest.mark.parametrize("n", [0, 15, 16, 65535, 65536])
def test_container_header_sizes(n):
    for value in (list(range(n)), {str(i): i for i in range(n)}, "x" * n, b"x" * n):
        assert mpack.packb(value) == msgpack.packb(value, use_bin_type=True)
        assert mpack.unpackb(mpack.packb(value)) == value


@pytest.mark.parametrize("data", [b"", b"\x92\x01", b"\xa3ab", b"\xc1", b"\xd4\x00\x00",
                                  b"\xa1\xff", b"\x81\x90\x01", b"\xdd\xff\xff\xff\xff",
                                  b"\x01\x02"])
def test_malformed_input_is_refused(data):
    with pytest.raises(mpack.UnpackError):
        mpack.unpackb(data)


def test_unsupported_types_and_huge_ints():
    with pytest.raises(TypeError):
        mpack.packb(object())
    with pytest.raises(OverflowError):
        mpack.packb(2 ** 64)
