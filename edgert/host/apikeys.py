"""Unwired Edge Cloud API keys: the device's store of them, and their files in /host/api-keys.

The firmware's cloud agent provisions one key per role over the control socket
(``api_key.set``); the daemon keeps them in ``<root>/daemon/api-keys.json`` ({role: key},
mode 0600, atomic writes). A container whose running version names a role in its
``api_key_roles`` finds that role's key in ``/host/api-keys/<role>`` (the key and a newline).
Keys are secrets: they never appear in a listing (roles and a short fingerprint only), an
error message or the log.

``check_role``, ``check_key``, ``fingerprint``, ``render``, ``parse`` and ``plan`` are pure;
``Store`` and ``install`` do the file I/O.
"""

import hashlib
import os

from ..errors import ConfigError, NotFound
from ..fsutil import atomic_write

FILE = "api-keys.json"
DIR = "api-keys"          # under the instance's /host
MAX_ROLE = 128            # as node_service_input.api_key_roles
MAX_KEY = 4096
MAX_KEYS = 256
MAX_FILE = 2 << 20


def check_role(role):
    """``role`` if it names an API key role, as node_service_input.api_key_roles does (also a
    file name in /host/api-keys): non-empty, at most 128 characters, no spaces, control
    characters or '/', not "." or ".."."""
    from ..daemon.model import _role
    if type(role) is not str:
        raise ConfigError("API key role must be a string, got %s" % type(role).__name__,
                          code="bad-role")
    why = _role(role) if len(role) <= MAX_ROLE else "must be at most %d characters" % MAX_ROLE
    if why is None and not _encodable(role):
        why = "must be valid Unicode"
    if why is not None:
        raise ConfigError("API key role %r: %s" % (role, why), code="bad-role")
    return role


def _encodable(text):
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def check_key(role, key):
    """``key`` if it is a usable key for ``role``: 1 to 4096 printable ASCII characters (space
    to '~'), no leading or trailing space. The message never shows the key."""
    if type(key) is not str:
        raise ConfigError("API key for role %s: must be a string, got %s"
                          % (role, type(key).__name__), code="bad-key")
    if not key:
        raise ConfigError("API key for role %s is empty" % role, code="bad-key")
    if len(key) > MAX_KEY:
        raise ConfigError("API key for role %s is %d characters long: the limit is %d"
                          % (role, len(key), MAX_KEY), code="bad-key")
    for i, c in enumerate(key):
        if not " " <= c <= "~":
            raise ConfigError("API key for role %s: character %d is not printable ASCII (a "
                              "newline or control character?): give the key alone, on one line"
                              % (role, i + 1), code="bad-key")
    if key != key.strip(" "):
        raise ConfigError("API key for role %s starts or ends with a space: remove it"
                          % role, code="bad-key")
    return key


def fingerprint(key):
    """A short, non-reversible name of ``key`` (to tell keys apart in listings)."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def render(keys):
    """The store file for ``keys`` ({role: key})."""
    import json
    return (json.dumps(keys, sort_keys=True, indent=1) + "\n").encode()


def parse(data, path):
    """{role: key} from the store file's bytes; ConfigError naming ``path`` (never a key)."""
    import json
    try:
        keys = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ConfigError("%s is not valid JSON: fix it or remove it and provision the keys "
                          "again (edgert api-key set ROLE)" % path, code="bad-key-store") from None
    if type(keys) is not dict or len(keys) > MAX_KEYS:
        raise ConfigError("%s: expected an object of at most %d role: key entries: fix it or "
                          "remove it" % (path, MAX_KEYS), code="bad-key-store")
    for role, key in keys.items():
        try:
            check_key(check_role(role), key)
        except ConfigError as e:
            raise ConfigError("%s: %s: fix it or remove it" % (path, e),
                              code="bad-key-store") from None
    return keys


def plan(roles, keys):
    """({role: file content} for the roles ``keys`` has, [roles it lacks]) for a version
    naming ``roles``; roles that cannot be file names are reported as lacking."""
    files, missing = {}, []
    for role in roles:
        try:
            check_role(role)
        except ConfigError:
            missing.append(role)
            continue
        if role in keys:
            files[role] = keys[role].encode() + b"\n"
        elif role not in missing:
            missing.append(role)
    return files, missing


def missing_message(iid, version_number, role):
    return ("instance %s: version %s names API key role %r, which this device has no key "
            "for: no /host/api-keys/%s until it is provisioned (edgert api-key set %s)"
            % (iid, version_number, role, role, role))


class Store:
    """The device's keys, ``<root>/daemon/api-keys.json``; read once, then kept in memory."""

    def __init__(self, root):
        self.path = os.path.join(root, "daemon", FILE)
        self._keys = None

    def keys(self):
        """{role: key}; ConfigError when the file is damaged (never a silent reset)."""
        if self._keys is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                self._keys = {}
                return {}
            except OSError as e:
                raise ConfigError("cannot read %s: %s" % (self.path, e.strerror),
                                  code="bad-key-store") from None
            try:
                data = os.read(fd, MAX_FILE + 1)
            finally:
                os.close(fd)
            if len(data) > MAX_FILE:
                raise ConfigError("%s is larger than %d bytes: fix it or remove it"
                                  % (self.path, MAX_FILE), code="bad-key-store")
            self._keys = parse(data, self.path)
        return dict(self._keys)

    def set(self, role, key):
        keys = self.keys()
        keys[check_role(role)] = check_key(role, key)
        if len(keys) > MAX_KEYS:
            raise ConfigError("this device holds %d API keys already, the limit: remove one "
                              "(edgert api-key rm ROLE)" % MAX_KEYS, code="too-many-keys")
        self._save(keys)

    def remove(self, role):
        keys = self.keys()
        if role not in keys:
            raise NotFound("no API key for role %r on this device (see edgert api-key ls)"
                           % (role,))
        del keys[role]
        self._save(keys)

    def listing(self):
        """[{"role", "fingerprint"}] sorted by role: never the keys themselves."""
        return [{"role": role, "fingerprint": fingerprint(key)}
                for role, key in sorted(self.keys().items())]

    def _save(self, keys):
        os.makedirs(os.path.dirname(self.path), 0o700, exist_ok=True)
        atomic_write(self.path, render(keys), 0o600)
        self._keys = keys


def install(host_dir, files, owner=None):
    """Makes ``<host_dir>/api-keys`` hold exactly ``files`` ({role: bytes}), each replaced by
    rename, readable by ``owner`` ((uid, gid), the workload's) alone; with no ``files`` (None)
    the directory goes. Nothing the container put there is followed (hostdir.py)."""
    from . import hostdir
    hfd = hostdir.open_dir(host_dir)
    try:
        if files is None:
            hostdir.remove(hfd, DIR)
            return
        dfd = hostdir.own_subdir(hfd, DIR, 0o755)
        try:
            for role, data in files.items():
                hostdir.replace_file(dfd, role, data, 0o400, owner)
            for name in os.listdir(dfd):
                if name not in files:
                    hostdir.remove(dfd, name)
        finally:
            os.close(dfd)
    finally:
        os.close(hfd)
