"""edgertd: the device daemon's entry point.

    edgertd [--root DIR] [--run-dir DIR] [--socket PATH] [--config FILE]

Environment: EDGERT_ROOT, EDGERT_RUN_DIR, EDGERT_SOCKET, EDGERT_CONFIG (the options win).
The config file (JSON, default /etc/edgert/edgertd.json, absent = defaults) holds device
settings; ``edgert settings KEY=VALUE`` changes them at run time (stored under the root,
they win over the file).

SIGTERM and SIGINT end the daemon and leave the containers running: the next daemon adopts
them (an upgrade of edgert restarts no container). SIGHUP re-reads the config file.
"""

import os
import sys
import time

from ..errors import EdgertError

USAGE = "usage: edgertd [--root DIR] [--run-dir DIR] [--socket PATH] [--config FILE]\n"

DEFAULT_SETTINGS = {
    "group": None,               # a group whose members may use the control socket
    "update_windows": None,      # e.g. "Mon-Fri 02:00-04:00"; None: always open
    "unsynced_policy": "defer",  # while the clock is not NTP-synced: defer | open | window
    "log_cap_bytes": 1 << 20,    # per container, .log + .log.1 together
    "syslog": False,             # mirror container output to syslog
    "arch": None,                # the architecture whose images to run (default: this one)
    "tls_verify": True,
    "metrics_address": "127.0.0.1:9586",  # the HTTP /metrics endpoint; None: off
    "metrics_interval_s": 60,    # how often each container's /host/prometheus.prom is read
    "legacy_host_paths": False,  # deprecated /lxc.env, /.time-status, /prometheus.prom too
    "wan_address_range": None,   # WAN "allocated": e.g. "10.77.0.100-10.77.0.199" of the
                                 # host bridge's subnet; None: its upper half
    "wan_masquerade": False,     # masquerade WAN "allocated" bridges' subnets on the host
    "dhcp_lease_s": 3600,        # lease time of the containers' LAN DHCP servers
}
TIME_POLL_S = 10.0
SETTABLE = frozenset(("update_windows", "unsynced_policy"))  # the others need a restart


def parse_args(argv, environ):
    options = {"root": environ.get("EDGERT_ROOT", "/var/lib/edgert"),
               "run_dir": environ.get("EDGERT_RUN_DIR", "/run/edgert"),
               "socket": environ.get("EDGERT_SOCKET"),
               "config": environ.get("EDGERT_CONFIG", "/etc/edgert/edgertd.json")}
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        key = {"--root": "root", "--run-dir": "run_dir", "--socket": "socket",
               "--config": "config"}.get(name)
        if arg in ("-h", "--help"):
            return None
        if key is None:
            raise EdgertError("unknown option %s\n%s" % (arg, USAGE.strip()), code="usage")
        if not eq:
            if not args:
                raise EdgertError("%s needs a value" % name, code="usage")
            value = args.pop(0)
        options[key] = value
    options["root"] = os.path.abspath(options["root"])
    options["run_dir"] = os.path.abspath(options["run_dir"])
    options["socket"] = os.path.abspath(options["socket"] or os.path.join(options["run_dir"],
                                                                        "edgert.sock"))
    return options


def load_config(path):
    settings = dict(DEFAULT_SETTINGS)
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        return settings
    from ..jsonfast import loads
    try:
        doc = loads(data.decode())
    except (ValueError, UnicodeDecodeError) as e:
        raise EdgertError("config %s is not valid JSON: %s" % (path, e), code="config") from None
    if not isinstance(doc, dict):
        raise EdgertError("config %s: expected a JSON object" % path, code="config")
    unknown = sorted(set(doc) - set(DEFAULT_SETTINGS))
    if unknown:
        raise EdgertError("config %s: unknown setting(s) %s (known: %s)" % (
            path, ", ".join(unknown), ", ".join(sorted(DEFAULT_SETTINGS))), code="config")
    settings.update(doc)
    return settings


def check_settings(settings):
    from . import window
    if settings.get("update_windows"):
        window.parse(settings["update_windows"])
    if settings.get("unsynced_policy") not in ("defer", "open", "window"):
        raise EdgertError("setting unsynced_policy: expected defer, open or window, got %r"
                          % (settings.get("unsynced_policy"),), code="bad-params")
    cap = settings.get("log_cap_bytes")
    if not isinstance(cap, int) or cap < 4096:
        raise EdgertError("setting log_cap_bytes: expected a number of bytes >= 4096, got %r"
                          % (cap,), code="bad-params")
    interval = settings.get("metrics_interval_s")
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise EdgertError("setting metrics_interval_s: expected whole seconds >= 1, got %r"
                          % (interval,), code="bad-params")
    if type(settings.get("legacy_host_paths", False)) is not bool:
        raise EdgertError("setting legacy_host_paths: expected true or false, got %r"
                          % (settings.get("legacy_host_paths"),), code="bad-params")
    if settings.get("wan_address_range") is not None:
        from ..net.plan import parse_range
        parse_range(settings["wan_address_range"])
    lease = settings.get("dhcp_lease_s")
    if type(lease) is not int or not 60 <= lease <= 7 * 86400:
        raise EdgertError("setting dhcp_lease_s: %r is not a number of seconds from 60 to "
                          "604800" % (lease,), code="bad-params")
    if settings.get("metrics_address") is not None:
        from .telemetry import parse_address
        parse_address(settings["metrics_address"])
    return settings


def group_id(name):
    if name is None:
        return None
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    try:
        with open("/etc/group") as f:
            for line in f:
                fields = line.split(":")
                if len(fields) >= 3 and fields[0] == name:
                    return int(fields[2])
    except OSError:
        pass
    raise EdgertError("setting group: no group %r in /etc/group" % name, code="config")


def log_line(message):
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    try:
        sys.stderr.write("%s edgertd: %s\n" % (stamp, message))
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Daemon:
    def __init__(self, options, log=log_line):
        self.options = options
        self.log = log
        self.root = options["root"]
        self.run_dir = options["run_dir"]
        self.file_settings = check_settings(load_config(options["config"]))

    def settings(self):
        return dict(self.file_settings, **self.db.settings)

    def prepare(self):
        import fcntl
        from .. import native
        from .clock import ntp_synced
        from .db import Db
        from .images import Images
        from .loop import Loop
        from .orchestra import Orchestra
        from .supervisor import Supervisor
        os.makedirs(self.root, 0o711, exist_ok=True)
        for sub in ("", "oci", "containers", "logs", "host"):
            os.makedirs(os.path.join(self.run_dir, sub), 0o711, exist_ok=True)
        self.lock_fd = os.open(os.path.join(self.run_dir, "edgertd.lock"),
                               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgertError("another edgertd runs on %s (pid %s)" % (
                self.run_dir, os.pread(self.lock_fd, 32, 0).decode().strip() or "?"),
                code="busy") from None
        os.ftruncate(self.lock_fd, 0)
        os.pwrite(self.lock_fd, b"%d\n" % os.getpid(), 0)
        native.set_child_subreaper(True)
        self.loop = Loop(log=self.log)
        self.db = Db(self.root)
        for problem in self.db.load():
            self.log(problem)
        settings = self.settings()
        self.images = Images(self.loop, self.root, self.run_dir, settings.get("arch"),
                             settings.get("tls_verify", True),
                             synced=lambda: ntp_synced(self.run_dir))
        self.orchestra = Orchestra(self.loop, self.db, None, self.images,
                                   lambda: ntp_synced(self.run_dir), settings, self.log,
                                   self.run_dir, self.root)
        from .oneshot import Oneshot
        self.oneshot = Oneshot(self)
        syslog = None
        if settings.get("syslog"):
            from .logring import SyslogMirror
            syslog = SyslogMirror("edgert")
        self.supervisor = Supervisor(self.loop, os.path.join(self.run_dir, "oci"), self.run_dir,
                                     self._on_exit, self.log,
                                     log_cap=settings["log_cap_bytes"], syslog=syslog)
        self.supervisor.on_status = self.oneshot.on_status
        self.orchestra.sup = self.supervisor
        from .network import Network
        self.network = Network(self.loop, self.root, self.run_dir, self.settings,
                               lambda: self.db.services, self.log)
        self.orchestra.net = self.network
        from .api import Api
        from .server import Server
        self.api = Api(self)
        self.server = Server(self.loop, self.options["socket"], self.api,
                             group_gid=group_id(settings.get("group")), log=self.log)
        from ..host.metrics import Scraper
        self.scraper = Scraper()
        self.metrics_server = None
        if settings.get("metrics_address"):
            from .telemetry import MetricsServer
            self.metrics_server = MetricsServer(self.loop, settings["metrics_address"],
                                                self.render_metrics, self.log)
        self.loop.on_signal(15, self._terminate)
        self.loop.on_signal(2, self._terminate)
        self.loop.on_signal(1, self._reload)

    def _poll_time(self):
        """Keeps every container's /host/.time-status current when NTP sync comes or goes;
        update windows are judged again then too."""
        if self.time_status.poll():
            synced = self.time_status.synced
            self.log("clock %s" % ("NTP-synced" if synced else "not NTP-synced"))
            from ..host import timestatus
            for iid in list(self.db.instances):
                directory = self.images.host_dir(iid)
                if os.path.isdir(directory):
                    timestatus.write(directory, synced)
                self.orchestra.reconcile(iid)
        self.loop.call_later(TIME_POLL_S, self._poll_time)

    def render_metrics(self):
        """The /metrics body: every container's own metrics, then the runtime's."""
        from .telemetry import instance_row, runtime_metrics
        rows = []
        for iid in sorted(self.db.instances):
            status = self.orchestra.status(iid)
            stats = self.supervisor.stats(iid) if self.supervisor.running(iid) else None
            last = status.get("last_exit") or {}
            rows.append(instance_row(status, stats, last.get("oom_kills") or 0,
                                     self.supervisor.net_counters(iid)))
        return self.scraper.exposition() + runtime_metrics(rows)

    def _scrape(self):
        from .telemetry import scrape_all
        scrape_all(self.scraper, self.orchestra, self.images, time.time())
        self.loop.call_later(self.settings()["metrics_interval_s"], self._scrape)

    def _on_exit(self, name, info):
        if self.oneshot.owns(name):
            self.oneshot.on_exit(name, info)
        else:
            self.orchestra.on_exit(name, info)

    def _terminate(self, signum):
        self.log("signal %d: exiting; containers keep running and the next edgertd adopts "
                 "them" % signum)
        self.loop.stop()

    def _reload(self, signum):
        try:
            self.file_settings = check_settings(load_config(self.options["config"]))
        except EdgertError as e:
            self.log("SIGHUP: config not reloaded: %s" % e)
            return
        self.orchestra.settings = self.settings()
        self.log("SIGHUP: config reloaded")

    def set_settings(self, changes):
        unknown = sorted(set(changes) - SETTABLE)
        if unknown:
            raise EdgertError("setting(s) %s cannot be changed at run time (can: %s)" % (
                ", ".join(unknown), ", ".join(sorted(SETTABLE))), code="bad-params")
        stored = dict(self.db.settings)
        for key, value in changes.items():
            if value is None:
                stored.pop(key, None)
            else:
                stored[key] = _coerce(key, value)
        check_settings(dict(self.file_settings, **stored))
        self.db.put_settings(stored)
        self.orchestra.settings = self.settings()
        for iid in list(self.db.instances):
            self.orchestra.reconcile(iid)
        return self.settings()

    def run(self):
        self.log("started (pid %d, root %s, run dir %s, socket %s, metrics %s)" % (
            os.getpid(), self.root, self.run_dir, self.options["socket"],
            self.metrics_server.address if self.metrics_server else "off"))
        from ..host.timestatus import TimeStatus
        self.time_status = TimeStatus(self.run_dir)
        self.orchestra.boot()
        self._poll_time()
        self.loop.call_later(1.0, self._scrape)
        self.loop.run()
        self.network.close()
        self.server.close()


def _coerce(key, value):
    if key == "log_cap_bytes" and isinstance(value, str) and value.isdigit():
        return int(value)
    if key == "syslog" and isinstance(value, str):
        return value in ("1", "true", "yes", "on")
    return value


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse_args(argv, os.environ)
        if options is None:
            sys.stdout.write(USAGE)
            return 0
        daemon = Daemon(options)
        daemon.prepare()
        daemon.run()
        return 0
    except EdgertError as e:
        sys.stderr.write("edgertd: %s\n" % e)
        return 2 if e.code == "usage" else 1
