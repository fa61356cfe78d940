"""kill -9 of edgertd at random points of rollouts: after every restart the instance ends
consistent, seen through the CLI and, independently, through the run directory, the mount
table and /proc.

One instance flips between two good versions (env V=1 / V=2); a few trials roll out a
crashing version instead, so kills also land in rollbacks. Some trials also kill the
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
TRIALS = 24
CRASH_TRIALS = (3, 8, 14, 19)   # one crashing version each: a failed version is never retried
MAX_DELAY_S = 2.5
IID = "k9"
GOOD_VERSIONS = (1, 2)


def health():
    return {"window_s": 1, "interval_s": 1}


def landed_step(daemon):
    """The rollout step the instance document names right after the kill."""
    rec = instance_doc(daemon).get("rollout") or {}
    if rec.get("outcome"):
        return "finished"
    return rec.get("step") + (" (rolling back)" if rec.get("goal") == "rolled-back" else "")


def instance_doc(daemon):
    with open(os.path.join(daemon.root, "daemon", "instances", IID + ".json")) as f:
        return json.load(f)


def container_inits(daemon):
    """Pids of edgert-init processes that are pid 1 of a container in the instance's
    cgroup, found by scanning /proc (not asking the daemon)."""
    suffix = "/edgert-test-%d/%s" % (os.getpid(), IID)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cgroup" % name) as f:
                if not any(line.rstrip("\n").endswith(suffix) for line in f):
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


def power_loss(daemon):
    """What a power cut leaves: no container processes, nothing mounted, an empty /run."""
    for pid in container_inits(daemon):
        os.kill(pid, signal.SIGKILL)
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
    mounts = our_mounts(daemon)
    rootfs = os.path.join(daemon.run_dir, "containers", IID, "rootfs")
    assert [m[4] for m in mounts] == [rootfs], mounts
    assert "/active/%s.v%d/" % (IID, want) in " ".join(mounts[0]), mounts
    out = daemon.cli("exec", IID, "sh", "-c", "echo $V").stdout.decode()
    assert out == "%d\n" % want


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
                                            health_check=health()))
    crash_versions = []
    for _ in CRASH_TRIALS:
        crash_versions.append(daemon.import_service(service_input(
            "flip", images["crash"], health_check=health()))["version"])
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
        delay = rng.uniform(0, MAX_DELAY_S)
        t0 = time.monotonic()
        daemon.cli("pin", IID, target)
        rollout_id += 1
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
        check_consistent(daemon, good, rollout_id, failed)
        print("trial %2d: %s -> v%d, kill after %.2fs (%s) landed in %-28s ok in %.1fs" % (
            trial, "crash" if crash else "flip ", target, delay, mode, step,
            time.monotonic() - t0))
    print("kills landed in: %s; %d trials in %.0fs" % (
        ", ".join("%s %d" % kv for kv in sorted(landings.items())), TRIALS,
        time.monotonic() - started))
    # the delays spread over the whole rollout, not just its first or last step
    assert len(landings) >= 4, landings
