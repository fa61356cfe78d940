"""The daemon's durable documents under ``<root>/daemon/``.

One JSON file per node service and per instance, plus ``settings.json``. Every write is
atomic (temp file, fsync, rename, fsync dir), so a crash or power loss leaves either the old
document or the new one. The daemon keeps the documents in memory and writes through; the
files are read once at start. Names are checked before they become paths.
"""

import os

from ..errors import EdgertError
from ..fsutil import atomic_write
from ..jsonfast import dumps, loads

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


def _check_name(kind, name):
    if (not name or len(name) > 64 or name[0] in ".-_" or not NAME_CHARS.issuperset(name)):
        raise EdgertError("invalid %s name %r" % (kind, name), code="bad-params")
    return name


class Db:
    def __init__(self, root, sync=True):
        self.dir = os.path.join(root, "daemon")
        self.sync = sync
        self.services = {}
        self.instances = {}
        self.settings = {}
        for sub in ("services", "instances"):
            os.makedirs(os.path.join(self.dir, sub), mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)  # service documents hold registry credentials

    def load(self):
        """Reads every document; a corrupt one is reported, set aside, never guessed at."""
        problems = []
        for sub, into in (("services", self.services), ("instances", self.instances)):
            directory = os.path.join(self.dir, sub)
            for entry in sorted(os.listdir(directory)):
                path = os.path.join(directory, entry)
                if entry.startswith("."):
                    if ".tmp-" in entry:  # a write that a crash interrupted
                        os.unlink(path)
                    continue
                if not entry.endswith(".json"):
                    continue
                try:
                    doc = self._read(path)
                    key = doc["name"] if sub == "services" else doc["id"]
                    if key + ".json" != entry:
                        raise ValueError("names %r inside" % key)
                except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                    os.rename(path, path + ".corrupt")
                    problems.append("%s: unreadable (%s), moved to %s.corrupt"
                                    % (path, e, entry))
                    continue
                into[key] = doc
        path = os.path.join(self.dir, "settings.json")
        if os.path.exists(path):
            try:
                self.settings = self._read(path)
            except (ValueError, UnicodeDecodeError) as e:
                problems.append("%s: unreadable (%s): using defaults" % (path, e))
        return problems

    @staticmethod
    def _read(path):
        with open(path, "rb") as f:
            doc = loads(f.read().decode())
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        return doc

    def _write(self, path, doc):
        atomic_write(path, dumps(doc), 0o600, self.sync)

    def put_service(self, doc):
        name = _check_name("node service", doc["name"])
        self._write(os.path.join(self.dir, "services", name + ".json"), doc)
        self.services[name] = doc

    def remove_service(self, name):
        _check_name("node service", name)
        _unlink(os.path.join(self.dir, "services", name + ".json"))
        self.services.pop(name, None)

    def put_instance(self, doc):
        iid = _check_name("instance", doc["id"])
        self._write(os.path.join(self.dir, "instances", iid + ".json"), doc)
        self.instances[iid] = doc

    def remove_instance(self, iid):
        _check_name("instance", iid)
        _unlink(os.path.join(self.dir, "instances", iid + ".json"))
        self.instances.pop(iid, None)

    def put_settings(self, settings):
        self._write(os.path.join(self.dir, "settings.json"), settings)
        self.settings = settings


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
