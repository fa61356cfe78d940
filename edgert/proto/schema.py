"""Every control-socket method and its named parameters, declared once; pure, no I/O.

``validate(method, params)`` checks a request's params and returns them normalized (defaults
filled in, floats as float) or raises RpcError "unknown-method" / "bad-params". ``describe()``
is the same schema as plain data: docs/protocol.md's method table is generated from it.

The spec language: ``Str Int Bool Float Bytes Any``, ``List(item)``, ``Map(value)`` (string
keys), ``Nullable(spec)``, and ``Opt(spec, default)`` for a parameter that may be left out.
"""

from .rpc import RpcError


class _Bad(Exception):
    """A mismatch deep inside a value; validate() adds the method name."""


def _type_name(value):
    return "nil" if value is None else type(value).__name__


class Spec:
    name = "?"

    def check(self, value, where):
        """Returns the normalized value or raises _Bad."""
        raise NotImplementedError

    def describe(self):
        return self.name

    def _expect(self, value, where):
        raise _Bad('%s: expected %s, got %s' % (where, self.name, _type_name(value)))


class Str(Spec):
    name = "str"

    def __init__(self, max_len=256, min_len=0, enum=None):
        self.max_len, self.min_len, self.enum = max_len, min_len, enum

    def check(self, value, where):
        if type(value) is not str:
            self._expect(value, where)
        if self.enum is not None and value not in self.enum:
            raise _Bad("%s: must be one of %s, got %r" % (where, ", ".join(self.enum), value))
        if not self.min_len <= len(value) <= self.max_len:
            raise _Bad("%s: length must be %s, got %d" % (
                where, _range(self.min_len, self.max_len), len(value)))
        return value

    def describe(self):
        if self.enum is not None:
            return "|".join('"%s"' % e for e in self.enum)
        return "str (%s)" % _range(self.min_len, self.max_len)


class Bytes(Str):
    name = "bytes"

    def check(self, value, where):
        if type(value) is not bytes:
            self._expect(value, where)
        if not self.min_len <= len(value) <= self.max_len:
            raise _Bad("%s: length must be %s, got %d" % (
                where, _range(self.min_len, self.max_len), len(value)))
        return value

    def describe(self):
        return "bytes (%s)" % _range(self.min_len, self.max_len)


class Int(Spec):
    name = "int"

    def __init__(self, min=None, max=None):
        self.min, self.max = min, max

    def check(self, value, where):
        if type(value) is not int:  # bool is an int in Python, not on the wire
            self._expect(value, where)
        if (self.min is not None and value < self.min) or (
                self.max is not None and value > self.max):
            raise _Bad("%s: must be %s, got %d" % (where, self._bounds(), value))
        return value

    def _bounds(self):
        if self.max is None:
            return ">= %d" % self.min
        if self.min is None:
            return "<= %d" % self.max
        return "%d..%d" % (self.min, self.max)

    def describe(self):
        if self.min is None and self.max is None:
            return "int"
        return "int (%s)" % self._bounds()


class Bool(Spec):
    name = "bool"

    def check(self, value, where):
        if type(value) is not bool:
            self._expect(value, where)
        return value


class Float(Spec):
    name = "float"

    def check(self, value, where):
        if type(value) not in (float, int):
            self._expect(value, where)
        return float(value)


class Any(Spec):
    """Any msgpack value; the method's handler validates it (e.g. documents for the model)."""

    name = "any"

    def check(self, value, where):
        return value


class Nullable(Spec):
    def __init__(self, spec):
        self.spec = spec

    def check(self, value, where):
        return None if value is None else self.spec.check(value, where)

    def describe(self):
        return "%s|nil" % self.spec.describe()


class List(Spec):
    name = "list"

    def __init__(self, item, min_len=0, max_len=1000):
        self.item, self.min_len, self.max_len = item, min_len, max_len

    def check(self, value, where):
        if type(value) is not list:
            self._expect(value, where)
        if not self.min_len <= len(value) <= self.max_len:
            raise _Bad("%s: must have %s items, got %d" % (
                where, _range(self.min_len, self.max_len), len(value)))
        return [self.item.check(v, "%s[%d]" % (where, i)) for i, v in enumerate(value)]

    def describe(self):
        return "list (%s items) of %s" % (_range(self.min_len, self.max_len), self.item.describe())


class Map(Spec):
    """A map with string keys; ``value=Any()`` leaves the values to the handler."""

    name = "map"

    def __init__(self, value=None, key=None, max_len=1000):
        self.value = value if value is not None else Any()
        self.key = key if key is not None else Str(max_len=256, min_len=1)
        self.max_len = max_len

    def check(self, value, where):
        if type(value) is not dict:
            self._expect(value, where)
        if len(value) > self.max_len:
            raise _Bad("%s: must have at most %d entries, got %d"
                       % (where, self.max_len, len(value)))
        out = {}
        for k, v in value.items():
            key = self.key.check(k, "%s key %r" % (where, k))
            out[key] = self.value.check(v, "%s[%r]" % (where, k))
        return out

    def describe(self):
        if isinstance(self.value, Any):
            return "map (%s entries)" % _range(0, self.max_len)
        return "map %s -> %s (%s entries)" % (
            self.key.describe(), self.value.describe(), _range(0, self.max_len))


class Opt:
    """Marks a parameter as optional; a missing one takes ``default`` (copied if mutable)."""

    def __init__(self, spec, default):
        self.spec, self.default = spec, default

    def fresh_default(self):
        if isinstance(self.default, (dict, list)):
            return type(self.default)(self.default)
        return self.default


def _range(low, high):
    return "%d..%d" % (low, high)


class Method:
    def __init__(self, params, stream=False, fds=0, doc=""):
        self.params, self.stream, self.fds, self.doc = params, stream, fds, doc


NAME = Str(max_len=64, min_len=1)
TIMEOUT = Opt(Nullable(Int(min=0, max=3600)), None)
ARGS = List(Str(max_len=4096), max_len=1000)
ENV = Opt(List(Str(max_len=32768, min_len=1), max_len=1000), [])
TTY_SIZE = Opt(Nullable(List(Int(min=1, max=65535), min_len=2, max_len=2)), None)  # rows, cols
SELECTOR = Nullable(Str(max_len=64, min_len=1))
CONFIG_MAP_VALUE = Str(max_len=1 << 19)
API_KEY_ROLE = Str(max_len=128, min_len=1)

METHODS = {
    "ping": Method({}, doc="checks that the daemon answers; returns {\"version\": str}"),
    "service.import": Method(
        {"input": Map()},
        doc="imports a node service (a node_service_input document) or a new version of it"),
    "service.list": Method({}, doc="every node service with its versions"),
    "service.get": Method({"name": NAME}, doc="one node service"),
    "service.remove": Method({"name": NAME}, doc="removes a node service that no instance uses"),
    "instance.add": Method(
        {"service": NAME, "id": Opt(Nullable(NAME), None),
         "config_maps": Opt(Map(CONFIG_MAP_VALUE), {}),
         "version_target_selector": Opt(SELECTOR, None),
         "start": Opt(Bool(), True)},
        doc="deploys a node service as a new instance (id chosen by the daemon when nil)"),
    "instance.remove": Method(
        {"id": NAME, "purge_volumes": Opt(Bool(), False)},
        doc="stops and removes an instance; its volumes stay unless purge_volumes"),
    "instance.list": Method({}, doc="every instance with its state and versions"),
    "instance.inspect": Method({"id": NAME}, doc="one instance in detail"),
    "instance.set_config_maps": Method(
        {"id": NAME, "config_maps": Map(Nullable(CONFIG_MAP_VALUE)),
         "replace": Opt(Bool(), False)},
        doc="updates config maps (nil deletes one; replace drops the ones not given)"),
    "instance.set_rollout_config": Method(
        {"ids": List(NAME, min_len=1, max_len=1000), "version_target_selector": SELECTOR},
        doc="sets the version target selector (nil = latest, version:N, disabled)"),
    "instance.start": Method({"id": NAME}, doc="starts a stopped instance"),
    "instance.stop": Method({"id": NAME, "timeout": TIMEOUT},
                            doc="stops an instance: SIGTERM, SIGKILL after timeout seconds"),
    "instance.restart": Method({"id": NAME, "timeout": TIMEOUT},
                               doc="stops and starts an instance"),
    "instance.rollout_now": Method(
        {"id": NAME}, doc="rolls the instance to its target version now, outside the update "
                          "window"),
    "logs": Method(
        {"id": NAME, "tail": Opt(Nullable(Int(min=0)), None), "follow": Opt(Bool(), False)},
        stream=True, doc="a container's output: the last tail lines, then new lines if follow"),
    "events": Method({"since": Opt(Nullable(Int(min=0)), None)}, stream=True,
                     doc="daemon events (instance state changes, rollout steps) as they happen"),
    "stats": Method({"id": Opt(Nullable(NAME), None)},
                    doc="resource usage of one instance or of all: memory, cpu, pids, and "
                        "\"net\" {interface: {rx_bytes, tx_bytes, ...}} of its namespace"),
    "exec": Method(
        {"id": NAME, "args": List(Str(max_len=4096), min_len=1, max_len=1000), "env": ENV,
         "cwd": Opt(Nullable(Str(max_len=4096, min_len=1)), None), "tty": Opt(Bool(), False),
         "tty_size": TTY_SIZE,
         "user": Opt(Nullable(Str(max_len=64, min_len=1)), None)},
        fds=3, stream=True,
        doc="runs a process in an instance's container on the passed stdin, stdout, stderr; "
            "notifies \"started\" {pid}, returns {exit_code}. With tty (no fds needed): a pty "
            "of the container's devpts, tty_size [rows, columns] (default 24x80), its master "
            "passed with \"started\""),
    "run": Method(
        {"image": Opt(Nullable(Str(max_len=512, min_len=1)), None),
         "bundle": Opt(Nullable(Str(max_len=4096, min_len=1)), None),
         "args": ARGS, "name": Opt(Nullable(NAME), None),
         "env": ENV, "tty": Opt(Bool(), False), "tty_size": TTY_SIZE},
        fds=3, stream=True,
        doc="runs a one-off container from an image or a bundle on the passed stdin, stdout, "
            "stderr; notifies \"started\" {pid, name}, returns {exit_code}; removed at exit. "
            "With tty, as exec's"),
    "signal": Method({"pid": Int(min=1), "signal": Int(min=1, max=64)},
                     doc="sends a signal to a process that run or exec started (the client "
                         "forwards ^C and friends on a second connection)"),
    "apply": Method({"document": Map(), "dry_run": Opt(Bool(), False)},
                    doc="makes the device match a desired-state document; returns the plan"),
    "status": Method({}, doc="daemon and device summary: version, uptime, time sync, instances"),
    "metrics": Method({}, doc="the Prometheus text of /metrics: every container's own "
                              "metrics (labels instance, service, version) and the runtime's"),
    "api_key.set": Method(
        {"role": API_KEY_ROLE, "key": Str(max_len=4096, min_len=1)},
        doc="stores this device's Unwired Edge Cloud API key for a role and writes it to "
            "/host/api-keys/ROLE of the instances whose version names the role"),
    "api_key.remove": Method({"role": API_KEY_ROLE},
                             doc="removes a role's API key from the device and its instances"),
    "api_key.list": Method({}, doc="the roles this device has API keys for, each with a "
                                   "short fingerprint (never the key)"),
    "settings.get": Method({}, doc="the daemon settings"),
    "settings.set": Method({"settings": Map()}, doc="changes daemon settings"),
}


def validate(method, params):
    """Returns ``params`` checked and normalized for ``method``; raises RpcError."""
    spec = METHODS.get(method)
    if spec is None:
        raise RpcError("unknown method %r: this edgertd does not have it (docs/protocol.md "
                       "lists the methods)" % (method,), "unknown-method")
    if params is None:
        params = {}
    if type(params) is not dict:
        raise RpcError("%s: params must be a map, got %s" % (method, _type_name(params)),
                       "bad-params")
    unknown = sorted(set(params) - set(spec.params), key=str)
    if unknown:
        raise RpcError("%s: unknown param %s (known: %s)" % (
            method, ", ".join('"%s"' % k for k in unknown),
            ", ".join(spec.params) or "none"), "bad-params")
    out = {}
    for name, field in spec.params.items():
        where = 'param "%s"' % name
        if name not in params:
            if not isinstance(field, Opt):
                raise RpcError("%s: missing param \"%s\"" % (method, name), "bad-params")
            out[name] = field.fresh_default()
            continue
        check = field.spec if isinstance(field, Opt) else field
        try:
            out[name] = check.check(params[name], where)
        except _Bad as e:
            raise RpcError("%s: %s" % (method, e), "bad-params") from None
    return out


def describe():
    """The schema as data: {method: {"params": {...}, "stream", "fds", "doc"}}."""
    out = {}
    for name, method in METHODS.items():
        params = {}
        for pname, field in method.params.items():
            optional = isinstance(field, Opt)
            spec = field.spec if optional else field
            params[pname] = {"type": spec.describe(), "required": not optional}
            if optional:
                params[pname]["default"] = field.default
        out[name] = {"params": params, "stream": method.stream, "fds": method.fds,
                     "doc": method.doc}
    return out
