"""pyroute2's IPRoute without the pyroute2 package's ``__init__``.

That ``__init__`` imports every part of the library (NDB with sqlite3, IPDB, the nftables
bindings) and scans the installed distributions' entry points. edgert uses IPRoute alone,
which needs none of it: loaded from its module under a bare package, it costs 15 MiB of RSS and
85 ms instead of 25 MiB and 140 ms (pyroute2 0.7.2, docs/network.md). Should the bare
package not do with some pyroute2 release, the normal import takes over; a process that
has imported pyroute2 already keeps it.
"""

import os
import sys

_loaded = []


def iproute_class():
    if not _loaded:
        _loaded.append(_bare() or _full())
    return _loaded[0]


def IPRoute():
    return iproute_class()()


def _full():
    from pyroute2 import IPRoute as cls
    return cls


def _bare():
    if "pyroute2" in sys.modules:
        return None
    for entry in sys.path:
        init = os.path.join(entry or ".", "pyroute2", "__init__.py")
        if os.path.isfile(init):
            break
    else:
        return None
    package = type(sys)("pyroute2")
    package.__path__ = [os.path.dirname(init)]
    package.__file__ = init
    package.__package__ = "pyroute2"
    sys.modules["pyroute2"] = package
    try:
        from pyroute2.iproute.linux import IPRoute as cls
    except Exception:
        for name in [n for n in sys.modules if n == "pyroute2" or n.startswith("pyroute2.")]:
            del sys.modules[name]
        return None
    package.IPRoute = cls
    return cls
