#!/usr/bin/python3
"""The full-system checks: run inside the test VM that cross/vm boots, as root.

They cover what the x86_64 build host cannot show: cgroup v2 with the memory, cpu and pids
controllers (an OOM kill, a pids limit, a CPU quota, the freezer), the v2 device filter (an
eBPF program), seccomp and user namespaces on the VM's architecture, and moving a CAN
device into a container and back.

The VM gives: cgroup2 at /sys/fs/cgroup, the modules for vcan/veth/bridge/overlay, busybox,
the edgert package and /usr/bin/edgert-oci, and the static probe (tests/probe/probe.c) next
to this file. Containers are started through edgert-oci, as an engine would. Standard
library only, besides the edgert package itself.

    guest_checks.py [--only NAME[,NAME...]] [--list]

Prints one line per check, then a closing line:
    EDGERT-RESULT <name> PASS|FAIL|SKIP <detail>
    <N> passed, <N> failed, <N> skipped
"""

import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "probe")
OCI_ROOT = "/run/edgert-vm"
WORK = "/tmp/edgert-vm"
MIB = 1024 * 1024
# Container ids made by the check that is running; deleted after it, pass or fail.
_containers = []
_serial = iter(range(1, 1 << 30))
CHECKS = []


def check(func):
    CHECKS.append(func)
    return func


def name_of(func):
    return func.__name__.replace("_", "-")


class Skip(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


# -- containers ----------------------------------------------------------------------------------

def oci(*args, timeout=60, check=True):
    proc = subprocess.run(["/usr/bin/edgert-oci", "--root", OCI_ROOT] + [str(a) for a in args],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)
    proc.out = proc.stdout.decode(errors="replace")
    proc.err = proc.stderr.decode(errors="replace").strip()
    if check and proc.returncode != 0:
        raise AssertionError("edgert-oci %s exited %d: %s" % (args[0], proc.returncode,
                                                               proc.err or proc.out))
    return proc


def busybox_rootfs():
    """A busybox rootfs with the probe, built once (tmpfs: pivot_root works there)."""
    path = os.path.join(WORK, "rootfs")
    if not os.path.exists(path):
        from edgert import rootfs
        os.makedirs(WORK, exist_ok=True)
        rootfs.build_busybox_rootfs(path, busybox="/bin/busybox")
        shutil.copy(PROBE, os.path.join(path, "probe"))
    return path


def new_id(name):
    cid = "%s-%d" % (name, next(_serial))
    _containers.append(cid)
    return cid


def bundle(cid, args, edit=None, rootfs=None):
    from edgert.oci.defaults import default_config
    path = os.path.join(WORK, "bundles", cid)
    os.makedirs(path)
    config = default_config(args=list(args))
    config["root"]["path"] = rootfs or busybox_rootfs()
    if edit:
        edit(config)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def run(name, args, edit=None, rootfs=None, timeout=60):
    """A foreground `run`; the process with .out (stdout) and .err (the runtime's stderr)."""
    cid = new_id(name)
    return oci("run", "--bundle", bundle(cid, args, edit, rootfs), cid, timeout=timeout,
               check=False)


def run_detached(name, args, edit=None, rootfs=None):
    """`run --detach`: the id; the container's output goes to log_of(id)."""
    cid = new_id(name)
    path = bundle(cid, args, edit, rootfs)
    with open(log_of(cid), "wb") as log:
        proc = subprocess.run(["/usr/bin/edgert-oci", "--root", OCI_ROOT, "run", "--detach",
                               "--bundle", path, cid], stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, timeout=60)
    expect(proc.returncode == 0, "run --detach %s exited %d: %s" % (
        cid, proc.returncode, read(log_of(cid))))
    return cid


def log_of(cid):
    return os.path.join(WORK, cid + ".log")


def state(cid):
    return json.loads(oci("state", cid).out)


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(0.05)


def cgroup_dir(cid):
    """The container's cgroup2 directory, found as the runtime finds it."""
    from edgert.cgroup import fs
    from edgert.cgroup.layout import resolve_all
    layout = fs.host_layout()
    return fs.Cgroup(layout, resolve_all(layout, None, cid)).dirs[""]


def cleanup():
    """Deletes the check's containers; fails when one leaves its cgroup or state behind."""
    left = []
    for cid in _containers:
        oci("delete", "--force", cid, check=False)
        left += [p for p in (cgroup_dir(cid), os.path.join(OCI_ROOT, cid)) if os.path.exists(p)]
    del _containers[:]
    expect(not left, "left after delete: %s" % " ".join(left))


def resources(**sections):
    def edit(config):
        config["linux"]["resources"].update(sections)
    return edit


def read(path):
    with open(path) as f:
        return f.read().strip()


def keyed(text):
    return dict(line.split(None, 1) for line in text.splitlines() if " " in line)


def values(text):
    """key=value lines (the probe's output); a repeated key keeps its last value."""
    out = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq:
            out[key.strip()] = value.strip()
    return out


def sh(*commands):
    return ["/bin/sh", "-c", "; ".join(commands) + "; true"]


def host(*argv):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30)


# -- cgroup v2 -----------------------------------------------------------------------------------

@check
def cgroup_v2_layout():
    from edgert.cgroup import fs
    layout = fs.host_layout()
    expect(layout.mode == "v2", "edgert sees a %s layout, not v2: %r" % (layout.mode, layout))
    missing = {"memory", "cpu", "pids"} - layout.v2_controllers
    expect(not missing, "cgroup2 lacks controllers %s" % sorted(missing))
    with open("/proc/self/mountinfo") as f:
        options = [line.split()[-1] for line in f if line.split()[4] == "/sys/fs/cgroup"]
    expect(options and "favordynmods" in options[-1].split(","),
           "cgroup2 is not mounted with favordynmods (the init's mount): %r" % options)
    return "controllers: %s; %s" % (" ".join(sorted(layout.v2_controllers)), options[-1])


@check
def memory_oom_kill_foreground():
    proc = run("oom-fg", ["/probe", "memhog", "200"],
               resources(memory={"limit": 64 * MIB, "swap": 64 * MIB}))
    got = int(values(proc.out).get("allocated_mb", 0))
    expect(proc.returncode == 137, "exit %d, not 137 (SIGKILL): %s" % (proc.returncode,
                                                                       proc.err))
    expect(1 <= got < 64, "the hog got %d MiB past a 64 MiB limit" % got)
    expect("OOM killer" in proc.err, "the runtime did not report the OOM kill: %r" % proc.err)
    return "exit 137 after %d MiB; runtime said: %s" % (got, proc.err.splitlines()[-1])


@check
def memory_oom_kill_in_state():
    cid = run_detached("oom-bg", ["/probe", "memhog", "200"],
                       resources(memory={"limit": 64 * MIB, "swap": 64 * MIB}))
    wait_for(lambda: state(cid)["status"] == "stopped", "the hog to be killed")
    kills = state(cid).get("oomKills", 0)
    events = keyed(read(os.path.join(cgroup_dir(cid), "memory.events")))
    expect(kills >= 1, "state reports oomKills=%r" % kills)
    expect(int(events["oom_kill"]) >= 1, "memory.events: %r" % events)
    expect("memhog=ok" not in read(log_of(cid)), "the hog finished")
    return "state oomKills=%d, memory.events oom_kill=%s" % (kills, events["oom_kill"])


@check
def v2_limit_files():
    memory = {"limit": 64 * MIB, "reservation": 32 * MIB}
    cid = run_detached("files", ["/probe", "sleep", "30"], resources(
        memory=memory, pids={"limit": 50}, cpu={"quota": 50000, "period": 200000,
                                                 "shares": 512}))
    d = cgroup_dir(cid)
    got = {name: read(os.path.join(d, name))
           for name in ("memory.max", "memory.low", "pids.max", "cpu.max", "cpu.weight")}
    expect(got["memory.max"] == str(64 * MIB), got)
    expect(got["memory.low"] == str(32 * MIB), got)
    expect(got["pids.max"] == "50", got)
    expect(got["cpu.max"] == "50000 200000", got)
    expect(got["cpu.weight"] != "100", "shares 512 left the default weight: %r" % got)
    procs = read(os.path.join(d, "cgroup.procs")).split()
    expect(str(state(cid)["pid"]) in procs, "pid 1 is not in %s: %r" % (d, procs))
    return " ".join("%s=%s" % (k, v.replace(" ", "/")) for k, v in sorted(got.items()))


@check
def pids_limit():
    cid = run_detached("pids", ["/probe", "forkbomb", "100", "60"],
                       resources(pids={"limit": 20}))
    d = cgroup_dir(cid)
    out = values(wait_for(lambda: (lambda t: t if "forks=" in t else None)(read(log_of(cid))),
                          "the fork bomb to report"))
    current = int(read(os.path.join(d, "pids.current")))
    refused = int(keyed(read(os.path.join(d, "pids.events")))["max"])
    expect(read(os.path.join(d, "pids.max")) == "20", "pids.max is not 20")
    expect(current == 20, "pids.current=%d" % current)
    expect(refused > 0, "pids.events reports no refused fork")
    expect(out.get("errno") == "EAGAIN" and 0 < int(out["forks"]) < 20, out)
    return "forks=%s errno=%s pids.current=%d refused=%d" % (out["forks"], out["errno"],
                                                              current, refused)


@check
def cpu_quota():
    cid = run_detached("cpu", ["/probe", "spin", "2"],
                       resources(cpu={"quota": 20000, "period": 100000}))
    wait_for(lambda: state(cid)["status"] == "stopped", "the spinner to finish")
    out = values(read(log_of(cid)))
    stats = keyed(read(os.path.join(cgroup_dir(cid), "cpu.stat")))
    share = float(out["cpu"]) / float(out["wall"])
    expect(int(stats["nr_throttled"]) > 0, "cpu.stat shows no throttling: %r" % stats)
    expect(0.05 <= share <= 0.3, "the spinner used %.3f CPU under a 0.2 quota" % share)
    return "share %.3f under quota 0.2, nr_throttled=%s" % (share, stats["nr_throttled"])


@check
def freezer_pause_resume():
    cid = run_detached("freeze", ["/probe", "sleep", "30"])
    d = cgroup_dir(cid)
    oci("pause", cid)
    frozen = keyed(read(os.path.join(d, "cgroup.events"))).get("frozen")
    paused = state(cid)["status"]
    oci("resume", cid)
    resumed = state(cid)["status"]
    expect(frozen == "1" and paused == "paused", "pause: frozen=%s status=%s" % (frozen, paused))
    expect(resumed == "running", "resume: status=%s" % resumed)
    expect(read(os.path.join(d, "cgroup.freeze")) == "0", "cgroup.freeze stays 1")
    return "pause -> frozen 1, status paused; resume -> running"


# -- devices (cgroup v2: an eBPF program) ---------------------------------------------------------

def probe_steps(*steps):
    """sh -c running `/probe ARGS` per step, each headed by `== NAME`."""
    return sh(*("echo '== %s'; /probe %s" % step for step in steps))


def sections(text):
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            current = out.setdefault(line[3:], {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
    return out


@check
def device_filter_ebpf():
    fuse = (10, 229)  # a device the default rules do not allow
    steps = [("mknod", "mknod /dev/x c %d %d" % fuse), ("open", "open /dev/x r"),
             ("control-mknod", "mknod /dev/z c 1 3"), ("control-open", "open /dev/z rw")]
    denied = sections(run("dev", probe_steps(*steps)).out)
    expect(denied["control-mknod"].get("mknod") == "ok", denied)
    expect(denied["control-open"].get("open") == "ok", denied)
    # CAP_MKNOD is in the default set: only the device program can say no
    expect(denied["mknod"].get("mknod") == "EPERM", denied)

    def allow(config):
        config["linux"]["resources"]["devices"].append(
            {"allow": True, "type": "c", "major": fuse[0], "minor": fuse[1], "access": "rwm"})
    allowed = sections(run("dev-allow", probe_steps(steps[0]), allow).out)
    expect(allowed["mknod"].get("mknod") == "ok", "an allow rule did not let mknod through: %r"
           % allowed)
    return "mknod c 10:229 EPERM by default, ok with an allow rule; c 1:3 usable"


# -- seccomp, user namespaces --------------------------------------------------------------------

@check
def seccomp_default_profile():
    out = values(run("seccomp", sh("/probe seccomp", "/probe syscall keyctl",
                                   "/probe syscall unshare", "/probe syscall personality")).out)
    expect(out.get("seccomp") == "2", "no seccomp filter in the container: %r" % out)
    expect(out.get("keyctl") == "EPERM", out)
    expect(out.get("unshare") == "EPERM", out)
    expect(out.get("personality") == "ok", out)

    def no_seccomp(config):
        del config["linux"]["seccomp"]
    control = values(run("noseccomp", sh("/probe seccomp", "/probe syscall keyctl"),
                         no_seccomp).out)
    expect(control == {"seccomp": "0", "keyctl": "ok"}, "without seccomp: %r" % control)
    return "keyctl EPERM, unshare EPERM, personality ok; keyctl ok without the profile"


def userns_rootfs():
    path = os.path.join(WORK, "rootfs-100000")
    if not os.path.exists(path):
        subprocess.run(["cp", "-a", busybox_rootfs(), path], check=True)
        subprocess.run(["chown", "-R", "-h", "100000:100000", path], check=True)
    return path


def map_to_100000(config):
    config["linux"]["namespaces"].append({"type": "user"})
    for key in ("uidMappings", "gidMappings"):
        config["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@check
def user_namespace():
    if not os.path.exists("/proc/self/ns/user"):
        raise Skip("the kernel has no user namespaces")
    proc = run("userns", sh("/probe ids", "echo uid_map=$(cat /proc/self/uid_map)",
                            "echo gid_map=$(cat /proc/self/gid_map)", "touch /root/x",
                            "echo touch=$?"), map_to_100000, userns_rootfs())
    out = values(proc.out)
    expect(proc.returncode == 0, "exit %d: %s" % (proc.returncode, proc.err))
    expect((out.get("uid"), out.get("gid")) == ("0", "0"), out)
    expect(out.get("uid_map", "").split() == ["0", "100000", "65536"], out)
    expect(out.get("gid_map", "").split() == ["0", "100000", "65536"], out)
    expect(out.get("touch") == "0", "the mapped root cannot write its own rootfs: %r" % out)
    cid = run_detached("userns-host", ["/probe", "sleep", "30"], map_to_100000,
                       userns_rootfs())
    pid = state(cid)["pid"]
    uid = read("/proc/%d/status" % pid).split("Uid:")[1].split()[0]
    expect(uid == "100000", "pid %d runs as host uid %s" % (pid, uid))
    return "uid 0 inside, uid_map '0 100000 65536', host uid %s" % uid


# -- kernel modules, CAN passthrough -------------------------------------------------------------

@check
def kernel_modules():
    """The modules the VM carries for network and image tests load and work."""
    for module in ("veth", "bridge", "overlay", "dummy", "can_raw"):
        loaded = host("modprobe", module)
        expect(loaded.returncode == 0, "modprobe %s: %s" % (module, loaded.stdout.decode()))
    try:
        for argv in (("ip", "link", "add", "edgt-br0", "type", "bridge"),
                     ("ip", "link", "add", "edgt-v0", "type", "veth", "peer", "name", "edgt-v1"),
                     ("ip", "link", "set", "edgt-v0", "master", "edgt-br0")):
            done = host(*argv)
            expect(done.returncode == 0, "%s: %s" % (" ".join(argv), done.stdout.decode()))
        expect(os.path.exists("/sys/class/net/edgt-br0/brif/edgt-v0"), "veth not in the bridge")
    finally:
        host("ip", "link", "del", "edgt-v0")
        host("ip", "link", "del", "edgt-br0")
    top = os.path.join(WORK, "overlay")
    for d in ("lower", "upper", "work", "merged"):
        os.makedirs(os.path.join(top, d), exist_ok=True)
    with open(os.path.join(top, "lower", "file"), "w") as f:
        f.write("lower")
    mounted = host("mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s/lower,upperdir=%s/upper,"
                   "workdir=%s/work" % (top, top, top), os.path.join(top, "merged"))
    expect(mounted.returncode == 0, "overlay mount: %s" % mounted.stdout.decode())
    try:
        os.unlink(os.path.join(top, "merged", "file"))
        whiteout = os.stat(os.path.join(top, "upper", "file"))
        expect(os.major(whiteout.st_rdev) == 0 and os.minor(whiteout.st_rdev) == 0,
               "no whiteout in the upper dir")
    finally:
        host("umount", os.path.join(top, "merged"))
        shutil.rmtree(top)
    return "veth pair in a bridge, overlay mount with a whiteout, can_raw loaded"


def link_type(name, root="/sys/class/net"):
    try:
        return read(os.path.join(root, name, "type"))
    except FileNotFoundError:
        return None


def can_frame_roundtrip(ifname):
    """Sends a frame on a vcan device and reads it back on a second raw socket."""
    import socket
    import struct
    rx = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
    tx = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
    try:
        rx.settimeout(5)
        rx.bind((ifname,))
        tx.bind((ifname,))
        tx.send(struct.pack("=IB3x8s", 0x123, 4, b"edge"))
        can_id, length, data = struct.unpack("=IB3x8s", rx.recv(16))
        return can_id, data[:length]
    finally:
        rx.close()
        tx.close()


@check
def can_passthrough():
    loaded = host("modprobe", "vcan")
    expect(loaded.returncode == 0, "modprobe vcan: %s" % loaded.stdout.decode().strip())
    added = host("ip", "link", "add", "vcan0", "type", "vcan")
    expect(added.returncode == 0, "ip link add vcan0: %s" % added.stdout.decode().strip())
    try:
        host("ip", "link", "set", "vcan0", "up")
        cid = run_detached("can", ["/probe", "sleep", "30"], lambda config: config["linux"]
                           .__setitem__("netDevices", {"vcan0": {"name": "can0"}}))
        inside = values(oci("exec", cid, "/bin/sh", "-c",
                            "echo type=$(cat /sys/class/net/can0/type); "
                            "echo flags=$(cat /sys/class/net/can0/flags); "
                            "echo vcan0=$(ls /sys/class/net | grep -c vcan0)").out)
        expect(inside.get("type") == "280", "can0 in the container: %r" % inside)  # ARPHRD_CAN
        expect(inside.get("vcan0") == "0", "the container also sees vcan0: %r" % inside)
        expect(link_type("vcan0") is None, "vcan0 is still in the VM's netns while it runs")
        oci("delete", "--force", cid)
        expect(link_type("vcan0") == "280", "vcan0 did not come back after delete")
        up = int(read("/sys/class/net/vcan0/flags"), 16) & 1
        expect(up, "vcan0 came back down")
        can_id, data = can_frame_roundtrip("vcan0")
        expect((can_id, data) == (0x123, b"edge"), "frame read back: %x %r" % (can_id, data))
        return "can0 (type 280) inside, vcan0 gone while running, back and up after delete, " \
               "CAN_RAW frame round trip ok"
    finally:
        host("ip", "link", "del", "vcan0")


# -- runner --------------------------------------------------------------------------------------

def report(name, result, detail):
    detail = " ".join(str(detail).split())[:400]
    sys.stdout.write("EDGERT-RESULT %s %s %s\n" % (name, result, detail))
    sys.stdout.flush()


def main(argv):
    names = [name_of(f) for f in CHECKS]
    if argv[:1] == ["--list"]:
        print("\n".join(names))
        return 0
    only = None
    if argv[:1] == ["--only"] and len(argv) == 2:
        only = argv[1].split(",")
        unknown = sorted(set(only) - set(names))
        if unknown:
            print("unknown checks: %s (have: %s)" % (" ".join(unknown), " ".join(names)))
            print("0 passed, 1 failed")
            return 2
    elif argv:
        print("usage: guest_checks.py [--only NAME[,NAME...]] [--list]", file=sys.stderr)
        return 2
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for func in CHECKS:
        name = name_of(func)
        if only is not None and name not in only:
            continue
        started = time.monotonic()
        try:
            result, detail = "PASS", func() or ""
        except Skip as e:
            result, detail = "SKIP", str(e)
        except Exception as e:
            result, detail = "FAIL", "%s: %s" % (type(e).__name__, e)
        try:
            cleanup()
        except Exception as e:
            if result != "FAIL":
                result, detail = "FAIL", "cleanup: %s" % e
        counts[result] += 1
        report(name, result, "%s (%.1f s)" % (detail, time.monotonic() - started))
    print("%d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"]))
    sys.stdout.flush()
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
