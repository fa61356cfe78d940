"""Container metrics: /host/prometheus.prom read under a cap, validated, re-exposed with labels.

``validate`` (pure) checks the Prometheus text exposition format (version 0.0.4) strictly, so a
half-written or malformed file is refused with its line number instead of being passed on to
break the whole scrape. ``read_capped`` (edge) reads a file the container controls without
following a link and without ever reading more than the cap. ``Scraper`` keeps each
instance's last good samples and its counters, and renders them all as one exposition.
"""

import os
import stat

from ..errors import EdgertError

CAP = 1000000  # the documented 1 MB per container
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
# The sample names that belong to a histogram or summary family besides its own name.
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:")
NAME_CHARS = NAME_START | frozenset("0123456789")
LABEL_START = NAME_START - {":"}
LABEL_CHARS = NAME_CHARS - {":"}
FLOAT_CHARS = frozenset("0123456789+-.eE")
SPECIAL_VALUES = frozenset(("NaN", "+Inf", "-Inf", "Inf"))
BLANKS = " \t"
RESERVED_PREFIX = "edgert_"  # the runtime's own families
MAX_INT64 = (1 << 63) - 1


class MetricsError(EdgertError):
    """A metrics file that is not valid Prometheus text; ``line`` is 1-based (0: the file)."""

    code = "invalid-metrics"

    def __init__(self, line, reason):
        super().__init__("line %d: %s" % (line, reason) if line else reason)
        self.line, self.reason = line, reason


class MetricsTooLarge(EdgertError):
    code = "metrics-too-large"


# --- validation (pure) ---------------------------------------------------------------------------

def _is_name(text, start=NAME_START, chars=NAME_CHARS):
    return bool(text) and text[0] in start and chars.issuperset(text)


def _blank_end(line, i):
    while i < len(line) and line[i] in BLANKS:
        i += 1
    return i


def _token(line, i, stops=BLANKS):
    """(token, index after it) from ``i`` up to the next stop character."""
    j = i
    while j < len(line) and line[j] not in stops:
        j += 1
    return line[i:j], j


def _unescape(line, i, end_quote, number):
    """Reads an escaped string (\\\\, \\n, and \\" when it ends at a quote): (text, index)."""
    if end_quote:  # the common case: no escapes before the closing quote
        j = line.find('"', i)
        if j >= 0 and "\\" not in line[i:j]:
            return line[i:j], j + 1
    out = []
    allowed = {"\\": "\\", "n": "\n"}
    if end_quote:
        allowed['"'] = '"'
    while i < len(line):
        c = line[i]
        if c == "\\":
            if i + 1 >= len(line) or line[i + 1] not in allowed:
                raise MetricsError(number, "invalid escape %r: only %s are allowed" % (
                    line[i:i + 2], ", ".join("\\" + k for k in allowed)))
            out.append(allowed[line[i + 1]])
            i += 2
            continue
        if end_quote and c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    if end_quote:
        raise MetricsError(number, "label value has no closing quote")
    return "".join(out), i


def _check_value(text, number, what="value"):
    if text in SPECIAL_VALUES:
        return
    try:
        if not text or not FLOAT_CHARS.issuperset(text):
            raise ValueError
        float(text)
    except ValueError:
        raise MetricsError(number, "%s %r is not a number (a float, NaN, +Inf or -Inf)"
                           % (what, text)) from None


def _check_timestamp(text, number):
    digits = text[1:] if text[:1] == "-" else text
    if not digits or not digits.isascii() or not digits.isdigit() or int(digits) > MAX_INT64:
        raise MetricsError(number, "timestamp %r is not an integer of milliseconds" % text)


def _labels(line, i, number):
    """Parses ``{name="value",...}`` from just after the brace: (pairs, index after it)."""
    pairs, seen = [], set()
    while True:
        i = _blank_end(line, i)
        if line[i:i + 1] == "}":
            return pairs, i + 1
        name, i = _token(line, i, BLANKS + "=,}")
        if not _is_name(name, LABEL_START, LABEL_CHARS):
            raise MetricsError(number, "label name %r is invalid (letters, digits and '_', not "
                               "starting with a digit)" % name)
        if name in seen:
            raise MetricsError(number, "label %s appears twice" % name)
        seen.add(name)
        i = _blank_end(line, i)
        if line[i:i + 1] != "=":
            raise MetricsError(number, "label %s: expected '=' after its name" % name)
        i = _blank_end(line, i + 1)
        if line[i:i + 1] != '"':
            raise MetricsError(number, "label %s: its value must be in double quotes" % name)
        value, i = _unescape(line, i + 1, True, number)
        pairs.append((name, value))
        i = _blank_end(line, i)
        if line[i:i + 1] == ",":
            i += 1
        elif line[i:i + 1] != "}":
            raise MetricsError(number, "label %s: expected ',' or '}' after its value" % name)


def _family_of(name, families):
    if name in families:
        return name
    for family_type, suffixes in SUFFIXES.items():
        for suffix in suffixes:
            base = name[:-len(suffix)]
            if name.endswith(suffix) and families.get(base, {}).get("type") == family_type:
                return base
    return name


class _Parser:
    def __init__(self, on_sample):
        self.families = {}  # name -> {"type": str or None, "help": str or None}
        self.on_sample = on_sample
        self.series = set()
        self.current = None
        self.closed = set()
        self.has_samples = set()

    def enter(self, family, number):
        """Samples and descriptors of one family form one group."""
        if family == self.current:
            return
        if family in self.closed:
            raise MetricsError(number, "%s: the lines of a family must form one group (its "
                               "group ended before this line)" % family)
        if self.current is not None:
            self.closed.add(self.current)
        self.current = family

    def descriptor(self, line, number):
        keyword, i = _token(line, _blank_end(line, 1))
        if keyword not in ("HELP", "TYPE") or i == len(line) or line[i] not in BLANKS:
            return  # a plain comment
        name, i = _token(line, _blank_end(line, i))
        if not _is_name(name):
            raise MetricsError(number, "# %s: metric name %r is invalid" % (keyword, name))
        family = self.families.setdefault(name, {"type": None, "help": None})
        self.enter(name, number)
        rest = line[_blank_end(line, i):]
        if keyword == "HELP":
            if family["help"] is not None:
                raise MetricsError(number, "%s has a second HELP line" % name)
            family["help"] = _unescape(rest, 0, False, number)[0]
            return
        if family["type"] is not None:
            raise MetricsError(number, "%s has a second TYPE line" % name)
        if name in self.has_samples:
            raise MetricsError(number, "%s: TYPE must come before the family's samples" % name)
        if rest.rstrip(BLANKS) not in TYPES:
            raise MetricsError(number, "%s: type %r is not one of %s" % (
                name, rest, ", ".join(TYPES)))
        family["type"] = rest.rstrip(BLANKS)

    def sample(self, line, number):
        name, i = _token(line, 0, BLANKS + "{")
        if not _is_name(name):
            raise MetricsError(number, "metric name %r is invalid (letters, digits, '_' and ':', "
                               "not starting with a digit)" % name)
        labels = ()
        if line[i:i + 1] == "{":
            labels, i = _labels(line, i + 1, number)
        fields = line[i:].split()
        if not fields or line[i:i + 1] not in BLANKS or len(fields) > 2:
            raise MetricsError(number, "%s: expected a value and an optional timestamp after the "
                               "name and labels" % name)
        _check_value(fields[0], number)
        if len(fields) == 2:
            _check_timestamp(fields[1], number)
        family = _family_of(name, self.families)
        self.families.setdefault(family, {"type": None, "help": None})
        self.enter(family, number)
        self._check_kind(family, name, labels, number)
        key = "%s%s" % (name, _render_labels(sorted(labels)))
        if key in self.series:
            raise MetricsError(number, "%s appears twice" % key)
        self.series.add(key)
        self.has_samples.add(family)
        self.on_sample(family, name, tuple(labels), fields[0],
                       fields[1] if len(fields) == 2 else None)

    def _check_kind(self, family, name, labels, number):
        kind = self.families[family]["type"]
        names = dict(labels)
        if kind == "histogram":
            if name == family:
                raise MetricsError(number, "%s is a histogram: its samples are %s_bucket, _sum "
                                   "and _count" % (family, family))
            if name.endswith("_bucket"):
                if "le" not in names:
                    raise MetricsError(number, "%s needs an le label" % name)
                _check_value(names["le"], number, "le")
        elif kind == "summary" and name == family:
            if "quantile" not in names:
                raise MetricsError(number, "%s is a summary: its samples need a quantile label"
                                   % name)
            _check_value(names["quantile"], number, "quantile")


def parse(data, on_sample):
    """Checks a Prometheus text exposition; calls ``on_sample(family, name, labels, value,
    timestamp)`` per sample and returns the families, or raises MetricsError.

    families: {name: {"type": str or None, "help": str or None}} in order of appearance;
    labels: ((label, value), ...); value and timestamp (or None) as written.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MetricsError(data.count(b"\n", 0, err.start) + 1, "not UTF-8") from None
    if text and not text.endswith("\n"):
        raise MetricsError(text.count("\n") + 1, "the last line does not end with a newline: "
                           "the file may be half-written; write it atomically (write another "
                           "file, then rename it)")
    parser = _Parser(on_sample)
    for number, line in enumerate(text.split("\n")[:-1], 1):
        if "\r" in line or "\0" in line:
            raise MetricsError(number, "contains a carriage return or NUL character")
        line = line[_blank_end(line, 0):]
        if not line:
            continue
        if line[0] == "#":
            parser.descriptor(line, number)
        else:
            parser.sample(line, number)
    return parser.families


def validate(data):
    """(families, samples) of a Prometheus text exposition (see ``parse``), or MetricsError."""
    samples = []
    families = parse(data, lambda *sample: samples.append(sample))
    return families, samples


# --- rendering (pure) ----------------------------------------------------------------------------

def _escape(text, quote):
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def _render_labels(labels):
    if not labels:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (k, _escape(v, True)) for k, v in labels)


def _with_labels(labels, added):
    """``added`` first; a container label of the same name is kept as exported_<name>."""
    names = {k for k, _ in labels} | {k for k, _ in added}
    out = list(added)
    taken = {k for k, _ in added}
    for name, value in labels:
        if name in taken:
            renamed = "exported_" + name
            while renamed in names:
                renamed = "exported_" + renamed
            names.add(renamed)
            name = renamed
        out.append((name, value))
    return out


def _family_text(name, kind, help_text, lines):
    head = "# HELP %s %s\n" % (name, _escape(help_text, False)) if help_text is not None else ""
    return head + "# TYPE %s %s\n" % (name, kind) + "".join(lines)


# --- reading (edge) ------------------------------------------------------------------------------

def read_capped(path, cap=CAP, dir_fd=None):
    """The bytes of the regular file ``path``, never following a link and never more than ``cap``.

    The file is opened as a path first (O_PATH), so a FIFO or device the container put there is
    never opened; it is read only if fstat says regular file of at most ``cap`` bytes. A file
    that changes size while being read is refused: it was not written atomically.
    FileNotFoundError passes through (no metrics published). ``dir_fd``: ``path`` is a name
    in that directory.
    """
    handle = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        info = os.fstat(handle)
        if stat.S_ISLNK(info.st_mode):
            raise MetricsError(0, "%s is a symbolic link: write the metrics into the file itself"
                               % path)
        if not stat.S_ISREG(info.st_mode):
            raise MetricsError(0, "%s is not a regular file" % path)
        if info.st_size > cap:
            raise MetricsTooLarge("%s: %d bytes, more than the %d-byte cap; publish fewer "
                                  "series" % (path, info.st_size, cap))
        fd = os.open("/proc/self/fd/%d" % handle, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    finally:
        os.close(handle)
    try:
        chunks, left = [], info.st_size
        while left:
            chunk = os.read(fd, left)
            if not chunk:
                raise MetricsError(0, "%s shrank while being read: write it atomically (write "
                                   "another file, then rename it)" % path)
            chunks.append(chunk)
            left -= len(chunk)
        if os.read(fd, 1):
            raise MetricsError(0, "%s grew while being read: write it atomically (write another "
                               "file, then rename it)" % path)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_capped_at(directory, name, cap=CAP):
    """``read_capped`` of the file ``name`` right in ``directory`` (a container's rootfs),
    opened through a directory fd: nothing in the container's hands is followed."""
    dfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        return read_capped(name, cap, dir_fd=dfd)
    finally:
        os.close(dfd)


# --- the scraper ---------------------------------------------------------------------------------

COUNTERS = ("scrapes", "rejected_too_large", "rejected_invalid", "missing")
# The scraper's own families: (name, type, help, ((extra labels, value key), ...)).
OWN_METRICS = (
    ("edgert_metrics_scrapes_total", "counter", "Reads of the container's /host/prometheus.prom.",
     (((), "scrapes"),)),
    ("edgert_metrics_rejected_total", "counter",
     "Metrics files refused: too_large (over the cap) or invalid.",
     (((("reason", "too_large"),), "rejected_too_large"),
      ((("reason", "invalid"),), "rejected_invalid"))),
    ("edgert_metrics_missing_total", "counter", "Scrapes that found no metrics file.",
     (((), "missing"),)),
    ("edgert_metrics_samples", "gauge", "Samples of the container currently published.",
     (((), "samples"),)),
)


class _Instance:
    def __init__(self):
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.families = {}  # family -> (type, help, its sample lines relabelled)
        self.samples = 0
        self.last_error = None
        self.last_good = None  # `now` of the last accepted file


def relabeled(data, added):
    """({family: (type, help, text)}, sample count) of a valid file, its samples rendered once
    with the ``added`` labels first; or MetricsError.

    Kept as text rather than parsed samples: a 1 MB file parses into about ten times as many
    bytes of Python objects.
    """
    lines = {}

    def render(family, name, labels, value, timestamp):
        lines.setdefault(family, []).append("%s%s %s%s\n" % (
            name, _render_labels(_with_labels(labels, added)), value,
            " " + timestamp if timestamp else ""))
    families = parse(data, render)
    reserved = [name for name in families if name.startswith(RESERVED_PREFIX)]
    if reserved:
        raise MetricsError(0, "family %s: names starting with %s are reserved for the runtime"
                           % (reserved[0], RESERVED_PREFIX))
    count = sum(map(len, lines.values()))
    return {family: (families[family]["type"] or "untyped", families[family]["help"],
                     "".join(text)) for family, text in lines.items()}, count


class Scraper:
    """Per instance: the last good samples and the scrape counters.

    A rejected file (too large, invalid) keeps the last good samples published; a missing
    file withdraws them (the container stopped publishing).
    """

    def __init__(self, cap=CAP):
        self.cap = cap
        self._instances = {}

    def scrape(self, instance_id, path, now, labels=(), fallback=None):
        """Reads ``path`` for the instance; "ok", "missing", "too_large" or "invalid".

        ``labels``: (name, value) pairs added to every sample after ``instance`` (service,
        version). ``fallback``: (directory, name) of a file read instead while ``path`` does
        not exist (the deprecated /prometheus.prom in the container's rootfs).
        """
        entry = self._instances.setdefault(instance_id, _Instance())
        entry.counts["scrapes"] += 1
        try:
            try:
                data = read_capped(path, self.cap)
            except FileNotFoundError:
                if fallback is None:
                    raise
                path = os.path.join(*fallback)
                data = read_capped_at(fallback[0], fallback[1], self.cap)
            families, count = relabeled(data, (("instance", instance_id),) + tuple(labels))
        except FileNotFoundError:
            entry.counts["missing"] += 1
            entry.families, entry.samples, entry.last_error = {}, 0, None
            return "missing"
        except MetricsTooLarge as err:
            return self._reject(entry, "too_large", str(err))
        except MetricsError as err:
            return self._reject(entry, "invalid", "%s: %s" % (path, err)
                                if err.line else str(err))
        except OSError as err:
            return self._reject(entry, "invalid", "%s: %s" % (path, err.strerror))
        entry.families, entry.samples = families, count
        entry.last_error, entry.last_good = None, now
        return "ok"

    @staticmethod
    def _reject(entry, reason, message):
        entry.counts["rejected_" + reason] += 1
        entry.last_error = message
        return reason

    def forget(self, instance_id):
        self._instances.pop(instance_id, None)

    def status(self, instance_id):
        entry = self._instances.get(instance_id)
        if entry is None:
            return None
        return dict(entry.counts, samples=entry.samples, last_error=entry.last_error,
                    last_good=entry.last_good)

    def exposition(self):
        """Every instance's samples (families merged, sorted by name) and edgert_metrics_*.

        A family that two instances declare with different types keeps the type of the
        instance first in id order; the other's samples of it are left out.
        """
        merged = {}  # family -> [type, help, texts]
        for instance_id in sorted(self._instances):
            for family, (kind, help_text, text) in self._instances[instance_id].families.items():
                slot = merged.setdefault(family, [kind, help_text, []])
                if slot[0] != kind:
                    continue
                if slot[1] is None:
                    slot[1] = help_text
                slot[2].append(text)
        parts = [_family_text(name, *merged[name]) for name in sorted(merged)]
        parts.append(self._own_metrics())
        return "".join(parts).encode()

    def _own_metrics(self):
        ids = sorted(self._instances)
        values = {i: dict(self._instances[i].counts, samples=self._instances[i].samples)
                  for i in ids}
        parts = []
        for name, kind, help_text, rows in OWN_METRICS:
            lines = ["%s%s %d\n" % (name, _render_labels((("instance", i),) + extra),
                                    values[i][key]) for extra, key in rows for i in ids]
            parts.append(_family_text(name, kind, help_text, lines))
        return "".join(parts)
