import os
import re

import pytest

from edgert import caps
from edgert.errors import ConfigError

HEADER = "/usr/include/linux/capability.h"


def test_numbers_follow_the_kernel():
    assert caps.NAMES["CAP_CHOWN"] == 0
    assert caps.NAMES["CAP_SYS_ADMIN"] == 21
    assert caps.NAMES["CAP_SYS_BOOT"] == 22
    assert caps.NAMES["CAP_CHECKPOINT_RESTORE"] == 40
    assert caps.LAST_KNOWN == 40
    assert sorted(caps.NAMES.values()) == list(range(41))


@pytest.mark.skipif(not os.path.exists(HEADER), reason="needs the kernel headers (linux-libc-dev)")
def test_table_matches_the_c_header():
    with open(HEADER) as f:
        text = f.read()
    defined = {name: int(num) for name, num in re.findall(r"#define (CAP_[A-Z_]+)\s+(\d+)\s*$",
                                                           text, re.M)
               if not name.startswith(("CAP_LAST", "CAP_TO"))}
    assert defined == caps.NAMES


def test_number():
    assert caps.number("CAP_NET_ADMIN") == 12


@pytest.mark.parametrize("name", ["NET_ADMIN", "cap_net_admin", "CAP_BOGUS", "", None])
def test_number_of_unknown_name(name):
    with pytest.raises(ConfigError, match="unknown capability"):
        caps.number(name)


def test_mask_and_names_round_trip():
    names = ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_BOOT", "CAP_CHECKPOINT_RESTORE"]
    bits = caps.mask(names)
    assert bits == 1 | 1 << 5 | 1 << 22 | 1 << 40
    assert caps.names(bits) == names
    assert caps.mask(reversed(names)) == bits


def test_empty_and_full_sets():
    assert caps.mask([]) == 0
    assert caps.names(0) == []
    full = (1 << (caps.LAST_KNOWN + 1)) - 1
    assert caps.mask(caps.NAMES) == full
    assert caps.names(full) == sorted(caps.NAMES, key=caps.NAMES.get)


def test_unknown_bits_show_as_numbers():
    # /proc/self/status on a kernel newer than this table
    assert caps.names(1 << 41 | 1) == ["CAP_CHOWN", "41"]


def test_mask_rejects_unknown_names():
    with pytest.raises(ConfigError, match="CAP_NOPE"):
        caps.mask(["CAP_CHOWN", "CAP_NOPE"])
