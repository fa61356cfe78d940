"""Whether the system clock is NTP-synced: update windows are judged on it (edge).

The kernel knows: an NTP client (chrony, ntpd, systemd-timesyncd, busybox ntpd) that
disciplines the clock clears STA_UNSYNC, and adjtimex(2) stops returning TIME_ERROR. Some
firmwares set the clock another way (ntpclient with settimeofday, a GPS or cellular time
source) and the kernel never hears of it; their NTP hook writes ``<run-dir>/time-status``
instead, and then that file decides: non-blank content means synced, a blank file means not.
"""

import os

from .. import native

TIME_STATUS = "time-status"


def _time_status(path):
    """True/False from the firmware's time-status file, None when there is none."""
    try:
        with open(path, "rb") as f:
            return bool(f.read(64).strip())
    except FileNotFoundError:
        return None


def ntp_synced(run_dir=None):
    """Whether the clock is synced, from ``<run_dir>/time-status`` if present, else the kernel."""
    if run_dir is not None:
        override = _time_status(os.path.join(run_dir, TIME_STATUS))
        if override is not None:
            return override
    return native.adjtimex_read()[2]
