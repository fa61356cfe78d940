"""Small helpers shared by the system tests that run containers."""

import os

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def unique(name):
    """A container id that does not collide with other sessions' (cgroup names are shared)."""
    return "%s-%d" % (name, os.getpid())


def kv(text):
    """The probe's key=value lines as a dict (a repeated key keeps its last value)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
