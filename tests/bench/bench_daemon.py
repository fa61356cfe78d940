#!/usr/bin/python3
"""Benchmark: edgertd vs containerd 1.6 (memory of 10 idle containers) and `edgert run` vs crun.

Run by hand as root (not a pytest test); see tests/bench/README.md. Both sides run the same
offline busybox image (`sleep 100000`) side by side in one invocation; every figure is a median
of repeated samples or rounds. Everything started here (edgertd, its instances, a private
containerd and its shims) is removed at the end, also on failure; nothing else is touched.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), HERE]

import bench_run  # noqa: E402  (the run benchmark's bundle, subjects and rounds)
from edgert import rootfs  # noqa: E402
from edgert.client.conn import Connection  # noqa: E402
from helpers.cgroups import ScratchCgroup, hierarchy_mounts, own_cgroups  # noqa: E402
from helpers.ociarchive import write_oci_archive  # noqa: E402
from helpers.services import service_input  # noqa: E402

DEVICE_PYTHON = bench_run.DEVICE_PYTHON
ENV = bench_run.ENV
RUNC = "/usr/sbin/runc"
WORKLOAD = ("/bin/sleep", "100000")
IMAGE_REF = "localhost/edgert/busybox:latest"
MiB = 1024.0

# What bin/edgert and bin/edgertd do, with the source tree on sys.path instead of the
# install's site directories.
LAUNCHER = """#!%s -IS
import sys
sys.path[:0] = [%r, "/usr/lib/python3/dist-packages"]
from %s import main
code = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.flush()
import os
os._exit(code or 0)
"""


def write_launcher(workdir, name, module):
    os.makedirs(os.path.join(workdir, "bin"), exist_ok=True)
    path = os.path.join(workdir, "bin", name)
    with open(path, "w") as f:
        f.write(LAUNCHER % (DEVICE_PYTHON, REPO, module))
    os.chmod(path, 0o755)
    return path


# ---------------------------------------------------------------- /proc

def memory_kib(pid):
    """(Rss, Pss) in KiB from /proc/PID/smaps_rollup; (0, 0) if the process is gone."""
    values = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    return values.get("Rss", 0), values.get("Pss", 0)


def process_table():
    """{pid: (ppid, argv)} of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        table[int(entry)] = (ppid, argv)
    return table


def descendants(table, pid):
    children = {}
    for child, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(child)
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def total_kib(pids):
    rss = pss = 0
    for pid in pids:
        r, p = memory_kib(pid)
        rss += r
        pss += p
    return rss, pss


# ---------------------------------------------------------------- edgertd

class Edgertd:
    """The in-tree edgertd on a private root, run dir and socket; driven by the in-tree CLI."""

    def __init__(self, workdir):
        self.base = os.path.join(workdir, "edgertd")
        os.mkdir(self.base)
        self.daemon_bin = write_launcher(workdir, "edgertd", "edgert.daemon.main")
        self.cli_bin = write_launcher(workdir, "edgert", "edgert.cli")
        self.socket = os.path.join(self.base, "run", "edgert.sock")
        self.config = os.path.join(self.base, "edgertd.json")
        self.log_path = os.path.join(self.base, "edgertd.log")
        self.cgroup_parent = "edgert-bench-daemon-%d" % os.getpid()
        self.env = dict(ENV, EDGERT_CGROUP_PARENT=self.cgroup_parent,
                        EDGERT_INIT=os.path.join(REPO, "init", "edgert-init"))
        self.proc = None
        self.instances = []
        with open(self.config, "w") as f:
            json.dump({}, f)

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.daemon_bin, "--root", os.path.join(self.base, "root"),
                 "--run-dir", os.path.join(self.base, "run"), "--socket", self.socket,
                 "--config", self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env)
        self._wait(lambda: os.path.exists(self.socket) and self.call("ping"), "ping", 20)

    def cli_argv(self, *args):
        return [self.cli_bin, "--socket", self.socket] + list(args)

    def cli(self, *args):
        proc = subprocess.run(self.cli_argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("edgert %s exited %d: %s%s\n--- edgertd log:\n%s"
                               % (" ".join(args), proc.returncode, proc.stdout, proc.stderr,
                                  self.log()))
        return proc.stdout

    def call(self, method, **params):
        try:
            conn = Connection(self.socket)
        except Exception:
            return None
        try:
            return conn.call(method, params)
        finally:
            conn.close()

    def add_instances(self, archive, count):
        doc = os.path.join(self.base, "service.json")
        with open(doc, "w") as f:
            json.dump(service_input("bench", "oci-archive:" + archive), f)
        self.cli("service", "import", doc)
        for i in range(count):
            self.cli("instance", "add", "bench", "--id", "b%d" % i)
            self.instances.append("b%d" % i)
        for iid in self.instances:
            self._wait(lambda: self._committed(iid), "instance %s running and committed" % iid,
                       120)

    def _committed(self, iid):
        info = self.call("instance.inspect", id=iid) or {}
        return info.get("state") == "running" and info.get("good_version") == 1 \
            and info.get("pid")

    def init_pids(self):
        return [self.call("instance.inspect", id=iid)["pid"] for iid in self.instances]

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def _wait(self, predicate, what, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise RuntimeError("edgertd exited %d:\n%s" % (self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                raise RuntimeError("edgertd: timed out waiting for %s\n%s" % (what, self.log()))
            time.sleep(0.1)

    def stop(self):
        """Removes our instances through the daemon, SIGTERMs it, cleans what is left."""
        if self.proc is not None and self.proc.poll() is None:
            for iid in self.instances:
                subprocess.run(self.cli_argv("instance", "rm", iid, "--purge-volumes"),
                               env=self.env, capture_output=True, timeout=120)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        unmount_below(self.base)
        return remove_cgroup_parent(self.cgroup_parent)


def unmount_below(directory):
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def remove_cgroup_parent(name):
    """rmdir's EDGERT_CGROUP_PARENT below our cgroup in every hierarchy (the daemon removes
    the containers' cgroups but leaves their parent); returns what could not be removed."""
    left = []
    for mount, root in hierarchy_mounts():
        for own in set(own_cgroups().values()):
            if not (root == "/" or own == root or own.startswith(root.rstrip("/") + "/")):
                continue
            top = os.path.join(mount, own[len(root):].lstrip("/"), name)
            if not os.path.isdir(top):
                continue
            for parent, dirs, _ in sorted(os.walk(top), key=lambda e: -len(e[0])):
                try:
                    os.rmdir(parent)
                except OSError:
                    left.append(parent)
    return left


# ---------------------------------------------------------------- containerd

def start_containerd(workdir, archive, cgroup):
    """The interop tests' private containerd (tests/interop/conftest.py), image imported."""
    from interop.conftest import Containerd
    engine = Containerd(os.path.join(workdir, "containerd"), RUNC, cgroup)
    os.mkdir(engine.workdir)
    engine.start()
    engine.ctr("image", "import", archive)
    return engine


def containerd_pids(engine):
    """(containerd's own pids, workload pids): containerd and its shims, then their children."""
    table = process_table()
    shims = engine._shim_pids()
    own = [engine.process.pid] + descendants(table, engine.process.pid) + shims
    workload = [p for shim in shims for p in descendants(table, shim)]
    own = [p for p in own if p not in workload]
    return own, workload


# ---------------------------------------------------------------- memory

def measure_memory(daemon, engine, samples, baseline):
    inits = daemon.init_pids()
    rows = {k: [] for k in ("ed_daemon", "ed_inits", "ed_extra", "ed_work",
                            "cd_own", "cd_main", "cd_work")}
    for i in range(samples):
        if i:
            time.sleep(1)
        table = process_table()
        below = descendants(table, daemon.proc.pid)
        work = [p for init in inits for p in descendants(table, init)]
        extra = [p for p in below if p not in inits and p not in work]
        rows["ed_daemon"].append(memory_kib(daemon.proc.pid))
        rows["ed_inits"].append(total_kib(inits))
        rows["ed_extra"].append(total_kib(extra))
        rows["ed_work"].append(total_kib(work))
        if engine is not None:
            own, work = containerd_pids(engine)
            rows["cd_own"].append(total_kib(own))
            rows["cd_main"].append(memory_kib(engine.process.pid))
            rows["cd_work"].append(total_kib(work))
    med = {k: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v))
           for k, v in rows.items() if v}
    n = len(inits)
    ed_total = tuple(med["ed_daemon"][i] + med["ed_inits"][i] + med["ed_extra"][i]
                     for i in (0, 1))
    print("\nmemory, %d idle busybox `sleep` containers (medians of %d samples, 1 s apart)"
          % (n, samples))
    print("%-44s %10s %10s" % ("", "RSS", "PSS"))

    def line(label, kib):
        if kib[0] < MiB:  # per-container figures: KiB are what matter
            print("%-44s %7.0fKiB %7.0fKiB" % (label, kib[0], kib[1]))
        else:
            print("%-44s %7.1fMiB %7.1fMiB" % (label, kib[0] / MiB, kib[1] / MiB))
    line("edgertd, no instances", baseline)
    line("edgertd, %d instances" % n, med["ed_daemon"])
    line("%d edgert-init" % n, med["ed_inits"])
    line("  per edgert-init", [x / n for x in med["ed_inits"]])
    if med["ed_extra"][0]:
        line("other edgertd children", med["ed_extra"])
    line("edgert total (daemon + inits)", ed_total)
    line("  per container (inits + daemon growth)",
         [(med["ed_inits"][i] + med["ed_daemon"][i] - baseline[i]) / n for i in (0, 1)])
    line("edgert workloads (not in the total)", med["ed_work"])
    if engine is None:
        return
    shims = [med["cd_own"][i] - med["cd_main"][i] for i in (0, 1)]
    line("containerd", med["cd_main"])
    line("%d containerd-shim-runc-v2" % n, shims)
    line("  per shim", [x / n for x in shims])
    line("containerd total (containerd + shims)", med["cd_own"])
    line("containerd workloads (not in the total)", med["cd_work"])
    print("edgert / containerd: RSS %.3fx, PSS %.3fx   (targets: daemon <= 20 MiB RSS, "
          "<= 0.5 MiB per container, total <= 0.3x)"
          % (ed_total[0] / med["cd_own"][0], ed_total[1] / med["cd_own"][1]))


def start_side_by_side(workdir, archive, cgroup, count, with_containerd):
    """edgertd with COUNT instances, and containerd running COUNT containers; prints the
    wall time each side took to get them all running."""
    daemon = Edgertd(workdir)
    engine = None
    try:
        daemon.start()
        time.sleep(1)
        baseline = memory_kib(daemon.proc.pid)
        start = time.monotonic()
        daemon.add_instances(archive, count)
        print("edgertd: %d instances added, running and committed in %.1f s (includes the "
              "%d s health window)" % (count, time.monotonic() - start, 2))
        if with_containerd:
            engine = start_containerd(workdir, archive, cgroup)
            start = time.monotonic()
            for i in range(count):
                engine.run("b%d" % i, detach=True)
            for i in range(count):
                engine.wait_status("b%d" % i, "RUNNING")
            print("containerd: %d `ctr run -d` running in %.1f s" % (count,
                                                                     time.monotonic() - start))
    except BaseException:
        stop_containerd(engine)
        daemon.stop()
        raise
    return daemon, engine, baseline


def stop_containerd(engine):
    if engine is not None and engine.process is not None:
        engine.stop()


# ---------------------------------------------------------------- latency

def latency(daemon, workdir, cgroup, rounds, settle):
    bundle = os.path.join(workdir, "bundle")
    os.mkdir(bundle)
    rootfs.build_busybox_rootfs(os.path.join(bundle, "rootfs"))
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(bench_run.bundle_config(cgroup + "/run", False), f, indent=1)
    wrapper = [bench_run.resolve("unshare")] + bench_run.HIDE_UNIFIED[1:]
    S = bench_run.Subject
    subjects = [
        S("edgert run (daemon)", daemon.cli_argv("run", "--bundle", bundle, "/bin/true")),
        S("crun", wrapper + [bench_run.resolve("crun")], os.path.join(workdir, "root-crun"),
          bundle),
        S("edgert-oci (no daemon)", [bench_run.in_tree_wrapper(workdir)],
          os.path.join(workdir, "root-edgert-oci"), bundle),
        S("hide-unified wrapper", wrapper + [bench_run.resolve("true")]),
        S("edgert ps", daemon.cli_argv("ps")),
        S("python3 -I startup", [DEVICE_PYTHON, "-I", "-c", "pass"]),
        S("python3 -IS startup", [DEVICE_PYTHON, "-IS", "-c", "pass"]),
    ]
    print("\nlatency: bundle %s, cgroup %s/run; %d rounds, %.2f s settle before each run"
          % (bundle, cgroup, rounds, settle))
    bench_run.run_rounds(subjects, rounds, workdir, settle)
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
    med = {s.label: bench_run.median_ms(s) for s in subjects}
    run, crun, wrap = med["edgert run (daemon)"], med["crun"], med["hide-unified wrapper"]
    if run and crun and wrap:
        print("%-22s %7.1fms  (crun minus the hide-unified wrapper)" % ("crun (net)",
                                                                        crun - wrap))
        print("edgert run / crun (net) %.2fx, / crun (raw) %.2fx   (target <= 1.0x)"
              % (run / (crun - wrap), run / crun))
    if run and med["edgert-oci (no daemon)"]:
        print("edgert run / edgert-oci run %.2fx" % (run / med["edgert-oci (no daemon)"]))
    if med["edgert ps"] and med["python3 -I startup"]:
        print("edgert ps / python3 -I startup %.2fx   (target < 2x)"
              % (med["edgert ps"] / med["python3 -I startup"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("memory", "latency"))
    parser.add_argument("--containers", type=int, default=10)
    parser.add_argument("--samples", type=int, default=5,
                        help="memory samples, 1 s apart (default 5)")
    parser.add_argument("--rounds", type=int, default=30, help="latency rounds (default 30)")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds of pause before each timed run (default 0.2)")
    parser.add_argument("--keep", action="store_true",
                        help="after measuring, wait for Enter before cleaning up (profiling)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_daemon.py: needs root (containers, cgroups, mounts)")
    for program in ("containerd", "ctr", "containerd-shim-runc-v2", RUNC, "crun"):
        if subprocess.run(["sh", "-c", "command -v %s" % program], env=ENV,
                          capture_output=True).returncode:
            sys.exit("bench_daemon.py: %s is not installed (Debian packages containerd, runc, "
                     "crun)" % program)

    workdir = tempfile.mkdtemp(prefix="edgert-bench-daemon-")
    cgroup = ScratchCgroup("edgert-bench-daemon-%d" % os.getpid())
    daemon = engine = None
    try:
        busybox = os.path.join(workdir, "busybox-rootfs")
        rootfs.build_busybox_rootfs(busybox)
        archive = os.path.join(workdir, "busybox-oci.tar")
        write_oci_archive(busybox, archive, ref=IMAGE_REF, cmd=WORKLOAD)
        count = args.containers if args.only != "latency" else 3
        daemon, engine, baseline = start_side_by_side(workdir, archive, cgroup.path, count,
                                                      args.only != "latency")
        if args.only != "latency":
            time.sleep(2)  # let both sides go idle after the starts
            measure_memory(daemon, engine, args.samples, baseline)
            stop_containerd(engine)
            engine = None
        if args.only != "memory":
            latency(daemon, workdir, cgroup.path, args.rounds, args.settle)
        if args.keep:
            input("edgertd pid %d, socket %s; Enter cleans up: "
                  % (daemon.proc.pid, daemon.socket))
    finally:
        stop_containerd(engine)
        left = daemon.stop() if daemon is not None else []
        left += cgroup.remove()
        if left:
            print("warning: cgroups left behind: %s" % left)
        unmount_below(workdir)
        subprocess.run(["rm", "-rf", "--one-file-system", workdir])


if __name__ == "__main__":
    main()
