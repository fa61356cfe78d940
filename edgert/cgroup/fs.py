"""The cgroup edge: directories and files under the mountpoints a Layout names.

Every path is derived from the Layout, so tests hand in a Layout whose mountpoints are temporary
directories. One Cgroup is one container's cgroup in every hierarchy of the layout: a directory
per v1 mount (co-mounted controllers share it) plus one in the cgroup2 hierarchy when there is one.
"""

import errno
import os
import time

from ..errors import StateError, Unsupported
from . import devices
from .layout import detect

_UNLIMITED_V1 = 1 << 62   # v1 reports "no limit" as the largest page-aligned number near 2**63


def host_layout():
    """The Layout of the running host, from /proc/self/{mountinfo,cgroup} and cgroup2's root."""
    layout = detect(_read("/proc/self/mountinfo"), _read("/proc/self/cgroup"))
    if layout.unified:
        controllers = _read(os.path.join(layout.unified, "cgroup.controllers")).split()
        layout = layout.with_v2_controllers(controllers)
    return layout


class Cgroup:
    """One container's cgroup: ``path`` is a cgroup path, or a dict hierarchy key -> path
    (layout.resolve_all), since a relative cgroupsPath differs between hierarchies."""

    def __init__(self, layout, path):
        self.layout = layout
        mounts = layout.hierarchies()
        paths = path if isinstance(path, dict) else dict.fromkeys(mounts, path)
        self.mounts = mounts
        self.dirs = {key: _below(mounts[key], paths[key]) for key in mounts}

    def __repr__(self):
        return f"Cgroup({self.dirs!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    def create(self):
        """Makes the cgroup in every hierarchy; returns the directories it made, parents first.

        If a mkdir fails, the directories made so far are removed again before the error rises.
        """
        created = self.created = []
        try:
            for key, directory in self._distinct():
                own = _below(self.mounts[key], self.layout.own.get(key, "/"))
                self._make_steps(self.mounts[key], directory, created, own)
        except BaseException:
            self.remove(created)
            raise
        return created

    def _make_steps(self, mount, directory, created, own, tries=5):
        """mkdir -p of ``directory`` below ``mount``. Another container's delete may remove a
        shared parent (<own>/edgert) between our steps: ENOENT, or ENODEV from a parent that
        is dying (a mkdir in it, a read of its cpuset), then walks the path again."""
        for attempt in range(tries):
            try:
                for step in _steps(mount, directory):
                    try:
                        self._mkdir(step)
                        created.append(step)
                    except FileExistsError:
                        if not step.startswith(own.rstrip("/") + "/"):
                            continue  # not ours to fill in
                    if self.layout.v1.get("cpuset") == mount:
                        # also for a parent another container is still making (below our own
                        # cgroup): its cpus may be empty yet, and so would its child's stay
                        self._inherit_cpuset(step)
                return
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.ENODEV) or attempt == tries - 1:
                    raise

    def _mkdir(self, path):
        """mkdir; FileExistsError when it is there already. Tests replace it with a fake kernel."""
        try:
            os.mkdir(path, 0o755)
        except OSError as e:
            if e.errno == errno.EEXIST:
                raise
            raise OSError(e.errno, f"mkdir cgroup: {os.strerror(e.errno)}", path) from None

    def _inherit_cpuset(self, directory):
        """A new v1 cpuset starts with no cpus and no mems, and no task may join it: copy the
        parent's, so the container runs where its parent may, until cpu.cpus/mems narrow it."""
        parent = os.path.dirname(directory)
        for name in ("cpuset.cpus", "cpuset.mems"):
            own = os.path.join(directory, name)
            if not _read(own).strip():
                self._write(own, _read(os.path.join(parent, name)).strip())

    def exists(self):
        return os.path.isdir(self._primary())

    def remove(self, created_dirs, timeout=2.0):
        """Removes the directories ``create`` made (and cgroups the container made below its own),
        deepest first. A created parent that still holds other cgroups is left in place."""
        created = set(created_dirs)
        deadline = time.monotonic() + timeout
        leaves = {directory for _, directory in self._distinct() if directory in created}
        failed = []
        for leaf in leaves:
            for nested in _subdirectories(leaf):
                try:
                    self._rmdir(nested, deadline)
                except OSError as e:
                    failed.append(e)
        for directory in sorted(created, key=lambda d: d.count("/"), reverse=True):
            try:
                self._rmdir(directory, deadline if directory in leaves else None)
            except OSError as e:
                if directory in leaves or e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    failed.append(e)
                # else a shared parent such as <own>/edgert still holds other containers' cgroups
        if failed:  # every hierarchy was tried; report the first failure
            raise failed[0]

    def _rmdir(self, directory, deadline):
        """rmdir; with a deadline, EBUSY is retried while the last processes finish exiting."""
        delay = 0.001
        while True:
            try:
                self._rmdir_once(directory)
                return
            except FileNotFoundError:
                return
            except OSError as e:
                if e.errno != errno.EBUSY or deadline is None or time.monotonic() > deadline:
                    hint = " (processes or child cgroups are still in it)" \
                        if e.errno == errno.EBUSY else ""
                    raise OSError(e.errno, f"rmdir cgroup: {os.strerror(e.errno)}{hint}",
                                  directory) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _rmdir_once(self, directory):
        """os.rmdir: cgroupfs removes a cgroup with its interface files. Tests fake the kernel."""
        os.rmdir(directory)

    # -- limits and membership ---------------------------------------------------------------

    def apply(self, writes):
        """Writes a plan (list of plan.Write) in order, enabling cgroup2 controllers it needs."""
        needed = sorted({w.filename.split(".", 1)[0] for w in writes
                         if w.hierarchy == "" and not w.check} - {"cgroup"})
        if needed:
            self._enable_controllers(needed)
        for write in writes:
            path = os.path.join(self.dirs[write.hierarchy], write.filename)
            if write.check:
                current = int(_read(path).split()[0])
                if current > int(write.value):
                    raise StateError(
                        f"cgroup {path}: usage {current} is above the new limit {write.value}; "
                        "memory.checkBeforeUpdate refuses the update: free memory or raise it")
                continue
            self._write(path, write.value)

    def _enable_controllers(self, controllers):
        """cgroup2 offers a controller's files in a cgroup only when every ancestor lists it in
        cgroup.subtree_control. edgert enables it only in directories it made itself: a cgroup
        above those (the runtime's own, the host's) must already delegate it."""
        mount = self.layout.unified
        mine = set(getattr(self, "created", ()))
        for directory in [mount] + _steps(mount, self.dirs[""])[:-1]:
            control = os.path.join(directory, "cgroup.subtree_control")
            enabled = _read(control).split()
            for controller in controllers:
                if controller in enabled:
                    continue
                if directory not in mine:
                    raise Unsupported(
                        f"cgroup v2 controller {controller} is not enabled in {control}, and "
                        "edgert changes only cgroups it made: enable it there (firmware init: "
                        f"echo +{controller} > {control}) or drop the limit")
                self._write(control, "+" + controller)

    def add_pid(self, pid):
        """Moves process ``pid`` into the cgroup in every hierarchy."""
        for _, directory in self._distinct():
            self._write(os.path.join(directory, "cgroup.procs"), str(pid))

    def set_devices(self, rules):
        """Enforces device rules (devices.Rule list): v1 devices files, or on cgroup v2 an eBPF
        program that replaces the one a previous call attached."""
        if "devices" in self.layout.v1:
            directory = self.dirs["devices"]
            for filename, line in devices.v1_lines(rules):
                self._write(os.path.join(directory, filename), line)
        elif self.layout.unified:
            self._attach_device_program(devices.bpf_program(rules))
        else:
            raise Unsupported("cgroups: no devices controller is mounted and there is no cgroup2 "
                              "hierarchy for an eBPF device program; device rules cannot be "
                              "enforced")

    def _attach_device_program(self, insns):
        # BPF_F_ALLOW_MULTI: programs of ancestors (e.g. an init system's) keep running too, and
        # every one must allow. The new program is attached before the old ones are detached, so
        # the rules in force are never looser than both the old and the new set.
        from .. import native
        from ..linuxconst import BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, BPF_PROG_TYPE_CGROUP_DEVICE
        directory = self.dirs[""]
        program = native.bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, insns, "GPL")
        try:
            cgroup = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                # the cgroup is the container's own, so the programs on it are edgert's
                previous = native.bpf_prog_query(cgroup, BPF_CGROUP_DEVICE)
                native.bpf_prog_attach(cgroup, program, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
                for prog_id in previous:
                    old = native.bpf_prog_get_fd_by_id(prog_id)
                    try:
                        native.bpf_prog_detach2(cgroup, old, BPF_CGROUP_DEVICE)
                    finally:
                        os.close(old)
            finally:
                os.close(cgroup)
        finally:
            os.close(program)

    # -- freezing and signals ----------------------------------------------------------------

    def freeze(self, timeout=5.0):
        """Freezes every process and waits until the kernel reports the cgroup frozen."""
        version, directory = self._freezer()
        deadline = time.monotonic() + timeout
        delay = 0.001
        if version == 2:
            self._write(os.path.join(directory, "cgroup.freeze"), "1")
        while True:
            if version == 1:
                # re-requesting FROZEN makes the v1 freezer retry tasks it could not stop yet
                self._write(os.path.join(directory, "freezer.state"), "FROZEN")
            if self.state() == "frozen":
                return
            if time.monotonic() > deadline:
                self.thaw()
                raise StateError(f"cgroup {directory}: not frozen after {timeout:g} s (a process "
                                 "may be stuck in the kernel); thawed it again")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def thaw(self):
        version, directory = self._freezer()
        if version == 1:
            self._write(os.path.join(directory, "freezer.state"), "THAWED")
        else:
            self._write(os.path.join(directory, "cgroup.freeze"), "0")

    def state(self):
        """Returns "frozen" once a freeze has completed, otherwise "thawed"."""
        version, directory = self._freezer()
        if version == 1:
            frozen = _read(os.path.join(directory, "freezer.state")).strip() == "FROZEN"
        else:
            frozen = _keyed(_read(os.path.join(directory, "cgroup.events"))).get("frozen") == 1
        return "frozen" if frozen else "thawed"

    def _freezer(self):
        if "freezer" in self.layout.v1:
            return 1, self.dirs["freezer"]
        if self.layout.unified:
            return 2, self.dirs[""]
        raise Unsupported("cgroups: no freezer: the v1 freezer controller is not mounted and "
                          "there is no cgroup2 hierarchy")

    def pids(self):
        """Every process in the cgroup and the cgroups below it, sorted."""
        found = set()
        top = self._primary()
        for directory in [top] + _subdirectories(top):
            try:
                found.update(int(line) for line in _read(os.path.join(directory, "cgroup.procs"))
                             .split())
            except FileNotFoundError:
                continue   # a nested cgroup removed while we walked
        return sorted(found)

    def kill_all(self, sig):
        """Sends ``sig`` to every process. cgroup2's cgroup.kill does SIGKILL atomically;
        otherwise the cgroup is frozen so nothing forks between listing and signalling."""
        import signal
        if sig == signal.SIGKILL and self.layout.unified:
            kill_file = os.path.join(self.dirs[""], "cgroup.kill")
            if os.path.exists(kill_file):
                self._write(kill_file, "1")
                if "freezer" in self.layout.v1 and self.state() == "frozen":
                    self.thaw()   # v1-frozen processes act on the SIGKILL only once thawed
                return
        try:
            self._freezer()
        except Unsupported:
            self._signal_each(sig)
            return
        was_frozen = self.state() == "frozen"
        self.freeze()
        try:
            self._signal_each(sig)
        finally:
            # a paused container stays paused, unless the signal can only act once it runs
            if not was_frozen or sig == signal.SIGKILL:
                self.thaw()

    def _signal_each(self, sig):
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass   # exited since it was listed

    # -- accounting ------------------------------------------------------------------------------

    def oom_kills(self):
        """How many processes the OOM killer has killed in the cgroup (0 without a memory
        controller: then no limit of ours can cause one)."""
        version = self.layout.version("memory")
        if version == 1:
            top = self.dirs["memory"]
            total = 0
            for directory in [top] + _subdirectories(top):   # v1 counts per cgroup only
                text = _read_optional(os.path.join(directory, "memory.oom_control"))
                total += _keyed(text or "").get("oom_kill", 0)
            return total
        if version == 2:
            text = _read_optional(os.path.join(self.dirs[""], "memory.events"))
            return _keyed(text or "").get("oom_kill", 0)
        return 0

    def stats(self):
        """Usage figures the kernel offers for this cgroup; a key is absent when it offers none.

        memory_usage, memory_max_usage, memory_limit (bytes), cpu_usage_ns, pids_current,
        pids_limit; a limit of None means unlimited.
        """
        stats = {}
        memory = self.layout.version("memory")
        if memory == 1:
            self._stat(stats, "memory_usage", "memory", "memory.usage_in_bytes")
            self._stat(stats, "memory_max_usage", "memory", "memory.max_usage_in_bytes")
            self._stat(stats, "memory_limit", "memory", "memory.limit_in_bytes")
        elif memory == 2:
            self._stat(stats, "memory_usage", "", "memory.current")
            self._stat(stats, "memory_max_usage", "", "memory.peak")
            self._stat(stats, "memory_limit", "", "memory.max")
        if "cpuacct" in self.layout.v1:
            self._stat(stats, "cpu_usage_ns", "cpuacct", "cpuacct.usage")
        elif self.layout.unified:
            text = _read_optional(os.path.join(self.dirs[""], "cpu.stat"))
            if text is not None:
                stats["cpu_usage_ns"] = _keyed(text)["usage_usec"] * 1000
        pids = self.layout.key("pids")
        if pids is not None:
            self._stat(stats, "pids_current", pids, "pids.current")
            self._stat(stats, "pids_limit", pids, "pids.max")
        return stats

    def _stat(self, stats, name, key, filename):
        text = _read_optional(os.path.join(self.dirs[key], filename))
        if text is None:
            return
        text = text.strip()
        value = None if text == "max" else int(text)
        if name.endswith("_limit") and value is not None and value >= _UNLIMITED_V1:
            value = None
        stats[name] = value

    # -- helpers ---------------------------------------------------------------------------------

    def _distinct(self):
        """(key, directory) once per directory: co-mounted v1 controllers share one."""
        seen = set()
        for key, directory in self.dirs.items():
            if directory not in seen:
                seen.add(directory)
                yield key, directory

    def _primary(self):
        """The directory whose processes are the container's: freezer's, as freezing acts there."""
        for key in ("freezer", "", "pids", "memory"):
            if key in self.dirs:
                return self.dirs[key]
        return next(iter(self.dirs.values()))

    def _write(self, path, value):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as e:
            field = FILE_FIELDS.get(os.path.basename(path))
            raise OSError(e.errno, (f"config.json: {field}: " if field else "")
                          + f"write {value!r} to {os.path.basename(path)}: "
                          f"{os.strerror(e.errno)} ({_hint(path, e.errno)})", path) from None


def _hint(path, err):
    """What an errno means for a write to this cgroup file."""
    name = os.path.basename(path)
    if name == "cgroup.subtree_control" and err == errno.EBUSY:
        return ("cgroup v2 cannot enable a controller below a cgroup that holds processes, "
                "here the runtime's own: run edgert in a cgroup of its own or give "
                "linux.cgroupsPath an absolute path")
    if name == "cgroup.procs" and err == errno.ENOSPC:
        return "the cgroup's cpuset.cpus or cpuset.mems is empty"
    if name == "cgroup.procs" and err == errno.EBUSY:
        return "cgroup v2 admits processes only into cgroups without enabled child controllers"
    if name == "cpu.rt_runtime_us" and err == errno.EINVAL:
        return ("a cgroup's real-time budget must fit in its parent's cpu.rt_runtime_us, and "
                "new cgroups start with 0: give the parent cgroups a budget first")
    if name == "memory.use_hierarchy" and err == errno.EINVAL:
        return "kernels since 5.16 only accept 1 (hierarchical accounting is always on)"
    if name.startswith("blkio.bfq.") and err in (errno.EOPNOTSUPP, errno.EINVAL):
        return "per-device weights need the BFQ I/O scheduler on that disk"
    if name.startswith("cpuset.") and err == errno.EINVAL:
        return "CPUs and memory nodes must exist and lie within the parent cgroup's cpuset"
    if name.startswith("memory.") and err == errno.EBUSY:
        return "current usage is above the new limit and could not be reclaimed"
    if name.startswith("devices.") and err == errno.EPERM:
        return "the parent cgroup does not allow those devices"
    return {
        errno.EINVAL: "the kernel rejected the value",
        errno.ENOENT: "the kernel has no such file: the controller or feature is missing or "
                      "not enabled for this cgroup",
        errno.EACCES: "the file is read-only or access is denied",
        errno.EPERM: "not permitted here",
        errno.EBUSY: "the cgroup is in use",
        errno.ERANGE: "the value is out of range",
        errno.ENOSPC: "a limit would be exceeded",
        errno.EOPNOTSUPP: "the kernel does not support this setting",
        errno.ESRCH: "no such process",
    }.get(err, "unexpected error")


def prune_empty(directories):
    """Removes each cgroup directory that has no processes and no children left; a busy or
    missing one is left alone (another container may be starting below it)."""
    for directory in directories:
        try:
            os.rmdir(directory)
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.ENOENT):
                raise


# cgroup file -> the config.json field that asked for it, for error messages.
FILE_FIELDS = {
    "memory.limit_in_bytes": "linux.resources.memory.limit", "memory.max": "linux.resources.memory.limit",
    "memory.soft_limit_in_bytes": "linux.resources.memory.reservation",
    "memory.low": "linux.resources.memory.reservation",
    "memory.memsw.limit_in_bytes": "linux.resources.memory.swap",
    "memory.swap.max": "linux.resources.memory.swap",
    "memory.swappiness": "linux.resources.memory.swappiness",
    "memory.oom_control": "linux.resources.memory.disableOOMKiller",
    "memory.use_hierarchy": "linux.resources.memory.useHierarchy",
    "cpu.shares": "linux.resources.cpu.shares", "cpu.weight": "linux.resources.cpu.shares",
    "cpu.cfs_quota_us": "linux.resources.cpu.quota", "cpu.cfs_period_us": "linux.resources.cpu.period",
    "cpu.max": "linux.resources.cpu.quota", "cpu.cfs_burst_us": "linux.resources.cpu.burst",
    "cpu.max.burst": "linux.resources.cpu.burst",
    "cpu.rt_runtime_us": "linux.resources.cpu.realtimeRuntime",
    "cpu.rt_period_us": "linux.resources.cpu.realtimePeriod",
    "cpu.idle": "linux.resources.cpu.idle",
    "cpuset.cpus": "linux.resources.cpu.cpus", "cpuset.mems": "linux.resources.cpu.mems",
    "pids.max": "linux.resources.pids.limit",
    "blkio.bfq.weight": "linux.resources.blockIO.weight", "io.weight": "linux.resources.blockIO",
    "blkio.bfq.weight_device": "linux.resources.blockIO.weightDevice",
    "blkio.throttle.read_bps_device": "linux.resources.blockIO.throttleReadBpsDevice",
    "blkio.throttle.write_bps_device": "linux.resources.blockIO.throttleWriteBpsDevice",
    "blkio.throttle.read_iops_device": "linux.resources.blockIO.throttleReadIOPSDevice",
    "blkio.throttle.write_iops_device": "linux.resources.blockIO.throttleWriteIOPSDevice",
    "io.max": "linux.resources.blockIO",
    "net_cls.classid": "linux.resources.network.classID",
    "net_prio.ifpriomap": "linux.resources.network.priorities",
}


def _below(mount, path):
    return mount if path in ("", "/") else mount.rstrip("/") + "/" + path.strip("/")


def _steps(mount, directory):
    """Every directory from just below ``mount`` down to ``directory``."""
    rest = directory[len(mount):].strip("/")
    steps, current = [], mount.rstrip("/")
    for part in rest.split("/") if rest else ():
        current += "/" + part
        steps.append(current)
    return steps


def _subdirectories(top):
    """Every directory below ``top``, deepest first."""
    found = []
    try:
        entries = list(os.scandir(top))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            found += _subdirectories(entry.path) + [entry.path]
    return found


def _keyed(text):
    """'key value' lines (cgroup.events, memory.events, memory.oom_control) -> {key: int}."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    return values


def _read(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as e:  # ENODEV: the cgroup was removed after the open
                raise OSError(e.errno, "read %s: %s" % (os.path.basename(path),
                                                        os.strerror(e.errno)), path) from None
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)
    finally:
        os.close(fd)


def _read_optional(path):
    try:
        return _read(path)
    except FileNotFoundError:
        return None
