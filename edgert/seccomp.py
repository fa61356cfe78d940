"""Compile the OCI ``linux.seccomp`` object into a classic-BPF seccomp filter.

Theory of operation
-------------------
The kernel runs the filter on every syscall over ``struct seccomp_data``
(native byte order)::

    offset 0  int nr;  4  u32 arch;  8  u64 instruction_pointer;  16  u64 args[6];

Classic BPF loads 32-bit words only, so a 64-bit argument is compared as two
halves. The program has this shape::

    ld  [arch]
    jeq AUDIT_ARCH_<native>  -> section        one section per ABI the profile
    jeq AUDIT_ARCH_<compat>  -> section        allows (i386 on x86_64, arm on arm64)
    ret KILL_PROCESS                           any other ABI, like libseccomp
  section:
    ld  [nr]
    binary search over nr ("jge" nodes); each leaf is a run of syscall numbers
    with one outcome: "ret <action>", or a chain of argument checks where the
    first matching rule wins and the default action ends the chain.

Semantics, chosen to match runc where the spec is silent:

- Names the target ABI does not have are skipped (such a syscall cannot be
  made). Names no architecture we know has are skipped too, and reported
  through ``unknown``.
- The ``args`` of one rule are ANDed, except that a rule naming the same
  argument index twice means "any of these" (runc's rule, kept so that
  profiles written for runc behave the same).
- Several rules for one syscall are tried in order; the first match wins
  (libseccomp has no order, so profiles written for it keep such rules
  disjoint and mean the same here).
- A rule's errnoRet defaults to EPERM, as the spec says; defaultErrnoRet
  only sets the default action's errno.
- Unless the default action is ALLOW, LOG or TRACE, syscall numbers above the
  highest one the profile names (and nr -1, which a tracer sets to skip a
  syscall) get ENOSYS instead of the default action, so that a libc trying a
  syscall newer than the profile falls back to an older one instead of
  failing with EPERM.
- x32 syscalls come in as AUDIT_ARCH_X86_64 with bit 30 set in nr; they are
  filtered with the x32 table when SCMP_ARCH_X32 is listed and kill the
  process otherwise.
- On 32-bit ABIs an argument is 32 bits wide: only the low word of
  seccomp_data.args is compared, as if the high word were zero (a 64-bit
  kernel running a compat task may leave garbage there).

Conditional jumps only reach 255 instructions ahead; the assembler routes a
longer jump through an unconditional ``ja`` placed right after it.
"""

import os
import struct

from .errors import ConfigError, Unsupported

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_MAX_INSNS = 4096  # BPF_MAXINSNS
_ENOSYS = 38
_EPERM = 1
_MAX_ERRNO = 4095  # the kernel clamps larger SECCOMP_RET_ERRNO data to this

# SECCOMP_RET_* values of the spec's actions.
_RET_ACTION = 0xFFFF0000  # SECCOMP_RET_ACTION_FULL; the low 16 bits are data
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000
_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,  # SECCOMP_RET_KILL_THREAD, as in libseccomp
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": _RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": _RET_ERRNO,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
# Defaults that let a syscall run (or hand it to a tracer that can answer
# ENOSYS itself) get no ENOSYS stub.
_PERMISSIVE = (_ACTIONS["SCMP_ACT_ALLOW"], _ACTIONS["SCMP_ACT_LOG"], _ACTIONS["SCMP_ACT_TRACE"])

_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    # Only changes how a notification listener waits; without a listener the
    # kernel rejects the flag, and edgert never creates one.
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 0,
}

_OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
              "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ")

# SCMP_ARCH_* -> syscall table name; None: a valid architecture that no
# machine edgert runs on can present, so it never needs a section.
_SCMP_ARCHES = {
    "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_X86": "i386", "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_AARCH64": "aarch64", "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_PPC64": "ppc64", "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_MIPS": None, "SCMP_ARCH_MIPS64": None, "SCMP_ARCH_MIPS64N32": None,
    "SCMP_ARCH_MIPSEL": None, "SCMP_ARCH_MIPSEL64": None, "SCMP_ARCH_MIPSEL64N32": None,
    "SCMP_ARCH_S390": None, "SCMP_ARCH_S390X": None, "SCMP_ARCH_PARISC": None,
    "SCMP_ARCH_PARISC64": None, "SCMP_ARCH_RISCV64": None, "SCMP_ARCH_LOONGARCH64": None,
    "SCMP_ARCH_M68K": None, "SCMP_ARCH_SH": None, "SCMP_ARCH_SHEB": None,
}

# Syscall table -> (argument width in bits, byte order). x32 passes arguments
# in 64-bit registers and the kernel reads them whole, so it compares 64 bits.
_ABIS = {
    "x86_64": (64, "<"), "x32": (64, "<"), "i386": (32, "<"),
    "aarch64": (64, "<"), "arm": (32, "<"),
    "ppc64le": (64, "<"), "ppc64": (64, ">"), "ppc": (32, ">"),
}
_X32_BIT = 0x40000000
# ARM's private syscalls (cacheflush, set_tls, ...) live far above the
# ordinary table; they must not make the ENOSYS stub start there.
_PRIVATE_BASE = {"arm": 0x0F0000}

# BPF opcodes (linux/filter.h).
_LD_W_ABS = 0x20
_ALU_AND_K = 0x54
_JA = 0x05
_JEQ_K = 0x15
_JGT_K = 0x25
_JGE_K = 0x35
_RET_K = 0x06
_JUMPS = {"jeq": _JEQ_K, "jgt": _JGT_K, "jge": _JGE_K}
_OFF_NR = 0
_OFF_ARCH = 4


def machine_abis(machine):
    """(native syscall table, tables of the other ABIs its kernel runs) for a uname machine."""
    if machine in ("x86_64", "amd64"):
        return "x86_64", ("i386", "x32")
    if machine in ("i386", "i486", "i586", "i686"):
        return "i386", ()
    if machine in ("aarch64", "arm64"):
        return "aarch64", ("arm",)
    if machine.startswith("arm"):  # armv7l, armv8l (32-bit on a 64-bit CPU), arm
        return "arm", ()
    if machine == "ppc64le":
        return "ppc64le", ()
    if machine == "ppc64":
        return "ppc64", ("ppc",)
    if machine == "ppc":
        return "ppc", ()
    raise Unsupported("seccomp: no syscall table for machine %r; edgert supports x86_64, i386, "
                      "aarch64, arm, ppc64le, ppc64 and ppc" % machine)


def compile(seccomp, arch=None, unknown=None):
    """Compile a ``linux.seccomp`` object for machine ``arch`` (default: this one).

    Returns ``(program, flags)``: packed ``struct sock_filter`` in the target's
    byte order, and the SECCOMP_FILTER_FLAG_* mask for seccomp(2). Syscall
    names skipped because no known architecture has them are appended to
    ``unknown`` when a list is given.
    """
    from . import syscalls

    where = "config.json: linux.seccomp"
    if not isinstance(seccomp, dict):
        raise ConfigError("%s: must be an object, got %s" % (where, _show(seccomp)))
    if seccomp.get("listenerPath") or seccomp.get("listenerMetadata"):
        raise Unsupported("%s.listenerPath: seccomp agents (SCMP_ACT_NOTIFY) are not supported by "
                          "edgert; remove listenerPath and listenerMetadata" % where)
    native, compat = machine_abis(arch or os.uname().machine)
    default = _action(seccomp, "defaultAction", "defaultErrnoRet", where)
    flags = _flags(seccomp.get("flags"), where + ".flags")
    abis = _abis(seccomp.get("architectures"), native, compat, where + ".architectures")
    rules = _rules(seccomp.get("syscalls"), where + ".syscalls")
    stub = default & _RET_ACTION not in _PERMISSIVE and default != _RET_ERRNO | _ENOSYS

    # x32 shares AUDIT_ARCH_X86_64, so it is part of the x86_64 section.
    sections = [(_Label(), abi) for abi in abis if abi != "x32"]
    items = [_Insn(_LD_W_ABS, _OFF_ARCH)]
    for entry, abi in sections:
        items.append(_Insn(_JEQ_K, syscalls.AUDIT_ARCH[abi], entry, None))
    items.append(_Insn(_RET_K, _RET_KILL_PROCESS))
    for entry, abi in sections:
        segments = _section(abi, "x32" in abis, rules, default, stub)
        items += (entry, _Insn(_LD_W_ABS, _OFF_NR))
        _emit_tree(items, segments, 0, len(segments) - 1, default, _ABIS[abi])
    if unknown is not None:
        for name in _names(rules):
            if name not in unknown and not _known_anywhere(name):
                unknown.append(name)
    return _assemble(items, _ABIS[native][1]), flags


# -- parsing ------------------------------------------------------------------

def _show(value):
    from .jsonfast import dumps
    return dumps(value)


def _list(value, where):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError("%s: must be an array, got %s" % (where, _show(value)))
    return value


def _uint(value, limit, where):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise ConfigError("%s: must be an integer 0..%d, got %s" % (where, limit, _show(value)))
    return value


def _action(obj, action_key, errno_key, where):
    name = obj.get(action_key)
    if name == "SCMP_ACT_NOTIFY":
        raise Unsupported("%s.%s: SCMP_ACT_NOTIFY needs a seccomp agent, which edgert does not "
                          "support; use SCMP_ACT_ERRNO or SCMP_ACT_TRACE" % (where, action_key))
    if name not in _ACTIONS:
        raise ConfigError("%s.%s: %s %s; use one of %s" % (
            where, action_key, "unknown action" if name is not None else "required, got",
            _show(name), ", ".join(_ACTIONS)))
    errno = obj.get(errno_key)
    if errno is not None and name not in _WITH_ERRNO:
        raise ConfigError("%s.%s: only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not %s"
                          % (where, errno_key, name))
    if name in _WITH_ERRNO:
        data = _EPERM if errno is None else _uint(errno, _MAX_ERRNO, where + "." + errno_key)
        return _ACTIONS[name] | data
    return _ACTIONS[name]


def _flags(names, where):
    mask = 0
    for name in _list(names, where):
        if name not in _FLAGS:
            raise ConfigError("%s: unknown flag %s; use one of %s"
                              % (where, _show(name), ", ".join(_FLAGS)))
        mask |= _FLAGS[name]
    return mask


def _abis(names, native, compat, where):
    """Syscall tables the filter needs: the native one, then listed ones this machine runs."""
    abis = [native]
    for name in _list(names, where):
        if name not in _SCMP_ARCHES:
            raise ConfigError("%s: unknown architecture %s; use the runtime-spec's SCMP_ARCH_* "
                              "names" % (where, _show(name)))
        abi = _SCMP_ARCHES[name]
        if abi in compat and abi not in abis:
            abis.append(abi)
    return abis


def _rules(entries, where):
    """[(names, ((action, conditions), ...))]: each entry's alternatives, conditions ANDed."""
    rules = []
    for i, entry in enumerate(_list(entries, where)):
        here = "%s[%d]" % (where, i)
        if not isinstance(entry, dict):
            raise ConfigError("%s: must be an object, got %s" % (here, _show(entry)))
        names = entry.get("names")
        if (not isinstance(names, list) or not names
                or not all(isinstance(n, str) and n for n in names)):
            raise ConfigError("%s.names: must be a non-empty array of syscall names, got %s"
                              % (here, _show(names)))
        ret = _action(entry, "action", "errnoRet", here)
        conds = []
        for j, arg in enumerate(_list(entry.get("args"), here + ".args")):
            at = "%s.args[%d]" % (here, j)
            if not isinstance(arg, dict):
                raise ConfigError("%s: must be an object, got %s" % (at, _show(arg)))
            op = arg.get("op")
            if op not in _OPERATORS:
                raise ConfigError("%s.op: unknown operator %s; use one of %s"
                                  % (at, _show(op), ", ".join(_OPERATORS)))
            conds.append((_uint(arg.get("index"), 5, at + ".index"), op,
                          _uint(arg.get("value"), _U64, at + ".value"),
                          _uint(arg.get("valueTwo", 0), _U64, at + ".valueTwo")))
        indexes = [c[0] for c in conds]
        if len(set(indexes)) < len(indexes):
            alternatives = [(c,) for c in conds]  # runc: same index twice means OR
        else:
            alternatives = [tuple(conds)]
        rules.append((names, tuple((ret, conds) for conds in alternatives)))
    return rules


def _names(rules):
    for names, _ in rules:
        yield from names


def _known_anywhere(name):
    from . import syscalls
    return any(name in syscalls.NUMBERS[abi] for abi in syscalls.NUMBERS)


# -- planning: syscall number ranges and their outcomes -----------------------

def _section(abi, with_x32, rules, default, stub):
    """[(first nr, outcome)] over all 2**32 syscall numbers of one AUDIT_ARCH."""
    from . import syscalls

    if abi != "x86_64":
        return _merge(_segments(syscalls.NUMBERS[abi], rules, default, stub, 0, _U32 + 1, abi))
    segments = _segments(syscalls.NUMBERS[abi], rules, default, stub, 0, _X32_BIT, abi)
    if with_x32:
        segments += _segments(syscalls.NUMBERS["x32"], rules, default, stub, _X32_BIT,
                              _U32 + 1, "x32")
    else:
        # x32 is not allowed; nr -1 is not x32 but how a tracer skips a
        # syscall, and gets what unknown numbers get.
        segments.append((_X32_BIT, ("ret", _RET_KILL_PROCESS)))
        segments.append((_U32, ("ret", _RET_ERRNO | _ENOSYS if stub else default)))
    return _merge(segments)


def _segments(table, rules, default, stub, start, end, abi):
    """[(first nr, outcome)] covering start..end-1 for one syscall table."""
    bits = _ABIS[abi][0]
    chains = {}
    for names, alternatives in rules:
        for name in names:
            nr = table.get(name)
            if nr is not None and start <= nr < end:
                if nr in chains:
                    chains[nr] += alternatives
                else:
                    chains[nr] = alternatives
    outcomes = {}
    for nr, chain in chains.items():
        if len(chain) == 1 and not chain[0][1]:  # the common case: one rule, no arguments
            outcomes[nr] = ("ret", chain[0][0])
        else:
            outcomes[nr] = _outcome(chain, default, bits)

    ordinary_end = _PRIVATE_BASE.get(abi, end)
    ordinary = [nr for nr in chains if nr < ordinary_end]
    stub_from = max(ordinary) + 1 if stub and ordinary else ordinary_end

    def background(nr):
        if stub and (stub_from <= nr < ordinary_end or nr == _U32):
            return ("ret", _RET_ERRNO | _ENOSYS)
        return ("ret", default)

    starts = {start, stub_from, ordinary_end, _U32}
    for nr in outcomes:
        starts.update((nr, nr + 1))
    return [(s, outcomes.get(s) or background(s)) for s in sorted(starts) if start <= s < end]


def _merge(segments):
    merged = []
    for start, outcome in segments:
        if not merged or merged[-1][1] != outcome:
            merged.append((start, outcome))
    return merged


def _outcome(chain, default, bits):
    """("ret", action) or ("chain", ((action, conds), ...)) for one syscall's rules."""
    kept = []
    for ret, conds in chain:
        folded = []
        for cond in conds:
            value = _fold(cond, bits)
            if value is False:
                break
            if value is None:
                folded.append(cond)
        else:
            kept.append((ret, tuple(folded)))
            if not folded:
                break  # unconditional: later rules can never be reached
    while kept and kept[-1][0] == default:
        kept.pop()  # falling through to the default does the same
    if not kept:
        return ("ret", default)
    if len(kept) == 1 and not kept[0][1]:
        return ("ret", kept[0][0])
    return ("chain", tuple(kept))


def _fold(cond, bits):
    """True or False when the condition does not depend on the argument, else None."""
    _, op, value, value_two = cond
    top = _U32 if bits == 32 else _U64
    if op == "SCMP_CMP_MASKED_EQ":
        mask, datum = value & top, value_two
        if datum & ~mask:
            return False
        return True if mask == 0 else None
    if op == "SCMP_CMP_EQ":
        return False if value > top else None
    if op == "SCMP_CMP_NE":
        return True if value > top else None
    if op == "SCMP_CMP_GT":
        return False if value >= top else None
    if op == "SCMP_CMP_GE":
        return True if value == 0 else False if value > top else None
    if op == "SCMP_CMP_LT":
        return False if value == 0 else True if value > top else None
    return True if value >= top else None  # SCMP_CMP_LE


# -- code generation ----------------------------------------------------------

class _Label:
    __slots__ = ("pos",)
    size = 0


class _Insn:
    """One instruction; jt/jf are _Labels or None for "the next instruction".

    ``size`` is 1 plus the ``ja`` trampolines the assembler adds after it.
    """

    __slots__ = ("code", "k", "jt", "jf", "pos", "far_t", "far_f", "size")

    def __init__(self, code, k, jt=None, jf=None):
        self.code, self.k, self.jt, self.jf = code, k, jt, jf
        self.far_t = self.far_f = False
        self.size = 1


def _emit_tree(items, segments, lo, hi, default, abi):
    if lo == hi:
        _emit_outcome(items, segments[lo][1], default, abi)
        return
    mid = (lo + hi + 1) // 2
    upper = _Label()
    items.append(_Insn(_JGE_K, segments[mid][0], upper, None))
    _emit_tree(items, segments, lo, mid - 1, default, abi)
    items.append(upper)
    _emit_tree(items, segments, mid, hi, default, abi)


def _emit_outcome(items, outcome, default, abi):
    kind, body = outcome
    if kind == "ret":
        items.append(_Insn(_RET_K, body))
        return
    for ret, conds in body:
        next_rule = _Label()
        for cond in conds:
            _emit_cond(items, cond, next_rule, abi)
        items.append(_Insn(_RET_K, ret))
        items.append(next_rule)
    if body[-1][1]:
        items.append(_Insn(_RET_K, default))


def _emit_cond(items, cond, fail, abi):
    """Code that falls through when ``cond`` holds and jumps to ``fail`` when not."""
    passed = _Label()
    targets = {"F": fail, "T": passed, None: None}
    for step in _cond_steps(cond, *abi):
        if step[0] == "ld":
            items.append(_Insn(_LD_W_ABS, step[1]))
        elif step[0] == "and":
            items.append(_Insn(_ALU_AND_K, step[1]))
        else:
            op, k, jt, jf = step
            items.append(_Insn(_JUMPS[op], k, targets[jt], targets[jf]))
    items.append(passed)


def _cond_steps(cond, bits, byteorder):
    """The steps of one comparison; jump targets "T" (holds), "F" (fails), None (next)."""
    index, op, value, value_two = cond
    base = 16 + 8 * index
    lo_at, hi_at = (base, base + 4) if byteorder == "<" else (base + 4, base)
    if op == "SCMP_CMP_MASKED_EQ":
        steps = []
        for at, shift in (((hi_at, 32),) if bits == 64 else ()) + ((lo_at, 0),):
            mask, datum = (value >> shift) & _U32, (value_two >> shift) & _U32
            if mask:
                steps.append(("ld", at))
                if mask != _U32:
                    steps.append(("and", mask))
                steps.append(("jeq", datum, None, "F"))
        return steps
    lo = value & _U32
    # The low word decides once the high words are equal (or absent on 32-bit ABIs).
    low_test = {
        "SCMP_CMP_EQ": ("jeq", lo, None, "F"), "SCMP_CMP_NE": ("jeq", lo, "F", None),
        "SCMP_CMP_GT": ("jgt", lo, None, "F"), "SCMP_CMP_GE": ("jge", lo, None, "F"),
        "SCMP_CMP_LT": ("jge", lo, "F", None), "SCMP_CMP_LE": ("jgt", lo, "F", None),
    }[op]
    if bits == 32:
        return [("ld", lo_at), low_test]
    hi = value >> 32
    if op == "SCMP_CMP_EQ":
        high = [("jeq", hi, None, "F")]
    elif op == "SCMP_CMP_NE":
        high = [("jeq", hi, None, "T")]
    else:
        above, below = ("T", "F") if op in ("SCMP_CMP_GT", "SCMP_CMP_GE") else ("F", "T")
        high = [] if hi == _U32 else [("jgt", hi, above, None)]
        if hi:  # with hi == 0, "not above" already means "equal"
            high.append(("jeq", hi, None, below))
    return [("ld", hi_at)] + high + [("ld", lo_at), low_test]


def _assemble(items, byteorder):
    """Lay out the items, adding ``ja`` trampolines for jumps beyond 255, and pack them."""
    insns = [item for item in items if item.size]
    jumps = [insn for insn in insns if insn.jt is not None or insn.jf is not None]
    while True:
        pos = 0
        for item in items:
            item.pos = pos
            pos += item.size
        if pos > _MAX_INSNS:
            raise ConfigError("config.json: linux.seccomp: the profile compiles to %d BPF "
                              "instructions, more than the kernel's %d; use fewer argument rules"
                              % (pos, _MAX_INSNS))
        grown = False
        for insn in jumps:
            if insn.jt is not None and not insn.far_t and insn.jt.pos - insn.pos > 256:
                insn.far_t = grown = True
                insn.size += 1
            if insn.jf is not None and not insn.far_f and insn.jf.pos - insn.pos > 256:
                insn.far_f = grown = True
                insn.size += 1
        if not grown:
            break
    fields = []
    for insn in insns:
        if insn.size == 1 and insn.jt is None and insn.jf is None:
            fields += (insn.code, 0, 0, insn.k)
            continue
        fields += (insn.code, _offset(insn, insn.jt, insn.far_t, 0),
                   _offset(insn, insn.jf, insn.far_f, insn.far_t), insn.k)
        tramp = insn.pos + 1
        for target, far in ((insn.jt, insn.far_t), (insn.jf, insn.far_f)):
            if far:
                fields += (_JA, 0, 0, target.pos - tramp - 1)
                tramp += 1
    return struct.pack("%s%s" % (byteorder, "HBBI" * (len(fields) // 4)), *fields)


def _offset(insn, target, far, slot):
    """jt/jf of a conditional jump laid out as: jump, its trampolines, the next instruction."""
    if far:
        return slot  # to the trampoline in that slot
    if target is None:
        return insn.far_t + insn.far_f
    offset = target.pos - insn.pos - 1
    assert 0 <= offset <= 255, "seccomp: backward or unresolved jump"
    return offset
