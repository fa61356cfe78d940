#!/usr/bin/python3
"""Host side of cross/vm: the kernel module subset and the test VM's initramfs.

    mkinitrd.py modules KERNEL_TREE DEST MODULE...
        copies boot/vmlinuz-* and the named modules, with every module they depend on
        (read from each .ko's .modinfo), from an extracted linux-image package to DEST.
    mkinitrd.py initrd OUT --kernel DIR --busybox FILE --sysroot DIR --edgert PACKAGE
                       --probe FILE --cache DIR
        writes OUT: one newc cpio for the pruned sysroot (cached in --cache, it changes
        rarely) followed by one for everything else (the package holds edgert-init). The
        kernel unpacks concatenated archives in order. Both are uncompressed: gzip, zstd
        and lz4 (62 MB -> 23/21/30 MB) made no boot measurably faster under TCG, and
        compressing costs host time on every run.

Everything in the archives is owned by root; modes and symlinks are kept.
"""

import argparse
import glob
import hashlib
import os
import shutil
import stat
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Sysroot paths the VM never uses: headers, static libraries, docs, charset converters,
# the Python test suite and tools. Matched against the path relative to the sysroot.
PRUNE_PREFIXES = (
    "usr/include/", "usr/share/", "usr/src/", "usr/lib/valgrind/", "usr/lib/binfmt.d/",
)
PRUNE_PARTS = (
    "/gconv/", "/config-3.11-", "/python3.11/test/", "/python3.11/idlelib/",
    "/python3.11/pydoc_data/", "/python3.11/ensurepip/", "/python3.11/lib2to3/",
    "/python3.11/tkinter/", "/python3.11/turtledemo/", "/python3.11/distutils/tests/",
    "/unittest/test/", "/ctypes/test/", "/sqlite3/test/",
)
PRUNE_SUFFIXES = (".a", ".opt-1.pyc", ".opt-2.pyc")
# Bumped whenever the pruning rules change: it is part of the sysroot archive's cache key.
PRUNE_VERSION = "1"


# -- newc cpio -----------------------------------------------------------------------------------

class Cpio:
    """Writes a newc ("070701") archive; directories are added once, parents first."""

    def __init__(self, out):
        self.out = out
        self.ino = 1
        self.seen = set()

    def _entry(self, name, mode, data=b"", mtime=0):
        name_b = name.encode() + b"\0"
        header = b"070701" + b"".join(b"%08X" % v for v in (
            self.ino, mode, 0, 0, 1, mtime, len(data), 0, 0, 0, 0, len(name_b), 0))
        self.ino += 1
        self.out.write(header + name_b + b"\0" * (-(110 + len(name_b)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def dir(self, name, mode=0o755):
        if name in self.seen or name in ("", "."):
            return
        parent = os.path.dirname(name)
        if parent:
            self.dir(parent)
        self.seen.add(name)
        self._entry(name, stat.S_IFDIR | mode)

    def file(self, name, data, mode=0o644, mtime=0):
        self.dir(os.path.dirname(name))
        self.seen.add(name)
        self._entry(name, stat.S_IFREG | mode, data, mtime)

    def symlink(self, name, target):
        self.dir(os.path.dirname(name))
        self.seen.add(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def copy(self, name, path):
        """Adds the file, symlink or directory at ``path`` (not recursive) as ``name``.

        Files keep their mtime: a .pyc is valid only for its source's mtime.
        """
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            self.symlink(name, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            self.dir(name, stat.S_IMODE(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            with open(path, "rb") as f:
                self.file(name, f.read(), stat.S_IMODE(st.st_mode), int(st.st_mtime))

    def tree(self, name, top, keep=lambda rel: True):
        """Adds ``top`` recursively under ``name``; ``keep(rel)`` filters by relative path."""
        for parent, dirs, files in os.walk(top):
            rel_parent = os.path.relpath(parent, top)
            rel_parent = "" if rel_parent == "." else rel_parent + "/"
            dirs[:] = sorted(d for d in dirs if keep(rel_parent + d + "/"))
            if rel_parent:
                self.copy(os.path.join(name, rel_parent.rstrip("/")), parent)
            for entry in sorted(files) + [d for d in dirs if os.path.islink(
                    os.path.join(parent, d))]:
                if keep(rel_parent + entry):
                    self.copy(os.path.join(name, rel_parent + entry), os.path.join(parent, entry))

    def close(self):
        self._entry("TRAILER!!!", 0)
        self.out.write(b"\0" * (-self.out.tell() % 512))


# -- kernel modules ------------------------------------------------------------------------------

def modinfo_depends(path):
    """The module names in the ``depends=`` field of a .ko's .modinfo section."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        raise SystemExit("%s: not an ELF file" % path)
    is64, endian = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(endian + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x3A)
        sec = lambda i: struct.unpack_from(endian + "IIQQQQ", data, shoff + i * shentsize)
    else:
        shoff, = struct.unpack_from(endian + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x2E)
        sec = lambda i: struct.unpack_from(endian + "IIIIII", data, shoff + i * shentsize)
    names_off = sec(shstrndx)[4]
    for i in range(shnum):
        name_off, _type, _flags, _addr, offset, size = sec(i)
        name = data[names_off + name_off:data.index(b"\0", names_off + name_off)]
        if name == b".modinfo":
            for field in data[offset:offset + size].split(b"\0"):
                if field.startswith(b"depends="):
                    return [d for d in field[8:].decode().split(",") if d]
            return []
    return []


def norm(name):
    return name.replace("-", "_")


def cmd_modules(args):
    release_dirs = glob.glob(os.path.join(args.kernel_tree, "lib/modules/*"))
    vmlinuz = glob.glob(os.path.join(args.kernel_tree, "boot/vmlinuz-*"))
    if len(release_dirs) != 1 or len(vmlinuz) != 1:
        raise SystemExit("%s: expected one boot/vmlinuz-* and one lib/modules/*"
                         % args.kernel_tree)
    moddir = release_dirs[0]
    release = os.path.basename(moddir)
    by_name = {}
    for parent, _dirs, files in os.walk(os.path.join(moddir, "kernel")):
        for f in files:
            if f.endswith(".ko"):
                by_name[norm(f[:-3])] = os.path.join(parent, f)
    with open(os.path.join(moddir, "modules.builtin")) as f:
        builtin = {norm(os.path.basename(line.strip())[:-3]) for line in f if line.strip()}
    wanted, queue = set(), [norm(m) for m in args.module]
    while queue:
        name = queue.pop()
        if name in wanted or name in builtin:
            continue
        if name not in by_name:
            raise SystemExit("module %s: not in %s (neither built in nor a .ko)" % (name, moddir))
        wanted.add(name)
        queue.extend(norm(d) for d in modinfo_depends(by_name[name]))
    tmp = args.dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    dest_moddir = os.path.join(tmp, "lib/modules", release)
    for name in sorted(wanted):
        rel = os.path.relpath(by_name[name], moddir)
        os.makedirs(os.path.join(dest_moddir, os.path.dirname(rel)), exist_ok=True)
        shutil.copy2(by_name[name], os.path.join(dest_moddir, rel))
    for extra in ("modules.builtin", "modules.order", "modules.builtin.modinfo"):
        if os.path.exists(os.path.join(moddir, extra)):
            shutil.copy2(os.path.join(moddir, extra), dest_moddir)
    shutil.copy2(vmlinuz[0], os.path.join(tmp, "vmlinuz"))
    shutil.rmtree(args.dest, ignore_errors=True)
    os.rename(tmp, args.dest)
    print("%s: kernel %s, %d modules: %s" % (args.dest, release, len(wanted),
                                            " ".join(sorted(wanted))))


# -- initramfs -----------------------------------------------------------------------------------

def keep_in_sysroot(rel):
    probe = "/" + rel
    return not (rel.startswith(PRUNE_PREFIXES) or any(p in probe for p in PRUNE_PARTS)
                or rel.endswith(PRUNE_SUFFIXES))


def tree_signature(top):
    """Changes when any file under ``top`` is added, removed, resized or touched."""
    h = hashlib.sha256(PRUNE_VERSION.encode())
    for parent, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            st = os.lstat(os.path.join(parent, name))
            h.update(("%s/%s %d %d\n" % (parent, name, st.st_size, st.st_mtime_ns)).encode())
    return h.hexdigest()


def sysroot_archive(sysroot, cache):
    """The cached cpio of the pruned sysroot, rebuilt when the sysroot changed."""
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, "sysroot.cpio")
    key = tree_signature(sysroot)
    try:
        with open(path + ".key") as f:
            if f.read() == key and os.path.exists(path):
                return path
    except FileNotFoundError:
        pass
    with open(path + ".tmp", "wb") as out:
        archive = Cpio(out)
        archive.tree("", sysroot, keep_in_sysroot)
        archive.close()
    os.rename(path + ".tmp", path)
    with open(path + ".key", "w") as f:
        f.write(key)
    return path


# The launcher: like bin/edgert-oci, with the package where the VM puts it.
LAUNCHER = """#!/usr/bin/python3 -IS
import sys
sys.path[:0] = ["/usr/lib/python3/dist-packages"]
from edgert.oci.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.flush()
import os
os._exit(code or 0)
"""


def compiled_package(package, cache):
    """A copy of the edgert package with its .pyc (compiled on the host: the same 3.11)."""
    dest = os.path.join(cache, "edgert")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(package, dest, ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.o"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", dest], check=True,
                   stdout=subprocess.DEVNULL)
    return dest


def payload_archive(out, args):
    archive = Cpio(out)
    for name, mode in (("dev", 0o755), ("proc", 0o555), ("sys", 0o555), ("tmp", 0o1777),
                       ("run", 0o755), ("root", 0o700), ("etc", 0o755), ("bin", 0o755),
                       ("sbin", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755),
                       ("var/tmp", 0o1777), ("mnt", 0o755)):
        archive.dir(name, mode)
    archive.copy("init", os.path.join(HERE, "init"))
    archive.copy("bin/busybox", args.busybox)
    archive.symlink("bin/sh", "busybox")
    archive.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                 b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    archive.file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    archive.tree("", args.kernel, lambda rel: rel.startswith("lib/"))
    archive.tree("usr/lib/python3/dist-packages/edgert", compiled_package(args.edgert, args.cache))
    archive.file("usr/bin/edgert-oci", LAUNCHER.encode(), 0o755)
    tests = os.path.join(REPO, "tests", "vm")
    archive.tree("opt/edgert-tests", tests,
                 lambda rel: rel.endswith(".py") and not rel.startswith("test_"))
    archive.copy("opt/edgert-tests/probe", args.probe)
    archive.close()


def cmd_initrd(args):
    sysroot_cpio = sysroot_archive(args.sysroot, args.cache)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as out:
        with open(sysroot_cpio, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
        payload_archive(out, args)
    os.rename(tmp, args.out)
    print("%s: %.1f MB (sysroot %.1f MB)" % (args.out, os.path.getsize(args.out) / 1e6,
                                            os.path.getsize(sysroot_cpio) / 1e6))


def main(argv):
    parser = argparse.ArgumentParser(prog="mkinitrd.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("modules")
    p.add_argument("kernel_tree")
    p.add_argument("dest")
    p.add_argument("module", nargs="+")
    p.set_defaults(func=cmd_modules)
    p = sub.add_parser("initrd")
    p.add_argument("out")
    for opt in ("kernel", "busybox", "sysroot", "edgert", "probe", "cache"):
        p.add_argument("--" + opt, required=True)
    p.set_defaults(func=cmd_initrd)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
