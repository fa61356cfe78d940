"""Instance networks for the daemon: plan, bring up before a container starts, tear down
after it ends, DHCP server and client while it runs, subnets kept across restarts.

Bring-up and teardown run in forked children (``net/forked.py``: pyroute2 never loads in
the daemon) one at a time, in request order: a restart's bring-up waits for the teardown
of the run before, and two instances never pick the same WAN address.

Files:
    <run-dir>/net/<id>.json         the plan, written before the child runs (then its result):
                                    how a restarted daemon finds what to resume or tear down
    <run-dir>/netns/<id>            the pinned namespace the container joins
    <run-dir>/net/<id>.resolv.conf  the container's /etc/resolv.conf (WAN allocated or dhcp)
    <root>/daemon/subnets.json      allocated subnets and WAN addresses (net/ipam_store.py)
    <root>/daemon/dhcp/<id>.json    the DHCP server's leases
"""

import json
import os

from ..errors import EdgertError
from ..fsutil import atomic_write
from ..net import forked
from ..net import plan as planner
from ..net.ipam_store import Allocations


class Network:
    def __init__(self, loop, root, run_dir, settings, services, log):
        self.loop = loop
        self.services = services   # a callable: {name: node service document}
        self.root = root
        self.run_dir = run_dir
        self.settings = settings   # a callable: the daemon's current settings
        self.log = log
        self.allocations = Allocations(os.path.join(root, "daemon", "subnets.json"))
        self.active = {}           # instance id -> {"plan", "result", "dhcpd", "dhclient"}
        self.worker = forked.Worker(loop)
        self.queue = []
        self.running = False
        self.booted = False        # jobs wait for boot(): teardowns must see resumed instances

    # -- paths ----------------------------------------------------------------------------

    def netns_path(self, iid):
        return os.path.join(self.run_dir, "netns", iid)

    def _record_path(self, iid):
        return os.path.join(self.run_dir, "net", iid + ".json")

    def _resolv_path(self, iid):
        return os.path.join(self.run_dir, "net", iid + ".resolv.conf")

    def _lease_path(self, iid):
        return os.path.join(self.root, "daemon", "dhcp", iid + ".json")

    # -- the queue: one child at a time ----------------------------------------------------

    def _enqueue(self, work):
        self.queue.append(work)
        if not self.running and self.booted:
            self._next()

    def _next(self):
        if not self.queue:
            self.running = False
            return
        self.running = True
        work = self.queue.pop(0)

        def finished():
            self.loop.call_soon(self._next)
        try:
            work(finished)
        except Exception as e:  # a bug must not wedge every later bring-up
            self.log("network: %s" % e)
            finished()

    # -- bring-up -------------------------------------------------------------------------

    def up(self, iid, service, version, on_done):
        """Prepares instance ``iid``'s network for ``version`` of ``service``; then
        ``on_done(None, paths)``: {"netns", "resolv_conf"} for the container's config, or {}
        when it needs none; or ``on_done(error, None)``."""
        network_config = service.get("network_config") or {}
        net_devices = version.get("net_devices") or []
        if not planner.needed(network_config, net_devices):
            on_done(None, {})
            return
        if iid in self.active:
            self.down(iid)

        def work(finished):
            try:
                plan = self._plan(iid, service, network_config, net_devices)
                self._save_record(iid, {"plan": plan, "result": None})
            except (EdgertError, OSError) as e:
                finished()
                on_done(e if isinstance(e, EdgertError) else EdgertError(
                    "instance %s: network plan: %s" % (iid, e), code="net-failed"), None)
                return

            def brought_up(ok, value):
                finished()
                if not ok:
                    # the child undid its work, unless it died halfway: a teardown by the
                    # record (idempotent) makes sure, before any later bring-up
                    self.down(iid)
                    on_done(value, None)
                    return
                try:
                    paths = self._running(iid, plan, value)
                except (EdgertError, OSError) as e:
                    self.down(iid)
                    on_done(EdgertError("instance %s: network: %s" % (iid, e),
                                        code="net-failed"), None)
                    return
                on_done(None, paths)
            self.worker.submit("edgert.net.setup:bring_up", (plan,),
                               "network of instance %s" % iid, brought_up)
        self._enqueue(work)

    def expect(self, service, version):
        """A start of ``version`` is coming (its image is being pulled, or a restart waits
        for its backoff): the worker loads pyroute2 meanwhile."""
        if planner.needed(service.get("network_config"), version.get("net_devices")):
            self.worker.warm()

    def _plan(self, iid, service, network_config, net_devices):
        subnet = None
        if (network_config.get("dhcp_range_template")
                and network_config.get("lan_configure_network") != "disabled"):
            subnet = self.allocations.allocate(iid, service["name"], network_config,
                                               self._reserved(service["name"]))
        wan = None
        if network_config.get("wan_configure_network") == "allocated":
            settings = self.settings()
            taken = [a for other, a in self.allocations.wan_addresses().items() if other != iid]
            bridge = (network_config.get("wan_interface") or {}).get("host")
            wan = {"range": settings.get("wan_address_range"), "taken": taken,
                   "prefer": self.allocations.wan_address_of(iid),
                   "masquerade": bool(settings.get("wan_masquerade")),
                   # another live instance on the bridge made the host's table already
                   "host_nat_present": any(
                       (e["plan"].get("wan") or {}).get("host") == bridge
                       and e["plan"]["wan"].get("masquerade") for e in self.active.values())}
        return planner.make(iid, self.netns_path(iid), network_config, net_devices, subnet,
                            service["name"], wan)

    def _reserved(self, service_name):
        """Fixed LAN ranges of the other services on this device: never handed out."""
        return list(fixed_ranges(self.services(), but=service_name).values())

    def _running(self, iid, plan, result):
        """After the child's success: record, DHCP, resolv.conf; the container's paths."""
        self._save_record(iid, {"plan": plan, "result": result})
        entry = self.active[iid] = {"plan": plan, "result": result, "dhcpd": None,
                                    "dhclient": None}
        if result.get("wan"):
            self.allocations.set_wan_address(iid, plan["service"], result["wan"]["address"])
        paths = {"netns": plan["netns"]}
        wan = plan.get("wan")
        if wan:
            paths["resolv_conf"] = self._resolv_path(iid)
            servers = host_nameservers() or (
                [result["wan"]["gateway"]] if result.get("wan") else [])
            write_in_place(paths["resolv_conf"], resolv_text(servers, "the host"))
        self._start_dhcp(iid, entry)
        return paths

    def _start_dhcp(self, iid, entry):
        plan = entry["plan"]
        lan, wan = plan.get("lan"), plan.get("wan")
        if lan and lan["mode"] == "dhcp":
            from ..net.dhcp import Server
            from ..net.dhcpd import DhcpServer
            logic = Server(lan["pool_start"], lan["pool_end"], lan["netmask"],
                           lan["address"], lan["router"], host_nameservers(),
                           int(self.settings().get("dhcp_lease_s") or 3600))
            os.makedirs(os.path.dirname(self._lease_path(iid)), 0o700, exist_ok=True)
            entry["dhcpd"] = DhcpServer(self.loop, plan["netns"], lan["ifname"], logic,
                                        self._lease_path(iid))
        if wan and wan["mode"] == "dhcp":
            from ..net.dhclient import DhcpClient
            def leased(lease):
                self.log("instance %s: WAN lease %s/%d via %s" % (
                    iid, lease["address"], lease["prefix"], lease["router"]))
                self._keep_lease(iid, entry, lease)

            def expired():
                self.log("instance %s: WAN lease expired" % iid)
                self._keep_lease(iid, entry, None)
            entry["dhclient"] = DhcpClient(
                self.loop, plan["netns"], wan["ifname"], leased, expired,
                resolv_conf_path=self._resolv_path(iid), hostname=iid,
                write_resolv=write_in_place, worker=self.worker,
                previous=entry.get("wan_lease"))

    def _keep_lease(self, iid, entry, lease):
        """The WAN lease in the record: a restarted daemon verifies it instead of asking
        for a new one."""
        if self.active.get(iid) is not entry or entry.get("wan_lease") == lease:
            return
        entry["wan_lease"] = lease
        try:
            self._save_record(iid, {"plan": entry["plan"], "result": entry["result"],
                                    "wan_lease": lease})
        except OSError as e:
            self.log("instance %s: saving the WAN lease: %s" % (iid, e))

    # -- teardown -------------------------------------------------------------------------

    def down(self, iid, on_done=None):
        """Stops DHCP, tears instance ``iid``'s network down (queued); ``on_done()`` after."""
        entry = self.active.pop(iid, None)
        if entry is not None:
            self._stop_dhcp(entry)
            record = {"plan": entry["plan"], "result": entry["result"]}
        else:
            record = self._load_record(iid)
        if record is None:
            if on_done:
                on_done()
            return
        plan = record["plan"]

        def work(finished):
            # decided now, not at the call: a bring-up queued before this job (another
            # instance on the bridge) is active by now and still needs the host masquerade
            bridge = None
            if (plan.get("wan") or {}).get("masquerade") and not any(
                    (e["plan"].get("wan") or {}).get("host") == plan["wan"]["host"]
                    and e["plan"]["wan"].get("masquerade") for e in self.active.values()):
                bridge = plan["wan"]["host"]

            def torn_down(ok, value):
                finished()
                if ok:
                    self._drop_record(iid)
                else:
                    self.log("instance %s: %s" % (iid, value))
                if on_done:
                    on_done()
            self.worker.submit("edgert.net.setup:tear_down", (plan, record.get("result"), bridge),
                               "network teardown of instance %s" % iid, torn_down)
        self._enqueue(work)

    def _stop_dhcp(self, entry):
        if entry.get("dhcpd") is not None:
            entry["dhcpd"].close()
        if entry.get("dhclient") is not None:
            entry["dhclient"].close(remove_address=False)  # the namespace goes anyway

    def release(self, iid):
        """The instance is removed: its subnet, WAN address and DHCP leases are free."""
        self.allocations.release(iid)
        try:
            os.unlink(self._lease_path(iid))
        except FileNotFoundError:
            pass

    def check_new_service(self, service, others=None):
        """ConfigError when a new node service's fixed LAN range overlaps another service's
        fixed range, or a subnet already allocated to another service's instance;
        ``others``: services being imported with it."""
        from ..net import ipam
        services = dict(self.services(), **(others or {}))
        services[service["name"]] = service
        check_fixed_ranges(services)
        mine = fixed_ranges({service["name"]: service})
        for owner, subnet in mine.items():
            for allocated, iid in self.allocations.by_subnet().items():
                ipam.check_disjoint({owner: subnet,
                                     "the subnet of instance %s" % iid: allocated})

    # -- daemon start and stop ------------------------------------------------------------

    def boot(self, running):
        """Resumes DHCP for the instances whose containers a previous daemon left running
        (``running``: ids); tears down every other network it left."""
        directory = os.path.join(self.run_dir, "net")
        names = os.listdir(directory) if os.path.isdir(directory) else []
        for name in sorted(names):
            if not name.endswith(".json") or name.startswith("."):
                continue
            iid = name[:-5]
            record = self._load_record(iid)
            if record is None:
                continue
            if iid in running and record.get("result") and os.path.ismount(
                    record["plan"]["netns"]):
                entry = self.active[iid] = dict(record, dhcpd=None, dhclient=None)
                try:
                    self._start_dhcp(iid, entry)
                except (EdgertError, OSError) as e:
                    self.log("instance %s: resuming DHCP: %s" % (iid, e))
            else:
                self.down(iid)
        # the queue starts now, with the resumed instances active: a teardown (also one the
        # adoption of an ended container queued) keeps a host masquerade they use
        self.booted = True
        if not self.running:
            self._next()

    def close(self):
        """The daemon exits and leaves the containers running: only the sockets go."""
        self.worker.jobs = []
        self.worker.close()
        for entry in self.active.values():
            if entry.get("dhcpd") is not None:
                entry["dhcpd"].close()
            if entry.get("dhclient") is not None:
                entry["dhclient"].close(remove_address=False)

    # -- what inspect shows ---------------------------------------------------------------

    def info(self, iid):
        entry = self.active.get(iid)
        out = {"subnet": self.allocations.subnet_of(iid),
               "wan_address": self.allocations.wan_address_of(iid)}
        if entry is None:
            return out
        plan, result = entry["plan"], entry["result"] or {}
        out["netns"] = plan["netns"]
        interfaces = {}
        if plan.get("lan"):
            interfaces[plan["lan"]["ifname"]] = "%s/%d" % (plan["lan"]["address"],
                                                          plan["lan"]["prefix"])
        if result.get("wan"):
            interfaces[plan["wan"]["ifname"]] = result["wan"]["address"]
        client = entry.get("dhclient")
        if client is not None and client.applied:
            interfaces[plan["wan"]["ifname"]] = "%s/%d" % (client.applied["address"],
                                                          client.applied["prefix"])
        out["interfaces"] = interfaces
        if entry.get("dhcpd") is not None:
            out["dhcp_leases"] = entry["dhcpd"].logic.export_leases(self.loop.time())
        return out

    # -- records --------------------------------------------------------------------------

    def _save_record(self, iid, record):
        path = self._record_path(iid)
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        atomic_write(path, json.dumps(record, sort_keys=True), 0o600, sync=False)

    def _load_record(self, iid):
        try:
            with open(self._record_path(iid), "rb") as f:
                record = json.loads(f.read())
        except FileNotFoundError:
            return None
        except ValueError as e:
            self.log("instance %s: network record unreadable (%s): removing it" % (iid, e))
            self._drop_record(iid)
            return None
        if type(record) is not dict or type(record.get("plan")) is not dict:
            return None
        return record

    def _drop_record(self, iid):
        for path in (self._record_path(iid), self._resolv_path(iid)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def host_nameservers(path="/etc/resolv.conf"):
    """The host's name servers a container can reach: loopback ones (a local stub
    resolver) are the host's alone."""
    try:
        with open(path, "rb") as f:
            text = f.read(65536).decode("utf-8", "replace")
    except OSError:
        return []
    servers = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and "." in fields[1] \
                and not fields[1].startswith("127.") and fields[1] not in servers:
            servers.append(fields[1])
    return servers[:3]


def resolv_text(servers, source):
    return "# written by edgert (from %s)\n" % source + "".join(
        "nameserver %s\n" % s for s in servers)


def write_in_place(path, text):
    """Rewrites a file the container sees through a bind mount: in place, because a rename
    would leave the mount on the old file. New text first, then the length."""
    data = text.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def fixed_ranges(services, but=None):
    """{owner: subnet} of the fixed LAN ranges (``dhcp_range``) of node services with a LAN,
    except service ``but``; ``services``: {name: service document}."""
    fixed = {}
    for name, service in services.items():
        config = (service or {}).get("network_config") or {}
        if name != but and config.get("dhcp_range") and config.get(
                "lan_configure_network", "disabled") != "disabled":
            fixed["node service \"%s\" dhcp_range" % name] = config["dhcp_range"]
    return fixed


def check_fixed_ranges(services):
    """ConfigError naming two node services whose fixed LAN ranges overlap: their LANs
    would share addresses. (Template subnets never take a fixed range: it is reserved.)"""
    from ..net import ipam
    ipam.check_disjoint(fixed_ranges(services))
