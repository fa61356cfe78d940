"""The README's walk-throughs (examples/rollout/demo.sh, examples/lan-dhcp/demo.sh) against a
real edgertd."""

import json
import os
import shutil
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


@pytest.fixture
def router_netns(native_built):
    """A network namespace that plays the router for the LAN example (requested before
    ``daemon``, so it goes after the daemon's teardown)."""
    for tool in ("nsenter", "busybox", "ip"):
        if shutil.which(tool) is None:
            pytest.skip("needs %s" % tool)
    name = "edg-exrt-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield "/run/netns/" + name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_lan_dhcp_example_serves_a_lan_client(router_netns, daemon, busybox_rootfs, tmp_path):
    """examples/lan-dhcp/demo.sh with edgertd and the script in a namespace of ours: the
    script's bridges, client and "internet" all live inside it."""
    daemon.prefix = ["nsenter", "--net=" + router_netns]
    with open(daemon.config, "w") as f:
        json.dump({"metrics_address": "127.0.0.1:0", "wan_masquerade": True}, f)
    daemon.start()
    env = dict(daemon.env, EDGERT="%s --socket %s" % (daemon.cli_bin, daemon.socket),
               EDGERT_EXAMPLE_DIR=str(tmp_path / "images"))
    proc = subprocess.run(["nsenter", "--net=" + router_netns, "sh",
                           os.path.join(REPO, "examples", "lan-dhcp", "demo.sh")],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=180)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out + "\n--- daemon log:\n" + daemon.log()
    assert "10.190.0.0/24" in out and "10.190.0.1/16" in out, out   # edgert inspect
    assert "lease: 10.190.0." in out and "router 10.190.0.1" in out, out
    assert "hello from the internet" in out, out
    assert daemon.call("instance.list") == []      # the script cleaned up after itself
    # and the daemon tears the removed instance's network down (a queued job)
    netns = os.path.join(daemon.run_dir, "netns") + "/"

    def pins():
        with open("/proc/self/mountinfo") as f:
            return [line for line in f if netns in line]
    daemon.wait_for(lambda: not pins(), "the instance's pin unmounted", timeout=15)
