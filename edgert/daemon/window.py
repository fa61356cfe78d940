"""Update time windows: when rollouts may run, judged on local time (pure).

A window is ``[DAYS ]HH:MM-HH:MM``. DAYS is ``daily`` (also the default), a day (``Mon``),
a range (``Mon-Fri``, ``Fri-Mon`` wraps over the weekend) or a comma list of these
(``Sat,Sun``). A window whose end is not after its start crosses midnight and belongs to the
day it starts on: ``Fri 22:00-02:00`` is open from Friday 22:00 to Saturday 02:00. ``24:00``
ends a window at midnight. Several windows are separated by ";" or given as a list; no
window at all (None, "" or []) means always open.

Without NTP sync the local clock may be far off (no RTC, or an RTC never set), so by default
("defer") windows count as closed until the clock is synced; "open" treats them as open and
"window" judges them on the clock anyway.
"""

from ..errors import ConfigError

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES
UNSYNCED_POLICIES = ("defer", "open", "window")
MAX_TEXT = 1024
MAX_WINDOWS = 32
_SYNTAX = "use [DAYS ]HH:MM-HH:MM such as \"Mon-Fri 02:00-04:00\" or \"daily 01:00-03:00\""


def _cut(text, limit):
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _error(text, why):
    return ConfigError("update window \"%s\": %s" % (_cut(text, 60), why))


def _clock(text, part, allow_24):
    hours, colon, minutes = part.partition(":")
    if (not colon or not 1 <= len(hours) <= 2 or len(minutes) != 2
            or not (hours + minutes).isascii() or not (hours + minutes).isdigit()):
        raise _error(text, "\"%s\" is not a time HH:MM (%s)" % (_cut(part, 20), _SYNTAX))
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > DAY_MINUTES or value == DAY_MINUTES and not allow_24:
        raise _error(text, "\"%s\" is not a time of day (00:00 to 23:59, or 24:00 as an "
                     "end)" % part)
    return value


def _day(text, name):
    """Monday=0 for "Mon", "mon", "Monday", "Mond"..."""
    lower = name.lower()
    for number, full in enumerate(DAY_NAMES):
        if len(lower) >= 3 and full.startswith(lower):
            return number
    raise _error(text, "unknown day \"%s\" (use Mon..Sun, a range like Mon-Fri, or daily)"
                 % _cut(name, 20))


def _days(text, spec):
    if spec.lower() == "daily":
        return tuple(range(7))
    days = set()
    for item in spec.split(","):
        first, dash, last = item.partition("-")
        start = _day(text, first)
        end = _day(text, last) if dash else start
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return tuple(sorted(days))


def _parse_one(text):
    words = text.split()
    if not 1 <= len(words) <= 2:
        raise _error(text, _SYNTAX)
    days = _days(text, words[0]) if len(words) == 2 else tuple(range(7))
    start_text, dash, end_text = words[-1].partition("-")
    if not dash:
        raise _error(text, "no time range (%s)" % _SYNTAX)
    start = _clock(text, start_text, allow_24=False)
    end = _clock(text, end_text, allow_24=True)
    if end == start:
        raise _error(text, "starts and ends at the same time: use 00:00-24:00 for a whole day")
    return days, start, end


def parse(spec):
    """Windows as (days, start minute, end minute) tuples from text or a list of texts; [] when
    there is none (always open). ConfigError saying what is wrong."""
    if spec is None:
        return []
    texts = spec if type(spec) is list else [spec]
    windows = []
    for text in texts:
        if type(text) is not str:
            raise ConfigError("update windows: expected text such as \"Mon-Fri 02:00-04:00\", "
                              "got a value of type %s" % type(text).__name__)
        if len(text) > MAX_TEXT:
            raise ConfigError("update windows: %d characters is over the limit of %d"
                              % (len(text), MAX_TEXT))
        windows.extend(_parse_one(part.strip()) for part in text.split(";") if part.strip())
    if len(windows) > MAX_WINDOWS:
        raise ConfigError("update windows: %d windows is over the limit of %d"
                          % (len(windows), MAX_WINDOWS))
    return windows


def _intervals(windows):
    """Open intervals as [start, end) in minutes of the week from Monday 00:00; an interval may
    run past the week's end (Sunday night into Monday)."""
    for days, start, end in windows:
        length = end - start if end > start else end + DAY_MINUTES - start
        for day in days:
            begin = day * DAY_MINUTES + start
            yield begin, begin + length


def _open_at(intervals, minute):
    return any(begin <= minute < end or begin <= minute + WEEK_MINUTES < end
               for begin, end in intervals)


def _week_minute(local_tm):
    """(minute of the week, second) of a struct_time or a (wday, hour, minute) tuple."""
    if hasattr(local_tm, "tm_wday"):
        return (local_tm.tm_wday * DAY_MINUTES + local_tm.tm_hour * 60 + local_tm.tm_min,
                local_tm.tm_sec)
    wday, hour, minute = local_tm
    return wday * DAY_MINUTES + hour * 60 + minute, 0


def is_open(windows, local_tm, synced, unsynced_policy="defer"):
    """(open, reason) for parsed ``windows`` at ``local_tm`` (time.localtime(now), or a
    (weekday Monday=0, hour, minute) tuple); ``synced``: the clock is NTP-synced."""
    if unsynced_policy not in UNSYNCED_POLICIES:
        raise ConfigError("unsynced policy %r: use %s" % (unsynced_policy,
                                                          ", ".join(UNSYNCED_POLICIES)))
    if not windows:
        return True, "no update window set: always open"
    if not synced:
        if unsynced_policy == "defer":
            return False, "clock not NTP-synced: update window cannot be judged"
        if unsynced_policy == "open":
            return True, "clock not NTP-synced: update windows ignored (policy \"open\")"
    minute, _ = _week_minute(local_tm)
    if _open_at(list(_intervals(windows)), minute):
        return True, "inside an update window"
    return False, "outside the update windows"


def next_change(windows, local_tm):
    """Seconds from ``local_tm`` until the windows next open or close; None if they never do
    (no window, or open all week). Judged on the clock alone, whatever the sync state."""
    intervals = list(_intervals(windows))
    if not intervals:
        return None
    minute, second = _week_minute(local_tm)
    now_open = _open_at(intervals, minute)
    steps = sorted({(edge - minute) % WEEK_MINUTES or WEEK_MINUTES
                    for interval in intervals for edge in interval})
    for step in steps:
        if _open_at(intervals, (minute + step) % WEEK_MINUTES) != now_open:
            return step * 60 - second
    return None
