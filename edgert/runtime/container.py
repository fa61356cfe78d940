"""The OCI verbs: create, start, state, kill, delete, run, exec, pause, resume, ps, list.

One process per verb (like runc): nothing stays behind but the container's
edgert-init and the state directory. The runtime makes itself a child
subreaper while it works, so the container's pid 1 (a grandchild) is reparented
to it and a foreground ``run`` or ``exec`` can wait for it.
"""

import errno
import os

from .. import linuxconst as K
from ..errors import ConfigError, EdgertError, StateError, Unsupported
from . import state as S
from .sync import describe, pair

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7, "FPE": 8,
    "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
    "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
    "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
    "POLL": 29, "PWR": 30, "SYS": 31,
}
FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 15, 28)
START_SIGNAL = 18  # SIGCONT from outside the pid namespace: see init/README.md
RECORD_FD = 3  # edgert-init's exit record (-s 3): see init/README.md
DEFAULT_ROOT = "/run/edgert/oci"


def parse_signal(text):
    """'TERM', 'SIGTERM', '15' -> 15; anything else is a clear error."""
    name = text.upper()
    if name.isdigit():
        num = int(name)
        if 0 < num < 65:
            return num
    else:
        if name.startswith("SIG"):
            name = name[3:]
        if name in SIGNALS:
            return SIGNALS[name]
        for base, first, sign in (("RTMIN", 34, 1), ("RTMAX", 64, -1)):
            if name.startswith(base):
                offset = name[len(base):].lstrip("+-")
                if offset.isdigit() or not offset:
                    num = first + sign * int(offset or 0)
                    if 34 <= num <= 64:
                        return num
    raise EdgertError("unknown signal %r (use a name like TERM or SIGKILL, or a number 1-64)"
                      % text, code="invalid-signal")


def exit_code(wait_status):
    """Shell convention: exit code, or 128+N when killed by signal N."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def init_path():
    """Where edgert-init lives: $EDGERT_INIT, the package, or the source tree."""
    env = os.environ.get("EDGERT_INIT")
    if env:
        return env
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in (os.path.join(here, "edgert-init"),
                 os.path.join(os.path.dirname(here), "init", "edgert-init")):
        if os.path.exists(path):
            return path
    raise EdgertError("edgert-init not found next to the edgert package (reinstall edgert, or "
                      "set EDGERT_INIT)", code="no-init")


def sealed_copy(path):
    """edgert-init copied into a sealed memfd: the container can never write the host binary
    through /proc/<pid>/exe (the CVE-2019-5736 class)."""
    import fcntl
    with open(path, "rb") as f:
        data = f.read()
    fd = os.memfd_create("edgert-init", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd


class Plan:
    """Everything the children need, computed in the runtime before fork."""

    def __init__(self):
        self.__dict__.update(
            rootfs=None, bundle=None, config=None, unshare_flags=0, new_userns=False,
            ns_join=[], uid_map=None, gid_map=None, time_offsets=None, mounts=[],
            cgroup=None, cgroup_binds=[], devices=[], bind_devices=False, hostname=None,
            domainname=None, sysctl={}, masked=[], readonly=[], root_readonly=False,
            propagation=None, console_fd=None, console_size=None, terminal=False,
            rlimits=[], rlimit_names={}, ioprio=None, sched=None, personality=None,
            user=None, cap_effective=0, cap_permitted=0, cap_inheritable=0,
            bounding_drop=[], ambient=[], skipped_ambient=[], no_new_privs=False, seccomp=None, seccomp_cfg=None,
            init_fd=-1, idmap_userns={},
            env=[], cwd="/", umask=0o022, args=[], hooks={}, state_json=None,
            wait_start=False, cpu_affinity=None, stdio=None, exit_record_fd=None)


def last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return 40


def plan_process(plan, proc, seccomp_cfg):
    """Process attributes shared by create and exec."""
    from .. import caps
    plan.args = proc["args"]
    plan.env = proc.get("env", [])
    plan.cwd = proc.get("cwd", "/")
    user = proc.get("user", {})
    plan.user = (user.get("uid", 0), user.get("gid", 0), list(user.get("additionalGids", [])))
    if "umask" in user:
        plan.umask = user["umask"]
    plan.terminal = bool(proc.get("terminal"))
    plan.console_size = proc.get("consoleSize")
    capset = proc.get("capabilities") or {}
    valid = (1 << (last_cap() + 1)) - 1
    bounding = caps.mask(capset.get("bounding", [])) & valid
    plan.bounding_drop = [c for c in range(last_cap() + 1) if not bounding >> c & 1]
    plan.cap_effective = caps.mask(capset.get("effective", [])) & valid
    plan.cap_permitted = caps.mask(capset.get("permitted", [])) & valid
    plan.cap_inheritable = caps.mask(capset.get("inheritable", [])) & valid
    grantable = plan.cap_permitted & plan.cap_inheritable
    plan.ambient = [caps.number(n) for n in capset.get("ambient", [])
                    if grantable >> caps.number(n) & 1]
    plan.skipped_ambient = [n for n in capset.get("ambient", [])
                            if not grantable >> caps.number(n) & 1]
    plan.no_new_privs = bool(proc.get("noNewPrivileges"))
    names = {v: k for k, v in K.RLIMITS.items()}
    plan.rlimit_names = names
    plan.rlimits = [(K.RLIMITS[r["type"]], r["soft"], r["hard"]) for r in proc.get("rlimits", [])]
    prio = proc.get("ioPriority")
    if prio:
        classes = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
        plan.ioprio = classes[prio["class"]] << 13 | prio.get("priority", 0)
    sched = proc.get("scheduler")
    if sched:
        policies = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                    "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
        flag_bits = {"SCHED_FLAG_RESET_ON_FORK": 1, "SCHED_FLAG_RECLAIM": 2,
                     "SCHED_FLAG_DL_OVERRUN": 4, "SCHED_FLAG_KEEP_POLICY": 8,
                     "SCHED_FLAG_KEEP_PARAMS": 16, "SCHED_FLAG_UTIL_CLAMP_MIN": 32,
                     "SCHED_FLAG_UTIL_CLAMP_MAX": 64}
        plan.sched = (policies[sched["policy"]], sum(flag_bits[f] for f in sched.get("flags", [])),
                      sched.get("nice", 0), sched.get("priority", 0), sched.get("runtime", 0),
                      sched.get("deadline", 0), sched.get("period", 0))
    affinity = proc.get("execCPUAffinity")
    if affinity and affinity.get("final"):
        plan.cpu_affinity = parse_cpu_list(affinity["final"])
    plan.seccomp_cfg = seccomp_cfg


def compile_seccomp(plan):
    """(program, flags) for the plan's seccomp profile, or None."""
    if not plan.seccomp_cfg:
        return None
    from .. import seccomp
    return seccomp.compile(plan.seccomp_cfg, os.uname().machine)


def parse_cpu_list(text):
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def id_map_text(mappings):
    return "".join("%d %d %d\n" % (m["containerID"], m["hostID"], m["size"]) for m in mappings)


IPC_SYSCTL_PREFIXES = ("kernel.msg", "kernel.sem", "kernel.shm", "fs.mqueue.")


def refuse_host_namespaces(config):
    """A namespace joined by path may be the host's own: then hostname and namespaced sysctls
    would change the host, which no container may do."""
    linux = config.get("linux", {})
    sysctl = linux.get("sysctl", {})
    for ns in linux.get("namespaces", []):
        path = ns.get("path")
        if not path or ns["type"] not in ("network", "uts", "ipc"):
            continue
        try:
            theirs = os.stat(path)
            ours = os.stat("/proc/self/ns/" + K.NAMESPACE_PROC_NAMES[ns["type"]])
        except OSError as e:
            raise ConfigError("config.json: linux.namespaces: %s namespace path %s: %s"
                              % (ns["type"], path, e.strerror)) from None
        if (theirs.st_dev, theirs.st_ino) != (ours.st_dev, ours.st_ino):
            continue
        if ns["type"] == "network":
            touched = ["linux.sysctl[%s]" % k for k in sysctl if k.startswith("net.")]
        elif ns["type"] == "ipc":
            touched = ["linux.sysctl[%s]" % k for k in sysctl
                       if k.startswith(IPC_SYSCTL_PREFIXES)]
        else:
            touched = [k for k in ("hostname", "domainname") if config.get(k) is not None]
            touched += ["linux.sysctl[%s]" % k for k in sysctl
                        if k in ("kernel.hostname", "kernel.domainname")]
        if touched:
            raise ConfigError("config.json: %s: the %s namespace %s is the host's own, so this "
                              "would change the host: use a new %s namespace or drop it"
                              % (", ".join(touched), ns["type"], path, ns["type"]))


def plan_create(container_id, config, bundle):
    """The Plan for a new container from a validated config (no side effects)."""
    from ..oci import mountopts
    linux = config.get("linux", {})
    plan = Plan()
    plan.config = config
    plan.bundle = bundle
    plan.rootfs = config["root"]["path"]
    plan.root_readonly = bool(config["root"].get("readonly"))
    joins = []
    have_mount_ns = False
    for ns in linux.get("namespaces", []):
        flag = K.NAMESPACE_FLAGS[ns["type"]]
        have_mount_ns |= ns["type"] == "mount"
        if ns.get("path"):
            joins.append((flag, ns["path"]))
        elif ns["type"] == "user":
            plan.new_userns = True
        else:
            plan.unshare_flags |= flag
    if not have_mount_ns:
        raise Unsupported("config.json: linux.namespaces: edgert needs a mount namespace (add "
                          "{\"type\": \"mount\"}); mounting into the host's is never done")
    refuse_host_namespaces(config)
    order = (K.CLONE_NEWUSER, K.CLONE_NEWIPC, K.CLONE_NEWUTS, K.CLONE_NEWNET, K.CLONE_NEWPID,
             K.CLONE_NEWCGROUP, K.CLONE_NEWTIME, K.CLONE_NEWNS)
    plan.ns_join = sorted(joins, key=lambda j: order.index(j[0]))
    if plan.new_userns:
        plan.uid_map = id_map_text(linux.get("uidMappings", []))
        plan.gid_map = id_map_text(linux.get("gidMappings", []))
        plan.bind_devices = True
    if plan.new_userns or any(f == K.CLONE_NEWUSER for f, _ in joins):
        plan.bind_devices = True
    offsets = linux.get("timeOffsets")
    if offsets:
        names = {"monotonic": "monotonic", "boottime": "boottime"}
        plan.time_offsets = "".join("%s %d %d\n" % (names[k], v.get("secs", 0), v.get("nanosecs", 0))
                                    for k, v in offsets.items())
    for m in config.get("mounts", []):
        opts = mountopts.parse(m.get("options", []), m.get("type") or "")
        plan.mounts.append((m, opts))
    plan.devices = linux.get("devices", [])
    plan.hostname = config.get("hostname")
    plan.domainname = config.get("domainname")
    plan.sysctl = linux.get("sysctl", {})
    plan.masked = linux.get("maskedPaths", [])
    plan.readonly = linux.get("readonlyPaths", [])
    plan.propagation = linux.get("rootfsPropagation")
    if linux.get("personality"):
        domain = linux["personality"]["domain"]
        plan.personality = 0x0008 if domain == "LINUX32" else 0
    plan_process(plan, config["process"], linux.get("seccomp"))
    plan.hooks = config.get("hooks", {})
    return plan


# --- children -------------------------------------------------------------------------------

def child_intermediate(plan, ch):
    """C1: joins and creates namespaces, then forks the container's pid 1 (see sync.py)."""
    try:
        if plan.cgroup is not None:
            plan.cgroup.add_pid(os.getpid())
        from .linux import Linux
        sc = Linux()
        for flag, path in plan.ns_join:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sc.setns(fd, flag)
            finally:
                os.close(fd)
        if plan.new_userns:
            sc.unshare(K.CLONE_NEWUSER | plan.unshare_flags)
            ch.send("userns")
            if ch.recv()[0] != "mapped":
                os._exit(1)
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        elif plan.unshare_flags:
            sc.unshare(plan.unshare_flags)
        if plan.unshare_flags & K.CLONE_NEWNET:
            from .child import loopback_up
            loopback_up()
        if plan.time_offsets:
            with open("/proc/self/timens_offsets", "w") as f:
                f.write(plan.time_offsets)
        pid = os.fork()
        if pid == 0:
            child_container(plan, ch, sc)
        ch.send("pid", str(pid))
        os._exit(0)
    except BaseException as e:
        fail_child(ch, e, 1)


def fail_child(ch, err, code):
    """A child's last act on failure: tell the runtime why, then exit without cleanup."""
    try:
        ch.send("error", describe(err))
    finally:
        os._exit(code)


def child_container(plan, ch, sc):
    """C2, the container's pid 1 until it execs edgert-init."""
    from .. import native
    from . import child as C
    from .hooks import run_hooks
    try:
        kind, payload = ch.recv()
        if kind != "go":
            os._exit(1)
        host_pid, flags, prog = payload.split(b"\n", 2)
        plan.state_json["pid"] = int(host_pid)
        if int(flags) >= 0:
            plan.seccomp = (prog, int(flags))
        native.set_dumpable(False)
        C.preload(plan)
        rootfs = plan.rootfs
        C.prepare_root(sc, rootfs, plan.propagation)
        for i, (m, opts) in enumerate(plan.mounts):
            try:
                C.mount_entry(sc, rootfs, plan.bundle, m, opts, plan.cgroup_binds,
                              plan.idmap_userns.get(i))
            except OSError as e:
                raise OSError(e.errno, "mount %s (%s) on %s: %s" % (
                    m.get("source") or m.get("type"), m.get("type") or "bind",
                    m["destination"], describe(e))) from None
        C.create_devices(sc, rootfs, plan.devices, plan.bind_devices)
        if plan.hooks.get("createContainer"):
            run_hooks("createContainer", plan.hooks["createContainer"], plan.state_json)
        C.pivot(sc, rootfs)
        if plan.hostname is not None:
            sc.sethostname(plan.hostname)
        if plan.domainname is not None:
            sc.setdomainname(plan.domainname)
        C.set_sysctl(sc, plan.sysctl)
        if plan.terminal:
            C.bind_console(sc, C.setup_console(plan.console_fd, plan.console_size))
        C.mask_paths(sc, plan.masked)
        C.readonly_paths(sc, plan.readonly)
        if plan.root_readonly:
            C.readonly_root(sc)
        finish_process(plan, ch, native, create_cwd=True)
    except BaseException as e:
        fail_child(ch, e, 1)


def finish_process(plan, ch, native, create_cwd):
    """Process attributes, then exec: edgert-init for a container, the process for exec."""
    from . import child as C
    C.set_limits(plan.config["process"] if plan.config else {}, plan)
    if plan.cpu_affinity:
        os.sched_setaffinity(0, plan.cpu_affinity)
    os.umask(plan.umask)
    if create_cwd and not os.path.isdir(plan.cwd):
        os.makedirs(plan.cwd, 0o755)
    try:
        os.chdir(plan.cwd)
    except OSError as e:
        raise OSError(e.errno, "process.cwd %s: %s" % (plan.cwd, e.strerror)) from None
    exe = C.check_executable(plan.args[0], plan.env, plan.cwd)
    wait_start = plan.wait_start
    record = None
    if plan.exit_record_fd is not None:
        import fcntl  # a copy out of the way of the stdio dup2s (the caller may pass 0-3)
        record = fcntl.fcntl(plan.exit_record_fd, fcntl.F_DUPFD_CLOEXEC, RECORD_FD + 1)
    if plan.stdio is not None and not plan.terminal:
        C.set_stdio(plan.stdio)
    keep = ()
    if record is not None:
        place_exit_record(plan, ch, record)
        keep = (RECORD_FD,)
    C.reset_signals()
    C.drop_privileges(native, plan)  # a seccomp profile may deny dup2: fds are placed before
    C.close_fds(native, keep)
    if plan.init_fd >= 0:
        argv = (["edgert-init"] + (["-w"] if wait_start else [])
                + (["-s", str(RECORD_FD)] if keep else []) + ["--"] + plan.args)
        os.execve(plan.init_fd, argv, env_dict(plan.env))
    os.execve(exe, plan.args, env_dict(plan.env))


def place_exit_record(plan, ch, record):
    """Puts ``record`` (a copy above RECORD_FD) on RECORD_FD; what still has to work there
    (the memfd of edgert-init, the handshake pipes) moves up first."""
    import fcntl

    def off_record_fd(fd):
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, RECORD_FD + 1) if fd == RECORD_FD else fd
    plan.init_fd = off_record_fd(plan.init_fd)
    ch.rfd, ch.wfd = off_record_fd(ch.rfd), off_record_fd(ch.wfd)
    os.dup2(record, RECORD_FD)
    os.close(record)


def env_dict(env):
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)


# --- the runtime side -----------------------------------------------------------------------

class Runtime:
    """The verbs over one state root (``--root``)."""

    def __init__(self, root=DEFAULT_ROOT, log=None):
        self.store = S.Store(root)
        self.log = log or (lambda msg: None)

    # create / start / run ------------------------------------------------------------------

    def create(self, container_id, bundle, console_socket=None, pid_file=None, start=False,
               console_fd=None, stdio=None, exit_record_fd=None):
        """Creates the container; with ``start`` its process runs at once (``run``).

        ``console_fd`` instead of ``console_socket``: a connected unix socket the pty master
        of a terminal process is sent on, before the process runs (a foreground run, the
        daemon's `run -t`). ``stdio``: three fds that become the container process's 0, 1, 2
        instead of the caller's (a terminal replaces them). ``exit_record_fd``: a regular
        file edgert-init writes its exit record to (``-s``, init/README.md). The caller keeps
        and closes all three. Returns the host pid of the container's pid 1.
        """
        from ..oci import spec
        bundle = os.path.abspath(bundle)
        config = spec.load(bundle)
        plan = plan_create(container_id, config, bundle)
        plan.stdio = check_stdio(stdio)
        plan.exit_record_fd = exit_record_fd
        self._warn_skipped(container_id, plan)
        if plan.terminal and not console_socket and console_fd is None:
            raise ConfigError("process.terminal is true but no --console-socket was given (a "
                              "detached container needs one to hand its terminal to)")
        # startContainer hooks run between `start` and the process: run = create + start then
        start_now = start and not plan.hooks.get("startContainer")
        plan.wait_start = not start_now
        self.store.reserve(container_id)
        st = {"id": container_id, "bundle": bundle, "rootfs": plan.rootfs, "pid": 0,
              "created": S.now_rfc3339(), "started": False,
              "annotations": config.get("annotations", {}), "owner": "", "config": config,
              "cgroup": None, "netns_pin": None, "net_devices": []}
        try:
            pid = self._create(container_id, plan, st, console_socket, console_fd, pid_file,
                               start_now)
        except BaseException:
            self._cleanup_failed(container_id, st)
            raise
        if start and not start_now:
            try:
                self.start(container_id)
            except BaseException:
                self.delete(container_id, force=True)  # a failed run leaves nothing, like runc
                raise
        return pid

    def _create(self, container_id, plan, st, console_socket, console_fd, pid_file, start):
        from .. import native
        from .hooks import run_hooks, spec_state
        config = plan.config
        linux = config.get("linux", {})
        plan.cgroup, cgroup_setup = self._make_cgroup(container_id, linux, st)
        plan.cgroup_binds = cgroup_setup[2]
        if not plan.terminal:
            pass
        elif console_fd is not None:
            plan.console_fd = os.dup(console_fd)  # not inheritable, closed below like ours
        else:
            plan.console_fd = connect_console(console_socket)
        parent = child_end = None
        try:
            plan.init_fd = sealed_copy(init_path())
            for i, (m, opts) in enumerate(plan.mounts):
                if opts.idmap:
                    plan.idmap_userns[i] = userns_fd(id_map_text(m.get("uidMappings", [])),
                                                     id_map_text(m.get("gidMappings", [])))
            plan.state_json = spec_state(container_id, S.CREATING, 0, plan.bundle,
                                         config.get("annotations"))
            native.set_child_subreaper(True)
            parent, child_end = pair()
            c1 = os.fork()
            if c1 == 0:
                parent.close()
                child_intermediate(plan, child_end)
        except BaseException:
            if parent is not None:
                parent.close()
            raise
        finally:
            # the children have their copies; a failure before fork must not leak them either
            if child_end is not None:
                child_end.close()
            for fd in [plan.init_fd, plan.console_fd] + list(plan.idmap_userns.values()):
                if fd is not None and fd >= 0:
                    os.close(fd)
        pid = 0
        try:
            # C1 is joining the cgroups now, which costs the kernel an RCU grace period
            # (10-20 ms): state, limits, device rules and seccomp are prepared meanwhile.
            self.store.save(container_id, st)
            self._apply_cgroup(plan.cgroup, *cgroup_setup[:2], linux)
            seccomp = compile_seccomp(plan)
            while True:
                kind, payload = parent.recv()
                if kind == "userns":
                    write_id_maps(c1, plan)
                    parent.send("mapped")
                elif kind == "pid":
                    pid = int(payload)
                    break
                else:
                    raise EdgertError("container %r: %s" % (
                        container_id, payload.decode() if kind else
                        "setup process died without a word"), code="create-failed")
            os.waitpid(c1, 0)
            c1 = 0
            st["pid"] = pid
            st["pid_start"] = S.proc_stat(pid)[1]
            net_devices = linux.get("netDevices")
            if net_devices:
                from . import netdev
                self.store.save(container_id, st)
                st["netns_pin"] = netdev.pin_netns(pid, self.store.dir(container_id))
                try:
                    netdev.move_in(pid, net_devices, st["net_devices"])
                finally:
                    self.store.save(container_id, st)
            plan.state_json["pid"] = pid
            hooks = config.get("hooks", {})
            run_hooks("prestart", hooks.get("prestart"), plan.state_json)
            run_hooks("createRuntime", hooks.get("createRuntime"), plan.state_json)
            parent.send("go", b"%d\n%d\n%s" % ((pid,) + ((seccomp[1], seccomp[0]) if seccomp
                                                           else (-1, b""))))
            kind, payload = parent.recv()
            if kind == "error":
                raise EdgertError("container %r: %s" % (container_id, payload.decode()),
                                  code="create-failed")
        except BaseException:
            if c1:
                try:
                    os.kill(c1, 9)
                except ProcessLookupError:
                    pass
            if pid:
                st["pid"] = pid
                st.setdefault("pid_start", (S.proc_stat(pid) or (0, 0))[1])
            raise
        finally:
            parent.close()
            if c1:
                reap(c1)
        if not start and not S.process_alive(pid, st["pid_start"]):
            # edgert-init waits for `start`; gone already means it failed (run's may be done)
            raise EdgertError("container %r: pid 1 exited during create" % container_id,
                              code="create-failed")
        if pid_file:
            write_pid_file(pid_file, pid)
        st["started"] = start
        self.store.save(container_id, st)
        if start:
            self._poststart(container_id, st)
        return pid

    def _make_cgroup(self, container_id, linux, st):
        """Makes the container's cgroup directories; limits come later (_apply_cgroup)."""
        from ..cgroup import fs, layout
        lay = fs.host_layout()
        # The parent of containers without a cgroupsPath, below the runtime's own cgroup.
        parent = os.environ.get("EDGERT_CGROUP_PARENT", "edgert")
        paths = layout.resolve_all(lay, linux.get("cgroupsPath"), container_id, parent)
        cg = fs.Cgroup(lay, paths)
        st["cgroup"] = {"paths": paths, "created": []}
        st["cgroup"]["created"] = cg.create()
        return cg, (lay, paths, cgroup_binds(lay, paths))

    @staticmethod
    def _apply_cgroup(cg, lay, paths, linux):
        from ..cgroup import devices, plan as cgplan
        resources = linux.get("resources") or {}
        cg.apply(cgplan.plan(resources, lay))
        cg.set_devices(devices.rules_for(resources.get("devices", []), linux.get("devices", [])))

    def _cleanup_failed(self, container_id, st):
        """Undo a failed create: kill what was started, remove cgroups and state."""
        pid = st.get("pid")
        if pid and S.process_alive(pid, st.get("pid_start")):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
            reap(pid)
        errors = self._release(container_id, st)
        if errors:
            self.log("container %s: cleanup after the failed create: %s"
                     % (container_id, "; ".join(errors)))
        self.store.remove(container_id)

    def _release(self, container_id, st):
        """Gives back host resources a container holds: net devices, the netns pin, cgroups.

        Returns what could not be released (one line each)."""
        errors = []
        if st.get("netns_pin"):
            from . import netdev
            try:
                netdev.move_out(st["netns_pin"], st.get("net_devices", []))
            except (OSError, EdgertError) as e:
                errors.append(describe(e))
            netdev.unpin_netns(st["netns_pin"])
        cgi = st.get("cgroup")
        if cgi:
            from ..cgroup import fs
            lay = fs.host_layout()
            try:
                fs.Cgroup(lay, cgi["paths"]).remove(cgi["created"])
            except OSError as e:
                errors.append(describe(e))
            if not st["config"].get("linux", {}).get("cgroupsPath"):
                # the shared default parent (<own>/edgert) goes when its last container does
                fs.prune_empty([os.path.dirname(d) for d in fs.Cgroup(lay, cgi["paths"]).dirs.values()])
        return errors

    def start(self, container_id):
        fd = self.store.lock(container_id)
        try:
            st = self.store.load(container_id)
            status = S.status(st)
            if status != S.CREATED:
                raise StateError("container %r is %s; only a created container can be started"
                                 % (container_id, status))
            hooks = st["config"].get("hooks", {}).get("startContainer")
            if hooks:
                self._start_hooks(container_id, st, hooks)
            self._signal(st, START_SIGNAL)
            st["started"] = True
            self.store.save(container_id, st)
        finally:
            os.close(fd)
        self._poststart(container_id, st)

    def _warn_skipped(self, container_id, plan):
        if plan.skipped_ambient:
            self.log("container %s: ambient capabilities %s skipped: they are not in both the "
                     "permitted and inheritable sets" % (container_id,
                                                         ", ".join(plan.skipped_ambient)))

    def _start_hooks(self, container_id, st, hooks):
        """startContainer hooks run inside the container's namespaces (their paths resolve in
        the container) before its process starts; a failure stops the container."""
        from .hooks import run_hooks, spec_state
        state = spec_state(container_id, S.CREATED, st["pid"], st["bundle"], st["annotations"])
        rfd, wfd = os.pipe2(os.O_CLOEXEC)
        child = os.fork()
        if child == 0:
            os.close(rfd)
            try:
                from .. import native
                from . import hooks as _hooks  # noqa: F401  (before the host's files vanish)
                for flag, path in join_paths(st):
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    native.setns(fd, flag)
                    os.close(fd)
                if os.fork() == 0:  # a child, to be inside the pid namespace too
                    try:
                        run_hooks("startContainer", hooks, state)
                        os._exit(0)
                    except BaseException as e:
                        os.write(wfd, describe(e).encode()[:4000])
                        os._exit(1)
                _, status = os.wait()
                os._exit(1 if status else 0)
            except BaseException as e:
                os.write(wfd, describe(e).encode()[:4000])
                os._exit(1)
        os.close(wfd)
        message = os.read(rfd, 4096).decode("utf-8", "replace")
        os.close(rfd)
        _, status = os.waitpid(child, 0)
        if status:
            self._kill_and_wait(st, S.CREATED)
            raise EdgertError("container %r: %s (the container was stopped)"
                              % (container_id, message or "startContainer hook failed"),
                              code="hook-failed")

    def _poststart(self, container_id, st):
        from .hooks import HookError, run_hooks, spec_state
        hooks = st["config"].get("hooks", {}).get("poststart")
        if hooks:
            try:
                run_hooks("poststart", hooks, spec_state(container_id, S.RUNNING, st["pid"],
                                                         st["bundle"], st["annotations"]))
            except HookError as e:
                self.log("warning: %s" % e)

    def run(self, container_id, bundle, console_socket=None, pid_file=None, detach=False):
        """create + start; in the foreground, wait and return the shell-style exit code."""
        forward = {}
        if not detach:
            forward = block_forwarded_signals()
        peer = ours = None
        if not detach and not console_socket:
            from .console import socketpair
            peer, ours = socketpair()  # used only if process.terminal is true
        try:
            pid = self.create(container_id, bundle, console_socket, pid_file, start=True,
                              console_fd=peer)
        except BaseException:
            if ours is not None:
                os.close(ours)
            raise
        finally:
            if peer is not None:
                os.close(peer)
        if detach:
            return 0
        if ours is None:  # the console socket's owner has the terminal
            pass
        elif self.store.load(container_id)["config"].get("process", {}).get("terminal"):
            from . import console
            master = console.receive_master(ours)  # closes ours
            forward["winch_to"] = master
            forward["pid"] = pid
            console.proxy(master)
            forward["winch_to"] = None
        else:
            os.close(ours)
        status = wait_forwarding(pid, forward)
        kills = self.oom_kills(container_id)
        if kills:
            self.log("container %s: the OOM killer killed %d process(es): the memory limit is too "
                     "low for this workload" % (container_id, kills))
        self.delete(container_id, force=True)
        return exit_code(status)

    # inspection -----------------------------------------------------------------------------

    def state(self, container_id):
        from .hooks import spec_state
        st = self.store.load(container_id)
        status = self._status(st)
        out = spec_state(container_id, status, st.get("pid"), st["bundle"], st.get("annotations"))
        if st.get("cgroup") and status != S.CREATING:
            kills = self._cgroup(st).oom_kills()
            if kills:
                out["oomKills"] = kills  # an extension field: the OOM killer struck this container
        out["rootfs"] = st.get("rootfs")
        out["created"] = st.get("created")
        out["owner"] = st.get("owner", "")
        return out

    def _status(self, st):
        status = S.status(st)
        if status in (S.RUNNING, S.CREATED) and st.get("cgroup"):
            if self._cgroup(st).state() == "frozen":
                return S.PAUSED
        return status

    def _cgroup(self, st):
        from ..cgroup import fs
        return fs.Cgroup(fs.host_layout(), st["cgroup"]["paths"])

    def list(self):
        out = []
        for cid in self.store.ids():
            try:
                out.append(self.state(cid))
            except EdgertError:
                continue
        return out

    def ps(self, container_id):
        st = self.store.load(container_id)
        if not st.get("cgroup"):
            return [st["pid"]] if S.status(st) != S.STOPPED else []
        return self._cgroup(st).pids()

    # signals and teardown ------------------------------------------------------------------

    def _signal(self, st, sig):
        """Signals pid 1 through a pidfd, so a reused pid can never be hit."""
        from .. import native
        pid = st["pid"]
        try:
            pidfd = native.pidfd_open(pid)
        except OSError as e:
            if e.errno == errno.ESRCH:
                raise StateError("container %r is not running" % st["id"]) from None
            if e.errno != errno.ENOSYS:
                raise
            if not S.process_alive(pid, st.get("pid_start")):
                raise StateError("container %r is not running" % st["id"]) from None
            os.kill(pid, sig)
            return
        try:
            if not S.process_alive(pid, st.get("pid_start")):
                raise StateError("container %r is not running" % st["id"])
            native.pidfd_send_signal(pidfd, sig)
        finally:
            os.close(pidfd)

    def kill(self, container_id, sig, all_processes=False):
        st = self.store.load(container_id)
        status = self._status(st)
        if status == S.STOPPED and not all_processes:
            raise StateError("container %r is not running" % container_id)
        if all_processes and st.get("cgroup"):
            self._cgroup(st).kill_all(sig)
            return
        self._signal(st, sig)

    def delete(self, container_id, force=False):
        from .hooks import HookError, run_hooks, spec_state
        try:
            fd = self.store.lock(container_id)
        except EdgertError:
            if force:
                return
            raise
        try:
            try:
                st = self.store.load(container_id)
            except StateError:
                if not force:
                    raise
                self.store.remove(container_id)
                return
            status = self._status(st)
            if status in (S.RUNNING, S.PAUSED) and not force:
                raise StateError("container %r is %s: stop it first, or delete with --force"
                                 % (container_id, status))
            self._kill_and_wait(st, status)
            errors = self._release(container_id, st)
            if errors:
                raise EdgertError("container %r: could not release: %s (its state is kept: "
                                  "run delete again)" % (container_id, "; ".join(errors)),
                                  code="cleanup-failed")
            hooks = st["config"].get("hooks", {}).get("poststop")
            if hooks:
                try:
                    run_hooks("poststop", hooks, spec_state(container_id, S.STOPPED, 0,
                                                            st["bundle"], st["annotations"]))
                except HookError as e:
                    self.log("warning: %s" % e)
            self.store.remove(container_id)
        finally:
            os.close(fd)

    def _kill_and_wait(self, st, status):
        """Kills everything left of the container: pid 1, and, through the cgroup, processes
        that outlive it (a container without its own pid namespace leaves them behind). The
        cgroup kill also thaws a paused container, which SIGKILL alone cannot end."""
        import time
        alive = status not in (S.STOPPED, S.CREATING)
        cg = self._cgroup(st) if st.get("cgroup") else None
        if cg is None or not cg.exists():
            if alive:
                try:
                    self._signal(st, 9)
                except StateError:
                    return
                wait_gone(st["pid"], st.get("pid_start"))
            return
        deadline = time.monotonic() + 10
        while alive or cg.pids():
            if time.monotonic() > deadline:
                raise EdgertError("container %r: processes %s survive SIGKILL"
                                  % (st["id"], cg.pids()[:10]), code="stuck")
            cg.kill_all(9)
            if alive:
                wait_gone(st["pid"], st.get("pid_start"))
                alive = False
            else:
                time.sleep(0.005)

    def pause(self, container_id):
        st = self.store.load(container_id)
        if self._status(st) not in (S.RUNNING, S.CREATED):
            raise StateError("container %r is not running" % container_id)
        self._cgroup(st).freeze()

    def resume(self, container_id):
        st = self.store.load(container_id)
        if self._status(st) != S.PAUSED:
            raise StateError("container %r is not paused" % container_id)
        self._cgroup(st).thaw()

    def oom_kills(self, container_id):
        st = self.store.load(container_id)
        return self._cgroup(st).oom_kills() if st.get("cgroup") else 0

    # exec ------------------------------------------------------------------------------------

    def exec(self, container_id, process, console_socket=None, pid_file=None, detach=False,
             overrides=None, stdio=None):
        """Runs ``process`` (a runtime-spec process object) inside a running container; with
        ``process`` None, the container's own process object changed by ``overrides``.
        ``stdio`` as for create."""
        forward = {} if detach else block_forwarded_signals()
        epid = self.spawn_exec(container_id, process, console_socket, overrides, stdio)
        if pid_file:
            write_pid_file(pid_file, epid)
        if detach:
            return 0
        return exit_code(wait_forwarding(epid, forward))

    def spawn_exec(self, container_id, process, console_socket=None, overrides=None,
                   stdio=None, console_fd=None):
        """exec without waiting: returns the host pid of the new process, a child of the
        caller (the runtime makes it a child subreaper), which must reap it. ``console_fd``
        (the caller's, who closes it) instead of ``console_socket``: a connected unix socket
        the pty master of a terminal process is sent on (the daemon's `exec -t`)."""
        from .. import native
        st = self.store.load(container_id)
        status = self._status(st)
        if status not in (S.RUNNING, S.CREATED):
            raise StateError("container %r is %s; exec needs a running container"
                             % (container_id, status))
        from ..oci import spec
        config = st["config"]
        if process is None:
            process = process_from(config["process"], overrides or {})
        process = spec.validate_process(process)
        linux = config.get("linux", {})
        plan = Plan()
        plan_process(plan, process, linux.get("seccomp"))
        plan.seccomp = compile_seccomp(plan)
        self._warn_skipped(container_id, plan)
        if plan.terminal and not console_socket and console_fd is None:
            raise ConfigError("exec --tty needs --console-socket")
        plan.ns_join = join_paths(st)
        if st.get("cgroup"):
            plan.cgroup = self._cgroup(st)
        plan.stdio = check_stdio(stdio)
        if console_fd is not None:
            plan.console_fd = os.dup(console_fd)  # not inheritable, closed below like ours
        elif console_socket:
            plan.console_fd = connect_console(console_socket)
        native.set_child_subreaper(True)
        parent = child = None
        try:
            parent, child = pair()
            e1 = os.fork()
            if e1 == 0:
                parent.close()
                child_exec(plan, child)
        except BaseException:
            if parent is not None:
                parent.close()
            raise
        finally:
            if child is not None:
                child.close()
            if plan.console_fd is not None:
                os.close(plan.console_fd)
        try:
            kind, payload = parent.recv()
            if kind != "pid":
                raise EdgertError("exec in container %r: %s" % (
                    container_id, payload.decode() if kind else "setup process died"),
                    code="exec-failed")
            epid = int(payload)
            reap(e1)
            e1 = 0
            kind, payload = parent.recv()
            if kind == "error":
                reap(epid)
                raise EdgertError("exec in container %r: %s" % (container_id, payload.decode()),
                                  code="exec-failed")
        finally:
            parent.close()
            if e1:
                reap(e1)
        return epid


def process_from(base, overrides):
    """exec without --process: the container's process with runc's flag overrides applied
    (args, terminal, extra env replacing same-named entries, cwd, user, added capabilities)."""
    proc = dict(base)
    proc["args"] = list(overrides["args"])
    proc["terminal"] = overrides.get("terminal", False)
    proc.pop("consoleSize", None)
    if overrides.get("consoleSize"):
        proc["consoleSize"] = overrides["consoleSize"]
    env = {e.split("=", 1)[0]: e for e in base.get("env", [])}
    for entry in overrides.get("env", []):
        env[entry.split("=", 1)[0]] = entry
    proc["env"] = list(env.values())
    for key in ("cwd", "user", "noNewPrivileges"):
        if key in overrides:
            proc[key] = overrides[key]
    if overrides.get("caps"):
        caps = dict(base.get("capabilities") or {})
        for kind in ("bounding", "effective", "permitted"):
            caps[kind] = list(caps.get(kind, [])) + [c for c in overrides["caps"]
                                                     if c not in caps.get(kind, [])]
        proc["capabilities"] = caps
    return proc


def join_paths(st):
    """(clone flag, /proc/<pid>/ns/<name>) for every namespace of a running container, in the
    order setns needs: user first (it owns the rest), mount last (it hides /proc's host view)."""
    pid = st["pid"]
    types = [ns["type"] for ns in st["config"].get("linux", {}).get("namespaces", [])]
    order = ("user", "ipc", "uts", "network", "cgroup", "time", "pid", "mount")
    return [(K.NAMESPACE_FLAGS[t], "/proc/%d/ns/%s" % (pid, K.NAMESPACE_PROC_NAMES[t]))
            for t in order if t in types]


def child_exec(plan, ch):
    """E1 joins the container's namespaces and forks E2, which becomes the process."""
    from .. import native
    from . import child as C
    from . import hooks  # noqa: F401  (finish_process needs it after setns(mnt))
    try:
        C.preload(plan)
        native.set_dumpable(False)
        if plan.cgroup is not None:
            plan.cgroup.add_pid(os.getpid())
        fds = [(flag, os.open(path, os.O_RDONLY | os.O_CLOEXEC)) for flag, path in plan.ns_join]
        for flag, fd in fds:
            native.setns(fd, flag)
            os.close(fd)
        pid = os.fork()
        if pid == 0:
            try:
                if plan.terminal:
                    C.setup_console(plan.console_fd, plan.console_size)
                finish_process(plan, ch, native, create_cwd=False)
            except BaseException as e:
                fail_child(ch, e, 127)
        ch.send("pid", str(pid))
        os._exit(0)
    except BaseException as e:
        fail_child(ch, e, 1)


# --- small helpers ---

def cgroup_binds(lay, paths):
    """(name, host dir) for mounting the container's cgroups: "" alone on a pure v2 host,
    else one per v1 hierarchy (co-mounted controllers once) plus "unified" on a hybrid host."""
    mounts = lay.hierarchies()
    if lay.mode == "v2":
        return [("", mounts[""] + paths[""])]
    binds, seen = [], set()
    for key, mountpoint in sorted(mounts.items()):
        if mountpoint in seen:
            continue
        seen.add(mountpoint)
        name = "unified" if key == "" else os.path.basename(mountpoint)
        binds.append((name, mountpoint + paths[key]))
    return binds



def userns_fd(uid_map, gid_map):
    """An fd of a new user namespace with these mappings (for idmapped mounts): a child makes
    the namespace, the runtime writes its maps and keeps a reference, the child exits."""
    from .. import native
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    done_r, done_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(done_w)
            os.close(ready_r)
            native.unshare(K.CLONE_NEWUSER)
            os.write(ready_w, b"u")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"u":
            raise EdgertError("idmapped mount: could not create a user namespace",
                              code="create-failed")
        for name, text in (("uid_map", uid_map), ("gid_map", gid_map)):
            with open("/proc/%d/%s" % (pid, name), "w") as f:
                f.write(text)
        return os.open("/proc/%d/ns/user" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise EdgertError("idmapped mount: %s" % describe(e), code="create-failed") from None
    finally:
        os.close(done_w)
        os.close(ready_r)
        reap(pid)


def write_id_maps(pid, plan):
    for name, text in (("uid_map", plan.uid_map), ("gid_map", plan.gid_map)):
        if text:
            try:
                with open("/proc/%d/%s" % (pid, name), "w") as f:
                    f.write(text)
            except OSError as e:
                raise EdgertError("writing %s %r: %s" % (name, text, e.strerror),
                                  code="create-failed") from None


def connect_console(path):
    import _socket
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise EdgertError("console socket %s: %s" % (path, e.strerror),
                          code="console-socket") from None
    return sock.detach()


def check_stdio(stdio):
    if stdio is None:
        return None
    if len(stdio) != 3 or not all(isinstance(fd, int) and fd >= 0 for fd in stdio):
        raise EdgertError("stdio %r: want three open fds (stdin, stdout, stderr)" % (stdio,),
                          code="invalid-stdio")
    return tuple(stdio)


def write_pid_file(path, pid):
    from ..fsutil import atomic_write
    atomic_write(os.path.abspath(path), "%d" % pid, sync=False)


def reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def wait_gone(pid, start_time, timeout=10.0):
    """Waits until ``pid`` has exited (pidfd poll, or /proc polling without pidfds)."""
    import select
    import time
    from .. import native
    try:
        pidfd = native.pidfd_open(pid)
    except OSError:
        pidfd = -1
    deadline = time.monotonic() + timeout
    try:
        while S.process_alive(pid, start_time):
            if time.monotonic() > deadline:
                raise EdgertError("pid %d did not exit within %.0fs of SIGKILL" % (pid, timeout),
                                  code="stuck")
            if pidfd >= 0:
                select.select([pidfd], [], [], 0.1)
            else:
                time.sleep(0.005)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def block_forwarded_signals():
    """Signals a foreground run/exec passes on to the container, caught from now on."""
    import _signal
    target = {"pid": 0}

    def forward(sig, frame):
        if sig == 28 and target.get("winch_to") is not None:
            from .console import copy_window_size
            copy_window_size(0, target["winch_to"])
        elif target["pid"]:
            try:
                os.kill(target["pid"], sig)
            except ProcessLookupError:
                pass
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, forward)
    return target


def wait_forwarding(pid, target):
    target["pid"] = pid
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except ChildProcessError:
            raise EdgertError("lost track of pid %d (not our child)" % pid, code="lost") from None
