"""Desired state to running containers, one step at a time.

For each instance the orchestra either runs a rollout step or keeps the current version
alive (restart policy). A rollout step is planned by ``rollout.py`` (pure), recorded in the
instance document *before* it runs (write-ahead), executed here, and its result fed back; a
crash at any point leaves a document that ``rollout.recover`` continues from, with what the
supervisor observed (which version's container is running).

Per instance, at most one action is in flight (``live.busy``); everything is driven by the
event loop: image pulls run in a child process (fetch.py), container starts are synchronous
(tens of ms), stops and health watches complete through callbacks.

Rules beyond the rollout machine (docs/daemon.md, "Orchestration"):
- A first deployment (no current version) starts at once; version *changes* wait for an
  update window unless the instance has a one-shot override (``instance.rollout_now``).
- ``disabled`` instances keep their lifecycle (restart policy, start/stop) but never change
  version.
- A container that powers itself off (poweroff/halt) is left stopped, durably: it starts
  again only when someone starts it.
"""

import os
import time

from ..errors import EdgertError, NotFound, StateError
from . import model, restart, rollout, window

EVENT_HISTORY = 1000
# error codes of a start that failed for want of something on the host (retried, not blamed
# on the version): a missing bridge or interface, a missing device node, no free subnet or
# WAN address
HOST_LACKS = frozenset(("no-interface", "no-device", "no-address", "subnets-exhausted"))
TICK_S = 15.0


class Live:
    """What the daemon knows about an instance beyond its document; rebuilt at start."""

    def __init__(self):
        self.phase = "stopped"
        self.pid = None
        self.version = None
        self.started_at = None
        self.restart = {}
        self.timer = None        # restart backoff
        self.retry_timer = None  # a rollout step waiting for its retry
        self.busy = None
        self.starting = None     # a start waiting for its network (cancelled by clearing)
        self.watch = None
        self.fetch = None
        self.on_stopped = []
        self.last_exit = None
        self.message = ""


class Orchestra:
    def __init__(self, loop, db, supervisor, images, clock, settings, log, run_dir, root):
        self.loop = loop
        self.net = None          # network.Network, set by the daemon
        self.db = db
        self.sup = supervisor
        self.images = images
        images.on_missing_key = lambda iid, message: self.emit(iid, "api-key-missing", message)
        self.clock = clock
        self.settings = settings
        self.log = log
        self.run_dir = run_dir
        self.root = root
        self.live = {}
        self.events = []
        self.event_seq = 0
        self.subscribers = []
        self.tick_timer = None
        self.window_timer = None

    # -- events ---------------------------------------------------------------------------

    def emit(self, iid, kind, message, **extra):
        self.event_seq += 1
        event = dict(extra, seq=self.event_seq, time=time.time(), instance=iid, kind=kind,
                     message=message)
        self.events.append(event)
        del self.events[:-EVENT_HISTORY]
        self.log("%s %s: %s" % (iid or "-", kind, message))
        for callback in list(self.subscribers):
            callback(event)

    # -- start-up -------------------------------------------------------------------------

    def boot(self):
        """Adopts the containers a previous daemon left, resumes rollouts, starts the rest."""
        adopted = {}
        for iid, status in self.sup.adopt():
            adopted[iid] = status
        # the networks of adopted containers resume (DHCP); the rest a crash left go
        self.net.boot({iid for iid in adopted if self.sup.running(iid)})
        for iid in list(self.db.instances):
            live = self.live.setdefault(iid, Live())
            doc = self.db.instances[iid]
            pid = self.sup.running(iid)
            if pid:
                live.pid = pid
                live.phase = "running"
                live.version = self.sup.version_of(iid)
                live.started_at = time.time()
                live.restart = restart.on_start(live.restart, self.loop.time())
                self._refresh_host_files(iid, doc, live.version)
            if doc.get("rollout") and not rollout.finished(doc["rollout"]):
                observed = {"running_version": live.version if pid else None,
                            "container_exists": bool(pid)}
                doc = with_rollout(doc, rollout.recover(doc["rollout"], observed,
                                                        self.loop.time()))
                self._save(doc)
                self.emit(iid, "rollout-resumed", rollout.describe(doc["rollout"]))
            elif pid and live.version != doc.get("current_version"):
                self.emit(iid, "adopted", "running version %s" % live.version)
        for iid in adopted:
            if iid not in self.db.instances:
                self.log("container %s belongs to no instance: stopping it" % iid)
                self.sup.stop(iid, 10)
        for iid in list(self.db.instances):
            self.reconcile(iid)
        self._tick()

    def _refresh_host_files(self, iid, doc, version_number):
        """An adopted container's /host as of now: what changed while no daemon ran (a key
        set just before a crash, the clock's sync) reaches it."""
        service = self.db.services.get(doc["node_service"])
        try:
            version = model.find_version(service, version_number) if service else None
        except NotFound:
            version = None
        if version is None:
            return
        try:
            self.images.write_host_files(iid, doc, service, version, synced=self.clock())
        except (EdgertError, OSError) as e:
            self.log("instance %s: refreshing /host: %s" % (iid, e))

    def _tick(self):
        for iid in list(self.db.instances):
            self.reconcile(iid)
        self.tick_timer = self.loop.call_later(TICK_S, self._tick)

    # -- the decision -----------------------------------------------------------------------

    def reconcile(self, iid):
        doc = self.db.instances.get(iid)
        live = self.live.setdefault(iid, Live())
        if doc is None or live.busy:
            return
        now = self.loop.time()
        rec = doc.get("rollout")
        service = self.db.services.get(doc["node_service"])
        if rec and not rollout.finished(rec):
            if rec.get("retry_at") and rec["retry_at"] > now:
                target = model.target_version(service, doc)[0] if service else None
                if target != rec["to_version"]:
                    try:
                        rec = rollout.abandon(rec, now, "the target is now version %s" % target)
                    except StateError:
                        rec = None
                    if rec is not None:
                        self._save(dict(doc, rollout=stamped(rec)))
                        self.emit(iid, "rollout-abandoned", rollout.describe(rec))
                        self.reconcile(iid)
                        return
                self._keep_alive(iid, doc, live)
                self._wake(iid, rec["retry_at"] - now)
                return
            self._run_step(iid, doc, rec)
            return
        if service is None:
            live.message = "node service %s is gone" % doc["node_service"]
            return
        target, reason = model.target_version(service, doc)
        if doc.get("desired") == "running" and target is not None:
            is_open, why = self.window_open()
            first = doc.get("current_version") is None
            if first or rollout.pending_target(doc, target, is_open or bool(doc.get("override")),
                                              now):
                if target != doc.get("current_version"):
                    self._begin(iid, doc, target, first, why)
                    return
            elif target != doc.get("current_version"):
                live.message = "version %s waits: %s" % (target, why)
                if not is_open:
                    self._wake_at_window_change()
        elif target is None and doc.get("current_version") is None:
            live.message = reason
        self._keep_alive(iid, doc, live)

    def window_open(self):
        windows = self.settings.get("update_windows")
        if not windows:
            return True, "no update window set"
        parsed = window.parse(windows)
        return window.is_open(parsed, time.localtime(), self.clock(),
                              self.settings.get("unsynced_policy", "defer"))

    def _wake_at_window_change(self):
        """A change the update window defers starts when the window opens, not up to TICK_S
        later; the tick still covers changes further off (and clock jumps)."""
        delay = window.next_change(window.parse(self.settings.get("update_windows")),
                                   time.localtime())
        if delay is None or delay > TICK_S:
            return
        if self.window_timer is not None:
            self.window_timer.cancel()

        def fire():
            self.window_timer = None
            for iid in list(self.db.instances):
                self.reconcile(iid)
        # localtime() drops the fraction of a second, so this is never early; the delay is 0
        # only in a leap second, where it would spin
        self.window_timer = self.loop.call_later(max(delay, 1.0), fire)

    def _begin(self, iid, doc, target, first, why):
        service = self.db.services[doc["node_service"]]
        version = model.find_version(service, target)
        rid = (doc.get("rollout") or {}).get("id", 0) + 1
        rec = rollout.begin(doc.get("current_version"), target,
                            version.get("rollout_strategy", "download-then-stop"),
                            self.loop.time(), rid)
        doc = dict(doc, rollout=stamped(rec), override=False)
        self._save(doc)
        self.emit(iid, "rollout-started", "version %s -> %s (%s)" % (
            doc.get("current_version"), target, "first deployment" if first else why))
        self.reconcile(iid)

    def _keep_alive(self, iid, doc, live):
        if doc.get("desired") != "running" or live.phase != "stopped":
            return
        version = supervised(doc)
        if version is None:
            return
        self._start(iid, doc, live, version, lambda ok, msg="", retry=False: None)

    def _wake(self, iid, delay):
        live = self.live[iid]
        if live.retry_timer is not None:
            live.retry_timer.cancel()

        def fire():
            live.retry_timer = None
            self.reconcile(iid)
        live.retry_timer = self.loop.call_later(max(delay, 0.05), fire)

    # -- rollout steps --------------------------------------------------------------------

    def _run_step(self, iid, doc, rec):
        live = self.live[iid]
        action = rollout.action(rec)
        kind = action[0]
        if kind == "none":
            return
        live.busy = kind
        rid, step = rec["id"], rec["step"]

        def done(ok, message="", retryable=False):
            self.loop.call_soon(self._step_done, iid, rid, step, ok, message, retryable)
        try:
            if kind == "fetch":
                self._fetch(iid, doc, action[1], done)
            elif kind == "prepare":
                self._prepare(iid, doc, action[1])
                done(True)
            elif kind == "stop":
                self._stop(iid, self._grace(doc, action[1]), lambda info: done(True))
            elif kind == "start":
                if action[2] and self.sup.running(iid):  # a leftover container goes first
                    self._stop(iid, self._grace(doc, live.version),
                               lambda info: self._start(iid, self.db.instances[iid], live,
                                                        action[1], done))
                else:
                    self._start(iid, doc, live, action[1], done)
            elif kind == "watch":
                self._watch(iid, doc, action[1], action[2], done)
            elif kind == "commit":
                self._commit(iid, doc, action[1])
                done(True)
            elif kind == "mark_failed":
                failed = sorted(set(doc.get("failed_versions", [])) | {action[1]})
                self._save(dict(doc, failed_versions=failed))
                self.emit(iid, "version-failed", "version %s marked failed on this device: %s"
                          % (action[1], action[2]))
                done(True)
            else:
                raise StateError("rollout step %r has unknown action %r" % (step, kind))
        except EdgertError as e:
            done(False, str(e), False)
        except OSError as e:
            done(False, "%s: %s" % (step, e), True)

    def _step_done(self, iid, rid, step, ok, message, retryable):
        live = self.live.get(iid)
        doc = self.db.instances.get(iid)
        if live is None or doc is None:
            return
        live.busy = None
        rec = doc.get("rollout")
        if not rec or rec["id"] != rid or rec["step"] != step:
            return  # the instance was removed or changed under the action
        result = ("ok",) if ok else ("error", message, retryable)
        rec = rollout.advance(rec, result, self.loop.time(), step=step)
        self._save(with_rollout(self.db.instances[iid], rec))
        if not ok:
            self.emit(iid, "step-failed", "%s: %s" % (step, message))
        if rollout.finished(rec):
            self.emit(iid, "rollout-" + str(rec.get("outcome")), rollout.describe(rec))
        self.reconcile(iid)

    def _grace(self, doc, version_number):
        service = self.db.services.get(doc["node_service"])
        try:
            return model.find_version(service, version_number).get("stop_grace_s", 10)
        except (NotFound, AttributeError, TypeError):
            return 10

    def _fetch(self, iid, doc, version_number, done):
        service = self.db.services[doc["node_service"]]
        version = model.find_version(service, version_number)
        source = self.images.source_for(service, version)
        live = self.live[iid]
        live.phase = live.phase if live.pid else "pulling"
        self.net.expect(service, version)

        def progress(event):
            self.emit(iid, "pull-progress", event.get("message") or event.get("event", ""),
                      detail=event)

        def finished(ok, message, retryable):
            live.fetch = None
            if ok:  # the digest: what prepare uses (archives name their records themselves)
                current = self.db.instances.get(iid)
                if current is not None:
                    pulled = dict(current.get("pulled") or {})
                    pulled[str(version_number)] = message
                    self._save(dict(current, pulled=pulled))
                self.emit(iid, "pulled", "%s: %s" % (source["image_reference"], message))
            done(ok, message, retryable)
        live.fetch = self.images.fetch(source, progress, finished)

    def _prepare(self, iid, doc, version_number):
        service = self.db.services[doc["node_service"]]
        version = model.find_version(service, version_number)
        digest = (doc.get("pulled") or {}).get(str(version_number))
        image = self.images.describe(self.images.source_for(service, version), digest)
        key = snapshot_key(iid, version_number)
        self.images.fresh_layer(key, image["chain"])
        images = dict(doc.get("images") or {})
        images[str(version_number)] = image
        self._save(dict(doc, images=images))

    def _commit(self, iid, doc, version_number):
        old = doc.get("good_version")
        doc = dict(doc, current_version=version_number, good_version=version_number)
        images = dict(doc.get("images") or {})
        for v in list(images):
            if int(v) != version_number:
                images.pop(v)
                self.images.drop_layer(snapshot_key(iid, int(v)))
        self._save(dict(doc, images=images))
        self.emit(iid, "committed", "version %s is good (was %s)" % (version_number, old))

    def _watch(self, iid, doc, version_number, started_at, done):
        from .health import Watch
        live = self.live[iid]
        service = self.db.services[doc["node_service"]]
        hc = model.find_version(service, version_number).get("health_check") or {}
        if not live.pid:
            done(False, "version %s is not running" % version_number, False)
            return

        def verdict(healthy, reason=""):
            live.watch = None
            if healthy:
                self.emit(iid, "healthy", "version %s: %s" % (version_number, reason or "ok"))
            done(healthy, reason)
        target = {"pid": live.pid, "exec": self.sup.exec_probe(iid)}
        live.watch = Watch(self.loop, hc, target, verdict,
                           started_at if started_at is not None else self.loop.time())

    # -- container lifecycle -------------------------------------------------------------

    def _start(self, iid, doc, live, version_number, done):
        """Network first (a forked child, so the loop goes on), then the container."""
        service = self.db.services[doc["node_service"]]
        image = (doc.get("images") or {}).get(str(version_number))
        if image is None:
            done(False, "version %s was never prepared on this device" % version_number, False)
            return
        version = model.find_version(service, version_number)
        live.phase = "starting"
        token = live.starting = object()

        def failed(error):
            live.phase = "stopped"
            live.message = message = str(error)
            self.emit(iid, "start-failed", message)
            # a host that lacks a bridge, a device or free addresses does not fail the version
            done(False, message, getattr(error, "code", None) in HOST_LACKS)

        def network_ready(error, net):
            if live.starting is not token:   # stopped or removed meanwhile
                if error is None:
                    self.net.down(iid)
                done(False, "the start was cancelled", False)
                return
            live.starting = None
            if error is not None:
                failed(error)
                return
            try:  # the document as it is now (config maps may have changed meanwhile)
                config, mounts = self.images.container_config(
                    iid, self.db.instances.get(iid, doc), service, version, image, net)
                pid = self.sup.start(iid, config, mounts,
                                     prepare_rootfs=self.images.rootfs_hook(self.settings))
            except EdgertError as e:
                if net:
                    self.net.down(iid)
                failed(e)
                return
            live.pid, live.version, live.phase = pid, version_number, "running"
            live.message = ""
            live.started_at = time.time()
            live.restart = restart.on_start(live.restart, self.loop.time())
            current = self.db.instances.get(iid)
            if current is not None and current.get("current_version") != version_number:
                self._save(dict(current, current_version=version_number))
            self.emit(iid, "started", "version %s, pid %d" % (version_number, pid))
            done(True)
        self.net.up(iid, service, version, network_ready)

    def _stop(self, iid, grace, on_stopped):
        live = self.live[iid]
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        if not live.pid:
            if live.phase in ("backoff", "crash-loop") or live.starting is not None:
                live.starting = None
                live.phase = "stopped"
            on_stopped(None)
            return
        live.on_stopped.append(on_stopped)
        live.phase = "stopping"
        self.sup.stop(iid, grace)

    def on_exit(self, iid, info):
        """The supervisor's report: instance ``iid``'s container ended."""
        live = self.live.setdefault(iid, Live())
        live.pid = None
        live.last_exit = info
        waiting, live.on_stopped = live.on_stopped, []
        live.phase = "stopped"
        self.emit(iid, "exited", describe_exit(info), exit=info)
        doc = self.db.instances.get(iid)
        if live.watch is not None:
            live.watch.container_exited(info)
        if waiting:  # a stop (or removal) is done when the network is down too
            self.net.down(iid, lambda: [callback(info) for callback in waiting])
            return
        self.net.down(iid)
        if doc is None or live.busy or live.watch is not None or supervised(doc) is None:
            return
        if info.get("kind") == "stopped-by-container":
            self._save(dict(doc, desired="stopped"))
            self.emit(iid, "stays-stopped", "the container powered itself off: start it with "
                      "`edgert start %s`" % iid)
            return
        service = self.db.services.get(doc["node_service"])
        policy = {}
        if service is not None and live.version is not None:
            try:
                policy = model.find_version(service, live.version).get("restart_policy") or {}
            except NotFound:
                pass
        live.restart, decision = restart.on_exit(live.restart, policy, info, self.loop.time())
        if decision[0] == "restart_at":
            live.phase = "backoff"
            delay = decision[1] - self.loop.time()
            self.emit(iid, "restarting", "in %.1fs" % max(delay, 0))
            self._restart_later(iid, delay)
        elif decision[0] == "give_up":
            live.phase = "crash-loop"
            live.message = decision[1]
            self.emit(iid, "gave-up", decision[1])
        else:
            live.message = decision[1]

    def _restart_later(self, iid, delay):
        live = self.live[iid]

        def fire():
            live.timer = None
            doc = self.db.instances.get(iid)
            if doc is None or live.phase != "backoff":
                return
            live.phase = "stopped"
            self.reconcile(iid)
        live.timer = self.loop.call_later(max(delay, 0.0), fire)
        doc = self.db.instances.get(iid)
        service = doc and self.db.services.get(doc["node_service"])
        if service is not None and live.version is not None and delay > 0.3:
            try:  # the network worker loads pyroute2 during the backoff
                self.net.expect(service, model.find_version(service, live.version))
            except NotFound:
                pass

    # -- operations (the API handlers call these) ---------------------------------------

    def _save(self, doc):
        self.db.put_instance(doc)

    def instance(self, iid):
        doc = self.db.instances.get(iid)
        if doc is None:
            raise NotFound("no instance %r on this device (see edgert ps)" % iid)
        return doc

    def start(self, iid):
        doc = self.instance(iid)
        live = self.live.setdefault(iid, Live())
        live.restart = {}
        if live.phase in ("crash-loop", "backoff"):
            live.phase = "stopped"
        rec = doc.get("rollout")
        if rec and not rollout.finished(rec):  # the operator fixed the cause, say
            doc = with_rollout(doc, rollout.retry_now(rec, self.loop.time()))
        if doc.get("desired") != "running" or doc is not self.db.instances[iid]:
            self._save(dict(doc, desired="running"))
        self.reconcile(iid)

    def stop(self, iid, timeout=None, on_done=None):
        doc = self.instance(iid)
        live = self.live.setdefault(iid, Live())
        if live.busy:
            raise StateError("instance %s is busy with %s (rollout step %s): try again when it "
                             "is done (edgert inspect %s)" % (iid, live.busy, (doc.get(
                                 "rollout") or {}).get("step"), iid), code="busy")
        if doc.get("desired") != "stopped":
            self._save(dict(doc, desired="stopped"))
        grace = timeout if timeout is not None else self._grace(doc, live.version)
        self._stop(iid, grace, on_done or (lambda info: None))

    def restart(self, iid, timeout=None, on_done=None):
        def stopped(info):
            self.start(iid)
            if on_done:
                on_done(info)
        self.stop(iid, timeout, stopped)

    def rollout_now(self, iid):
        doc = self.instance(iid)
        self._save(dict(doc, override=True))
        self.reconcile(iid)

    def add_instance(self, service_name, iid, config_maps, selector, start):
        if service_name not in self.db.services:
            raise NotFound("no node service %r (import one with edgert service import)"
                           % service_name)
        if iid is None:
            iid = model.instance_id_from(os.urandom(8))
            while iid in self.db.instances:
                iid = model.instance_id_from(os.urandom(8))
        model.check_instance_id(iid)
        if iid in self.db.instances:
            raise StateError("instance %s already exists" % iid, code="exists")
        doc = model.new_instance(iid, service_name, model.validate_config_maps(config_maps),
                                 model.parse_selector(selector) and selector,
                                 iso_now())
        if not start:
            doc["desired"] = "stopped"
        self._save(doc)
        self.live[iid] = Live()
        self.emit(iid, "added", "instance of %s" % service_name)
        self.reconcile(iid)
        return doc

    def remove_instance(self, iid, purge_volumes, on_done):
        doc = self.instance(iid)
        live = self.live.setdefault(iid, Live())
        if live.fetch is not None:
            live.fetch.cancel()
            live.fetch = None
        if live.watch is not None:
            live.watch.cancel()
            live.watch = None
        live.busy = None

        def gone(info):
            for v in (doc.get("images") or {}):
                self.images.drop_layer(snapshot_key(iid, int(v)))
            if purge_volumes:
                self.images.purge_volumes(iid)
            self.images.drop_host_dir(iid)
            self.net.release(iid)
            self.sup.ring(iid).remove()
            self.db.remove_instance(iid)
            for timer in (live.timer, live.retry_timer):
                if timer is not None:
                    timer.cancel()
            self.live.pop(iid, None)
            self.emit(iid, "removed", "instance removed" + (" with its volumes"
                                                            if purge_volumes else ""))
            on_done(None)
        self._save(dict(doc, desired="stopped"))
        self._stop(iid, self._grace(doc, live.version), gone)

    def set_selector(self, ids, selector):
        parsed = model.parse_selector(selector)
        docs = [self.instance(iid) for iid in ids]
        for doc in docs:
            rc = dict(doc.get("rollout_config") or {},
                      version_target_selector=model.selector_text(parsed))
            self._save(dict(doc, rollout_config=rc))
        for doc in docs:
            self.reconcile(doc["id"])

    def set_config_maps(self, iid, maps, replace):
        doc = self.instance(iid)
        current = {} if replace else dict(doc.get("config_maps") or {})
        for name, value in maps.items():
            if value is None:
                current.pop(name, None)
            else:
                current[name] = value
        current = model.validate_config_maps(current)
        self._save(dict(doc, config_maps=current))
        self.images.write_host_files(iid, self.db.instances[iid],
                                     self.db.services.get(doc["node_service"]))
        return current

    def status(self, iid):
        doc = self.instance(iid)
        live = self.live.setdefault(iid, Live())
        rec = doc.get("rollout")
        service = self.db.services.get(doc["node_service"])
        target = None
        if service is not None:
            target = model.target_version(service, doc)[0]
        return {
            "id": iid, "node_service": doc["node_service"], "state": live.phase,
            "desired": doc.get("desired"), "pid": live.pid, "version": live.version,
            "current_version": doc.get("current_version"),
            "good_version": doc.get("good_version"), "target_version": target,
            "failed_versions": doc.get("failed_versions", []),
            "selector": (doc.get("rollout_config") or {}).get("version_target_selector"),
            "rollout": rec and dict(rec, text=rollout.describe(rec)),
            "started_at": live.started_at, "last_exit": live.last_exit,
            "restarts": live.restart.get("failures", 0), "message": live.message,
            "config_maps": sorted((doc.get("config_maps") or {})),
            "network": self.net.info(iid) if self.net is not None else {},
        }

    def refresh_api_keys(self, role):
        """After the key of ``role`` was set or removed: rewrites /host/api-keys of each
        instance whose version names the role; the ids of those instances."""
        touched = []
        for iid, doc in list(self.db.instances.items()):
            live = self.live.get(iid)
            number = live.version if live and live.version else doc.get("current_version")
            service = self.db.services.get(doc["node_service"])
            if number is None or service is None or not os.path.isdir(self.images.host_dir(iid)):
                continue
            try:
                version = model.find_version(service, number)
            except NotFound:
                continue
            if role not in (version.get("api_key_roles") or ()):
                continue
            try:
                missing = self.images.write_api_keys(iid, doc, version)
            except (EdgertError, OSError) as e:
                self.emit(iid, "api-key-failed", "role %s: /host/api-keys not updated: %s"
                          % (role, e))
                continue
            self.emit(iid, "api-key-updated", "role %s: /host/api-keys/%s %s" % (
                role, role, "removed (no key)" if role in missing else "written"))
            touched.append(iid)
        return touched


def supervised(doc):
    """The version the restart policy keeps alive for instance ``doc`` (None: none, or a
    rollout step owns the container now); never a version marked failed."""
    rec = doc.get("rollout")
    version = rollout.supervised_version(rec) if rec else None
    if version in doc.get("failed_versions", ()):
        return None
    return version


def stamped(rec):
    """Rollout record ``rec`` with the wall-clock time added to its new history entries (a
    fourth element), for people reading `edgert inspect`: the record's own times are the
    loop's monotonic clock, because watch windows must not follow a clock that jumps when
    NTP syncs."""
    if not any(len(entry) == 3 for entry in rec["history"]):
        return rec
    stamp = iso_now()
    return dict(rec, history=[entry if len(entry) > 3 else list(entry) + [stamp]
                              for entry in rec["history"]])


def with_rollout(doc, rec):
    """Instance ``doc`` with rollout record ``rec``. An ended rollout leaves its good version
    current (None: nothing runs), even if a crash came between a start and its record."""
    doc = dict(doc, rollout=stamped(rec))
    if rollout.finished(rec):
        doc["current_version"] = rec["good_version"]
    return doc


def snapshot_key(iid, version_number):
    return "%s.v%d" % (iid, version_number)


def describe_exit(info):
    kind = info.get("kind")
    if kind == "exited":
        return "exited with code %s" % info.get("code")
    if kind == "reboot-requested":
        return "reboot requested from inside"
    if kind == "stopped-by-container":
        return "powered off / halted from inside"
    if kind == "stopped":
        return "stopped by edgert"
    return "killed" + (" by signal %s" % info["signal"] if info.get("signal") else "")


def iso_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
