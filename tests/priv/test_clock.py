"""NTP sync state from the real kernel (adjtimex, read-only) and the firmware's override file."""

import os
import subprocess

import pytest

from edgert import native
from edgert.daemon import clock


TIME_ERROR = 5      # <sys/timex.h>: the same on every Linux architecture
STA_UNSYNC = 0x40


def test_adjtimex_read_changes_nothing_and_reports_a_state():
    before = native.adjtimex_read()
    state, status, synced = native.adjtimex_read()
    assert 0 <= state <= TIME_ERROR  # TIME_OK .. TIME_ERROR
    assert (state, status, synced) == before  # modes 0 reads; nothing changed


def test_kernel_verdict_matches_the_flags():
    state, status, synced = native.adjtimex_read()
    assert synced is (state != TIME_ERROR and not status & STA_UNSYNC)
    assert clock.ntp_synced() is synced
    print("this machine: adjtimex state %d, status %#x, synced %s" % (state, status, synced))


def test_agrees_with_timedatectl_where_it_works():
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=10)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        pytest.skip("no timedatectl")
    if out.returncode != 0 or out.stdout.strip() not in ("yes", "no"):
        pytest.skip("timedatectl cannot answer here (no systemd): %s" % out.stderr.strip())
    assert clock.ntp_synced() is (out.stdout.strip() == "yes")


@pytest.mark.parametrize("content,synced", [
    (b"1", True), (b"synced 2026-12-03T15:00:00Z\n", True), (b"", False), (b"\n", False),
    (b"  \n\t", False), (b"\0", True),
])
def test_time_status_file_overrides_the_kernel(tmp_path, content, synced):
    (tmp_path / "time-status").write_bytes(content)
    assert clock.ntp_synced(str(tmp_path)) is synced


def test_without_the_file_the_kernel_decides(tmp_path):
    assert clock.ntp_synced(str(tmp_path)) is clock.ntp_synced()


def test_an_unreadable_file_is_an_error_not_a_guess(tmp_path):
    os.mkdir(tmp_path / "time-status")
    with pytest.raises(IsADirectoryError):
        clock.ntp_synced(str(tmp_path))
