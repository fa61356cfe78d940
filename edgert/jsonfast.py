"""JSON through CPython's C accelerator without importing ``json`` (which pulls in ``re`` and
``enum``: about 4 ms on every edgert-oci start, a third of the python startup itself).

Same results as ``json.loads``/``json.dumps`` for what edgert reads and writes; error messages
give line and column. Falls back to ``json`` where ``_json`` is missing (other interpreters).
"""

try:
    import _json
except ImportError:  # pragma: no cover - every CPython has it
    _json = None

_WS = " \t\n\r"


class _Context:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        raise ValueError("%s is not valid JSON" % name)


def _position(text, index):
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return "line %d column %d" % (line, col)


def _skip(text, i):
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def loads(text, object_pairs_hook=None):
    """Parses ``text``; raises ValueError("... at line L column C") on bad input."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if _json is None:
        import json
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    ctx = _Context()
    ctx.object_pairs_hook = object_pairs_hook
    ctx.memo = {}
    scan = _json.make_scanner(ctx)
    start = _skip(text, 0)
    try:
        value, end = scan(text, start)
    except StopIteration as e:
        raise ValueError("expecting a JSON value at %s" % _position(text, e.value)) from None
    except ValueError as e:
        pos = getattr(e, "pos", None)
        msg = getattr(e, "msg", str(e))
        raise ValueError(msg + (" at " + _position(text, pos) if pos is not None else "")) from None
    end = _skip(text, end)
    if end != len(text):
        raise ValueError("extra data after the JSON value at %s" % _position(text, end))
    return value


def _unserializable(obj):
    raise TypeError("%s is not JSON serializable" % type(obj).__name__)


_ENCODER = None


def dumps(value):
    """Compact JSON (``separators=(",", ":")``), ASCII only, like ``json.dumps``'s escaping."""
    global _ENCODER
    if _json is None:
        import json
        return json.dumps(value, separators=(",", ":"))
    if _ENCODER is None:
        _ENCODER = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii,
                                      None, ":", ",", False, False, True)
    return "".join(_ENCODER(value, 0))


def dumps_pretty(value, indent="  ", _level=0):
    """Indented JSON for people (runc's `state` prints this way)."""
    pad = indent * (_level + 1)
    if isinstance(value, dict) and value:
        items = ",\n".join("%s%s: %s" % (pad, dumps(str(k)), dumps_pretty(v, indent, _level + 1))
                           for k, v in value.items())
        return "{\n%s\n%s}" % (items, indent * _level)
    if isinstance(value, list) and value:
        items = ",\n".join(pad + dumps_pretty(v, indent, _level + 1) for v in value)
        return "[\n%s\n%s]" % (items, indent * _level)
    return dumps(value)
