"""Reading a test daemon's events as `edgert events --json` prints them."""

import json
import os
import select
import subprocess
import time


def events(daemon, predicate, timeout=20):
    """The first event of `edgert events --json` (history included) that ``predicate``
    accepts, or None."""
    proc = subprocess.Popen([daemon.cli_bin, "--socket", daemon.socket, "events", "--json"],
                            stdout=subprocess.PIPE, env=daemon.env)
    buffered = b""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([proc.stdout], [], [], 0.2)[0]:
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                event = json.loads(line)
                if predicate(event):
                    return event
        return None
    finally:
        proc.kill()
        proc.wait()
