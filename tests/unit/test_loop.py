"""The daemon's event loop: timers, readiness callbacks, signals, and errors that do not kill it."""

import os
import signal
import socket

import pytest

from edgert.daemon.loop import Loop


@pytest.fixture
def loop():
    logged = []
    lp = Loop(log=logged.append)
    lp.logged = logged
    yield lp
    lp.close()


def run_until(loop, predicate, timeout=5.0):
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in %s s" % timeout
        loop.run_once(timeout=0.05)


def test_timers_run_in_deadline_order_then_call_order(loop):
    order = []
    now = loop.time()
    loop.call_at(now + 0.03, order.append, "c")
    loop.call_later(0.01, order.append, "a")
    loop.call_at(now + 0.02, order.append, "b1")
    loop.call_at(now + 0.02, order.append, "b2")
    loop.call_soon(order.append, "soon")
    loop.call_later(0.04, loop.stop)
    loop.run()
    assert order == ["soon", "a", "b1", "b2", "c"]
    assert loop.time() - now >= 0.04


def test_cancelled_timer_does_not_run_and_handles_run_once(loop):
    ran = []
    timer = loop.call_later(0.01, ran.append, 1)
    soon = loop.call_soon(ran.append, 2)
    timer.cancel()
    soon.cancel()
    kept = loop.call_soon(ran.append, 3)
    loop.call_later(0.03, loop.stop)
    loop.run()
    assert ran == [3]
    kept.cancel()  # after it ran: harmless


def test_heap_is_rebuilt_when_cancelled_timers_pile_up(loop):
    timers = [loop.call_later(3600, lambda: None) for _ in range(200)]
    for timer in timers[:150]:
        timer.cancel()
    loop.run_once(timeout=0)
    assert len(loop._timers) == 50


def test_call_soon_from_a_callback_runs_in_the_next_iteration(loop):
    seen = []

    def again(n):
        seen.append(n)
        if n < 3:
            loop.call_soon(again, n + 1)
    loop.call_soon(again, 0)
    loop.run_once(timeout=0)
    assert seen == [0]
    loop.run_once(timeout=0)
    assert seen == [0, 1]


def test_exceptions_are_logged_and_the_loop_goes_on(loop):
    ran = []

    def broken():
        raise ValueError("kaputt")
    loop.call_soon(broken)
    loop.call_soon(ran.append, "after")
    loop.call_later(0.01, loop.stop)
    loop.run()
    assert ran == ["after"]
    assert len(loop.logged) == 1
    assert "broken failed: ValueError: kaputt (" in loop.logged[0]
    assert "test_loop.py:" in loop.logged[0]


def test_reader_and_writer(loop):
    a, b = socket.socketpair()
    got = []

    def on_read(fd):
        got.append(os.read(fd, 100))
    loop.add_reader(a.fileno(), on_read)
    writable = []
    loop.add_writer(b.fileno(), writable.append)
    loop.run_once(timeout=0.1)
    assert writable == [b.fileno()] and got == []
    loop.remove_writer(b.fileno())
    b.send(b"hello")
    run_until(loop, lambda: got)
    assert got == [b"hello"]
    loop.remove_reader(a.fileno())
    b.send(b"more")
    loop.run_once(timeout=0.05)
    assert got == [b"hello"]
    a.close()
    b.close()


def test_hangup_reaches_the_reader(loop):
    a, b = socket.socketpair()
    events = []

    def on_read(fd):
        data = os.read(fd, 100)
        events.append(data)
        if not data:
            loop.remove_reader(fd)
    loop.add_reader(a.fileno(), on_read)
    b.close()
    run_until(loop, lambda: events)
    assert events == [b""]
    a.close()


def test_an_fd_closed_while_registered_is_dropped_with_a_log_line(loop):
    r, w = os.pipe()
    loop.add_reader(r, lambda fd: None)
    os.close(r)
    loop.run_once(timeout=0.1)
    assert any("fd %d was closed" % r in line for line in loop.logged)
    assert r not in loop._readers
    os.close(w)


def test_signal_callbacks_run_in_the_loop(loop):
    got = []
    in_handler = []

    def on_usr1(signum):
        got.append(signum)
        loop.stop()
    old = signal.getsignal(signal.SIGUSR1)
    loop.on_signal(signal.SIGUSR1, on_usr1)
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(5, in_handler.append, "timeout")
    loop.run()
    assert got == [signal.SIGUSR1] and not in_handler
    # two signals before the loop looks: the callback runs once per kind
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR1)
    loop.run_once(timeout=1)
    assert got == [signal.SIGUSR1, signal.SIGUSR1]
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == old
    assert signal.set_wakeup_fd(-1) == -1


def test_signal_wakes_a_poll_without_timers(loop):
    woke = []
    loop.on_signal(signal.SIGUSR2, woke.append)
    pid = os.getpid()
    child = os.fork()
    if child == 0:
        import time
        time.sleep(0.1)
        os.kill(pid, signal.SIGUSR2)
        os._exit(0)
    loop.run_once()  # no timers, no fds ready: only the signal can end this wait
    os.waitpid(child, 0)
    assert woke == [signal.SIGUSR2]
