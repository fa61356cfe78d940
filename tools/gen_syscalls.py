#!/usr/bin/python3
"""Generate edgert/syscalls.py: syscall numbers and AUDIT_ARCH values per architecture.

The numbers come from the Linux UAPI headers that Debian ships for each
architecture, run through the C preprocessor so that every ``__NR_*`` macro is
resolved the way a C program for that architecture would see it:

    apt-get install gcc linux-libc-dev linux-libc-dev-arm64-cross \\
        linux-libc-dev-armhf-cross linux-libc-dev-ppc64el-cross
    /usr/bin/python3 tools/gen_syscalls.py > edgert/syscalls.py

Debian 12's headers are from Linux 6.1. Since Linux 5.1 every new syscall has
the same number on all architectures, so the ones added after 6.1 are listed
below once (``NEWER_SYSCALLS``) and added to every table that lacks them.
"""

import os
import re
import subprocess
import sys

X32_SYSCALL_BIT = 0x40000000
HOST_INCLUDE = "/usr/include/x86_64-linux-gnu"

# arch name -> (include directory, header, extra cpp definitions)
SOURCES = {
    "x86_64": (HOST_INCLUDE, "asm/unistd_64.h", []),
    "i386": (HOST_INCLUDE, "asm/unistd_32.h", []),
    "x32": (HOST_INCLUDE, "asm/unistd_x32.h",
            ["-D__X32_SYSCALL_BIT=%#x" % X32_SYSCALL_BIT]),
    "aarch64": ("/usr/aarch64-linux-gnu/include", "asm/unistd.h", ["-D__aarch64__"]),
    "arm": ("/usr/arm-linux-gnueabihf/include", "asm/unistd.h", ["-D__ARM_EABI__"]),
    "ppc64": ("/usr/powerpc64le-linux-gnu/include", "asm/unistd_64.h", []),
    "ppc": ("/usr/powerpc64le-linux-gnu/include", "asm/unistd_32.h", []),
}

# Architectures whose numbers are another's: ppc64le and ppc64 differ only
# in byte order.
ALIASES = {"ppc64le": "ppc64"}

# AUDIT_ARCH_* macro for each arch name (x32 reports itself as x86_64).
AUDIT_MACROS = {
    "x86_64": "AUDIT_ARCH_X86_64",
    "i386": "AUDIT_ARCH_I386",
    "x32": "AUDIT_ARCH_X86_64",
    "aarch64": "AUDIT_ARCH_AARCH64",
    "arm": "AUDIT_ARCH_ARM",
    "ppc64le": "AUDIT_ARCH_PPC64LE",
    "ppc64": "AUDIT_ARCH_PPC64",
    "ppc": "AUDIT_ARCH_PPC",
}

# Syscalls added after Linux 6.1 (numbers from the kernel's syscall tables,
# identical on every architecture edgert supports; x32 adds its bit).
NEWER_SYSCALLS = {
    "cachestat": 451,           # 6.5
    "fchmodat2": 452,           # 6.6
    "map_shadow_stack": 453,    # 6.6
    "futex_wake": 454,          # 6.7
    "futex_wait": 455,
    "futex_requeue": 456,
    "statmount": 457,           # 6.8
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,               # 6.10
    "setxattrat": 463,          # 6.13
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    "open_tree_attr": 467,      # 6.15
    "file_getattr": 468,        # 6.17
    "file_setattr": 469,
    "listns": 470,              # 6.19
}

# Macros that look like syscalls but are table bookkeeping.
NOT_SYSCALLS = {"__NR_syscalls", "__NR_SYSCALL_BASE", "__NR_OABI_SYSCALL_BASE",
                "__NR_SYSCALL_MASK", "__ARM_NR_BASE", "__NR_arch_specific_syscall"}

DEFINE = re.compile(r"#define (\w+) (.*)")
IDENT = re.compile(r"\b[A-Za-z_]\w*")
ARITHMETIC = re.compile(r"[0-9a-fA-FxX()+|<\s]*")


def macros(include_dirs, header, defines):
    """All macros visible after including ``header``, as name -> body."""
    out = subprocess.run(
        ["gcc", "-E", "-dM", "-nostdinc", *("-I" + d for d in include_dirs), *defines,
         "-include", header, "-x", "c", os.devnull],
        check=True, capture_output=True, text=True).stdout
    return {m.group(1): m.group(2).strip() for m in map(DEFINE.match, out.splitlines()) if m}


def evaluate(body, table, seen=()):
    """Value of a macro body made of integers, other macros, + | << and parentheses."""
    def expand(match):
        name = match.group(0)
        if name in seen or name not in table:
            raise ValueError("cannot resolve %s" % name)
        return "(%d)" % evaluate(table[name], table, seen + (name,))
    text = IDENT.sub(expand, body)
    text = re.sub(r"(?<=[0-9a-fA-F])[uUlL]+\b", "", text)
    if not ARITHMETIC.fullmatch(text):
        raise ValueError("unexpected macro body %r" % body)
    return eval(text, {"__builtins__": {}})  # checked above to be plain arithmetic


def syscall_numbers(arch):
    include_dir, header, defines = SOURCES[arch]
    table = macros([include_dir], header, defines)
    numbers = {}
    for name, body in table.items():
        if name in NOT_SYSCALLS or name.startswith("__NR3264_"):
            continue
        for prefix in ("__NR_", "__ARM_NR_"):
            if name.startswith(prefix):
                numbers[name[len(prefix):]] = evaluate(body, table)
    base = X32_SYSCALL_BIT if arch == "x32" else 0
    for name, nr in NEWER_SYSCALLS.items():
        numbers.setdefault(name, base + nr)
    return numbers


def audit_arches():
    table = macros(["/usr/include", HOST_INCLUDE], "linux/audit.h", [])
    return {arch: evaluate(table[macro], table) for arch, macro in AUDIT_MACROS.items()}


TEMPLATE = '''\
"""Syscall numbers and AUDIT_ARCH values for the architectures edgert runs on.

GENERATED by tools/gen_syscalls.py from Linux UAPI headers (Debian packages
linux-libc-dev, linux-libc-dev-arm64-cross, linux-libc-dev-armhf-cross,
linux-libc-dev-ppc64el-cross; Linux %(linux)s) plus the syscalls added since
then, up to Linux 6.19. Do not edit; regenerate with

    /usr/bin/python3 tools/gen_syscalls.py > edgert/syscalls.py

``NUMBERS[arch][name]`` is the syscall number as seccomp_data.nr carries it
(x32 numbers include the 0x40000000 x32 bit; ARM private syscalls such as
cacheflush sit at 0x0f0000 and up). Each architecture's table is one string,
parsed on first use, so importing this module costs almost nothing.
"""

AUDIT_ARCH = {
%(audit)s}

_TABLES = {
%(tables)s}

_ALIASES = %(aliases)r


class _Numbers:
    """Read-only mapping arch -> {syscall name: number}, each parsed on first use.

    A plain class rather than a collections.abc.Mapping: importing that module
    would cost more than everything else here.
    """

    def __init__(self):
        self._parsed = {}

    def __getitem__(self, arch):
        table = self._parsed.get(arch)
        if table is None:
            words = iter(_TABLES[_ALIASES.get(arch, arch)].split())
            table = self._parsed[arch] = dict(zip(words, map(int, words)))
        return table

    def get(self, arch, default=None):
        return self[arch] if arch in AUDIT_ARCH else default

    def __contains__(self, arch):
        return arch in AUDIT_ARCH

    def __iter__(self):
        return iter(AUDIT_ARCH)

    def keys(self):
        return AUDIT_ARCH.keys()

    def items(self):
        return [(arch, self[arch]) for arch in AUDIT_ARCH]

    def __len__(self):
        return len(AUDIT_ARCH)


NUMBERS = _Numbers()
'''


def linux_version():
    table = macros(["/usr/include"], "linux/version.h", [])
    code = evaluate(table["LINUX_VERSION_CODE"], table)
    return "%d.%d" % (code >> 16, (code >> 8) & 0xff)


def main():
    tables = []
    for arch in SOURCES:
        pairs = sorted(syscall_numbers(arch).items(), key=lambda item: (item[1], item[0]))
        # Adjacent string literals, whole "name number" pairs per line.
        chunks, line = [], ""
        for pair in ("%s %d " % pair for pair in pairs):
            if len(line) + len(pair) > 84:
                chunks.append(line)
                line = ""
            line += pair
        chunks.append(line.rstrip())
        body = "\n".join("        %r" % chunk for chunk in chunks)
        tables.append('    "%s": (\n%s\n    ),\n' % (arch, body))
    audit = "".join('    "%s": %#x,\n' % item for item in audit_arches().items())
    sys.stdout.write(TEMPLATE % {"linux": linux_version(), "audit": audit,
                                 "tables": "".join(tables), "aliases": ALIASES})


if __name__ == "__main__":
    main()
