"""The daemon's side of images and container inputs: which image a version runs on this
architecture, pulls (fetch.py), the per-version writable layer, volumes, the /host directory
and the OCI config of an instance (bundle.py builds it; this module gathers the facts from
the disk that the pure builder needs)."""

import os
import stat

from ..errors import ConfigError, EdgertError, NotFound
from . import bundle

FILE_LIMIT = 1 << 20
HOST_DIR_SIZE = "8m"  # config maps (4 MiB at most), metrics (1 MB), lxc.env


class Images:
    def __init__(self, loop, root, run_dir, arch=None, tls_verify=True, synced=lambda: False):
        from ..image.pull import resolve_arch
        from ..image.snapshot import Snapshotter
        from ..image.store import Store
        self.loop = loop
        self.root = root
        self.run_dir = run_dir
        self.arch = resolve_arch(arch)
        self.tls_verify = tls_verify
        self.synced = synced
        self.store = Store(root)
        self.snapshots = Snapshotter(root)
        from ..host import apikeys
        self.api_keys = apikeys.Store(root)  # the device's keys, shared with the API
        # on_missing_key(iid, message): a starting version names a role without a key
        self.on_missing_key = None

    def source_for(self, service, version):
        sources = version.get("image_sources") or []
        for source in sources:
            if source.get("arch") == self.arch:
                return source
        raise NotFound("node service %s version %s has no image for %s (has: %s)" % (
            service["name"], version["version"], self.arch,
            ", ".join(s.get("arch", "?") for s in sources) or "none"), code="no-variant")

    def fetch(self, source, on_event, on_done):
        from .fetch import Fetch
        authn = source.get("authn") or {}
        creds = None
        if authn.get("registry_user") is not None:
            creds = "%s:%s" % (authn["registry_user"], authn.get("registry_pw", ""))
        return Fetch(self.loop, self.root, source["image_reference"], self.arch, creds,
                     self.tls_verify, on_event, on_done, synced=self.synced())

    def describe(self, source, digest=None):
        """What a started container needs from the image, kept in the instance document so
        a restart never depends on the image record (which `edgert image rm` may remove)."""
        from .. import jsonfast
        record = self._record(digest or source["image_reference"])
        data = self.store.read_blob(record.config, FILE_LIMIT * 4)
        config = jsonfast.loads(data.decode()).get("config") or {}
        return {"reference": source["image_reference"], "digest": record.digest,
                "chain": record.top_chain_id, "config": config}

    def _record(self, name):
        try:
            return self.store.get_image(name, arch=self.arch)
        except TypeError:  # a store without per-arch records
            return self.store.get_image(name)

    def fresh_layer(self, key, chain):
        """A new, empty writable layer ``key`` over ``chain`` (an earlier try's is dropped)."""
        self.drop_layer(key)
        self.snapshots.prepare(key, chain)

    def drop_layer(self, key):
        try:
            self.snapshots.remove(key)
        except NotFound:
            pass

    def volume_dir(self, iid, name):
        return os.path.join(self.root, "volumes", iid, name)

    def purge_volumes(self, iid):
        from ..image.unpackfs import remove_tree_at
        volumes = os.path.join(self.root, "volumes")
        if os.path.isdir(volumes):
            fd = os.open(volumes, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                remove_tree_at(fd, iid)  # never follows the container's symlinks
            finally:
                os.close(fd)

    def host_dir(self, iid):
        return os.path.join(self.run_dir, "host", iid)

    def prepare_host_dir(self, iid):
        """The instance's /host: a small tmpfs of its own, so what the container writes there
        (its prometheus.prom, written atomically by rename as the documentation asks) can
        neither fill the host's /run nor reach other instances."""
        from .. import linuxconst as K
        from .. import native
        directory = self.host_dir(iid)
        os.makedirs(directory, 0o755, exist_ok=True)
        if not os.path.ismount(directory):
            native.mount("tmpfs", directory, "tmpfs",
                         K.MS_NOSUID | K.MS_NODEV | K.MS_NOEXEC,
                         "size=%s,mode=0755" % HOST_DIR_SIZE)
        return directory

    def drop_host_dir(self, iid):
        from .. import native
        directory = self.host_dir(iid)
        if os.path.ismount(directory):
            native.umount2(directory, 2)  # MNT_DETACH: a reader may still hold a file
        if os.path.isdir(directory):
            os.rmdir(directory)

    def write_host_files(self, iid, doc, service, version=None, synced=None, starting=False):
        """The files under /host: the config maps of the instance, and with ``version``
        its environment as lxc.env and its API keys; ``synced`` (not None) writes
        .time-status. Each is replaced atomically, never through what the container put at
        its name (hostdir.py); a config map that was removed disappears. ``starting``: the
        version is about to start, and a role it names without a key is reported."""
        from ..host import apikeys, hostdir
        directory = self.prepare_host_dir(iid)
        maps = doc.get("config_maps") or {}
        try:
            dfd = hostdir.open_dir(directory)
            try:
                for name, value in maps.items():
                    hostdir.replace_file(dfd, name, value.encode("utf-8"), 0o644)
                if version is not None:
                    from ..host import lxcenv
                    hostdir.replace_file(dfd, "lxc.env",
                                         lxcenv.render(version.get("env") or {}), 0o644)
                if synced is not None:
                    from ..host import timestatus
                    timestatus.write(directory, synced)
                known = set(maps) | {"lxc.env", ".time-status", "prometheus.prom", apikeys.DIR}
                for name in os.listdir(dfd):
                    if name not in known and not name.startswith("."):
                        self._remove_stray(iid, dfd, name)
            finally:
                os.close(dfd)
        except OSError as e:
            raise _host_error(iid, e) from None
        if version is not None:
            missing = self.write_api_keys(iid, doc, version)
            for role in missing if starting else ():
                message = apikeys.missing_message(iid, version.get("version"), role)
                if self.on_missing_key is not None:
                    self.on_missing_key(iid, message)
                else:
                    self.loop.log(message)

    def _remove_stray(self, iid, dfd, name):
        """An entry of /host that edgert did not write goes; one the container made
        impossible to remove (nested too deep) stays, without blocking the start."""
        from ..host import hostdir
        try:
            hostdir.remove(dfd, name)
        except OSError as e:
            self.loop.log("instance %s: /host/%s, which edgert did not write, stays: %s"
                          % (iid, name, e.strerror or e))

    def write_api_keys(self, iid, doc, version):
        """/host/api-keys for instance ``iid`` running ``version``: one file per role the
        version names that this device has a key for (and no others); returns the roles
        without a key."""
        from ..host import apikeys
        roles = version.get("api_key_roles") or []
        try:
            if not roles:
                if os.path.isdir(self.host_dir(iid)):
                    apikeys.install(self.host_dir(iid), None)
                return []
            files, missing = apikeys.plan(roles, self.api_keys.keys())
            apikeys.install(self.prepare_host_dir(iid), files,
                            self._workload_owner(doc, version))
        except OSError as e:
            raise _host_error(iid, e) from None
        return missing

    def _workload_owner(self, doc, version):
        """(uid, gid) the version's workload runs as (as container_config resolves it): the
        owner of its key files, which no other user of the container may read."""
        image = (doc.get("images") or {}).get(str(version.get("version")))
        if image is None:
            return 0, 0
        user_text = version.get("user") or image["config"].get("User") or ""
        uid, gid, _ = bundle.parse_user(user_text, *self._user_files(image["chain"], user_text))
        return uid, gid

    def rootfs_hook(self, settings):
        """What Supervisor.start runs on a container's mounted rootfs before creating it:
        the deprecated root-level links while ``legacy_host_paths`` is on, else None."""
        if not settings.get("legacy_host_paths"):
            return None
        return lambda rootfs: legacy_links(rootfs, self.loop.log)

    def container_config(self, iid, doc, service, version, image, net=None):
        """(OCI config, rootfs mounts) of instance ``iid`` running ``version``; ``net``: the
        paths its network bring-up gave ("netns", "resolv_conf"), if any."""
        key = "%s.v%d" % (iid, version["version"])
        mounts = self.snapshots.mounts_for(key)
        volumes = {}
        for volume in version.get("volumes") or []:
            path = self.volume_dir(iid, volume["name"])
            os.makedirs(path, 0o755, exist_ok=True)
            volumes[volume["name"]] = path
        self.write_host_files(iid, doc, service, version, synced=self.synced(), starting=True)
        devices = {}
        for device in version.get("devices") or []:
            devices[device["path"]] = host_device(device["path"], service["name"])
        user_text = version.get("user") or image["config"].get("User") or ""
        user = bundle.parse_user(user_text, *self._user_files(image["chain"], user_text))
        paths = dict(net or {}, rootfs="rootfs", volumes=volumes, host_dir=self.host_dir(iid),
                     cgroup=None, devices=devices)
        config = bundle.build_config(version, doc, image["config"], paths, user=user)
        return config, mounts

    def _user_files(self, chain, user_text):
        """/etc/passwd and /etc/group of the image, unless the user is fully numeric
        (uid:gid); a bare uid still takes its group from /etc/passwd, as runc does."""
        if not user_text or ":" in user_text and all(p.isdigit() for p in user_text.split(":")):
            return "", ""
        return (self._image_file(chain, ("etc", "passwd")),
                self._image_file(chain, ("etc", "group")))

    def _image_file(self, chain, parts):
        """A small file of the image's top-most layer that has it, never following a
        symlink (an image's /etc/passwd may point anywhere on the host)."""
        for chain_id in self.snapshots.chain(chain):
            fd = _open_nofollow(self.snapshots.fs_path(chain_id), parts)
            if fd is None:
                continue
            try:
                data = os.read(fd, FILE_LIMIT)
            finally:
                os.close(fd)
            return data.decode("utf-8", "replace")
        return ""


def _host_error(iid, err):
    return EdgertError("instance %s: cannot write its /host files: %s%s" % (
        iid, err.strerror or err, ": " + err.filename if err.filename else ""),
        code="host-files")


def _open_nofollow(base, parts):
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(base, flags | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nfd = os.open(part, flags | (0 if last else os.O_DIRECTORY) | os.O_NONBLOCK,
                          dir_fd=fd)
            os.close(fd)
            fd = nfd
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd
    except OSError:
        os.close(fd)
        return None


# The deprecated root-level files as links into /host (docs/host.md, "Deprecated paths").
LEGACY_LINKS = (("lxc.env", "host/lxc.env"), (".time-status", "host/.time-status"))


def legacy_links(rootfs, log):
    """Makes /lxc.env and /.time-status of the mounted ``rootfs`` relative links into /host.
    What the image has there is never followed: a link or a regular file is replaced (by
    rename), anything else (a directory...) is left as it is and logged."""
    fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name, target in LEGACY_LINKS:
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None:
                if stat.S_ISLNK(info.st_mode) and os.readlink(name, dir_fd=fd) == target:
                    continue
                if not (stat.S_ISLNK(info.st_mode) or stat.S_ISREG(info.st_mode)):
                    log("%s: /%s of the image is not a file or link: left as it is, so "
                        "legacy_host_paths gives it no /%s -> %s link" % (rootfs, name, name,
                                                                          target))
                    continue
            tmp = ".%s.edgert-%d" % (name, os.getpid())
            try:
                os.unlink(tmp, dir_fd=fd)
            except FileNotFoundError:
                pass
            os.symlink(target, tmp, dir_fd=fd)
            try:
                os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
            except OSError:
                os.unlink(tmp, dir_fd=fd)
                raise
    finally:
        os.close(fd)


def host_device(path, service_name):
    """(type, major, minor, mode, uid, gid) of a host device node a node service asks for."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NotFound("node service %s: device %s does not exist on this device" % (
            service_name, path), code="no-device") from None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise ConfigError("node service %s: %s is not a device node" % (service_name, path))
    return (kind, os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode),
            st.st_uid, st.st_gid)
