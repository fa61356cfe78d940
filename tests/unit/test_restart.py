"""Restart policy: backoff numbers, uptime reset, give-up, exit kinds and modes."""

import pytest

from edgert.daemon import restart as P
from edgert.errors import ConfigError

QUICK = {"kind": "exited", "code": 1}


def crash_loop(policy, runs, uptime=0.5):
    """Starts and fails ``runs`` times, each run lasting ``uptime``; returns decisions."""
    state, now, decisions = {}, 1000.0, []
    for _ in range(runs):
        state = P.on_start(state, now)
        now += uptime
        state, decision = P.on_exit(state, policy, QUICK, now)
        decisions.append(decision)
        if decision[0] != "restart_at":
            break
        now = decision[1]
    return state, decisions, now


def delays(decisions, uptime=0.5):
    out, now = [], 1000.0
    for d in decisions:
        now += uptime
        if d[0] == "restart_at":
            out.append(d[1] - now)
            now = d[1]
    return out


def test_default_backoff_doubles_and_gives_up_at_the_tenth_quick_failure():
    state, decisions, _ = crash_loop({}, 20)
    assert delays(decisions) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert decisions[-1][0] == "give_up" and len(decisions) == 10
    assert state["gave_up"] and "crash-loop" in decisions[-1][1]
    assert "edgert start" in decisions[-1][1]


def test_backoff_is_capped():
    policy = {"backoff_initial_s": 5, "backoff_max_s": 30, "backoff_factor": 3,
              "max_failures": 0}
    _, decisions, _ = crash_loop(policy, 8)
    assert delays(decisions) == [5, 15, 30, 30, 30, 30, 30, 30]


def test_zero_max_failures_never_gives_up():
    _, decisions, _ = crash_loop({"max_failures": 0, "backoff_max_s": 1}, 200)
    assert all(d[0] == "restart_at" for d in decisions) and len(decisions) == 200


def test_a_long_run_resets_the_count_and_restarts_at_once():
    state, decisions, now = crash_loop({"max_failures": 0}, 5)
    assert state["failures"] == 5
    state = P.on_start(state, now)
    state, decision = P.on_exit(state, {}, QUICK, now + 10)
    assert decision == ("restart_at", now + 10) and state["failures"] == 0
    state = P.on_start(state, now + 10)
    state, decision = P.on_exit(state, {}, QUICK, now + 11)
    assert decision == ("restart_at", now + 12) and state["failures"] == 1


def test_gave_up_stays_given_up_until_reset():
    state, _, now = crash_loop({"max_failures": 3}, 5)
    state, decision = P.on_exit(state, {"max_failures": 3}, QUICK, now + 100)
    assert decision[0] == "give_up"
    state = P.on_start({}, now + 200)  # `edgert start` resets the state
    state, decision = P.on_exit(state, {"max_failures": 3}, QUICK, now + 200.5)
    assert decision[0] == "restart_at" and state["failures"] == 1


def test_reboot_restarts_at_once_after_a_good_run():
    state = P.on_start({}, 0)
    state, decision = P.on_exit(state, {}, {"kind": "reboot-requested", "code": None}, 60)
    assert decision == ("restart_at", 60) and state["failures"] == 0


def test_reboot_loop_backs_off_and_gives_up():
    state, now, seen = {}, 0.0, []
    for _ in range(20):
        state = P.on_start(state, now)
        now += 1
        state, decision = P.on_exit(state, {}, {"kind": "reboot-requested"}, now)
        seen.append(decision[0])
        if decision[0] != "restart_at":
            break
        assert decision[1] > now  # never at once: it cannot spin
        now = decision[1]
    assert seen[-1] == "give_up" and len(seen) == 10


@pytest.mark.parametrize("mode", P.MODES)
@pytest.mark.parametrize("kind", ["stopped", "stopped-by-container"])
def test_stops_never_restart(mode, kind):
    state, decision = P.on_exit(P.on_start({}, 0), {"mode": mode}, {"kind": kind}, 1)
    assert decision[0] == "stay_stopped" and state["failures"] == 0


@pytest.mark.parametrize("info,restarts", [
    ({"kind": "exited", "code": 0}, False), ({"kind": "exited", "code": 3}, True),
    ({"kind": "exited", "code": 137}, True), ({"kind": "killed", "code": None}, True),
    ({"kind": "reboot-requested", "code": None}, True),
])
def test_on_failure(info, restarts):
    _, decision = P.on_exit(P.on_start({}, 0), {"mode": "on-failure"}, info, 100)
    assert (decision[0] == "restart_at") is restarts


@pytest.mark.parametrize("kind", ["exited", "killed", "reboot-requested"])
def test_never(kind):
    _, decision = P.on_exit(P.on_start({}, 0), {"mode": "never"}, {"kind": kind, "code": 1},
                            100)
    assert decision[0] == "stay_stopped" and "never" in decision[1]


def test_always_restarts_a_clean_exit():
    _, decision = P.on_exit(P.on_start({}, 0), {}, {"kind": "exited", "code": 0}, 100)
    assert decision == ("restart_at", 100)


def test_exit_without_a_recorded_start_counts_as_quick():
    state, decision = P.on_exit({}, {}, QUICK, 100)
    assert decision == ("restart_at", 101) and state["next_start"] == 101


def test_inputs_are_not_changed():
    state = P.on_start({}, 0)
    before = dict(state)
    P.on_exit(state, {}, QUICK, 1)
    assert state == before


@pytest.mark.parametrize("policy", [{"mode": "sometimes"}, {"min_uptime_s": -1},
                                    {"backoff_factor": 0.5}, {"max_failures": "3"}])
def test_bad_policy(policy):
    with pytest.raises(ConfigError):
        P.on_exit({}, policy, QUICK, 1)


hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


@hypothesis.settings(max_examples=300, deadline=None, database=None)
@hypothesis.given(
    exits=st.lists(st.tuples(st.sampled_from(["exited", "killed", "reboot-requested"]),
                             st.integers(0, 255), st.floats(0, 9.9)), min_size=1, max_size=40),
    mode=st.sampled_from(["always", "on-failure"]),
)
def test_quick_exits_never_spin(exits, mode):
    """However a container keeps dying quickly, it never restarts at once and stops being
    restarted after max_failures (10) restarts."""
    state, now, restarts = {}, 0.0, 0
    for kind, code, uptime in exits:
        state = P.on_start(state, now)
        now += uptime
        state, decision = P.on_exit(state, {"mode": mode}, {"kind": kind, "code": code}, now)
        if decision[0] != "restart_at":
            break
        assert decision[1] > now
        restarts += 1
        now = decision[1]
    assert restarts < 10
