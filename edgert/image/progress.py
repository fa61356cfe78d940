"""Pull progress for people and programs: per-layer bytes, total and rate.

Modes: "tty" redraws one line per layer with carriage returns; "plain" (a serial console,
a log file) prints a line per layer at most every ``interval`` seconds and never uses
``\\r``; "json" prints one JSON object per event and line; "quiet" prints nothing.
"""

import sys
import time

from .. import jsonfast

MODES = ("tty", "plain", "json", "quiet")


def auto_mode(stream):
    return "tty" if stream.isatty() else "plain"


def human_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return "%d B" % n


class Progress:
    """Reports on ``stream`` (stderr by default) in ``mode`` (None: tty or plain)."""

    def __init__(self, mode=None, stream=None, interval=2.0, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.mode = mode or auto_mode(self.stream)
        if self.mode not in MODES:
            raise ValueError("progress mode %r: expected one of %s" % (mode, ", ".join(MODES)))
        self.interval = interval
        self.clock = clock

    def event(self, kind, **fields):
        """A one-off event: "resolved", "skipped", "unpacked", "done" ..."""
        if self.mode == "quiet":
            return
        if self.mode == "json":
            self._write(jsonfast.dumps(dict(fields, event=kind)) + "\n")
            return
        text = fields.get("message")
        if text:
            self._write(text + "\n")

    def layer(self, digest, total):
        """A ``callback(done, total)`` for one blob download (registry.fetch_blob's)."""
        start = self.clock()
        short = digest.partition(":")[2][:12]
        state = {"last": None, "done": 0}

        def report(done, total=total, final=False):
            now = self.clock()
            state["done"] = done
            if self.mode == "quiet":
                return
            if not final and state["last"] is not None and now - state["last"] < (
                    self.interval if self.mode != "tty" else 0.1):
                return
            state["last"] = now
            elapsed = max(now - start, 1e-6)
            rate = done / elapsed
            if self.mode == "json":
                self._write(jsonfast.dumps({"event": "progress", "digest": digest, "bytes": done,
                                            "total": total, "rate": int(rate)}) + "\n")
                return
            line = "%s: %s / %s (%s/s)" % (short, human_bytes(done), human_bytes(total),
                                          human_bytes(rate))
            if self.mode == "tty":
                self._write("\r\x1b[K" + line + ("\n" if final else ""))
            else:
                self._write(line + "\n")

        def finish():
            report(state["done"], final=True)

        report.finish = finish
        return report

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()
