"""The daemon's event loop: one thread, ``select.poll``, a timer heap, signals through a pipe.

Callbacks run one at a time. A callback that raises is logged through ``log`` and the loop
goes on: one broken connection or timer must not take the daemon down. Signals are caught by
a Python handler that only records them; ``signal.set_wakeup_fd`` makes ``poll`` return, and
the recorded signals' callbacks then run in the loop like any other callback.
"""

import collections
import heapq
import os
import select
import signal
import sys
import time

_READ_EVENTS = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_WRITE_EVENTS = select.POLLOUT | select.POLLHUP | select.POLLERR


def _stderr_log(message):
    sys.stderr.write("edgertd: %s\n" % message)
    sys.stderr.flush()


def describe_exception(exc):
    """One line for the log: type, message and where it was raised (no traceback module)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = ""
    if tb is not None:
        where = " (%s:%d)" % (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
    return "%s: %s%s" % (type(exc).__name__, exc, where)


class Timer:
    """A scheduled callback; ``cancel()`` before it runs drops it."""

    __slots__ = ("when", "callback", "args", "cancelled", "_heap_owner")

    def __init__(self, when, callback, args, heap_owner=None):
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False
        self._heap_owner = heap_owner  # the Loop while the timer sits in its heap

    def cancel(self):
        if not self.cancelled and self._heap_owner is not None:
            self._heap_owner._cancelled_in_heap += 1
        self.cancelled = True
        self.callback, self.args = None, ()


class Loop:
    def __init__(self, log=None):
        self.log = log or _stderr_log
        self._poll = select.poll()
        self._readers = {}
        self._writers = {}
        self._timers = []          # heap of (when, sequence, Timer)
        self._sequence = 0         # keeps equal deadlines in call order
        self._cancelled_in_heap = 0
        self._ready = collections.deque()
        self._stopping = False
        self._signal_callbacks = {}
        self._old_handlers = {}
        self._caught = {}          # signum -> True, set by the Python-level handler
        self._wakeup_r = self._wakeup_w = None
        self._old_wakeup_fd = None

    def time(self):
        return time.monotonic()

    # file descriptors

    def add_reader(self, fd, callback):
        self._readers[fd] = callback
        self._update(fd)

    def add_writer(self, fd, callback):
        self._writers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd):
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def remove_writer(self, fd):
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def _update(self, fd):
        mask = (select.POLLIN if fd in self._readers else 0) | (
            select.POLLOUT if fd in self._writers else 0)
        if mask:
            self._poll.register(fd, mask)  # also modifies an existing registration
        else:
            try:
                self._poll.unregister(fd)
            except KeyError:
                pass

    # timers

    def call_at(self, when, callback, *args):
        timer = Timer(when, callback, args, self)
        self._sequence += 1
        heapq.heappush(self._timers, (when, self._sequence, timer))
        return timer

    def call_later(self, delay, callback, *args):
        return self.call_at(self.time() + delay, callback, *args)

    def call_soon(self, callback, *args):
        timer = Timer(0, callback, args)
        self._ready.append(timer)
        return timer

    # signals

    def on_signal(self, signum, callback):
        """Runs ``callback(signum)`` in the loop after ``signum`` arrives."""
        if self._wakeup_r is None:
            self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wakeup_w,
                                                       warn_on_full_buffer=False)
            self.add_reader(self._wakeup_r, self._on_wakeup)
        if signum not in self._old_handlers:
            self._old_handlers[signum] = signal.signal(signum, self._record_signal)
        self._signal_callbacks[signum] = callback

    def _record_signal(self, signum, frame):
        self._caught[signum] = True

    def _on_wakeup(self, fd):
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass
        for signum in list(self._caught):
            # a signal arriving after this pop writes the pipe again and comes back here
            self._caught.pop(signum, None)
            callback = self._signal_callbacks.get(signum)
            if callback is not None:
                self._run(callback, (signum,))

    # running

    def stop(self):
        """Makes run() return after the current iteration."""
        self._stopping = True

    def run(self):
        self._stopping = False
        while not self._stopping:
            self.run_once()

    def run_once(self, timeout=None):
        """One round: wait for I/O or a timer (at most ``timeout`` s), run what is due."""
        wait = self._next_wait()
        if timeout is not None and (wait is None or wait > timeout):
            wait = timeout
        events = self._poll.poll(None if wait is None else int(wait * 1000 + 0.999))
        for fd, event in events:
            if event & select.POLLNVAL:
                self.log("fd %d was closed while registered with the loop; dropping it" % fd)
                self._readers.pop(fd, None)
                self._writers.pop(fd, None)
                self._update(fd)
                continue
            if event & _READ_EVENTS and fd in self._readers:
                self._run(self._readers[fd], (fd,))
            # the reader may have removed or closed the fd: look again
            if event & _WRITE_EVENTS and fd in self._writers:
                self._run(self._writers[fd], (fd,))
        now = self.time()
        while self._timers and self._timers[0][0] <= now:
            timer = self._pop_timer()
            if not timer.cancelled:
                self._ready.append(timer)
        # callbacks scheduled by these run in the next iteration, so I/O is never starved
        for _ in range(len(self._ready)):
            timer = self._ready.popleft()
            if not timer.cancelled:
                callback, args = timer.callback, timer.args
                timer.cancel()  # a handle kept by the caller must not run it twice
                self._run(callback, args)

    def _next_wait(self):
        if self._ready:
            return 0
        self._drop_cancelled_timers()
        if not self._timers:
            return None
        return max(0.0, self._timers[0][0] - self.time())

    def _drop_cancelled_timers(self):
        """Cancelled timers stay in the heap until due; rebuild it when they pile up."""
        if self._cancelled_in_heap > 64 and self._cancelled_in_heap > len(self._timers) // 2:
            self._timers = [entry for entry in self._timers if not entry[2].cancelled]
            heapq.heapify(self._timers)
            self._cancelled_in_heap = 0
        while self._timers and self._timers[0][2].cancelled:
            self._pop_timer()

    def _pop_timer(self):
        timer = heapq.heappop(self._timers)[2]
        if timer.cancelled:
            self._cancelled_in_heap -= 1
        timer._heap_owner = None
        return timer

    def _run(self, callback, args):
        try:
            callback(*args)
        except Exception as e:
            self.log("callback %s failed: %s"
                     % (getattr(callback, "__qualname__", repr(callback)), describe_exception(e)))

    def close(self):
        """Restores the signal handlers and the wakeup fd the loop replaced."""
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()
        self._signal_callbacks.clear()
        if self._wakeup_r is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self.remove_reader(self._wakeup_r)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            self._wakeup_r = self._wakeup_w = None
