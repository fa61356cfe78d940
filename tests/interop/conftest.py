"""Interop fixtures: Debian's podman and containerd, on private storage, driving a runtime.

The runtime is the in-tree edgert-oci unless EDGERT_INTEROP_RUNTIME names
another runc-compatible binary; ``EDGERT_INTEROP_RUNTIME=/usr/bin/runc``
checks the harness itself. Everything the engines create lives under a
temporary directory, containers are placed in a scratch cgroup below our own,
and each engine is torn down (containers removed, daemons stopped by PID,
mounts and cgroups cleaned) even when a test fails.
"""

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.helpers import ociarchive
from tests.helpers.cgroups import ScratchCgroup

RUNTIME_ENV = "EDGERT_INTEROP_RUNTIME"
IMAGE = ociarchive.DEFAULT_REF
TIMEOUT = 60


def _runtime_id(path):
    return os.path.basename(path) if path else "edgert-oci"


@pytest.fixture(scope="session", params=[os.environ.get(RUNTIME_ENV, "")], ids=_runtime_id)
def runtime(request):
    """Path of the runc-compatible runtime the engines are told to use."""
    if os.geteuid() != 0:
        pytest.skip("interop tests need root: podman and containerd run rootful here")
    if request.param:
        if not os.access(request.param, os.X_OK):
            pytest.fail("%s=%s is not an executable" % (RUNTIME_ENV, request.param))
        return request.param
    return request.getfixturevalue("edgert_oci")


@pytest.fixture(scope="session")
def image_archive(busybox_rootfs, tmp_path_factory):
    """An oci-archive of the busybox rootfs (with /probe), tagged ``IMAGE``."""
    path = str(tmp_path_factory.mktemp("image") / "busybox-oci.tar")
    ociarchive.write_oci_archive(busybox_rootfs, path, ref=IMAGE)
    return path


@pytest.fixture(scope="session")
def scratch_cgroup(runtime):
    """A cgroup path below ours in every hierarchy; fails at teardown if anything is left."""
    cgroup = ScratchCgroup("edgert-interop-%d" % os.getpid())
    yield cgroup.path
    leftovers = cgroup.remove()
    assert not leftovers, "cgroups left behind (processes still inside?): %s" % leftovers


def run_checked(cmd, check=True, timeout=TIMEOUT, **kw):
    """Runs ``cmd`` capturing text output; on failure the message shows both streams."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        pytest.fail("%s exited %d\nstdout: %s\nstderr: %s"
                    % (" ".join(cmd), proc.returncode, proc.stdout, proc.stderr))
    return proc


def unmount_below(directory):
    """Lazily unmounts whatever an engine left mounted below ``directory``, deepest first."""
    prefix = os.path.realpath(directory).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _require(*programs):
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        pytest.skip("not installed: %s" % ", ".join(missing))


# ---------------------------------------------------------------- podman

class Podman:
    """podman with private storage and state, every container below ``cgroup_parent``."""

    def __init__(self, workdir, runtime, cgroup_parent):
        self.image = IMAGE
        self.base = [
            "podman", "--root", os.path.join(workdir, "root"),
            "--runroot", os.path.join(workdir, "runroot"),
            "--tmpdir", os.path.join(workdir, "tmp"),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
            "--events-backend", "file", "--runtime", runtime,
        ]
        # Root here lacks CAP_SYS_RESOURCE: podman's default ulimits (1048576) fail.
        self.create_flags = [
            "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
            "--network", "none", "--pull", "never", "--cgroup-parent", cgroup_parent,
        ]

    def __call__(self, *args, check=True, timeout=TIMEOUT):
        return run_checked(self.base + list(args), check=check, timeout=timeout)

    def run(self, *args, check=True, timeout=TIMEOUT):
        """``podman run`` with our create flags; ``args`` are run options, image and command."""
        return self("run", *self.create_flags, *args, check=check, timeout=timeout)

    def state(self, name):
        return self("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


@pytest.fixture(scope="session")
def podman(runtime, image_archive, scratch_cgroup, tmp_path_factory):
    _require("podman", "conmon")
    workdir = str(tmp_path_factory.mktemp("podman"))
    engine = Podman(workdir, runtime, scratch_cgroup)
    try:
        engine("load", "--input", image_archive)
        yield engine
    finally:
        engine("rm", "--all", "--force", "--time", "0", check=False)
        unmount_below(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- containerd

CONTAINERD_CONFIG = """\
version = 2
root = "{workdir}/root"
state = "{workdir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.restart",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = "{workdir}/containerd.sock"

[ttrpc]
  address = "{workdir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{workdir}/opt"
"""

# containerd 1.6 still puts shim sockets (and fifos unless told) under here.
CONTAINERD_RUN_DIR = "/run/containerd"


class Containerd:
    """A private containerd daemon; ``ctr`` talks to it in its own namespace."""

    def __init__(self, workdir, runtime, cgroup_base):
        self.workdir = workdir
        self.runtime = runtime
        self.cgroup_base = cgroup_base
        self.socket = os.path.join(workdir, "containerd.sock")
        self.namespace = "edgert-interop"
        self.process = None
        self._run_dirs_before = {d for d in self._run_dirs() if os.path.isdir(d)}

    def start(self):
        config = os.path.join(self.workdir, "config.toml")
        with open(config, "w") as f:
            f.write(CONTAINERD_CONFIG.format(workdir=self.workdir))
        log = open(os.path.join(self.workdir, "containerd.log"), "w")
        self.process = subprocess.Popen(
            ["containerd", "--config", config, "--log-level", "warn"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail("containerd exited %d; see %s/containerd.log"
                            % (self.process.returncode, self.workdir))
            if os.path.exists(self.socket) and \
                    self.ctr("version", check=False, timeout=5).returncode == 0:
                return
            time.sleep(0.1)
        pytest.fail("containerd did not answer on %s within 20 s" % self.socket)

    def ctr(self, *args, check=True, timeout=TIMEOUT):
        cmd = ["ctr", "--address", self.socket, "--namespace", self.namespace] + list(args)
        return run_checked(cmd, check=check, timeout=timeout)

    def run(self, name, *command, detach=False, check=True, timeout=TIMEOUT):
        """``ctr run`` of IMAGE as container ``name`` with the runtime under test."""
        return self.ctr(
            "run", "--detach" if detach else "--rm",
            "--runc-binary", self.runtime,
            "--runc-root", os.path.join(self.workdir, "runtime-root"),
            "--fifo-dir", os.path.join(self.workdir, "fifo"),
            "--cgroup", "%s/%s" % (self.cgroup_base, name),
            IMAGE, name, *command, check=check, timeout=timeout)

    def task_status(self, name):
        for line in self.ctr("task", "list").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == name:
                return fields[-1]
        return None

    def wait_status(self, name, status, timeout=10):
        deadline = time.monotonic() + timeout
        while self.task_status(name) != status:
            if time.monotonic() > deadline:
                pytest.fail("task %s is %s, not %s, after %d s"
                            % (name, self.task_status(name), status, timeout))
            time.sleep(0.05)

    def stop(self):
        """Removes leftover tasks and containers, stops the daemon and its shims, cleans up."""
        if self.process.poll() is None:
            for name in self._names("container", "list"):
                self.ctr("task", "kill", "--signal", "SIGKILL", name, check=False)
                self.ctr("task", "delete", "--force", name, check=False)
                self.ctr("container", "delete", name, check=False)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self._shim_pids():
            os.kill(pid, signal.SIGKILL)
        unmount_below(self.workdir)
        for d in sorted(self._run_dirs(), key=len, reverse=True):
            if d not in self._run_dirs_before:
                try:
                    os.rmdir(d)
                except OSError:
                    pass  # Not empty: another containerd on this machine uses it too.

    def _names(self, *list_command):
        proc = self.ctr(*list_command, check=False)
        return [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()]

    def _shim_pids(self):
        """Shims our daemon started (they outlive it): found by our socket in their argv."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"containerd-shim" in argv[0] and self.socket.encode() in argv:
                pids.append(int(entry))
        return pids

    def _run_dirs(self):
        return [CONTAINERD_RUN_DIR, CONTAINERD_RUN_DIR + "/s", CONTAINERD_RUN_DIR + "/fifo"]


@pytest.fixture(scope="session")
def containerd(runtime, image_archive, scratch_cgroup, tmp_path_factory):
    _require("containerd", "ctr", "containerd-shim-runc-v2")
    workdir = str(tmp_path_factory.mktemp("containerd"))
    engine = Containerd(workdir, runtime, scratch_cgroup)
    try:
        engine.start()
        engine.ctr("image", "import", image_archive)
        yield engine
    finally:
        if engine.process is not None:
            engine.stop()
        shutil.rmtree(workdir, ignore_errors=True)
