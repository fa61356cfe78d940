"""API keys: role and key checks, the device's key store, and /host/api-keys written without
following anything the container put there (edgert/host/apikeys.py, hostdir.py); the
deprecated root-level links and metrics file (legacy_host_paths). No root needed."""

import json
import os
import stat

import pytest

from edgert.errors import ConfigError, NotFound
from edgert.host import apikeys, hostdir

KEY = "uec_0123456789abcdef-XYZ.key"


@pytest.mark.parametrize("role", ["device-read", "fleet:admin", "r", "a" * 128, "gr\u00fcn",
                                  "..x", ".hidden"])
def test_good_roles(role):
    assert apikeys.check_role(role) == role


@pytest.mark.parametrize("role, fragment", [
    ("", "non-empty role name"), ("a b", "without spaces"), ("a\nb", "without spaces"),
    ("a\0b", "without spaces"), ("a" * 129, "at most 128"), ("../x", "or '/'"),
    ("a/b", "or '/'"), ("/etc/passwd", "or '/'"), (".", 'not "." or ".."'),
    ("..", 'not "." or ".."'),
    ("\udcff", "valid Unicode"), (5, "must be a string"),
])
def test_bad_roles_are_refused_with_the_reason(role, fragment):
    with pytest.raises(ConfigError) as err:
        apikeys.check_role(role)
    assert fragment in str(err.value) and err.value.code == "bad-role"


@pytest.mark.parametrize("key", [KEY, "x", "a" * 4096, "with inner space", "~!@#$%^&*()"])
def test_good_keys(key):
    assert apikeys.check_key("r", key) == key


@pytest.mark.parametrize("key, fragment", [
    ("", "is empty"), ("a" * 4097, "the limit is 4096"), ("secret\n", "character 7"),
    ("sec\x00ret", "character 4"), ("s\u00e9cret", "character 2"), (" secret", "space"),
    ("secret ", "space"), (b"secret", "must be a string"),
])
def test_bad_keys_are_refused_without_showing_the_key(key, fragment):
    with pytest.raises(ConfigError) as err:
        apikeys.check_key("r", key)
    assert fragment in str(err.value) and err.value.code == "bad-key"
    if isinstance(key, str) and len(key) > 2:
        assert key.strip() not in str(err.value)


def test_fingerprint_is_short_stable_and_not_the_key():
    fp = apikeys.fingerprint(KEY)
    assert fp == apikeys.fingerprint(KEY) != apikeys.fingerprint(KEY + "x")
    assert fp.startswith("sha256:") and len(fp) == 19 and KEY not in fp


def test_plan_splits_provisioned_and_missing_roles():
    files, missing = apikeys.plan(["a", "b", "../x", "b"], {"a": "k1", "c": "k3"})
    assert files == {"a": b"k1\n"}
    assert missing == ["b", "../x"]


def test_render_parse_round_trip_and_damage_is_an_error(tmp_path):
    keys = {"a": "k1", "b": "k 2"}
    assert apikeys.parse(apikeys.render(keys), "f") == keys
    for bad in (b"{", b"[]", json.dumps({"a b": "k"}).encode(), json.dumps({"a": "k\n"}).encode(),
                b"\xff"):
        with pytest.raises(ConfigError) as err:
            apikeys.parse(bad, "/x/api-keys.json")
        assert "/x/api-keys.json" in str(err.value) and "k\n" not in str(err.value)


def test_store_set_list_remove_persists_0600(tmp_path):
    store = apikeys.Store(str(tmp_path))
    assert store.keys() == {} and store.listing() == []
    store.set("b", KEY)
    store.set("a", "other")
    store.set("b", KEY + "2")  # rotation
    info = os.stat(store.path)
    assert stat.S_IMODE(info.st_mode) == 0o600
    again = apikeys.Store(str(tmp_path))
    assert again.keys() == {"a": "other", "b": KEY + "2"}
    listing = again.listing()
    assert [r["role"] for r in listing] == ["a", "b"]
    assert KEY not in json.dumps(listing)
    again.remove("a")
    assert apikeys.Store(str(tmp_path)).keys() == {"b": KEY + "2"}
    with pytest.raises(NotFound, match="no API key for role 'a'"):
        again.remove("a")
    with pytest.raises(ConfigError):
        again.set("a/b", KEY)
    with pytest.raises(ConfigError):
        again.set("ok", "two\nlines")
    assert apikeys.Store(str(tmp_path)).keys() == {"b": KEY + "2"}  # nothing half-stored


def test_store_refuses_a_damaged_file_instead_of_resetting(tmp_path):
    store = apikeys.Store(str(tmp_path))
    os.makedirs(os.path.dirname(store.path))
    with open(store.path, "w") as f:
        f.write('{"a": ')
    with pytest.raises(ConfigError, match="api-keys.json is not valid JSON"):
        store.keys()
    with pytest.raises(ConfigError):
        store.set("b", KEY)
    with open(store.path) as f:
        assert f.read() == '{"a": '


def test_store_never_reads_through_a_link(tmp_path):
    store = apikeys.Store(str(tmp_path))
    os.makedirs(os.path.dirname(store.path))
    (tmp_path / "elsewhere.json").write_text('{"a": "k"}')
    os.symlink(str(tmp_path / "elsewhere.json"), store.path)
    with pytest.raises(ConfigError, match="cannot read"):
        store.keys()


def owner():
    return os.geteuid(), os.getegid()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_install_writes_exactly_the_files_readable_by_the_owner_only(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    apikeys.install(str(host), {"a": b"k1\n", "b": b"k2\n"}, owner())
    assert sorted(os.listdir(host / "api-keys")) == ["a", "b"]
    assert read(host / "api-keys" / "a") == b"k1\n"
    assert stat.S_IMODE(os.stat(host / "api-keys" / "a").st_mode) == 0o400
    apikeys.install(str(host), {"b": b"k3\n"}, owner())  # a dropped role, a rotated key
    assert os.listdir(host / "api-keys") == ["b"]
    assert read(host / "api-keys" / "b") == b"k3\n"
    apikeys.install(str(host), None)
    assert not os.path.lexists(host / "api-keys")


def test_install_replaces_a_planted_link_directory_without_following(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "a").write_text("host file\n")
    os.symlink(str(victim), str(host / "api-keys"))  # the container's trick
    apikeys.install(str(host), {"a": b"k1\n"}, owner())
    assert (victim / "a").read_text() == "host file\n"
    assert os.path.isdir(host / "api-keys") and not os.path.islink(host / "api-keys")
    assert read(host / "api-keys" / "a") == b"k1\n"


def test_install_replaces_a_file_or_writable_directory_at_api_keys(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "api-keys").write_text("not a directory")
    apikeys.install(str(host), {"a": b"k1\n"}, owner())
    assert read(host / "api-keys" / "a") == b"k1\n"
    apikeys.install(str(host), None)
    (host / "api-keys").mkdir()
    os.chmod(host / "api-keys", 0o777)  # anyone could swap our files in it
    (host / "api-keys" / "junk").mkdir()
    apikeys.install(str(host), {"a": b"k1\n"}, owner())
    assert stat.S_IMODE(os.stat(host / "api-keys").st_mode) == 0o755
    assert os.listdir(host / "api-keys") == ["a"]


def test_install_replaces_planted_links_at_key_and_temp_names(tmp_path):
    host = tmp_path / "host"
    (host / "api-keys").mkdir(parents=True)
    target = tmp_path / "target"
    target.write_text("untouched\n")
    os.symlink(str(target), str(host / "api-keys" / "a"))
    os.symlink(str(target), str(host / "api-keys" / (".b.tmp-%d" % os.getpid())))
    (host / "api-keys" / "c").mkdir()
    (host / "api-keys" / "c" / "deep").mkdir()
    apikeys.install(str(host), {"a": b"k1\n", "b": b"k2\n", "c": b"k3\n"}, owner())
    assert target.read_text() == "untouched\n"
    for role, key in (("a", b"k1\n"), ("b", b"k2\n"), ("c", b"k3\n")):
        assert not os.path.islink(host / "api-keys" / role)
        assert read(host / "api-keys" / role) == key
    assert sorted(os.listdir(host / "api-keys")) == ["a", "b", "c"]


def test_hostdir_remove_takes_trees_and_links_without_following(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    base = tmp_path / "base"
    (base / "t" / "u").mkdir(parents=True)
    os.symlink(str(outside), str(base / "t" / "u" / "link"))
    os.mkfifo(str(base / "t" / "fifo"))
    fd = hostdir.open_dir(str(base))
    try:
        hostdir.remove(fd, "t")
        hostdir.remove(fd, "absent")
    finally:
        os.close(fd)
    assert os.listdir(base) == [] and (outside / "keep").read_text() == "x"


# -- the deprecated root-level links (legacy_host_paths; edgert/daemon/images.py) ------------

def test_legacy_links_replace_links_and_files_and_leave_the_rest(tmp_path):
    from edgert.daemon.images import legacy_links
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    outside = tmp_path / "outside"
    outside.write_text("host file\n")
    os.symlink(str(outside), str(rootfs / "lxc.env"))  # the image's link out of the rootfs
    (rootfs / ".time-status").write_text("image file\n")
    logged = []
    legacy_links(str(rootfs), logged.append)
    assert os.readlink(rootfs / "lxc.env") == "host/lxc.env"
    assert os.readlink(rootfs / ".time-status") == "host/.time-status"
    assert outside.read_text() == "host file\n" and logged == []
    legacy_links(str(rootfs), logged.append)  # again: nothing to do
    assert sorted(os.listdir(rootfs)) == [".time-status", "lxc.env"] and logged == []
    os.unlink(rootfs / "lxc.env")
    (rootfs / "lxc.env").mkdir()
    os.unlink(rootfs / ".time-status")
    os.mkfifo(str(rootfs / ".time-status"))
    legacy_links(str(rootfs), logged.append)
    assert os.path.isdir(rootfs / "lxc.env") and not os.path.islink(rootfs / ".time-status")
    assert len(logged) == 2 and "/lxc.env of the image is not a file or link" in logged[0]


def test_legacy_links_refuse_a_rootfs_that_is_a_link(tmp_path):
    from edgert.daemon.images import legacy_links
    (tmp_path / "real").mkdir()
    os.symlink(str(tmp_path / "real"), str(tmp_path / "rootfs"))
    with pytest.raises(OSError):
        legacy_links(str(tmp_path / "rootfs"), print)
    assert os.listdir(tmp_path / "real") == []


def test_scraper_reads_the_fallback_without_following_links(tmp_path):
    from edgert.host.metrics import Scraper
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    host = tmp_path / "host"
    host.mkdir()
    scraper = Scraper()
    fallback = (str(rootfs), "prometheus.prom")
    assert scraper.scrape("i", str(host / "prometheus.prom"), 1, (), fallback) == "missing"
    (rootfs / "prometheus.prom").write_text("a 1\n")
    assert scraper.scrape("i", str(host / "prometheus.prom"), 2, (), fallback) == "ok"
    assert b'a{instance="i"} 1' in scraper.exposition()
    (host / "prometheus.prom").write_text("b 2\n")  # /host's file wins
    assert scraper.scrape("i", str(host / "prometheus.prom"), 3, (), fallback) == "ok"
    assert b"b{" in scraper.exposition() and b"a{" not in scraper.exposition()
    os.unlink(host / "prometheus.prom")
    os.unlink(rootfs / "prometheus.prom")
    (tmp_path / "secret").write_text("secret 1\n")
    os.symlink(str(tmp_path / "secret"), str(rootfs / "prometheus.prom"))
    assert scraper.scrape("i", str(host / "prometheus.prom"), 4, (), fallback) == "invalid"
    assert "symbolic link" in scraper.status("i")["last_error"]
    assert b"secret" not in scraper.exposition()


def test_the_cli_takes_no_key_on_the_command_line(tmp_path):
    import io
    from edgert.client.commands import run
    out, err = io.StringIO(), io.StringIO()
    code = run(["api-key", "set", "reader", "SECRET-KEY-VALUE"], out, err,
               socket_path=str(tmp_path / "none.sock"))
    assert code == 2 and "api-key set ROLE (the key on stdin)" in err.getvalue()
    assert "SECRET-KEY-VALUE" not in err.getvalue() + out.getvalue()
