"""The rollout step machine: plan, advance on results, recover after a crash.

Theory of operation. A rollout moves one instance from ``from_version`` (None on a first
deployment) to ``to_version`` through named steps. The record is a plain JSON-able dict; the
orchestrator saves it before each step runs (write-ahead), asks ``action(record)`` what to
do, does it, and feeds the result to ``advance(record, result, now)``. After a crash it calls
``recover(record, observed, now)`` with what it sees, and goes on. Nothing here does I/O;
``now`` is the caller's clock (the daemon's monotonic one).

Steps and their actions::

    fetch        ("fetch", M)             download the new version's image
    prepare      ("prepare", M)           unpack / snapshot / bundle
    stop_old     ("stop", V)              stop the old container (V = from_version)
    start_new    ("start", M, leftover)   create and start M; leftover: delete a container
    start_old    ("start", V, leftover)     of this instance first if one exists
    watch        ("watch", M, started_at) health watch of the new version, window from started_at
    watch_old    ("watch", V, started_at) the same for the old version after a rollback
    commit       ("commit", M)            good_version = M
    mark_failed  ("mark_failed", M, why)  record durably that M failed on this device
    stop_new     ("stop", M)
    stop_other   ("stop", X)              a version neither old nor new was found running
    (finished)   ("none",)

Plans: download-then-stop  fetch, prepare, stop_old, start_new, watch, commit
       stop-then-download  stop_old, fetch, prepare, start_new, watch, commit (low flash)
A first deployment has no stop_old.

Results are ``("ok",)`` or ``("error", reason, retryable)``:

- fetch, retryable (WAN down, registry 5xx): never marks the version failed. The step waits
  (``retry_at``, backoff FETCH_BACKOFF) and runs again; the old version keeps running. In
  stop-then-download the old version was already stopped: the plan becomes start_old, then
  the whole plan again, its stop_old held until ``retry_at``. A prepare error flagged
  retryable (out of space, which pruning may cure) is treated the same way.
- fetch non-retryable (manifest 404, no variant for this arch, auth refused), prepare errors:
  mark_failed, then (stop-then-download) start_old and watch_old; outcome "failed".
- start_new error flagged retryable (the host lacks what the version's network or devices
  need: a bridge, an interface, a device node, a free subnet or address): the version is
  not to blame, so it is treated like a retryable fetch: the old version is started again
  and the whole plan retried at ``retry_at``; with no old version start_new waits and runs
  again.
- start_new error, unhealthy watch: mark_failed, stop_new, start_old, watch_old; outcome
  "rolled-back". With no old version: mark_failed, stop_new; outcome "failed", instance
  stopped. mark_failed comes first, so the failure is on disk before anything else starts:
  a crash during the rollback resumes the rollback, and the failed version is never started
  again by this record (target selection skips failed versions for new ones).
- start_old error (rolling back and the old version will not start): the record is
  ``degraded`` and start_old is retried with backoff STEP_BACKOFF, forever.
- watch_old unhealthy: the rollback still ends (nothing better to run), ``degraded``.
- stop, commit, mark_failed errors: the step is retried with backoff STEP_BACKOFF.
- commit: outcome "committed", ``good_version`` = M.

A step with ``retry_at`` set waits: the orchestrator runs it only when ``now >= retry_at``;
meanwhile ``supervised_version(record)`` says what its restart policy keeps alive.
"""

from ..errors import ConfigError, StateError

STRATEGIES = {
    "download-then-stop": ("fetch", "prepare", "stop_old", "start_new", "watch", "commit"),
    "stop-then-download": ("stop_old", "fetch", "prepare", "start_new", "watch", "commit"),
}
# (initial, factor, max) seconds: a down WAN is retried every hour at worst
FETCH_BACKOFF = (30, 2, 3600)
STEP_BACKOFF = (5, 2, 300)
# repeated power loss / daemon restarts while the new version starts or is watched
MAX_INTERRUPTIONS = 3
HISTORY = 16

_OLD, _NEW, _OTHER = "from_version", "to_version", "other_version"
_VERSION_OF = {
    "fetch": _NEW, "prepare": _NEW, "commit": _NEW, "mark_failed": _NEW,
    "stop_old": _OLD, "start_old": _OLD, "watch_old": _OLD,
    "stop_new": _NEW, "start_new": _NEW, "watch": _NEW, "stop_other": _OTHER,
}
_STOPS = {"stop_old", "stop_new", "stop_other"}
_STARTS = {"start_old", "start_new"}
_WATCHES = {"watch", "watch_old"}
_CONTAINER_STEPS = _STOPS | _STARTS | _WATCHES
OUTCOMES = ("committed", "rolled-back", "failed", "abandoned")  # record["outcome"] when done


# -- records ------------------------------------------------------------------------------

def begin(from_version, to_version, strategy, now, rollout_id):
    """A new rollout record, at its first step."""
    if strategy not in STRATEGIES:
        raise ConfigError("rollout strategy %r is unknown: use %s"
                          % (strategy, " or ".join(sorted(STRATEGIES))))
    if to_version is None or to_version == from_version:
        raise StateError("rollout %s: nothing to roll out from version %s to %s"
                         % (rollout_id, from_version, to_version))
    steps = _plan(strategy, from_version)
    return {
        "id": rollout_id, "strategy": strategy,
        "from_version": from_version, "to_version": to_version, "other_version": None,
        "step": steps[0], "next": steps[1:], "goal": "committed",
        "outcome": None, "good_version": None, "failed_version": None, "reason": None,
        "expect": from_version, "leftover": from_version is not None,
        "retry_at": None, "retry_delay": None, "hold": None,
        "fetch_failures": 0, "step_failures": 0, "interruptions": 0, "recoveries": 0,
        "degraded": False, "last_error": None, "watch_started_at": None,
        "started_at": now, "updated_at": now, "finished_at": None,
        "history": [[now, "begin", "%s -> %s (%s)" % (from_version, to_version, strategy)]],
    }


def _plan(strategy, from_version):
    steps = list(STRATEGIES[strategy])
    if from_version is None:
        steps.remove("stop_old")
    return steps


def finished(record):
    return record["outcome"] is not None


def action(record):
    """What the orchestrator does for the current step (see the module doc)."""
    step = record["step"]
    if step is None:
        return ("none",)
    version = record[_VERSION_OF[step]]
    if step in _STOPS:
        return ("stop", version)
    if step in _STARTS:
        return ("start", version, record["leftover"])
    if step in _WATCHES:
        return ("watch", version, record["watch_started_at"])
    if step == "mark_failed":
        return ("mark_failed", version, record["reason"])
    return (step, version)


def meant_to_run(record):
    """The version this rollout works towards having running; None only on a first
    deployment that failed (or is rolling back), where nothing can run."""
    if finished(record):
        return record["good_version"]
    if record["goal"] != "committed":
        return record["from_version"]
    if record["from_version"] is not None and "stop_old" in _remaining(record):
        return record["from_version"]
    return record["to_version"]


def supervised_version(record):
    """The version the orchestrator's restart policy keeps alive now, or None while the
    current step owns the container (a stop, start or watch that is not waiting)."""
    if finished(record):
        return record["good_version"]
    if record["step"] in _CONTAINER_STEPS and record["retry_at"] is None:
        return None
    expect = record["expect"]
    return None if expect is not None and expect == record["failed_version"] else expect


def _remaining(record):
    return ([record["step"]] if record["step"] else []) + record["next"]


# -- results ------------------------------------------------------------------------------

def advance(record, result, now, step=None):
    """The record after ``result`` of the current step; ``step`` (optional) must name it."""
    if finished(record):
        raise StateError("rollout %s already ended (%s): no step to take a result"
                         % (record["id"], record["outcome"]))
    if step is not None and step != record["step"]:
        raise StateError("rollout %s is at step %s: a result for step %s is stale"
                         % (record["id"], record["step"], step))
    if record["retry_at"] is not None and now < record["retry_at"]:
        raise StateError("rollout %s: step %s waits until %.0f, it cannot have run at %.0f"
                         % (record["id"], record["step"], record["retry_at"], now))
    r = _copy(record, now)
    r["retry_at"] = r["retry_delay"] = None
    if tuple(result) == ("ok",):
        _log(r, now, r["step"], "ok")
        return _on_ok(r, now)
    if (len(result) == 3 and result[0] == "error" and isinstance(result[1], str)
            and isinstance(result[2], bool)):
        _log(r, now, r["step"], "error: " + result[1])
        r["last_error"] = "%s: %s" % (r["step"], result[1])
        return _on_error(r, result[1], result[2], now)
    raise StateError("rollout %s: result %r is neither ('ok',) nor ('error', reason, "
                     "retryable)" % (record["id"], result))


def _on_ok(r, now):
    step = r["step"]
    r["step_failures"] = 0
    if step == "fetch":
        r["fetch_failures"] = 0
    if step in _STOPS:
        r["expect"], r["leftover"] = None, True
    elif step in _STARTS:
        r["expect"] = r[_VERSION_OF[step]]
        r["watch_started_at"] = now
        if step == "start_old":
            r["degraded"] = False
    return _next(r, now)


def _on_error(r, reason, retryable, now):
    step = r["step"]
    if step in ("fetch", "prepare") and retryable:
        return _postpone(r, now)
    if step == "start_new" and retryable:  # the host lacks something, not the version
        r["expect"], r["leftover"] = None, True
        return _postpone(r, now)
    if step in ("fetch", "prepare", "start_new", "watch"):
        if step == "start_new":
            r["expect"], r["leftover"] = None, True
        return _fail(r, "%s: %s" % (step, reason), step in ("start_new", "watch"), now)
    if step == "watch_old":
        r["degraded"] = True
        r["reason"] = "%s; then the old version was unhealthy too (%s)" % (r["reason"], reason)
        return _next(r, now)
    if step == "start_old":
        r["degraded"] = True
        r["expect"], r["leftover"] = None, True
    r["step_failures"] += 1
    _wait(r, STEP_BACKOFF, r["step_failures"], now)
    return r


def _postpone(r, now):
    """A transient fetch/prepare error: retry later, the old version running meanwhile."""
    r["fetch_failures"] += 1
    delay = backoff(FETCH_BACKOFF, r["fetch_failures"])
    if r["expect"] is None and r["from_version"] is not None:
        # stop-then-download, old already stopped: bring it back, start over later
        r["step"], r["next"] = "start_old", list(STRATEGIES[r["strategy"]])
        r["hold"] = ["stop_old", now + delay, delay]
        return r
    _wait(r, FETCH_BACKOFF, r["fetch_failures"], now)
    return r


def _fail(r, reason, new_was_started, now):
    """to_version failed: mark it, stop it if it may run, bring the old version back."""
    old = r["from_version"]
    steps = ["mark_failed"]
    if new_was_started or r["expect"] == r["to_version"]:
        steps.append("stop_new")
    if old is not None and r["expect"] != old:
        steps += ["start_old", "watch_old"]
    r["failed_version"], r["reason"] = r["to_version"], reason
    r["goal"] = "rolled-back" if new_was_started and old is not None else "failed"
    r["step"], r["next"], r["hold"] = steps[0], steps[1:], None
    r["retry_at"] = r["retry_delay"] = None
    return r


def _next(r, now):
    if r["next"]:
        r["step"] = r["next"].pop(0)
        hold = r["hold"]
        if hold is not None and hold[0] == r["step"]:
            r["retry_at"], r["retry_delay"], r["hold"] = hold[1], hold[2], None
        return r
    r["step"], r["outcome"], r["finished_at"] = None, r["goal"], now
    r["good_version"] = r["to_version"] if r["goal"] == "committed" else r["from_version"]
    _log(r, now, "end", r["outcome"])
    return r


def _wait(r, policy, failures, now):
    delay = backoff(policy, failures)
    r["retry_at"], r["retry_delay"] = now + delay, delay


def backoff(policy, failures):
    """Seconds before retry number ``failures`` (1-based): initial * factor**(n-1), capped."""
    initial, factor, cap = policy
    return min(cap, initial * factor ** min(failures - 1, 64))


def retry_now(record, now):
    """An operator's start: a step waiting for its retry (a failed pull, a host that lacked
    a bridge) runs now instead; any other record is returned as it is."""
    if finished(record) or (record["retry_at"] is None and record["hold"] is None):
        return record
    r = _copy(record, now)
    if r["retry_at"] is not None:
        r["retry_at"] = now
    if r["hold"] is not None:
        r["hold"] = [r["hold"][0], now, r["hold"][2]]
    _log(r, now, r["step"], "retry now")
    return r


def abandon(record, now, reason):
    """Ends a rollout that waits with the old version in place (a retried fetch), when the
    target changed meanwhile; StateError in any other state."""
    if (finished(record) or record["retry_at"] is None or record["goal"] != "committed"
            or record["step"] not in ("fetch", "prepare", "stop_old")
            or record["expect"] != record["from_version"]):
        raise StateError("rollout %s cannot be abandoned at step %s: let it finish"
                         % (record["id"], record["step"]))
    r = _copy(record, now)
    r["goal"], r["next"], r["retry_at"], r["retry_delay"] = "abandoned", [], None, None
    r["reason"] = reason
    return _next(r, now)


# -- crash recovery -----------------------------------------------------------------------

def recover(record, observed, now):
    """The record to continue from after a daemon restart or power loss.

    ``observed`` = {"running_version": V or None, "container_exists": bool}. Rules:

    - any step: a container that exists but should not run makes the next start delete it
      first (``leftover``); waits are cut to their own length (the monotonic clock restarts
      at boot, so an old ``retry_at`` may lie far ahead).
    - fetch, prepare, commit, mark_failed: redone (idempotent). If the version that should be
      running is not (power loss), start it first; a wrong one running is stopped first.
    - stop_X: X still running: stop again; nothing running: the stop is done, go on.
    - start_X: X running: the start is done, the watch gets a fresh window; nothing
      running: start again (deleting the leftover); another version running: stop it first.
    - watch: X running: the window starts again now; not running: start_X again first.
    - start_new and watch count ``interruptions``; at MAX_INTERRUPTIONS (a version that
      takes the device down as it starts) the new version fails and is rolled back.
    - a waiting step (``retry_at``): the version it waits with should be running; if not,
      it is started now and the step waits afterwards as before.
    Rollback steps simply continue: start_old/watch_old never give up on the old version.
    """
    if finished(record):
        return dict(record)
    running = observed.get("running_version")
    r = _copy(record, now)
    r["recoveries"] += 1
    _log(r, now, "recover", "observed %s running" % ("nothing" if running is None
                                                      else "version %s" % running))
    if observed.get("container_exists") or running is not None:
        r["leftover"] = True
    _clamp_waits(r, now)
    if r["step"] in ("start_new", "watch") and r["goal"] == "committed":
        r["interruptions"] += 1
        if r["interruptions"] >= MAX_INTERRUPTIONS:
            r["expect"] = running
            _fail(r, "%s was interrupted %d times (daemon restart or power loss)"
                  % (r["step"], r["interruptions"]), True, now)
    r["expect"] = running
    _normalize(r, running, now)
    return r


def _clamp_waits(r, now):
    if r["retry_at"] is not None:
        r["retry_at"] = min(r["retry_at"], now + r["retry_delay"])
    if r["hold"] is not None:
        r["hold"] = [r["hold"][0], min(r["hold"][1], now + r["hold"][2]), r["hold"][2]]


def _normalize(r, running, now):
    """Rewrites the plan's head so that the current step's precondition holds."""
    while True:
        step = r["step"]
        if step is None:
            return
        version = r[_VERSION_OF[step]]
        # a rollout waiting to retry with the old version in place (stop_old held)
        waiting = r["retry_at"] is not None and step == "stop_old" and r["goal"] == "committed"
        if step in _STARTS and running == version:
            _skip(r, now)
            r["expect"], r["watch_started_at"] = version, now
            continue
        if step in _STOPS and running is None and not waiting:
            _skip(r, now)
            continue
        if step in _STOPS and running is not None and not waiting:
            r["step"] = _stop_step(r, running)  # the same stop, named for what runs
            return
        if step in _WATCHES and running == version:
            r["watch_started_at"] = now
            return
        if step in _STOPS or step in _WATCHES:
            want = version
        elif step in _STARTS:
            want = None
        else:
            want = _expected_before(r)
        if running == want:
            return
        inserted = [_stop_step(r, running)] if running is not None else []
        if want is not None:
            inserted.append(_start_step(r, want))
        _insert(r, inserted)
        return


def _expected_before(r):
    """The version that should run while a fetch/prepare/commit/mark_failed step runs."""
    if r["step"] == "commit":
        return r["to_version"]
    if r["step"] == "mark_failed":
        later = _remaining(r)
        if "stop_new" in later or "start_old" in later:
            return r["expect"]  # the steps after it set the container right
        return r["from_version"]
    if r["from_version"] is not None and "stop_old" in _remaining(r) and r["goal"] == "committed":
        return r["from_version"]
    return None


def _stop_step(r, version):
    if version == r["from_version"]:
        return "stop_old"
    if version == r["to_version"]:
        return "stop_new"
    r["other_version"] = version
    return "stop_other"


def _start_step(r, version):
    return "start_old" if version == r["from_version"] else "start_new"


def _insert(r, steps):
    """Runs ``steps`` now; the current step follows, still waiting as it was."""
    if r["retry_at"] is not None:
        if r["hold"] is None:  # an older hold is kept; this wait can run at once
            r["hold"] = [r["step"], r["retry_at"], r["retry_delay"]]
        r["retry_at"] = r["retry_delay"] = None
    r["next"] = steps[1:] + [r["step"]] + r["next"]
    r["step"] = steps[0]


def _skip(r, now):
    _log(r, now, r["step"], "already done")
    r["retry_at"] = r["retry_delay"] = None
    _next(r, now)


# -- helpers for the orchestrator -----------------------------------------------------------

def pending_target(instance, target_version, window_open, now):
    """Whether to begin a rollout to ``target_version`` now.

    Yes when the target differs from the current version, has not failed on this device,
    no rollout is in progress, the update window is open (``window_open``; the caller
    folds in the instance's one-shot override) and any retry time of the last rollout to
    this target has passed.
    """
    if target_version is None or target_version == instance.get("current_version"):
        return False
    if target_version in (instance.get("failed_versions") or ()):
        return False
    last = instance.get("rollout")
    if last and not finished(last):
        return False
    if not (window_open or instance.get("override")):
        return False
    if (last and last.get("to_version") == target_version and last.get("retry_at")
            and now < last["retry_at"]):
        return False
    return True


def describe(record, now=None):
    """One or two lines for `edgert inspect`."""
    head = "rollout %s: version %s -> %s (%s)" % (
        record["id"], record["from_version"], record["to_version"], record["strategy"])
    if finished(record):
        text = "%s: %s" % (head, record["outcome"])
        if record["outcome"] == "committed":
            text += ", version %s is good" % record["to_version"]
        elif record["good_version"] is not None:
            text += ", version %s runs" % record["good_version"]
        else:
            text += ", nothing runs"
    else:
        text = "%s: at %s" % (head, record["step"])
        if record["next"]:
            text += ", then %s" % ", ".join(record["next"])
        if record["goal"] != "committed":
            text += " (rolling back)" if record["goal"] == "rolled-back" else " (failing)"
        if record["retry_at"] is not None:
            when = ("in %ds" % max(0, record["retry_at"] - now) if now is not None
                    else "after %ds" % record["retry_delay"])
            text += "; retry %s" % when
    notes = []
    if record["failed_version"] is not None:
        notes.append("version %s failed: %s" % (record["failed_version"], record["reason"]))
    elif record["reason"]:
        notes.append(record["reason"])
    if record["degraded"]:
        notes.append("DEGRADED: the old version is not running healthy")
    if record["last_error"] and not finished(record):
        notes.append("last error: %s" % record["last_error"])
    if record["interruptions"]:
        notes.append("interrupted %d time(s)" % record["interruptions"])
    return text + ("\n  " + "; ".join(notes) if notes else "")


def _copy(record, now):
    r = dict(record)
    r["next"] = list(record["next"])
    r["history"] = [list(h) for h in record["history"]]
    r["updated_at"] = now
    return r


def _log(r, now, step, what):
    r["history"].append([now, step, what])
    del r["history"][:-HISTORY]
