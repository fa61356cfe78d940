"""Metrics: each container's own (its /host/prometheus.prom, scraped by edgert.host.metrics)
plus the runtime's per container, served on an HTTP /metrics endpoint and over the control
socket.

The HTTP server is deliberately tiny: loopback by default, GET /metrics only, one request
per connection (HTTP/1.0 semantics), requests capped at 8 KiB and 5 s, answers written
without blocking the loop.
"""

import os
import socket

REQUEST_LIMIT = 8192
REQUEST_TIMEOUT_S = 5.0
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

RUNTIME_FAMILIES = (
    ("edgert_container_up", "gauge", "1 while the instance's container runs.", "up"),
    ("edgert_container_memory_bytes", "gauge", "Memory the container's cgroup uses.",
     "memory_bytes"),
    ("edgert_container_memory_limit_bytes", "gauge", "The container's memory limit.",
     "memory_limit"),
    ("edgert_container_cpu_seconds_total", "counter", "CPU time the container used.",
     "cpu_seconds"),
    ("edgert_container_pids", "gauge", "Processes in the container.", "pids"),
    ("edgert_container_restarts_total", "counter",
     "Quick failures in a row that the restart policy has counted.", "restarts"),
    ("edgert_container_oom_kills_total", "counter",
     "Processes of the container's last run the OOM killer ended.", "oom_kills"),
    ("edgert_instance_version", "gauge", "The version the instance runs (0: none).",
     "version"),
    ("edgert_instance_good_version", "gauge", "The instance's last committed version.",
     "good_version"),
    ("edgert_rollout_in_progress", "gauge", "1 while a rollout of the instance runs.",
     "rollout_active"),
    ("edgert_instance_failed_versions", "gauge", "Versions marked failed on this device.",
     "failed_versions"),
)


# (name, help, field of /proc/PID/net/dev) per interface of the container's namespace
NET_FAMILIES = (
    ("edgert_container_network_receive_bytes_total", "Bytes the container's interface received.",
     "rx_bytes"),
    ("edgert_container_network_receive_packets_total",
     "Packets the container's interface received.", "rx_packets"),
    ("edgert_container_network_receive_packets_dropped_total",
     "Received packets the container's interface dropped.", "rx_dropped"),
    ("edgert_container_network_transmit_bytes_total", "Bytes the container's interface sent.",
     "tx_bytes"),
    ("edgert_container_network_transmit_packets_total",
     "Packets the container's interface sent.", "tx_packets"),
    ("edgert_container_network_transmit_packets_dropped_total",
     "Packets to send the container's interface dropped.", "tx_dropped"),
)
NET_DEV_COLUMNS = {"rx_bytes": 0, "rx_packets": 1, "rx_dropped": 3,
                   "tx_bytes": 8, "tx_packets": 9, "tx_dropped": 11}
MAX_INTERFACES = 32  # a container can make links in its namespace: its series stay bounded


def parse_net_dev(text):
    """{interface: {"rx_bytes", ...}} from /proc/PID/net/dev, loopback left out, the first
    MAX_INTERFACES by name. Names come from the container (anything but "/", ":" and
    blanks); lines that do not parse are skipped."""
    counters = {}
    for line in text.splitlines()[2:]:
        name, colon, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if not colon or not name or name == "lo" or len(fields) < 16:
            continue
        try:
            values = {key: int(fields[i]) for key, i in NET_DEV_COLUMNS.items()}
        except ValueError:
            continue
        counters[name] = values
    return {name: counters[name] for name in sorted(counters)[:MAX_INTERFACES]}


def _label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def runtime_metrics(rows):
    """Prometheus text for ``rows``: one dict per instance with "id", "service" and the
    keys RUNTIME_FAMILIES name (missing keys are left out), and "net" as parse_net_dev gives
    it."""
    out = []
    for name, kind, help_text, key in RUNTIME_FAMILIES:
        samples = []
        for row in rows:
            value = row.get(key)
            if value is None:
                continue
            samples.append('%s{instance="%s",service="%s"} %s\n' % (
                name, _label(row["id"]), _label(row["service"]),
                repr(float(value)) if isinstance(value, float) else int(value)))
        if samples:
            out.append("# HELP %s %s\n# TYPE %s %s\n" % (name, help_text, name, kind))
            out.extend(samples)
    for name, help_text, key in NET_FAMILIES:
        samples = ['%s{instance="%s",service="%s",interface="%s"} %d\n' % (
            name, _label(row["id"]), _label(row["service"]), _label(interface), values[key])
            for row in rows for interface, values in sorted((row.get("net") or {}).items())]
        if samples:
            out.append("# HELP %s %s\n# TYPE %s counter\n" % (name, help_text, name))
            out.extend(samples)
    return "".join(out).encode()


def instance_row(status, stats, oom_kills, net=None):
    rollout = status.get("rollout") or {}
    row = {"id": status["id"], "service": status["node_service"],
           "up": 1 if status.get("state") == "running" else 0,
           "restarts": status.get("restarts") or 0,
           "version": status.get("version") or 0,
           "good_version": status.get("good_version") or 0,
           "rollout_active": 1 if rollout and not rollout.get("outcome") else 0,
           "failed_versions": len(status.get("failed_versions") or ()),
           "oom_kills": oom_kills, "net": net}
    if stats:
        row["memory_bytes"] = stats.get("memory_bytes")
        row["memory_limit"] = stats.get("memory_limit")
        row["pids"] = stats.get("pids")
        if stats.get("cpu_ns") is not None:
            row["cpu_seconds"] = stats["cpu_ns"] / 1e9
    return row


def parse_address(text):
    """"HOST:PORT" (IPv4 or a name; port 0 = any free one) -> (host, port)."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        from ..errors import EdgertError
        raise EdgertError("metrics_address %r: expected HOST:PORT, e.g. 127.0.0.1:9586"
                          % (text,), code="bad-params")
    return host, int(port)


class MetricsServer:
    """GET /metrics on ``address``; ``render()`` returns the body (bytes)."""

    def __init__(self, loop, address, render, log):
        self.loop = loop
        self.render = render
        self.log = log
        self.clients = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                                  | socket.SOCK_CLOEXEC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(parse_address(address))
        except OSError as e:
            self.sock.close()
            from ..errors import EdgertError
            raise EdgertError("metrics endpoint %s: %s (set metrics_address, or null to turn "
                              "it off)" % (address, e.strerror), code="config") from None
        self.sock.listen(16)
        self.address = "%s:%d" % self.sock.getsockname()
        loop.add_reader(self.sock.fileno(), self._accept)

    def close(self):
        for fd in list(self.clients):
            self._drop(fd)
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _accept(self, fd):
        while len(self.clients) < 32:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log("metrics endpoint: accept: %s" % e.strerror)
                return
            conn.setblocking(False)
            client = {"sock": conn, "data": b"", "out": b""}
            client["timer"] = self.loop.call_later(REQUEST_TIMEOUT_S, self._drop, conn.fileno())
            self.clients[conn.fileno()] = client
            self.loop.add_reader(conn.fileno(), self._read)

    def _read(self, fd):
        client = self.clients.get(fd)
        if client is None:
            return
        try:
            chunk = client["sock"].recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(fd)
            return
        client["data"] += chunk
        if b"\r\n\r\n" not in client["data"] and b"\n\n" not in client["data"]:
            if len(client["data"]) > REQUEST_LIMIT:
                self._answer(fd, b"431 Request Header Fields Too Large", b"request too large\n")
            return
        line = client["data"].split(b"\n", 1)[0].strip().split()
        if len(line) < 2 or line[0] not in (b"GET", b"HEAD"):
            self._answer(fd, b"405 Method Not Allowed", b"only GET /metrics\n")
        elif line[1].split(b"?")[0] != b"/metrics":
            self._answer(fd, b"404 Not Found", b"only /metrics is served here\n")
        else:
            try:
                body = self.render()
            except Exception as e:  # never take the daemon down for a scrape
                self.log("metrics endpoint: %s: %s" % (type(e).__name__, e))
                self._answer(fd, b"500 Internal Server Error", b"see the daemon log\n")
                return
            self._answer(fd, b"200 OK", body if line[0] == b"GET" else b"",
                         CONTENT_TYPE, len(body))

    def _answer(self, fd, status, body, content_type=b"text/plain", length=None):
        client = self.clients[fd]
        self.loop.remove_reader(fd)
        client["out"] = b"HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" \
                        b"Connection: close\r\n\r\n%s" % (
                            status, content_type, len(body) if length is None else length,
                            body)
        self.loop.add_writer(fd, self._write)

    def _write(self, fd):
        client = self.clients.get(fd)
        if client is None:
            return
        try:
            sent = client["sock"].send(client["out"])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        client["out"] = client["out"][sent:]
        if not client["out"]:
            self._drop(fd)

    def _drop(self, fd):
        client = self.clients.pop(fd, None)
        if client is None:
            return
        client["timer"].cancel()
        self.loop.remove_reader(fd)
        self.loop.remove_writer(fd)
        client["sock"].close()


def scrape_all(scraper, orchestra, images, now):
    """Reads every instance's /host/prometheus.prom (labels: instance, service, version);
    with the setting legacy_host_paths, the deprecated /prometheus.prom of its rootfs
    where /host has none."""
    legacy = orchestra.settings.get("legacy_host_paths")
    for iid, doc in list(orchestra.db.instances.items()):
        live = orchestra.live.get(iid)
        path = os.path.join(images.host_dir(iid), "prometheus.prom")
        labels = (("service", doc["node_service"]),
                  ("version", str(live.version if live and live.version else "")))
        fallback = None
        if legacy:
            fallback = (os.path.join(orchestra.sup.container_dir(iid), "rootfs"),
                        "prometheus.prom")
        scraper.scrape(iid, path, now, labels, fallback)
    for iid in [i for i in list(scraper._instances) if i not in orchestra.db.instances]:
        scraper.forget(iid)
