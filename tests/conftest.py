"""Shared fixtures: the in-tree build, a busybox rootfs, the probe, an edgert-oci wrapper.

Tiers declare what they need and skip with the reason when the machine lacks it.
"""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_PYTHON = "/usr/bin/python3"

if REPO not in sys.path:
    sys.path.insert(0, REPO)

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")


def _run(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


@pytest.fixture(scope="session")
def init_bin():
    """Path of the in-tree edgert-init, built on first use."""
    path = os.path.join(REPO, "init", "edgert-init")
    _run(["make", "-s", "-C", os.path.join(REPO, "init")])
    return path


@pytest.fixture(scope="session")
def native_built():
    """Builds edgert._native in place when it is missing or older than native/."""
    import glob
    built = glob.glob(os.path.join(REPO, "edgert", "_native*.so"))
    sources = glob.glob(os.path.join(REPO, "native", "*"))
    newest = max(os.path.getmtime(p) for p in sources)
    if not built or min(os.path.getmtime(p) for p in built) < newest:
        _run([DEVICE_PYTHON, os.path.join(REPO, "native", "build.py"), "--inplace"], cwd=REPO)
    return True


@pytest.fixture(scope="session")
def probe_bin():
    """Path of the static probe program run inside containers."""
    src = os.path.join(REPO, "tests", "probe")
    _run(["make", "-s", "-C", src])
    return os.path.join(src, "probe")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """A read-only-by-convention busybox rootfs (with /probe) shared by the session's tests."""
    if not os.path.exists("/bin/busybox"):
        pytest.skip("needs busybox-static (/bin/busybox)")
    src = os.path.join(REPO, "tests", "probe")
    _run(["make", "-s", "-C", src])
    probe_bin = os.path.join(src, "probe")
    from edgert import rootfs
    dest = str(tmp_path_factory.mktemp("busybox") / "rootfs")
    rootfs.build_busybox_rootfs(dest)
    shutil.copy(probe_bin, os.path.join(dest, "probe"))
    return dest


@pytest.fixture(scope="session")
def edgert_oci(tmp_path_factory, native_built, init_bin):
    """An executable that runs the in-tree edgert-oci with the device interpreter."""
    path = str(tmp_path_factory.mktemp("bin") / "edgert-oci")
    with open(path, "w") as f:
        f.write("#!%s -I\nimport sys\nsys.path.insert(0, %r)\n"
                "from edgert.oci.cli import main\nsys.exit(main(sys.argv[1:]))\n"
                % (DEVICE_PYTHON, REPO))
    os.chmod(path, 0o755)
    return path


class Oci:
    """Runs edgert-oci against a private state root; deletes every container at teardown."""

    def __init__(self, binary, root):
        self.binary, self.root = binary, root

    def __call__(self, *args, check=True, timeout=60, **kw):
        proc = subprocess.run([self.binary, "--root", self.root] + [str(a) for a in args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                              **kw)
        if check and proc.returncode != 0:
            raise AssertionError("edgert-oci %s exited %d: %s%s" % (
                " ".join(map(str, args)), proc.returncode, proc.stdout.decode(errors="replace"),
                proc.stderr.decode(errors="replace")))
        return proc

    def state(self, cid):
        import json
        return json.loads(self("state", cid).stdout)

    def cleanup(self):
        if os.path.isdir(self.root):
            for cid in os.listdir(self.root):
                self("delete", "--force", cid, check=False)


@pytest.fixture
def oci(edgert_oci, tmp_path):
    """edgert-oci on a fresh --root; needs root."""
    if not IS_ROOT:
        pytest.skip("needs root")
    runner = Oci(edgert_oci, str(tmp_path / "oci-root"))
    yield runner
    runner.cleanup()


@pytest.fixture
def make_bundle(busybox_rootfs, tmp_path):
    """make_bundle(args, edit=None, **defaults) -> bundle dir on the shared busybox rootfs.

    ``defaults`` go to edgert.oci.defaults.default_config; ``edit(config)`` may change the
    config before it is written. Containers get cgroups below the test's own (the default).
    """
    import json
    from edgert.oci.defaults import default_config
    counter = [0]

    def make(args, edit=None, **defaults):
        counter[0] += 1
        bundle = tmp_path / ("bundle%d" % counter[0])
        bundle.mkdir()
        config = default_config(args=list(args), **defaults)
        config["root"]["path"] = busybox_rootfs
        if edit:
            edit(config)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return str(bundle)
    return make
