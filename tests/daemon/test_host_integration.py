"""The host side of a container end to end (issue 6): Unwired Edge Cloud API keys in
/host/api-keys, the deprecated root-level paths behind legacy_host_paths, and hostile or
malformed input to /host (config map names, links the container plants), through the real
CLI and daemon."""

import json
import os
import shutil

import pytest

from helpers.ociarchive import write_oci_archive
from helpers.daemonevents import events
from helpers.services import service_input

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run containers")

KEY1 = "uec-k1_0123456789abcdefABCDEF"
KEY2 = "uec-k2_fedcba9876543210ZYXWVU"
KEY3 = "uec-k3_writer-key-000000000001"


def running(daemon, iid, version=None):
    info = daemon.inspect(iid)
    return info["state"] == "running" and (version is None or info["version"] == version)


def sh(daemon, iid, script, check=True):
    return daemon.cli("exec", iid, "sh", "-c", script, check=check)


def out(daemon, iid, script):
    return sh(daemon, iid, script).stdout.decode()


def keys_in(daemon, iid):
    """{role: content} of the container's /host/api-keys, as the container sees them."""
    listing = out(daemon, iid, "ls -A /host/api-keys 2>/dev/null || echo NO-DIR").split()
    if listing == ["NO-DIR"]:
        return None
    return {role: out(daemon, iid, "cat /host/api-keys/%s" % role) for role in listing}


def set_key(daemon, role, key, newline=True):
    return daemon.cli("api-key", "set", role, input=(key + ("\n" if newline else "")).encode())


def start(daemon, **settings):
    with open(daemon.config, "w") as f:
        json.dump(dict({"metrics_address": "127.0.0.1:0"}, **settings), f)
    daemon.start()


# -- API keys ---------------------------------------------------------------------------------

def test_api_keys_reach_running_containers_rotate_and_go(daemon, images):
    start(daemon)
    set_key(daemon, "reader", KEY1)
    daemon.import_service(service_input("keys", images["good"],
                                        api_key_roles=["reader", "writer"]))
    daemon.cli("instance", "add", "keys", "--id", "k1")
    daemon.wait_for(lambda: running(daemon, "k1"), "running")
    assert keys_in(daemon, "k1") == {"reader": KEY1 + "\n"}
    # the role without a key: said in the log, with how to provision it
    log = daemon.log()
    assert "'writer', which this device has no key for" in log
    assert "edgert api-key set writer" in log
    # the workload alone may read its keys
    assert out(daemon, "k1", "ls -ln /host/api-keys/reader").startswith("-r--------")
    # provisioning the missing role reaches the running container, without a restart
    pid = daemon.inspect("k1")["pid"]
    set_key(daemon, "writer", KEY3, newline=False)  # `printf %s "$KEY" |` works too
    assert keys_in(daemon, "k1") == {"reader": KEY1 + "\n", "writer": KEY3 + "\n"}
    # rotation replaces the file (a reader sees the old key or the new, by rename)
    result = json.loads(daemon.cli("api-key", "set", "reader", "--json",
                                   input=KEY2.encode()).stdout)
    assert result["instances"] == ["k1"] and result["fingerprint"].startswith("sha256:")
    assert keys_in(daemon, "k1") == {"reader": KEY2 + "\n", "writer": KEY3 + "\n"}
    # removal takes the file away
    daemon.cli("api-key", "rm", "reader")
    assert keys_in(daemon, "k1") == {"writer": KEY3 + "\n"}
    assert daemon.inspect("k1")["pid"] == pid
    # listings show roles and fingerprints, never a key; neither does the log or events
    listing = daemon.json("api-key", "ls")
    assert [r["role"] for r in listing] == ["writer"]
    table = daemon.cli("api-key", "ls").stdout.decode()
    assert "writer" in table and "sha256:" in table
    events = json.dumps(daemon.call("api_key.list")) + table + daemon.log()
    for key in (KEY1, KEY2, KEY3):
        assert key not in events
    with open(os.path.join(daemon.root, "daemon", "api-keys.json")) as f:
        assert json.load(f) == {"writer": KEY3}
    assert oct(os.stat(os.path.join(daemon.root, "daemon", "api-keys.json")).st_mode
               )[-3:] == "600"
    # the keys outlive a restart of the container
    daemon.wait_for(lambda: daemon.inspect("k1")["good_version"] == 1, "committed")
    daemon.cli("restart", "k1")
    daemon.wait_for(lambda: running(daemon, "k1") and daemon.inspect("k1")["pid"] != pid,
                    "restarted")
    assert keys_in(daemon, "k1") == {"writer": KEY3 + "\n"}


def test_bad_keys_and_roles_are_refused_and_nothing_is_stored(daemon, images):
    start(daemon)
    set_key(daemon, "reader", KEY1)
    cases = [("reader", "two\nlines\n", "not printable ASCII"), ("reader", "\n", "stdin was "
             "empty"), ("../x", KEY2, "or '/'"), ("a/b", KEY2, "or '/'"),
             ("..", KEY2, 'not "." or ".."'), ("reader", " " + KEY2, "space")]
    for role, key, fragment in cases:
        proc = daemon.cli("api-key", "set", role, input=key.encode(), check=False)
        assert proc.returncode == 1, (role, key)
        assert fragment in proc.stderr.decode(), proc.stderr
        assert KEY2 not in proc.stderr.decode()
    # a node service cannot name a role that could not be a file name either
    path = os.path.join(os.path.dirname(daemon.config), "roles.json")
    with open(path, "w") as f:
        json.dump(service_input("roles", images["good"], api_key_roles=["../x"]), f)
    proc = daemon.cli("service", "import", path, check=False)
    assert proc.returncode == 1 and "api_key_roles[0]: must be" in proc.stderr.decode()
    assert daemon.call("service.list") == []
    proc = daemon.cli("api-key", "rm", "nobody", check=False)
    assert proc.returncode == 1 and "no API key for role 'nobody'" in proc.stderr.decode()
    assert [r["role"] for r in daemon.call("api_key.list")] == ["reader"]
    with open(os.path.join(daemon.root, "daemon", "api-keys.json")) as f:
        assert json.load(f) == {"reader": KEY1}
    assert KEY2 not in daemon.log()


def test_api_key_files_follow_the_roles_of_each_version(daemon, images):
    start(daemon)
    set_key(daemon, "a", KEY1)
    set_key(daemon, "b", KEY2)
    daemon.import_service(service_input("roles", images["good"], api_key_roles=["a", "b"]))
    daemon.cli("instance", "add", "roles", "--id", "r1")
    daemon.wait_for(lambda: running(daemon, "r1", 1), "v1 running")
    assert keys_in(daemon, "r1") == {"a": KEY1 + "\n", "b": KEY2 + "\n"}
    daemon.import_service(service_input("roles", images["good"], api_key_roles=["b"],
                                        env={"V": "2"}))
    daemon.wait_for(lambda: running(daemon, "r1", 2), "v2 running")
    assert keys_in(daemon, "r1") == {"b": KEY2 + "\n"}
    daemon.import_service(service_input("roles", images["good"], env={"V": "3"}))
    daemon.wait_for(lambda: running(daemon, "r1", 3), "v3 running")
    assert keys_in(daemon, "r1") is None
    # a key set now concerns no version that runs: nothing is written
    assert json.loads(daemon.cli("api-key", "set", "a", "--json", input=KEY3.encode()
                                 ).stdout)["instances"] == []
    assert keys_in(daemon, "r1") is None


def test_a_role_without_a_key_is_an_event_until_the_key_comes(daemon, images):
    start(daemon)
    daemon.import_service(service_input("nokey", images["good"], api_key_roles=["fleet"]))
    daemon.cli("instance", "add", "nokey", "--id", "k1")
    daemon.wait_for(lambda: running(daemon, "k1", 1), "v1 running")
    event = events(daemon, lambda e: e.get("kind") == "api-key-missing")
    assert event and event["instance"] == "k1", event
    assert "names API key role 'fleet'" in event["message"], event
    assert "edgert api-key set fleet" in event["message"], event
    assert not keys_in(daemon, "k1")  # no key file (an empty directory is fine)
    set_key(daemon, "fleet", KEY1)
    assert keys_in(daemon, "k1") == {"fleet": KEY1 + "\n"}
    assert events(daemon, lambda e: e.get("kind") == "api-key-updated"
                  and e.get("instance") == "k1")


def test_key_files_belong_to_the_workload_user(daemon, images):
    start(daemon)
    set_key(daemon, "reader", KEY1)
    daemon.import_service(service_input("unpriv", images["good"], user="1000:1000",
                                        api_key_roles=["reader"]))
    daemon.cli("instance", "add", "unpriv", "--id", "u1")
    daemon.wait_for(lambda: running(daemon, "u1"), "running")
    assert out(daemon, "u1", "id -u; cat /host/api-keys/reader") == "1000\n%s\n" % KEY1
    assert out(daemon, "u1", "ls -ln /host/api-keys/reader").split()[:4] == [
        "-r--------", "1", "1000", "1000"]
    set_key(daemon, "reader", KEY2)  # a rotation keeps the owner
    assert out(daemon, "u1", "cat /host/api-keys/reader") == KEY2 + "\n"


def test_a_container_cannot_redirect_key_writes_with_links(daemon, images, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "reader").write_text("host file\n")
    start(daemon)
    set_key(daemon, "reader", KEY1)
    daemon.import_service(service_input("evil", images["good"], api_key_roles=["reader"]))
    daemon.cli("instance", "add", "evil", "--id", "e1")
    daemon.wait_for(lambda: running(daemon, "e1"), "running")
    # the directory replaced by a link to a host directory
    sh(daemon, "e1", "rm -rf /host/api-keys && ln -s %s /host/api-keys" % victim)
    set_key(daemon, "reader", KEY2)
    assert (victim / "reader").read_text() == "host file\n"
    assert out(daemon, "e1", "test -L /host/api-keys || echo dir") == "dir\n"
    assert keys_in(daemon, "e1") == {"reader": KEY2 + "\n"}
    # the key file replaced by a link to a host file
    sh(daemon, "e1", "rm -f /host/api-keys/reader && ln -s %s/reader /host/api-keys/reader"
       % victim)
    set_key(daemon, "reader", KEY3)
    assert (victim / "reader").read_text() == "host file\n"
    assert keys_in(daemon, "e1") == {"reader": KEY3 + "\n"}
    # the directory replaced by a file
    sh(daemon, "e1", "rm -rf /host/api-keys && echo x > /host/api-keys")
    set_key(daemon, "reader", KEY1)
    assert keys_in(daemon, "e1") == {"reader": KEY1 + "\n"}


# -- bad input to /host ---------------------------------------------------------------------------

BAD_NAMES = ["../x", "a/b", "/etc/passwd", "..", "x\0y", "api-keys", ""]


def host_listing(daemon, iid):
    return sorted(os.listdir(os.path.join(daemon.run_dir, "host", iid)))


def test_config_map_names_cannot_escape_host(daemon, images, tmp_path):
    start(daemon)
    daemon.import_service(service_input("maps", images["good"]))
    value = tmp_path / "value"
    value.write_text("v\n")
    daemon.cli("instance", "add", "maps", "--id", "c1", "--config-map", "ok.ini=%s" % value)
    daemon.wait_for(lambda: running(daemon, "c1"), "running")
    before = host_listing(daemon, "c1")
    for name in BAD_NAMES:
        if "\0" not in name and name:  # argv cannot carry a NUL; the protocol can
            proc = daemon.cli("config-map", "set", "c1", "%s=%s" % (name, value), check=False)
            assert proc.returncode == 1, name
            assert "config_maps[" in proc.stderr.decode(), proc.stderr
            proc = daemon.cli("instance", "add", "maps", "--id", "c2", "--config-map",
                              "%s=%s" % (name, value), check=False)
            assert proc.returncode == 1, name
        with pytest.raises(Exception) as err:
            daemon.call("instance.set_config_maps", id="c1", config_maps={name: "x"})
        assert "config_maps" in str(err.value) or "key" in str(err.value), name
        with pytest.raises(Exception):
            daemon.call("instance.add", service="maps", id="c3", config_maps={name: "x"})
    # nothing half-configured: no new instance, the maps and /host as they were
    assert [r["id"] for r in daemon.call("instance.list")] == ["c1"]
    assert daemon.inspect("c1")["config_maps"] == ["ok.ini"]
    assert host_listing(daemon, "c1") == before
    assert not os.path.exists(os.path.join(daemon.run_dir, "host", "x"))
    assert out(daemon, "c1", "cat /host/ok.ini") == "v\n"


def test_a_config_map_update_replaces_a_planted_link(daemon, images, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("host file\n")
    value = tmp_path / "value"
    value.write_text("one\n")
    start(daemon)
    daemon.import_service(service_input("maps", images["good"]))
    daemon.cli("instance", "add", "maps", "--id", "l1", "--config-map", "app.ini=%s" % value)
    daemon.wait_for(lambda: running(daemon, "l1"), "running")
    sh(daemon, "l1", "rm /host/app.ini && ln -s %s /host/app.ini" % victim)
    value.write_text("two\n")
    daemon.cli("config-map", "set", "l1", "app.ini=%s" % value)
    assert victim.read_text() == "host file\n"
    assert out(daemon, "l1", "test -L /host/app.ini && echo link; cat /host/app.ini") == "two\n"
    # a directory planted at the name is replaced too, and a stray one removed
    sh(daemon, "l1", "rm /host/app.ini && mkdir -p /host/app.ini/sub /host/junk/d")
    value.write_text("three\n")
    daemon.cli("config-map", "set", "l1", "app.ini=%s" % value)
    assert out(daemon, "l1", "cat /host/app.ini") == "three\n"
    assert "junk" not in host_listing(daemon, "l1")
    # a stray tree too deep to remove stays, logged, and blocks nothing
    sh(daemon, "l1", "mkdir -p /host/deep/$(printf 'a/%.0s' $(seq 80))")
    value.write_text("four\n")
    daemon.cli("config-map", "set", "l1", "app.ini=%s" % value)
    assert out(daemon, "l1", "cat /host/app.ini") == "four\n"
    assert "/host/deep, which edgert did not write, stays" in daemon.log()


def test_an_env_name_that_is_no_shell_identifier_is_refused_at_import(daemon, images):
    start(daemon)
    for name in ("BAD-NAME", "1X", "A B", "A=B"):
        path = os.path.join(os.path.dirname(daemon.config), "bad.json")
        with open(path, "w") as f:
            json.dump(service_input("envs", images["good"], env={name: "x"}), f)
        proc = daemon.cli("service", "import", path, check=False)
        assert proc.returncode == 1, name
        assert "env" in proc.stderr.decode() and "variable name" in proc.stderr.decode()
    assert daemon.call("service.list") == []


def test_time_status_replaces_what_the_container_planted(daemon, images, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("host file\n")
    hook = os.path.join(daemon.run_dir, "time-status")  # the firmware's NTP hook decides
    os.makedirs(daemon.run_dir, exist_ok=True)
    with open(hook, "w") as f:
        f.write("")
    start(daemon)
    daemon.import_service(service_input("clock", images["good"]))
    daemon.cli("instance", "add", "clock", "--id", "t1")
    daemon.wait_for(lambda: running(daemon, "t1"), "running")
    assert out(daemon, "t1", "wc -c < /host/.time-status") == "0\n"
    sh(daemon, "t1", "rm /host/.time-status && mkdir -p /host/.time-status/d")
    with open(hook, "w") as f:
        f.write("synced\n")
    daemon.wait_for(lambda: sh(daemon, "t1", "cat /host/.time-status", check=False
                               ).stdout == b"synced\n",
                    "a directory at .time-status replaced", timeout=25)
    sh(daemon, "t1", "rm /host/.time-status && ln -s %s /host/.time-status" % victim)
    with open(hook, "w") as f:
        f.write("")
    daemon.wait_for(lambda: sh(daemon, "t1", "test -L /host/.time-status && echo link; "
                               "wc -c < /host/.time-status", check=False).stdout == b"0\n",
                    "a link at .time-status replaced", timeout=25)
    assert victim.read_text() == "host file\n"


# -- deprecated root-level paths ------------------------------------------------------------------

PUBLISH = ("printf '# TYPE app_up gauge\\napp_up{where=\"%s\"} 1\\n' %s > %s/.m.tmp && "
           "mv %s/.m.tmp %s/prometheus.prom")


def publish(daemon, iid, where):
    directory = "" if where == "root" else "/host"
    sh(daemon, iid, PUBLISH % (where, "", directory, directory, directory))


def counter(daemon, name, iid, extra=""):
    """The scraper's counter ``name`` of instance ``iid`` (0 before its first scrape)."""
    prefix = '%s{instance="%s"%s} ' % (name, iid, extra)
    for line in daemon.cli("metrics").stdout.decode().splitlines():
        if line.startswith(prefix):
            return int(line[len(prefix):])
    return 0


def app_samples(daemon):
    return [line for line in daemon.cli("metrics").stdout.decode().splitlines()
            if line.startswith("app_up{")]


@pytest.fixture(scope="module")
def odd_image(busybox_rootfs, tmp_path_factory):
    """busybox with a directory at /lxc.env and a regular file at /.time-status."""
    base = tmp_path_factory.mktemp("odd")
    rootfs = str(base / "rootfs")
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    os.mkdir(os.path.join(rootfs, "lxc.env"))
    with open(os.path.join(rootfs, ".time-status"), "w") as f:
        f.write("stale image file\n")
    path = str(base / "odd.tar")
    write_oci_archive(rootfs, path, ref="localhost/test/odd:1", cmd=(
        "/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"))
    return "oci-archive:" + path


def test_legacy_host_paths_on(daemon, images, tmp_path):
    start(daemon, legacy_host_paths=True, metrics_interval_s=1)
    with open(os.path.join(daemon.run_dir, "time-status"), "w") as f:
        f.write("synced\n")
    daemon.import_service(service_input("old", images["good"], env={"GREETING": "it's old"}))
    daemon.cli("instance", "add", "old", "--id", "o1")
    daemon.wait_for(lambda: running(daemon, "o1"), "running")
    assert out(daemon, "o1", '. /lxc.env; printf %s "$GREETING"') == "it's old"
    assert out(daemon, "o1", "readlink /lxc.env; readlink /.time-status") == (
        "host/lxc.env\nhost/.time-status\n")
    daemon.wait_for(lambda: out(daemon, "o1", "cat /.time-status") == "synced\n",
                    "/.time-status through the link", timeout=25)
    # metrics: the root-level file while /host has none; /host's wins when both exist
    publish(daemon, "o1", "root")
    daemon.wait_for(lambda: any('where="root"' in s for s in app_samples(daemon)),
                    "metrics from /prometheus.prom")
    publish(daemon, "o1", "host")
    daemon.wait_for(lambda: [s for s in app_samples(daemon) if 'where="host"' in s] and
                    not [s for s in app_samples(daemon) if 'where="root"' in s],
                    "metrics from /host/prometheus.prom")
    # a link at /prometheus.prom is never followed
    secret = tmp_path / "secret.prom"
    secret.write_text("# TYPE app_up gauge\napp_up{where=\"secret\"} 1\n")
    sh(daemon, "o1", "rm /host/prometheus.prom && ln -sf %s /prometheus.prom" % secret)
    invalid = counter(daemon, "edgert_metrics_rejected_total", "o1", ',reason="invalid"')
    daemon.wait_for(lambda: counter(daemon, "edgert_metrics_rejected_total", "o1",
                                    ',reason="invalid"') > invalid, "the link refused")
    assert not [s for s in app_samples(daemon) if 'where="secret"' in s]
    # what the container put at the names is replaced at the next start (link or file)
    sh(daemon, "o1", "rm /lxc.env && echo 'export GREETING=planted' > /lxc.env")
    daemon.wait_for(lambda: daemon.inspect("o1")["good_version"] == 1, "committed")
    daemon.cli("restart", "o1")
    daemon.wait_for(lambda: running(daemon, "o1"), "running again")
    assert out(daemon, "o1", '. /lxc.env; printf %s "$GREETING"') == "it's old"


def test_legacy_host_paths_leave_an_image_directory_alone(daemon, odd_image):
    start(daemon, legacy_host_paths=True)
    daemon.import_service(service_input("odd", odd_image))
    daemon.cli("instance", "add", "odd", "--id", "d1")
    daemon.wait_for(lambda: running(daemon, "d1"), "running")
    assert out(daemon, "d1", "test -d /lxc.env && echo dir") == "dir\n"
    assert out(daemon, "d1", "readlink /.time-status") == "host/.time-status\n"
    assert "/lxc.env of the image is not a file or link: left as it is" in daemon.log()


def test_legacy_host_paths_off(daemon, images, odd_image):
    start(daemon, metrics_interval_s=1)
    daemon.import_service(service_input("new", images["good"], env={"GREETING": "hi"}))
    daemon.cli("instance", "add", "new", "--id", "n1")
    daemon.import_service(service_input("odd", odd_image))
    daemon.cli("instance", "add", "odd", "--id", "n2")
    daemon.wait_for(lambda: running(daemon, "n1") and running(daemon, "n2"), "running")
    assert out(daemon, "n1", "ls -A / | grep -c -e '^lxc.env$' -e '^.time-status$' "
                             "-e '^prometheus.prom$' || true") == "0\n"
    assert out(daemon, "n1", '. /host/lxc.env; printf %s "$GREETING"') == "hi"
    # the image's own entries are left as they are
    assert out(daemon, "n2", "test -d /lxc.env && cat /.time-status") == "stale image file\n"
    # a root-level /prometheus.prom is not read
    publish(daemon, "n1", "root")
    missing = counter(daemon, "edgert_metrics_missing_total", "n1")
    daemon.wait_for(lambda: counter(daemon, "edgert_metrics_missing_total", "n1") >= missing + 2,
                    "two scrapes of n1 that found nothing")
    assert not app_samples(daemon)


def test_a_restarted_daemon_refreshes_host_of_adopted_containers(daemon, images):
    """A key stored just before a crash (the store written, the containers not yet): the
    next daemon writes /host of the containers it adopts, without restarting them."""
    start(daemon)
    set_key(daemon, "reader", KEY1)
    daemon.import_service(service_input("keys", images["good"], api_key_roles=["reader"]))
    daemon.cli("instance", "add", "keys", "--id", "k1")
    daemon.wait_for(lambda: running(daemon, "k1"), "running")
    pid = daemon.inspect("k1")["pid"]
    daemon.kill()
    store = os.path.join(daemon.root, "daemon", "api-keys.json")
    with open(store) as f:
        text = f.read()
    assert KEY1 in text
    text = text.replace(KEY1, KEY2)
    with open(store, "w") as f:
        f.write(text)
    daemon.start()
    assert daemon.inspect("k1")["pid"] == pid
    assert keys_in(daemon, "k1") == {"reader": KEY2 + "\n"}
