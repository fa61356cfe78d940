"""cross/common.sh helpers and the firmware init files, run with fakes: no apt, no qemu."""

import configparser
import hashlib
import os
import shutil
import signal
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMMON = os.path.join(REPO, "cross", "common.sh")
FIRMWARE = os.path.join(REPO, "firmware")


def bash(script, **kw):
    return subprocess.run(["bash", "-c", ". %s\n%s" % (COMMON, script)], capture_output=True,
                          text=True, timeout=30, **kw)


@pytest.mark.parametrize("arch,expected", [
    ("amd64", "amd64 x86_64-linux-gnu x86_64"),
    ("armhf", "armhf arm-linux-gnueabihf arm"),
    ("arm64", "arm64 aarch64-linux-gnu aarch64"),
    ("ppc64le", "ppc64el powerpc64le-linux-gnu ppc64le"),
])
def test_arch_table(arch, expected):
    out = bash('arch_vars %s; echo "$DEB_ARCH $TRIPLET $QEMU_ARCH"' % arch)
    assert out.stdout.split("\n")[0] == expected


def test_all_expands_and_unknown_arch_is_refused():
    assert bash("arches_from_args all").stdout.split() == ["amd64", "armhf", "arm64", "ppc64le"]
    out = bash("arches_from_args arm64 mips")
    assert out.returncode == 1
    assert "unknown arch 'mips'" in out.stderr


APT_CACHE_DEPENDS = """\
app
  PreDepends: libc6
 |Depends: media-types
  Depends: mime-support
  Depends: <python3:any>
    python3
  Depends: dpkg
libc6
  Depends: libgcc-s1
media-types
mime-support
  Depends: perl
libgcc-s1
  Depends: libc6
dpkg
  Depends: tar
"""


def test_closure_takes_first_alternative_and_never_enters_skipped():
    fake = "apt_arch() { cat <<'EOF'\n%sEOF\n}\n" % APT_CACHE_DEPENDS
    out = bash(fake + 'closure arm64 "dpkg tzdata" app')
    assert out.stdout.split() == ["app", "libc6", "libgcc-s1", "media-types"]


def test_verify_debs_drops_bad_files_and_names_missing_packages(tmp_path):
    good, bad = b"good deb", b"corrupt"
    (tmp_path / "a_1_arm64.deb").write_bytes(good)
    (tmp_path / "b_2_arm64.deb").write_bytes(bad)
    manifest = tmp_path / "manifest"
    manifest.write_text("".join("%s %d SHA256:%s\n" % (name, len(data),
                                                      hashlib.sha256(data).hexdigest())
                                for name, data in [("a_1_arm64.deb", good),
                                                   ("b_2_arm64.deb", good),
                                                   ("c_1%3a3_arm64.deb", good)]))
    out = bash("verify_debs %s %s" % (tmp_path, manifest))
    assert out.stdout.split() == ["b", "c"]
    assert sorted(p.name for p in tmp_path.glob("*.deb")) == ["a_1_arm64.deb"]


# --- firmware init files -----------------------------------------------------------------------

FAKE_DAEMON = """#!/bin/sh
echo "started $*"
trap 'echo stopped; exit 0' TERM
while :; do sleep 0.05; done
"""


def sysvinit_copy(tmp_path):
    """The sysvinit script with its paths moved into tmp_path and a fake daemon."""
    daemon = tmp_path / "edgertd"
    daemon.write_text(FAKE_DAEMON)
    daemon.chmod(0o755)
    with open(os.path.join(FIRMWARE, "sysvinit", "edgertd")) as f:
        text = f.read()
    for var, value in [("DAEMON", daemon), ("ROOT", tmp_path / "lib"),
                       ("RUN_DIR", tmp_path / "run"), ("PIDFILE", tmp_path / "pid"),
                       ("LOG", tmp_path / "log")]:
        old = next(line for line in text.splitlines() if line.startswith(var + "="))
        text = text.replace(old, "%s=%s" % (var, value), 1)
    text = text.replace("/etc/default/edgertd", str(tmp_path / "no-defaults"))
    script = tmp_path / "init"
    script.write_text(text)
    script.chmod(0o755)
    return script


def start_stop_daemons():
    found = []
    if shutil.which("start-stop-daemon"):
        found.append(pytest.param(shutil.which("start-stop-daemon"), id="debian"))
    if os.path.exists("/bin/busybox"):
        found.append(pytest.param("/bin/busybox", id="busybox"))
    return found or [pytest.param(None, marks=pytest.mark.skip(
        reason="needs start-stop-daemon (dpkg) or busybox"))]


@pytest.mark.parametrize("ssd", start_stop_daemons())
def test_sysvinit_script_starts_once_and_stops(tmp_path, ssd):
    script = sysvinit_copy(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "start-stop-daemon").symlink_to(ssd)
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]))

    def init(verb):
        return subprocess.run([str(script), verb], capture_output=True, text=True, env=env,
                              timeout=30)

    def wait_for_log(text):
        deadline = time.monotonic() + 20  # generous: CI machines can be very busy
        while not (log.exists() and text in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)

    log = tmp_path / "log"

    assert init("status").returncode == 3
    assert init("start").returncode == 0
    pid = int((tmp_path / "pid").read_text())
    try:
        wait_for_log("started")  # its TERM trap is set
        assert init("status").stdout == "edgertd is running\n"
        assert init("start").stdout == "edgertd is already running\n"
        assert (tmp_path / "lib").is_dir() and (tmp_path / "run").is_dir()
        assert init("stop").returncode == 0
        assert init("status").returncode == 3
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for_log("stopped")
    assert log.read_text() == "started --root %s --run-dir %s\nstopped\n" % (
        tmp_path / "lib", tmp_path / "run")


def test_procd_script_declares_one_respawning_instance(tmp_path):
    # rc.common's procd helpers, recording what the script asks for.
    fake_rc = """
procd_open_instance() { echo open; }
procd_set_param() { echo "param $*"; }
procd_close_instance() { echo close; }
mkdir() { echo "mkdir $*"; }
. %s
echo "START=$START STOP=$STOP USE_PROCD=$USE_PROCD"
start_service
""" % os.path.join(FIRMWARE, "openwrt", "edgertd")
    out = subprocess.run(["sh", "-c", fake_rc], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "START=95 STOP=10 USE_PROCD=1"
    assert lines[1] == "mkdir -p /var/lib/edgert /run/edgert"
    assert lines[2] == "open" and lines[-1] == "close"
    assert "param command /usr/bin/edgertd --root /var/lib/edgert --run-dir /run/edgert" in lines
    assert any(line.startswith("param respawn ") for line in lines)


def test_systemd_unit_starts_edgertd():
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str
    unit.read(os.path.join(FIRMWARE, "systemd", "edgertd.service"))
    service = unit["Service"]
    assert service["ExecStart"].startswith(
        "/usr/bin/edgertd --root /var/lib/edgert --run-dir /run/edgert")
    assert service["KillMode"] == "process" and service["Delegate"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_verifies():
    out = subprocess.run(["systemd-analyze", "verify",
                          os.path.join(FIRMWARE, "systemd", "edgertd.service")],
                         capture_output=True, text=True, timeout=60)
    # edgertd itself is not installed here; anything else is a real complaint.
    complaints = [line for line in out.stderr.splitlines()
                  if "/usr/bin/edgertd is not executable" not in line]
    assert complaints == []
