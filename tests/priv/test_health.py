"""Health probes against real namespaces, and the health watch on the real event loop.

tcp/http probes talk to servers in a network namespace the test creates (`unshare --net`
child); the file probe looks into a chrooted child's root, with symlink escape attempts.
Watch tests use exec probes with a fake exec and need no root.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from edgert.daemon.loop import Loop

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SERVER = r'''
import http.server, os, socket, sys, threading
os.system("ip link set lo up")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/" else 404)
        self.end_headers()
        self.wfile.write(b"hi")
    def log_message(self, *args):
        pass
def listener(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    return s
silent = listener(7001)   # accepts (the kernel does), never answers
garbage = listener(7002)  # answers with something that is not HTTP
def serve_garbage():
    while True:
        c, _ = garbage.accept()
        c.sendall(b"SSH-2.0-nothing\r\n")
        c.close()
threading.Thread(target=serve_garbage, daemon=True).start()
web = http.server.HTTPServer(("127.0.0.1", 7003), Handler)
print("ready", flush=True)
web.serve_forever()
'''


def run_until(loop, done, limit=10.0):
    end = time.monotonic() + limit
    while not done():
        assert time.monotonic() < end, "the loop did not get there in %s s" % limit
        loop.run_once(0.05)


def probe(loop, spec, target, limit=10.0):
    from edgert.daemon.health import Probe
    results = []
    Probe(loop, dict(spec), target, lambda ok, detail: results.append((ok, detail)))
    run_until(loop, lambda: results, limit)
    loop.run_once(0.01)  # a second result would show up here
    assert len(results) == 1
    return results[0]


@pytest.fixture
def loop():
    return Loop(log=lambda message: pytest.fail("loop: " + message))


@pytest.fixture
def netns_server(native_built):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs unshare (util-linux) and ip (iproute2)")
    child = subprocess.Popen(["unshare", "--net", "--", sys.executable, "-c", SERVER],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline()
        if line.strip() != b"ready":
            pytest.fail("netns server did not start: %r" % child.stderr.read())
        yield {"pid": child.pid, "exec": None}
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def own_netns():
    before = os.readlink("/proc/thread-self/ns/net")
    yield before
    assert os.readlink("/proc/thread-self/ns/net") == before


# -- tcp and http inside a network namespace --------------------------------------------------

@needs_root
def test_tcp_connects_inside_the_netns(loop, netns_server, own_netns):
    ok, detail = probe(loop, {"type": "tcp", "port": 7003, "timeout_s": 2}, netns_server)
    assert ok, detail
    assert "connection accepted" in detail


@needs_root
def test_tcp_refused(loop, netns_server, own_netns):
    ok, detail = probe(loop, {"type": "tcp", "port": 7999, "timeout_s": 2}, netns_server)
    assert not ok and "refused" in detail.lower()


@needs_root
def test_tcp_does_not_see_the_hosts_loopback(loop, netns_server, own_netns):
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen(1)
    try:
        port = host.getsockname()[1]
        ok, detail = probe(loop, {"type": "tcp", "port": port, "timeout_s": 2}, netns_server)
        assert not ok, "the probe reached the host's listener: %s" % detail
    finally:
        host.close()


@needs_root
def test_http_status_ok(loop, netns_server, own_netns):
    ok, detail = probe(loop, {"type": "http", "port": 7003, "path": "/", "timeout_s": 2},
                       netns_server)
    assert ok and "status 200" in detail, detail


@needs_root
def test_http_status_outside_the_expected_range(loop, netns_server, own_netns):
    ok, detail = probe(loop, {"type": "http", "port": 7003, "path": "/nope", "timeout_s": 2,
                              "expect_status": [200, 399]}, netns_server)
    assert not ok and "status 404 (expected 200..399)" in detail
    ok, _ = probe(loop, {"type": "http", "port": 7003, "path": "/nope", "timeout_s": 2,
                         "expect_status": [404, 404]}, netns_server)
    assert ok


@needs_root
def test_http_not_an_http_answer(loop, netns_server, own_netns):
    ok, detail = probe(loop, {"type": "http", "port": 7002, "timeout_s": 2}, netns_server)
    assert not ok and "not an HTTP answer: SSH-2.0" in detail


@needs_root
def test_http_timeout_against_a_silent_listener(loop, netns_server, own_netns):
    started = time.monotonic()
    ok, detail = probe(loop, {"type": "http", "port": 7001, "timeout_s": 0.5}, netns_server)
    took = time.monotonic() - started
    assert not ok and "no answer within 0.5 s" in detail
    assert 0.4 < took < 2.0


@needs_root
def test_probe_of_a_gone_process(loop, native_built, own_netns):
    child = subprocess.Popen(["true"])
    child.wait()
    ok, detail = probe(loop, {"type": "tcp", "port": 80, "timeout_s": 1},
                       {"pid": child.pid, "exec": None})
    assert not ok and "No such file" in detail


@needs_root
def test_loop_stays_responsive_while_probing(loop, netns_server, own_netns):
    from edgert.daemon.health import Probe
    ticks, results = [], []
    for _ in range(5):
        Probe(loop, {"type": "http", "port": 7001, "timeout_s": 0.6}, netns_server,
              lambda ok, detail: results.append(ok))

    def tick():
        ticks.append(time.monotonic())
        if len(results) < 5:
            loop.call_later(0.05, tick)
    loop.call_soon(tick)
    run_until(loop, lambda: len(results) == 5)
    assert results == [False] * 5
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.3


# -- file probe inside a container's root -------------------------------------------------------

@pytest.fixture
def chrooted(native_built):
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot)")
    top = tempfile.mkdtemp(prefix="edgert-health-")
    root = os.path.join(top, "root")
    os.makedirs(os.path.join(root, "dir", "sub"))
    with open(os.path.join(top, "secret"), "w") as f:
        f.write("host secret")
    with open(os.path.join(root, "ready"), "w") as f:
        f.write("1")
    open(os.path.join(root, "empty"), "w").close()
    os.mkfifo(os.path.join(root, "fifo"))
    links = {
        "link-abs": "/ready", "link-rel": "dir/../ready", "dir/sub/up": "../../ready",
        "escape-abs": os.path.join(top, "secret"), "escape-rel": "../secret",
        "escape-deep": "../../../../../../../../" + os.path.join(top, "secret").lstrip("/"),
        "dir/escape": "../../secret", "loop-a": "loop-b", "loop-b": "loop-a",
        "proc-escape": "/proc/1/root" + os.path.join(top, "secret"),
    }
    for name, target in links.items():
        os.symlink(target, os.path.join(root, name))
    child = subprocess.Popen([sys.executable, "-c",
                              "import os, sys, time\nos.chroot(sys.argv[1])\nos.chdir('/')\n"
                              "print('ready', flush=True)\ntime.sleep(120)\n", root],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
        yield {"pid": child.pid, "exec": None}
    finally:
        child.kill()
        child.wait()
        shutil.rmtree(top)


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch, native_built):
    from edgert import native
    if request.param == "openat2" and not native.have_openat2():
        pytest.skip("openat2 is not available on this kernel")
    if request.param == "walk":
        monkeypatch.setattr(native, "have_openat2", lambda: False)
    return request.param


@needs_root
@pytest.mark.parametrize("path", ["/ready", "ready", "/link-abs", "/link-rel", "/dir/sub/up",
                                  "/dir/../ready", "/../../ready", "/dir/sub/../../ready"])
def test_file_probe_passes_inside_the_root(loop, chrooted, resolver, path):
    ok, detail = probe(loop, {"type": "file", "path": path, "timeout_s": 2}, chrooted)
    assert ok and "1 bytes" in detail, detail


@needs_root
@pytest.mark.parametrize("path,why", [
    ("/escape-abs", "No such file"), ("/escape-rel", "No such file"),
    ("/escape-deep", "No such file"), ("/dir/escape", "No such file"),
    ("/../secret", "No such file"), ("/dir/../../secret", "No such file"),
    ("/proc-escape", "No such file"), ("/missing", "No such file"),
    ("/loop-a", "Too many levels of symbolic links"), ("/ready/x", "Not a directory"),
    ("/empty", "empty"), ("/dir", "not a regular file"), ("/fifo", "not a regular file"),
])
def test_file_probe_fails_and_never_escapes(loop, chrooted, resolver, path, why):
    ok, detail = probe(loop, {"type": "file", "path": path, "timeout_s": 2}, chrooted)
    assert not ok and why in detail, detail
    assert "host secret" not in detail


@needs_root
def test_file_probe_sees_the_containers_own_mounts(loop, native_built, tmp_path, own_netns):
    """A tmpfs mounted in the child's mount namespace only: invisible from the host, found by
    the probe through /proc/<pid>/root."""
    if not shutil.which("unshare") or not shutil.which("mount"):
        pytest.skip("needs unshare and mount (util-linux)")
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    script = ("import os, sys, time\n"
              "assert os.system('mount -t tmpfs tmpfs %s/run' % sys.argv[1]) == 0\n"
              "open(sys.argv[1] + '/run/ready', 'w').write('up')\n"
              "os.chroot(sys.argv[1])\nprint('ready', flush=True)\ntime.sleep(120)\n")
    child = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--",
                              sys.executable, "-c", script, str(root)], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"ready"
        assert not (root / "run" / "ready").exists()
        ok, detail = probe(loop, {"type": "file", "path": "/run/ready", "timeout_s": 2},
                           {"pid": child.pid, "exec": None})
        assert ok and "2 bytes" in detail, detail
    finally:
        child.kill()
        child.wait()


# -- exec probe (the runtime provides exec; a fake here) ------------------------------------------

def fake_exec(loop, code, delay=0.01, detail=""):
    calls = []

    def run(argv, timeout_s, on_done):
        calls.append((argv, timeout_s))
        if code != "never":
            loop.call_later(delay, on_done, code, detail)
    return run, calls


def test_exec_probe_exit_codes(loop):
    run, calls = fake_exec(loop, 0)
    ok, detail = probe(loop, {"type": "exec", "command": ["check", "-q"], "timeout_s": 4},
                       {"pid": 1, "exec": run})
    assert ok and detail == "exec check -q: exit 0" and calls == [(["check", "-q"], 4)]
    run, _ = fake_exec(loop, 2, detail="exit 2: not ready")
    ok, detail = probe(loop, {"type": "exec", "command": ["check"]}, {"pid": 1, "exec": run})
    assert not ok and "not ready" in detail


def test_exec_probe_that_never_answers_times_out_once(loop):
    run, _ = fake_exec(loop, "never")
    ok, detail = probe(loop, {"type": "exec", "command": ["hang"], "timeout_s": 0.2},
                       {"pid": 1, "exec": run})
    assert not ok and "no answer within 0.2 s" in detail


def test_late_exec_answer_is_ignored(loop):
    from edgert.daemon.health import Probe
    run, _ = fake_exec(loop, 0, delay=0.3)
    results = []
    Probe(loop, {"type": "exec", "command": ["slow"], "timeout_s": 0.1}, {"pid": 1, "exec": run},
          lambda ok, detail: results.append(ok))
    end = time.monotonic() + 0.6
    while time.monotonic() < end:
        loop.run_once(0.05)
    assert results == [False]


def test_cancelled_probe_reports_nothing(loop):
    from edgert.daemon.health import Probe
    run, _ = fake_exec(loop, 0)
    results = []
    p = Probe(loop, {"type": "exec", "command": ["x"], "timeout_s": 0.1}, {"pid": 1, "exec": run},
              lambda ok, detail: results.append(ok))
    p.cancel()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        loop.run_once(0.05)
    assert results == []


def test_unknown_probe_type(loop):
    ok, detail = probe(loop, {"type": "smoke"}, {"pid": 1, "exec": None})
    assert not ok and "unknown probe type" in detail


# -- the watch --------------------------------------------------------------------------------

class ScriptedExec:
    """A fake exec answering probe number i with codes[i] (the last one repeats)."""

    def __init__(self, loop, codes):
        self.loop, self.codes, self.count = loop, list(codes), 0

    def __call__(self, argv, timeout_s, on_done):
        code = self.codes[min(self.count, len(self.codes) - 1)]
        self.count += 1
        self.loop.call_soon(on_done, code, "exit %s" % code)


def watch(loop, check, codes=(0,), exits_after=None, limit=5.0):
    from edgert.daemon.health import Watch
    verdicts = []
    exec_ = ScriptedExec(loop, codes)
    w = Watch(loop, check, {"pid": 1, "exec": exec_},
              lambda healthy, reason: verdicts.append((healthy, reason)), loop.time())
    if exits_after is not None:
        loop.call_later(exits_after, w.container_exited, {"kind": "exited", "code": 3})
    started = time.monotonic()
    run_until(loop, lambda: verdicts, limit)
    took = time.monotonic() - started
    loop.run_once(0.05)
    assert len(verdicts) == 1
    return verdicts[0], exec_.count, took


PROBE = {"type": "exec", "command": ["check"]}


def test_watch_without_probe_is_survival(loop):
    (healthy, reason), _, took = watch(loop, {"window_s": 0.3})
    assert healthy and "without exiting" in reason and took >= 0.25


def test_watch_default_is_an_empty_health_check(loop):
    from edgert.daemon.health import Watch
    w = Watch(loop, {}, {"pid": 1, "exec": None}, lambda *a: None, loop.time())
    assert w.window_s == 30 and w.probe_spec is None
    w.cancel()


def test_watch_exit_during_window_is_unhealthy(loop):
    (healthy, reason), _, took = watch(loop, {"window_s": 5}, exits_after=0.1)
    assert not healthy and "exited with code 3" in reason and took < 1


def test_watch_healthy_when_the_last_probe_passed(loop):
    check = {"window_s": 0.5, "interval_s": 0.1, "probe": PROBE, "failure_threshold": 3}
    (healthy, reason), count, _ = watch(loop, check, codes=(1, 1, 0))
    assert healthy and "exit 0" in reason and count >= 3


def test_watch_consecutive_failures_are_unhealthy_early(loop):
    check = {"window_s": 5, "interval_s": 0.05, "probe": PROBE, "failure_threshold": 3}
    (healthy, reason), count, took = watch(loop, check, codes=(1,))
    assert not healthy and "failed 3 times in a row" in reason and count == 3 and took < 1


def test_watch_failures_must_be_consecutive(loop):
    check = {"window_s": 0.6, "interval_s": 0.05, "probe": PROBE, "failure_threshold": 3}
    (_, reason), count, took = watch(loop, check, codes=(1, 1, 0) * 40)
    assert "in a row" not in reason and count > 6 and took >= 0.55


def test_watch_window_ending_on_a_failed_probe(loop):
    check = {"window_s": 0.35, "interval_s": 0.1, "probe": PROBE, "failure_threshold": 100}
    (healthy, reason), _, _ = watch(loop, check, codes=(0, 0, 1))
    assert not healthy and "last probe" in reason


def test_watch_first_probe_waits_one_interval(loop):
    check = {"window_s": 0.15, "interval_s": 0.1, "probe": PROBE, "failure_threshold": 1}
    (healthy, _), count, took = watch(loop, check, codes=(0,))
    assert healthy and count == 1 and took >= 0.14


def test_watch_window_shorter_than_the_interval_still_probes(loop):
    check = {"window_s": 0, "interval_s": 10, "probe": PROBE}
    (healthy, _), count, took = watch(loop, check, codes=(0,))
    assert healthy and count == 1 and took < 1


def test_watch_cancel_stops_everything(loop):
    from edgert.daemon.health import Watch
    verdicts = []
    exec_ = ScriptedExec(loop, (0,))
    w = Watch(loop, {"window_s": 0.2, "interval_s": 0.05, "probe": PROBE},
              {"pid": 1, "exec": exec_}, lambda *a: verdicts.append(a), loop.time())
    end = time.monotonic() + 0.12
    while time.monotonic() < end:
        loop.run_once(0.02)
    w.cancel()
    probes = exec_.count
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        loop.run_once(0.02)
    assert verdicts == [] and exec_.count == probes


@needs_root
def test_watch_with_an_http_probe_in_the_netns(loop, netns_server, own_netns):
    check = {"window_s": 0.4, "interval_s": 0.1, "timeout_s": 1,
             "probe": {"type": "http", "port": 7003, "path": "/"}}
    from edgert.daemon.health import Watch
    verdicts = []
    Watch(loop, check, netns_server, lambda healthy, reason: verdicts.append((healthy, reason)),
          loop.time())
    run_until(loop, lambda: verdicts)
    assert verdicts[0][0], verdicts
