"""Per-container state files under the runtime root (one directory per container).

Layout: ``<root>/<id>/state.json`` holds everything a later command (or a
restarted daemon) needs: pid and its start time (so a reused pid is never
mistaken for the container), bundle, validated config, cgroup directories
created, pinned namespaces, moved net devices. Writes are atomic; commands
that change a container hold an flock on its directory.
"""

import errno
import fcntl
import os
import time

from ..errors import EdgertError, NotFound, StateError
from ..fsutil import atomic_write
from ..jsonfast import dumps, loads

ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"


def check_id(container_id):
    if (not container_id or container_id in (".", "..") or len(container_id) > 1024
            or not ID_CHARS.issuperset(container_id)):
        raise EdgertError("invalid container id %r: use letters, digits and _ + - . only"
                          % (container_id,), code="invalid-id")
    return container_id


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%09dZ" % int((t % 1) * 1e9)


def proc_stat(pid):
    """Returns (state letter, start time in clock ticks) of ``pid``, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def process_alive(pid, start_time):
    """True while ``pid`` is the same process (same start time) and not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[1] == start_time and st[0] not in ("Z", "X")


class Store:
    """The runtime root directory (``--root``)."""

    def __init__(self, root):
        self.root = root

    def dir(self, container_id):
        return os.path.join(self.root, check_id(container_id))

    def reserve(self, container_id):
        """Creates the container's directory; fails if the id is taken."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        path = self.dir(container_id)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise EdgertError("container %r already exists (delete it first)" % container_id,
                              code="exists") from None
        return path

    def load(self, container_id):
        path = os.path.join(self.dir(container_id), "state.json")
        try:
            with open(path, "rb") as f:
                return loads(f.read())
        except FileNotFoundError:
            raise NotFound("container %r does not exist (no %s)" % (container_id, path)) from None
        except ValueError as e:
            raise StateError("container %r: state file %s is corrupt: %s (delete it with "
                             "--force)" % (container_id, path, e)) from e

    def save(self, container_id, state):
        atomic_write(os.path.join(self.dir(container_id), "state.json"),
                     dumps(state), mode=0o600, sync=False)

    def ids(self):
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if os.path.exists(os.path.join(self.root, n, "state.json")))

    def lock(self, container_id):
        """An exclusive flock on the container's directory; close the returned fd to release."""
        try:
            fd = os.open(self.dir(container_id), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound("container %r does not exist" % container_id) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def remove(self, container_id):
        path = self.dir(container_id)
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        try:
            os.rmdir(path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise


def status(state, cgroup_frozen=None):
    """The runtime-spec status of a container from its saved state and /proc."""
    pid = state.get("pid")
    if not pid:
        return CREATING
    if not process_alive(pid, state.get("pid_start")):
        return STOPPED
    if cgroup_frozen:
        return PAUSED
    return RUNNING if state.get("started") else CREATED
