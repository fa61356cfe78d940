"""edgert.seccomp, edgert.syscalls and edgert.seccomp_default.

Compiled filters run in bpf_vm (a classic-BPF interpreter) over hand-made
seccomp_data, and their decisions are compared with a plain-Python model of
the semantics (``Model``) and with libseccomp's compiler. One root test
installs the default profile in a child process and watches the kernel apply
it.
"""

import ctypes
import ctypes.util
import errno
import json
import os
import platform
import random
import shutil
import subprocess
import sys

import pytest

import bpf_vm
from edgert import seccomp, seccomp_default, syscalls
from edgert.errors import ConfigError, Unsupported

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF

KILL_THREAD = 0x00000000
KILL_PROCESS = 0x80000000
TRAP = 0x00030000
ERRNO = 0x00050000
TRACE = 0x7FF00000
LOG = 0x7FFC0000
ALLOW = 0x7FFF0000
EPERM = ERRNO | errno.EPERM
ENOSYS = ERRNO | errno.ENOSYS

AUDIT = syscalls.AUDIT_ARCH
NR = syscalls.NUMBERS
BITS = {"x86_64": 64, "x32": 64, "aarch64": 64, "ppc64le": 64, "ppc64": 64,
        "i386": 32, "arm": 32, "ppc": 32}
BYTEORDER = {"x86_64": "<", "aarch64": "<", "armv7l": "<", "ppc64le": "<", "ppc64": ">",
             "i686": "<"}
OPS = ["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
       "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]
EDGES = [0, 1, 2, 0x7FFFFFFF, 0x80000000, U32 - 1, U32, 1 << 32, (1 << 32) + 1,
         0x1_0000_0002, 0x7FFFFFFF_FFFFFFFF, 1 << 63, U64 - 1, U64]


def run(prog, machine, abi, nr, args=()):
    return bpf_vm.run(prog, nr, AUDIT[abi], args, byteorder=BYTEORDER[machine])


def compiled(profile, machine="x86_64", **kw):
    return seccomp.compile(profile, machine, **kw)[0]


def rule(names, action="SCMP_ACT_ALLOW", *args, **extra):
    out = {"names": [names] if isinstance(names, str) else names, "action": action}
    if args:
        out["args"] = [dict(zip(("index", "op", "value", "valueTwo"), a)) for a in args]
    out.update(extra)
    return out


# -- a plain model of the semantics --------------------------------------------

RET = {"SCMP_ACT_KILL": KILL_THREAD, "SCMP_ACT_KILL_THREAD": KILL_THREAD,
       "SCMP_ACT_KILL_PROCESS": KILL_PROCESS, "SCMP_ACT_TRAP": TRAP, "SCMP_ACT_ERRNO": ERRNO,
       "SCMP_ACT_TRACE": TRACE, "SCMP_ACT_LOG": LOG, "SCMP_ACT_ALLOW": ALLOW}


def action_of(obj, key, errno_key):
    ret = RET[obj[key]]
    if ret in (ERRNO, TRACE):
        ret |= obj.get(errno_key, errno.EPERM)
    return ret


def holds(op, arg, value, value_two):
    return {"SCMP_CMP_NE": arg != value, "SCMP_CMP_LT": arg < value,
            "SCMP_CMP_LE": arg <= value, "SCMP_CMP_EQ": arg == value,
            "SCMP_CMP_GE": arg >= value, "SCMP_CMP_GT": arg > value,
            "SCMP_CMP_MASKED_EQ": arg & value == value_two}[op]


def rule_matches(entry, args, bits):
    conds = entry.get("args", [])
    args = [a & U32 if bits == 32 else a for a in args]
    results = [holds(c["op"], args[c["index"]], c["value"], c.get("valueTwo", 0)) for c in conds]
    indexes = [c["index"] for c in conds]
    if len(set(indexes)) < len(indexes):
        return any(results)
    return all(results)


class Model:
    """The decisions a profile asks for, computed the slow and obvious way."""

    def __init__(self, profile):
        self.profile = profile
        self.default = action_of(profile, "defaultAction", "defaultErrnoRet")
        self.entries = {}  # abi -> nr -> [entry, ...] in profile order
        self.top = {}  # abi -> highest ordinary syscall number the profile names

    def index(self, abi):
        if abi not in self.entries:
            table, by_nr = NR[abi], {}
            for entry in self.profile.get("syscalls", []):
                for nr in sorted({table[n] for n in entry["names"] if n in table}):
                    by_nr.setdefault(nr, []).append(entry)
            private = 0x0F0000 if abi == "arm" else 1 << 32
            self.entries[abi] = by_nr
            self.top[abi] = (max([nr for nr in by_nr if nr < private], default=None), private)
        return self.entries[abi]

    def decide(self, abi, nr, args=(0,) * 6):
        args = tuple(args) + (0,) * (6 - len(args))
        for entry in self.index(abi).get(nr, ()):
            if rule_matches(entry, args, BITS[abi]):
                return action_of(entry, "action", "errnoRet")
        default = self.default
        if default in (ALLOW, LOG, ENOSYS) or default & 0xFFFF0000 == TRACE:
            return default
        top, private = self.top[abi]
        if nr == U32 or (top is not None and top < nr < private):
            return ENOSYS
        return default


def expected(profile, abi, nr, args=(0,) * 6):
    return Model(profile).decide(abi, nr, args)


# -- actions, errno, flags -----------------------------------------------------

@pytest.mark.parametrize("action,errno_ret,want", [
    ("SCMP_ACT_KILL", None, KILL_THREAD),
    ("SCMP_ACT_KILL_THREAD", None, KILL_THREAD),
    ("SCMP_ACT_KILL_PROCESS", None, KILL_PROCESS),
    ("SCMP_ACT_TRAP", None, TRAP),
    ("SCMP_ACT_ERRNO", None, ERRNO | errno.EPERM),
    ("SCMP_ACT_ERRNO", errno.ENOENT, ERRNO | errno.ENOENT),
    ("SCMP_ACT_ERRNO", 0, ERRNO),
    ("SCMP_ACT_TRACE", None, TRACE | errno.EPERM),
    ("SCMP_ACT_TRACE", 1234, TRACE | 1234),
    ("SCMP_ACT_LOG", None, LOG),
    ("SCMP_ACT_ALLOW", None, ALLOW),
])
def test_each_action_returns_its_seccomp_value(action, errno_ret, want):
    entry = rule("getpid", action)
    if errno_ret is not None:
        entry["errnoRet"] = errno_ret
    default = "SCMP_ACT_ERRNO" if action == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW"
    prog = compiled({"defaultAction": default, "syscalls": [entry]})
    assert run(prog, "x86_64", "x86_64", NR["x86_64"]["getpid"]) == want
    # read's number is below getpid's: the default action, not the ENOSYS stub.
    assert run(prog, "x86_64", "x86_64", NR["x86_64"]["read"]) == RET[default] | (
        errno.EPERM if default == "SCMP_ACT_ERRNO" else 0)


def test_default_errno_applies_to_the_default_action_only():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EACCES,
               "syscalls": [rule("getpid"), rule("getppid", "SCMP_ACT_ERRNO")]}
    prog = compiled(profile)
    assert run(prog, "x86_64", "x86_64", NR["x86_64"]["write"]) == ERRNO | errno.EACCES
    # A rule without errnoRet gets EPERM, as the spec (and runc) say.
    assert run(prog, "x86_64", "x86_64", NR["x86_64"]["getppid"]) == EPERM


def test_default_action_kill_and_trap():
    for action, want in (("SCMP_ACT_KILL_PROCESS", KILL_PROCESS), ("SCMP_ACT_TRAP", TRAP)):
        prog = compiled({"defaultAction": action, "syscalls": [rule("write")]})
        assert run(prog, "x86_64", "x86_64", NR["x86_64"]["read"]) == want
        assert run(prog, "x86_64", "x86_64", NR["x86_64"]["write"]) == ALLOW


@pytest.mark.parametrize("names,mask", [
    ([], 0),
    (["SECCOMP_FILTER_FLAG_TSYNC"], 1),
    (["SECCOMP_FILTER_FLAG_LOG"], 2),
    (["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], 4),
    (["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"], 7),
    # Only meaningful with a notification listener, which edgert never creates.
    (["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"], 0),
])
def test_flags_map_to_the_kernel_mask(names, mask):
    assert seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW", "flags": names}, "x86_64")[1] == mask


def test_unknown_flag_is_a_config_error():
    with pytest.raises(ConfigError, match="SECCOMP_FILTER_FLAG_NEW_LISTENER"):
        seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW",
                         "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]}, "x86_64")


@pytest.mark.parametrize("profile", [
    {"defaultAction": "SCMP_ACT_NOTIFY"},
    {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule("openat", "SCMP_ACT_NOTIFY")]},
    {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"},
    {"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "x"},
])
def test_notify_is_unsupported_with_a_clear_message(profile):
    with pytest.raises(Unsupported, match="seccomp agent"):
        seccomp.compile(profile, "x86_64")


@pytest.mark.parametrize("profile,where", [
    ({}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_DENY"}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "defaultErrnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}, "defaultErrnoRet"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "architectures"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]},
     "syscalls[0].names"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule("read", errnoRet=1)]},
     "syscalls[0].errnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule("read", "SCMP_ACT_ALLOW",
                                                           (6, "SCMP_CMP_EQ", 1))]},
     "syscalls[0].args[0].index"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule("read", "SCMP_ACT_ALLOW",
                                                           (0, "SCMP_CMP_LIKE", 1))]},
     "syscalls[0].args[0].op"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule("read", "SCMP_ACT_ALLOW",
                                                           (0, "SCMP_CMP_EQ", -1))]},
     "syscalls[0].args[0].value"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule("read", "SCMP_ACT_ALLOW",
                                                           (0, "SCMP_CMP_EQ", 1 << 64))]},
     "syscalls[0].args[0].value"),
])
def test_invalid_profiles_name_the_field(profile, where):
    with pytest.raises(ConfigError, match=r"^config\.json: linux\.seccomp\.%s: " % where.replace(
            "[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        seccomp.compile(profile, "x86_64")


@pytest.mark.parametrize("machine,abis", [
    ("x86_64", ("x86_64", ("i386", "x32"))), ("i686", ("i386", ())),
    ("aarch64", ("aarch64", ("arm",))), ("armv7l", ("arm", ())), ("armv8l", ("arm", ())),
    ("ppc64le", ("ppc64le", ())), ("ppc64", ("ppc64", ("ppc",))),
])
def test_machines_map_to_syscall_tables(machine, abis):
    assert seccomp.machine_abis(machine) == abis


def test_unsupported_machine():
    with pytest.raises(Unsupported, match="riscv64"):
        seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW"}, "riscv64")


def test_unknown_names_are_skipped_and_reported():
    unknown = []
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "syscalls": [rule(["read", "no_such_call", "cacheflush", "no_such_call"]),
                            rule("another_one")]}
    prog = compiled(profile, unknown=unknown)
    # cacheflush exists on arm, so it is not unknown, just absent on x86_64.
    assert unknown == ["no_such_call", "another_one"]
    assert run(prog, "x86_64", "x86_64", NR["x86_64"]["read"]) == ALLOW


# -- argument comparisons ------------------------------------------------------

@pytest.mark.parametrize("machine,abi", [("x86_64", "x86_64"), ("ppc64", "ppc64"),
                                         ("x86_64", "i386"), ("ppc64", "ppc")])
@pytest.mark.parametrize("op", OPS)
def test_comparisons_on_edge_values(machine, abi, op):
    """Every operator against every edge value, in both byte orders and word sizes."""
    masks = (0, 0xFF, U32, 1 << 32, 0xFFFF0000_0000FFFF, U64)
    values = EDGES if op != "SCMP_CMP_MASKED_EQ" else [
        (m, d) for m in masks for d in (0, 0xF, 1 << 32)]
    arches = ["SCMP_ARCH_X86"] if abi == "i386" else ["SCMP_ARCH_PPC"] if abi == "ppc" else []
    name = "ioctl"
    for value in values:
        value, value_two = value if isinstance(value, tuple) else (value, 0)
        profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
                   "syscalls": [rule(name, "SCMP_ACT_ERRNO", (1, op, value, value_two),
                                     errnoRet=errno.EINVAL)]}
        prog = compiled(profile, machine)
        for arg in EDGES + [value, value_two, value ^ 1, (value + 1) & U64, (value - 1) & U64]:
            args = (0, arg)
            got = run(prog, machine, abi, NR[abi][name], args)
            assert got == expected(profile, abi, NR[abi][name], args), (
                "%s %s %#x %#x on arg %#x (%s)\n%s" % (abi, op, value, value_two, arg, machine,
                                                      bpf_vm.disassemble(prog,
                                                                         BYTEORDER[machine])))


def test_32_bit_abis_ignore_the_high_word():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_ARM"],
               "syscalls": [rule("personality", "SCMP_ACT_ALLOW", (0, "SCMP_CMP_EQ", 8))]}
    prog = compiled(profile, "aarch64")
    nr = NR["arm"]["personality"]
    assert bpf_vm.run(prog, nr, AUDIT["arm"], (0xDEAD_0000_0008,)) == ALLOW
    # The 64-bit ABI compares all 64 bits.
    assert bpf_vm.run(prog, NR["aarch64"]["personality"], AUDIT["aarch64"],
                      (0xDEAD_0000_0008,)) == EPERM


def test_conditions_in_one_rule_are_anded():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule(
        "mmap", "SCMP_ACT_ALLOW", (2, "SCMP_CMP_EQ", 3), (3, "SCMP_CMP_MASKED_EQ", 0x20, 0x20))]}
    prog = compiled(profile)
    nr = NR["x86_64"]["mmap"]
    assert run(prog, "x86_64", "x86_64", nr, (0, 4096, 3, 0x22)) == ALLOW
    assert run(prog, "x86_64", "x86_64", nr, (0, 4096, 3, 0x02)) == EPERM
    assert run(prog, "x86_64", "x86_64", nr, (0, 4096, 7, 0x22)) == EPERM


def test_one_index_twice_means_any_of_them_like_runc():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule(
        "personality", "SCMP_ACT_ALLOW", (0, "SCMP_CMP_EQ", 0), (0, "SCMP_CMP_EQ", 8))]}
    prog = compiled(profile)
    nr = NR["x86_64"]["personality"]
    assert [run(prog, "x86_64", "x86_64", nr, (v,)) for v in (0, 8, 9)] == [ALLOW, ALLOW, EPERM]


def test_first_matching_rule_wins():
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        rule("socket", "SCMP_ACT_ERRNO", (0, "SCMP_CMP_EQ", 40), errnoRet=errno.EAFNOSUPPORT),
        rule(["socket", "bind"], "SCMP_ACT_ERRNO", (0, "SCMP_CMP_LT", 50), errnoRet=errno.EACCES),
        rule("socket", "SCMP_ACT_LOG"),
        rule("socket", "SCMP_ACT_KILL"),  # never reached
    ]}
    prog = compiled(profile)
    nr = NR["x86_64"]["socket"]
    assert run(prog, "x86_64", "x86_64", nr, (40,)) == ERRNO | errno.EAFNOSUPPORT
    assert run(prog, "x86_64", "x86_64", nr, (2,)) == ERRNO | errno.EACCES
    assert run(prog, "x86_64", "x86_64", nr, (60,)) == LOG
    assert run(prog, "x86_64", "x86_64", NR["x86_64"]["bind"], (60,)) == ALLOW


def test_random_profiles_match_the_model():
    rng = random.Random(20240601)
    names = sorted(NR["x86_64"])
    actions = list(RET)
    for _ in range(40):
        entries = []
        for _ in range(rng.randint(1, 25)):
            args = [(rng.randint(0, 2), rng.choice(OPS), rng.choice(EDGES), rng.choice(EDGES))
                    for _ in range(rng.choice((0, 0, 1, 2, 3)))]
            entries.append(rule(rng.sample(names, rng.randint(1, 4)), rng.choice(actions), *args))
        profile = {"defaultAction": rng.choice(actions), "syscalls": entries,
                   "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}
        prog, model = compiled(profile), Model(profile)
        for entry in entries:
            for name in entry["names"]:
                for _ in range(4):
                    args = tuple(rng.choice(EDGES) for _ in range(3))
                    for abi in ("x86_64", "i386", "x32"):
                        if name in NR[abi]:
                            nr = NR[abi][name]
                            assert run(prog, "x86_64", abi, nr, args) == \
                                model.decide(abi, nr, args), (name, abi, args)


# -- architectures -------------------------------------------------------------

def test_other_architectures_are_killed():
    prog = compiled({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]})
    assert bpf_vm.run(prog, 3, AUDIT["x86_64"]) == ALLOW
    assert bpf_vm.run(prog, 3, AUDIT["i386"]) == KILL_PROCESS
    assert bpf_vm.run(prog, 3, AUDIT["aarch64"]) == KILL_PROCESS


def test_listed_compat_architecture_gets_its_own_table():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule(["socketcall", "read"])],
               "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"]}
    prog = compiled(profile)
    assert bpf_vm.run(prog, NR["i386"]["socketcall"], AUDIT["i386"]) == ALLOW
    assert bpf_vm.run(prog, NR["i386"]["read"], AUDIT["i386"]) == ALLOW
    assert bpf_vm.run(prog, NR["i386"]["write"], AUDIT["i386"]) == EPERM
    # i386's socketcall number is x86_64's getuid, above the x86_64 read the
    # profile names.
    assert bpf_vm.run(prog, NR["i386"]["socketcall"], AUDIT["x86_64"]) == ENOSYS
    # AArch64 is listed, but an x86_64 kernel never presents it.
    assert bpf_vm.run(prog, 0, AUDIT["aarch64"]) == KILL_PROCESS


def test_arm_compat_on_aarch64():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_ARM"],
               "syscalls": [rule(["cacheflush", "openat"])]}
    prog = compiled(profile, "aarch64")
    assert bpf_vm.run(prog, NR["arm"]["cacheflush"], AUDIT["arm"]) == ALLOW
    assert bpf_vm.run(prog, NR["arm"]["openat"], AUDIT["arm"]) == ALLOW
    assert bpf_vm.run(prog, NR["aarch64"]["openat"], AUDIT["aarch64"]) == ALLOW
    # The ENOSYS stub stops below ARM's private syscalls.
    assert bpf_vm.run(prog, NR["arm"]["openat"] + 1, AUDIT["arm"]) == ENOSYS
    assert bpf_vm.run(prog, NR["arm"]["set_tls"], AUDIT["arm"]) == EPERM


def test_x32_syscalls_are_killed_unless_x32_is_listed():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule(["read", "rt_sigaction"])]}
    prog = compiled(profile)
    x32_read = NR["x32"]["read"]
    assert x32_read == 0x40000000
    assert bpf_vm.run(prog, x32_read, AUDIT["x86_64"]) == KILL_PROCESS
    assert bpf_vm.run(prog, 0x40000200, AUDIT["x86_64"]) == KILL_PROCESS
    # nr -1 is how a tracer skips a syscall, not an x32 call.
    assert bpf_vm.run(prog, -1, AUDIT["x86_64"]) == ENOSYS

    profile["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"]
    prog = compiled(profile)
    assert bpf_vm.run(prog, x32_read, AUDIT["x86_64"]) == ALLOW
    assert bpf_vm.run(prog, NR["x32"]["rt_sigaction"], AUDIT["x86_64"]) == ALLOW
    assert NR["x32"]["rt_sigaction"] == 0x40000000 + 512
    # x86_64's rt_sigaction number with the x32 bit is no x32 syscall.
    assert bpf_vm.run(prog, 0x40000000 + 13, AUDIT["x86_64"]) == EPERM
    assert bpf_vm.run(prog, NR["x86_64"]["write"], AUDIT["x86_64"]) == EPERM


def test_enosys_for_numbers_above_the_profile():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule(["read", "openat2"])]}
    prog = compiled(profile)
    top = NR["x86_64"]["openat2"]
    assert run(prog, "x86_64", "x86_64", top - 1, ()) == EPERM
    assert run(prog, "x86_64", "x86_64", top + 1, ()) == ENOSYS
    assert run(prog, "x86_64", "x86_64", 0x3FFFFFFF, ()) == ENOSYS
    for default in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"):
        profile["defaultAction"] = default
        prog = compiled(profile)
        assert run(prog, "x86_64", "x86_64", top + 1, ()) == RET[default] | (
            errno.EPERM if default == "SCMP_ACT_TRACE" else 0)


# -- program shape -------------------------------------------------------------

def test_long_jumps_go_through_trampolines():
    # A chain of 300 argument rules on read (nr 0) sits between the first
    # tree node and everything above it.
    entries = [rule("read", "SCMP_ACT_ERRNO", (0, "SCMP_CMP_EQ", 1000 + i), errnoRet=i % 4000)
               for i in range(300)]
    entries.append(rule(sorted(NR["x86_64"])[::3]))
    profile = {"defaultAction": "SCMP_ACT_KILL", "syscalls": entries,
               "architectures": ["SCMP_ARCH_X86"]}
    prog, model = compiled(profile), Model(profile)
    insns = bpf_vm.check(prog)
    assert any(code == 0x05 for code, _, _, _ in insns), "expected ja trampolines"
    for abi in ("x86_64", "i386"):
        for nr in sorted(set(NR[abi].values())) + [1 << 20, U32]:
            for arg in (1000, 1150, 1299, 1300):
                assert run(prog, "x86_64", abi, nr, (arg,)) == model.decide(abi, nr, (arg,))


def test_too_many_instructions_is_a_config_error():
    entries = [rule("read", "SCMP_ACT_ERRNO", (i % 6, "SCMP_CMP_GT", i << 33)) for i in range(900)]
    with pytest.raises(ConfigError, match="4096"):
        compiled({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": entries})


def test_byte_order_follows_the_target():
    profile = {"defaultAction": "SCMP_ACT_ALLOW"}
    little, big = compiled(profile, "ppc64le"), compiled(profile, "ppc64")
    assert little[:2] == b"\x20\x00" and big[:2] == b"\x00\x20"


def test_compile_is_fast_enough_for_every_container_start():
    import time
    profile = seccomp_default.profile(set())
    start = time.perf_counter()
    for _ in range(10):
        compiled(profile)
    # About 1.5 ms here; the bound leaves room for slow CPUs and emulators.
    assert (time.perf_counter() - start) / 10 < 0.1


# -- the default profile -------------------------------------------------------

ALL_CAPS = {"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_SYS_BOOT",
            "CAP_SYS_MODULE", "CAP_SYS_TIME", "CAP_SYS_NICE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
            "CAP_SYS_PACCT", "CAP_SYS_TTY_CONFIG", "CAP_SYSLOG", "CAP_DAC_READ_SEARCH"}
MACHINES = {"x86_64": ("x86_64", "i386", "x32"), "aarch64": ("aarch64", "arm"),
            "armv7l": ("arm",), "ppc64le": ("ppc64le",), "ppc64": ("ppc64", "ppc"),
            "i686": ("i386",)}


def decide(machine, abi, caps, name, *args):
    prog = compiled(seccomp_default.profile(caps), machine)
    if name not in NR[abi]:
        return None
    return run(prog, machine, abi, NR[abi][name], args)


@pytest.mark.parametrize("caps", [set(), {"CAP_SYS_ADMIN"}, ALL_CAPS])
@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_default_profile_decides_every_syscall_as_modelled(machine, caps):
    profile = seccomp_default.profile(caps)
    unknown = []
    prog, model = compiled(profile, machine, unknown=unknown), Model(profile)
    assert unknown == []
    bpf_vm.check(prog, BYTEORDER[machine])
    for abi in MACHINES[machine]:
        for name, nr in NR[abi].items():
            for args in ((0,), (0x10000000,), (40,), (2,), (0x20008,), (U32,)):
                assert run(prog, machine, abi, nr, args) == model.decide(abi, nr, args), (
                    machine, abi, name, args)


def test_default_profile_is_plain_json_and_lists_known_names():
    profile = seccomp_default.profile({"SYS_ADMIN"})
    assert json.loads(json.dumps(profile)) == profile
    everywhere = set().union(*(NR[abi] for abi in NR))
    assert {n for entry in profile["syscalls"] for n in entry["names"]} <= everywhere


@pytest.mark.parametrize("machine,abi", [("x86_64", "x86_64"), ("x86_64", "i386"),
                                         ("aarch64", "aarch64"), ("aarch64", "arm"),
                                         ("ppc64le", "ppc64le")])
def test_default_profile_intentions(machine, abi):
    def d(name, *args, caps=frozenset()):
        return decide(machine, abi, set(caps), name, *args)

    for name in ("read", "openat", "execve", "exit_group", "futex", "mmap", "getrandom",
                 "rt_sigaction", "clock_gettime", "epoll_pwait", "sendmsg", "statx", "seccomp"):
        assert d(name) in (ALLOW, None), name  # None: this ABI has no such syscall
    for name in ("kexec_load", "kexec_file_load", "keyctl", "add_key", "request_key",
                 "io_uring_setup", "uselib"):
        assert d(name, caps=ALL_CAPS) in (EPERM, None), name
    gated = {"mount": "CAP_SYS_ADMIN", "umount2": "CAP_SYS_ADMIN", "unshare": "CAP_SYS_ADMIN",
             "setns": "CAP_SYS_ADMIN", "pivot_root": "CAP_SYS_ADMIN", "bpf": "CAP_BPF",
             "perf_event_open": "CAP_PERFMON", "ptrace": "CAP_SYS_PTRACE",
             "reboot": "CAP_SYS_BOOT", "init_module": "CAP_SYS_MODULE",
             "settimeofday": "CAP_SYS_TIME", "chroot": "CAP_SYS_CHROOT"}
    for name, cap in gated.items():
        assert d(name) == EPERM, name
        assert d(name, caps={cap}) == ALLOW, name
    assert d("reboot", caps={"CAP_SYS_ADMIN"}) == EPERM

    clone_newuser, thread_flags = 0x10000000, 0x003D0F00
    assert d("clone", thread_flags) == ALLOW
    assert d("clone", 0x11) == ALLOW  # fork: SIGCHLD
    assert d("clone", clone_newuser | 0x11) == EPERM
    assert d("clone", 0x20000 | 0x11) == EPERM  # CLONE_NEWNS
    assert d("clone", clone_newuser, caps={"CAP_SYS_ADMIN"}) == ALLOW
    assert d("clone3") == ENOSYS
    assert d("clone3", caps={"CAP_SYS_ADMIN"}) == ALLOW

    assert d("personality", 0) == ALLOW
    assert d("personality", 8) == ALLOW
    assert d("personality", U32) == ALLOW
    assert d("personality", 0x0400000) == EPERM  # READ_IMPLIES_EXEC

    af_inet, af_vsock, af_can = 2, 40, 29
    assert d("socket", af_inet) == ALLOW
    assert d("socket", af_can) == ALLOW
    assert d("socket", af_vsock) == EPERM
    # An int argument: junk in the high word does not change the decision.
    assert d("socket", 0xFFFF_FFFF_0000_0000 | af_inet) == ALLOW

    # A syscall newer than the profile gets ENOSYS so that libc can fall back.
    assert d("listns") == ENOSYS


def test_default_profile_accepts_capabilities_without_prefix():
    assert decide("x86_64", "x86_64", {"sys_boot"}, "reboot") == ALLOW


# -- syscall tables ------------------------------------------------------------

def test_tables_have_every_supported_architecture():
    assert sorted(NR) == sorted(BITS)
    assert NR["x86_64"]["read"] == 0 and NR["i386"]["read"] == 3
    assert NR["aarch64"]["openat"] == 56 and "open" not in NR["aarch64"]
    assert NR["arm"]["cacheflush"] == 0x0F0002
    assert NR["ppc64le"] is NR["ppc64le"] and NR["ppc64"]["clone"] == 120
    assert NR["x86_64"]["fchmodat2"] == 452 and NR["x32"]["fchmodat2"] == 0x40000000 + 452
    assert AUDIT["x86_64"] == 0xC000003E and AUDIT["ppc"] == 0x14


def test_importing_the_tables_parses_nothing():
    code = ("import edgert.syscalls as s; assert not s.NUMBERS._parsed; "
            "s.NUMBERS['arm']; assert list(s.NUMBERS._parsed) == ['arm']")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


LIBSECCOMP_ARCH = {"x86_64": "x86_64", "i386": "x86", "x32": "x32", "aarch64": "aarch64",
                   "arm": "arm", "ppc64le": "ppc64le", "ppc64": "ppc64", "ppc": "ppc"}


@pytest.mark.skipif(not ctypes.util.find_library("seccomp"), reason="needs libseccomp")
def test_tables_agree_with_libseccomp():
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    checked = 0
    for abi, name in LIBSECCOMP_ARCH.items():
        token = lib.seccomp_arch_resolve_name(name.encode())
        # libseccomp's token for x32 is its own; the kernel reports x86_64's.
        if abi != "x32":
            assert token == AUDIT[abi], abi
        for call, nr in NR[abi].items():
            theirs = lib.seccomp_syscall_resolve_name_arch(token, call.encode())
            # Negative: unknown to this libseccomp (newer) or one of its
            # pseudo numbers (socket calls multiplexed through socketcall).
            if theirs >= 0:
                assert theirs == nr, (abi, call)
                checked += 1
    assert checked > 2500


LIBSECCOMP_OPS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
                  "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}


def libseccomp_filter(profile, arches):
    """The same profile compiled by libseccomp (x86_64 native), as packed BPF."""
    import tempfile

    class Cmp(ctypes.Structure):
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

    lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(Cmp)]
    default = action_of(profile, "defaultAction", "defaultErrnoRet")
    ctx = lib.seccomp_init(default)
    try:
        for arch in arches:
            assert lib.seccomp_arch_add(ctx, lib.seccomp_arch_resolve_name(arch.encode())) == 0
        for entry in profile["syscalls"]:
            action = action_of(entry, "action", "errnoRet")
            args = entry.get("args", [])
            conds = (Cmp * max(1, len(args)))(*[
                Cmp(a["index"], LIBSECCOMP_OPS[a["op"]], a["value"], a.get("valueTwo", 0))
                for a in args])
            for name in entry["names"]:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if action != default and nr != -1:
                    assert lib.seccomp_rule_add_array(ctx, action, nr, len(args), conds) in (
                        0, -errno.EEXIST), name
        with tempfile.TemporaryFile() as f:
            assert lib.seccomp_export_bpf(ctx, f.fileno()) == 0
            f.seek(0)
            return f.read()
    finally:
        lib.seccomp_release(ctx)


def edge_profile():
    """Each operator against edge values, one rule per syscall.

    One rule each: libseccomp 2.5 merges several 64-bit LT rules on one
    syscall wrongly (0xffffffff < 1 << 32 comes out false).
    """
    calls = iter(sorted(name for name, nr in NR["x86_64"].items() if nr < 300))
    entries = []
    for op in OPS:
        for value in (0, 1, U32, 1 << 32, 0xFFFF_0000_0000_0001, U64 - 1):
            value_two = value & 0xF0F0_0000_0000_00F0 if op == "SCMP_CMP_MASKED_EQ" else 0
            entries.append(rule(next(calls), "SCMP_ACT_ERRNO", (1, op, value, value_two),
                                errnoRet=errno.EINVAL))
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": entries}


DEFAULT_PROFILE_ARGS = [0, 2, 8, 40, 0x11, 0x20008, 0x400000, 0x10000011, U32, 0xDEAD_0000_0002]


@pytest.mark.skipif(not ctypes.util.find_library("seccomp"), reason="needs libseccomp")
@pytest.mark.skipif(platform.machine() != "x86_64", reason="libseccomp builds for its own machine")
@pytest.mark.parametrize("profile,arches,values", [
    (seccomp_default.profile(set()), ("x86", "x32"), DEFAULT_PROFILE_ARGS),
    (seccomp_default.profile({"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}), ("x86", "x32"),
     DEFAULT_PROFILE_ARGS),
    (edge_profile(), (), EDGES),
])
def test_decisions_match_libseccomp(profile, arches, values):
    """Where both know a syscall, our filter decides as libseccomp's does.

    Only the ENOSYS stub for numbers above the profile (runc's addition) differs.
    """
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp"))
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    profile = dict(profile, architectures=["SCMP_ARCH_X86_64"] + [
        {"x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32"}[a] for a in arches])
    ours, theirs = compiled(profile), libseccomp_filter(profile, arches)
    compared = 0
    for abi in ("x86_64",) + tuple({"x86": "i386", "x32": "x32"}[a] for a in arches):
        token = lib.seccomp_arch_resolve_name(LIBSECCOMP_ARCH[abi].encode())
        for name, nr in NR[abi].items():
            if lib.seccomp_syscall_resolve_name_arch(token, name.encode()) < 0:
                continue  # newer than this libseccomp, or multiplexed there
            if bpf_vm.run(ours, nr, AUDIT[abi], (U64,) * 6) == ENOSYS:
                continue  # the ENOSYS stub, which libseccomp does not have
            for arg in values:
                args = (arg, arg)
                assert bpf_vm.run(ours, nr, AUDIT[abi], args) == \
                    bpf_vm.run(theirs, nr, AUDIT[abi], args), (abi, name, hex(arg))
                compared += 1
    assert compared > 2000


HEADER_DIRS = ["/usr/include/x86_64-linux-gnu/asm", "/usr/aarch64-linux-gnu/include",
               "/usr/arm-linux-gnueabihf/include", "/usr/powerpc64le-linux-gnu/include"]


@pytest.mark.skipif(not (shutil.which("gcc") and all(map(os.path.isdir, HEADER_DIRS))),
                    reason="needs gcc, linux-libc-dev, linux-libc-dev-{arm64,armhf,ppc64el}-cross")
def test_generated_tables_are_up_to_date():
    out = subprocess.run([sys.executable, os.path.join(REPO, "tools", "gen_syscalls.py")],
                         check=True, capture_output=True, text=True).stdout
    with open(os.path.join(REPO, "edgert", "syscalls.py")) as f:
        assert out == f.read(), "regenerate: tools/gen_syscalls.py > edgert/syscalls.py"


# -- the kernel applies it -----------------------------------------------------

def install_filter(prog, flags):
    try:
        from edgert import native
        native.seccomp_install(prog, flags)
        return
    except ImportError:
        pass
    libc = ctypes.CDLL(None, use_errno=True)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) or \
            libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(fprog), 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def probe_under_filter():
    """Runs in the filtered child: what works and what fails, with which errno."""
    import socket
    import tempfile
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def errno_of(ret):
        return 0 if ret >= 0 else ctypes.get_errno()

    results = {
        "keyctl": errno_of(libc.syscall(250, 0, -3, 0)),         # KEYCTL_GET_KEYRING_ID
        "unshare_uts": errno_of(libc.unshare(0x04000000)),
        "clone3": errno_of(libc.syscall(435, None, 0)),
        "mount": errno_of(libc.mount(b"none", b"/", b"tmpfs", 0, None)),
    }
    try:
        socket.socket(40, socket.SOCK_STREAM).close()  # AF_VSOCK
        results["vsock"] = 0
    except OSError as e:
        results["vsock"] = e.errno
    # Ordinary work goes on: files, threads (clone3 falls back to clone),
    # processes, inet sockets.
    with tempfile.TemporaryFile() as f:
        f.write(b"ok")
        f.seek(0)
        results["file"] = f.read().decode()
    box = []
    thread = threading.Thread(target=lambda: box.append("thread"))
    thread.start()
    thread.join()
    results["thread"] = box[0]
    results["process"] = subprocess.run(["/bin/echo", "child"], capture_output=True,
                                        text=True).stdout.strip()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        results["inet"] = s.getsockname()[0]
    return results


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (installs a seccomp filter)")
@pytest.mark.skipif(platform.machine() != "x86_64", reason="probe uses x86_64 syscall numbers")
def test_kernel_applies_the_default_profile():
    prog, flags = seccomp.compile(seccomp_default.profile(set()), "x86_64")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            install_filter(prog, flags)
            report = probe_under_filter()
            status = 0
        except BaseException as e:  # the child must never return into pytest
            report = {"error": repr(e)}
        finally:
            os.write(write_end, json.dumps(report).encode())
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        report = json.loads(f.read() or b"{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {
        "keyctl": errno.EPERM, "unshare_uts": errno.EPERM, "clone3": errno.ENOSYS,
        "mount": errno.EPERM, "vsock": errno.EPERM, "file": "ok", "thread": "thread",
        "process": "child", "inet": "127.0.0.1",
    }
