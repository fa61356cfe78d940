#!/usr/bin/python3
"""Benchmark: ``RUNTIME run`` of /bin/true on one busybox bundle, edgert-oci vs crun vs runc.

Run by hand as root (not a pytest test); see tests/bench/README.md. Every
runtime gets the same bundle and its own --root; rounds alternate between
runtimes (rotating who goes first) so drift in machine load hits all alike.
A runtime that fails is reported as failed; the others are still measured.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from edgert import rootfs  # noqa: E402
from tests.helpers.cgroups import ScratchCgroup  # noqa: E402

DEVICE_PYTHON = "/usr/bin/python3"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
# crun 1.8 refuses hybrid cgroups: hide the unified mount in a private mount namespace.
GNU_TIME = "/usr/bin/time"
HIDE_UNIFIED = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                'umount /sys/fs/cgroup/unified; exec "$@"', "_"]


def bundle_config(cgroups_path, with_netns):
    """A `runc spec`-like config running /bin/true; identical for every runtime."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    namespaces = ["pid", "ipc", "uts", "mount"] + (["network"] if with_netns else [])
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/true"],
            "env": ["PATH=" + ENV["PATH"]],
            "cwd": "/",
            "capabilities": {s: caps for s in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": t} for t in namespaces],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


class Subject:
    """One measured command: a runtime's `run` of the bundle, or a baseline."""

    def __init__(self, label, prefix, root=None, bundle=None):
        self.label = label
        self.prefix = prefix
        self.root = root
        self.bundle = bundle
        self.samples = []  # milliseconds per successful run
        self.peak_rss = None  # KiB
        self.failures = 0
        self.last_error = ""

    def argv(self, container_id):
        if self.root is None:
            return list(self.prefix)
        return self.prefix + ["--root", self.root, "run", "--bundle", self.bundle, container_id]

    def cleanup_argv(self, container_id):
        if self.root is None:
            return None
        return self.prefix + ["--root", self.root, "delete", "--force", container_id]


def timed_spawn(argv, log_path):
    """Runs argv with stdio on /dev/null (stderr to log_path); returns (ms, exit code)."""
    with open(os.devnull, "r+b") as null, open(log_path, "wb") as log:
        actions = [(os.POSIX_SPAWN_DUP2, null.fileno(), 0),
                   (os.POSIX_SPAWN_DUP2, null.fileno(), 1),
                   (os.POSIX_SPAWN_DUP2, log.fileno(), 2)]
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, ENV, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        elapsed = time.perf_counter() - start
    return elapsed * 1000, os.waitstatus_to_exitcode(status)


def peak_rss_kib(argv, workdir):
    """Peak RSS of argv's largest process, measured by GNU time, or None.

    Not wait4 from here: a child spawned by this process starts with Python's
    RSS high-water mark (fork copies it, vfork shares it), so its ru_maxrss
    never reads below ~15 MiB. GNU time forks from a small process.
    """
    out = os.path.join(workdir, "rss")
    proc = subprocess.run([GNU_TIME, "-f", "%M", "-o", out] + argv, env=ENV,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    if proc.returncode != 0:
        return None
    with open(out) as f:
        return int(f.read().split()[-1])


def measure_once(subject, container_id, log_path):
    try:
        ms, code = timed_spawn(subject.argv(container_id), log_path)
    except OSError as e:
        subject.failures += 1
        subject.last_error = "cannot start %s: %s" % (subject.prefix[0], e.strerror)
        return False
    if code == 0:
        subject.samples.append(ms)
        return True
    subject.failures += 1
    with open(log_path, errors="replace") as f:
        tail = f.read().strip().splitlines()[-3:]
    subject.last_error = "exit %d\n    %s" % (code, "\n    ".join(tail))
    cleanup = subject.cleanup_argv(container_id)
    if cleanup:
        timed_spawn(cleanup, log_path)
    return False


def resolve(program):
    path = shutil.which(program, path=ENV["PATH"])
    if path is None:
        raise FileNotFoundError(program)
    return path


def in_tree_wrapper(workdir):
    """An executable running the in-tree edgert-oci with the device interpreter."""
    path = os.path.join(workdir, "edgert-oci")
    with open(path, "w") as f:
        f.write("#!%s -I\nimport sys\nsys.path.insert(0, %r)\n"
                "from edgert.oci.cli import main\nsys.exit(main(sys.argv[1:]))\n"
                % (DEVICE_PYTHON, REPO))
    os.chmod(path, 0o755)
    return path


def init_binaries(edgert_path):
    """Candidate edgert-init binaries: the in-tree build and the installed package's."""
    candidates = [os.path.join(REPO, "init", "edgert-init")]
    if edgert_path and not edgert_path.startswith(REPO):
        out = subprocess.run([DEVICE_PYTHON, "-I", "-c",
                              "import edgert, os; print(os.path.dirname(edgert.__file__))"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(os.path.join(out.stdout.strip(), "edgert-init"))
    return [p for p in candidates if os.path.exists(p)]


def build_subjects(args, workdir, bundle):
    subjects = []
    edgert = args.edgert or shutil.which("edgert-oci") or in_tree_wrapper(workdir)
    subjects.append(Subject("edgert-oci", [edgert], os.path.join(workdir, "root-edgert"), bundle))
    for name in ("crun", "runc"):
        try:
            path = resolve(name)
        except FileNotFoundError:
            print("note: %s is not installed; skipped" % name)
            continue
        prefix = [resolve("unshare")] + HIDE_UNIFIED[1:] + [path] if name == "crun" else [path]
        subjects.append(Subject(name, prefix, os.path.join(workdir, "root-" + name), bundle))
    subjects.append(Subject("hide-unified wrapper",
                            [resolve("unshare")] + HIDE_UNIFIED[1:] + [resolve("true")]))
    subjects.append(Subject("python3 -I startup", [DEVICE_PYTHON, "-I", "-c", "pass"]))
    return subjects, edgert


def run_rounds(subjects, rounds, workdir, settle):
    log_path = os.path.join(workdir, "stderr.log")
    for subject in subjects:  # warm-up: page cache, and an early verdict on broken runtimes
        measure_once(subject, "warmup-%s" % subject.label.split()[0], log_path)
        subject.samples.clear()
    for round_no in range(rounds):
        shift = round_no % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            # A pause between runs: the kernel's cgroup-migration lock stays cheap for about one
            # RCU grace period after a migration, so a runtime started right after another one
            # would skip the ~10-20 ms wait every cold start pays.
            time.sleep(settle)
            measure_once(subject, "bench-%s-%d" % (subject.label.split()[0], round_no), log_path)
    if not os.access(GNU_TIME, os.X_OK):
        print("note: peak RSS needs GNU time (%s, Debian package time)" % GNU_TIME)
        return
    for subject in subjects:
        if not subject.samples:
            continue
        for i in range(3):
            container_id = "rss-%s-%d" % (subject.label.split()[0], i)
            rss = peak_rss_kib(subject.argv(container_id), workdir)
            if rss is None and subject.cleanup_argv(container_id):
                timed_spawn(subject.cleanup_argv(container_id), log_path)
            subject.peak_rss = max(rss or 0, subject.peak_rss or 0) or None


def median_ms(subject):
    return statistics.median(subject.samples) if subject.samples else None


def report(subjects, rounds, edgert):
    print("\n%-22s %9s %8s %8s %10s %8s" % ("command", "median", "min", "max", "peak RSS",
                                             "ok/runs"))
    for s in subjects:
        if s.samples:
            rss = "%7.1fMiB" % (s.peak_rss / 1024) if s.peak_rss else "%10s" % "?"
            print("%-22s %7.1fms %6.1fms %6.1fms %s %5d/%d"
                  % (s.label, statistics.median(s.samples), min(s.samples), max(s.samples),
                     rss, len(s.samples), len(s.samples) + s.failures))
        else:
            print("%-22s FAILED (%d runs): %s" % (s.label, s.failures, s.last_error))
    by_label = {s.label: median_ms(s) for s in subjects}
    crun, wrapper = by_label.get("crun"), by_label.get("hide-unified wrapper")
    crun_net = crun - wrapper if crun is not None and wrapper is not None else None
    if crun_net is not None:
        print("%-22s %7.1fms  (crun minus the hide-unified wrapper)" % ("crun (net)", crun_net))
    edgert_ms = by_label.get("edgert-oci")
    print()
    if edgert_ms is None:
        print("edgert-oci (%s) failed: no ratios. Last error above." % edgert)
    else:
        for label, base in (("crun (net)", crun_net), ("crun (raw)", crun),
                            ("runc", by_label.get("runc"))):
            if base:
                print("edgert-oci / %-11s %.2fx" % (label, edgert_ms / base))
    for path in init_binaries(edgert):
        size = os.path.getsize(path)
        print("init binary %s: %d bytes (%.1f KiB)" % (path, size, size / 1024))
    print("%d rounds; edgert-oci = %s" % (rounds, edgert))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edgert", help="edgert-oci to measure (default: edgert-oci on PATH, "
                                         "else the in-tree code)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds of pause before each run (default 0.2; 0 = back to back)")
    parser.add_argument("--netns", action="store_true",
                        help="also give the container a network namespace")
    parser.add_argument("--busybox", default="/bin/busybox")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_run.py: needs root (runtimes create namespaces and cgroups)")

    workdir = tempfile.mkdtemp(prefix="edgert-bench-")
    cgroup = ScratchCgroup("edgert-bench-%d" % os.getpid())
    try:
        bundle = os.path.join(workdir, "bundle")
        os.mkdir(bundle)
        rootfs.build_busybox_rootfs(os.path.join(bundle, "rootfs"), busybox=args.busybox)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(bundle_config(cgroup.path + "/run", args.netns), f, indent=1)
        subjects, edgert = build_subjects(args, workdir, bundle)
        print("bundle %s (namespaces: pid ipc uts mount%s), cgroup %s/run"
              % (bundle, " network" if args.netns else "", cgroup.path))
        run_rounds(subjects, args.rounds, workdir, args.settle)
        report(subjects, args.rounds, edgert)
    finally:
        leftovers = cgroup.remove()
        if leftovers:
            print("warning: cgroups left behind: %s" % leftovers)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
