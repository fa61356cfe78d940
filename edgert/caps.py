"""Linux capability names and numbers, and the bit masks built from them.

A capability set is a 64-bit mask (bit n = capability n), as in capget(2),
/proc/<pid>/status and file capabilities. Names are the capabilities(7)
spelling the OCI runtime-spec uses: "CAP_CHOWN", never "chown".
"""

from .errors import ConfigError
from .linuxconst import CAPABILITIES

NAMES = CAPABILITIES  # name -> number, CAP_CHOWN=0 ... CAP_CHECKPOINT_RESTORE=40
LAST_KNOWN = max(NAMES.values())

_BY_NUMBER = {number: name for name, number in NAMES.items()}


def number(name):
    """The capability number of ``name``; ConfigError for a name edgert does not know."""
    try:
        return NAMES[name]
    except (KeyError, TypeError):
        raise ConfigError("unknown capability %r: use a capabilities(7) name such as "
                          "\"CAP_NET_ADMIN\"" % (name,)) from None


def mask(names):
    """The bit mask of an iterable of capability names."""
    bits = 0
    for name in names:
        bits |= 1 << number(name)
    return bits


def names(bits):
    """The names in ``bits``, lowest number first.

    A bit above LAST_KNOWN (a newer kernel's capability) appears as its decimal
    number, as libcap prints capabilities it has no name for.
    """
    found = []
    n = 0
    while bits >> n:
        if bits >> n & 1:
            found.append(_BY_NUMBER.get(n, str(n)))
        n += 1
    return found
