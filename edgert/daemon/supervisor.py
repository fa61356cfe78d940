"""One container per instance: mount, create and start through the runtime library, watch the
exit, stop with a grace period, delete; adopt what a previous daemon left running.

A container's files (``<run-dir>/containers/<id>/``): ``config.json`` (the bundle),
``rootfs`` (the snapshot's mount point) and ``exit`` (edgert-init's exit record, ``-s 3``).
Its output goes to the log ring ``<run-dir>/logs/<id>.log``.

How an exit is learnt::

    started by this daemon ── the daemon is a child subreaper: pid 1 is its child
        pidfd readable ──▶ waitpid(pid, WNOHANG): the exact wait status  (+ the record)
    adopted after a restart ── pid 1 belongs to someone else
        pidfd readable ──▶ the exit record; empty = pid 1 was killed

Stray children (orphans reparented to the subreaper) are reaped on SIGCHLD, but only after
STRAY_GRACE_S: a child another part of the daemon forked is reaped by its owner long before.
"""

import errno
import os
import select
import stat
import time

from .. import linuxconst as K
from .. import native
from ..errors import ConfigError, EdgertError, NotFound, StateError
from ..fsutil import atomic_write
from ..jsonfast import dumps
# Every container start and exec (health probes included) runs these two in forked
# children: imported once here, or each child would load them again.
from ..runtime import child as _setup_steps  # noqa: F401
from ..runtime import linux as _linux_steps  # noqa: F401
from ..runtime import state as S
from ..runtime.container import Runtime
from ..runtime.sync import describe
from .logring import LogRing

SIGHUP, SIGINT, SIGKILL, SIGTERM, SIGCHLD = 1, 2, 9, 15, 17
INSTANCE_ANNOTATION = "edgert.instance"
START_SETTLE_S = 0.5   # how long start waits to see the workload exec'd (or pid 1 gone)
STRAY_GRACE_S = 2.0
LOG_CHECK_S = 2.0      # log rotation (and syslog mirror) period
INIT_NAME = "edgert-init"


class Tracked:
    """A container this supervisor watches."""

    def __init__(self, instance_id, pid, pidfd, is_child, ring):
        self.instance_id = instance_id
        self.pid = pid
        self.pidfd = pidfd
        self.is_child = is_child
        self.ring = ring
        self.stopping = False
        self.kill_timer = None
        self.on_stopped = []
        self.log_position = ring.end_position()


class Supervisor:
    """Containers of the daemon over one runtime root and run directory.

    ``on_exit(instance_id, exit_info)`` reports every end of a container this supervisor
    watched (or found ended at ``adopt``); ``log(message)`` takes one line.
    """

    def __init__(self, loop, runtime_root, run_dir, on_exit, log, log_cap=1 << 20,
                 syslog=None):
        self.loop = loop
        self.runtime = Runtime(runtime_root, log=log)
        self.run_dir = run_dir
        self.on_exit = on_exit
        self.log = log
        self.log_cap = log_cap
        self.syslog = syslog
        # on_status(instance_id, exit_info): how a container ended, before its cleanup
        # (on_exit follows once it is deleted and unmounted)
        self.on_status = None
        self.tracked = {}      # instance id -> Tracked
        self.by_pidfd = {}     # pidfd -> Tracked
        self.execs = {}        # pid -> (pidfd, on_done)
        self.rings = {}
        self.strays = set()
        self._layout = None
        loop.on_signal(SIGCHLD, self._on_sigchld)
        self.log_timer = loop.call_later(LOG_CHECK_S, self._check_logs)

    # -- paths ----------------------------------------------------------------------------

    def container_dir(self, instance_id):
        return os.path.join(self.run_dir, "containers", S.check_id(instance_id))

    def ring(self, instance_id):
        """The log ring of an instance (its logs outlive its container)."""
        ring = self.rings.get(instance_id)
        if ring is None:
            path = os.path.join(self.run_dir, "logs", S.check_id(instance_id) + ".log")
            ring = self.rings[instance_id] = LogRing(path, self.log_cap)
        return ring

    # -- start ----------------------------------------------------------------------------

    def start(self, instance_id, config, rootfs_mounts, annotations=None, stdio=None,
              prepare_rootfs=None, console_fd=None):
        """Mounts the rootfs, creates and starts the container; returns its pid 1.

        ``stdio``: the container's stdin, stdout and stderr (the caller keeps them open);
        default /dev/null and the log ring. ``console_fd``: for a process.terminal config, a
        connected unix socket (the caller's) the pty master is sent on before this returns.
        ``prepare_rootfs(rootfs)`` runs on the mounted rootfs before the container is
        created."""
        if instance_id in self.tracked:
            raise StateError("instance %s: its container is running (pid %d): stop it first"
                             % (instance_id, self.tracked[instance_id].pid))
        if os.path.exists(os.path.join(self.runtime.store.dir(instance_id), "state.json")):
            raise StateError("instance %s: a container %r exists that this daemon does not "
                             "watch: delete it first" % (instance_id, instance_id))
        if config.get("root", {}).get("path") != "rootfs":
            raise ConfigError("instance %s: config root.path must be \"rootfs\", not %r"
                              % (instance_id, config.get("root", {}).get("path")))
        bundle = self.container_dir(instance_id)
        rootfs = os.path.join(bundle, "rootfs")
        config = dict(config, annotations=dict(config.get("annotations") or {},
                                                **(annotations or {})))
        config["annotations"][INSTANCE_ANNOTATION] = instance_id
        fds = []
        try:
            unmount_all(rootfs)  # a previous run that could not clean up
            os.makedirs(rootfs, 0o711, exist_ok=True)
            atomic_write(os.path.join(bundle, "config.json"), dumps(config), 0o600, sync=False)
            mount_rootfs(instance_id, rootfs_mounts, rootfs)
            if prepare_rootfs is not None:
                prepare_rootfs(rootfs)
            record = os.open(os.path.join(bundle, "exit"),
                             os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            fds.append(record)
            if stdio is None:
                fds.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
                fds.append(self.ring(instance_id).open_for_container())
                stdio = (fds[1], fds[2], fds[2])
            try:
                pid = self.runtime.create(instance_id, bundle, start=True, stdio=stdio,
                                          exit_record_fd=record, console_fd=console_fd)
            except EdgertError as e:
                raise about(instance_id, e) from None
            pidfd = None
            try:
                pidfd = native.pidfd_open(pid)
                failed = self._failed_at_start(pid, pidfd, bundle)
            except BaseException:
                if pidfd is not None:
                    os.close(pidfd)
                self._discard(instance_id, pid)
                raise
            if failed:
                os.close(pidfd)
                line = last_line(self.ring(instance_id)) or read_record(bundle) or "no output"
                self._discard(instance_id, pid)
                raise EdgertError("instance %s: pid 1 exited during start: %s"
                                  % (instance_id, line), code="start-failed")
        except OSError as e:  # the run directory's own files (tmpfs full...)
            self._remove_files(instance_id)
            raise EdgertError("instance %s: %s" % (instance_id, describe(e)),
                              code="start-failed") from None
        except BaseException:
            self._remove_files(instance_id)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        self._track(Tracked(instance_id, pid, pidfd, True, self.ring(instance_id)))
        return pid

    def _failed_at_start(self, pid, pidfd, bundle):
        """True when pid 1 is gone because the workload could not even be started (its exec
        failed, or init's own setup); waits up to START_SETTLE_S for the workload's exec."""
        deadline = time.monotonic() + START_SETTLE_S
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while True:
            if poller.poll(2):
                return read_record(bundle).startswith(("exec-failed", "init-failed"))
            if workload_execed(pid) or time.monotonic() > deadline:
                return False

    def _discard(self, instance_id, pid):
        """After a failed start: pid 1 killed and reaped, the runtime's container deleted."""
        kill_and_reap(pid)
        try:
            self.runtime.delete(instance_id, force=True)
        except EdgertError as e:
            self.log("instance %s: after the failed start: %s" % (instance_id, e))

    def _track(self, tracked):
        self.tracked[tracked.instance_id] = tracked
        self.by_pidfd[tracked.pidfd] = tracked
        self.loop.add_reader(tracked.pidfd, self._on_pidfd)

    # -- exits ----------------------------------------------------------------------------

    def _on_pidfd(self, fd):
        tracked = self.by_pidfd.get(fd)
        if tracked is not None:
            self._exited(tracked)

    def _exited(self, tracked):
        status = None
        if tracked.is_child:
            try:
                pid, status = os.waitpid(tracked.pid, os.WNOHANG)
            except ChildProcessError:
                status = None  # reaped elsewhere: the record still tells
            else:
                if pid == 0:
                    return  # not gone yet
        bundle = self.container_dir(tracked.instance_id)
        info = exit_info(status, read_record(bundle), tracked.stopping,
                         self._oom_kills(tracked.instance_id))
        self._untrack(tracked)
        if self.on_status is not None:  # before the cleanup: a waiting client need not wait
            try:
                self.on_status(tracked.instance_id, info)
            except Exception as e:
                self.log("instance %s: status callback failed: %s: %s"
                         % (tracked.instance_id, e.__class__.__name__, e))
        self._pump_log(tracked)
        self._remove_container(tracked.instance_id)
        self._report(tracked.instance_id, info, tracked.on_stopped)

    def _untrack(self, tracked):
        self.loop.remove_reader(tracked.pidfd)
        del self.by_pidfd[tracked.pidfd]
        os.close(tracked.pidfd)
        if self.tracked.get(tracked.instance_id) is tracked:
            del self.tracked[tracked.instance_id]
        if tracked.kill_timer is not None:
            tracked.kill_timer.cancel()
        if self.syslog is not None:
            self.syslog.forget(tracked.instance_id)

    def _report(self, instance_id, info, callbacks):
        for callback, args in [(self.on_exit, (instance_id, info))] + [
                (cb, (info,)) for cb in callbacks]:
            try:
                callback(*args)
            except Exception as e:  # one bad callback must not take the daemon down
                self.log("instance %s: exit callback failed: %s: %s"
                         % (instance_id, e.__class__.__name__, e))

    def _oom_kills(self, instance_id):
        try:
            return self.runtime.oom_kills(instance_id)
        except (EdgertError, OSError):
            return 0

    def _remove_container(self, instance_id):
        """The runtime's container, the rootfs mount and the bundle directory."""
        try:
            self.runtime.delete(instance_id, force=True)
        except EdgertError as e:
            self.log("instance %s: %s" % (instance_id, e))
        self._remove_files(instance_id)

    def _remove_files(self, instance_id):
        bundle = self.container_dir(instance_id)
        rootfs = os.path.join(bundle, "rootfs")
        try:
            unmount_all(rootfs)
        except OSError as e:
            self.log("instance %s: unmount %s: %s (left in place)" % (instance_id, rootfs,
                                                                       e.strerror))
            return
        for name in ("config.json", "exit"):
            try:
                os.unlink(os.path.join(bundle, name))
            except FileNotFoundError:
                pass
        for path in (rootfs, bundle):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                self.log("instance %s: remove %s: %s" % (instance_id, path, e.strerror))

    def _on_sigchld(self, signum):
        """Peeks at exited children: tracked ones are handled now, strays reaped later."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid == 0:
                return
            pid = info.si_pid
            tracked = next((t for t in self.tracked.values() if t.pid == pid and t.is_child),
                           None)
            if tracked is not None:
                self._exited(tracked)
            elif pid in self.execs:
                self._exec_exited(pid)
            else:
                if pid not in self.strays:
                    self.strays.add(pid)
                    self.loop.call_later(STRAY_GRACE_S, self._reap_stray, pid)
                return  # the waitid above would only see it again

    def _reap_stray(self, pid):
        self.strays.discard(pid)
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # its owner reaped it
        self._on_sigchld(SIGCHLD)

    # -- stop, kill -----------------------------------------------------------------------

    def stop(self, instance_id, grace_s, on_done=None):
        """SIGTERM to pid 1 (init forwards it), SIGKILL after ``grace_s``; the exit is reported
        as "stopped". ``on_done(exit_info)`` after on_exit; ``on_done(None)`` (soon) when the
        container is not running. Stopping twice only adds the callback."""
        tracked = self.tracked.get(instance_id)
        if tracked is None:
            if on_done is not None:
                self.loop.call_soon(on_done, None)
            return
        if on_done is not None:
            tracked.on_stopped.append(on_done)
        if tracked.stopping:
            return
        tracked.stopping = True
        self._send(tracked, SIGTERM)
        tracked.kill_timer = self.loop.call_later(grace_s, self._kill_after_grace, tracked)

    def _kill_after_grace(self, tracked):
        tracked.kill_timer = None
        if self.tracked.get(tracked.instance_id) is tracked:
            self.log("instance %s: still running after the grace period: SIGKILL"
                     % tracked.instance_id)
            self._send(tracked, SIGKILL)

    def kill(self, instance_id, signum):
        tracked = self.tracked.get(instance_id)
        if tracked is None:
            raise StateError("instance %s: no container is running" % instance_id)
        self._send(tracked, signum)

    def _send(self, tracked, signum):
        try:
            native.pidfd_send_signal(tracked.pidfd, signum)
        except OSError as e:
            if e.errno != errno.ESRCH:  # gone already: its exit is on its way
                raise

    # -- inspection -----------------------------------------------------------------------

    def running(self, instance_id):
        tracked = self.tracked.get(instance_id)
        return tracked.pid if tracked is not None else None

    def version_of(self, instance_id):
        """The version number in the ``edgert.version`` annotation the container was
        started with (annotations are strings; versions are numbers), or None."""
        try:
            st = self.runtime.store.load(instance_id)
        except EdgertError:
            return None
        text = (st.get("annotations") or {}).get("edgert.version")
        return int(text) if isinstance(text, str) and text.isdigit() else None

    def net_counters(self, instance_id):
        """The traffic counters of the container's interfaces (telemetry.parse_net_dev), or
        None when it is not running or shares the daemon's network namespace."""
        from .telemetry import parse_net_dev
        tracked = self.tracked.get(instance_id)
        if tracked is None:
            return None
        try:
            if os.stat("/proc/%d/ns/net" % tracked.pid).st_ino == os.stat(
                    "/proc/self/ns/net").st_ino:
                return None  # the host's interfaces are not the container's
            with open("/proc/%d/net/dev" % tracked.pid, "rb") as f:
                text = f.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            return None
        if tracked.pidfd is not None and select.select([tracked.pidfd], [], [], 0)[0]:
            return None  # it ended meanwhile: the pid may be another process's now
        return parse_net_dev(text)

    def stats(self, instance_id):
        """{"memory_bytes", "memory_limit", "cpu_ns", "pids"} from the container's cgroup (a
        value is None when the kernel offers none; a limit of None is unlimited)."""
        from ..cgroup import fs
        if instance_id not in self.tracked:
            raise StateError("instance %s: no container is running" % instance_id)
        st = self.runtime.store.load(instance_id)
        if not st.get("cgroup"):
            raise NotFound("instance %s: the container has no cgroup" % instance_id)
        if self._layout is None:
            self._layout = fs.host_layout()
        raw = fs.Cgroup(self._layout, st["cgroup"]["paths"]).stats()
        return {"memory_bytes": raw.get("memory_usage"), "memory_limit": raw.get("memory_limit"),
                "cpu_ns": raw.get("cpu_usage_ns"), "pids": raw.get("pids_current")}

    # -- exec -----------------------------------------------------------------------------

    def exec(self, instance_id, args, env=None, cwd=None, stdio=None, on_done=None,
             tty_size=None, user=None):
        """Runs ``args`` in the running container (its process settings, plus ``env``
        entries, ``cwd`` and ``user``: "name", "uid", "name:group", "uid:gid", resolved
        against the container's own /etc/passwd and /etc/group);
        ``stdio``: three fds, default /dev/null. With ``tty_size``
        ({"height", "width"}) the process gets a pty of the container's own devpts as its
        controlling terminal instead. Returns (pid, the pty master or None);
        ``on_done(exit code)`` when it ends (128+N when killed by signal N)."""
        if instance_id not in self.tracked:
            raise StateError("instance %s: no container is running" % instance_id)
        overrides = {"args": list(args), "env": list(env or [])}
        if cwd is not None:
            overrides["cwd"] = cwd
        if user is not None:
            overrides["user"] = self._user_of(instance_id, user)
        opened = []
        try:
            if tty_size is not None:
                from ..runtime.console import spawn_on_terminal
                overrides.update(terminal=True, consoleSize=tty_size)
                pid, master = spawn_on_terminal(
                    lambda console_fd: self.runtime.spawn_exec(
                        instance_id, None, overrides=overrides, console_fd=console_fd),
                    kill_and_reap)
            else:
                if stdio is None:
                    opened.append(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC))
                    stdio = (opened[0],) * 3
                pid = self.runtime.spawn_exec(instance_id, None, overrides=overrides,
                                              stdio=stdio)
                master = None
        except EdgertError as e:
            raise about(instance_id, e) from None
        finally:
            for fd in opened:
                os.close(fd)
        try:
            pidfd = native.pidfd_open(pid)
        except OSError:
            pidfd = None  # gone and reaped already: SIGCHLD cannot tell us either
        self.execs[pid] = (pidfd, on_done)
        if pidfd is None:
            self.loop.call_soon(self._exec_exited, pid)
        else:
            self.loop.add_reader(pidfd, lambda fd: self._exec_exited(pid))
        return pid, master

    def _user_of(self, instance_id, user):
        """The OCI user object for ``user`` in the running container: names are looked up in
        its /etc/passwd and /etc/group, read inside its root (never following a link out)."""
        from .bundle import parse_user
        files = [None, None]
        if not all(part.isdigit() for part in user.split(":")):
            root = os.open("/proc/%d/root" % self.tracked[instance_id].pid,
                           os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                files = [_small_file_in(root, path) for path in ("/etc/passwd", "/etc/group")]
            finally:
                os.close(root)
        try:
            uid, gid, extra = parse_user(user, *files)
        except ConfigError as e:
            raise ConfigError("exec in instance %s: %s" % (
                instance_id, str(e).replace("the image's", "the container's"))) from None
        return {"uid": uid, "gid": gid, "additionalGids": extra}

    def exec_probe(self, instance_id):
        """A function ``run(args, timeout_s, on_done(code, detail))`` for exec health probes;
        the command is killed when the timeout passes."""
        def run(args, timeout_s, on_done):
            state = {"timed_out": False, "timer": None}

            def done(code):
                if state["timer"] is not None:
                    state["timer"].cancel()
                on_done(code, "timed out after %ss" % timeout_s if state["timed_out"] else "")

            def expire():
                state["timed_out"] = True
                try:
                    os.kill(pid, SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                pid, _ = self.exec(instance_id, args, on_done=done)
            except EdgertError as e:
                on_done(None, str(e))
                return
            state["timer"] = self.loop.call_later(timeout_s, expire)
        return run

    def _exec_exited(self, pid):
        if pid not in self.execs:
            return
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            got, status = pid, None
        if got == 0:
            return
        pidfd, on_done = self.execs.pop(pid)
        if pidfd is not None:
            self.loop.remove_reader(pidfd)
            os.close(pidfd)
        if on_done is not None:
            code = None if status is None else os.waitstatus_to_exitcode(status)
            if code is not None and code < 0:
                code = 128 - code
            on_done(code)

    # -- adoption -------------------------------------------------------------------------

    def adopt(self):
        """At daemon start: watches the containers a previous daemon left running, reports
        (through on_exit, before this returns) those that ended meanwhile, and removes
        half-made ones. Returns [(instance_id, "running" | "exited" | "stopped")]. Containers
        without the edgert.instance annotation are not ours and stay untouched."""
        found = []
        for cid in self.runtime.store.ids():
            try:
                st = self.runtime.store.load(cid)
            except EdgertError as e:
                self.log("adopt: %s" % e)
                continue
            if (st.get("annotations") or {}).get(INSTANCE_ANNOTATION) != cid:
                continue
            if cid in self.tracked:
                found.append((cid, "running"))
                continue
            found.append((cid, self._adopt_one(cid, st)))
        containers = os.path.join(self.run_dir, "containers")
        seen = {cid for cid, _ in found}
        for name in sorted(os.listdir(containers)) if os.path.isdir(containers) else []:
            if name not in seen and name not in self.tracked:
                # made by start; the runtime's container never came (or went first)
                self._remove_files(name)
                self._remove_stateless(name)
                found.append((name, "stopped"))
        return found

    def _remove_stateless(self, cid):
        """The runtime's directory of a create that crashed before it saved any state."""
        store = self.runtime.store
        if os.path.isdir(store.dir(cid)) and not os.path.exists(
                os.path.join(store.dir(cid), "state.json")):
            store.remove(cid)

    def _adopt_one(self, cid, st):
        status = S.status(st)
        bundle = self.container_dir(cid)
        if status in (S.RUNNING, S.PAUSED):
            try:
                pidfd = native.pidfd_open(st["pid"])
            except OSError:
                pidfd = None
            if pidfd is not None and S.process_alive(st["pid"], st.get("pid_start")):
                self._track(Tracked(cid, st["pid"], pidfd, is_our_child(st["pid"]),
                                    self.ring(cid)))
                return "running"
            if pidfd is not None:
                os.close(pidfd)
            status = S.STOPPED
        if status == S.STOPPED:
            info = exit_info(None, read_record(bundle), False, self._oom_kills(cid))
            self._remove_container(cid)
            self._report(cid, info, [])
            return "exited"
        # creating (no pid yet) or created but never started: a create that did not finish
        self.log("instance %s: removing the container a crash left half-made" % cid)
        self._remove_container(cid)
        return "stopped"

    # -- logs -----------------------------------------------------------------------------

    def _check_logs(self):
        self.log_timer = self.loop.call_later(LOG_CHECK_S, self._check_logs)
        for tracked in list(self.tracked.values()):
            self._pump_log(tracked)
            try:
                tracked.ring.check()
            except OSError as e:
                self.log("instance %s: log rotation: %s" % (tracked.instance_id, e.strerror))

    def _pump_log(self, tracked):
        """New output to the syslog mirror, if there is one."""
        if self.syslog is None:
            return
        while True:
            data, tracked.log_position = tracked.ring.read_from(tracked.log_position)
            if not data:
                return
            self.syslog.feed(tracked.instance_id, data)

    def close(self):
        """Stops watching (the containers keep running; a next Supervisor adopts them)."""
        self.log_timer.cancel()
        for tracked in list(self.tracked.values()):
            self._untrack(tracked)
        for pid, (pidfd, _) in list(self.execs.items()):
            if pidfd is not None:
                self.loop.remove_reader(pidfd)
                os.close(pidfd)
        self.execs.clear()


# --- helpers --------------------------------------------------------------------------------

def exit_info(wait_status, record, stopping, oom_kills):
    """What ended a container, from pid 1's wait status (None when unknown: adopted) and its
    exit record (init/README.md). Kinds: exited, reboot-requested, stopped-by-container,
    killed, stopped (by edgert)."""
    word, _, number = record.partition(" ")
    number = int(number) if number.isdigit() else None
    kind, code, signal = "exited", None, None
    if wait_status is not None:
        if os.WIFSIGNALED(wait_status):
            signal = os.WTERMSIG(wait_status)
            kind = {SIGHUP: "reboot-requested", SIGINT: "stopped-by-container"}.get(
                signal, "killed")
        else:
            code = os.WEXITSTATUS(wait_status)
            if word == "signaled" and number is not None and code == 128 + number:
                signal = number
    elif word in ("exited", "exec-failed") and number is not None:
        code = number
    elif word == "signaled" and number is not None:
        code, signal = 128 + number, number
    elif word == "init-failed":
        code = 1
    elif word == "reboot":
        kind, signal = "reboot-requested", SIGHUP
    elif word in ("poweroff", "halt"):
        kind, signal = "stopped-by-container", SIGINT
    else:
        kind = "killed"  # empty record: SIGKILL, or a `reboot -f` init could not report
    if stopping:
        kind = "stopped"
    return {"kind": kind, "code": code, "signal": signal, "oom_kills": oom_kills,
            "at": time.time(), "source": "record" if wait_status is None else "waitpid"}


def kill_and_reap(pid):
    """SIGKILL to a child of ours, and its wait (it may be gone or reaped already)."""
    try:
        os.kill(pid, SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def about(instance_id, err):
    """The runtime's error, same class and code, naming the instance."""
    return type(err)("instance %s: %s" % (instance_id, err), code=err.code)


def read_record(bundle):
    try:
        with open(os.path.join(bundle, "exit"), "rb") as f:
            return f.read(64).split(b"\n", 1)[0].decode("ascii", "replace")
    except FileNotFoundError:
        return ""


def last_line(ring):
    lines = ring.read_tail(lines=1, max_bytes=4096).strip().splitlines()
    return lines[-1].decode("utf-8", "replace") if lines else ""


def workload_execed(pid):
    """True once edgert-init's first child runs something else than a copy of init."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            children = f.read().split()
        if not children:
            return False
        with open("/proc/%s/comm" % children[0]) as f:
            return f.read().strip() != INIT_NAME
    except (FileNotFoundError, ProcessLookupError):
        return False


def is_our_child(pid):
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def mount_rootfs(instance_id, mounts, target):
    """Mounts the snapshot's mounts (Snapshotter.mounts_for) on ``target``."""
    if not mounts:
        raise ConfigError("instance %s: no rootfs mounts" % instance_id)
    for m in mounts:
        options = list(m.get("options") or [])
        try:
            if m.get("type") == "overlay":
                native.mount("overlay", target, "overlay", 0, ",".join(options))
            elif m.get("type") == "bind":
                native.mount(m["source"], target, None,
                             K.MS_BIND | (K.MS_REC if "rbind" in options else 0), None)
                if "ro" in options:
                    native.mount(None, target, None, K.MS_BIND | K.MS_REMOUNT | K.MS_RDONLY,
                                 None)
            else:
                raise ConfigError("instance %s: rootfs mount type %r: want overlay or bind"
                                  % (instance_id, m.get("type")))
        except OSError as e:
            raise EdgertError("instance %s: rootfs: %s" % (instance_id, e),
                              code="mount-failed") from None


def unmount_all(path):
    """Unmounts everything stacked on ``path`` (lazily: submounts of an rbind too)."""
    while True:
        try:
            native.umount2(path, K.MNT_DETACH)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return  # not a mount point (any more), or no such path
            raise


USER_FILE_LIMIT = 1 << 20


def _small_file_in(root_fd, path):
    """The text of a regular file at ``path`` inside the directory ``root_fd`` (resolved as
    if it were "/"), at most USER_FILE_LIMIT bytes; None when it is missing or no regular
    file (a FIFO planted there must not block the daemon)."""
    from .health import open_in_root
    try:
        fd = open_in_root(root_fd, path)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open("/proc/self/fd/%d" % fd, "rb") as f:
            return f.read(USER_FILE_LIMIT).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
