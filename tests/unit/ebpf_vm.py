"""A tiny eBPF interpreter for BPF_PROG_TYPE_CGROUP_DEVICE programs, so device decisions are
tested without root. It also checks what the kernel verifier would refuse in such programs:
unknown opcodes, reads of unset registers, context reads out of bounds or of the wrong size,
jumps out of the program or backwards, unreachable instructions, and exit without r0.
"""

import struct
import sys

_CTX = object()          # r1's value: the pointer to struct bpf_cgroup_dev_ctx
_CTX_SIZE = 12
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1


class Refused(Exception):
    """The program would not load, or misbehaved."""


def decode(program, byteorder=sys.byteorder):
    if len(program) % 8 or not program:
        raise Refused(f"{len(program)} bytes is not a whole number of instructions")
    order = "<" if byteorder == "little" else ">"
    insns = []
    for i in range(0, len(program), 8):
        code, regs, off, imm = struct.unpack(order + "BBhi", program[i:i + 8])
        dst, src = (regs & 15, regs >> 4) if byteorder == "little" else (regs >> 4, regs & 15)
        insns.append((code, dst, src, off, imm))
    _check_flow(insns)
    return insns


def _check_flow(insns):
    reachable, todo = set(), [0]
    while todo:
        pc = todo.pop()
        if pc in reachable:
            continue
        if not 0 <= pc < len(insns):
            raise Refused(f"jump or fall-through to {pc}, outside the program")
        reachable.add(pc)
        code, _, _, off, _ = insns[pc]
        cls, op = code & 7, code & 0xf0
        if cls == 5 and op == 0x90:
            continue
        if cls == 5:
            if off < 0:
                raise Refused(f"backward jump at {pc}")
            todo.append(pc + 1 + off)
            if op != 0x00:
                todo.append(pc + 1)
        else:
            todo.append(pc + 1)
    if len(reachable) != len(insns):
        raise Refused(f"unreachable instructions: {sorted(set(range(len(insns))) - reachable)}")


def run(program, access_type, major, minor, byteorder=sys.byteorder):
    """Runs the program (bytes, or decode()'s list) on one request; returns r0 (1 allow, 0 deny)."""
    insns = decode(program, byteorder) if isinstance(program, (bytes, bytearray)) else program
    ctx = struct.pack("=III", access_type, major, minor)
    regs = {1: _CTX, 10: "frame"}
    pc = 0
    for _ in range(10000):
        code, dst, src, off, imm = insns[pc]
        cls = code & 7
        pc += 1
        if cls == 1:                                  # LDX
            size = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}[code & 0x18]
            if code & 0xe0 != 0x60:
                raise Refused(f"unsupported load mode {code:#x}")
            if _get(regs, src, pc) is not _CTX:
                raise Refused(f"load at {pc - 1} not from the context")
            if off < 0 or off + size > _CTX_SIZE or off % size or (off >= 4 and size != 4):
                raise Refused(f"context read of {size} bytes at offset {off}")
            regs[dst] = int.from_bytes(ctx[off:off + size], sys.byteorder)
        elif cls in (4, 7):                           # ALU, ALU64
            regs[dst] = _alu(code, regs, dst, src, imm, pc, wide=cls == 7)
        elif cls == 5:                                # JMP
            op = code & 0xf0
            if op == 0x90:
                if 0 not in regs:
                    raise Refused("exit without setting r0")
                return regs[0]
            if op == 0x80:
                raise Refused("helper calls are not used by device programs")
            if op == 0x00 or _jump_taken(op, _get(regs, dst, pc),
                                        _get(regs, src, pc) if code & 8 else imm & _MASK64):
                pc += off
        else:
            raise Refused(f"unsupported instruction class in {code:#x}")
    raise Refused("did not exit")


def _get(regs, reg, pc):
    if reg not in regs:
        raise Refused(f"r{reg} read before it was set, at {pc - 1}")
    return regs[reg]


def _alu(code, regs, dst, src, imm, pc, wide):
    op = code & 0xf0
    mask = _MASK64 if wide else _MASK32
    operand = _get(regs, src, pc) if code & 8 else imm & _MASK64
    if op == 0xb0:                                    # MOV
        if operand is _CTX:
            return _CTX
        return operand & mask
    value = _get(regs, dst, pc)
    if value is _CTX or operand is _CTX:
        raise Refused(f"arithmetic on the context pointer at {pc - 1}")
    value &= mask
    operand &= mask
    results = {
        0x00: lambda: value + operand,
        0x10: lambda: value - operand,
        0x20: lambda: value * operand,
        0x40: lambda: value | operand,
        0x50: lambda: value & operand,
        0x60: lambda: value << (operand & (63 if wide else 31)),
        0x70: lambda: value >> (operand & (63 if wide else 31)),
        0xa0: lambda: value ^ operand,
    }
    if op not in results:
        raise Refused(f"unsupported ALU operation {code:#x}")
    return results[op]() & mask


def _jump_taken(op, left, right):
    if left is _CTX or right is _CTX:
        raise Refused("comparison with the context pointer")
    tests = {
        0x10: lambda: left == right,
        0x20: lambda: left > right,
        0x30: lambda: left >= right,
        0x40: lambda: bool(left & right),
        0x50: lambda: left != right,
        0xa0: lambda: left < right,
        0xb0: lambda: left <= right,
    }
    if op not in tests:
        raise Refused(f"unsupported jump {op:#x}")
    return tests[op]()
