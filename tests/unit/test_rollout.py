"""The rollout step machine: plans, every failure kind, every recover() case, and a
property test over random results and crashes against a model of the container."""

import copy
import json

import pytest

from edgert.daemon import rollout as R
from edgert.errors import ConfigError, StateError

OK = ("ok",)


def err(reason="boom", retryable=False):
    return ("error", reason, retryable)


def run(record, results, now=0):
    """Feeds ``results`` one per step; returns (record, actions seen, last now)."""
    actions = []
    for result in results:
        actions.append(R.action(record))
        if record["retry_at"] is not None:
            now = max(now, record["retry_at"])
        now += 1
        record = R.advance(record, result, now)
    return record, actions, now


def steps_until_done(record, now=0, limit=30):
    seen = []
    while not R.finished(record):
        assert len(seen) < limit, seen
        seen.append(record["step"])
        now = max(now, record["retry_at"] or 0) + 1
        record = R.advance(record, OK, now)
    return record, seen


def observed(version=None, exists=None):
    return {"running_version": version,
            "container_exists": version is not None if exists is None else exists}


def at_step(record, step, now=0):
    """Advances with OK results until ``step`` is current."""
    while record["step"] != step:
        now = max(now, record["retry_at"] or 0) + 1
        record = R.advance(record, OK, now)
    return record


# -- plans ------------------------------------------------------------------------------

def test_download_then_stop_happy_path():
    r = R.begin(3, 4, "download-then-stop", 100, 7)
    r, seen = steps_until_done(r, 100)
    assert seen == ["fetch", "prepare", "stop_old", "start_new", "watch", "commit"]
    assert r["outcome"] == "committed" and r["good_version"] == 4
    assert R.action(r) == ("none",)
    assert R.meant_to_run(r) == 4


def test_stop_then_download_plan():
    r = R.begin(3, 4, "stop-then-download", 0, 1)
    _, seen = steps_until_done(r)
    assert seen == ["stop_old", "fetch", "prepare", "start_new", "watch", "commit"]


@pytest.mark.parametrize("strategy", sorted(R.STRATEGIES))
def test_first_deployment_has_no_stop(strategy):
    r = R.begin(None, 1, strategy, 0, 1)
    r, seen = steps_until_done(r)
    assert "stop_old" not in seen and r["good_version"] == 1


def test_actions_carry_versions():
    r = R.begin(3, 4, "download-then-stop", 0, 1)
    r, actions, _ = run(r, [OK] * 6)
    assert actions == [("fetch", 4), ("prepare", 4), ("stop", 3), ("start", 4, True),
                       ("watch", 4, 4), ("commit", 4)]


def test_first_start_needs_no_cleanup():
    r = at_step(R.begin(None, 1, "download-then-stop", 0, 1), "start_new")
    assert R.action(r) == ("start", 1, False)


def test_watch_window_starts_when_the_start_succeeds():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "start_new", 10)
    r = R.advance(r, OK, 50)
    assert R.action(r) == ("watch", 4, 50)


def test_records_are_json_and_inputs_never_change():
    r = R.begin(3, 4, "download-then-stop", 0, 1)
    frozen = copy.deepcopy(r)
    r2 = R.advance(r, err("net", True), 1)
    R.recover(r2, observed(3), 2)
    assert r == frozen
    assert json.loads(json.dumps(r2)) == r2


def test_bad_begin():
    with pytest.raises(ConfigError):
        R.begin(1, 2, "hand-over", 0, 1)
    with pytest.raises(StateError):
        R.begin(2, 2, "download-then-stop", 0, 1)


# -- illegal transitions -----------------------------------------------------------------

def test_result_for_the_wrong_step():
    r = R.begin(3, 4, "download-then-stop", 0, 1)
    with pytest.raises(StateError, match="stale"):
        R.advance(r, OK, 1, step="watch")
    assert R.advance(r, OK, 1, step="fetch")["step"] == "prepare"


def test_result_after_the_end():
    r, _ = steps_until_done(R.begin(3, 4, "download-then-stop", 0, 1))
    with pytest.raises(StateError, match="already ended"):
        R.advance(r, OK, 99)


@pytest.mark.parametrize("result", [("okay",), ("error", "x"), ("error", 1, True), ()])
def test_malformed_results(result):
    with pytest.raises(StateError):
        R.advance(R.begin(3, 4, "download-then-stop", 0, 1), result, 1)


def test_result_before_the_retry_time():
    r = R.advance(R.begin(3, 4, "download-then-stop", 0, 1), err("net", True), 10)
    with pytest.raises(StateError, match="waits"):
        R.advance(r, OK, r["retry_at"] - 1)


# -- fetch and prepare failures ------------------------------------------------------------

def test_retryable_fetch_waits_with_backoff_and_old_running():
    r = R.begin(3, 4, "download-then-stop", 0, 1)
    delays = []
    now = 0
    for _ in range(9):
        r = R.advance(r, err("WAN down", True), now)
        assert r["step"] == "fetch" and r["failed_version"] is None
        assert R.supervised_version(r) == 3 and R.meant_to_run(r) == 3
        delays.append(r["retry_at"] - now)
        now = r["retry_at"]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    r = R.advance(r, OK, now)
    assert r["step"] == "prepare" and r["fetch_failures"] == 0


def test_retryable_fetch_after_stop_restarts_old_then_retries_later():
    r = at_step(R.begin(3, 4, "stop-then-download", 0, 1), "fetch")
    r = R.advance(r, err("registry 503", True), 10)
    assert R.action(r) == ("start", 3, True)
    assert R.meant_to_run(r) == 3 and r["failed_version"] is None
    r = R.advance(r, OK, 11)
    assert r["step"] == "stop_old" and r["retry_at"] == 40
    assert R.supervised_version(r) == 3
    with pytest.raises(StateError):
        R.advance(r, OK, 39)
    r = R.advance(r, OK, 40)
    r = R.advance(r, err("still down", True), 41)
    assert r["step"] == "start_old" and r["hold"][1] == 41 + 60


def test_retryable_prepare_postpones_too():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "prepare")
    r = R.advance(r, err("no space left on device", True), 5)
    assert r["step"] == "prepare" and r["retry_at"] == 35 and r["failed_version"] is None


@pytest.mark.parametrize("step,reason", [("fetch", "manifest unknown (404)"),
                                         ("fetch", "no variant for arm64"),
                                         ("prepare", "layer digest mismatch")])
def test_permanent_fetch_or_prepare_error_fails_with_old_running(step, reason):
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), step)
    r = R.advance(r, err(reason), 5)
    assert R.action(r) == ("mark_failed", 4, "%s: %s" % (step, reason))
    r, seen = steps_until_done(r, 5)
    assert seen == ["mark_failed"]
    assert r["outcome"] == "failed" and r["good_version"] == 3 and r["failed_version"] == 4


def test_permanent_fetch_error_after_stop_brings_old_back():
    r = at_step(R.begin(3, 4, "stop-then-download", 0, 1), "fetch")
    r = R.advance(r, err("unauthorized"), 5)
    r, seen = steps_until_done(r, 5)
    assert seen == ["mark_failed", "start_old", "watch_old"]
    assert r["outcome"] == "failed" and r["good_version"] == 3


def test_first_deployment_fetch_failure_runs_nothing():
    r = R.begin(None, 1, "download-then-stop", 0, 1)
    r = R.advance(r, err("404"), 1)
    r, seen = steps_until_done(r)
    assert seen == ["mark_failed"] and r["outcome"] == "failed"
    assert R.meant_to_run(r) is None


def test_first_deployment_retryable_fetch_waits():
    r = R.advance(R.begin(None, 1, "stop-then-download", 0, 1), err("net", True), 1)
    assert r["step"] == "fetch" and r["retry_at"] == 31 and R.supervised_version(r) is None


# -- start and watch failures: rollback ---------------------------------------------------

@pytest.mark.parametrize("step", ["start_new", "watch"])
def test_new_version_failure_rolls_back(step):
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), step)
    r = R.advance(r, err("unhealthy"), 10)
    assert R.meant_to_run(r) == 3
    r, actions, _ = run(r, [OK] * 4, 10)
    assert actions[0][:2] == ("mark_failed", 4)
    assert [a[:2] for a in actions[1:]] == [("stop", 4), ("start", 3), ("watch", 3)]
    assert actions[2][2] is True  # the failed start's container is deleted first
    assert r["outcome"] == "rolled-back" and r["good_version"] == 3
    assert r["failed_version"] == 4


def test_mark_failed_is_the_first_rollback_step():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch")
    r = R.advance(r, err("probe failed"), 10)
    assert r["step"] == "mark_failed" and r["failed_version"] == 4
    assert "stop_new" in r["next"] and r["next"].index("stop_new") < r["next"].index("start_old")


@pytest.mark.parametrize("step", ["start_new", "watch"])
def test_first_deployment_failure_leaves_instance_stopped(step):
    r = at_step(R.begin(None, 1, "download-then-stop", 0, 1), step)
    r = R.advance(r, err("exit 1"), 10)
    r, seen = steps_until_done(r, 10)
    assert seen == ["mark_failed", "stop_new"]
    assert r["outcome"] == "failed" and R.meant_to_run(r) is None


def test_old_version_that_will_not_start_is_retried_degraded():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch")
    r = R.advance(r, err("unhealthy"), 10)
    r = at_step(r, "start_old", 10)
    now = 20
    for n in range(1, 8):
        r = R.advance(r, err("mount failed"), now)
        assert r["step"] == "start_old" and r["degraded"]
        assert r["retry_at"] - now == min(300, 5 * 2 ** (n - 1))
        assert R.supervised_version(r) is None  # nothing may start the failed version
        assert "DEGRADED" in R.describe(r, now)
        now = r["retry_at"]
    r = R.advance(r, OK, now)
    assert not r["degraded"] and r["step"] == "watch_old"


def test_unhealthy_old_version_ends_the_rollback_degraded():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch")
    r = R.advance(r, err("unhealthy"), 10)
    r = at_step(r, "watch_old", 10)
    r = R.advance(r, err("old unhealthy too"), 30)
    assert r["outcome"] == "rolled-back" and r["degraded"] and r["good_version"] == 3


@pytest.mark.parametrize("step", ["stop_old", "commit", "mark_failed", "stop_new"])
def test_other_step_errors_retry_the_step(step):
    r = R.begin(3, 4, "download-then-stop", 0, 1)
    if step in ("mark_failed", "stop_new"):
        r = R.advance(at_step(r, "watch"), err("unhealthy"), 5)
    r = at_step(r, step, 5)
    r = R.advance(r, err("EBUSY", True), 10)
    assert r["step"] == step and r["retry_at"] == 15
    r = R.advance(r, err("EBUSY", False), 15)
    assert r["step"] == step and r["retry_at"] == 25 and r["failed_version"] in (None, 4)


def test_failed_version_never_started_again_by_the_record():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch")
    r = R.advance(r, err("unhealthy"), 10)
    now = 10
    while not R.finished(r):
        assert R.action(r)[:2] != ("start", 4)
        now = max(now, r["retry_at"] or 0) + 1
        r = R.advance(r, err("x", True) if r["step"] == "start_old" and now < 40 else OK, now)
        r = R.recover(r, observed(None), now) if now % 3 == 0 and not R.finished(r) else r


# -- recover -------------------------------------------------------------------------------

@pytest.mark.parametrize("step", ["fetch", "prepare"])
def test_recover_fetch_prepare_redo(step):
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), step)
    r2 = R.recover(r, observed(3), 50)
    assert r2["step"] == step and R.action(r2) == R.action(r)


@pytest.mark.parametrize("step", ["fetch", "prepare"])
def test_recover_fetch_after_power_loss_restarts_old_first(step):
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), step)
    r = R.recover(r, observed(None), 50)
    assert R.action(r) == ("start", 3, True)
    r = R.advance(r, OK, 51)
    assert r["step"] == step


def test_recover_stop_then_download_fetch_with_nothing_running_redoes():
    r = at_step(R.begin(3, 4, "stop-then-download", 0, 1), "fetch")
    assert R.recover(r, observed(None, True), 50)["step"] == "fetch"


def test_recover_stop_then_download_fetch_with_old_running_stops_it():
    r = at_step(R.begin(3, 4, "stop-then-download", 0, 1), "fetch")
    r = R.recover(r, observed(3), 50)
    assert R.action(r) == ("stop", 3) and r["next"][0] == "fetch"


def test_recover_stop_old_still_running_redoes_stop():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "stop_old")
    assert R.action(R.recover(r, observed(3), 50)) == ("stop", 3)


def test_recover_stop_old_already_stopped_moves_on():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "stop_old")
    r = R.recover(r, observed(None, True), 50)
    assert R.action(r) == ("start", 4, True)


def test_recover_start_new_running_goes_to_a_fresh_watch():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "start_new")
    r = R.recover(r, observed(4), 500)
    assert R.action(r) == ("watch", 4, 500) and r["interruptions"] == 1


def test_recover_start_new_not_running_redoes_start_deleting_leftover():
    r = at_step(R.begin(None, 4, "download-then-stop", 0, 1), "start_new")
    assert R.action(r) == ("start", 4, False)
    r = R.recover(r, observed(None, True), 500)
    assert R.action(r) == ("start", 4, True)


def test_recover_start_new_with_old_running_stops_old_first():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "start_new")
    r = R.recover(r, observed(3), 500)
    assert R.action(r) == ("stop", 3) and r["next"][0] == "start_new"


def test_recover_watch_restarts_the_window():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch")
    r = R.recover(r, observed(4), 700)
    assert R.action(r) == ("watch", 4, 700) and r["interruptions"] == 1


def test_recover_watch_after_power_loss_starts_new_again():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch")
    r = R.recover(r, observed(None), 700)
    assert R.action(r) == ("start", 4, True) and r["next"][0] == "watch"


def test_three_interrupted_watches_roll_back():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch")
    now = 10
    for _ in range(2):
        r = R.recover(r, observed(None), now)  # power loss right after starting
        r = at_step(r, "watch", now)
        now += 10
    assert r["outcome"] is None and r["interruptions"] == 2
    r = R.recover(r, observed(None), now)
    assert r["step"] == "mark_failed" and "interrupted 3 times" in r["reason"]
    r, seen = steps_until_done(r, now)
    assert seen == ["mark_failed", "stop_new", "start_old", "watch_old"]
    assert r["outcome"] == "rolled-back"


def test_recover_commit_redoes_and_starts_new_if_needed():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "commit")
    assert R.action(R.recover(r, observed(4), 9)) == ("commit", 4)
    r = R.recover(r, observed(None), 9)
    assert R.action(r) == ("start", 4, True) and r["next"] == ["commit"]


@pytest.mark.parametrize("step,seen_running,first", [
    ("mark_failed", 4, "mark_failed"), ("mark_failed", None, "mark_failed"),
    ("stop_new", 4, "stop_new"), ("stop_new", None, "start_old"),
    ("start_old", None, "start_old"), ("start_old", 3, "watch_old"),
    ("start_old", 4, "stop_new"), ("watch_old", 3, "watch_old"), ("watch_old", None, "start_old"),
])
def test_recover_during_rollback_continues(step, seen_running, first):
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch")
    r = at_step(R.advance(r, err("unhealthy"), 5), step, 5)
    r = R.recover(r, observed(seen_running), 60)
    assert r["step"] == first and r["goal"] == "rolled-back"
    r, seen = steps_until_done(r, 60)
    assert r["outcome"] == "rolled-back" and r["good_version"] == 3
    assert "start_new" not in seen


def test_recover_stray_version_is_stopped():
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "start_new")
    r = R.recover(r, observed(9), 5)
    assert R.action(r) == ("stop", 9)


def test_recover_waiting_fetch_keeps_waiting_with_old_running():
    r = R.advance(R.begin(3, 4, "download-then-stop", 0, 1), err("net", True), 1000)
    r = R.recover(r, observed(3), 1010)
    assert r["step"] == "fetch" and r["retry_at"] == 1030


def test_recover_waiting_fetch_after_power_loss_starts_old_then_waits():
    r = R.advance(R.begin(3, 4, "download-then-stop", 0, 1), err("net", True), 1000)
    r = R.recover(r, observed(None), 1010)
    assert R.action(r) == ("start", 3, True) and r["retry_at"] is None
    r = R.advance(r, OK, 1011)
    assert r["step"] == "fetch" and r["retry_at"] == 1030


def test_recover_held_stop_after_power_loss_restarts_old():
    r = at_step(R.begin(3, 4, "stop-then-download", 0, 1), "fetch")
    r = R.advance(R.advance(r, err("net", True), 10), OK, 11)
    assert r["step"] == "stop_old" and r["retry_at"] == 40
    r = R.recover(r, observed(None), 12)
    assert R.action(r) == ("start", 3, True)
    r = R.advance(r, OK, 13)
    assert r["step"] == "stop_old" and r["retry_at"] == 40


def test_recover_cuts_waits_after_a_clock_restart():
    r = R.advance(R.begin(3, 4, "download-then-stop", 0, 1), err("net", True), 90000)
    r = R.recover(r, observed(3), 5)  # monotonic clock after a reboot
    assert r["retry_at"] == 35


def test_recover_finished_record_is_unchanged():
    r, _ = steps_until_done(R.begin(3, 4, "download-then-stop", 0, 1))
    assert R.recover(r, observed(None), 9) == r


# -- helpers ---------------------------------------------------------------------------------

def instance(**kw):
    doc = {"current_version": 3, "failed_versions": [], "rollout": None, "override": False}
    doc.update(kw)
    return doc


def test_pending_target():
    assert R.pending_target(instance(), 4, True, 0)
    assert not R.pending_target(instance(), 3, True, 0)
    assert not R.pending_target(instance(), None, True, 0)
    assert not R.pending_target(instance(failed_versions=[4]), 4, True, 0)
    assert not R.pending_target(instance(), 4, False, 0)
    assert R.pending_target(instance(override=True), 4, False, 0)
    live = R.begin(3, 5, "download-then-stop", 0, 1)
    assert not R.pending_target(instance(rollout=live), 4, True, 0)
    done = dict(steps_until_done(live)[0], retry_at=100)
    assert not R.pending_target(instance(rollout=done), 5, True, 50)
    assert R.pending_target(instance(rollout=done), 5, True, 100)
    assert R.pending_target(instance(rollout=done), 6, True, 50)


def test_abandon_a_waiting_fetch():
    r = R.advance(R.begin(3, 4, "download-then-stop", 0, 1), err("net", True), 1)
    r = R.abandon(r, 2, "target changed to version 5")
    assert r["outcome"] == "abandoned" and r["good_version"] == 3 and R.meant_to_run(r) == 3
    with pytest.raises(StateError):
        R.abandon(at_step(R.begin(3, 4, "download-then-stop", 0, 1), "watch"), 2, "x")


def test_supervised_version_follows_ownership():
    r = R.begin(3, 4, "download-then-stop", 0, 1)
    assert R.supervised_version(r) == 3
    assert R.supervised_version(at_step(r, "stop_old")) is None
    assert R.supervised_version(at_step(r, "commit")) == 4


def test_describe():
    r = R.begin(3, 4, "download-then-stop", 0, 12)
    assert R.describe(r) == ("rollout 12: version 3 -> 4 (download-then-stop): at fetch, then "
                             "prepare, stop_old, start_new, watch, commit")
    r = R.advance(r, err("WAN down", True), 10)
    assert "retry in 25s" in R.describe(r, 15) and "last error: fetch: WAN down" in R.describe(r)
    r = R.advance(at_step(r, "watch", 40), err("probe failed 3 times"), 99)
    assert "(rolling back)" in R.describe(r)
    r, _ = steps_until_done(r, 99)
    assert R.describe(r) == ("rollout 12: version 3 -> 4 (download-then-stop): rolled-back, "
                             "version 3 runs\n  version 4 failed: watch: probe failed 3 times")
    for line in R.describe(r).splitlines():
        assert len(line) <= 100


# -- property: random results and crashes against a model of the container ------------------

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

EVENT = st.one_of(
    st.just(("ok",)),
    st.tuples(st.just("error"), st.sampled_from(["net", "bad"]), st.booleans()),
    st.tuples(st.just("crash"), st.booleans(), st.booleans()),  # (power loss?, step ran?)
)


class World:
    """One container slot: the running version and whether a container exists."""

    def __init__(self, running):
        self.running, self.exists = running, running is not None
        self.started = []

    def apply(self, action, ok):
        kind = action[0]
        if kind == "stop":
            assert self.running in (None, action[1]), (action, self.running)
            if ok:
                self.running = None
        elif kind == "start":
            assert self.running is None, "start %s while %s runs" % (action[1], self.running)
            assert action[2] or not self.exists, "start over a leftover container"
            self.exists = True
            self.started.append(action[1])
            if ok:
                self.running = action[1]
        elif kind == "watch":
            assert self.running == action[1], (action, self.running)

    def power_loss(self):
        self.running, self.exists = None, False


def check(record, failed_marked):
    meant = R.meant_to_run(record)
    assert meant in (record["from_version"], record["to_version"])
    if meant is None:
        assert record["from_version"] is None and (
            record["goal"] != "committed" or record["outcome"] == "failed")
    assert record["outcome"] in (None,) + R.OUTCOMES
    if failed_marked:
        assert meant != record["to_version"]
        assert R.supervised_version(record) != record["to_version"]
    json.dumps(record)


@hypothesis.settings(max_examples=400, deadline=None, database=None)
@hypothesis.given(
    from_version=st.sampled_from([None, 3]),
    strategy=st.sampled_from(sorted(R.STRATEGIES)),
    events=st.lists(EVENT, max_size=25),
)
def test_random_results_and_crashes_keep_one_version_meant(from_version, strategy, events):
    record = R.begin(from_version, 4, strategy, 0, 1)
    world = World(from_version)
    now = 0
    failed_marked = False
    events = list(events)
    for _ in range(200):
        check(record, failed_marked)
        if R.finished(record):
            break
        now = max(now, record["retry_at"] or 0) + 1
        act = R.action(record)
        event = events.pop(0) if events else ("ok",)
        if act[0] == "mark_failed":
            failed_marked = True
        if failed_marked:
            assert act[:2] != ("start", 4), "the failed version is started again"
        if event[0] == "crash":
            power_loss, ran = event[1], event[2]
            if ran:
                world.apply(act, True)
            if power_loss:
                world.power_loss()
            record = R.recover(record, {"running_version": world.running,
                                        "container_exists": world.exists}, now)
            continue
        world.apply(act, event[0] == "ok")
        if act[0] == "watch" and world.running != act[1]:
            event = ("error", "exited", False)
        record = R.advance(record, tuple(event), now)
    else:
        pytest.fail("rollout never finished: %s" % R.describe(record))
    check(record, failed_marked)
    assert world.running == record["good_version"], R.describe(record)
    if record["outcome"] == "committed":
        assert not failed_marked and record["good_version"] == 4


def test_a_host_that_lacks_something_does_not_fail_the_version():
    """start_new failed for want of a bridge (retryable): no version is marked failed; the
    old version comes back and the whole plan runs again later; an operator's start retries
    at once."""
    r = at_step(R.begin(3, 4, "download-then-stop", 0, 1), "start_new", 10)
    r = R.advance(r, err("host bridge br0 does not exist", True), 10)
    assert r["failed_version"] is None and r["goal"] == "committed"
    assert R.action(r) == ("start", 3, True) and r["hold"][0] == "stop_old"
    r, actions, _ = run(r, [OK], 10)
    assert actions[0][:2] == ("start", 3)
    assert r["step"] == "fetch"  # the whole plan again, its stop_old held until retry_at
    first = at_step(R.begin(None, 1, "download-then-stop", 0, 1), "start_new", 10)
    first = R.advance(first, err("no free subnet", True), 10)
    assert first["step"] == "start_new" and first["retry_at"] == 40
    assert "last error: start_new: no free subnet" in R.describe(first, 10)
    now = R.retry_now(first, 12)
    assert now["retry_at"] == 12 and first["retry_at"] == 40
    assert R.action(now) == ("start", 1, True)
    done = R.advance(now, OK, 12)
    assert done["step"] == "watch"
    assert R.retry_now(done, 13) is done


def test_history_entries_get_their_wall_clock_time_once():
    from edgert.daemon import orchestra
    rec = R.begin(1, 2, "download-then-stop", 100.0, 1)
    first = orchestra.stamped(rec)
    assert len(first["history"]) == 1 and len(first["history"][0]) == 4
    assert rec["history"][0] == [100.0, "begin", rec["history"][0][2]]  # not changed in place
    later = orchestra.stamped(R.advance(first, OK, 105.0))
    assert [len(h) for h in later["history"]] == [4] * len(later["history"])
    assert later["history"][0] == first["history"][0]  # an old stamp stays
