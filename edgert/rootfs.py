"""A minimal busybox root filesystem, built offline from a static busybox binary.

The tree is what a shell-level container needs and nothing more: the binary
at /bin/busybox, one relative symlink per applet (so the tree stays valid
wherever it is mounted), /etc/passwd and /etc/group with root and nobody, and
the empty mount points a runtime fills (proc, sys, dev, tmp, run).

The binary must be static: the rootfs has no dynamic loader or libc. It is
built under ``<dest>.tmp-<pid>`` and renamed into place, so ``dest`` either
does not exist or is complete.
"""

import os
import struct

from edgert.errors import ConfigError, NotFound, StateError
from edgert.fsutil import fsync_dir

# OCI platform architecture (plus Debian's name) -> ELF class, data encoding, e_machine.
_ELF_ARCHES = {
    "amd64": (2, 1, 62),
    "386": (1, 1, 3), "i386": (1, 1, 3),
    "arm": (1, 1, 40), "armhf": (1, 1, 40), "armel": (1, 1, 40),
    "arm64": (2, 1, 183),
    "ppc64le": (2, 1, 21), "ppc64el": (2, 1, 21),
    "riscv64": (2, 1, 243),
    "s390x": (2, 2, 22),
}

_PT_INTERP = 3

# Directories beyond those the applet links need, with their modes.
_DIRS = (
    ("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755),
    ("usr/sbin", 0o755), ("etc", 0o755), ("proc", 0o555), ("sys", 0o555),
    ("dev", 0o755), ("tmp", 0o1777), ("run", 0o755), ("root", 0o700),
    ("var", 0o755), ("var/tmp", 0o1777),
)

_FILES = (
    ("etc/passwd", 0o644,
     "root:x:0:0:root:/root:/bin/sh\n"
     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
    ("etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"),
)


def build_busybox_rootfs(dest, busybox="/bin/busybox", arch=None):
    """Builds a busybox rootfs at ``dest`` (which must not exist) and returns its absolute path.

    ``arch`` (an OCI architecture such as "arm64") makes a binary for another
    architecture an error; running a foreign binary to list its applets needs
    qemu-user binfmt support on the build host.
    """
    dest = os.path.abspath(dest)
    if os.path.lexists(dest):
        raise StateError("%s: rootfs destination already exists; remove it or pick another path"
                         % dest)
    _check_static_elf(busybox, arch)
    applets = _list_applets(busybox)
    tmp = "%s.tmp-%d" % (dest, os.getpid())
    os.mkdir(tmp, 0o755)
    try:
        _populate(tmp, busybox, applets)
        os.rename(tmp, dest)
    except BaseException:
        _remove_tree(tmp)
        raise
    fsync_dir(os.path.dirname(dest))
    return dest


def _check_static_elf(path, arch):
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            elf_class, data, machine, phoff, phentsize, phnum = _parse_elf_header(path, header)
            endian = "<" if data == 1 else ">"
            for index in range(phnum):
                f.seek(phoff + index * phentsize)
                (p_type,) = struct.unpack(endian + "I", f.read(4))
                if p_type == _PT_INTERP:
                    raise ConfigError(
                        "%s: busybox is dynamically linked (it has an ELF interpreter); "
                        "a rootfs needs a static one, e.g. Debian's busybox-static /bin/busybox"
                        % path)
    except FileNotFoundError:
        raise NotFound("%s: busybox binary not found; install busybox-static" % path) from None
    except struct.error:
        raise ConfigError("%s: truncated ELF program headers" % path) from None
    if arch is not None:
        expected = _ELF_ARCHES.get(arch)
        if expected is None:
            raise ConfigError("arch %r: unknown architecture; use one of %s"
                              % (arch, ", ".join(sorted(_ELF_ARCHES))))
        if (elf_class, data, machine) != expected:
            raise ConfigError("%s: busybox is ELF machine %d (class %d), not %s"
                              % (path, machine, elf_class, arch))


def _parse_elf_header(path, header):
    """Returns (class, data encoding, e_machine, e_phoff, e_phentsize, e_phnum)."""
    if len(header) < 52 or header[:4] != b"\x7fELF" or header[4] not in (1, 2) \
            or header[5] not in (1, 2):
        raise ConfigError("%s: not an ELF executable" % path)
    elf_class, data = header[4], header[5]
    endian = "<" if data == 1 else ">"
    (machine,) = struct.unpack_from(endian + "H", header, 18)
    if elf_class == 2:
        if len(header) < 64:
            raise ConfigError("%s: truncated ELF header" % path)
        (phoff,) = struct.unpack_from(endian + "Q", header, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 54)
    else:
        (phoff,) = struct.unpack_from(endian + "I", header, 28)
        phentsize, phnum = struct.unpack_from(endian + "HH", header, 42)
    return elf_class, data, machine, phoff, phentsize, phnum


def _list_applets(busybox):
    """Runs ``busybox --list-full``: one install path per applet, e.g. ``usr/bin/env``."""
    read_fd, write_fd = os.pipe()
    try:
        pid = os.posix_spawn(busybox, [busybox, "--list-full"], {},
                             file_actions=[(os.POSIX_SPAWN_DUP2, write_fd, 1)])
    except OSError as e:
        os.close(read_fd)
        raise ConfigError("%s: cannot run it to list applets (%s); a foreign-architecture "
                          "busybox needs qemu-user binfmt support" % (busybox, e.strerror)) from e
    finally:
        os.close(write_fd)
    chunks = []
    with open(read_fd, "rb") as out:
        for chunk in iter(lambda: out.read(65536), b""):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise ConfigError("%s --list-full failed with status %d; is it a busybox binary?"
                          % (busybox, os.waitstatus_to_exitcode(status)))
    applets = []
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split("/")
        if line.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ConfigError("%s --list-full: unsafe applet path %r" % (busybox, line))
        applets.append(line)
    if not applets:
        raise ConfigError("%s --list-full listed no applets" % busybox)
    return applets


def _populate(root, busybox, applets):
    for rel, mode in _DIRS:
        _mkdir(os.path.join(root, rel), mode)
    target = os.path.join(root, "bin", "busybox")
    _copy_executable(busybox, target)
    done = {"bin/busybox"}
    for rel in applets:
        if rel in done:
            continue
        done.add(rel)
        link = os.path.join(root, rel)
        parent = os.path.dirname(link)
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o755)
        os.symlink(os.path.relpath(target, parent), link)
    for rel, mode, text in _FILES:
        path = os.path.join(root, rel)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)


def _mkdir(path, mode):
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    # chmod because mkdir's mode is filtered by the umask (and drops sticky bits).
    os.chmod(path, mode)


def _copy_executable(src, dest):
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    os.chmod(dest, 0o755)


def _remove_tree(path):
    """Removes a tree this module built; symlinks are removed, never followed."""
    for parent, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(parent, name))
        for name in dirs:
            child = os.path.join(parent, name)
            if os.path.islink(child):
                os.unlink(child)
            else:
                os.rmdir(child)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
