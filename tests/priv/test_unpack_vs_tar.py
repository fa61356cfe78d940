"""edgert's unpack and GNU tar (as root, --numeric-owner -p) produce the same tree, metadata
included, for a real directory tree plus hand-made members (owners, setid, hardlinks, FIFOs)."""

import gzip
import io
import os
import stat
import subprocess
import tarfile

import pytest

from edgert.image.unpack import apply_layer
from tests.helpers import evil_layers as L

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership needs root")


def _layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add("/usr/lib/python3.11/json", arcname="usr/lib/python3.11/json")
        tar.add("/usr/lib/python3.11/email", arcname="usr/lib/python3.11/email")
        for name, kind, mode, uid, gid in (("srv", tarfile.DIRTYPE, 0o2775, 10, 20),
                                           ("srv/data", tarfile.REGTYPE, 0o4750, 1000, 1000),
                                           ("srv/fifo", tarfile.FIFOTYPE, 0o620, 5, 6)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 12345
            data = b"payload" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("srv/hard")
        link.type, link.linkname = tarfile.LNKTYPE, "srv/data"
        tar.addfile(link)
        sym = tarfile.TarInfo("srv/sym")
        sym.type, sym.linkname, sym.uid = tarfile.SYMTYPE, "../usr/lib", 7
        tar.addfile(sym)
    return buf.getvalue()


def _snapshot(root):
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            facts = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                     st.st_mtime_ns // 1_000_000_000, st.st_nlink)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    facts += (f.read(),)
            elif stat.S_ISLNK(st.st_mode):
                facts += (os.readlink(path),)
            result[rel] = facts
    return result


def test_same_tree_as_gnu_tar(tmp_path):
    layer = _layer()
    blob = tmp_path / "layer.tgz"
    blob.write_bytes(gzip.compress(layer))
    by_tar = tmp_path / "tar"
    by_edgert = tmp_path / "edgert"
    by_tar.mkdir()
    by_edgert.mkdir()
    subprocess.run(["tar", "--numeric-owner", "-p", "-xzf", str(blob), "-C", str(by_tar)],
                   check=True)
    stats = apply_layer(str(blob), L.OCI_GZIP, str(by_edgert), diff_id=L.diff_id(layer))
    assert stats.files > 50
    expected, got = _snapshot(by_tar), _snapshot(by_edgert)
    assert sorted(got) == sorted(expected)
    for path in expected:
        assert got[path] == expected[path], path
