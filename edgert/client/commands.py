"""The device CLI's daemon commands: parse, call edgertd over the control socket, print.

A thin client: it imports only the protocol and the connection (never the daemon or the
runtime), so `edgert ps` starts fast on a slow CPU. Output is plain ASCII within 80 columns,
or ``--json`` from the same records. Errors are one line; exit codes follow the shell (0 ok,
1 failure, 2 usage, a container's own code for run and exec).
"""

import os
import sys

USAGE = """usage: edgert [--socket PATH] COMMAND [ARGS] [--json]

containers (node service instances):
  ps [-a]                     list instances and their state
  inspect ID                  everything about one instance
  logs [-f] [--tail N] ID     container output
  start | stop | restart ID [-t SECONDS]
  exec [-t] [-u USER] ID CMD...  run a command inside a running instance
  stats [ID]                  memory, cpu and pids from the cgroups
  events                      follow what the daemon does
  run [-t] [--name N] [-e K=V]... (--bundle DIR | IMAGE) [CMD...]
                              run a container once, in the foreground, and remove it
node services and rollouts:
  service import FILE         import a node_service_input document (new version)
  service ls | inspect NAME | rm NAME
  instance add SERVICE [--id ID] [--config-map NAME=FILE]... [--pin N|--disabled]
               [--stopped]
  instance rm ID [--purge-volumes]
  config-map set ID NAME=FILE... [--replace] | config-map rm ID NAME...
  pin ID... (VERSION | latest | disabled)   version_target_selector
  rollout-now ID              start a pending version change outside the update window
  apply -f FILE [--dry-run]   make the device match a desired-state document
  status                      the observed state of the whole device (JSON)
  settings [KEY=VALUE...]     show or change device settings (update_windows, ...)
  api-key set ROLE            store the Unwired Edge Cloud API key for ROLE, read from
                              stdin (never from the command line)
  api-key ls | api-key rm ROLE
  metrics                     the Prometheus text the /metrics endpoint serves
  ping                        check that edgertd answers
  console [--tty DEV] [--baud N]
                              these commands as a shell for a serial console
"""


class Usage(Exception):
    pass


def _opts(args, flags=(), valued=(), leading=False):
    """Splits ``args`` into ({option: value}, positional); options may come anywhere
    before a lone ``--`` (``leading``: only before the first positional, which starts a
    command line of its own); repeated valued options collect into lists."""
    options, rest = {}, []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i + 1:])
            break
        if leading and rest:
            rest.extend(args[i:])
            break
        name, eq, value = arg.partition("=")
        if name in flags and not eq:
            options[name] = True
        elif name in valued:
            if not eq:
                i += 1
                if i >= len(args):
                    raise Usage("%s needs a value" % name)
                value = args[i]
            options.setdefault(name, []).append(value)
        elif arg.startswith("-") and len(arg) > 1 and not rest:
            raise Usage("unknown option %s" % arg)
        else:
            rest.append(arg)
        i += 1
    return options, rest


def parse_run(args):
    """run's options end at the image (or, with --bundle, the command), as with docker run."""
    return _opts(args, ("--rm", "-t", "--tty"), ("--name", "-e", "--env", "--bundle"),
                 leading=True)


def _one(options, name, default=None):
    values = options.get(name)
    return values[-1] if values else default


def _int(text, what):
    try:
        return int(text)
    except (TypeError, ValueError):
        raise Usage("%s: expected a number, got %r" % (what, text)) from None


class Cli:
    def __init__(self, socket_path, out, err):
        self.socket_path = socket_path
        self.out = out
        self.err = err
        self.json = False
        self._conn = None

    def conn(self):
        if self._conn is None:
            from .conn import Connection
            self._conn = Connection(self.socket_path)
        return self._conn

    def call(self, method, params=None, fds=()):
        return self.conn().call(method, params or {}, fds)

    def write(self, text):
        self.out.write(text)

    def dump(self, value):
        from .. import jsonfast
        self.write(jsonfast.dumps_pretty(value) + "\n")

    # -- instances ------------------------------------------------------------------------

    def cmd_ps(self, args):
        options, rest = _opts(args, ("-a", "--all"))
        if rest:
            raise Usage("ps takes no arguments")
        rows = self.call("instance.list")
        if self.json:
            return self.dump(rows)
        if not options and not rows:
            self.write("no instances (add one with: edgert instance add SERVICE)\n")
            return 0
        table = [("ID", "SERVICE", "VERSION", "STATE", "PID", "UP", "NOTE")]
        for r in rows:
            version = "-" if r.get("version") is None else str(r["version"])
            if r.get("target_version") not in (None, r.get("version")):
                version += "->%s" % r["target_version"]
            table.append((r["id"], r["node_service"], version, r["state"],
                          str(r.get("pid") or "-"), _ago(r.get("started_at"), r.get("now"))
                          if r.get("pid") else "-", _note(r)))
        self.write(_table(table))
        return 0

    def cmd_inspect(self, args):
        _, rest = _opts(args)
        if len(rest) != 1:
            raise Usage("inspect ID")
        info = self.call("instance.inspect", {"id": rest[0]})
        if self.json:
            return self.dump(info)
        for key in ("id", "node_service", "state", "desired", "pid", "version",
                    "current_version", "good_version", "target_version", "failed_versions",
                    "selector", "restarts", "message"):
            value = info.get(key)
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value) or "-"
            self.write("%-16s %s\n" % (key + ":", "-" if value in (None, "") else value))
        if info.get("last_exit"):
            self.write("%-16s %s\n" % ("last exit:", _exit_text(info["last_exit"])))
        if info.get("rollout"):
            self.write("%-16s %s\n" % ("rollout:", _clip(info["rollout"].get("text", ""), 63)))
        if info.get("config_maps"):
            self.write("%-16s %s\n" % ("config maps:", ", ".join(info["config_maps"])))
        network = info.get("network") or {}
        if network.get("subnet"):
            self.write("%-16s %s\n" % ("subnet:", network["subnet"]))
        for name, address in sorted((network.get("interfaces") or {}).items()):
            self.write("%-16s %s\n" % ("%s:" % name, address))
        leases = (network.get("dhcp_leases") or {}).get("leases")
        if leases is not None:
            bound = [lease for lease in leases if lease.get("state") == "bound"]
            self.write("%-16s %d bound%s\n" % ("dhcp leases:", len(bound), "".join(
                " %s" % lease["address"] for lease in bound[:4]) + (" ..." if len(bound) > 4
                                                                    else "")))
        return 0

    def cmd_logs(self, args):
        options, rest = _opts(args, ("-f", "--follow"), ("--tail", "-n"))
        if len(rest) != 1:
            raise Usage("logs [-f] [--tail N] ID")
        tail = _one(options, "--tail", _one(options, "-n"))
        params = {"id": rest[0], "follow": bool(options.get("-f") or options.get("--follow")),
                  "tail": None if tail is None else _int(tail, "--tail")}
        out = getattr(self.out, "buffer", None)
        for kind, *rest_ in self.conn().stream("logs", params):
            if kind == "notification":
                data = rest_[1].get("data", b"")
                if out is not None:
                    out.write(data)
                    out.flush()
                else:
                    self.write(data.decode("utf-8", "replace"))
        return 0

    def cmd_start(self, args):
        return self._lifecycle("instance.start", args, timeout=False)

    def cmd_stop(self, args):
        return self._lifecycle("instance.stop", args)

    def cmd_restart(self, args):
        return self._lifecycle("instance.restart", args)

    def _lifecycle(self, method, args, timeout=True):
        options, rest = _opts(args, (), ("-t", "--time", "--timeout") if timeout else ())
        if len(rest) != 1:
            raise Usage("%s ID%s" % (method.split(".")[1], " [-t SECONDS]" if timeout else ""))
        params = {"id": rest[0]}
        if timeout:
            t = _one(options, "-t", _one(options, "--time", _one(options, "--timeout")))
            params["timeout"] = None if t is None else _int(t, "-t")
        result = self.call(method, params)
        if self.json:
            return self.dump(result)
        self.write("%s %s\n" % (rest[0], (result or {}).get("state", "ok")))
        return 0

    def cmd_exec(self, args):
        tty, user = False, None
        while args and args[0] in ("-t", "-it", "-ti", "-i", "--tty", "-u", "--user"):
            if args[0] in ("-u", "--user"):
                if len(args) < 2:
                    raise Usage("exec -u USER[:GROUP] ID CMD [ARG...]")
                user, args = args[1], args[2:]
                continue
            tty = tty or "t" in args[0]
            args = args[1:]
        if len(args) < 2:
            raise Usage("exec [-t] [-u USER[:GROUP]] ID CMD [ARG...]")
        params = {"id": args[0], "args": args[1:], "tty": tty}
        if user is not None:
            params["user"] = user
        return self._foreground("exec", params, tty)

    def cmd_run(self, args):
        options, rest = parse_run(args)
        bundle = _one(options, "--bundle")
        image = None
        if bundle is None:
            if not rest:
                raise Usage("run [-t] [--name N] [-e K=V]... (--bundle DIR | IMAGE) [CMD...]")
            image, rest = rest[0], rest[1:]
        params = {"image": image, "bundle": bundle and os.path.abspath(bundle), "args": rest,
                  "name": _one(options, "--name"),
                  "env": options.get("-e", []) + options.get("--env", []),
                  "tty": bool(options.get("-t") or options.get("--tty"))}
        return self._foreground("run", params, params["tty"])

    def _foreground(self, method, params, tty):
        """run/exec: our stdin, stdout and stderr go to the container process itself (fd
        passing); the daemon answers when it exits; ^C and friends are forwarded. With -t
        the process gets a terminal in the container instead (``_on_pty``)."""
        if tty and not os.isatty(0):
            raise Usage("-t needs a terminal on stdin")
        if tty:
            return self._on_pty(method, params)
        import _signal
        conn = self.conn()
        state = {"pid": 0}

        def forward(sig, frame):
            # on a second connection: requests on one connection are answered in order
            if state["pid"]:
                from .conn import Connection
                try:
                    extra = Connection(self.socket_path)
                    try:
                        extra.call("signal", {"pid": state["pid"], "signal": sig})
                    finally:
                        extra.close()
                except Exception:  # the process may be gone already
                    pass
        saved = {sig: _signal.signal(sig, forward) for sig in (1, 2, 3, 15)}
        code = 1
        try:
            for kind, *rest in conn.stream(method, params, fds=(0, 1, 2)):
                if kind == "notification" and rest[0] == "started":
                    state["pid"] = rest[1].get("pid", 0)
                elif kind == "result":
                    code = rest[0].get("exit_code", 1)
        finally:
            for sig, handler in saved.items():
                _signal.signal(sig, handler)
        return code

    def _on_pty(self, method, params):
        """The process gets a pty of the container's devpts; the daemon passes us its master
        with "started", and we copy between our terminal and it."""
        from .. import tty
        term = os.environ.get("TERM")
        if term and not any(e.startswith("TERM=") for e in params.get("env", [])):
            params = dict(params, env=list(params.get("env", [])) + ["TERM=" + term])
        size = tty.window_size(0)
        if size is not None:
            params = dict(params, tty_size=list(size))
        import _signal
        state = {"master": -1}

        def resized(sig, frame):
            if state["master"] >= 0:
                tty.copy_window_size(0, state["master"])
        winch = _signal.signal(28, resized)
        conn = self.conn()
        code = 1
        try:
            for kind, *rest in conn.stream(method, params):
                if kind == "notification" and rest[0] == "started":
                    fds = conn.take_fds()
                    if not fds:
                        from ..errors import EdgertError
                        raise EdgertError("edgertd sent no terminal for %s -t" % method,
                                          code="protocol")
                    state["master"] = fds.pop(0)
                    for fd in fds:
                        os.close(fd)
                    try:
                        tty.proxy(state["master"])  # until the process ends; closes the master
                    finally:
                        state["master"] = -1
                elif kind == "result":
                    code = rest[0].get("exit_code", 1)
        finally:
            _signal.signal(28, winch)
            if state["master"] >= 0:
                os.close(state["master"])
        return code

    def cmd_stats(self, args):
        _, rest = _opts(args)
        if len(rest) > 1:
            raise Usage("stats [ID]")
        rows = self.call("stats", {"id": rest[0] if rest else None})
        if self.json:
            return self.dump(rows)
        table = [("ID", "MEMORY", "LIMIT", "CPU", "PIDS", "NET RX/TX")]
        for r in rows:
            net = r.get("net") or {}
            traffic = "%s / %s" % (_bytes(sum(c["rx_bytes"] for c in net.values())),
                                   _bytes(sum(c["tx_bytes"] for c in net.values()))) \
                if net else "-"
            table.append((r["id"], _bytes(r.get("memory_bytes")), _bytes(r.get("memory_limit")),
                          "%.1fs" % (r.get("cpu_ns", 0) / 1e9), str(r.get("pids", "-")),
                          traffic))
        self.write(_table(table))
        return 0

    def cmd_events(self, args):
        _, rest = _opts(args)
        if rest:
            raise Usage("events takes no arguments")
        from .. import jsonfast
        for kind, *rest_ in self.conn().stream("events", {"since": None}):
            if kind != "notification":
                continue
            event = rest_[1]
            if self.json:
                self.write(jsonfast.dumps(event) + "\n")
            else:
                import time
                stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time", 0)))
                self.write(_clip("%s %s %s %s" % (stamp, event.get("instance") or "-",
                                                  event.get("kind"), event.get("message", "")),
                                 79) + "\n")
            if hasattr(self.out, "flush"):
                self.out.flush()
        return 0

    # -- services -------------------------------------------------------------------------

    def cmd_service(self, args):
        if not args:
            raise Usage("service import FILE | ls | inspect NAME | rm NAME")
        verb, args = args[0], args[1:]
        if verb == "import":
            if len(args) != 1:
                raise Usage("service import FILE (a node_service_input JSON document, - for "
                            "stdin)")
            doc = _read_json(args[0])
            result = self.call("service.import", {"input": doc})
            if self.json:
                return self.dump(result)
            self.write("%s version %s\n" % (result["name"], result["version"]))
            return 0
        if verb in ("ls", "list"):
            rows = self.call("service.list")
            if self.json:
                return self.dump(rows)
            table = [("NAME", "LATEST", "INSTANCES", "IMAGE")]
            for r in rows:
                table.append((r["name"], str(r.get("latest_version")), str(r.get("instances", 0)),
                              _clip(r.get("image") or "-", 40)))
            self.write(_table(table))
            return 0
        if verb == "inspect" and len(args) == 1:
            return self.dump(self.call("service.get", {"name": args[0]}))
        if verb == "rm" and len(args) == 1:
            self.call("service.remove", {"name": args[0]})
            return 0
        raise Usage("service import FILE | ls | inspect NAME | rm NAME")

    def cmd_instance(self, args):
        if not args:
            raise Usage("instance add SERVICE ... | instance rm ID")
        verb, args = args[0], args[1:]
        if verb == "add":
            options, rest = _opts(args, ("--stopped", "--disabled"),
                                  ("--id", "--config-map", "--pin"))
            if len(rest) != 1:
                raise Usage("instance add SERVICE [--id ID] [--config-map NAME=FILE]... "
                            "[--pin N|--disabled] [--stopped]")
            selector = None
            if options.get("--disabled"):
                selector = "disabled"
            elif options.get("--pin"):
                selector = "version:%d" % _int(_one(options, "--pin"), "--pin")
            doc = self.call("instance.add", {
                "service": rest[0], "id": _one(options, "--id"),
                "config_maps": _config_maps(options.get("--config-map", [])),
                "version_target_selector": selector,
                "start": not options.get("--stopped")})
            if self.json:
                return self.dump(doc)
            self.write(doc["id"] + "\n")
            return 0
        if verb == "rm":
            options, rest = _opts(args, ("--purge-volumes",))
            if len(rest) != 1:
                raise Usage("instance rm ID [--purge-volumes]")
            self.call("instance.remove", {"id": rest[0],
                                          "purge_volumes": bool(options.get("--purge-volumes"))})
            return 0
        if verb in ("ls", "list"):
            return self.cmd_ps(args)
        raise Usage("instance add SERVICE ... | instance rm ID")

    def cmd_config_map(self, args):
        if len(args) < 3 or args[0] not in ("set", "rm"):
            raise Usage("config-map set ID NAME=FILE... [--replace] | config-map rm ID NAME...")
        verb, iid, rest = args[0], args[1], args[2:]
        if verb == "set":
            options, rest = _opts(rest, ("--replace",))
            maps = _config_maps(rest)
            result = self.call("instance.set_config_maps", {
                "id": iid, "config_maps": maps, "replace": bool(options.get("--replace"))})
        else:
            result = self.call("instance.set_config_maps", {
                "id": iid, "config_maps": {name: None for name in rest}, "replace": False})
        if self.json:
            return self.dump(result)
        return 0

    def cmd_pin(self, args):
        if len(args) < 2:
            raise Usage("pin ID... (VERSION | latest | disabled)")
        what = args[-1]
        if what == "latest":
            selector = None
        elif what == "disabled":
            selector = "disabled"
        else:
            selector = "version:%d" % _int(what[8:] if what.startswith("version:") else what,
                                           "VERSION")
        self.call("instance.set_rollout_config", {"ids": args[:-1],
                                                  "version_target_selector": selector})
        return 0

    def cmd_rollout_now(self, args):
        if len(args) != 1:
            raise Usage("rollout-now ID")
        self.call("instance.rollout_now", {"id": args[0]})
        return 0

    def cmd_apply(self, args):
        options, rest = _opts(args, ("--dry-run",), ("-f", "--file"))
        path = _one(options, "-f", _one(options, "--file"))
        if rest or path is None:
            raise Usage("apply -f FILE [--dry-run]")
        result = self.call("apply", {"document": _read_json(path),
                                     "dry_run": bool(options.get("--dry-run"))})
        if self.json:
            return self.dump(result)
        for line in result.get("changes", []) or ["no changes"]:
            self.write(_clip(line, 79) + "\n")
        return 0

    def cmd_status(self, args):
        if args:
            raise Usage("status [--json]")
        return self.dump(self.call("status"))

    def cmd_metrics(self, args):
        if args:
            raise Usage("metrics takes no arguments")
        result = self.call("metrics")
        if self.json:
            return self.dump(result)
        self.write(result["text"])
        return 0

    def cmd_ping(self, args):
        result = self.call("ping")
        if self.json:
            return self.dump(result)
        self.write("edgertd %s (pid %s)\n" % (result.get("version"), result.get("pid")))
        return 0

    def cmd_settings(self, args):
        if not args:
            return self.dump(self.call("settings.get"))
        changes = {}
        for arg in args:
            key, eq, value = arg.partition("=")
            if not eq:
                raise Usage("settings KEY=VALUE... (an empty VALUE resets KEY)")
            changes[key] = value if value != "" else None
        return self.dump(self.call("settings.set", {"settings": changes}))

    def cmd_api_key(self, args):
        usage = "api-key set ROLE (the key on stdin) | api-key ls | api-key rm ROLE"
        if args == ["ls"] or args == ["list"]:
            rows = self.call("api_key.list")
            if self.json:
                return self.dump(rows)
            if not rows:
                self.write("no API keys (provision one with: edgert api-key set ROLE)\n")
                return 0
            self.write(_table([("ROLE", "FINGERPRINT")] + [(r["role"], r["fingerprint"])
                                                           for r in rows]))
            return 0
        if len(args) != 2 or args[0] not in ("set", "rm"):
            raise Usage(usage)
        if args[0] == "rm":
            result = self.call("api_key.remove", {"role": args[1]})
        else:
            result = self.call("api_key.set", {"role": args[1], "key": _read_key(args[1])})
        if self.json:
            return self.dump(result)
        self.write("%s %s, %d instance(s) updated\n" % (
            result["role"], result.get("fingerprint", "removed"), len(result["instances"])))
        return 0


COMMANDS = {
    "ps": "cmd_ps", "inspect": "cmd_inspect", "logs": "cmd_logs", "start": "cmd_start",
    "stop": "cmd_stop", "restart": "cmd_restart", "exec": "cmd_exec", "run": "cmd_run",
    "stats": "cmd_stats", "events": "cmd_events", "service": "cmd_service",
    "services": "cmd_service", "instance": "cmd_instance", "config-map": "cmd_config_map",
    "pin": "cmd_pin", "rollout-now": "cmd_rollout_now", "apply": "cmd_apply",
    "status": "cmd_status", "settings": "cmd_settings", "ping": "cmd_ping",
    "metrics": "cmd_metrics", "api-key": "cmd_api_key",
}


def default_socket():
    if os.environ.get("EDGERT_SOCKET"):
        return os.environ["EDGERT_SOCKET"]
    return os.path.join(os.environ.get("EDGERT_RUN_DIR", "/run/edgert"), "edgert.sock")


def run(argv, stdout=None, stderr=None, socket_path=None):
    """Runs one command; returns the exit code. Also the console's dispatcher."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    argv = list(argv)
    as_json = "--json" in argv
    if as_json:
        argv.remove("--json")
    if not argv or argv[0] not in COMMANDS:
        stderr.write("edgert: unknown command %r (see edgert --help)\n" % (argv[0] if argv
                                                                             else ""))
        return 2
    cli = Cli(socket_path or default_socket(), stdout, stderr)
    cli.json = as_json
    name = argv[0]
    try:
        args = argv[1:]
        if name == "services":
            args = ["ls"] + args
        code = getattr(cli, COMMANDS[name])(args)
        return code or 0
    except Usage as e:
        stderr.write("edgert %s: %s\n" % (name, e))
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except Exception as e:  # RpcError, connection errors, bad files: one line each
        from ..errors import EdgertError
        if isinstance(e, (EdgertError, OSError, ValueError)):
            stderr.write("edgert %s: %s\n" % (name, e))
            return getattr(e, "exit_code", 1) or 1
        raise
    finally:
        if cli._conn is not None:
            cli._conn.close()


# -- formatting ---------------------------------------------------------------------------

def _table(rows, width=80):
    """Left-aligned columns; the last column is clipped so a line never passes ``width``."""
    rows = [[_ascii(str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        head = "".join(cell.ljust(w + 2) for cell, w in zip(row, widths))
        lines.append(_clip(head + row[-1], width - 1).rstrip())
    return "\n".join(lines) + "\n"


def _ascii(text):
    return text.encode("ascii", "replace").decode()


def _clip(text, width):
    text = _ascii(text).replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def _bytes(n):
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return "%d%s" % (n, unit) if unit == "B" else "%.1f%s" % (n, unit)
        n /= 1024.0


def _ago(started, now):
    if not started:
        return "-"
    import time
    seconds = int((now or time.time()) - started)
    if seconds < 120:
        return "%ds" % seconds
    if seconds < 7200:
        return "%dm" % (seconds // 60)
    if seconds < 172800:
        return "%dh" % (seconds // 3600)
    return "%dd" % (seconds // 86400)


def _note(row):
    rollout = row.get("rollout")
    if rollout and not rollout.get("outcome"):
        return "rollout: %s" % rollout.get("step")
    if row.get("last_exit") and row.get("state") != "running":
        return _exit_text(row["last_exit"])
    return row.get("message") or ""


def _exit_text(info):
    kind = info.get("kind")
    if kind == "exited":
        return "exited %s" % info.get("code")
    return kind or "?"


def _read_json(path):
    from .. import jsonfast
    if path == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(path, "rb") as f:
                text = f.read(4 << 20).decode("utf-8")
        except OSError as e:
            raise OSError(e.errno, "cannot read %s: %s" % (path, e.strerror)) from None
    try:
        return jsonfast.loads(text)
    except ValueError as e:
        raise ValueError("%s is not valid JSON: %s" % (path, e)) from None


def _read_key(role):
    """The API key from stdin: typed without echo on a terminal, else the whole input with
    one line end taken off (so `printf %s "$KEY" |` and `echo "$KEY" |` both work)."""
    if os.isatty(0):
        import termios
        sys.stderr.write("API key for role %s: " % role)
        sys.stderr.flush()
        saved = termios.tcgetattr(0)
        quiet = list(saved)
        quiet[3] &= ~termios.ECHO
        termios.tcsetattr(0, termios.TCSAFLUSH, quiet)
        try:
            data = os.read(0, 8192)
        finally:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
            sys.stderr.write("\n")
    else:
        data = sys.stdin.buffer.read(8193) if hasattr(sys.stdin, "buffer") else \
            sys.stdin.read(8193).encode()
    if len(data) > 8192:
        raise ValueError("API key for role %s: stdin holds more than 8192 bytes; give the "
                         "key alone" % role)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise ValueError("API key for role %s: stdin was empty: pipe the key in, e.g. "
                         "edgert api-key set %s < keyfile" % (role, role))
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("API key for role %s is not ASCII: give the key alone" % role) \
            from None


def _config_maps(items):
    maps = {}
    for item in items:
        name, eq, path = item.partition("=")
        if not eq or not name:
            raise Usage("config map %r: expected NAME=FILE (FILE - for stdin)" % item)
        if path == "-":
            maps[name] = sys.stdin.read()
        else:
            try:
                with open(path, "rb") as f:
                    maps[name] = f.read((1 << 20) + 1).decode("utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError("config map %s: cannot read %s: %s" % (name, path, e)) from None
    return maps


run.commands = USAGE  # what the console's `help` lists
