"""edgert.net.rtnl: IPRoute without pyroute2's package __init__, and the normal import when
that does not work. Each case runs in a fresh interpreter (the loader acts once per process)."""

import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(code, path_first=None):
    prefix = [path_first] if path_first else []
    script = "import sys\nsys.path[:0] = %r\n" % (prefix + [REPO]) + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_bare_package_gives_a_working_iproute():
    pytest.importorskip("pyroute2", reason="needs pyroute2 (Debian package python3-pyroute2)")
    out = run("""
        from edgert.net import rtnl
        cls = rtnl.iproute_class()
        with rtnl.IPRoute() as ipr:
            names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
        print(cls.__module__, "lo" in names, "pyroute2.ndb" in sys.modules,
              "importlib.metadata" in sys.modules)
    """)
    assert out == "pyroute2.iproute.linux True False False"


def test_a_process_that_imported_pyroute2_keeps_it():
    pytest.importorskip("pyroute2", reason="needs pyroute2 (Debian package python3-pyroute2)")
    out = run("""
        import pyroute2
        from edgert.net import rtnl
        print(rtnl.iproute_class() is pyroute2.IPRoute)
    """)
    assert out == "True"


def test_a_pyroute2_the_bare_package_cannot_load_gets_the_normal_import(tmp_path):
    package = tmp_path / "pyroute2"
    package.mkdir()
    (package / "__init__.py").write_text("IPRoute = 'the normal import'\n")
    out = run("""
        from edgert.net import rtnl
        print(rtnl.iproute_class(), sorted(n for n in sys.modules if n.startswith("pyroute2")))
    """, path_first=str(tmp_path))
    assert out == "the normal import ['pyroute2']"
