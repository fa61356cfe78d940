"""The daemon's network worker (edgert.net.forked.Worker): jobs in order, errors carried back,
a dead worker replaced, the idle worker let go, and one import of pyroute2 per worker."""

import os
import signal
import time

import pytest

pytest.importorskip("pyroute2", reason="needs pyroute2 (Debian package python3-pyroute2)")

PICK = "edgert.net.plan:pick_wan_address"


@pytest.fixture
def loop(native_built):
    from edgert.daemon.loop import Loop
    lp = Loop(log=lambda message: None)
    yield lp
    lp.close()


def run_until(loop, predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        loop.run_once(0.05)


def test_jobs_run_in_order_in_one_child(loop):
    from edgert.net.forked import Worker
    worker = Worker(loop, idle_s=0.3)
    got = []
    for taken in ([], ["10.77.0.128/24"], ["10.77.0.128/24", "10.77.0.129/24"]):
        worker.submit(PICK, ("10.77.0.1/24", None, taken), "job",
                      lambda ok, value: got.append((ok, value, worker.pid)))
    worker.submit(PICK, (None, None, []), "bad job", lambda ok, value: got.append((ok, value,
                                                                                   None)))
    run_until(loop, lambda: len(got) == 4)
    assert [g[1] for g in got[:3]] == ["10.77.0.128/24", "10.77.0.129/24", "10.77.0.130/24"]
    assert all(g[0] for g in got[:3]) and len({g[2] for g in got[:3]}) == 1
    ok, error, _ = got[3]
    assert not ok and str(error).startswith("bad job: ") and "has no IPv4 address" in str(error)
    pid = got[0][2]
    run_until(loop, lambda: worker.pid is None)   # let go after idle_s
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    worker.submit(PICK, ("10.77.0.1/24", None, []), "again", lambda ok, value: got.append(
        (ok, value, worker.pid)))
    run_until(loop, lambda: len(got) == 5)
    assert got[4][:2] == (True, "10.77.0.128/24") and got[4][2] != pid
    worker.close()


def test_a_dead_worker_fails_its_job_and_is_replaced(loop):
    from edgert.net.forked import Worker
    worker = Worker(loop)
    got = []
    worker.submit(PICK, ("10.77.0.1/24", None, []), "first", lambda ok, v: got.append((ok, v)))
    run_until(loop, lambda: got)
    os.kill(worker.pid, signal.SIGKILL)
    worker.submit(PICK, ("10.77.0.1/24", None, []), "second", lambda ok, v: got.append((ok, v)))
    worker.submit(PICK, ("10.77.0.1/24", None, []), "third", lambda ok, v: got.append((ok, v)))
    run_until(loop, lambda: len(got) == 3)
    assert not got[1][0] and "second: the network worker died" in str(got[1][1])
    assert got[2] == (True, "10.77.0.128/24")
    worker.close()


def test_only_network_jobs(loop):
    from edgert.net.forked import Worker
    worker = Worker(loop)
    got = []
    worker.submit("os:system", ("true",), "evil", lambda ok, v: got.append((ok, v)))
    run_until(loop, lambda: got)
    assert not got[0][0] and "is not a network job" in str(got[0][1])
    worker.close()


def test_warm_starts_the_child_ahead_and_lets_it_go_when_idle(loop):
    from edgert.net.forked import Worker
    worker = Worker(loop, idle_s=0.3)
    worker.warm()
    pid = worker.pid
    assert pid is not None
    got = []
    worker.submit(PICK, ("10.77.0.1/24", None, []), "job", lambda ok, v: got.append(
        (ok, v, worker.pid)))
    run_until(loop, lambda: got)
    assert got == [(True, "10.77.0.128/24", pid)]
    run_until(loop, lambda: worker.pid is None)
