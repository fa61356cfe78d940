"""msgpack-RPC framing for the control socket (docs/protocol.md); pure, no I/O.

Messages: request ``[0, msgid, method, params]``, response ``[1, msgid, error, result]``,
notification ``[2, method, params]``; params is always a map of named parameters.

The decoder frames messages itself before msgpack sees them: msgpack's Unpacker allocates a
list as soon as it reads an array header, so a few bytes claiming 2**32 items, nested 1000
deep, would reserve gigabytes. The framer walks the item headers instead, checks that every
claimed item could still fit in ``max_message`` bytes (each item takes at least one byte) and
that nesting stays below ``MAX_DEPTH``, and hands msgpack only complete, bounded frames.

The codec is the msgpack C extension when the process has loaded it (the daemon does), else
mpack.py, the same wire format in pure Python, which keeps msgpack's import out of every
CLI command's start.
"""

import sys

from ..errors import EdgertError

REQUEST, RESPONSE, NOTIFICATION = 0, 1, 2
MAX_MSGID = 2 ** 32 - 1
MAX_METHOD_LEN = 64
MAX_DEPTH = 32  # the message array is level 1; documents in params get the rest


class ProtocolError(EdgertError):
    """The peer broke the framing or the message shapes; the connection cannot continue."""

    code = "protocol"


class RpcError(EdgertError):
    """An error that travels as a response's error map: code, message, optional data."""

    def __init__(self, message, code="error", data=None):
        super().__init__(message, code)
        self.data = data


def error_map(exc):
    """The wire form of an exception: EdgertError keeps its code; anything else is internal."""
    if isinstance(exc, EdgertError):
        error = {"code": exc.code, "message": str(exc)}
        data = getattr(exc, "data", None)
        if data is not None:
            error["data"] = data
        return error
    return {"code": "internal",
            "message": "internal error: %s: %s" % (type(exc).__name__, exc)}


def error_from_map(error):
    """The RpcError a client raises for a response's error map (shape checked by Decoder)."""
    return RpcError(error["message"], error["code"], error.get("data"))


def _pack(message):
    msgpack = sys.modules.get("msgpack")
    if msgpack is not None:
        return msgpack.packb(message, use_bin_type=True)
    from . import mpack
    return mpack.packb(message)


def encode_request(msgid, method, params):
    _check_msgid(msgid)
    _check_method(method)
    _check_params(params)
    return _pack([REQUEST, msgid, method, params])


def encode_response(msgid, error, result):
    _check_msgid(msgid)
    _check_error(error)
    return _pack([RESPONSE, msgid, error, result])


def encode_notification(method, params):
    _check_method(method)
    _check_params(params)
    return _pack([NOTIFICATION, method, params])


def _type_name(value):
    return "nil" if value is None else type(value).__name__


def _check_msgid(msgid):
    if type(msgid) is not int or not 0 <= msgid <= MAX_MSGID:
        raise ProtocolError("msgid must be an integer 0..%d, got %r" % (MAX_MSGID, msgid))


def _check_method(method):
    if type(method) is not str or not 0 < len(method) <= MAX_METHOD_LEN:
        raise ProtocolError("method must be a string of 1..%d characters, got %s"
                            % (MAX_METHOD_LEN, _short(method)))


def _check_params(params):
    if type(params) is not dict:
        raise ProtocolError("params must be a map of named parameters, got %s"
                            % _type_name(params))
    for key in params:
        if type(key) is not str:
            raise ProtocolError("param names must be strings, got %s" % _type_name(key))


def _check_error(error):
    if error is None:
        return
    if (type(error) is not dict or type(error.get("code")) is not str
            or type(error.get("message")) is not str):
        raise ProtocolError("error must be nil or a map with string code and message, got %s"
                            % _short(error))


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _build_heads():
    """For each first byte: (kind, length-field size, fixed length or count).

    Kinds: "s" scalar of fixed total size (in the third slot), "b" str/bin payload,
    "a" array, "m" map. Ext types and the unused 0xc1 are absent: they are refused.
    """
    heads = {}
    for b in range(0x00, 0x80):
        heads[b] = ("s", 0, 1)
    for b in range(0xe0, 0x100):
        heads[b] = ("s", 0, 1)
    for b in range(0x80, 0x90):
        heads[b] = ("m", 0, b & 0x0f)
    for b in range(0x90, 0xa0):
        heads[b] = ("a", 0, b & 0x0f)
    for b in range(0xa0, 0xc0):
        heads[b] = ("b", 0, b & 0x1f)
    heads.update({
        0xc0: ("s", 0, 1), 0xc2: ("s", 0, 1), 0xc3: ("s", 0, 1),
        0xc4: ("b", 1, 0), 0xc5: ("b", 2, 0), 0xc6: ("b", 4, 0),
        0xca: ("s", 0, 5), 0xcb: ("s", 0, 9),
        0xcc: ("s", 0, 2), 0xcd: ("s", 0, 3), 0xce: ("s", 0, 5), 0xcf: ("s", 0, 9),
        0xd0: ("s", 0, 2), 0xd1: ("s", 0, 3), 0xd2: ("s", 0, 5), 0xd3: ("s", 0, 9),
        0xd9: ("b", 1, 0), 0xda: ("b", 2, 0), 0xdb: ("b", 4, 0),
        0xdc: ("a", 2, 0), 0xdd: ("a", 4, 0), 0xde: ("m", 2, 0), 0xdf: ("m", 4, 0),
    })
    return tuple(heads.get(b) for b in range(256))


_HEADS = _build_heads()


class Decoder:
    """Incremental decoder: ``feed(bytes)`` returns the messages completed so far.

    ``max_message`` bounds one message; ``max_buffer`` bounds what one feed may hold (the
    unfinished message plus the new bytes): callers read in chunks well below it.
    """

    def __init__(self, max_message=1 << 20, max_buffer=None):
        self.max_message = max_message
        self.max_buffer = max_buffer if max_buffer is not None else 2 * max_message
        self._buf = bytearray()
        self._pos = 0           # framer position inside the unfinished message
        self._open = [1]        # items still to read at each open nesting level
        self._claimed = 1       # sum of _open: the bytes the message needs at least

    @property
    def pending(self):
        """Bytes of an unfinished message held (0 between messages)."""
        return len(self._buf)

    def feed(self, data):
        if len(self._buf) + len(data) > self.max_buffer:
            raise ProtocolError("more than %d bytes buffered: read in smaller chunks"
                                % self.max_buffer)
        self._buf += data
        messages = []
        while True:
            end = self._frame()
            if end < 0:
                return messages
            frame = bytes(self._buf[:end])
            del self._buf[:end]
            self._pos, self._open, self._claimed = 0, [1], 1
            messages.append(_shape(_unpack(frame)))

    def _frame(self):
        """Advances the framer; returns the end of the first complete message, or -1."""
        buf, pos, open_, limit = self._buf, self._pos, self._open, self.max_message
        size = len(buf)
        if pos == 0 and size and buf[0] not in (0x93, 0x94):
            raise ProtocolError("a message must be an array of 3 or 4 items (first byte 0x%02x)"
                                % buf[0])
        while pos < size:
            head = _HEADS[buf[pos]]
            if head is None:
                raise ProtocolError("unsupported msgpack type byte 0x%02x at offset %d"
                                    % (buf[pos], pos))
            kind, len_size, fixed = head
            items = 0
            if kind == "s":
                need = fixed
            else:
                if pos + 1 + len_size > size:
                    break
                count = int.from_bytes(buf[pos + 1:pos + 1 + len_size], "big") if len_size \
                    else fixed
                need = 1 + len_size
                if kind == "b":
                    need += count
                else:
                    items = count * 2 if kind == "m" else count
            if pos + need + self._claimed - 1 + items > limit:
                raise ProtocolError("message larger than %d bytes" % limit)
            if pos + need > size:
                break
            pos += need
            open_[-1] -= 1
            self._claimed += items - 1
            if items:
                if len(open_) > MAX_DEPTH:  # open_[0] is the frame, not a level
                    raise ProtocolError("message nested deeper than %d levels" % MAX_DEPTH)
                open_.append(items)
            while open_ and not open_[-1]:
                open_.pop()
            if not open_:
                return pos
        self._pos = pos
        return -1


def _unpack(frame):
    msgpack = sys.modules.get("msgpack")
    try:
        if msgpack is None:
            from . import mpack
            return mpack.unpackb(frame)
        return msgpack.unpackb(frame, raw=False, use_list=True, strict_map_key=True)
    except UnicodeDecodeError:
        raise ProtocolError("a string is not valid UTF-8 (send binary data as bin)") from None
    except Exception as e:
        raise ProtocolError("undecodable message: %s: %s" % (type(e).__name__, e)) from None


def _shape(message):
    """Checks one decoded message and returns it as a tuple (see module doc)."""
    kind = message[0]
    if type(kind) is not int:
        raise ProtocolError("message type must be 0, 1 or 2, got %s" % _short(kind))
    if kind == REQUEST and len(message) == 4:
        _, msgid, method, params = message
        _check_msgid(msgid)
        _check_method(method)
        _check_params(params)
        return ("request", msgid, method, params)
    if kind == RESPONSE and len(message) == 4:
        _, msgid, error, result = message
        _check_msgid(msgid)
        _check_error(error)
        return ("response", msgid, error, result)
    if kind == NOTIFICATION and len(message) == 3:
        _, method, params = message
        _check_method(method)
        _check_params(params)
        return ("notification", method, params)
    raise ProtocolError("message type %r with %d items is not a request (0, 4 items), "
                        "response (1, 4 items) or notification (2, 3 items)"
                        % (kind, len(message)))
