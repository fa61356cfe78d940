"""Real edgertd processes for system tests: private root, run dir and socket per test, real
containers from busybox images built offline, driven through the real CLI.

Each daemon's containers get cgroups below the test's own cgroup, under a parent named
after the test process (EDGERT_CGROUP_PARENT), so concurrent sessions never share one.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from helpers.ociarchive import write_oci_archive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")


def _launcher(tmp_path_factory, module):
    path = str(tmp_path_factory.mktemp("bin") / module.rsplit(".", 1)[-1])
    with open(path, "w") as f:
        f.write("#!%s -I\nimport sys, os\nsys.path.insert(0, %r)\nfrom %s import main\n"
                "code = main(sys.argv[1:])\nsys.stdout.flush()\nos._exit(code or 0)\n"
                % (PY, REPO, module))
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def edgertd_bin(tmp_path_factory, native_built, init_bin):
    return _launcher(tmp_path_factory, "edgert.daemon.main")


@pytest.fixture(scope="session")
def edgert_bin(tmp_path_factory, native_built):
    return _launcher(tmp_path_factory, "edgert.cli")


class Daemon:
    """One edgertd with its own root, run dir and socket; ``cli(...)`` runs `edgert`."""

    def __init__(self, daemon_bin, cli_bin, base):
        self.daemon_bin, self.cli_bin = daemon_bin, cli_bin
        self.root = os.path.join(base, "root")
        self.run_dir = os.path.join(base, "run")
        self.socket = os.path.join(self.run_dir, "edgert.sock")
        self.config = os.path.join(base, "edgertd.json")
        self.log_path = os.path.join(base, "edgertd.log")
        self.proc = None
        self.env = dict(os.environ, EDGERT_CGROUP_PARENT="edgert-test-%d" % os.getpid(),
                        EDGERT_INIT=os.path.join(REPO, "init", "edgert-init"))
        self.daemon_env = {}  # extra environment of edgertd alone (not of the CLI)
        self.prefix = []  # argv before edgertd's: nsenter --net=NS plays a router
        with open(self.config, "w") as f:
            json.dump({"metrics_address": "127.0.0.1:0"}, f)

    def start(self, timeout=10):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.prefix + [self.daemon_bin, "--root", self.root, "--run-dir", self.run_dir,
                           "--socket", self.socket, "--config", self.config],
            stdin=subprocess.DEVNULL, stdout=log,
            stderr=log, env=dict(self.env, **self.daemon_env))
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("edgertd exited %d: %s" % (self.proc.returncode,
                                                              self.log()))
            if os.path.exists(self.socket) and self._pings():
                return self
            time.sleep(0.05)
        raise AssertionError("edgertd did not answer within %ds: %s" % (timeout, self.log()))

    def _pings(self):
        try:  # short: a stale socket whose listener lives on (in a fork) accepts, never answers
            return self.cli("ping", check=False, timeout=3).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def cli(self, *args, check=True, timeout=30, input=None):
        proc = subprocess.run([self.cli_bin, "--socket", self.socket] + [str(a) for a in args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              input=input, env=self.env)
        if check and proc.returncode != 0:
            raise AssertionError("edgert %s exited %d: %s%s\n--- daemon log:\n%s" % (
                " ".join(map(str, args)), proc.returncode, proc.stdout.decode(errors="replace"),
                proc.stderr.decode(errors="replace"), self.log()))
        return proc

    def json(self, *args):
        return json.loads(self.cli(*(args + ("--json",))).stdout)

    def call(self, method, **params):
        from edgert.client.conn import Connection
        conn = Connection(self.socket)
        conn.sock.settimeout(30)  # a daemon that stopped answering fails the test, not hangs it
        try:
            return conn.call(method, params)
        finally:
            conn.close()

    def wait_for(self, predicate, what, timeout=20):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.1)
        raise AssertionError("timed out waiting for %s (last: %r)\n--- daemon log:\n%s" % (
            what, last, self.log()))

    def inspect(self, iid):
        return self.call("instance.inspect", id=iid)

    def import_service(self, doc):
        path = os.path.join(os.path.dirname(self.config), "svc-%d.json" % time.monotonic_ns())
        with open(path, "w") as f:
            json.dump(doc, f)
        return self.json("service", "import", path)

    def teardown(self):
        """Removes every instance (stopping its container) through a live daemon, then
        stops the daemon and checks nothing is left mounted."""
        try:
            if self.proc is None or self.proc.poll() is not None:
                self.start()
            for row in self.call("instance.list"):
                self.call("instance.remove", id=row["id"], purge_volumes=True)
        finally:
            self.kill(signal.SIGTERM)
        with open("/proc/self/mountinfo") as f:
            left = [line for line in f if self.run_dir in line or self.root in line]
        for line in left:  # last resort, so one failure does not poison later tests
            subprocess.run(["umount", "-l", line.split()[4]], check=False)
        assert not left, "mounts left behind: %s" % left


@pytest.fixture
def daemon(edgertd_bin, edgert_bin, tmp_path):
    d = Daemon(edgertd_bin, edgert_bin, str(tmp_path))
    yield d
    d.teardown()


@pytest.fixture(scope="session")
def images(busybox_rootfs, tmp_path_factory):
    """Offline oci-archive images of busybox with different behaviours, by name."""
    base = tmp_path_factory.mktemp("images")
    scripts = {
        # serves a health file and runs until stopped
        "good": "echo started v=$V; touch /tmp/healthy; trap 'echo bye; exit 0' TERM; "
                "while :; do sleep 1; done",
        # dies at once: a bad version
        "crash": "echo crashing; exit 3",
        # ignores SIGTERM (the grace period ends in SIGKILL)
        "stubborn": "trap '' TERM; echo stubborn; while :; do sleep 1; done",
    }
    out = {}
    for name, script in scripts.items():
        path = str(base / (name + ".tar"))
        write_oci_archive(busybox_rootfs, path, ref="localhost/test/%s:1" % name,
                          cmd=("/bin/sh", "-c", script))
        out[name] = "oci-archive:" + path
    return out
