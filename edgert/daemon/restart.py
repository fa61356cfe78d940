"""Restart policy for a running instance: min uptime, exponential backoff, give-up.

Policy (defaults as in the node service schema, edgert/daemon/model.py)::

    mode               "always" | "on-failure" | "never"        "always"
    min_uptime_s       a run at least this long was a good run    10
    backoff_initial_s  delay after the first quick failure        1
    backoff_factor     each further quick failure multiplies it   2
    backoff_max_s      the delay never exceeds this               300
    max_failures       quick failures in a row before giving up   10 (0: never give up)

With the defaults a container that dies at once is restarted after 1, 2, 4, 8, 16, 32, 64,
128 and 256 s; the 10th quick failure in a row gives up ("crash-loop", about 8.5 minutes
after the first) and only `edgert start` (which resets the state) tries again. A run of at
least min_uptime_s resets the count and is restarted at once.

Exits (exit_info["kind"]):

- "exited" (code N, 128+S when killed by signal S), "killed" (no exit record): restarted
  per mode; "on-failure" restarts only a non-zero code or a kill; "never" never restarts.
- "reboot-requested" (`reboot` inside): restarted at once without backoff, except under
  "never"; a reboot sooner than min_uptime_s counts as a quick failure like any other, so a
  reboot loop backs off and gives up too.
- "stopped-by-container" (poweroff/halt inside) and "stopped" (by edgert): never restarted.

State: {"failures", "last_start", "next_start", "gave_up"}; ``{}`` is a fresh state.
Functions return new dicts and never change their arguments.
"""

from ..errors import ConfigError

DEFAULTS = {
    "mode": "always",
    "min_uptime_s": 10,
    "backoff_initial_s": 1,
    "backoff_max_s": 300,
    "backoff_factor": 2,
    "max_failures": 10,
}
MODES = ("always", "on-failure", "never")


def policy_of(policy):
    """``policy`` with defaults filled; ConfigError naming a bad field."""
    merged = dict(DEFAULTS, **(policy or {}))
    if merged["mode"] not in MODES:
        raise ConfigError("restart policy mode %r is unknown: use always, on-failure or never"
                          % (merged["mode"],))
    for key in ("min_uptime_s", "backoff_initial_s", "backoff_max_s", "max_failures"):
        value = merged[key]
        if type(value) not in (int, float) or value < 0:
            raise ConfigError("restart policy %s must be a number >= 0, got %r" % (key, value))
    if type(merged["backoff_factor"]) not in (int, float) or merged["backoff_factor"] < 1:
        raise ConfigError("restart policy backoff_factor must be a number >= 1, got %r"
                          % (merged["backoff_factor"],))
    return merged


def fresh():
    return {"failures": 0, "last_start": None, "next_start": None, "gave_up": False}


def on_start(state, now):
    """The container was (re)started at ``now``."""
    return dict(fresh(), **dict(state or {}, last_start=now, next_start=None))


def on_exit(state, policy, exit_info, now):
    """(new state, decision): ("restart_at", t), ("stay_stopped", why) or ("give_up", why)."""
    policy = policy_of(policy)
    state = dict(fresh(), **(state or {}))
    state["next_start"] = None
    kind = exit_info.get("kind")
    code = exit_info.get("code")
    if kind == "stopped":
        return state, ("stay_stopped", "stopped by edgert")
    if kind == "stopped-by-container":
        return state, ("stay_stopped", "the container powered itself off (poweroff/halt "
                                       "inside): it starts again with `edgert start`")
    if state["gave_up"]:
        return state, ("give_up", _crash_loop(state, policy))
    mode = policy["mode"]
    if mode == "never":
        return state, ("stay_stopped", "restart policy is never (%s)" % _what(exit_info))
    failed = kind in ("killed", "reboot-requested") or (kind == "exited" and code != 0)
    if mode == "on-failure" and not failed:
        return state, ("stay_stopped", "exited with code 0 and the restart policy is "
                                       "on-failure")
    last = state["last_start"]
    if last is not None and now - last >= policy["min_uptime_s"]:
        state["failures"] = 0
        state["next_start"] = now
        return state, ("restart_at", now)
    state["failures"] += 1
    limit = policy["max_failures"]
    if limit and state["failures"] >= limit:
        state["gave_up"] = True
        return state, ("give_up", _crash_loop(state, policy))
    delay = min(policy["backoff_max_s"],
                policy["backoff_initial_s"] * policy["backoff_factor"] ** min(
                    state["failures"] - 1, 64))
    state["next_start"] = now + delay
    return state, ("restart_at", now + delay)


def _what(exit_info):
    if exit_info.get("kind") == "exited":
        return "exited with code %s" % exit_info.get("code")
    return exit_info.get("kind") or "exited"


def _crash_loop(state, policy):
    return ("crash-loop: %d quick failures in a row (each run shorter than %s s); start it "
            "again with `edgert start`" % (state["failures"], policy["min_uptime_s"]))
