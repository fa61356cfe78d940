"""kill -9 of edgertd at random points of rollouts: after every restart the instance ends
consistent, seen through the CLI and, independently, through the run directory, the mount
table and /proc.

One instance flips between two good versions (env V=1 / V=2); some trials roll out a
crashing version instead, so kills also land in rollbacks. Half the kills come after a
random delay (0..2.5 s); the other half aim at a step: the test watches the instance
document until the rollout reaches that step, then kills after a few milliseconds, so short
steps (prepare, start_new, commit, mark_failed) are hit too. Some trials also kill the
container's pid 1 while the daemon is down, and some wipe the run directory too (a power
loss: /run is a tmpfs). Run with -s to see where each kill landed.
"""

import collections
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from helpers.services import service_input

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")

SEED = 20261203
TRIALS = 32
# each rolls out a new crashing version: a failed version is never rolled out again
CRASH_TRIALS = (2, 5, 10, 13, 18, 21, 26, 29)  # odd trials aim at a step, even ones do not
MAX_DELAY_S = 2.5
AIM_DELAY_S = 0.02
FLIP_STEPS = ("fetch", "prepare", "stop_old", "start_new", "watch", "commit")
ROLLBACK_STEPS = ("start_new", "watch", "mark_failed", "stop_new", "start_old", "watch_old")
IID = "k9"
GOOD_VERSIONS = (1, 2)
HEALTH = {"window_s": 1, "interval_s": 1}


def landed_step(daemon):
    """The rollout step the instance document names right after the kill."""
    rec = instance_doc(daemon).get("rollout") or {}
    if rec.get("outcome"):
        return "finished"
    return rec.get("step")


def instance_doc(daemon):
    with open(os.path.join(daemon.root, "daemon", "instances", IID + ".json")) as f:
        return json.load(f)


def in_instance_cgroup(pid_name):
    suffix = "/edgert-test-%d/%s" % (os.getpid(), IID)
    with open("/proc/%s/cgroup" % pid_name) as f:
        return any(line.rstrip("\n").endswith(suffix) for line in f)


def instance_processes():
    """Every live process in the instance's cgroup, whatever its name (zombies are dead)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and in_instance_cgroup(name):
                with open("/proc/%s/stat" % name) as f:
                    if f.read().rpartition(")")[2].split()[0] != "Z":
                        found.append(int(name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def container_inits(daemon):
    """Pids of edgert-init processes that are pid 1 of a container in the instance's
    cgroup, found by scanning /proc (not asking the daemon)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if not in_instance_cgroup(name):
                continue
            with open("/proc/%s/comm" % name) as f:
                if f.read().strip() != "edgert-init":
                    continue
            with open("/proc/%s/status" % name) as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except (FileNotFoundError, ProcessLookupError):
            continue
        if status.get("NSpid", "").split()[-1:] == ["1"] and not status.get(
                "State", "").strip().startswith("Z"):
            found.append(int(name))
    return sorted(found)


def our_mounts(daemon):
    with open("/proc/self/mountinfo") as f:
        return [line.split() for line in f if daemon.run_dir in line or daemon.root in line]


def daemon_forks(daemon):
    """Pids of processes forked by this test's edgertds: their command line is the
    daemon's own, naming its run directory."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/cmdline" % name, "rb") as f:
                    args = f.read().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if daemon.daemon_bin.encode() in args and daemon.run_dir.encode() in args:
                found.append(int(name))
    return found


def power_loss(daemon):
    """What a power cut leaves: no container processes, nothing mounted, an empty /run.
    A daemon killed mid-start leaves a forked setup child that has not yet exec'd
    edgert-init (and may fork pid 1 still), or a pid 1 between its exec and naming itself
    edgert-init: everything in the instance's cgroup and every fork of the daemon, scanned
    and killed until none is left."""
    deadline = time.monotonic() + 10
    while True:
        victims = set(instance_processes()) | set(daemon_forks(daemon))
        if not victims:
            break
        assert time.monotonic() < deadline, "processes survive SIGKILL: %s" % sorted(victims)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for fields in sorted(our_mounts(daemon), key=lambda m: len(m[4]), reverse=True):
        subprocess.run(["umount", "-l", fields[4]], check=False)
    shutil.rmtree(daemon.run_dir)


def check_consistent(daemon, want, rollout_id, failed):
    info = daemon.inspect(IID)
    assert info["state"] == "running", info
    assert info["version"] == want and type(info["version"]) is int, info
    assert info["good_version"] == want and info["current_version"] == want, info
    assert info["rollout"]["id"] == rollout_id and info["rollout"]["outcome"], info["rollout"]
    assert set(failed) == set(info["failed_versions"]), info
    doc = instance_doc(daemon)  # valid JSON on disk, saying the same
    assert doc["rollout"]["outcome"] == info["rollout"]["outcome"]
    assert doc["good_version"] == want and doc["current_version"] == want
    assert doc["desired"] == "running"
    # independently of the daemon: one container, its pid 1 alive and of version `want`
    inits = container_inits(daemon)
    assert inits == [info["pid"]], (inits, info["pid"])
    oci = os.path.join(daemon.run_dir, "oci")
    assert os.listdir(oci) == [IID]
    with open(os.path.join(oci, IID, "state.json")) as f:
        state = json.load(f)
    assert state["pid"] == info["pid"]
    assert state["annotations"]["edgert.version"] == str(want)
    assert os.listdir(os.path.join(daemon.run_dir, "containers")) == [IID]
    host_dir = os.path.join(daemon.run_dir, "host", IID)  # the instance's /host tmpfs
    mounts = [m for m in our_mounts(daemon) if m[4] != host_dir]
    rootfs = os.path.join(daemon.run_dir, "containers", IID, "rootfs")
    assert [m[4] for m in mounts] == [rootfs], mounts
    assert "/active/%s.v%d/" % (IID, want) in " ".join(mounts[0]), mounts
    out = daemon.cli("exec", IID, "sh", "-c", "echo $V").stdout.decode()
    assert out == "%d\n" % want


def wait_for_step(daemon, rollout_id, step, timeout=10):
    """Polls the instance document until rollout ``rollout_id`` is at ``step`` (or over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rec = instance_doc(daemon).get("rollout") or {}
        except (OSError, ValueError):
            continue
        if rec.get("id") == rollout_id and (rec.get("step") == step or rec.get("outcome")):
            return
        time.sleep(0.002)


def wait_finished(daemon, rollout_id):
    def done():
        info = daemon.inspect(IID)
        rec = info["rollout"] or {}
        return (rec.get("id") == rollout_id and rec.get("outcome") is not None
                and info["state"] == "running")
    daemon.wait_for(done, "rollout %d finished with a running container" % rollout_id,
                    timeout=40)


def test_kill9_at_random_points_of_rollouts(daemon, images):
    rng = random.Random(SEED)
    daemon.start()
    for v in GOOD_VERSIONS:
        daemon.import_service(service_input("flip", images["good"], env={"V": str(v)},
                                            health_check=HEALTH))
    crash_versions = []
    for _ in CRASH_TRIALS:
        crash_versions.append(daemon.import_service(service_input(
            "flip", images["crash"], health_check=HEALTH))["version"])
    daemon.cli("instance", "add", "flip", "--id", IID, "--pin", "1")
    rollout_id, good, failed = 1, 1, []
    wait_finished(daemon, rollout_id)
    check_consistent(daemon, good, rollout_id, failed)

    landings = collections.Counter()
    started = time.monotonic()
    for trial in range(TRIALS):
        crash = trial in CRASH_TRIALS
        target = crash_versions.pop(0) if crash else 3 - good
        mode = "boot" if trial % 7 == 6 else rng.choice(["daemon", "daemon", "pid1"])
        aim = rng.choice(ROLLBACK_STEPS if crash else FLIP_STEPS) if trial % 2 else None
        delay = rng.uniform(0, AIM_DELAY_S if aim else MAX_DELAY_S)
        t0 = time.monotonic()
        daemon.cli("pin", IID, target)
        rollout_id += 1
        if aim:
            wait_for_step(daemon, rollout_id, aim)
        time.sleep(delay)
        daemon.kill()
        step = landed_step(daemon)
        landings[step] += 1
        if mode == "pid1":
            for pid in container_inits(daemon):
                os.kill(pid, signal.SIGKILL)
        elif mode == "boot":
            power_loss(daemon)
        daemon.start()
        wait_finished(daemon, rollout_id)
        if crash:
            failed.append(target)
        else:
            good = target
        try:
            check_consistent(daemon, good, rollout_id, failed)
        except AssertionError as e:
            raise AssertionError("trial %d (%s, kill in %s): %s\n--- daemon log:\n%s" % (
                trial, mode, step, e, daemon.log())) from None
        print("trial %2d: %s -> v%-2d kill %-20s (%-6s) landed in %-11s ok after %.1fs" % (
            trial, "crash" if crash else "flip ", target, "%.2fs after %s" % (
                delay, aim or "the pin"), mode, step, time.monotonic() - t0))
    print("kills landed in: %s; %d trials in %.0fs" % (
        ", ".join("%s %d" % kv for kv in sorted(landings.items())), TRIALS,
        time.monotonic() - started))
    # kills spread over the rollout and the rollback, not just their longest steps
    assert len(landings) >= 7, landings


def test_restart_while_a_pull_runs(daemon):
    """A pull that hangs (a registry that accepts and never answers) when the daemon dies:
    the pull child outlives it, and must not keep the next daemon from starting (it kept
    the daemon's lock and control socket before fetch.py closed them in the child)."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    orphans = []
    try:
        daemon.start()
        reference = "127.0.0.1:%d/test/hang:1" % listener.getsockname()[1]
        daemon.import_service(service_input("hang", reference))
        daemon.cli("instance", "add", "hang", "--id", IID)
        daemon.wait_for(lambda: instance_doc(daemon)["rollout"]["step"] == "fetch", "fetch")
        time.sleep(0.5)  # the pull child is connected and waits for the TLS handshake
        daemon.kill()
        orphans = daemon_forks(daemon)
        assert orphans, "the pull child should outlive the daemon"
        daemon.start()
        assert daemon.inspect(IID)["rollout"]["step"] == "fetch"
    finally:
        listener.close()
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_half_removed_layer_does_not_fail_a_version(daemon, images):
    """What a kill -9 during commit's drop of the old layer left (seen in the trials above,
    before Snapshotter.remove renamed the directory away first): ``active/<id>.v1`` with its
    upper and work directories but no info.json. Going back to version 1 later must not
    fail it."""
    daemon.start()
    for v in GOOD_VERSIONS:
        daemon.import_service(service_input("flip", images["good"], env={"V": str(v)},
                                            health_check=HEALTH))
    daemon.cli("instance", "add", "flip", "--id", IID, "--pin", "1")
    wait_finished(daemon, 1)
    daemon.cli("pin", IID, 2)
    wait_finished(daemon, 2)
    half = os.path.join(daemon.root, "active", "%s.v1" % IID)
    assert not os.path.exists(half)
    os.makedirs(os.path.join(half, "upper", "tmp"))
    os.makedirs(os.path.join(half, "work", "work"))
    daemon.cli("pin", IID, 1)
    wait_finished(daemon, 3)
    check_consistent(daemon, 1, 3, [])
