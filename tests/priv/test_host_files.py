"""/host in a real container: lxc.env sourced by the container's busybox sh gives exact values,
.time-status follows the host's sync state; plus TimeStatus change reporting (no root)."""

import os
import subprocess

import pytest

from edgert.host import lxcenv, timestatus

ENV = {
    "PLAIN": "value",
    "QUOTES": "it's \"quoted\" '\\''",
    "SHELLY": "$HOME `id` $(id) ${X:-y} \\ \\\\",
    "LINES": "one\ntwo\n\ttab\n",
    "UTF8": "grüße – 日本 🚀",
    "EMPTY": "",
    "DASH": "-e -n",
    "EQUALS": "k=v=w",
}


def host_mount(host_dir):
    def edit(config):
        config["mounts"].append({"destination": "/host", "type": "bind", "source": str(host_dir),
                                 "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]})
    return edit


@pytest.fixture
def host_dir(tmp_path):
    path = tmp_path / "host"
    path.mkdir()
    (path / "lxc.env").write_bytes(lxcenv.render(ENV))
    return path


def test_container_sources_lxc_env_and_gets_exact_values(oci, make_bundle, host_dir):
    names = sorted(ENV)
    script = ". /host/lxc.env && printf '%%s\\0' %s && env -0 > /dev/null" % " ".join(
        '"$%s"' % name for name in names)
    bundle = make_bundle(["/bin/sh", "-c", script], edit=host_mount(host_dir))
    out = oci("run", "--bundle", bundle, "hostenv").stdout
    assert out.split(b"\0")[:-1] == [ENV[name].encode() for name in names]


def test_container_exported_environment_matches(oci, make_bundle, host_dir):
    bundle = make_bundle(["/bin/sh", "-c", ". /host/lxc.env && exec env -0"],
                         edit=host_mount(host_dir))
    out = oci("run", "--bundle", bundle, "hostenv-export").stdout
    seen = dict(entry.partition(b"=")[::2] for entry in out.split(b"\0")[:-1])
    assert {name: seen.get(name.encode()) for name in ENV} == {
        name: value.encode() for name, value in ENV.items()}


def test_time_status_is_visible_and_follows_updates_through_the_read_only_bind(
        oci, make_bundle, host_dir):
    timestatus.write(str(host_dir), False)
    # the container reports the file's size, then waits for the host to change it
    script = ("wc -c < /host/.time-status; while [ ! -s /host/.time-status ]; do sleep 0.05; "
              "done; cat /host/.time-status; touch /host/x 2>/dev/null || echo read-only")
    bundle = make_bundle(["/bin/sh", "-c", script], edit=host_mount(host_dir))
    run = subprocess.Popen([oci.binary, "--root", oci.root, "run", "--bundle", bundle,
                            "timestatus"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert run.stdout.readline().strip() == b"0"
        timestatus.write(str(host_dir), True)
        out, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    assert out == b"synced\nread-only\n"


# --- TimeStatus (no root) ------------------------------------------------------------------------

def test_write_sets_content_exactly_when_synced(tmp_path):
    timestatus.write(str(tmp_path), True)
    assert (tmp_path / ".time-status").read_bytes() == b"synced\n"
    timestatus.write(str(tmp_path), False)
    assert (tmp_path / ".time-status").read_bytes() == b""
    assert sorted(os.listdir(str(tmp_path))) == [".time-status"]  # no temp file left


def test_poll_reports_changes_of_the_firmware_hook(tmp_path):
    status = timestatus.TimeStatus(str(tmp_path))
    hook = tmp_path / "time-status"
    hook.write_text("")
    assert status.poll() is True and status.synced is False  # first poll: known now
    assert status.poll() is False
    hook.write_text("ntp ok\n")
    assert status.poll() is True and status.synced is True
    assert status.poll() is False
    hook.write_text("  \n")
    assert status.poll() is True and status.synced is False


def test_poll_uses_the_given_probe():
    answers = iter([True, True, False])
    status = timestatus.TimeStatus("/nowhere", probe=lambda run_dir: next(answers))
    assert [status.poll(), status.poll(), status.poll()] == [True, False, True]
