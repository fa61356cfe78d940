#!/usr/bin/python3
"""Benchmark: a container's network bring-up and teardown, edgertd vs the shell/CNI way.

Run by hand as root (not a pytest test); see tests/bench/README.md. A "router" network
namespace holds a LAN bridge, a client bridge with 10.77.0.1/24 and a LAN client whose veth
is a port of the LAN bridge; edgertd runs inside the router (`nsenter --net`). Both sides
give a busybox `sleep` container a WAN address on the client bridge (default route, host
masquerade), a LAN interface 10.190.0.1/16 in the LAN bridge with NAT to the WAN, and a
DHCP server on the LAN. Bring-up is timed from the start request until the LAN client's
DHCP DISCOVERs (sent in a tight loop) get an OFFER; teardown from the stop request until the
host end of the LAN veth is gone. Rounds alternate the sides; medians are printed with
their ratio. Everything is made in namespaces this script creates and removed at the end,
also on failure.
"""

import argparse
import errno
import fcntl
import json
import os
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [REPO, os.path.join(REPO, "tests"), HERE]

import bench_run  # noqa: E402  (the bundle config, the hide-unified wrapper for crun)
from bench_daemon import remove_cgroup_parent, unmount_below  # noqa: E402
from edgert import rootfs  # noqa: E402
from edgert.client.conn import Connection  # noqa: E402
from edgert.net import dhcp, in_netns, udp_socket_on_device  # noqa: E402
from edgert.net.links import host_link_name  # noqa: E402
from edgert.net.nat import nft_ruleset  # noqa: E402
from helpers.cgroups import ScratchCgroup  # noqa: E402
from helpers.ociarchive import write_oci_archive  # noqa: E402
from helpers.services import service_input  # noqa: E402

PY = bench_run.DEVICE_PYTHON
ENV = bench_run.ENV
WORKLOAD = ("/bin/sleep", "100000")
SIOCGIFINDEX = 0x8933
INSTANCE = "b0"
COLD_WAIT_S = 32  # edgertd's network worker leaves after 30 s without jobs
PEER_ID = "netbench-peer"

# bin/edgertd's launcher with the source tree on sys.path, plus a record of any import of
# pyroute2 in the daemon process itself (its forked network children are where it belongs)
LAUNCHER = """#!%(py)s -IS
import sys, os
sys.path[:0] = [%(repo)r, "/usr/lib/python3/dist-packages"]
_daemon = os.getpid()
class _Pyroute2Guard:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pyroute2" and os.getpid() == _daemon:
            import traceback
            with open(%(mark)r, "a") as f:
                f.write("".join(traceback.format_stack()))
        return None
sys.meta_path.insert(0, _Pyroute2Guard())
from %(module)s import main
code = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.flush()
os._exit(code or 0)
"""

# the peer: what a CNI bridge plugin + a shell script do, as one script per direction
PEER_UP = """set -e
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$RT" link add vpl type veth peer name lan0 netns "$NS"
ip -n "$RT" link set vpl master br-lan up
ip -n "$RT" link add vpw type veth peer name wan0 netns "$NS"
ip -n "$RT" link set vpw master br-wan up
ip -n "$NS" addr add 10.190.0.1/16 dev lan0
ip -n "$NS" link set lan0 up
ip -n "$NS" addr add 10.77.0.150/24 dev wan0
ip -n "$NS" link set wan0 up
ip -n "$NS" route add default via 10.77.0.1
ip netns exec "$NS" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward && nft -f "$1"' _ "$NAT"
ip netns exec "$RT" nft -f "$HOST_NAT"
# the container and dnsmasq keep no pipe of ours open: their output goes to files
"$@" run -d --bundle "$BUNDLE" "$ID" </dev/null >"$WORK/crun.log" 2>&1 ||
    { cat "$WORK/crun.log" >&2; exit 1; }
ip netns exec "$NS" dnsmasq --conf-file=/dev/null --user=root --interface=lan0 \\
    --bind-interfaces --port=0 --no-ping --dhcp-range=10.190.0.2,10.190.0.254,255.255.0.0,1h \\
    --dhcp-option=option:router,10.190.0.1 --dhcp-leasefile="$WORK/peer.leases" \\
    --pid-file="$WORK/peer-dnsmasq.pid" </dev/null >/dev/null 2>"$WORK/dnsmasq.log" ||
    { cat "$WORK/dnsmasq.log" >&2; exit 1; }
"""
PEER_DOWN = """"$@" delete --force "$ID"
kill "$(cat "$WORK/peer-dnsmasq.pid")"
ip netns del "$NS"
"""
HOST_NAT = """table ip netbench
delete table ip netbench
table ip netbench {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.77.0.0/24 oifname != "br-wan" masquerade
  }
}
"""


def sh(*argv, check=True):
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError("%s exited %d: %s%s" % (" ".join(argv), proc.returncode,
                                                   proc.stdout, proc.stderr))
    return proc


def vm_rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def helper_children(pid):
    """edgertd's children that are forks of it (its network worker), not containers."""
    found = []
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
        if ppid == pid and not any(b"edgert-init" in a for a in argv):
            found.append(int(entry))
    return found


def rss_now(daemon):
    """(edgertd's VmRSS, its forked helpers' VmRSS, how many helpers), KiB."""
    helpers = helper_children(daemon.proc.pid)
    return vm_rss_kib(daemon.proc.pid), sum(vm_rss_kib(p) for p in helpers), len(helpers)


# ---------------------------------------------------------------- the router and the client

class Router:
    def __init__(self):
        tag = "%d" % os.getpid()
        self.rt, self.lc, self.peer_ns = "edg-brt-" + tag, "edg-blc-" + tag, "edg-bpe-" + tag
        self.made = []
        for name in (self.rt, self.lc):
            sh("ip", "netns", "add", name)
            self.made.append(name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", self.rt, "link", "add", "br-lan", "type", "bridge")
        sh("ip", "-n", self.rt, "link", "add", "br-wan", "type", "bridge")
        sh("ip", "-n", self.rt, "addr", "add", "10.77.0.1/24", "dev", "br-wan")
        for bridge in ("br-lan", "br-wan"):
            sh("ip", "-n", self.rt, "link", "set", bridge, "up")
        sh("ip", "netns", "exec", self.rt, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", self.rt, "link", "add", "lcp", "type", "veth", "peer", "name", "c0",
           "netns", self.lc)
        sh("ip", "-n", self.rt, "link", "set", "lcp", "master", "br-lan", "up")
        sh("ip", "-n", self.lc, "link", "set", "c0", "up")
        link = sh("ip", "-n", self.lc, "-o", "link", "show", "c0").stdout.split()
        self.client_mac = bytes.fromhex(link[link.index("link/ether") + 1].replace(":", ""))
        self.probe = in_netns(self.path(self.rt), lambda: socket.socket(
            socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC))
        self.dhcp_sock = udp_socket_on_device(self.path(self.lc), "c0", dhcp.CLIENT_PORT)

    @staticmethod
    def path(name):
        return "/run/netns/" + name

    def has_link(self, name):
        """Whether the router has interface ``name`` (an ioctl on a socket made inside it:
        cheap enough to poll every millisecond)."""
        try:
            fcntl.ioctl(self.probe.fileno(), SIOCGIFINDEX, struct.pack("16s24x", name.encode()))
            return True
        except OSError as e:
            if e.errno == errno.ENODEV:
                return False
            raise

    def wait_link_gone(self, name, timeout=30):
        deadline = time.monotonic() + timeout
        while self.has_link(name):
            if time.monotonic() > deadline:
                raise RuntimeError("router interface %s still there after %d s" % (name, timeout))
            time.sleep(0.001)

    def wait_offer(self, timeout=30, interval=0.01):
        """DISCOVERs from the LAN client every ``interval`` until an OFFER answers one."""
        client = dhcp.Client(self.client_mac)
        xids = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            actions = client.start(time.monotonic())
            xids.add(client.xid)
            for action in actions:
                if action[0] == "send":
                    self.dhcp_sock.sendto(action[1], ("255.255.255.255", dhcp.SERVER_PORT))
            until = time.monotonic() + interval
            while True:
                left = until - time.monotonic()
                if left <= 0 or not select.select([self.dhcp_sock], [], [], left)[0]:
                    break
                try:
                    data = self.dhcp_sock.recv(4096)
                except BlockingIOError:
                    continue
                try:
                    packet = dhcp.parse(data)
                except dhcp.DhcpError:
                    continue
                if packet.op == dhcp.BOOTREPLY and packet.message_type == dhcp.OFFER \
                        and packet.xid in xids:
                    return packet
        raise RuntimeError("no DHCP OFFER on the LAN within %d s" % timeout)

    def drain(self):
        while select.select([self.dhcp_sock], [], [], 0)[0]:
            try:
                self.dhcp_sock.recv(4096)
            except BlockingIOError:
                break

    def close(self):
        self.dhcp_sock.close()
        self.probe.close()
        for name in self.made + [self.peer_ns]:
            sh("ip", "netns", "del", name, check=False)


# ---------------------------------------------------------------- edgertd

class Edgertd:
    def __init__(self, workdir, router):
        self.base = os.path.join(workdir, "edgertd")
        os.mkdir(self.base)
        self.router = router
        self.mark = os.path.join(self.base, "pyroute2-imported")
        self.daemon_bin = self._launcher(workdir, "edgertd", "edgert.daemon.main")
        self.cli_bin = self._launcher(workdir, "edgert", "edgert.cli")
        self.run_dir = os.path.join(self.base, "run")
        self.socket = os.path.join(self.run_dir, "edgert.sock")
        self.config = os.path.join(self.base, "edgertd.json")
        self.log_path = os.path.join(self.base, "edgertd.log")
        self.cgroup_parent = "edgert-bench-net-%d" % os.getpid()
        self.env = dict(ENV, EDGERT_CGROUP_PARENT=self.cgroup_parent,
                        EDGERT_INIT=os.path.join(REPO, "init", "edgert-init"))
        self.proc = None
        self.added = False
        with open(self.config, "w") as f:
            json.dump({"metrics_address": None, "wan_masquerade": True,
                       "wan_address_range": "10.77.0.100-10.77.0.199"}, f)

    def _launcher(self, workdir, name, module):
        os.makedirs(os.path.join(workdir, "bin"), exist_ok=True)
        path = os.path.join(workdir, "bin", name)
        with open(path, "w") as f:
            f.write(LAUNCHER % {"py": PY, "repo": REPO, "mark": self.mark, "module": module})
        os.chmod(path, 0o755)
        return path

    def start(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["nsenter", "--net=" + self.router.path(self.router.rt), self.daemon_bin,
                 "--root", os.path.join(self.base, "root"), "--run-dir", self.run_dir,
                 "--socket", self.socket, "--config", self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env)
        self.wait(lambda: os.path.exists(self.socket) and self.call("ping"), "ping", 20)

    def cli_argv(self, *args):
        return [self.cli_bin, "--socket", self.socket] + list(args)

    def cli(self, *args):
        proc = subprocess.run(self.cli_argv(*args), env=self.env, capture_output=True,
                              text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("edgert %s exited %d: %s%s\n--- edgertd log:\n%s" % (
                " ".join(args), proc.returncode, proc.stdout, proc.stderr, self.log()))
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

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def wait(self, predicate, what, timeout):
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise RuntimeError("edgertd exited %d:\n%s" % (self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                raise RuntimeError("edgertd: timed out waiting for %s\n%s" % (what, self.log()))
            time.sleep(0.05)

    def add(self, archive):
        doc = os.path.join(self.base, "service.json")
        network = {"wan_configure_network": "allocated", "wan_interface": {"host": "br-wan"},
                   "lan_configure_network": "dhcp", "lan_interfaces": [{"host": "br-lan"}],
                   "access_provided_subnet": "10.190.0.1/16",
                   "dhcp_range_template": "10.190.0.1/24", "masquerade": True}
        with open(doc, "w") as f:
            json.dump(service_input("netbench", "oci-archive:" + archive,
                                    network_config=network), f)
        self.cli("service", "import", doc)
        self.cli("instance", "add", "netbench", "--id", INSTANCE, "--stopped")
        self.added = True

    def committed(self):
        """Running with version 1 committed: a stop is refused while the first deployment
        watches the new container."""
        info = self.call("instance.inspect", id=INSTANCE) or {}
        return info.get("state") == "running" and info.get("good_version") == 1

    def up(self):
        """(ms until `edgert start` returned, ms until the LAN's OFFER)."""
        self.router.drain()
        start = time.perf_counter()
        self.cli("start", INSTANCE)
        answered = time.perf_counter()
        self.router.wait_offer()
        offered = time.perf_counter()
        return (answered - start) * 1000, (offered - start) * 1000

    def down(self):
        """(ms until `edgert stop` returned, ms until the host end of the LAN veth is gone)."""
        start = time.perf_counter()
        self.cli("stop", INSTANCE)
        answered = time.perf_counter()
        self.router.wait_link_gone(host_link_name(INSTANCE, "lan", 0))
        gone = time.perf_counter()
        return (answered - start) * 1000, (gone - start) * 1000

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            if self.added:
                subprocess.run(self.cli_argv("instance", "rm", INSTANCE, "--purge-volumes"),
                               env=self.env, capture_output=True, timeout=120)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        unmount_below(self.base)
        return remove_cgroup_parent(self.cgroup_parent)


# ---------------------------------------------------------------- the shell/CNI peer

class ShellPeer:
    def __init__(self, workdir, router, rootfs_dir, cgroup):
        self.work = os.path.join(workdir, "peer")
        os.mkdir(self.work)
        self.router = router
        self.bundle = os.path.join(self.work, "bundle")
        os.mkdir(self.bundle)
        config = bench_run.bundle_config(cgroup + "/peer", False)
        config["root"]["path"] = rootfs_dir
        config["process"]["args"] = list(WORKLOAD)
        config["linux"]["namespaces"].append({"type": "network",
                                              "path": router.path(router.peer_ns)})
        with open(os.path.join(self.bundle, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        for name, text in (("up.sh", PEER_UP), ("down.sh", PEER_DOWN),
                           ("nat.nft", nft_ruleset(["lan0"], "wan0")),
                           ("host-nat.nft", HOST_NAT)):
            with open(os.path.join(self.work, name), "w") as f:
                f.write(text)
        self.crun = [bench_run.resolve("unshare")] + bench_run.HIDE_UNIFIED[1:] + [
            bench_run.resolve("crun"), "--root", os.path.join(self.work, "crun-root")]
        self.env = dict(ENV, NS=router.peer_ns, RT=router.rt, ID=PEER_ID, WORK=self.work,
                        BUNDLE=self.bundle, NAT=os.path.join(self.work, "nat.nft"),
                        HOST_NAT=os.path.join(self.work, "host-nat.nft"))
        self.up_once = False

    def _script(self, name):
        argv = ["sh", "-e", os.path.join(self.work, name)] + self.crun
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("peer %s exited %d: %s%s" % (name, proc.returncode, proc.stdout,
                                                           proc.stderr))

    def up(self):
        self.router.drain()
        start = time.perf_counter()
        self.up_once = True
        self._script("up.sh")
        answered = time.perf_counter()
        self.router.wait_offer()
        offered = time.perf_counter()
        return (answered - start) * 1000, (offered - start) * 1000

    def down(self):
        start = time.perf_counter()
        self._script("down.sh")
        answered = time.perf_counter()
        self.router.wait_link_gone("vpl")
        gone = time.perf_counter()
        return (answered - start) * 1000, (gone - start) * 1000

    def cleanup(self):
        if not self.up_once:
            return
        subprocess.run(self.crun + ["delete", "--force", PEER_ID], env=ENV, capture_output=True)
        try:
            with open(os.path.join(self.work, "peer-dnsmasq.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


# ---------------------------------------------------------------- rounds and report

def measure(sides, rounds, settle):
    samples = {name: {"start": [], "offer": [], "stop": [], "gone": []} for name in sides}
    for name, side in sides.items():  # warm-up: image import, page cache, first allocation
        side.up()
        time.sleep(settle)
        side.down()
        time.sleep(settle)
    order = list(sides)
    for round_no in range(rounds):
        shift = round_no % len(order)
        for name in order[shift:] + order[:shift]:
            side = sides[name]
            time.sleep(settle)
            answered, offered = side.up()
            samples[name]["start"].append(answered)
            samples[name]["offer"].append(offered)
            time.sleep(settle)
            answered, gone = side.down()
            samples[name]["stop"].append(answered)
            samples[name]["gone"].append(gone)
    return samples


def report(samples, rounds):
    print("\nmedians of %d rounds (min-max), ms" % rounds)
    labels = (("start", "start request returned"), ("offer", "bring-up: LAN DHCP OFFER"),
              ("stop", "stop request returned"), ("gone", "teardown: host veth gone"))
    print("%-28s %24s %24s" % ("", "edgertd", "shell/CNI + crun"))
    for key, label in labels:
        cells = []
        for name in ("edgert", "peer"):
            values = samples[name][key]
            cells.append("%7.1f (%6.1f-%6.1f)" % (statistics.median(values), min(values),
                                                  max(values)))
        print("%-28s %24s %24s" % (label, cells[0], cells[1]))
    for key, label in (("offer", "bring-up"), ("gone", "teardown")):
        ratio = statistics.median(samples["edgert"][key]) / statistics.median(
            samples["peer"][key])
        print("%s edgertd / shell peer: %.2fx" % (label, ratio))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds of pause before each timed step (default 0.5)")
    parser.add_argument("--cold", type=int, default=1,
                        help="bring-ups after %d s idle, when edgertd's network worker has "
                        "gone (default 1; 0 skips)" % COLD_WAIT_S)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_network.py: needs root (namespaces, containers, cgroups)")
    for program in ("ip", "nsenter", "nft", "dnsmasq", "crun", "unshare"):
        if subprocess.run(["sh", "-c", "command -v %s" % program], env=ENV,
                          capture_output=True).returncode:
            sys.exit("bench_network.py: %s is not installed (Debian packages iproute2, "
                     "util-linux, nftables, dnsmasq-base, crun)" % program)

    workdir = tempfile.mkdtemp(prefix="edgert-bench-net-")
    cgroup = ScratchCgroup("edgert-bench-net-%d" % os.getpid())
    router = daemon = peer = None
    failed = False
    try:
        busybox = os.path.join(workdir, "busybox-rootfs")
        rootfs.build_busybox_rootfs(busybox)
        archive = os.path.join(workdir, "busybox-oci.tar")
        write_oci_archive(busybox, archive, ref="localhost/edgert/netbench:1", cmd=WORKLOAD)
        router = Router()
        daemon = Edgertd(workdir, router)
        daemon.start()
        time.sleep(1)
        rss = [("edgertd started", rss_now(daemon))]
        daemon.add(archive)
        time.sleep(1)
        rss.append(("service imported, instance added (stopped)", rss_now(daemon)))
        peer = ShellPeer(workdir, router, busybox, cgroup.path)
        sides = {"edgert": daemon, "peer": peer}
        daemon.up()
        daemon.wait(lambda: daemon.committed(), "the instance running, version 1 committed",
                    30)
        time.sleep(1)
        rss.append(("instance running with its network", rss_now(daemon)))
        daemon.down()
        samples = measure(sides, args.rounds, args.settle)
        time.sleep(1)
        rss.append(("after %d more bring-ups and teardowns" % (args.rounds + 1),
                    rss_now(daemon)))
        report(samples, args.rounds)
        cold = []
        for _ in range(args.cold):
            # edgertd's network worker (pyroute2 loaded) goes after 30 s without work
            print("waiting %d s for the network worker to go idle..." % COLD_WAIT_S)
            time.sleep(COLD_WAIT_S)
            if not cold:
                rss.append(("idle, worker gone", rss_now(daemon)))
            cold.append(daemon.up()[1])
            time.sleep(args.settle)
            daemon.down()
        if cold:
            print("cold bring-up (no network worker yet): %s ms; shell peer median %.1f ms"
                  % (", ".join("%.1f" % c for c in cold),
                     statistics.median(samples["peer"]["offer"])))
        print("\nVmRSS of edgertd (pid %d) and of its forked helpers (the network worker)"
              % daemon.proc.pid)
        for label, (own, helpers, count) in rss:
            print("  %-44s edgertd %5.1f MiB, %d helper(s) %5.1f MiB"
                  % (label, own / 1024.0, count, helpers / 1024.0))
        if os.path.exists(daemon.mark):
            failed = True
            with open(daemon.mark) as f:
                print("FAIL: edgertd imported pyroute2 in its own process:\n" + f.read())
        else:
            print("pyroute2 imported by edgertd itself: no (its network children do the "
                  "netlink work)")
    finally:
        if peer is not None:
            peer.cleanup()
        left = daemon.stop() if daemon is not None else []
        if router is not None:
            router.close()
        left += cgroup.remove()
        if left:
            print("warning: cgroups left behind: %s" % left)
        unmount_below(workdir)
        subprocess.run(["rm", "-rf", "--one-file-system", workdir])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
