"""/host/.time-status: non-empty exactly while the host clock is NTP-synced (edge).

The signal is the daemon's own (``edgert.daemon.clock.ntp_synced``: adjtimex, or the firmware
hook's ``<run-dir>/time-status``). ``TimeStatus.poll`` tells the daemon when it changed, so it
rewrites every container's file then, and ``write`` sets a new container's file at creation.
"""

import os

from ..daemon import clock

FILE = ".time-status"
SYNCED = b"synced\n"


def write(host_dir, synced):
    """Replaces ``<host_dir>/.time-status`` atomically: readers see old or new, never empty by
    accident; whatever the container put at the name (a link, a directory) is replaced
    without being followed (hostdir.py). The host dir is on /run (tmpfs), so no fsync."""
    from . import hostdir
    fd = hostdir.open_dir(host_dir)
    try:
        hostdir.replace_file(fd, FILE, SYNCED if synced else b"", 0o644)
    finally:
        os.close(fd)


class TimeStatus:
    def __init__(self, run_dir, probe=clock.ntp_synced):
        self.run_dir = run_dir
        self._probe = probe
        self.synced = None  # unknown until the first poll, which therefore reports a change

    def poll(self):
        """Reads the sync state; True when it differs from the last poll's."""
        synced = bool(self._probe(self.run_dir))
        changed = synced != self.synced
        self.synced = synced
        return changed
