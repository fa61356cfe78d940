"""Keeps the device code lean: its standard-library imports stay on a declared short list
(what MicroPython's libraries also offer, plus a few it cannot do without), and the pure core
never imports an edge module."""

import ast
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "edgert")

STDLIB_ALLOWED = {
    # MicroPython (micropython-lib) also has these
    "os", "sys", "errno", "struct", "json", "time", "select", "socket", "io", "stat",
    "collections", "hashlib", "binascii", "array", "signal", "zlib", "math", "heapq",
    # the few it cannot do without on Linux
    "fcntl", "termios", "resource", "_signal", "_socket", "_json",
    # image pulls: the registry client (HTTP and TLS)
    "http", "ssl",
}
THIRD_PARTY_ALLOWED = {"msgpack", "pyroute2", "_cffi_backend", "zstandard"}
PURE_CORE = [
    "errors.py", "caps.py", "linuxconst.py", "seccomp.py", "seccomp_default.py", "syscalls.py",
    "oci/spec.py", "oci/mountopts.py", "oci/defaults.py", "oci/features.py",
    "cgroup/plan.py", "cgroup/layout.py", "cgroup/devices.py",
    "proto/rpc.py", "proto/schema.py", "proto/mpack.py",
    "daemon/model.py", "daemon/window.py", "daemon/bundle.py",
    "daemon/rollout.py", "daemon/restart.py",
    "net/ipam.py", "net/plan.py", "host/lxcenv.py", "net/dhcp.py",
]
EDGE_MODULES = {"native", "_native", "fs", "linux", "container", "netdev"}


def device_sources():
    for dirpath, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                yield os.path.relpath(path, PACKAGE), path


def imports_of(path):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield 0, alias.name
        elif isinstance(node, ast.ImportFrom):
            yield node.level, node.module or ""


@pytest.mark.parametrize("rel,path", sorted(device_sources()))
def test_device_code_imports_only_declared_modules(rel, path):
    for level, module in imports_of(path):
        if level or module.startswith("edgert"):
            continue
        top = module.split(".")[0]
        assert top in STDLIB_ALLOWED | THIRD_PARTY_ALLOWED, (
            "%s imports %r: not on the device's declared list (tests/unit/test_imports.py)"
            % (rel, module))


@pytest.mark.parametrize("rel", PURE_CORE)
def test_pure_core_imports_no_edge_module(rel):
    path = os.path.join(PACKAGE, rel)
    if not os.path.exists(path):
        pytest.skip("%s not written yet" % rel)
    for level, module in imports_of(path):
        parts = set(module.split("."))
        assert not parts & EDGE_MODULES, "%s (pure core) imports edge module %r" % (rel, module)
