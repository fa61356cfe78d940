"""Update windows with a fake clock: edgertd runs under libfaketime, its clock starting a few
seconds before a Monday 02:00 window; version changes wait for the window (a first
deployment does not), start by themselves when it opens, and `edgert rollout-now` overrides
a closed one. A clock that is not NTP-synced defers changes (the default policy).

TZ=UTC for the daemon: windows are local time. The clock counts as synced through
``<run-dir>/time-status`` (edgert/daemon/clock.py).
"""

import glob
import json
import os
import subprocess
import time

import pytest

from helpers.services import service_input

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")

FAKE_START = "2026-12-07 01:59:48"  # a Monday, 12 s before the window opens
WINDOW = "Mon-Fri 02:00-04:00"
OPENS = "2026-12-07 02:00:00"
IID = "w1"
PROBE = """import json, time
start = time.monotonic()
time.sleep(0.01)
print(json.dumps({"time": time.time(), "local": list(time.localtime())[:7],
                  "monotonic": start}))
"""


def fake_clock_env(start):
    """The environment that runs a program on a fake wall clock starting at ``start``;
    checked with Python itself (time.time, time.localtime, time.sleep)."""
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not libs:
        pytest.skip("libfaketime is not installed (Debian package faketime)")
    base = {"LD_PRELOAD": libs[0], "FAKETIME": "@" + start, "TZ": "UTC"}
    # Preferably the monotonic clock stays real. libfaketime 0.9.10 then breaks Python's
    # time.sleep (clock_nanosleep on CLOCK_MONOTONIC with TIMER_ABSTIME gets the wall-clock
    # offset: EINVAL), which the runtime uses in its retry loops; faking it as well is
    # harmless here: it runs at the real rate from the start, so the daemon's timers keep
    # their real length.
    for dont_fake_monotonic in ("1", "0"):
        env = dict(base, FAKETIME_DONT_FAKE_MONOTONIC=dont_fake_monotonic)
        proc = subprocess.run(["/usr/bin/python3", "-I", "-c", PROBE], env=dict(
            os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode == 0:
            seen = json.loads(proc.stdout)
            want = time.strptime(start, "%Y-%m-%d %H:%M:%S")
            assert seen["local"][:5] == list(want)[:5] and seen["local"][6] == want.tm_wday, \
                seen
            assert abs(seen["time"] - fake_epoch(start)) < 5, seen
            return env
    pytest.skip("libfaketime cannot run Python here: %s" % proc.stderr.strip()[-200:])


def fake_epoch(text):
    """Seconds since the epoch of a UTC "YYYY-mm-dd HH:MM:SS"."""
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def set_synced(daemon, synced):
    with open(os.path.join(daemon.run_dir, "time-status"), "w") as f:
        f.write("synced by the test\n" if synced else "")


def device_time(daemon):
    return daemon.json("status")["device"]["time"]


def logged_at(daemon, text):
    """The daemon's (fake, local = UTC) time stamp of its first log line containing text."""
    with open(daemon.log_path, errors="replace") as f:
        for line in f:
            if text in line:
                return fake_epoch(line[:19])
    raise AssertionError("no log line with %r:\n%s" % (text, daemon.log()))


def committed(daemon, version, rollout_id):
    info = daemon.inspect(IID)
    rec = info["rollout"] or {}
    return (rec.get("id") == rollout_id and rec.get("outcome") == "committed"
            and info["version"] == version and info["state"] == "running")


def import_version(daemon, images, v):
    return daemon.import_service(service_input("win", images["good"], env={"V": str(v)},
                                               health_check={"window_s": 1}))["version"]


def assert_waits(daemon, version, rollout_id, why):
    info = daemon.inspect(IID)
    assert info["version"] == version and info["rollout"]["id"] == rollout_id, info
    assert info["target_version"] == version + 1, info
    assert "waits" in info["message"] and why in info["message"], info["message"]


def test_changes_wait_for_the_update_window(daemon, images):
    daemon.daemon_env.update(fake_clock_env(FAKE_START))
    with open(daemon.config, "w") as f:
        json.dump({"update_windows": WINDOW}, f)
    os.makedirs(daemon.run_dir)
    set_synced(daemon, True)
    daemon.start()
    device = daemon.json("status")["device"]
    assert fake_epoch(FAKE_START) <= device["time"] < fake_epoch(OPENS), device
    assert device["ntp_synced"] is True and device["update_window_open"] is False, device

    # a first deployment does not wait for the window
    import_version(daemon, images, 1)
    daemon.cli("instance", "add", "win", "--id", IID)
    daemon.wait_for(lambda: committed(daemon, 1, 1), "first deployment committed")

    # a change does: nothing happens until the window opens, then it starts by itself
    import_version(daemon, images, 2)
    assert device_time(daemon) < fake_epoch(OPENS) - 1, "too slow: the window is open already"
    assert_waits(daemon, 1, 1, "outside the update windows")
    daemon.wait_for(lambda: committed(daemon, 2, 2), "version 2 rolled out in the window",
                    timeout=30)
    began = logged_at(daemon, "rollout-started: version 1 -> 2")
    assert fake_epoch(OPENS) <= began <= fake_epoch(OPENS) + 2, time.ctime(began)
    assert daemon.cli("exec", IID, "sh", "-c", "echo $V").stdout == b"2\n"

    # rollout-now overrides a closed window, once
    daemon.cli("settings", "update_windows=Sat 02:00-04:00")
    import_version(daemon, images, 3)
    time.sleep(1.5)
    assert_waits(daemon, 2, 2, "outside the update windows")
    daemon.cli("rollout-now", IID)
    daemon.wait_for(lambda: committed(daemon, 3, 3), "version 3 rolled out by rollout-now")
    import_version(daemon, images, 4)
    time.sleep(1.5)
    assert_waits(daemon, 3, 3, "outside the update windows")

    # an unsynced clock defers changes even in an open window, until it is synced
    set_synced(daemon, False)
    daemon.cli("settings", "update_windows=daily 00:00-24:00")
    device = daemon.json("status")["device"]
    assert device["ntp_synced"] is False and device["update_window_open"] is False, device
    time.sleep(1.5)
    assert_waits(daemon, 3, 3, "clock not NTP-synced")
    text = daemon.cli("inspect", IID).stdout.decode()
    assert "version 4 waits: clock not NTP-synced" in text, text
    set_synced(daemon, True)
    daemon.wait_for(lambda: committed(daemon, 4, 4), "version 4 rolled out once synced",
                    timeout=30)
