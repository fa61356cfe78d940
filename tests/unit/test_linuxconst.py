"""edgert.linuxconst against the values the C compiler resolves from the headers.

Two header sets are compiled separately because glibc's headers and the
kernel's <linux/...> ones clash when mixed. A name counts as checked when at
least one set declares it. Set CC to check a cross compiler's headers (the
program must then run, e.g. through binfmt/QEMU).
"""

import ast
import os
import re
import shutil
import subprocess

import pytest

from edgert import linuxconst as lc

HEADER_SETS = {
    "libc": ["sched.h", "fcntl.h", "sys/mount.h", "sys/resource.h", "sys/personality.h"],
    "kernel": ["linux/sched.h", "linux/fcntl.h", "linux/mount.h", "linux/openat2.h",
               "linux/close_range.h", "linux/seccomp.h", "linux/bpf.h", "linux/ioprio.h",
               "linux/mempolicy.h", "linux/capability.h", "linux/personality.h"],
}

# Names of ours that are conventions, not header constants.
NOT_IN_HEADERS = {"PERSONALITY_QUERY"}

# Too new for the kernel headers of some supported build hosts (Debian 12: 6.1).
MAY_BE_MISSING = {"MPOL_WEIGHTED_INTERLEAVE"}

TABLES = ("RLIMITS", "CAPABILITIES", "IOPRIO_CLASSES", "SCHED_POLICIES", "SCHED_FLAGS",
          "MPOL_MODES", "MPOL_FLAGS")


def expected_values():
    """Every C-level name linuxconst states a value for."""
    values = {name: value for name, value in vars(lc).items()
              if name.isupper() and isinstance(value, int)}
    for table in TABLES:
        for name, value in getattr(lc, table).items():
            assert values.setdefault(name, value) == value, f"{table}[{name}] disagrees"
    for name in NOT_IN_HEADERS:
        del values[name]
    return values


def compile_and_run(tmp_path, cc, tag, headers, names):
    """{name: value} for the names the headers declare (undeclared ones are dropped)."""
    src = tmp_path / f"{tag}.c"
    exe = tmp_path / tag
    env = dict(os.environ, LC_ALL="C")
    names = sorted(names)
    for _ in range(3):
        lines = ["#define _GNU_SOURCE", "#include <stdio.h>"]
        lines += [f"#include <{h}>" for h in headers]
        lines += ["int main(void)", "{"]
        lines += [f'    printf("{n} %lld\\n", (long long)({n}));' for n in names]
        lines += ["    return 0;", "}"]
        src.write_text("\n".join(lines) + "\n")
        build = subprocess.run([cc, "-w", "-o", str(exe), str(src)], env=env,
                               capture_output=True, text=True)
        if build.returncode == 0:
            out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
            return {n: int(v) for n, v in (line.split() for line in out.splitlines())}
        undeclared = set(re.findall(r"'(\w+)' undeclared", build.stderr))
        if not undeclared:
            pytest.fail(f"{tag} headers do not compile with {cc}:\n{build.stderr[-2000:]}")
        names = [n for n in names if n not in undeclared]
    pytest.fail(f"{tag}: still undeclared names after 3 passes")


@pytest.fixture(scope="module")
def resolved(tmp_path_factory):
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        pytest.skip(f"no C compiler ({cc}) to resolve the header values")
    tmp = tmp_path_factory.mktemp("linuxconst")
    names = expected_values()
    return {tag: compile_and_run(tmp, cc, tag, headers, names)
            for tag, headers in HEADER_SETS.items()}


def test_values_match_the_headers(resolved):
    expected = expected_values()
    wrong = [f"{tag}: {name} is {value:#x} in C, {expected[name]:#x} in linuxconst"
             for tag, found in resolved.items()
             for name, value in found.items() if value != expected[name]]
    assert not wrong, "\n".join(wrong)


def test_every_value_is_checked_by_some_header(resolved):
    seen = set().union(*resolved.values())
    unchecked = set(expected_values()) - seen - MAY_BE_MISSING
    assert not unchecked, f"declared by no header: {sorted(unchecked)}"
    absent = sorted(MAY_BE_MISSING - seen)
    if absent:
        pytest.skip(f"headers too old to check {absent}")


def test_namespace_tables_cover_the_oci_types():
    oci_types = {"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"}
    assert set(lc.NAMESPACE_FLAGS) == oci_types
    assert set(lc.NAMESPACE_PROC_NAMES) == oci_types
    flags = list(lc.NAMESPACE_FLAGS.values())
    assert all(f & (f - 1) == 0 for f in flags), "each namespace is one bit"
    assert len(set(flags)) == len(flags)
    assert lc.NAMESPACE_FLAGS["mount"] == lc.CLONE_NEWNS


def test_numbered_tables_are_contiguous():
    assert sorted(lc.RLIMITS.values()) == list(range(16))
    assert sorted(lc.CAPABILITIES.values()) == list(range(41))
    assert lc.RLIMITS["RLIMIT_NOFILE"] == 7
    assert lc.PERSONALITY_DOMAINS == {"LINUX": lc.PER_LINUX, "LINUX32": lc.PER_LINUX32}


def test_module_is_pure_data():
    with open(lc.__file__) as f:
        tree = ast.parse(f.read())
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not imports
    assert not [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
