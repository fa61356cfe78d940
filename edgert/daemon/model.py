"""Node services, versions and instances of edgertd: validation and version resolution (pure).

A node service is what the product's ``node_service_input`` describes: an image per
architecture, environment, limits, devices, volumes, health check, restart policy and a network
configuration. Every import adds a version; the network configuration is fixed by the first
import. An instance runs one node service on this device, with its own config maps and a
version target selector.

Documents come from the network, so validation is strict: unknown fields are errors, every
string and list has a size limit, and messages name the field path
(``node_service_input.volumes[2].path: ...``). Stored documents carry every field, unset ones
as null, so later code indexes them without ``.get``.
"""

import math

from ..errors import ConfigError, EdgertError, NotFound, Unsupported
from ..image import reference
from ..image.manifest import arch_name
from ..oci.schema import (Bool, Enum, Int, List, Map, Obj, Str, fail, interface_name, join, opt,
                          req, show)

INPUT_PATH = "node_service_input"
MIN_MEMORY = 4 << 20
MAX_INT64 = (1 << 63) - 1
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
FILE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
INSTANCE_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
# Volumes must not shadow what the runtime mounts itself or the host directory.
RESERVED_MOUNTS = ("/proc", "/sys", "/dev", "/host", "/run")
# Files the host writes into the instance's /host directory: config maps must not replace them.
RESERVED_HOST_FILES = frozenset(("lxc.env", ".time-status", "prometheus.prom", "api-key",
                                 "api-keys"))
NETWORK_MODES = ("disabled", "allocated", "dhcp")
NETWORK_KEYS = ("access_provided_subnet", "dhcp_range_template", "dhcp_range")

MAX_CONFIG_MAPS = 64
MAX_CONFIG_MAP_BYTES = 1 << 20
MAX_CONFIG_MAPS_BYTES = 4 << 20
MAX_APPLY_SERVICES = 64
MAX_APPLY_INSTANCES = 256
MAX_DEPTH = 16  # node_service_input nests 4 levels deep, an apply document 5


# --- node types beyond oci.schema's: size limits, conversions, null for unset ------------------

class Text(Str):
    """A string of at most ``limit`` characters."""

    def __init__(self, limit, rule=None):
        Str.__init__(self, rule)
        self.limit = limit

    def check(self, value, path):
        if type(value) is str and len(value) > self.limit:
            fail(path, "is %d characters long: the limit is %d" % (len(value), self.limit))
        return Str.check(self, value, path)


class Items(List):
    """A List of at most ``limit`` entries, counted before any entry is checked."""

    def __init__(self, item, limit, min_items=0, unique=None):
        List.__init__(self, item, min_items, unique)
        self.limit = limit

    def check(self, value, path):
        if type(value) is list and len(value) > self.limit:
            fail(path, "has %d entries: the limit is %d" % (len(value), self.limit))
        return List.check(self, value, path)


class Entries(Map):
    """A Map of at most ``limit`` entries."""

    def __init__(self, value, limit, key=None):
        Map.__init__(self, value, key)
        self.limit = limit

    def check(self, value, path):
        if type(value) is dict and len(value) > self.limit:
            fail(path, "has %d entries: the limit is %d" % (len(value), self.limit))
        return Map.check(self, value, path)


class Record(Obj):
    """An Obj whose unset optional fields come out as None: stored documents show every field."""

    def check(self, value, path):
        out = Obj.check(self, value, path)
        return {key: out.get(key) for key in self.fields}


class Convert:
    """A node checked by ``convert(value, path)``, which returns the value to store."""

    def __init__(self, convert):
        self.convert = convert

    def check(self, value, path):
        return self.convert(value, path)


_ANY = Convert(lambda value, path: value)


def _string(value, path, limit=4096):
    return Text(limit).check(value, path)


def _child(path, key):
    """``path.key`` for field-like keys, ``path["key"]`` for others."""
    if key and not key[0].isdigit() and all(c == "_" or c.isascii() and c.isalnum() for c in key):
        return join(path, key)
    return "%s[%s]" % (path, show(key))


def _where(chain):
    """The path of a (parent chain, key) link: built only for an error message."""
    parts = []
    while chain[0] is not None:
        chain, key = chain
        parts.append(key)
    path = chain[1]
    for key in reversed(parts):
        path = "%s[%d]" % (path, key) if type(key) is int else _child(path, key)
    return path


def _check_text(text, chain):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # JSON's "\ud800": no file or exec can take it
        fail(_where(chain), "holds a lone surrogate (U+%04X at %d): not valid Unicode text"
             % (ord(text[e.start]), e.start))


_SCALARS = frozenset((int, float, bool, type(None)))


def check_plain(doc, path, max_depth=MAX_DEPTH):
    """ConfigError unless ``doc`` is plain JSON (msgpack can also carry bytes) of valid Unicode
    text, nested at most ``max_depth`` deep: the validators and their messages handle nothing
    else. Paths are linked, not formatted, until one is needed: a hostile document may be
    large."""
    stack = [(doc, (None, path), 0)]
    while stack:
        value, chain, depth = stack.pop()
        kind = type(value)
        if kind is str:
            _check_text(value, chain)
            continue
        if kind is not dict and kind is not list:
            if kind not in _SCALARS:
                fail(_where(chain), "must be JSON data, got a value of type %s" % kind.__name__)
            continue
        if depth == max_depth:
            fail(_where(chain), "nested more than %d levels deep" % max_depth)
        if kind is dict:
            for key in value:
                if type(key) is not str:
                    fail(_where(chain), "keys must be strings, got a key of type %s"
                         % type(key).__name__)
                _check_text(key, chain)
        for key, v in enumerate(value) if kind is list else value.items():
            if type(v) not in _SCALARS:  # scalars are checked here, without a stack entry
                stack.append((v, (chain, key), depth + 1))


# --- string rules -------------------------------------------------------------------------------

def _service_name(text):
    if not text or len(text) > 63 or text[0] in "_.-" or not NAME_CHARS.issuperset(text):
        return ("must be 1 to 63 lowercase letters, digits, '_', '.' or '-', starting with a "
                "letter or digit")
    return None


def _env_name(key):
    if not key or len(key) > 255 or key[0].isdigit() or not all(
            c == "_" or c.isascii() and c.isalnum() for c in key):
        return ("must be a variable name (letters, digits and '_', not starting with a digit, "
                "at most 255 characters)")
    return None


def _no_nul(text):
    return "must not contain a NUL byte" if "\0" in text else None


def _image_reference(text):
    if not text:
        return "must not be empty"
    try:
        reference.parse(text)
    except ConfigError as e:
        why = str(e).replace('image reference "%s": ' % text, "", 1)
        return "is not a valid image reference (%s)" % why
    return None


def _http_path(text):
    if not text.startswith("/") or any(c.isspace() or ord(c) < 32 for c in text):
        return "must start with '/' and contain no spaces or control characters"
    return None


def _loopback(text):
    address = parse_ipv4(text)
    if text in ("localhost", "::1") or address is not None and address >> 24 == 127:
        return None
    return ("must be a loopback address (127.0.0.1, ::1 or localhost): health is judged "
            "only on what the device sees")


def _role(text):
    # a role also names its key's file, /host/api-keys/<role>
    if (not text or any(c.isspace() or ord(c) < 32 for c in text) or "/" in text
            or text in (".", "..")):
        return "must be a non-empty role name without spaces or '/', not \".\" or \"..\""
    return None


# --- conversions --------------------------------------------------------------------------------

def _arch(value, path):
    _string(value, path, 32)
    try:
        return arch_name(value)
    except Unsupported:
        fail(path, "unknown architecture %s (use amd64, armhf, arm64 or ppc64le)" % show(value))


def clean_path(value, path):
    """An absolute path with "." and empty components removed; ".." is an error."""
    _string(value, path)
    if not value.startswith("/"):
        fail(path, "must be an absolute path, got %s" % show(value))
    if "\0" in value:
        fail(path, "must not contain a NUL byte")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        fail(path, "must not contain \"..\" components, got %s" % show(value))
    return "/" + "/".join(parts)


def _under(path, prefix):
    return path == prefix or path.startswith(prefix + "/")


def _volume_path(value, path):
    clean = clean_path(value, path)
    if clean == "/":
        fail(path, "must not be \"/\": mount the volume on a directory such as /data")
    for reserved in RESERVED_MOUNTS:
        if _under(clean, reserved):
            fail(path, "%s is under %s, which edgert mounts itself: choose another directory"
                 % (show(clean), reserved))
    return clean


def _device_path(value, path):
    clean = clean_path(value, path)
    if not clean.startswith("/dev/"):
        fail(path, "must be a device under /dev/, got %s" % show(value))
    return clean


def _permissions(value, path):
    _string(value, path, 3)
    if not value or value.strip("rwm"):
        fail(path, "must be made of the letters r, w and m, got %s" % show(value))
    return "".join(c for c in "rwm" if c in value)


def _user(value, path):
    if type(value) is int and 0 <= value < 0xFFFFFFFF:
        return str(value)
    _string(value, path, 65)
    parts = value.split(":")
    if len(parts) > 2 or not all(parts) or any(
            c.isspace() or c in "/\0" for c in value):
        fail(path, "must be \"user\" or \"user:group\" (names or numeric ids), got %s"
             % show(value))
    for part in parts:
        if part.isascii() and part.isdigit() and int(part) >= 0xFFFFFFFF:
            fail(path, "id %s is out of range (0..4294967294)" % part)
    return value


def parse_size(text):
    """Bytes for a size such as "64M", "512k", "1.5G", "2GiB" or "1024" (binary units); None
    if ``text`` is not one."""
    if len(text) > 32:
        return None
    t = text.strip().lower()
    if t.endswith("b"):
        t = t[:-1]
        if t.endswith("i") and t[-2:-1] in ("k", "m", "g", "t"):
            t = t[:-1]
    unit = 1
    if t and t[-1] in "kmgt":
        unit = 1 << (10 * ("kmgt".index(t[-1]) + 1))
        t = t[:-1]
    whole, dot, fraction = t.partition(".")
    if not whole or not (whole + fraction).isascii() or not whole.isdigit() or (
            dot and not fraction.isdigit()):
        return None
    return int(whole) * unit + (int(fraction) * unit // 10 ** len(fraction) if fraction else 0)


def _memory(value, path):
    size = value
    if type(value) is str:
        size = parse_size(value)
    if type(size) is not int:
        fail(path, "must be a number of bytes or a size such as \"64M\", \"512K\" or \"1.5G\", "
             "got %s" % show(value))
    if size < MIN_MEMORY:
        fail(path, "must be at least 4M (%d bytes), got %s" % (MIN_MEMORY, show(value)))
    if size > MAX_INT64:
        fail(path, "is too large, got %s" % show(value))
    return size


def _number(lo, hi, what):
    def convert(value, path):
        if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
            fail(path, "must be %s, got %s" % (what, show(value)))
        return value
    return Convert(convert)


def _expect_status(value, path):
    pair = Items(Int((100, 599), "an HTTP status 100..599"), 2, min_items=2).check(value, path)
    if pair[0] > pair[1]:
        fail(path, "must be [lowest, highest], got %s" % show(value))
    return pair


# --- IPv4 (the device list has no ipaddress module) ---------------------------------------------

def parse_ipv4(text):
    """The address as an int, or None; dotted quads only, no leading zeros (octal in libc)."""
    parts = text.split(".") if type(text) is str and len(text) <= 15 else ()
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not part.isascii() or not part.isdigit() or len(part) > 1 and part[0] == "0":
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


def parse_cidr(text):
    """(address, prefix) for "a.b.c.d/p", or None."""
    address, slash, prefix = text.partition("/") if type(text) is str else ("", "", "")
    address = parse_ipv4(address)
    if address is None or not slash or not prefix.isascii() or not prefix.isdigit() \
            or len(prefix) > 2 or int(prefix) > 32:
        return None
    return address, int(prefix)


def format_ipv4(address):
    return ".".join(str(address >> shift & 255) for shift in (24, 16, 8, 0))


def network_of(address, prefix):
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return address & mask


def _cidr(value, path):
    _string(value, path, 18)
    parsed = parse_cidr(value)
    if parsed is None:
        fail(path, "must be an IPv4 address with a prefix length such as \"10.190.0.1/16\", "
             "got %s" % show(value))
    return "%s/%d" % (format_ipv4(parsed[0]), parsed[1])


def _inside(inner, outer):
    (address, prefix), (outer_address, outer_prefix) = parse_cidr(inner), parse_cidr(outer)
    return prefix > outer_prefix and (
        network_of(address, outer_prefix) == network_of(outer_address, outer_prefix))


# --- the document -------------------------------------------------------------------------------

_MODE = Enum(("veth", "macvlan"))
_IFACE_NAME = Str(interface_name)


_NETWORK = Record({
    "wan_configure_network": opt(Enum(NETWORK_MODES), "disabled"),
    "lan_configure_network": opt(Enum(NETWORK_MODES), "disabled"),
    "wan_interface": opt(Record({
        "host": req(_IFACE_NAME), "mode": opt(_MODE, "veth"), "name": opt(_IFACE_NAME, "wan0"),
    })),
    "lan_interfaces": opt(Items(Record({  # a missing name becomes "lan<index>"
        "host": req(_IFACE_NAME), "mode": opt(_MODE, "veth"), "name": opt(_IFACE_NAME),
    }), 8), []),
    "access_provided_subnet": opt(Convert(_cidr)),
    "dhcp_range_template": opt(Convert(_cidr)),
    "dhcp_range": opt(Convert(_cidr)),
    "masquerade": opt(Bool(), False),
})


def _network(value, path):
    out = _NETWORK.check(value, path)
    for i, lan in enumerate(out["lan_interfaces"]):
        if lan["name"] is None:
            lan["name"] = "lan%d" % i
    subnet = out["access_provided_subnet"]
    for key in ("dhcp_range_template", "dhcp_range"):
        if out[key] is None:
            continue
        if subnet is None:
            fail(join(path, key), "needs access_provided_subnet: the range lies inside it")
        if not _inside(out[key], subnet):
            fail(join(path, key), "%s must lie inside access_provided_subnet %s and have a "
                 "longer prefix" % (out[key], subnet))
    if out["dhcp_range_template"] and subnet is not None:
        from ..net import ipam  # ipam builds on this module's address helpers
        try:  # a template that leaves no client addresses, or names a broadcast address
            ipam.check_template(subnet, out["dhcp_range_template"])
        except ConfigError as e:
            fail(join(path, "dhcp_range_template"), str(e).split(": ", 2)[-1])
    if out["dhcp_range_template"] and out["dhcp_range"]:
        fail(path, "dhcp_range_template and dhcp_range exclude each other: set "
             "dhcp_range_template for a subnet per instance, or dhcp_range for one range "
             "shared by all instances")
    lan, wan = out["lan_configure_network"], out["wan_configure_network"]
    if lan != "disabled":
        if subnet is None:
            fail(join(path, "access_provided_subnet"), "required when lan_configure_network "
                 "is \"%s\": the LAN addresses come from it" % lan)
        if not out["lan_interfaces"]:
            fail(join(path, "lan_interfaces"), "needs at least one interface when "
                 "lan_configure_network is \"%s\"" % lan)
    if wan != "disabled" and out["wan_interface"] is None:
        fail(join(path, "wan_interface"), "required when wan_configure_network is \"%s\"" % wan)
    if wan == "allocated" and out["wan_interface"]["mode"] != "veth":
        fail(join(path, "wan_interface.mode"), "must be \"veth\" when wan_configure_network is "
             "\"allocated\": the host bridge is the gateway, and a macvlan cannot reach its "
             "host")
    if out["masquerade"] and "disabled" in (lan, wan):
        fail(join(path, "masquerade"), "needs both lan_configure_network and "
             "wan_configure_network set (not \"disabled\"): it forwards LAN traffic to the WAN")
    seen = {}
    named = ([("wan_interface", out["wan_interface"])] if out["wan_interface"] else []) + [
        ("lan_interfaces[%d]" % i, lan_if) for i, lan_if in enumerate(out["lan_interfaces"])]
    for where, interface in named:
        if interface["name"] in seen:
            fail(join(path, where + ".name"), "%s is also the name of %s: container interface "
                 "names must differ" % (show(interface["name"]), seen[interface["name"]]))
        seen[interface["name"]] = where
    return out


def _probe_node(kind, fields):
    return Record(dict({"type": req(Enum((kind,)))}, **fields))


_PROBES = {
    "exec": _probe_node("exec", {
        "command": req(Items(Text(4096, _no_nul), 64, min_items=1))}),
    "tcp": _probe_node("tcp", {
        "port": req(Int((1, 65535))),
        "host": opt(Text(255, _loopback), "127.0.0.1")}),
    "http": _probe_node("http", {
        "port": req(Int((1, 65535))),
        "path": opt(Text(2048, _http_path), "/"),
        "host": opt(Text(255, _loopback), "127.0.0.1"),
        "expect_status": opt(Convert(_expect_status), [200, 399])}),
    "file": _probe_node("file", {"path": req(Convert(clean_path))}),
}


def _probe(value, path):
    if type(value) is not dict:
        fail(path, "must be an object, got %s" % show(value))
    kind = value.get("type")
    if type(kind) is not str or kind not in _PROBES:
        fail(join(path, "type"), "must be one of exec, tcp, http, file, got %s" % show(kind))
    return _PROBES[kind].check(value, path)


def _restart_rule(obj, path):
    if obj["backoff_max_s"] < obj["backoff_initial_s"]:
        fail(join(path, "backoff_max_s"), "must not be below backoff_initial_s (%d), got %d"
             % (obj["backoff_initial_s"], obj["backoff_max_s"]))


def _volumes(value, path):
    out = _VOLUME_LIST.check(value, path)
    seen = {}
    for i, volume in enumerate(out):
        if volume["path"] in seen:
            fail("%s[%d].path" % (path, i), "%s is also the path of volumes[%d]"
                 % (show(volume["path"]), seen[volume["path"]]))
        seen[volume["path"]] = i
    return out


_VOLUME_LIST = Items(Record({
    "name": req(Text(63, _service_name)),
    "path": req(Convert(_volume_path)),
    "read_only": opt(Bool(), False),
}), 32, unique="name")

_INPUT = Record({
    "name": req(Str(_service_name)),
    "image_sources": req(Items(Record({
        "arch": req(Convert(_arch)),
        "image_reference": req(Text(1024, _image_reference)),
        "authn": opt(Record({
            "registry_user": req(Text(1024, _no_nul)),
            "registry_pw": req(Text(16384, _no_nul)),
        })),
    }), 4, min_items=1, unique="arch")),
    "env": opt(Entries(Text(65536, _no_nul), 256, _env_name), {}),
    "command": opt(Items(Text(4096, _no_nul), 256, min_items=1)),
    "working_dir": opt(Convert(clean_path)),
    "user": opt(Convert(_user)),
    "memory_limit": opt(Convert(_memory)),
    "cpu_limit": opt(_number(0.01, 1024, "a number of cores from 0.01 to 1024 (such as 0.5)")),
    "pids_limit": opt(Int((1, 4194304), "a number of processes from 1 to 4194304")),
    "devices": opt(Items(Record({
        "path": req(Convert(_device_path)),
        "permissions": opt(Convert(_permissions), "rw"),
    }), 64, unique="path"), []),
    "net_devices": opt(Items(Record({"name": req(_IFACE_NAME)}), 16, unique="name"), []),
    "volumes": opt(Convert(_volumes), []),
    "health_check": opt(Record({
        "window_s": opt(Int((0, 86400), "0 to 86400 seconds"), 30),
        "probe": opt(Convert(_probe)),
        "interval_s": opt(Int((1, 3600), "1 to 3600 seconds"), 5),
        "timeout_s": opt(Int((1, 3600), "1 to 3600 seconds"), 3),
        "failure_threshold": opt(Int((1, 1000), "1 to 1000"), 3),
    }), {}),
    "restart_policy": opt(Record({
        "mode": opt(Enum(("always", "on-failure", "never")), "always"),
        "min_uptime_s": opt(Int((0, 86400), "0 to 86400 seconds"), 10),
        "backoff_initial_s": opt(Int((0, 3600), "0 to 3600 seconds"), 1),
        "backoff_max_s": opt(Int((0, 86400), "0 to 86400 seconds"), 300),
        "backoff_factor": opt(_number(1, 100, "a number from 1 to 100"), 2),
        # 0: never give up
        "max_failures": opt(Int((0, 1000000), "0 (never give up) to 1000000"), 10),
    }, _restart_rule), {}),
    "api_key_roles": opt(Items(Text(128, _role), 32), []),
    "rollout_strategy": opt(Enum(("download-then-stop", "stop-then-download")),
                            "download-then-stop"),
    "stop_grace_s": opt(Int((0, 3600), "0 to 3600 seconds"), 10),
    "network_config": opt(Convert(_network)),
})


def validate_input(doc, path=INPUT_PATH):
    """The checked, normalised ``node_service_input`` ``doc``; ConfigError naming the field.

    Sizes become bytes, architectures their edgert names, paths are cleaned, defaults filled
    and unset fields null. The documentation's top-level access_provided_subnet,
    dhcp_range_template and dhcp_range move into network_config. network_config stays null
    when the input carries none (an import then inherits it). Validating the result again
    gives the same document.
    """
    check_plain(doc, path)
    if type(doc) is not dict:
        fail(path, "must be an object, got %s" % show(doc))
    lifted = {key: doc[key] for key in NETWORK_KEYS if doc.get(key) is not None}
    if lifted:
        doc = {k: v for k, v in doc.items() if k not in NETWORK_KEYS}
        network = doc.get("network_config")
        if network is None:
            network = {}
        elif type(network) is not dict:
            fail(join(path, "network_config"), "must be an object, got %s" % show(network))
        for key, value in lifted.items():
            if network.get(key) not in (None, value):
                fail(join(path, key), "differs from network_config.%s: set it in one place"
                     % key)
        doc["network_config"] = dict(network, **lifted)
    return _INPUT.check(doc, path)


def default_network():
    """The network configuration of a service imported without one: no networking set up."""
    return _network({}, join(INPUT_PATH, "network_config"))


# --- services and versions ----------------------------------------------------------------------

def _version_body(doc):
    return {k: v for k, v in doc.items()
            if k not in ("name", "network_config", "version", "imported")}


def _network_differences(stored, given):
    return [key for key in stored if stored[key] != given.get(key)]


def check_network_unchanged(service, network):
    """ConfigError when an import carries a ``network`` other than the service's."""
    if network is None:
        return
    differs = _network_differences(service["network_config"], network)
    if differs:
        raise ConfigError("node service \"%s\": network_config is immutable after the first "
                          "import (differs in: %s); import without network_config or create a "
                          "new node service" % (service["name"], ", ".join(differs)))


def latest_version(service):
    """The newest version record of ``service``, or None."""
    versions = service["versions"]
    return max(versions, key=lambda v: v["version"]) if versions else None


def find_version(service, number):
    """The version record ``number`` of ``service``; NotFound if it has none."""
    for version in service["versions"]:
        if version["version"] == number:
            return version
    raise NotFound("node service \"%s\" has no version %s (latest: %s)"
                   % (service["name"], number, (latest_version(service) or {}).get("version")))


def import_service(existing, input_doc, now_iso):
    """(service, version number) after importing ``input_doc`` into ``existing`` (None: new).

    Does not change ``existing``. A version record is the validated input without name and
    network_config, plus "version" and "imported".
    """
    doc = validate_input(input_doc)
    name = doc["name"]
    if existing is None:
        existing = {"name": name, "network_config": doc["network_config"] or default_network(),
                    "versions": [], "created": now_iso}
    elif existing["name"] != name:
        raise ConfigError("node_service_input.name: %s does not match node service \"%s\""
                          % (show(name), existing["name"]))
    else:
        check_network_unchanged(existing, doc["network_config"])
    latest = latest_version(existing)
    number = latest["version"] + 1 if latest else 1
    record = _version_body(doc)
    record["version"] = number
    record["imported"] = now_iso
    service = dict(existing, versions=existing["versions"] + [record])
    return service, number


def redact(value):
    """A copy of a service (or any document) with registry passwords replaced by "***"."""
    if type(value) is dict:
        return {k: "***" if k == "registry_pw" and v is not None else redact(v)
                for k, v in value.items()}
    if type(value) is list:
        return [redact(v) for v in value]
    return value


# --- instances ----------------------------------------------------------------------------------

def check_instance_id(text):
    """``text`` if it is an instance id (1 to 32 lowercase letters and digits), else
    ConfigError."""
    if type(text) is not str or not 0 < len(text) <= 32 or not set(INSTANCE_ID_CHARS).issuperset(
            text):
        raise ConfigError("instance id %s: use 1 to 32 lowercase letters and digits (such as "
                          "\"abcdefgh\")" % show(text))
    return text


def instance_id_from(random_bytes):
    """An 8-character instance id from at least 8 random bytes (os.urandom at the edge)."""
    if len(random_bytes) < 8:
        raise ValueError("instance_id_from needs 8 random bytes, got %d" % len(random_bytes))
    number = int.from_bytes(random_bytes[:8], "big")
    chars = []
    for _ in range(8):
        number, digit = divmod(number, len(INSTANCE_ID_CHARS))
        chars.append(INSTANCE_ID_CHARS[digit])
    return "".join(chars)


def check_service_name(name):
    problem = _service_name(name) if type(name) is str else "must be a string"
    if problem:
        raise ConfigError("node service name %s: %s" % (show(name), problem))
    return name


def parse_selector(value):
    """None (latest), ("version", N) or "disabled", from null, "version:N" or "disabled", also
    in the documentation's {"value": ...} form."""
    shown = value
    if type(value) is dict and set(value) <= {"value"}:
        value = value.get("value")
    if value is None:
        return None
    if value == "disabled":
        return "disabled"
    if type(value) is str and value.startswith("version:"):
        digits = value[len("version:"):]
        if digits.isascii() and digits.isdigit() and len(digits) <= 9 and int(digits) > 0:
            return ("version", int(digits))
    raise ConfigError("version_target_selector %s: expected null, \"version:N\" or \"disabled\""
                      % show(shown))


def selector_text(selector):
    """The stored form of a parsed selector: None, "version:N" or "disabled"."""
    if type(selector) is tuple:
        return "version:%d" % selector[1]
    return selector


def validate_config_maps(maps, path="config_maps"):
    """A copy of ``maps`` ({file name: text}) after checking names and sizes."""
    if maps is None:
        return {}
    check_plain(maps, path)
    if type(maps) is not dict:
        fail(path, "must be an object of file name to text, got %s" % show(maps))
    if len(maps) > MAX_CONFIG_MAPS:
        fail(path, "has %d entries: the limit is %d" % (len(maps), MAX_CONFIG_MAPS))
    total = 0
    for name, text in maps.items():
        where = "%s[%s]" % (path, show(name))
        if (not name or len(name) > 128 or name in (".", "..")
                or not FILE_NAME_CHARS.issuperset(name)):
            fail(where, "the name must be a single file name of letters, digits, '_', '.' or "
                 "'-' (at most 128 characters, not \".\" or \"..\")")
        if name in RESERVED_HOST_FILES:
            fail(where, "the host writes this file itself: choose another name")
        if type(text) is not str:
            fail(where, "must be a string, got %s" % show(text))
        size = len(text.encode("utf-8"))
        if size > MAX_CONFIG_MAP_BYTES:
            fail(where, "is %d bytes: the limit is %d per config map"
                 % (size, MAX_CONFIG_MAP_BYTES))
        total += size
    if total > MAX_CONFIG_MAPS_BYTES:
        fail(path, "hold %d bytes in all: the limit is %d" % (total, MAX_CONFIG_MAPS_BYTES))
    return dict(maps)


def new_instance(instance_id, service_name, config_maps, selector, now_iso):
    """A new instance document, desired running, no version yet."""
    return {
        "id": check_instance_id(instance_id),
        "node_service": check_service_name(service_name),
        "config_maps": validate_config_maps(config_maps),
        "rollout_config": {"version_target_selector": selector_text(parse_selector(selector))},
        "desired": "running",
        "current_version": None,
        "good_version": None,
        "failed_versions": [],
        "rollout": None,
        "created": now_iso,
    }


def target_version(service, instance):
    """(version number or None, reason): the version ``instance`` should run.

    Latest (null selector): the newest version not failed on this device. If the newest
    failed, that is the newest one that did not. The target never goes below a current
    version that has not failed (only a current version missing from the service could be
    newer than every good one): moving down is a rollback, and only a failure causes one.
    Pinned: that version, unless it does not exist or failed here (None). Disabled: None.
    """
    selector = parse_selector(instance["rollout_config"]["version_target_selector"])
    name = service["name"]
    if selector == "disabled":
        return None, "orchestration disabled"
    numbers = sorted(v["version"] for v in service["versions"])
    failed = set(instance["failed_versions"])
    if selector is not None:
        pinned = selector[1]
        if pinned not in numbers:
            return None, ("pinned version %d does not exist in node service \"%s\" (latest: %s)"
                          % (pinned, name, numbers[-1] if numbers else "none"))
        if pinned in failed:
            return None, ("pinned version %d failed on this device: pin another version"
                          % pinned)
        return pinned, "pinned to version %d" % pinned
    if not numbers:
        return None, "node service \"%s\" has no version: import one" % name
    good = [n for n in numbers if n not in failed]
    if not good:
        return None, ("every version of node service \"%s\" failed on this device: import a "
                      "new version" % name)
    current = instance["current_version"]
    if current is not None and current not in failed and current > good[-1]:
        return current, "stays on version %d: no newer version is available" % current
    if good[-1] == numbers[-1]:
        return good[-1], "latest version %d" % good[-1]
    return good[-1], ("latest version %d failed on this device: newest good version is %d"
                      % (numbers[-1], good[-1]))


# --- edgert apply -------------------------------------------------------------------------------

_DESIRED_KEYS = ("node_services", "instances", "settings", "prune")
_INSTANCE_KEYS = ("id", "node_service", "config_maps", "version_target_selector")


def _get(doc, key, default):
    value = doc.get(key)
    return default if value is None else value


def _prefixed(path, call, *args):
    """``call(*args)`` with ``path`` put in front of the message of its error."""
    try:
        return call(*args)
    except EdgertError as e:
        raise type(e)("%s: %s" % (path, e), code=e.code) from None


def _desired_instance(doc, path, services):
    if type(doc) is not dict:
        fail(path, "must be an object, got %s" % show(doc))
    for key in doc:
        if key not in _INSTANCE_KEYS:
            fail(join(path, key), "unknown field (use %s)" % ", ".join(_INSTANCE_KEYS))
    for key in ("id", "node_service"):
        if key not in doc:
            fail(join(path, key), "required field is missing")
    instance_id = _prefixed(join(path, "id"), check_instance_id, doc["id"])
    service = doc["node_service"]
    if type(service) is not str or service not in services:
        fail(join(path, "node_service"), "%s is neither in node_services nor imported on this "
             "device" % show(service))
    maps = validate_config_maps(doc.get("config_maps"), join(path, "config_maps"))
    selector = _prefixed(join(path, "version_target_selector"), parse_selector,
                         doc.get("version_target_selector"))
    return instance_id, service, maps, selector_text(selector)


def plan_apply(state, desired_doc, check_settings=None):
    """The operations that make ``state`` what ``desired_doc`` (``edgert apply -f``) describes.

    ``state``: {"services": {name: service}, "instances": {id: instance}, "settings": {...}}.
    ``desired_doc``: {"node_services": [node_service_input...], "instances": [{id,
    node_service, config_maps, version_target_selector}], "settings": {...}, "prune": bool}.
    An instance's missing config_maps mean none, a missing selector means latest. Instances
    absent from the document are kept unless "prune" is true; node services are never
    removed. ``check_settings(settings)`` returns the checked settings or raises an EdgertError.

    The whole document is checked first: any error raises ConfigError and no operation is
    returned. Operations, in order: ("set_settings", settings), ("import", input) for a new
    service or an input that differs from the latest version, ("remove_instance", id),
    ("add_instance", id, service, config_maps, selector), ("set_config_maps", id, maps),
    ("set_selector", id, selector).
    """
    if type(desired_doc) is not dict:
        fail("", "the desired state must be an object, got %s" % show(desired_doc))
    for key in desired_doc:
        if key not in _DESIRED_KEYS:
            fail(key, "unknown field (use %s)" % ", ".join(_DESIRED_KEYS))
    services, instances = state["services"], state["instances"]
    prune = Bool().check(desired_doc.get("prune", False), "prune")
    check_plain(desired_doc, "")
    inputs = Items(_ANY, MAX_APPLY_SERVICES).check(_get(desired_doc, "node_services", []),
                                                   "node_services")
    entries = Items(_ANY, MAX_APPLY_INSTANCES).check(_get(desired_doc, "instances", []),
                                                     "instances")

    ops = []
    settings = desired_doc.get("settings")
    if settings is not None:
        if type(settings) is not dict:
            fail("settings", "must be an object, got %s" % show(settings))
        if check_settings is not None:
            settings = _prefixed("settings", check_settings, settings)
        if settings != state.get("settings"):
            ops.append(("set_settings", settings))

    named = {}
    for i, raw in enumerate(inputs):
        path = "node_services[%d]" % i
        doc = validate_input(raw, path)
        name = doc["name"]
        if name in named:
            fail(join(path, "name"), "%s is also the name of node_services[%d]"
                 % (show(name), named[name]))
        named[name] = i
        existing = services.get(name)
        if existing is None:
            ops.append(("import", doc))
            continue
        _prefixed(path, check_network_unchanged, existing, doc["network_config"])
        latest = latest_version(existing)
        if latest is None or _version_body(latest) != _version_body(doc):
            ops.append(("import", doc))

    known = set(services) | set(named)
    seen = {}
    removals, additions, updates = [], [], []
    for i, raw in enumerate(entries):
        path = "instances[%d]" % i
        instance_id, service, maps, selector = _desired_instance(raw, path, known)
        if instance_id in seen:
            fail(join(path, "id"), "%s is also the id of instances[%d]"
                 % (show(instance_id), seen[instance_id]))
        seen[instance_id] = i
        current = instances.get(instance_id)
        if current is None:
            additions.append(("add_instance", instance_id, service, maps, selector))
            continue
        if current["node_service"] != service:
            fail(join(path, "node_service"), "instance %s runs node service \"%s\": an instance "
                 "cannot change its node service; use a new instance id"
                 % (show(instance_id), current["node_service"]))
        if current["config_maps"] != maps:
            updates.append(("set_config_maps", instance_id, maps))
        stored = current["rollout_config"]["version_target_selector"]
        if selector_text(parse_selector(stored)) != selector:
            updates.append(("set_selector", instance_id, selector))
    if prune:
        removals = [("remove_instance", i) for i in sorted(instances) if i not in seen]
    return ops + removals + additions + updates
