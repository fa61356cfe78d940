"""Update time windows: parsing, open/closed on local time and NTP sync, time to the next change."""

import time

import pytest

from edgert.daemon import window
from edgert.errors import ConfigError

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
ALL = (MON, TUE, WED, THU, FRI, SAT, SUN)


@pytest.mark.parametrize("spec,parsed", [
    ("Mon-Fri 02:00-04:00", [((MON, TUE, WED, THU, FRI), 120, 240)]),
    ("Sat,Sun 00:00-06:00", [((SAT, SUN), 0, 360)]),
    ("daily 01:00-03:00", [(ALL, 60, 180)]),
    ("22:00-02:00", [(ALL, 1320, 120)]),
    ("Fri-Mon 23:30-00:30", [((MON, FRI, SAT, SUN), 1410, 30)]),
    ("mon 1:05-2:00", [((MON,), 65, 120)]),
    ("Monday,wednesday 00:00-24:00", [((MON, WED), 0, 1440)]),
    ("Tues 10:00-11:00", [((TUE,), 600, 660)]),
    ("DAILY 00:00-00:01", [(ALL, 0, 1)]),
    ("Sun-Sun 10:00-11:00", [((SUN,), 600, 660)]),
    ("Mon,Mon-Tue 10:00-11:00", [((MON, TUE), 600, 660)]),
    ("Mon 02:00-04:00; Sat,Sun 00:00-06:00",
     [((MON,), 120, 240), ((SAT, SUN), 0, 360)]),
    (["Mon 02:00-04:00", "22:00-02:00;"], [((MON,), 120, 240), (ALL, 1320, 120)]),
    ("  Mon   02:00-04:00  ", [((MON,), 120, 240)]),
    (None, []), ("", []), ([], []), (" ; ", []),
])
def test_parse(spec, parsed):
    assert window.parse(spec) == parsed


@pytest.mark.parametrize("spec,message", [
    ("Mon-Fry 02:00-04:00", 'update window "Mon-Fry 02:00-04:00": unknown day "Fry" (use '
                            "Mon..Sun, a range like Mon-Fri, or daily)"),
    ("Mo 02:00-04:00", 'unknown day "Mo"'),
    ("Monx 02:00-04:00", 'unknown day "Monx"'),
    ("Mon,,Tue 02:00-04:00", 'unknown day ""'),
    ("Mon- 02:00-04:00", 'unknown day ""'),
    ("Mon 02:00", "no time range"),
    ("Mon 02:00-", 'update window "Mon 02:00-": "" is not a time HH:MM'),
    ("Mon 2-4", '"2" is not a time HH:MM'),
    ("Mon 02:0-04:00", '"02:0" is not a time HH:MM'),
    ("Mon 002:00-04:00", '"002:00" is not a time HH:MM'),
    ("Mon 25:00-04:00", '"25:00" is not a time of day'),
    ("Mon 24:00-04:00", '"24:00" is not a time of day'),
    ("Mon 02:60-04:00", '"02:60" is not a time of day'),
    ("Mon 02:00-24:01", '"24:01" is not a time of day'),
    ("Mon 02:00-02:00", "starts and ends at the same time: use 00:00-24:00"),
    ("Mon Tue 02:00-04:00", "use [DAYS ]HH:MM-HH:MM"),
    ("Mon 02:00-04:00 extra", "use [DAYS ]HH:MM-HH:MM"),
    ("Mon 0２:00-04:00", "is not a time HH:MM"),
    ("Mon +2:00-04:00", "is not a time HH:MM"),
    ("Mon 02:00-04:00-06:00", '"04:00-06:00" is not a time HH:MM'),
    (5, "update windows: expected text"),
    ([None], "update windows: expected text"),
    ({"days": "Mon"}, "update windows: expected text"),
    ("x" * 2000, "update windows: 2000 characters is over the limit of 1024"),
    (";".join(["Mon 01:00-02:00"] * 33), "update windows: 33 windows is over the limit of 32"),
])
def test_parse_errors(spec, message):
    with pytest.raises(ConfigError) as info:
        window.parse(spec)
    assert message in str(info.value)


@pytest.mark.parametrize("spec", ["Mon " + "x" * 500, "Mon 1-" + "1" * 900,
                                  "x" * 900 + " 01:00-02:00"])
def test_long_window_text_is_cut_in_messages(spec):
    with pytest.raises(ConfigError) as info:
        window.parse(spec)
    assert len(str(info.value)) < 250


WORKDAYS = window.parse("Mon-Fri 02:00-04:00")
NIGHTS = window.parse("22:00-02:00")
WEEKEND_NIGHT = window.parse("Sun 22:00-02:00")


@pytest.mark.parametrize("windows,now,expected", [
    (WORKDAYS, (MON, 2, 0), True), (WORKDAYS, (MON, 3, 59), True),
    (WORKDAYS, (MON, 4, 0), False), (WORKDAYS, (MON, 1, 59), False),
    (WORKDAYS, (SAT, 3, 0), False), (WORKDAYS, (FRI, 3, 0), True),
    (NIGHTS, (MON, 23, 0), True), (NIGHTS, (MON, 1, 0), True), (NIGHTS, (MON, 2, 0), False),
    (NIGHTS, (MON, 21, 59), False), (NIGHTS, (MON, 0, 0), True),
    # belongs to the day it starts: Sunday 22:00 runs into Monday 02:00
    (WEEKEND_NIGHT, (SUN, 23, 0), True), (WEEKEND_NIGHT, (MON, 1, 59), True),
    (WEEKEND_NIGHT, (MON, 2, 0), False), (WEEKEND_NIGHT, (SUN, 1, 0), False),
    (WEEKEND_NIGHT, (SAT, 23, 0), False),
    (window.parse("Mon 00:00-24:00"), (MON, 23, 59), True),
    (window.parse("Mon 00:00-24:00"), (TUE, 0, 0), False),
])
def test_is_open_when_synced(windows, now, expected):
    is_open, reason = window.is_open(windows, now, synced=True)
    assert is_open is expected
    assert reason == ("inside an update window" if expected else "outside the update windows")


def test_no_window_is_always_open_synced_or_not():
    for synced in (True, False):
        assert window.is_open([], (MON, 12, 0), synced) == (
            True, "no update window set: always open")


@pytest.mark.parametrize("policy,inside,outside", [
    ("defer", False, False), ("open", True, True), ("window", True, False),
])
def test_unsynced_policies(policy, inside, outside):
    assert window.is_open(WORKDAYS, (MON, 3, 0), False, policy)[0] is inside
    assert window.is_open(WORKDAYS, (MON, 12, 0), False, policy)[0] is outside


def test_unsynced_default_defers_with_the_reason():
    assert window.is_open(WORKDAYS, (MON, 3, 0), synced=False) == (
        False, "clock not NTP-synced: update window cannot be judged")


def test_unknown_unsynced_policy():
    with pytest.raises(ConfigError, match="unsynced policy 'later': use defer, open, window"):
        window.is_open(WORKDAYS, (MON, 3, 0), False, "later")


def struct(wday, hour, minute, second=0):
    # 2026-11-30 is a Monday
    return time.struct_time((2026, 11, 30 + wday, hour, minute, second, wday, 334 + wday, 0))


def test_struct_time_is_accepted():
    assert window.is_open(WORKDAYS, struct(MON, 3, 0), True)[0] is True
    assert window.is_open(WORKDAYS, struct(SUN, 3, 0), True)[0] is False
    real = time.localtime(0)
    window.is_open(WORKDAYS, real, True)


@pytest.mark.parametrize("windows,now,seconds", [
    (WORKDAYS, struct(MON, 1, 0), 3600),                 # opens at 02:00
    (WORKDAYS, struct(MON, 1, 59, 30), 30),
    (WORKDAYS, struct(MON, 2, 0), 7200),                 # closes at 04:00
    (WORKDAYS, struct(MON, 3, 59, 59), 1),
    (WORKDAYS, struct(FRI, 5, 0), (2 * 24 + 21) * 3600),  # next: Monday 02:00
    (WORKDAYS, struct(SUN, 2, 0), 24 * 3600),
    (NIGHTS, struct(MON, 23, 0), 3 * 3600),              # closes at 02:00 the next day
    (NIGHTS, struct(MON, 12, 0), 10 * 3600),
    (WEEKEND_NIGHT, struct(SUN, 23, 0), 3 * 3600),
    (WEEKEND_NIGHT, struct(MON, 2, 0), (6 * 24 + 20) * 3600),
    (window.parse("Mon 01:00-02:00; Mon 02:00-03:00"), struct(MON, 1, 30), 90 * 60),  # joined
    (window.parse("22:00-02:00; 02:00-22:00"), struct(MON, 1, 30), None),  # open all week
    (window.parse("00:00-24:00"), struct(MON, 1, 30), None),
    ([], struct(MON, 1, 30), None),
    (window.parse("Mon 00:00-24:00"), struct(SUN, 23, 59, 59), 1),
    (window.parse("Mon 00:00-24:00"), (MON, 12, 0), 12 * 3600),
])
def test_next_change(windows, now, seconds):
    assert window.next_change(windows, now) == seconds


def week_table(windows):
    """Open or not, minute by minute over the week."""
    return [window.is_open(windows, (m // 1440, m % 1440 // 60, m % 60), True)[0]
            for m in range(7 * 1440)]


def stepped_next_change(table, start):
    for step in range(1, len(table) + 1):
        if table[(start + step) % len(table)] != table[start]:
            return step * 60
    return None


@pytest.mark.parametrize("spec", [
    "Mon-Fri 02:00-04:00", "22:00-02:00", "Sun 23:00-01:00; Wed 12:00-12:01",
    "Sat,Sun 00:00-24:00", "Fri-Tue 20:00-08:00", "Mon 00:00-24:00; Tue 00:00-01:00",
])
def test_next_change_agrees_with_stepping_minute_by_minute(spec):
    windows = window.parse(spec)
    table = week_table(windows)
    for m in range(0, 7 * 1440, 97):
        wday, hour, minute = m // 1440, m % 1440 // 60, m % 60
        assert window.next_change(windows, (wday, hour, minute)) == \
            stepped_next_change(table, m), (spec, wday, hour, minute)


def test_random_texts_parse_or_fail_cleanly():
    import random
    rng = random.Random(1234)
    alphabet = ["Mon", "tue", "Fri", "sun", "daily", "Sat", "0", "1", "2", "4", "5", "9", ":",
                "-", ",", ";", " ", "x", "24:00", "00:00", "\t", "ü"]
    parsed = 0
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        try:
            windows = window.parse(text)
        except ConfigError as e:
            assert str(e).startswith(("update window", "update windows"))
            continue
        parsed += 1
        for days, start, end in windows:
            assert days and set(days) <= set(ALL) and 0 <= start < 1440 and 0 <= end <= 1440
        window.is_open(windows, (rng.randrange(7), rng.randrange(24), rng.randrange(60)), True)
        change = window.next_change(windows, (MON, 12, 0))
        assert change is None or 0 < change <= 7 * 86400
    assert parsed > 50
