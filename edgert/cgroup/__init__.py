"""Control groups for containers: cgroup v1, v2 and hybrid (v1 controllers plus a cgroup2 mount).

- ``layout``: which hierarchies are mounted where, and where this process sits in each (pure).
- ``plan``: OCI ``linux.resources`` -> ordered file writes for that layout (pure).
- ``devices``: OCI device rules -> v1 devices.allow/deny lines or a v2 eBPF program (pure).
- ``fs``: the thin edge that creates, writes, freezes, signals and removes cgroup directories.
"""
