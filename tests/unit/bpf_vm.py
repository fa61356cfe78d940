"""A small classic-BPF interpreter for seccomp filters, so tests can check decisions.

``run(prog, nr, arch, args=(), ip=0, byteorder="<")`` evaluates a packed
``struct sock_filter`` program over a ``struct seccomp_data`` built from the
given values and returns the 32-bit SECCOMP_RET_* value. ``check(prog)``
applies the rules the kernel's loader enforces (bpf_check_classic plus
seccomp_check_filter) and raises ``BadFilter`` when one is broken.
"""

import functools
import struct

SECCOMP_DATA_SIZE = 64
MAX_INSNS = 4096
U32 = 0xFFFFFFFF

# linux/filter.h
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = range(8)
BPF_W = 0x00
BPF_IMM, BPF_ABS, BPF_MEM, BPF_LEN = 0x00, 0x20, 0x60, 0x80
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40
BPF_TAX, BPF_TXA = 0x00, 0x80

ALU_OPS = {
    0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
    0x30: lambda a, b: a // b, 0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b,
    0x60: lambda a, b: a << b, 0x70: lambda a, b: a >> b, 0x80: lambda a, b: -a,
    0x90: lambda a, b: a % b, 0xA0: lambda a, b: a ^ b,
}
JUMP_TESTS = {
    BPF_JEQ: lambda a, b: a == b, BPF_JGT: lambda a, b: a > b,
    BPF_JGE: lambda a, b: a >= b, BPF_JSET: lambda a, b: a & b != 0,
}


class BadFilter(Exception):
    pass


def decode(prog, byteorder="<"):
    if len(prog) % 8:
        raise BadFilter("program length %d is not a multiple of 8" % len(prog))
    return list(struct.iter_unpack(byteorder + "HBBI", prog))


@functools.lru_cache(maxsize=64)
def check(prog, byteorder="<"):
    insns = tuple(decode(prog, byteorder))
    if not 0 < len(insns) <= MAX_INSNS:
        raise BadFilter("%d instructions, must be 1..%d" % (len(insns), MAX_INSNS))
    for pc, (code, jt, jf, k) in enumerate(insns):
        cls = code & 0x07
        if cls == BPF_JMP:
            if code & 0xF0 == BPF_JA:
                if pc + 1 + k >= len(insns):
                    raise BadFilter("pc %d: ja beyond the end" % pc)
            elif pc + 1 + max(jt, jf) >= len(insns):
                raise BadFilter("pc %d: conditional jump beyond the end" % pc)
        elif cls == BPF_LD and code & 0xE0 == BPF_ABS:
            if code & 0x18 != BPF_W or k % 4 or k >= SECCOMP_DATA_SIZE:
                raise BadFilter("pc %d: seccomp allows only aligned 32-bit loads inside "
                                "seccomp_data, got code %#x k %d" % (pc, code, k))
        elif cls in (BPF_LD, BPF_LDX) and code & 0xE0 not in (BPF_IMM, BPF_MEM, BPF_LEN):
            raise BadFilter("pc %d: load mode %#x not allowed in seccomp" % (pc, code))
        elif cls in (BPF_ALU,) and code & 0xF0 in (0x30, 0x90) and code & 0x08 == BPF_K and k == 0:
            raise BadFilter("pc %d: division by constant zero" % pc)
    if insns[-1][0] & 0x07 != BPF_RET:
        raise BadFilter("the last instruction must be a ret")
    return insns


def seccomp_data(nr, arch, args=(), ip=0, byteorder="<"):
    args = tuple(args) + (0,) * (6 - len(args))
    # nr is an int in the kernel; -1 reads as 0xffffffff.
    return struct.pack(byteorder + "IIQ6Q", nr & U32, arch, ip, *args)


def run(prog, nr, arch, args=(), ip=0, byteorder="<", trace=None):
    """Run the filter over one syscall; returns the SECCOMP_RET_* value."""
    insns = check(prog, byteorder)
    data = seccomp_data(nr, arch, args, ip, byteorder)
    word = struct.Struct(byteorder + "I").unpack_from
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        if trace is not None:
            trace.append(pc)
        pc += 1
        cls = code & 0x07
        if cls == BPF_LD:
            mode = code & 0xE0
            a = word(data, k)[0] if mode == BPF_ABS else (
                k if mode == BPF_IMM else mem[k] if mode == BPF_MEM else SECCOMP_DATA_SIZE)
        elif cls == BPF_LDX:
            mode = code & 0xE0
            x = k if mode == BPF_IMM else mem[k] if mode == BPF_MEM else SECCOMP_DATA_SIZE
        elif cls == BPF_ST:
            mem[k] = a
        elif cls == BPF_STX:
            mem[k] = x
        elif cls == BPF_ALU:
            operand = x if code & 0x08 == BPF_X else k
            a = ALU_OPS[code & 0xF0](a, operand) & U32
        elif cls == BPF_JMP:
            op = code & 0xF0
            if op == BPF_JA:
                pc += k
            else:
                operand = x if code & 0x08 == BPF_X else k
                pc += jt if JUMP_TESTS[op](a, operand) else jf
        elif cls == BPF_RET:
            src = code & 0x18
            return a if src == BPF_A else x if src == BPF_X else k
        elif cls == BPF_MISC:
            if code & 0xF8 == BPF_TXA:
                a = x
            else:
                x = a


def disassemble(prog, byteorder="<"):
    """One line per instruction, for failure messages."""
    names = {0x20: "ld", 0x54: "and", 0x05: "ja", 0x15: "jeq", 0x25: "jgt", 0x35: "jge",
             0x45: "jset", 0x06: "ret"}
    lines = []
    for pc, (code, jt, jf, k) in enumerate(decode(prog, byteorder)):
        name = names.get(code, "%#06x" % code)
        if code & 0x07 == BPF_JMP and code != 0x05:
            lines.append("%4d %-4s %#x ? %d : %d" % (pc, name, k, pc + 1 + jt, pc + 1 + jf))
        elif code == 0x05:
            lines.append("%4d ja   %d" % (pc, pc + 1 + k))
        else:
            lines.append("%4d %-4s %#x" % (pc, name, k))
    return "\n".join(lines)
