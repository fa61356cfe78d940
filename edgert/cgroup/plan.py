"""OCI ``linux.resources`` -> the cgroup file writes that enforce it, in the order to apply them.

Each controller is written in the hierarchy that holds it (Layout.version): the v1 file names on
a v1 hierarchy, the v2 names and the standard conversions on the cgroup2 one. In hybrid mode a
resource whose controller no v1 mount took (hugetlb on many hosts) goes to cgroup2.

Conventions, as the runtime-spec and runc use them:
- -1 means unlimited: "-1" in v1 files (pids.max: "max"), "max" in v2 files;
- 0 where the kernel would read it as "nothing at all" (memory limit/reservation/swap, cpu
  shares/quota/period/realtime, pids limit, block I/O weight, net_cls class id) means "not set";
- memory.swap is memory + swap, as in v1's memsw; v2's memory.swap.max is swap - limit.

A set field whose controller is missing, that has no meaning on the hierarchy its controller is
on, or whose value is malformed raises Unsupported/ConfigError naming the field. Unknown keys are
ignored, as the runtime-spec requires. Device rules are not file writes on cgroup v2: they go
through devices.rules_for() and Cgroup.set_devices().

The same plan serves ``update``: fields left out produce no write.
"""


from ..errors import ConfigError, Unsupported
from ..record import record

# ``check``: instead of writing, apply() reads the file and refuses to go on when its number
# exceeds ``value`` (memory.checkBeforeUpdate: do not set a limit below the current usage).
Write = record("Write", "hierarchy filename value check", defaults=(False,))

_V1_CPU_PERIOD = (1000, 1000000)     # µs, the kernel's bounds for cfs and rt periods
_SHARES = (2, 262144)
_BLKIO_WEIGHT = (10, 1000)
_V2_WEIGHT_MAX = 10000
_UNIFIED_CGROUP_KEYS = ("cgroup.max.descendants", "cgroup.max.depth")


def plan(resources, layout, source="config.json"):
    """Ordered list of Write for ``resources`` (the OCI linux.resources object) on ``layout``."""
    if resources is None:
        return []
    planner = _Planner(layout, source)
    resources = planner.section(resources, "linux.resources")
    cpu = planner.section(resources.get("cpu"), "linux.resources.cpu")
    planner.cpuset(cpu)   # before anything joins: tasks cannot enter an empty v1 cpuset
    planner.memory(planner.section(resources.get("memory"), "linux.resources.memory"))
    planner.cpu(cpu)
    planner.pids(planner.section(resources.get("pids"), "linux.resources.pids"))
    planner.block_io(planner.section(resources.get("blockIO"), "linux.resources.blockIO"))
    planner.hugepages(planner.listing(resources.get("hugepageLimits"),
                                      "linux.resources.hugepageLimits"))
    planner.network(planner.section(resources.get("network"), "linux.resources.network"))
    planner.rdma(planner.section(resources.get("rdma"), "linux.resources.rdma"))
    planner.unified(planner.section(resources.get("unified"), "linux.resources.unified"))
    return planner.writes


class _Planner:
    def __init__(self, layout, source):
        self.layout = layout
        self.source = source
        self.writes = []

    # -- helpers -------------------------------------------------------------------------------

    def error(self, path, message):
        return ConfigError(f"{self.source}: {path}: {message}")

    def section(self, value, path):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(path, f"must be an object, got {value!r}")
        return value

    def listing(self, value, path):
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, f"must be a list, got {value!r}")
        for index, entry in enumerate(value):
            self.section(entry, f"{path}[{index}]")
        return value

    def integer(self, section, name, path, low, high=None, zero_unset=False):
        """The field's integer, None when absent (or 0 with zero_unset); checks low <= v <= high."""
        value = section.get(name)
        if value is None or (zero_unset and value == 0 and not isinstance(value, bool)):
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"{path}.{name}", f"must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            if low == -1:
                wanted = "-1 (unlimited) or a positive number"
            elif high is None:
                wanted = f"at least {low}"
            else:
                wanted = f"from {low} to {high}"
            raise self.error(f"{path}.{name}", f"must be {wanted}, got {value}")
        return value

    def boolean(self, section, name, path):
        value = section.get(name)
        if value is not None and not isinstance(value, bool):
            raise self.error(f"{path}.{name}", f"must be true or false, got {value!r}")
        return value

    def version(self, controller, path):
        """1 or 2 for the controller's hierarchy; Unsupported naming ``path`` when there is none."""
        version = self.layout.version(controller)
        if version is None:
            raise Unsupported(
                f"{self.source}: {path}: the {controller} cgroup controller is not available "
                f"here ({self.available()}); remove the field or use a kernel with {controller}")
        return version

    def available(self):
        parts = []
        if self.layout.v1:
            parts.append("cgroup v1 controllers: " + ", ".join(sorted(self.layout.v1)))
        if self.layout.unified:
            offered = ", ".join(sorted(self.layout.v2_controllers)) or "none"
            parts.append(f"cgroup2 controllers: {offered}")
        return "; ".join(parts)

    def v1_only(self, controller, path):
        return Unsupported(
            f"{self.source}: {path}: has no cgroup v2 equivalent and the {controller} "
            "controller is on cgroup v2 here; remove the field")

    def write(self, controller, version, filename, value, check=False):
        key = controller if version == 1 else ""
        self.writes.append(Write(key, filename, str(value), check))

    # -- resources -----------------------------------------------------------------------------

    def cpuset(self, cpu):
        path = "linux.resources.cpu"
        for name in ("cpus", "mems"):
            value = cpu.get(name)
            if value is None or value == "":
                continue
            if not isinstance(value, str) or not _is_id_list(value):
                raise self.error(f"{path}.{name}", "must be a list of numbers and ranges like "
                                 f"\"0-2,4\", got {value!r}")
            self.write("cpuset", self.version("cpuset", f"{path}.{name}"), f"cpuset.{name}", value)

    def memory(self, memory):
        path = "linux.resources.memory"
        for name in ("kernel", "kernelTCP"):
            if memory.get(name) is not None:
                raise Unsupported(
                    f"{self.source}: {path}.{name}: kernel memory limits are deprecated by the "
                    "runtime-spec and gone from current kernels; remove the field (memory.limit "
                    "already counts kernel memory)")
        limit = self.integer(memory, "limit", path, -1, zero_unset=True)
        swap = self.integer(memory, "swap", path, -1, zero_unset=True)
        reservation = self.integer(memory, "reservation", path, -1, zero_unset=True)
        swappiness = self.integer(memory, "swappiness", path, 0, 100)
        disable_oom_killer = self.boolean(memory, "disableOOMKiller", path)
        use_hierarchy = self.boolean(memory, "useHierarchy", path)
        check = self.boolean(memory, "checkBeforeUpdate", path)
        named = {"limit": limit, "swap": swap, "reservation": reservation,
                 "swappiness": swappiness, "disableOOMKiller": disable_oom_killer,
                 "useHierarchy": use_hierarchy, "checkBeforeUpdate": check}
        present = [name for name, value in named.items() if value is not None]
        if not present:
            return
        version = self.version("memory", f"{path}.{present[0]}")
        if swap is not None and swap != -1:
            if limit == -1:
                raise self.error(f"{path}.swap", "is memory + swap and cannot be limited while "
                                 "memory.limit is -1 (unlimited)")
            if limit is not None and swap < limit:
                raise self.error(f"{path}.swap", f"is memory + swap and must be at least "
                                 f"memory.limit ({limit}), got {swap}")
        if version == 1:
            self.memory_v1(limit, swap, reservation, swappiness, disable_oom_killer,
                           use_hierarchy, check)
        else:
            self.memory_v2(path, limit, swap, reservation, swappiness, disable_oom_killer,
                           use_hierarchy, check)

    def memory_v1(self, limit, swap, reservation, swappiness, disable_oom_killer,
                  use_hierarchy, check):
        def put(filename, value):
            self.write("memory", 1, filename, value)

        if check and limit is not None and limit != -1:
            self.write("memory", 1, "memory.usage_in_bytes", limit, check=True)
        if use_hierarchy is not None:
            put("memory.use_hierarchy", int(use_hierarchy))
        if limit is not None and swap is not None:
            # memsw must stay >= limit after every write, whatever the current values are:
            # lift it first, then set the limit, then the real memsw.
            put("memory.memsw.limit_in_bytes", -1)
            put("memory.limit_in_bytes", limit)
            put("memory.memsw.limit_in_bytes", swap)
        elif limit is not None:
            put("memory.limit_in_bytes", limit)
        elif swap is not None:
            put("memory.memsw.limit_in_bytes", swap)
        if reservation is not None:
            put("memory.soft_limit_in_bytes", reservation)
        if swappiness is not None:
            put("memory.swappiness", swappiness)
        if disable_oom_killer is not None:
            put("memory.oom_control", int(disable_oom_killer))

    def memory_v2(self, path, limit, swap, reservation, swappiness, disable_oom_killer,
                  use_hierarchy, check):
        if swappiness is not None:
            raise self.v1_only("memory", f"{path}.swappiness")
        if disable_oom_killer:
            raise self.v1_only("memory", f"{path}.disableOOMKiller")
        if use_hierarchy is False:
            raise Unsupported(f"{self.source}: {path}.useHierarchy: cgroup v2 memory accounting "
                              "is always hierarchical; remove the field or set it to true")
        if check and limit is not None and limit != -1:
            self.write("memory", 2, "memory.current", limit, check=True)
        if limit is not None:
            self.write("memory", 2, "memory.max", _max(limit))
        if swap is not None:
            if swap == -1:
                self.write("memory", 2, "memory.swap.max", "max")
            elif limit is None:
                raise self.error(f"{path}.swap", "needs memory.limit on cgroup v2, where "
                                 "memory.swap.max is swap - limit")
            else:
                self.write("memory", 2, "memory.swap.max", swap - limit)
        if reservation is not None:
            self.write("memory", 2, "memory.low", _max(reservation))

    def cpu(self, cpu):
        path = "linux.resources.cpu"
        shares = self.integer(cpu, "shares", path, *_SHARES, zero_unset=True)
        quota = self.integer(cpu, "quota", path, -1, zero_unset=True)
        if quota is not None and 0 <= quota < 1000:
            raise self.error(f"{path}.quota", f"must be -1 (unlimited) or at least 1000 µs, "
                             f"got {quota}")
        period = self.integer(cpu, "period", path, *_V1_CPU_PERIOD, zero_unset=True)
        burst = self.integer(cpu, "burst", path, 0)
        if burst is not None and quota is not None and quota != -1 and burst > quota:
            raise self.error(f"{path}.burst", f"must not exceed cpu.quota ({quota}), got {burst}")
        rt_runtime = self.integer(cpu, "realtimeRuntime", path, -1, zero_unset=True)
        rt_period = self.integer(cpu, "realtimePeriod", path, *_V1_CPU_PERIOD, zero_unset=True)
        idle = self.integer(cpu, "idle", path, 0, 1)
        named = {"shares": shares, "quota": quota, "period": period, "burst": burst,
                 "realtimeRuntime": rt_runtime, "realtimePeriod": rt_period, "idle": idle}
        present = [name for name, value in named.items() if value is not None]
        if not present:
            return
        version = self.version("cpu", f"{path}.{present[0]}")
        if version == 1:
            def put(filename, value):
                self.write("cpu", 1, filename, value)

            if shares is not None:
                put("cpu.shares", shares)
            if burst is not None and quota is not None:
                put("cpu.cfs_burst_us", 0)   # burst <= quota must hold after every write
            if period is not None:
                put("cpu.cfs_period_us", period)
            if quota is not None:
                put("cpu.cfs_quota_us", quota)
            if burst is not None:
                put("cpu.cfs_burst_us", burst)
            if rt_period is not None:
                put("cpu.rt_period_us", rt_period)   # the runtime is checked against it
            if rt_runtime is not None:
                put("cpu.rt_runtime_us", rt_runtime)
            if idle is not None:
                put("cpu.idle", idle)
            return
        for name in ("realtimeRuntime", "realtimePeriod"):
            if named[name] is not None:
                raise self.v1_only("cpu", f"{path}.{name}")
        if shares is not None:
            self.write("cpu", 2, "cpu.weight", 1 + (shares - 2) * (_V2_WEIGHT_MAX - 1) // 262142)
        if quota is not None or period is not None:
            # a period alone is written as "max <period>", as runc does: cpu.max takes both
            value = "max" if quota in (None, -1) else str(quota)
            self.write("cpu", 2, "cpu.max", value if period is None else f"{value} {period}")
        if burst is not None:
            self.write("cpu", 2, "cpu.max.burst", burst)
        if idle is not None:
            self.write("cpu", 2, "cpu.idle", idle)

    def pids(self, pids):
        path = "linux.resources.pids"
        limit = self.integer(pids, "limit", path, -(1 << 63), zero_unset=True)
        if limit is not None:
            version = self.version("pids", f"{path}.limit")
            self.write("pids", version, "pids.max", "max" if limit < 0 else limit)

    def block_io(self, block_io):
        path = "linux.resources.blockIO"
        weight = self.integer(block_io, "weight", path, *_BLKIO_WEIGHT, zero_unset=True)
        if block_io.get("leafWeight") is not None:
            raise Unsupported(f"{self.source}: {path}.leafWeight: leaf weights existed only with "
                              "the CFQ I/O scheduler, removed in Linux 5.0; remove the field")
        per_device = []   # (field path, kind, major, minor, value)
        for index, entry in enumerate(self.listing(block_io.get("weightDevice"),
                                                   f"{path}.weightDevice")):
            where = f"{path}.weightDevice[{index}]"
            if entry.get("leafWeight") is not None:
                raise Unsupported(f"{self.source}: {where}.leafWeight: leaf weights existed only "
                                  "with the CFQ I/O scheduler, removed in Linux 5.0; remove it")
            device_weight = self.integer(entry, "weight", where, *_BLKIO_WEIGHT)
            if device_weight is not None:
                per_device.append((where, "weight") + self.device(entry, where)
                                  + (device_weight,))
        throttles = (("throttleReadBpsDevice", "read_bps", "rbps"),
                     ("throttleWriteBpsDevice", "write_bps", "wbps"),
                     ("throttleReadIOPSDevice", "read_iops", "riops"),
                     ("throttleWriteIOPSDevice", "write_iops", "wiops"))
        for field, _, _ in throttles:
            for index, entry in enumerate(self.listing(block_io.get(field), f"{path}.{field}")):
                where = f"{path}.{field}[{index}]"
                rate = self.integer(entry, "rate", where, 0)
                if rate is None:
                    raise self.error(f"{where}.rate", "is required")
                per_device.append((where, field) + self.device(entry, where) + (rate,))
        if weight is None and not per_device:
            return
        first = f"{path}.weight" if weight is not None else per_device[0][0]
        if self.layout.version("blkio") == 1:
            names = {field: f"blkio.throttle.{name}_device" for field, name, _ in throttles}
            if weight is not None:
                self.write("blkio", 1, "blkio.bfq.weight", weight)
            for _, kind, major, minor, value in per_device:
                filename = "blkio.bfq.weight_device" if kind == "weight" else names[kind]
                self.write("blkio", 1, filename, f"{major}:{minor} {value}")
            return
        self.version("io", first)
        if weight is not None:
            self.write("io", 2, "io.weight", f"default {_io_weight(weight)}")
        limits = {}   # "major:minor" -> ["rbps=…", …]: one io.max line per device
        keys = {field: key for field, _, key in throttles}
        for _, kind, major, minor, value in per_device:
            if kind == "weight":
                self.write("io", 2, "io.weight", f"{major}:{minor} {_io_weight(value)}")
            else:
                limits.setdefault(f"{major}:{minor}", []).append(
                    f"{keys[kind]}={value or 'max'}")
        for device, settings in limits.items():
            self.write("io", 2, "io.max", f"{device} {' '.join(settings)}")

    def device(self, entry, where):
        numbers = []
        for name in ("major", "minor"):
            value = self.integer(entry, name, where, 0)
            if value is None:
                raise self.error(f"{where}.{name}", "is required")
            numbers.append(value)
        return tuple(numbers)

    def hugepages(self, limits):
        path = "linux.resources.hugepageLimits"
        for index, entry in enumerate(limits):
            where = f"{path}[{index}]"
            size = entry.get("pageSize")
            if not isinstance(size, str) or not _is_page_size(size):
                raise self.error(f"{where}.pageSize", f"must be a size like \"2MB\" or \"1GB\", "
                                 f"got {size!r}")
            limit = self.integer(entry, "limit", where, -1)
            if limit is None:
                raise self.error(f"{where}.limit", "is required")
            if self.version("hugetlb", where) == 1:
                self.write("hugetlb", 1, f"hugetlb.{size}.limit_in_bytes", limit)
            else:
                self.write("hugetlb", 2, f"hugetlb.{size}.max", _max(limit))

    def network(self, network):
        path = "linux.resources.network"
        class_id = self.integer(network, "classID", path, 0, 0xFFFFFFFF, zero_unset=True)
        if class_id is not None:
            self.v1_controller("net_cls", f"{path}.classID")
            self.write("net_cls", 1, "net_cls.classid", class_id)
        for index, entry in enumerate(self.listing(network.get("priorities"),
                                                   f"{path}.priorities")):
            where = f"{path}.priorities[{index}]"
            name = entry.get("name")
            if not isinstance(name, str) or not name or any(c in name for c in " /\n"):
                raise self.error(f"{where}.name", f"must be an interface name, got {name!r}")
            priority = self.integer(entry, "priority", where, 0, 0xFFFFFFFF)
            if priority is None:
                raise self.error(f"{where}.priority", "is required")
            self.v1_controller("net_prio", where)
            self.write("net_prio", 1, "net_prio.ifpriomap", f"{name} {priority}")

    def v1_controller(self, controller, path):
        if self.layout.version(controller) != 1:
            raise Unsupported(
                f"{self.source}: {path}: needs the cgroup v1 {controller} controller, which is "
                f"not mounted here ({self.available()}) and has no cgroup v2 counterpart; remove "
                "the field")

    def rdma(self, rdma):
        path = "linux.resources.rdma"
        for device, limits in rdma.items():
            where = f"{path}.{device}"
            if not device or any(c in device for c in " \n="):
                raise self.error(where, "must be an RDMA device name")
            limits = self.section(limits, where)
            settings = []
            for name, key in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object")):
                value = self.integer(limits, name, where, 0, 0xFFFFFFFF)
                if value is not None:
                    settings.append(f"{key}={value}")
            if settings:
                self.write("rdma", self.version("rdma", where), "rdma.max",
                           f"{device} {' '.join(settings)}")

    def unified(self, unified):
        path = "linux.resources.unified"
        for key, value in unified.items():
            where = f"{path}.{key}"
            if not self.layout.unified:
                raise Unsupported(f"{self.source}: {where}: needs a cgroup2 hierarchy and this "
                                  "host has only cgroup v1; remove the field")
            if not _is_unified_key(key):
                raise self.error(where, "must name a cgroup2 interface file like \"memory.high\"")
            if not isinstance(value, str):
                raise self.error(where, f"must be a string, got {value!r}")
            controller = key.split(".", 1)[0]
            if controller == "cgroup":
                if key not in _UNIFIED_CGROUP_KEYS:
                    raise self.error(where, "is managed by the runtime; only "
                                     f"{', '.join(_UNIFIED_CGROUP_KEYS)} may be set")
            elif controller in self.layout.v1:
                raise Unsupported(
                    f"{self.source}: {where}: the {controller} controller is bound to cgroup v1 "
                    f"here; use the typed fields of linux.resources instead")
            elif controller not in self.layout.v2_controllers:
                raise Unsupported(
                    f"{self.source}: {where}: the {controller} controller is not available on "
                    f"cgroup2 here ({self.available()}); remove the field")
            self.writes.append(Write("", key, value))


def _max(value):
    return "max" if value == -1 else value


def _io_weight(blkio_weight):
    """blkio's 10..1000 onto io.weight's 1..10000."""
    low, high = _BLKIO_WEIGHT
    return 1 + (blkio_weight - low) * (_V2_WEIGHT_MAX - 1) // (high - low)


def _is_id_list(text):
    """'0-3,5': what cpuset.cpus and cpuset.mems accept."""
    for item in text.split(","):
        bounds = item.strip().split("-")
        if len(bounds) > 2 or not all(b.isdigit() and b.isascii() for b in bounds):
            return False
        if len(bounds) == 2 and int(bounds[0]) > int(bounds[1]):
            return False
    return True


def _is_page_size(text):
    number, unit = text[:-2], text[-2:]
    return unit in ("KB", "MB", "GB") and number.isdigit() and number.isascii() and int(number) > 0


def _is_unified_key(key):
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
    return ("." in key and not key.startswith(".") and not key.endswith(".")
            and all(c in allowed for c in key))
