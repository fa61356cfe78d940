"""The README's rollout walk-through (examples/rollout/demo.sh) against a real edgertd."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")


def test_rollout_example_commits_and_rolls_back(daemon, busybox_rootfs, tmp_path):
    daemon.start()
    env = dict(daemon.env, EDGERT="%s --socket %s" % (daemon.cli_bin, daemon.socket),
               EDGERT_EXAMPLE_DIR=str(tmp_path / "images"))
    proc = subprocess.run(["sh", os.path.join(REPO, "examples", "rollout", "demo.sh")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=180)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + "\n--- daemon log:\n" + daemon.log()
    assert "web 2" in out                      # release 2 served its page
    assert "written by release 1" in out       # the volume survived both upgrades
    assert "failed_versions: 3" in out.replace("  ", " ") or "failed_versions:" in out
