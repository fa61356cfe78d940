"""Device access rules: OCI ``linux.resources.devices`` -> cgroup v1 lines or a v2 eBPF program.

Semantics, the same on both versions: rules apply in order and a later matching rule overrides an
earlier one, access bit by access bit (r, w, m). A request is allowed when every bit it asks for is
allowed by the last rule that matches the device and names that bit; a bit no rule names is denied.

cgroup v1 keeps a default (allow or deny everything) plus a list of exceptions, so a rule list
becomes "a" to set the default and one exception line per device pattern. Lists v1 cannot express
exactly (denying part of an earlier wildcard allow) raise Unsupported instead of guessing.

cgroup v2 has no device files: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the
cgroup decides each access. It reads ``struct bpf_cgroup_dev_ctx {u32 access_type; u32 major;
u32 minor;}`` (access_type = access bits << 16 | device type) and returns 1 to allow, 0 to deny.
"""

import struct
import sys

from ..errors import ConfigError, Unsupported
from ..record import record

# A rule; major/minor None match any number, access is a non-empty subset of "rwm" in that order.
Rule = record("Rule", "allow type major minor access")

# The devices runtime-spec says every container has (null, zero, full, random, urandom, tty,
# ptmx and the pseudo-terminals behind /dev/pts and /dev/console).
DEFAULT_DEVICE_RULES = (
    Rule(True, "c", 1, 3, "rwm"),
    Rule(True, "c", 1, 5, "rwm"),
    Rule(True, "c", 1, 7, "rwm"),
    Rule(True, "c", 1, 8, "rwm"),
    Rule(True, "c", 1, 9, "rwm"),
    Rule(True, "c", 5, 0, "rwm"),
    Rule(True, "c", 5, 2, "rwm"),
    Rule(True, "c", 136, None, "rwm"),
)

DENY_ALL = Rule(False, "a", None, None, "rwm")

_ACCESS_BITS = {"m": 1, "r": 2, "w": 4}   # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_ALL_ACCESS = 7
_TYPE_BITS = {"b": 1, "c": 2}             # BPF_DEVCG_DEV_BLOCK, _CHAR
_MAX_MAJOR = (1 << 12) - 1                # Linux dev_t: 12-bit major, 20-bit minor
_MAX_MINOR = (1 << 20) - 1


def parse_rules(config_rules, field="linux.resources.devices", source="config.json"):
    """Validated Rules from the OCI device cgroup list (None: no rules)."""
    if config_rules is None:
        return []
    if not isinstance(config_rules, list):
        raise ConfigError(f"{source}: {field}: must be a list, got {config_rules!r}")
    rules = []
    for index, entry in enumerate(config_rules):
        where = f"{source}: {field}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be an object, got {entry!r}")
        allow = entry.get("allow")
        if not isinstance(allow, bool):
            raise ConfigError(f"{where}.allow: must be true or false, got {allow!r}")
        kind = entry.get("type") or "a"
        if kind not in ("a", "b", "c"):
            raise ConfigError(f"{where}.type: must be \"a\", \"b\" or \"c\", got {kind!r}")
        major = _number(entry.get("major"), _MAX_MAJOR, where + ".major")
        minor = _number(entry.get("minor"), _MAX_MINOR, where + ".minor")
        rules.append(Rule(allow, kind, major, minor, _access(entry.get("access"), where)))
    return rules


def rules_for(config_rules, listed_devices, source="config.json"):
    """The rules the runtime applies: deny all, the config's rules, then the devices it provides.

    The default devices and every device listed in ``linux.devices`` come last, so no config
    rule takes them away: runtime-spec makes the defaults part of every container, and a node
    the runtime creates in the container's /dev on request is useless if access to it is denied.
    Everything else stays denied, including nodes the container makes itself with mknod.
    """
    rules = [DENY_ALL] + parse_rules(config_rules, source=source) + list(DEFAULT_DEVICE_RULES)
    for index, device in enumerate(listed_devices or ()):
        where = f"{source}: linux.devices[{index}]"
        if not isinstance(device, dict):
            raise ConfigError(f"{where}: must be an object, got {device!r}")
        kind = device.get("type")
        if kind == "p":
            continue  # a FIFO is not a device: the device cgroup never sees it
        if kind not in ("c", "u", "b"):
            raise ConfigError(f"{where}.type: must be \"c\", \"u\", \"b\" or \"p\", got {kind!r}")
        major = _number(device.get("major"), _MAX_MAJOR, where + ".major", required=True)
        minor = _number(device.get("minor"), _MAX_MINOR, where + ".minor", required=True)
        rules.append(Rule(True, "b" if kind == "b" else "c", major, minor, "rwm"))
    return rules


def _number(value, maximum, where, required=False):
    """A device number; None (or -1, as some engines write it) means any, where that is allowed."""
    if value is None and required:
        raise ConfigError(f"{where}: required for a device node")
    if value is None or (value == -1 and not required):
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise ConfigError(f"{where}: must be an integer from 0 to {maximum} (Linux device "
                          f"numbers have 12-bit majors and 20-bit minors), got {value!r}")
    return value


def _access(value, where):
    if value is None:
        return "rwm"
    if not isinstance(value, str) or not value or any(c not in "rwm" for c in value):
        raise ConfigError(f"{where}.access: must be a non-empty combination of r, w and m, "
                          f"got {value!r}")
    return _letters(_bits(value))


def _bits(access):
    bits = 0
    for letter in access:
        bits |= _ACCESS_BITS[letter]
    return bits


def _letters(bits):
    return "".join(letter for letter in "rwm" if bits & _ACCESS_BITS[letter])


def _is_everything(rule):
    return rule.type == "a" and rule.major is None and rule.minor is None and rule.access == "rwm"


# -- cgroup v1 -----------------------------------------------------------------------------------

def v1_lines(rules):
    """(file name, line) writes to devices.allow/devices.deny, one rule per write, in order."""
    default_allow = False
    exceptions = {}   # (type, major, minor) -> access bits; they allow when the default denies
    for rule in rules:
        if _is_everything(rule):
            default_allow, exceptions = rule.allow, {}
            continue
        bits = _bits(rule.access)
        for kind in ("c", "b") if rule.type == "a" else (rule.type,):
            pattern = (kind, rule.major, rule.minor)
            if rule.allow != default_allow:
                exceptions[pattern] = exceptions.get(pattern, 0) | bits
            else:
                _take_back(exceptions, pattern, bits, rule)
    if not default_allow:
        _cover_overlaps(exceptions)
    lines = [("devices.allow" if default_allow else "devices.deny", "a")]
    exception_file = "devices.deny" if default_allow else "devices.allow"
    for (kind, major, minor), bits in exceptions.items():
        lines.append((exception_file, f"{kind} {_star(major)}:{_star(minor)} {_letters(bits)}"))
    return lines


def _take_back(exceptions, pattern, bits, rule):
    """Removes ``bits`` for ``pattern`` from earlier exceptions, which v1 can do only wholesale."""
    for other in list(exceptions):
        if not exceptions[other] & bits or not _overlap(other, pattern):
            continue
        if not _contains(pattern, other):
            raise Unsupported(
                f"linux.resources.devices: the rule {'allow' if rule.allow else 'deny'} "
                f"{_describe(pattern)} {rule.access} takes part of the earlier rule for "
                f"{_describe(other)}, which cgroup v1 devices.allow/deny cannot express; "
                "list the devices one by one instead of as a wildcard")
        exceptions[other] &= ~bits
        if not exceptions[other]:
            del exceptions[other]


def _cover_overlaps(exceptions):
    """v1 allows a request only if one exception holds all its bits: add the overlaps' unions."""
    changed = True
    while changed:
        changed = False
        for first in list(exceptions):
            for second in list(exceptions):
                if first == second or not _overlap(first, second):
                    continue
                both = tuple(a if a is not None else b for a, b in zip(first, second))
                union = exceptions[first] | exceptions[second]
                if exceptions.get(both, 0) | union != exceptions.get(both, 0):
                    exceptions[both] = exceptions.get(both, 0) | union
                    changed = True


def _overlap(first, second):
    return first[0] == second[0] and all(a is None or b is None or a == b
                                         for a, b in zip(first[1:], second[1:]))


def _contains(outer, inner):
    return outer[0] == inner[0] and all(a is None or a == b for a, b in zip(outer[1:], inner[1:]))


def _describe(pattern):
    kind, major, minor = pattern
    return f"{kind} {_star(major)}:{_star(minor)}"


def _star(number):
    return "*" if number is None else str(number)


# -- cgroup v2: eBPF ---------------------------------------------------------------------------
#
# Registers: r1 = context, r2 = access bits still undecided, r3 = device type, r4 = major,
# r5 = minor, r6 = scratch. Rules are tested last to first, so the first match of a bit decides it.

_LDX_MEM_W = 0x61
_ALU64_AND_K = 0x57
_ALU64_RSH_K = 0x77
_ALU64_MOV_K = 0xb7
_ALU64_MOV_X = 0xbf
_JMP_JEQ_K = 0x15
_JMP_JNE_K = 0x55
_JMP_EXIT = 0x95


def bpf_program(rules, byteorder=sys.byteorder):
    """The BPF_PROG_TYPE_CGROUP_DEVICE program for ``rules``, as packed struct bpf_insn."""
    insns = [
        (_LDX_MEM_W, 2, 1, 0, 0),       # r2 = ctx->access_type
        (_ALU64_MOV_X, 3, 2, 0, 0),     # r3 = r2 & 0xffff: device type
        (_ALU64_AND_K, 3, 0, 0, 0xffff),
        (_ALU64_RSH_K, 2, 0, 0, 16),    # r2 >>= 16: access bits
        (_LDX_MEM_W, 4, 1, 4, 0),       # r4 = ctx->major
        (_LDX_MEM_W, 5, 1, 8, 0),       # r5 = ctx->minor
    ]
    for rule in reversed(rules):
        insns += _rule_block(rule)
        if _is_everything(rule):
            break  # every earlier rule is overridden
    insns += [(_ALU64_MOV_K, 0, 0, 0, 0), (_JMP_EXIT, 0, 0, 0, 0)]
    return _pack(insns, byteorder)


def _rule_block(rule):
    """Instructions for one rule; jumps to None mean 'to the next rule'."""
    bits = _bits(rule.access)
    block = []
    if rule.type != "a":
        block.append((_JMP_JNE_K, 3, 0, None, _TYPE_BITS[rule.type]))
    if rule.major is not None:
        block.append((_JMP_JNE_K, 4, 0, None, rule.major))
    if rule.minor is not None:
        block.append((_JMP_JNE_K, 5, 0, None, rule.minor))
    if rule.allow:
        block += [(_ALU64_AND_K, 2, 0, 0, ~bits),      # these bits are allowed
                  (_JMP_JNE_K, 2, 0, None, 0),         # others still undecided: go on
                  (_ALU64_MOV_K, 0, 0, 0, 1),
                  (_JMP_EXIT, 0, 0, 0, 0)]
    else:
        block += [(_ALU64_MOV_X, 6, 2, 0, 0),
                  (_ALU64_AND_K, 6, 0, 0, bits),
                  (_JMP_JEQ_K, 6, 0, None, 0),         # no undecided bit denied here: go on
                  (_ALU64_MOV_K, 0, 0, 0, 0),
                  (_JMP_EXIT, 0, 0, 0, 0)]
    return [(code, dst, src, len(block) - i - 1 if off is None else off, imm)
            for i, (code, dst, src, off, imm) in enumerate(block)]


def _pack(insns, byteorder):
    order = "<" if byteorder == "little" else ">"
    out = bytearray()
    for code, dst, src, off, imm in insns:
        # struct bpf_insn's dst_reg:4/src_reg:4 bitfield: dst is the low nibble on little endian
        regs = (src << 4 | dst) if byteorder == "little" else (dst << 4 | src)
        out += struct.pack(order + "BBhi", code, regs, off, imm)
    return bytes(out)
