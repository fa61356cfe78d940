"""A scratch cgroup path for engines and runtimes under test, and its removal.

Tests may create cgroups only below the cgroup the test process is in. On a
v1 or hybrid host that cgroup can differ per hierarchy (here: memory puts us
in /process_api/<hash>, the others at /), while an OCI ``cgroupsPath`` or a
``--cgroup-parent`` is one path for all of them. ``ScratchCgroup`` picks the
deepest of our own paths, which is at or below ours in every hierarchy, and
appends a unique name.

Removal is confined to that scratch subtree: processes left inside it are
thawed and killed (a test put them there), its cgroups removed bottom-up.
Intermediate directories a runtime had to create on the way (e.g.
/process_api/<hash> in the cpu hierarchy) are removed only if they are empty,
since other sessions may share them.
"""

import os
import signal
import time


def own_cgroups(proc_self_cgroup="/proc/self/cgroup"):
    """Maps each hierarchy id (as in /proc/self/cgroup) to this process's cgroup path."""
    paths = {}
    with open(proc_self_cgroup) as f:
        for line in f:
            hierarchy_id, _controllers, path = line.rstrip("\n").split(":", 2)
            paths[hierarchy_id] = path
    return paths


def _is_at_or_below(path, ancestor):
    return ancestor == "/" or path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def common_base(paths):
    """The deepest path that is at or below every one of ``paths``, or None."""
    deepest = max(paths, key=len)
    if all(_is_at_or_below(deepest, p) for p in paths):
        return deepest
    return None


def hierarchy_mounts(mountinfo="/proc/self/mountinfo"):
    """One (mount point, mounted root) per cgroup hierarchy mounted here."""
    seen, mounts = set(), []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            device = fields[2]
            if fstype in ("cgroup", "cgroup2") and device not in seen:
                seen.add(device)
                mounts.append((fields[4], fields[3]))
    return mounts


class ScratchCgroup:
    """A unique cgroup path below our own in every hierarchy; ``remove`` cleans it up."""

    def __init__(self, name):
        base = common_base(list(own_cgroups().values()))
        if base is None:
            raise RuntimeError("no single cgroup path is below ours in every hierarchy: %r"
                               % own_cgroups())
        self.path = base.rstrip("/") + "/" + name
        self._dirs = [os.path.join(mount, self.path[len(root):].lstrip("/"))
                      for mount, root in hierarchy_mounts() if _is_at_or_below(self.path, root)]
        # Ancestors that do not exist yet: whoever creates them does it for us.
        self._missing_ancestors = set()
        for d in self._dirs:
            parent = os.path.dirname(d)
            while not os.path.isdir(parent):
                self._missing_ancestors.add(parent)
                parent = os.path.dirname(parent)

    def remove(self):
        """Kills what is left in the scratch subtree, removes it; returns paths left behind."""
        subtree = [d for top in self._dirs for d in _walk_bottom_up(top)]
        for d in subtree:
            _thaw(d)
        for d in subtree:
            _kill_members(d)
        leftovers = []
        for d in subtree:
            if not _rmdir_when_empty(d):
                leftovers.append(d)
        for d in sorted(self._missing_ancestors, key=len, reverse=True):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                pass  # Shared with another session now: not ours to remove.
        return leftovers


def _walk_bottom_up(top):
    if not os.path.isdir(top):
        return []
    return [parent for parent, _dirs, _files in os.walk(top, topdown=False)]


def _thaw(cgroup_dir):
    for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
        path = os.path.join(cgroup_dir, name)
        if os.path.exists(path):
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError:
                pass  # The root-level file or a removed cgroup: nothing to thaw.


def _members(cgroup_dir):
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
            return [int(pid) for pid in f.read().split()]
    except FileNotFoundError:
        return []


def _kill_members(cgroup_dir):
    for pid in _members(cgroup_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _rmdir_when_empty(cgroup_dir, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(cgroup_dir)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
