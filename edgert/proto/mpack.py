"""A small msgpack codec for the protocol's types, in pure Python.

The CLI uses it instead of the msgpack package, whose import (its ext types pull in
datetime) costs about 6 ms of every command's start; the daemon keeps the C extension
(rpc.py picks whichever is loaded). Types: None, bool, int (64-bit), float, str (UTF-8),
bytes, list/tuple, dict. ``unpackb`` is strict: one complete object, valid UTF-8, no ext
types, map keys hashable; the framing and size limits are rpc.Decoder's job.
"""

import struct


class UnpackError(ValueError):
    pass


def packb(obj):
    out = []
    _pack(obj, out.append)
    return b"".join(out)


def _pack(obj, put):
    if obj is None:
        put(b"\xc0")
    elif obj is True:
        put(b"\xc3")
    elif obj is False:
        put(b"\xc2")
    elif type(obj) is int:
        _pack_int(obj, put)
    elif type(obj) is float:
        put(struct.pack(">Bd", 0xcb, obj))
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        n = len(data)
        if n < 32:
            put(bytes((0xa0 | n,)))
        elif n < 0x100:
            put(struct.pack(">BB", 0xd9, n))
        elif n < 0x10000:
            put(struct.pack(">BH", 0xda, n))
        else:
            put(struct.pack(">BI", 0xdb, n))
        put(data)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        n = len(data)
        if n < 0x100:
            put(struct.pack(">BB", 0xc4, n))
        elif n < 0x10000:
            put(struct.pack(">BH", 0xc5, n))
        else:
            put(struct.pack(">BI", 0xc6, n))
        put(data)
    elif isinstance(obj, (list, tuple)):
        _header(len(obj), 0x90, 0xdc, put)
        for item in obj:
            _pack(item, put)
    elif isinstance(obj, dict):
        _header(len(obj), 0x80, 0xde, put)
        for key, value in obj.items():
            _pack(key, put)
            _pack(value, put)
    elif isinstance(obj, int):  # bool is handled above; other int subclasses
        _pack_int(int(obj), put)
    else:
        raise TypeError("cannot serialize %s" % type(obj).__name__)


def _header(n, fix, wide, put):
    if n < 16:
        put(bytes((fix | n,)))
    elif n < 0x10000:
        put(struct.pack(">BH", wide, n))
    else:
        put(struct.pack(">BI", wide + 1, n))


def _pack_int(n, put):
    if 0 <= n < 0x80:
        put(bytes((n,)))
    elif -32 <= n < 0:
        put(struct.pack(">b", n))
    elif 0 <= n < 0x100:
        put(struct.pack(">BB", 0xcc, n))
    elif 0 <= n < 0x10000:
        put(struct.pack(">BH", 0xcd, n))
    elif 0 <= n < 0x100000000:
        put(struct.pack(">BI", 0xce, n))
    elif 0 <= n < 0x10000000000000000:
        put(struct.pack(">BQ", 0xcf, n))
    elif -0x80 <= n < 0:
        put(struct.pack(">Bb", 0xd0, n))
    elif -0x8000 <= n < 0:
        put(struct.pack(">Bh", 0xd1, n))
    elif -0x80000000 <= n < 0:
        put(struct.pack(">Bi", 0xd2, n))
    elif -0x8000000000000000 <= n < 0:
        put(struct.pack(">Bq", 0xd3, n))
    else:
        raise OverflowError("integer %d does not fit msgpack's 64 bits" % n)


_FIXED = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q",
          0xd0: ">b", 0xd1: ">h", 0xd2: ">i", 0xd3: ">q", 0xca: ">f", 0xcb: ">d"}
_SIZED = {0xc4: (">B", "bin"), 0xc5: (">H", "bin"), 0xc6: (">I", "bin"),
          0xd9: (">B", "str"), 0xda: (">H", "str"), 0xdb: (">I", "str"),
          0xdc: (">H", "array"), 0xdd: (">I", "array"),
          0xde: (">H", "map"), 0xdf: (">I", "map")}


def unpackb(data):
    data = bytes(data)
    value, end = _unpack(data, 0)
    if end != len(data):
        raise UnpackError("%d bytes of extra data after the object" % (len(data) - end))
    return value


def _take(data, pos, n):
    end = pos + n
    if end > len(data):
        raise UnpackError("truncated at offset %d" % pos)
    return data[pos:end], end


def _unpack(data, pos):
    if pos >= len(data):
        raise UnpackError("truncated at offset %d" % pos)
    b = data[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xe0:
        return b - 0x100, pos
    if 0xa0 <= b <= 0xbf:
        return _text(data, pos, b & 0x1f)
    if 0x90 <= b <= 0x9f:
        return _array(data, pos, b & 0x0f)
    if 0x80 <= b <= 0x8f:
        return _map(data, pos, b & 0x0f)
    if b == 0xc0:
        return None, pos
    if b == 0xc2:
        return False, pos
    if b == 0xc3:
        return True, pos
    fmt = _FIXED.get(b)
    if fmt is not None:
        raw, pos = _take(data, pos, struct.calcsize(fmt))
        return struct.unpack(fmt, raw)[0], pos
    sized = _SIZED.get(b)
    if sized is None:
        raise UnpackError("unsupported type byte 0x%02x at offset %d" % (b, pos - 1))
    raw, pos = _take(data, pos, struct.calcsize(sized[0]))
    n = struct.unpack(sized[0], raw)[0]
    kind = sized[1]
    if kind == "bin":
        return _take(data, pos, n)
    if kind == "str":
        return _text(data, pos, n)
    if kind == "array":
        return _array(data, pos, n)
    return _map(data, pos, n)


def _text(data, pos, n):
    raw, pos = _take(data, pos, n)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError:
        raise UnpackError("invalid UTF-8 in a string at offset %d" % (pos - n)) from None


def _array(data, pos, n):
    if n > len(data) - pos:
        raise UnpackError("array of %d items cannot fit the data" % n)
    items = []
    for _ in range(n):
        item, pos = _unpack(data, pos)
        items.append(item)
    return items, pos


def _map(data, pos, n):
    if 2 * n > len(data) - pos:
        raise UnpackError("map of %d entries cannot fit the data" % n)
    out = {}
    for _ in range(n):
        key, pos = _unpack(data, pos)
        value, pos = _unpack(data, pos)
        try:
            out[key] = value
        except TypeError:
            raise UnpackError("unhashable map key of type %s" % type(key).__name__) from None
    return out, pos
