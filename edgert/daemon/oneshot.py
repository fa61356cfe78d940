"""`edgert run`: one container in the foreground of a client, removed when it exits.

The client's stdin, stdout and stderr (passed over the socket) become the container's, or,
with a terminal, a pty of the container's own devpts whose master goes to the client; the
daemon answers the call with the exit code. The container runs from an OCI bundle (its
config.json, args and env overridable) or from an image in the store (a throwaway writable
layer over its snapshots). These containers belong to no instance and are never restarted.
"""

import os

from ..errors import EdgertError, NotFound, StateError
from ..runtime.console import console_size, spawn_on_terminal
from ..runtime.state import check_id

PREFIX = "run-"


class Oneshot:
    def __init__(self, daemon):
        self.daemon = daemon
        self.running = {}  # name -> {"on_exit", "layer"}

    def owns(self, name):
        return name in self.running

    def run(self, params, stdio, on_exit):
        """Starts the container; returns (name, pid 1, the pty master or None). ``stdio``
        is unused when params ask for a tty."""
        name = params.get("name") or PREFIX + os.urandom(4).hex()
        check_id(name)
        if name in self.running or name in self.daemon.db.instances:
            raise StateError("a container named %s exists already" % name, code="exists")
        layer = None
        if params.get("bundle"):
            config, mounts = self._from_bundle(params["bundle"], params)
        elif params.get("image"):
            config, mounts, layer = self._from_image(name, params["image"], params)
        else:
            raise EdgertError("run: give an image or --bundle DIR", code="bad-params")
        terminal = bool(params.get("tty"))
        process = config.setdefault("process", {})
        process["terminal"] = terminal
        if terminal:
            process["consoleSize"] = console_size(params.get("tty_size"))
        self.running[name] = {"on_exit": on_exit, "layer": layer}
        started = []

        def start(console_fd):
            started.append(self.daemon.supervisor.start(
                name, config, mounts, stdio=None if terminal else stdio, console_fd=console_fd))
            return started[0]
        try:
            if terminal:
                pid, master = spawn_on_terminal(start, lambda pid: self.abandon(name))
            else:
                pid, master = start(None), None
        except BaseException:
            if not started:  # a container that runs cleans up after itself when it exits
                self.running.pop(name, None)
                self._drop(layer)
            raise
        return name, pid, master

    def _from_bundle(self, bundle, params):
        from ..oci import spec
        if not os.path.isfile(os.path.join(bundle, "config.json")):
            raise NotFound("bundle %s has no config.json" % bundle)
        config = spec.load(bundle)
        root = config.get("root", {}).get("path", "rootfs")
        source = root if os.path.isabs(root) else os.path.join(bundle, root)
        config["root"] = dict(config.get("root", {}), path="rootfs")
        process = config.setdefault("process", {})
        if params.get("args"):
            process["args"] = list(params["args"])
        if params.get("env"):
            process["env"] = list(process.get("env") or []) + list(params["env"])
        mounts = [{"type": "bind", "source": source, "options": ["rbind", "rw"]}]
        return config, mounts

    def _from_image(self, name, image, params):
        from . import bundle, model
        images = self.daemon.images
        env = {}
        for item in params.get("env") or []:
            key, eq, value = item.partition("=")
            if not eq:
                raise EdgertError("run: -e %r: expected NAME=VALUE" % item, code="bad-params")
            env[key] = value
        version = model.validate_input({
            "name": "run", "command": list(params["args"]) or None, "env": env,
            "image_sources": [{"arch": images.arch, "image_reference": image}]})
        version["version"] = 0
        info = images.describe({"image_reference": image})
        layer = name + ".run"
        images.fresh_layer(layer, info["chain"])
        try:
            user_text = info["config"].get("User") or ""
            user = bundle.parse_user(user_text, *images._user_files(info["chain"], user_text))
            paths = {"rootfs": "rootfs", "volumes": {}, "host_dir": None, "cgroup": None,
                     "devices": {}}
            config = bundle.build_config(version, {"id": name}, info["config"], paths,
                                         user=user)
            return config, images.snapshots.mounts_for(layer), layer
        except BaseException:
            self._drop(layer)
            raise

    def on_status(self, name, info):
        """The exit code goes to the client before the container is cleaned up."""
        entry = self.running.get(name)
        if entry is not None and not entry.get("answered"):
            entry["answered"] = True
            entry["on_exit"](exit_code(info))

    def on_exit(self, name, info):
        self.on_status(name, info)
        entry = self.running.pop(name, None)
        if entry is not None:
            self._drop(entry["layer"])

    def abandon(self, name):
        """The client went away: its container goes too."""
        if name in self.running:
            self.daemon.supervisor.stop(name, 2)

    def _drop(self, layer):
        if layer:
            self.daemon.images.drop_layer(layer)


def exit_code(info):
    if info.get("code") is not None:
        return info["code"]
    if info.get("signal"):
        return 128 + info["signal"]
    return 137
