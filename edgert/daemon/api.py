"""The control socket's method handlers: validated params in, results out.

server.py has already checked the peer and validated the params against proto/schema.py.
A handler returns its result, or ``DEFER`` and answers later through ``req.reply`` /
``req.fail`` (stop, remove, run, exec, streams), sending ``req.notify`` on the way.
"""

import os
import time

from .. import __version__
from ..errors import EdgertError, NotFound, StateError
from . import model
from .orchestra import iso_now

DEFER = object()
FOLLOW_POLL_S = 0.25
LOG_CHUNK = 32 << 10


class Request:
    """One call, as the handlers see it (the server's connection stays behind it)."""

    def __init__(self, conn, msgid, method, params, fds):
        self.conn = conn
        self.msgid = msgid
        self.method = method
        self.params = params
        self.fds = fds if fds is not None else []  # the server closes what is left in it
        self.done = False
        self.deferred = False  # the server waits for conn.respond
        self.early = None      # an answer given before the handler returned

    def _respond(self, error, result):
        if self.deferred:
            self.conn.respond(self.msgid, error, result)
        else:
            self.early = (error, result)

    def notify(self, method, params, fds=()):
        """A notification of this call's stream; ``fds`` go with it (the connection's now)."""
        if self.done:
            _close(fds)
        else:
            self.conn.notify(method, params, fds)

    def reply(self, result):
        if not self.done:
            self.done = True
            self._respond(None, result)

    def fail(self, exc):
        if not self.done:
            self.done = True
            self._respond(exc, None)

    def take_fds(self):
        taken = list(self.fds)
        self.fds.clear()
        return taken


class Api:
    def __init__(self, daemon):
        self.daemon = daemon
        self.orchestra = daemon.orchestra
        self.db = daemon.db
        self.sup = daemon.supervisor
        self.foreground = {}  # pid -> (conn, name) of run/exec processes, for signal

    def handle(self, conn, method, params, fds):
        """The server's entry point (server.py): the result, or STREAM for a later answer."""
        from .server import STREAM
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            raise EdgertError("method %s is declared but has no handler" % method,
                              code="unknown-method")
        req = Request(conn, conn.msgid, method, params, fds)
        result = handler(req)
        if result is not DEFER:
            return result
        if req.early is not None:  # answered already, from inside the handler
            error, result = req.early
            if error is not None:
                raise error
            return result
        req.deferred = True
        return STREAM

    # -- basics ---------------------------------------------------------------------------

    def m_ping(self, req):
        return {"version": __version__, "pid": os.getpid()}

    def m_settings_get(self, req):
        return self.daemon.settings()

    def m_settings_set(self, req):
        return self.daemon.set_settings(req.params["settings"])

    # -- services -------------------------------------------------------------------------

    def m_service_import(self, req):
        return self.import_service(req.params["input"])

    def import_service(self, doc):
        name = doc.get("name") if isinstance(doc, dict) else None
        existing = self.db.services.get(name) if isinstance(name, str) else None
        service, number = model.import_service(existing, doc, iso_now())
        if existing is None:  # network_config is fixed by the first import
            self.daemon.network.check_new_service(service)
        self.db.put_service(service)
        self.orchestra.emit(None, "service-imported", "%s version %d" % (service["name"],
                                                                        number))
        for iid, inst in list(self.db.instances.items()):
            if inst["node_service"] == service["name"]:
                self.orchestra.reconcile(iid)
        return {"name": service["name"], "version": number}

    def m_service_list(self, req):
        rows = []
        counts = {}
        for inst in self.db.instances.values():
            counts[inst["node_service"]] = counts.get(inst["node_service"], 0) + 1
        arch = self.daemon.images.arch
        for name in sorted(self.db.services):
            service = self.db.services[name]
            latest = service["versions"][-1] if service.get("versions") else {}
            image = [s["image_reference"] for s in latest.get("image_sources", [])
                     if s.get("arch") == arch]
            rows.append({"name": name, "latest_version": latest.get("version"),
                         "versions": [v["version"] for v in service.get("versions", [])],
                         "instances": counts.get(name, 0),
                         "image": image[0] if image else None})
        return rows

    def m_service_get(self, req):
        service = self.db.services.get(req.params["name"])
        if service is None:
            raise NotFound("no node service %r (see edgert service ls)" % req.params["name"])
        return model.redact(service)

    def m_service_remove(self, req):
        name = req.params["name"]
        if name not in self.db.services:
            raise NotFound("no node service %r (see edgert service ls)" % name)
        users = sorted(i for i, d in self.db.instances.items() if d["node_service"] == name)
        if users:
            raise StateError("node service %s still has instances (%s): remove them first"
                             % (name, ", ".join(users)), code="in-use")
        self.db.remove_service(name)
        return None

    # -- instances ------------------------------------------------------------------------

    def m_instance_add(self, req):
        p = req.params
        doc = self.orchestra.add_instance(p["service"], p.get("id"), p.get("config_maps") or {},
                                          p.get("version_target_selector"),
                                          p.get("start", True))
        return self.orchestra.status(doc["id"])

    def m_instance_remove(self, req):
        self.orchestra.remove_instance(req.params["id"], req.params.get("purge_volumes", False),
                                       lambda info: req.reply(None))
        return DEFER

    def m_instance_list(self, req):
        return [self.orchestra.status(iid) for iid in sorted(self.db.instances)]

    def m_instance_inspect(self, req):
        info = self.orchestra.status(req.params["id"])
        doc = self.db.instances[req.params["id"]]
        info["images"] = {v: {"reference": i.get("reference"), "digest": i.get("digest")}
                          for v, i in (doc.get("images") or {}).items()}
        info["log"] = self.sup.ring(req.params["id"]).path
        return info

    def m_instance_set_config_maps(self, req):
        p = req.params
        return self.orchestra.set_config_maps(p["id"], p["config_maps"], p.get("replace"))

    def m_instance_set_rollout_config(self, req):
        self.orchestra.set_selector(req.params["ids"], req.params["version_target_selector"])
        return None

    def m_instance_start(self, req):
        self.orchestra.start(req.params["id"])
        return self.orchestra.status(req.params["id"])

    def m_instance_stop(self, req):
        iid = req.params["id"]
        self.orchestra.stop(iid, req.params.get("timeout"),
                            lambda info: req.reply(self.orchestra.status(iid)))
        return DEFER

    def m_instance_restart(self, req):
        iid = req.params["id"]
        self.orchestra.restart(iid, req.params.get("timeout"),
                               lambda info: req.reply(self.orchestra.status(iid)))
        return DEFER

    def m_instance_rollout_now(self, req):
        self.orchestra.rollout_now(req.params["id"])
        return self.orchestra.status(req.params["id"])

    def m_stats(self, req):
        ids = [req.params["id"]] if req.params.get("id") else sorted(self.db.instances)
        rows = []
        for iid in ids:
            self.orchestra.instance(iid)
            row = {"id": iid}
            if self.sup.running(iid):
                row.update(self.sup.stats(iid))
                net = self.sup.net_counters(iid)
                if net is not None:
                    row["net"] = net
            rows.append(row)
        return rows

    # -- streams --------------------------------------------------------------------------

    def m_events(self, req):
        since = req.params.get("since")
        for event in self.orchestra.events:
            if since is None or event["seq"] > since:
                req.notify("event", event)

        def send(event):
            req.notify("event", event)
        self.orchestra.subscribers.append(send)
        req.conn.on_close(lambda conn: _discard(self.orchestra.subscribers, send))
        return DEFER

    def m_logs(self, req):
        iid = req.params["id"]
        self.orchestra.instance(iid)
        ring = self.sup.ring(iid)
        data = ring.read_tail(req.params.get("tail"))
        for i in range(0, len(data), LOG_CHUNK):
            req.notify("log", {"data": data[i:i + LOG_CHUNK]})
        if not req.params.get("follow"):
            return {"bytes": len(data)}
        state = {"pos": ring.end_position(), "timer": None}

        def poll():
            if req.done:
                return
            chunk, state["pos"] = ring.read_from(state["pos"])
            if chunk:
                req.notify("log", {"data": chunk})
            state["timer"] = self.daemon.loop.call_later(FOLLOW_POLL_S, poll)

        def closed(conn):
            if state["timer"] is not None:
                state["timer"].cancel()
            req.done = True
        req.conn.on_close(closed)
        state["timer"] = self.daemon.loop.call_later(FOLLOW_POLL_S, poll)
        return DEFER

    # -- foreground processes ------------------------------------------------------------

    def m_exec(self, req):
        p = req.params
        iid = p["id"]
        self.orchestra.instance(iid)
        if not self.sup.running(iid):
            raise StateError("instance %s is not running (edgert start %s)" % (iid, iid),
                             code="not-running")
        fds = req.take_fds()
        tty_size = None
        if p.get("tty"):
            _close(fds)  # the process gets a terminal of its own
            fds = []
            from ..runtime.console import console_size
            tty_size = console_size(p.get("tty_size"))
        elif len(fds) != 3:
            _close(fds)
            raise EdgertError("exec needs the caller's stdin, stdout and stderr (3 fds)",
                              code="bad-params")

        def finished(code):
            self.foreground.pop(pid, None)
            req.reply({"exit_code": code})
        try:
            pid, master = self.sup.exec(iid, p["args"], env=p.get("env") or None,
                                        cwd=p.get("cwd"), stdio=tuple(fds) or None,
                                        on_done=finished, tty_size=tty_size,
                                        user=p.get("user"))
        finally:
            _close(fds)
        self.foreground[pid] = (req.conn, iid)
        req.notify("started", {"pid": pid}, fds=[master] if master is not None else ())
        return DEFER

    def m_run(self, req):
        p = req.params
        fds = req.take_fds()
        if p.get("tty"):
            _close(fds)  # the container gets a terminal of its own
            fds = []
        elif len(fds) != 3:
            _close(fds)
            raise EdgertError("run needs the caller's stdin, stdout and stderr (3 fds)",
                              code="bad-params")
        started = {"pid": 0}

        def finished(code):
            self.foreground.pop(started["pid"], None)
            req.reply({"exit_code": code})
        try:
            name, pid, master = self.daemon.oneshot.run(p, tuple(fds), finished)
        finally:
            _close(fds)
        started["pid"] = pid
        self.foreground[pid] = (req.conn, name)
        req.notify("started", {"pid": pid, "name": name},
                   fds=[master] if master is not None else ())
        req.conn.on_close(lambda conn: self.daemon.oneshot.abandon(name))
        return DEFER

    def m_signal(self, req):
        pid = req.params["pid"]
        if pid not in self.foreground:
            raise NotFound("pid %d is not a process that run or exec started" % pid)
        try:
            os.kill(pid, req.params["signal"])
        except ProcessLookupError:
            pass
        return None

    def m_metrics(self, req):
        return {"text": self.daemon.render_metrics().decode()}

    # -- API keys (provisioned by the firmware's cloud agent) ----------------------------

    def m_api_key_set(self, req):
        from ..host import apikeys
        role, key = apikeys.check_role(req.params["role"]), req.params["key"]
        self.daemon.images.api_keys.set(role, key)
        return {"role": role, "fingerprint": apikeys.fingerprint(key),
                "instances": self.orchestra.refresh_api_keys(role)}

    def m_api_key_remove(self, req):
        role = req.params["role"]
        self.daemon.images.api_keys.remove(role)
        return {"role": role, "instances": self.orchestra.refresh_api_keys(role)}

    def m_api_key_list(self, req):
        return self.daemon.images.api_keys.listing()

    # -- whole-device documents ----------------------------------------------------------

    def m_status(self, req):
        settings = self.daemon.settings()
        is_open, why = self.orchestra.window_open()
        return {
            "device": {"arch": self.daemon.images.arch, "time": time.time(),
                       "ntp_synced": bool(self.orchestra.clock()), "update_window_open": is_open,
                       "update_window": settings.get("update_windows"), "window_reason": why,
                       "edgert_version": __version__,
                       "metrics_address": self.daemon.metrics_server.address
                       if self.daemon.metrics_server else None},
            "node_services": self.m_service_list(req),
            "instances": self.m_instance_list(req),
        }

    def m_apply(self, req):
        doc = req.params["document"]
        state = {"services": self.db.services, "instances": self.db.instances}
        from .main import check_settings
        ops = model.plan_apply(state, doc, check_settings)
        changes = [describe_op(op) for op in ops]
        new = {op[1]["name"]: model.import_service(None, op[1], iso_now())[0] for op in ops
               if op[0] == "import" and op[1]["name"] not in self.db.services}
        for service in new.values():  # all checked before anything changes
            self.daemon.network.check_new_service(service, others=new)
        if req.params.get("dry_run"):
            return {"changes": changes, "applied": False}
        for op in ops:
            self.apply_op(op)
        return {"changes": changes, "applied": True}

    def apply_op(self, op):
        kind = op[0]
        if kind == "import":
            self.import_service(op[1])
        elif kind == "add_instance":
            _, iid, service, maps, selector = op
            self.orchestra.add_instance(service, iid, maps or {}, selector, True)
        elif kind == "remove_instance":
            self.orchestra.remove_instance(op[1], False, lambda info: None)
        elif kind == "set_config_maps":
            self.orchestra.set_config_maps(op[1], op[2], True)
        elif kind == "set_selector":
            self.orchestra.set_selector([op[1]], op[2])
        elif kind == "set_settings":
            self.daemon.set_settings(op[1])
        else:
            raise StateError("apply: unknown operation %r" % (kind,))


def describe_op(op):
    kind = op[0]
    if kind == "import":
        return "import node service %s (new version)" % op[1].get("name")
    if kind == "add_instance":
        return "add instance %s of %s" % (op[1], op[2])
    if kind == "remove_instance":
        return "remove instance %s" % op[1]
    if kind == "set_config_maps":
        return "set config maps of %s (%s)" % (op[1], ", ".join(sorted(op[2])) or "none")
    if kind == "set_selector":
        return "set version_target_selector of %s to %s" % (op[1], op[2])
    if kind == "set_settings":
        return "change settings %s" % ", ".join(sorted(op[1]))
    return str(kind)


def _discard(items, item):
    if item in items:
        items.remove(item)


def _close(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass

