"""config.json's shape, declared once (OCI runtime-spec 1.0 to 1.2), and the walker that checks it.

CONFIG below is a tree of nodes: Obj (known keys only), Map (free keys, where
the spec allows extension: annotations, sysctl, unified, rdma, ...), List,
Str, Int, Bool and Enum. ``node.check(value, path)`` returns a new value of
the same JSON shape with the spec's defaults filled in, or raises
ConfigError naming the JSON path: ``process.cwd: must be an absolute path,
got "tmp"`` (spec.py puts "config.json: " in front). A field edgert
recognises but cannot honour is a ``refused`` field: setting it raises
Unsupported saying what to do instead.

JSON null and Go's empty strings mean "unset", so an optional field holding
null is treated as absent and a refused field holding "" is dropped.
Checks that span fields of one object are an Obj ``rule``; checks across
sections (namespaces against sysctl, ...) live in spec.py.
"""


from .. import caps
from .. import linuxconst as K
from .. import jsonfast
from ..errors import ConfigError, Unsupported

_MISSING = object()

UINT16 = (0, 0xFFFF)
UINT32 = (0, 0xFFFFFFFF)
INT32 = (-0x80000000, 0x7FFFFFFF)
INT64 = (-0x8000000000000000, 0x7FFFFFFFFFFFFFFF)
UINT64 = (0, 0xFFFFFFFFFFFFFFFF)
MAX_ERRNO = 4095  # the kernel's limit; seccomp keeps only 16 bits of the errno

HOOKS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
PROPAGATIONS = ("shared", "slave", "private", "unbindable",
                "rshared", "rslave", "rprivate", "runbindable")
SECCOMP_ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                   "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                   "SCMP_ACT_LOG")
SECCOMP_ERRNO_ACTIONS = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
SECCOMP_OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                     "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")
SECCOMP_ARCHES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
                  "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64",
                  "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
                  "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
                  "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
                  "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
                  "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB")
SECCOMP_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                 "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
TIME_CLOCKS = ("monotonic", "boottime")

_NO_LSM = "no LSM (AppArmor or SELinux) is available on this platform, so edgert cannot apply it"
_NOTIFY = ("seccomp user notification (SCMP_ACT_NOTIFY, listenerPath) is not supported by edgert: "
           "use SCMP_ACT_ERRNO or SCMP_ACT_ALLOW for these syscalls")


def fail(path, message, exc=ConfigError):
    """Raises ``exc`` for the value at ``path``; the caller prefixes the document's name."""
    raise exc("%s: %s" % (path, message) if path else message)


def show(value):
    """A value as it looks in JSON, cut short for one-line messages."""
    text = jsonfast.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def join(path, key):
    return "%s.%s" % (path, key) if path else key


# --- node types ---------------------------------------------------------------------------------

class Bool:
    def check(self, value, path):
        if type(value) is not bool:
            fail(path, "must be true or false, got %s" % show(value))
        return value


class Int:
    def __init__(self, bounds, what=None):
        self.lo, self.hi = bounds
        self.what = what or "an integer in %d..%d" % bounds

    def check(self, value, path):
        if type(value) is not int:
            fail(path, "must be an integer, got %s" % show(value))
        if not self.lo <= value <= self.hi:
            fail(path, "must be %s, got %s" % (self.what, show(value)))
        return value


class Str:
    """A string; ``rule(text)`` returns what it must be when the text is wrong, else None."""

    def __init__(self, rule=None):
        self.rule = rule

    def check(self, value, path):
        if type(value) is not str:
            fail(path, "must be a string, got %s" % show(value))
        if self.rule is not None:
            problem = self.rule(value)
            if problem:
                fail(path, "%s, got %s" % (problem, show(value)))
        return value


class Enum:
    """One of ``values``; a value in ``refused`` is recognised but raises Unsupported."""

    def __init__(self, values, what=None, refused=None):
        self.values = frozenset(values)
        self.what = what or "one of " + ", ".join(values)
        self.refused = refused or {}

    def check(self, value, path):
        if type(value) is str and value in self.refused:
            fail(path, "%s: %s" % (value, self.refused[value]), Unsupported)
        if type(value) is not str or value not in self.values:
            fail(path, "must be %s, got %s" % (self.what, show(value)))
        return value


class List:
    """An array; ``unique`` names a field of its items that must not repeat."""

    def __init__(self, item, min_items=0, unique=None):
        self.item = item
        self.min_items = min_items
        self.unique = unique

    def check(self, value, path):
        if type(value) is not list:
            fail(path, "must be an array, got %s" % show(value))
        if len(value) < self.min_items:
            fail(path, "must have at least %d entr%s" % (
                self.min_items, "y" if self.min_items == 1 else "ies"))
        out = [self.item.check(v, "%s[%d]" % (path, i)) for i, v in enumerate(value)]
        if self.unique is not None:
            seen = {}
            for i, v in enumerate(out):
                key = v[self.unique]
                if key in seen:
                    fail("%s[%d]" % (path, i), "duplicate %s (also in [%d])"
                         % (show(key), seen[key]))
                seen[key] = i
        return out


class Field:
    __slots__ = ("node", "required", "default", "refused", "unset")

    def __init__(self, node=None, required=False, default=_MISSING, refused=None, unset=()):
        self.node = node
        self.required = required
        self.default = default
        self.refused = refused
        self.unset = (None, "", [], {}) + unset  # refused-field values that ask for nothing


def req(node):
    return Field(node, required=True)


def opt(node, default=_MISSING):
    """An optional field; ``default`` (raw JSON, checked like input) fills it when absent."""
    return Field(node, default=default)


def refused(message, unset=()):
    """A field edgert recognises but cannot honour: setting it raises Unsupported(message).

    Values in ``unset`` ask for nothing edgert lacks and are dropped like "".
    """
    return Field(refused=message, unset=unset)


class Obj:
    """An object with known keys only; ``rule(obj, path)`` checks across its fields."""

    def __init__(self, fields, rule=None):
        self.fields = fields
        self.rule = rule

    def check(self, value, path):
        if type(value) is not dict:
            fail(path, "must be an object, got %s" % show(value))
        out = {}
        for key, v in value.items():
            field = self.fields.get(key)
            if field is None:
                fail(join(path, key), "unknown field")
            if field.refused is not None:
                if v not in field.unset:
                    fail(join(path, key), field.refused, Unsupported)
            elif v is not None:
                out[key] = field.node.check(v, join(path, key))
        for key, field in self.fields.items():
            if key in out or field.refused is not None:
                continue
            if field.required:
                fail(join(path, key), "required field is missing")
            if field.default is not _MISSING:
                out[key] = field.node.check(field.default, join(path, key))
        if self.rule is not None:
            self.rule(out, path)
        return out


class Map:
    """An object with free keys (an extension point of the spec); ``key`` checks each key."""

    def __init__(self, value, key=None):
        self.value = value
        self.key = key

    def check(self, value, path):
        if type(value) is not dict:
            fail(path, "must be an object, got %s" % show(value))
        out = {}
        for k, v in value.items():
            sub = "%s[%s]" % (path, jsonfast.dumps(k))
            if self.key is not None:
                problem = self.key(k)
                if problem:
                    fail(sub, problem)
            out[k] = self.value.check(v, sub)
        return out


# --- string rules -------------------------------------------------------------------------------

def absolute_path(text):
    if not text.startswith("/"):
        return "must be an absolute path"
    if "\0" in text:
        return "must not contain a NUL byte"
    return None


def no_nul(text):
    return "must not contain a NUL byte" if "\0" in text else None


def non_empty(text):
    return "must not be empty" if not text else no_nul(text)


def env_entry(text):
    if text.find("=") < 1:
        return "must be \"KEY=value\""
    return no_nul(text)


def _digits(text):
    return text.isascii() and text.isdigit()


def id_list(text):
    """A CPU or memory-node list such as "0-3,7"; empty means all."""
    if text == "":
        return None
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not _digits(first) or dash and (not _digits(last) or int(last) < int(first)):
            return "must be a list such as \"0-3,7\""
    return None


def hugepage_size(text):
    if len(text) < 3 or text[-2:-1] not in "KMGTP" or text[-1] != "B" or not _digits(text[:-2]):
        return "must be a size such as \"64KB\", \"2MB\" or \"1GB\""
    return None


def interface_name(text):
    if not 0 < len(text.encode()) < 16 or text in (".", "..") or any(
            c in "/:" or c.isspace() for c in text):
        return "must be a network interface name (1 to 15 bytes, no '/', ':' or spaces)"
    return None


def cgroups_path(text):
    if "\0" in text:
        return "must not contain a NUL byte"
    if ".." in text.split("/"):
        return "must not contain \"..\" components"
    return None


def device_access(text):
    return "must be made of the letters r, w and m" if text.strip("rwm") else None


def non_empty_key(key):
    return "keys must not be empty" if not key else None


def clock_name(key):
    return None if key in TIME_CLOCKS else "the clock must be one of %s" % ", ".join(TIME_CLOCKS)


# --- object rules -------------------------------------------------------------------------------

def _rlimit_rule(obj, path):
    if obj["soft"] > obj["hard"]:
        fail(join(path, "soft"), "must not exceed hard (%d), got %d" % (obj["hard"], obj["soft"]))


def _device_rule(obj, path):
    if obj["type"] != "p":
        for key in ("major", "minor"):
            if key not in obj:
                fail(join(path, key), "required field is missing (for device type %s)"
                     % show(obj["type"]))


def _one_of_rule(*keys):
    def rule(obj, path):
        if not any(k in obj for k in keys):
            fail(path, "must set at least one of %s" % ", ".join(keys))
    return rule


def _errno_rule(action_key, errno_key):
    def rule(obj, path):
        if errno_key in obj and obj[action_key] not in SECCOMP_ERRNO_ACTIONS:
            fail(join(path, errno_key), "only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, "
                 "not %s" % obj[action_key])
    return rule


def _seccomp_rule(obj, path):
    _errno_rule("defaultAction", "defaultErrnoRet")(obj, path)
    if obj.get("listenerMetadata"):
        fail(join(path, "listenerMetadata"), "only valid with listenerPath")


def _scheduler_rule(obj, path):
    policy = obj["policy"]
    if policy in ("SCHED_FIFO", "SCHED_RR"):
        if not 1 <= obj["priority"] <= 99:
            fail(join(path, "priority"), "must be 1..99 for %s, got %d" % (policy, obj["priority"]))
    elif obj["priority"] != 0:
        fail(join(path, "priority"), "must be 0 for %s, got %d" % (policy, obj["priority"]))
    if policy == "SCHED_DEADLINE":
        runtime, deadline, period = obj["runtime"], obj["deadline"], obj["period"]
        if not 0 < runtime <= deadline or period and deadline > period:
            fail(path, "SCHED_DEADLINE needs 0 < runtime <= deadline <= period (period 0: "
                 "the deadline), got %d, %d, %d" % (runtime, deadline, period))


def _personality_rule(obj, path):
    if obj["flags"]:
        fail(join(path, "flags"), "must be empty: the runtime-spec defines no personality flags, "
             "got %s" % show(obj["flags"]))


# --- the table ----------------------------------------------------------------------------------

U16, U32, I32, I64, U64 = Int(UINT16), Int(UINT32), Int(INT32), Int(INT64), Int(UINT64)
BYTES = Int((-1, INT64[1]), "-1 (unlimited) or a number of bytes")
STRINGS = List(Str())
PATHS = List(Str(absolute_path))
ENV = List(Str(env_entry))

CAPABILITY = Enum(caps.NAMES, "a capabilities(7) name such as \"CAP_CHOWN\"")
CAPABILITY_SET = List(CAPABILITY)

ID_MAPPING = Obj({
    "containerID": req(U32),
    "hostID": req(U32),
    "size": req(Int((1, UINT32[1]))),
})
ID_MAPPINGS = List(ID_MAPPING)

HOOK = Obj({
    "path": req(Str(absolute_path)),
    "args": opt(STRINGS, []),
    "env": opt(ENV, []),
    "timeout": opt(Int((1, INT32[1]), "a number of seconds greater than 0")),
})

MOUNT = Obj({
    "destination": req(Str(non_empty)),  # relative ones are made absolute in spec.py
    "type": opt(Str(no_nul)),
    "source": opt(Str(no_nul)),
    "options": opt(List(Str(no_nul)), []),
    "uidMappings": opt(ID_MAPPINGS),
    "gidMappings": opt(ID_MAPPINGS),
})

PROCESS = Obj({
    "terminal": opt(Bool(), False),
    "consoleSize": opt(Obj({"height": req(U32), "width": req(U32)})),
    "user": opt(Obj({
        "uid": req(U32),
        "gid": req(U32),
        "umask": opt(Int((0, 0o777), "a umask in 0..511 (0o777)")),
        "additionalGids": opt(List(U32), []),
        "username": refused("Windows users are not supported: set uid and gid"),
    }), {"uid": 0, "gid": 0}),
    "args": req(List(Str(no_nul), min_items=1)),
    "commandLine": refused("Windows command lines are not supported: set args"),
    "env": opt(ENV, []),
    "cwd": opt(Str(absolute_path), "/"),
    "capabilities": opt(Obj({name: opt(CAPABILITY_SET, []) for name in (
        "bounding", "effective", "inheritable", "permitted", "ambient")})),
    "rlimits": opt(List(Obj({
        "type": req(Enum(K.RLIMITS, "an RLIMIT_* name from getrlimit(2)")),
        "hard": req(U64),
        "soft": req(U64),
    }, _rlimit_rule), unique="type"), []),
    "noNewPrivileges": opt(Bool(), False),
    "apparmorProfile": refused("AppArmor profiles: " + _NO_LSM + "; remove the field "
                               "(podman: --security-opt apparmor=unconfined)",
                               unset=("unconfined",)),
    "selinuxLabel": refused("SELinux labels: " + _NO_LSM + "; remove the field "
                            "(podman: --security-opt label=disable)"),
    "oomScoreAdj": opt(Int((-1000, 1000))),
    "scheduler": opt(Obj({
        "policy": req(Enum(K.SCHED_POLICIES, refused={
            "SCHED_ISO": "the Linux kernel does not implement this policy: use SCHED_OTHER "
                         "or SCHED_BATCH"})),
        "nice": opt(Int((-20, 19)), 0),
        "priority": opt(Int((0, 99)), 0),
        "flags": opt(List(Enum(K.SCHED_FLAGS)), []),
        "runtime": opt(U64, 0),
        "deadline": opt(U64, 0),
        "period": opt(U64, 0),
    }, _scheduler_rule)),
    "ioPriority": opt(Obj({
        "class": req(Enum(K.IOPRIO_CLASSES)),
        "priority": req(Int((0, 7))),
    })),
    "execCPUAffinity": opt(Obj({
        "initial": opt(Str(id_list)),
        "final": opt(Str(id_list)),
    })),
})

BLOCK_DEVICE_THROTTLE = List(Obj({"major": req(I64), "minor": req(I64), "rate": req(U64)}))

RESOURCES = Obj({
    "devices": opt(List(Obj({
        "allow": req(Bool()),
        "type": opt(Enum(("a", "c", "b"))),
        "major": opt(I64),
        "minor": opt(I64),
        "access": opt(Str(device_access)),
    }))),
    "memory": opt(Obj({
        "limit": opt(BYTES),
        "reservation": opt(BYTES),
        "swap": opt(BYTES),
        "kernel": opt(BYTES),
        "kernelTCP": opt(BYTES),
        "swappiness": opt(Int((0, 100))),
        "disableOOMKiller": opt(Bool()),
        "useHierarchy": opt(Bool()),
        "checkBeforeUpdate": opt(Bool()),
    })),
    "cpu": opt(Obj({
        "shares": opt(U64),
        "quota": opt(Int((-1, INT64[1]), "-1 (unlimited) or microseconds")),
        "burst": opt(U64),
        "period": opt(U64),
        "realtimeRuntime": opt(Int((-1, INT64[1]), "-1 (unlimited) or microseconds")),
        "realtimePeriod": opt(U64),
        "cpus": opt(Str(id_list)),
        "mems": opt(Str(id_list)),
        "idle": opt(Int((0, 1), "0 or 1")),
    })),
    "pids": opt(Obj({"limit": req(Int((-1, INT64[1]), "-1 or 0 (unlimited) or a count"))})),
    "blockIO": opt(Obj({
        "weight": opt(U16),
        "leafWeight": opt(U16),
        "weightDevice": opt(List(Obj({
            "major": req(I64),
            "minor": req(I64),
            "weight": opt(U16),
            "leafWeight": opt(U16),
        }, _one_of_rule("weight", "leafWeight")))),
        "throttleReadBpsDevice": opt(BLOCK_DEVICE_THROTTLE),
        "throttleWriteBpsDevice": opt(BLOCK_DEVICE_THROTTLE),
        "throttleReadIOPSDevice": opt(BLOCK_DEVICE_THROTTLE),
        "throttleWriteIOPSDevice": opt(BLOCK_DEVICE_THROTTLE),
    })),
    "hugepageLimits": opt(List(Obj({
        "pageSize": req(Str(hugepage_size)),
        "limit": req(U64),
    }), unique="pageSize")),
    "network": opt(Obj({
        "classID": opt(U32),
        "priorities": opt(List(Obj({
            "name": req(Str(interface_name)),
            "priority": req(U32),
        }))),
    })),
    "rdma": opt(Map(Obj({
        "hcaHandles": opt(U32),
        "hcaObjects": opt(U32),
    }, _one_of_rule("hcaHandles", "hcaObjects")), non_empty_key)),
    "unified": opt(Map(Str(), non_empty_key)),
})

SECCOMP = Obj({
    "defaultAction": req(Enum(SECCOMP_ACTIONS, refused={"SCMP_ACT_NOTIFY": _NOTIFY})),
    "defaultErrnoRet": opt(Int((0, MAX_ERRNO))),
    "architectures": opt(List(Enum(SECCOMP_ARCHES)), []),
    "flags": opt(List(Enum(SECCOMP_FLAGS)), []),
    "listenerPath": refused(_NOTIFY),
    "listenerMetadata": opt(Str()),
    "syscalls": opt(List(Obj({
        "names": req(List(Str(non_empty), min_items=1)),
        "action": req(Enum(SECCOMP_ACTIONS, refused={"SCMP_ACT_NOTIFY": _NOTIFY})),
        "errnoRet": opt(Int((0, MAX_ERRNO))),
        "args": opt(List(Obj({
            "index": req(Int((0, 5))),
            "value": req(U64),
            "valueTwo": opt(U64),
            "op": req(Enum(SECCOMP_OPERATORS)),
        })), []),
    }, _errno_rule("action", "errnoRet"))), []),
}, _seccomp_rule)

LINUX = Obj({
    "devices": opt(List(Obj({
        "type": req(Enum(("c", "b", "u", "p"))),
        "path": req(Str(absolute_path)),
        "major": opt(I64),
        "minor": opt(I64),
        "fileMode": opt(U32),
        "uid": opt(U32),
        "gid": opt(U32),
    }, _device_rule), unique="path"), []),
    "uidMappings": opt(ID_MAPPINGS, []),
    "gidMappings": opt(ID_MAPPINGS, []),
    "timeOffsets": opt(Map(Obj({
        "secs": opt(I64),
        "nanosecs": opt(Int((0, 999999999))),
    }), clock_name)),
    "namespaces": opt(List(Obj({
        "type": req(Enum(K.NAMESPACE_FLAGS)),
        "path": opt(Str(absolute_path)),
    }), unique="type"), []),
    "netDevices": opt(Map(Obj({"name": opt(Str(interface_name))}), interface_name)),
    "resources": opt(RESOURCES),
    "cgroupsPath": opt(Str(cgroups_path)),
    "rootfsPropagation": opt(Enum(PROPAGATIONS)),
    "seccomp": opt(SECCOMP),
    "sysctl": opt(Map(Str(), non_empty_key), {}),
    "maskedPaths": opt(PATHS, []),
    "readonlyPaths": opt(PATHS, []),
    "mountLabel": refused("SELinux mount labels: " + _NO_LSM + "; remove the field"),
    "intelRdt": refused("Intel RDT (resctrl) is not supported by edgert: remove the section"),
    "personality": opt(Obj({
        "domain": req(Enum(K.PERSONALITY_DOMAINS)),
        "flags": opt(List(Str()), []),
    }, _personality_rule)),
    "memoryPolicy": refused("NUMA memory policies come with runtime-spec 1.3, which edgert does "
                            "not support yet: remove the field"),
})

CONFIG = Obj({
    "ociVersion": req(Str()),  # its range is checked by spec.check_version
    "root": req(Obj({
        "path": req(Str(non_empty)),
        "readonly": opt(Bool(), False),
    })),
    "mounts": opt(List(MOUNT), []),
    "process": req(PROCESS),
    "hostname": opt(Str(no_nul)),
    "domainname": opt(Str(no_nul)),
    "hooks": opt(Obj({name: opt(List(HOOK), []) for name in HOOKS}), {}),
    "annotations": opt(Map(Str(), non_empty_key), {}),
    "linux": opt(LINUX, {}),
    "solaris": refused("Solaris zones are not supported: edgert runs Linux containers only"),
    "windows": refused("Windows containers are not supported: edgert runs Linux containers only"),
    "vm": refused("virtual-machine containers are not supported: edgert runs Linux containers "
                  "only"),
    "zos": refused("z/OS containers are not supported: edgert runs Linux containers only"),
})
