"""edgertd's data model: node_service_input validation, imports, instances, selectors, apply."""

import copy
import json

import pytest

from edgert.daemon import model
from edgert.errors import ConfigError, EdgertError, NotFound

NOW = "2026-12-03T15:00:00Z"
LATER = "2026-12-04T15:00:00Z"


def minimal(**fields):
    doc = {"name": "web", "image_sources": [{"arch": "amd64", "image_reference": "busybox"}]}
    doc.update(fields)
    return doc


def error_of(doc):
    with pytest.raises(ConfigError) as info:
        model.validate_input(doc)
    return str(info.value)


# --- validate_input: the defaults ---------------------------------------------------------------

def test_minimal_input_gets_every_field_with_defaults():
    out = model.validate_input(minimal())
    assert out == {
        "name": "web",
        "image_sources": [{"arch": "amd64", "image_reference": "busybox", "authn": None}],
        "env": {}, "command": None, "working_dir": None, "user": None, "memory_limit": None,
        "cpu_limit": None, "pids_limit": None, "devices": [], "net_devices": [], "volumes": [],
        "health_check": {"window_s": 30, "probe": None, "interval_s": 5, "timeout_s": 3,
                         "failure_threshold": 3},
        "restart_policy": {"mode": "always", "min_uptime_s": 10, "backoff_initial_s": 1,
                           "backoff_max_s": 300, "backoff_factor": 2, "max_failures": 10},
        "api_key_roles": [], "rollout_strategy": "download-then-stop", "stop_grace_s": 10,
        "network_config": None,
    }


def test_validation_does_not_change_the_input():
    doc = minimal(memory_limit="64M", volumes=[{"name": "d", "path": "/data/"}])
    before = copy.deepcopy(doc)
    model.validate_input(doc)
    assert doc == before


FULL = minimal(
    image_sources=[
        {"arch": "x86_64", "image_reference": "ghcr.io/acme/web:1.2",
         "authn": {"registry_user": "acme", "registry_pw": "secret"}},
        {"arch": "arm/v7", "image_reference": "ghcr.io/acme/web:1.2"},
        {"arch": "aarch64", "image_reference": "ghcr.io/acme/web:1.2"},
    ],
    env={"A": "1", "MULTI_LINE": "x\ny\n", "_x9": ""},
    command=["/bin/web", "--port", "80"], working_dir="/srv//web/.", user="1000:1000",
    memory_limit="1.5G", cpu_limit=0.5, pids_limit=100,
    devices=[{"path": "/dev/ttyS0"}, {"path": "/dev/can0", "permissions": "wr"}],
    net_devices=[{"name": "can0"}],
    volumes=[{"name": "data", "path": "/data"}, {"name": "cfg", "path": "/etc/web",
                                                 "read_only": True}],
    health_check={"probe": {"type": "http", "port": 8080}, "window_s": 60},
    restart_policy={"mode": "on-failure", "backoff_factor": 1.5},
    api_key_roles=["read", "write"], rollout_strategy="stop-then-download", stop_grace_s=30,
    access_provided_subnet="10.190.0.1/16", dhcp_range_template="10.190.0.1/24",
    network_config={"lan_configure_network": "dhcp", "wan_configure_network": "dhcp",
                    "lan_interfaces": [{"host": "br-lan"}, {"host": "eth2", "mode": "macvlan"}],
                    "wan_interface": {"host": "br-wan"}, "masquerade": True},
)


def test_full_input_is_normalised():
    out = model.validate_input(FULL)
    assert [s["arch"] for s in out["image_sources"]] == ["amd64", "armhf", "arm64"]
    assert out["working_dir"] == "/srv/web"
    assert out["memory_limit"] == 1610612736
    assert out["devices"] == [{"path": "/dev/ttyS0", "permissions": "rw"},
                              {"path": "/dev/can0", "permissions": "rw"}]
    assert out["volumes"][1] == {"name": "cfg", "path": "/etc/web", "read_only": True}
    assert out["health_check"]["probe"] == {
        "type": "http", "port": 8080, "path": "/", "host": "127.0.0.1",
        "expect_status": [200, 399]}
    assert out["restart_policy"]["backoff_factor"] == 1.5
    net = out["network_config"]
    assert net == {
        "wan_configure_network": "dhcp", "lan_configure_network": "dhcp",
        "wan_interface": {"host": "br-wan", "mode": "veth", "name": "wan0"},
        "lan_interfaces": [{"host": "br-lan", "mode": "veth", "name": "lan0"},
                           {"host": "eth2", "mode": "macvlan", "name": "lan1"}],
        "access_provided_subnet": "10.190.0.1/16", "dhcp_range_template": "10.190.0.1/24",
        "dhcp_range": None, "masquerade": True,
    }
    assert "access_provided_subnet" not in out


def test_validation_is_idempotent():
    once = model.validate_input(FULL)
    assert model.validate_input(once) == once
    assert model.validate_input(json.loads(json.dumps(once))) == once


@pytest.mark.parametrize("text,size", [
    ("64M", 64 << 20), ("5120K", 5 << 20), ("1G", 1 << 30), ("1.5G", 3 << 29),
    ("64m", 64 << 20), ("64MB", 64 << 20), ("64MiB", 64 << 20), ("4194304", 4 << 20),
    ("0.5g", 1 << 29), ("1T", 1 << 40), (" 8M ", 8 << 20),
])
def test_memory_sizes(text, size):
    assert model.validate_input(minimal(memory_limit=text))["memory_limit"] == size


@pytest.mark.parametrize("text,size", [
    ("512K", 512 << 10), ("1", 1), ("0", 0), ("1.5k", 1536), ("1.0005K", 1024), ("2kib", 2048),
    ("3b", 3),
])
def test_parse_size(text, size):
    assert model.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "k", "1.", ".1", "1.5.5G", "1 G", "1e6", "0x10", "1KB2",
                                  "ib", "1iB", "-1", "+1", "1P", "１"])
def test_parse_size_refuses(text):
    assert model.parse_size(text) is None


@pytest.mark.parametrize("alias,arch", [
    ("amd64", "amd64"), ("x86_64", "amd64"), ("armhf", "armhf"), ("arm/v7", "armhf"),
    ("armv7", "armhf"), ("arm64", "arm64"), ("aarch64", "arm64"), ("arm64/v8", "arm64"),
    ("ppc64le", "ppc64le"),
])
def test_arch_aliases(alias, arch):
    doc = minimal(image_sources=[{"arch": alias, "image_reference": "busybox"}])
    assert model.validate_input(doc)["image_sources"][0]["arch"] == arch


@pytest.mark.parametrize("user", ["1000", "1000:1000", "nobody", "www-data:www-data", "0:adm"])
def test_users(user):
    assert model.validate_input(minimal(user=user))["user"] == user


def test_numeric_user_given_as_a_number():
    assert model.validate_input(minimal(user=1000))["user"] == "1000"


@pytest.mark.parametrize("probe,expected", [
    ({"type": "exec", "command": ["/bin/check"]}, {"type": "exec", "command": ["/bin/check"]}),
    ({"type": "tcp", "port": 22}, {"type": "tcp", "port": 22, "host": "127.0.0.1"}),
    ({"type": "tcp", "port": 22, "host": "::1"}, {"type": "tcp", "port": 22, "host": "::1"}),
    ({"type": "tcp", "port": 22, "host": "127.0.0.53"},
     {"type": "tcp", "port": 22, "host": "127.0.0.53"}),
    ({"type": "http", "port": 80, "path": "/healthz", "expect_status": [200, 200],
      "host": "localhost"},
     {"type": "http", "port": 80, "path": "/healthz", "expect_status": [200, 200],
      "host": "localhost"}),
    ({"type": "file", "path": "/run/ready"}, {"type": "file", "path": "/run/ready"}),
])
def test_probes(probe, expected):
    out = model.validate_input(minimal(health_check={"probe": probe}))
    assert out["health_check"]["probe"] == expected


def test_env_values_may_hold_anything_but_nul():
    env = {"A": "line1\nline2", "B": "'\"$(rm -rf /)`", "C": "ü"}
    assert model.validate_input(minimal(env=env))["env"] == env


# --- validate_input: hostile input --------------------------------------------------------------

P = "node_service_input."


@pytest.mark.parametrize("doc,message", [
    (None, "node_service_input: must be an object, got null"),
    ([], "node_service_input: must be an object, got []"),
    ({}, P + "name: required field is missing"),
    (minimal(extra=1), P + "extra: unknown field"),
    (minimal(name="Web"), P + "name: must be 1 to 63 lowercase"),
    (minimal(name="-web"), P + "name: must be 1 to 63 lowercase"),
    (minimal(name="a" * 64), P + "name: must be 1 to 63 lowercase"),
    (minimal(name=""), P + "name: must be 1 to 63 lowercase"),
    (minimal(name=5), P + "name: must be a string, got 5"),
    (minimal(name="a/b"), P + "name: must be 1 to 63"),
    (minimal(image_sources=[]), P + "image_sources: must have at least 1 entry"),
    (minimal(image_sources={}), P + "image_sources: must be an array"),
    (minimal(image_sources=[{"arch": "amd64", "image_reference": "busybox"},
                            {"arch": "armv9", "image_reference": "busybox"}]),
     P + 'image_sources[1].arch: unknown architecture "armv9" (use amd64, armhf, arm64 or '
         'ppc64le)'),
    (minimal(image_sources=[{"arch": "amd64", "image_reference": "busybox"},
                            {"arch": "x86_64", "image_reference": "alpine"}]),
     P + 'image_sources[1]: duplicate "amd64" (also in [0])'),
    (minimal(image_sources=[{"arch": "amd64"}]),
     P + "image_sources[0].image_reference: required field is missing"),
    (minimal(image_sources=[{"arch": "amd64", "image_reference": "Foo Bar"}]),
     P + "image_sources[0].image_reference: is not a valid image reference"),
    (minimal(image_sources=[{"arch": "amd64", "image_reference": "x" * 2000}]),
     P + "image_sources[0].image_reference: is 2000 characters long: the limit is 1024"),
    (minimal(image_sources=[{"arch": "amd64", "image_reference": "busybox",
                             "authn": {"registry_user": "u"}}]),
     P + "image_sources[0].authn.registry_pw: required field is missing"),
    (minimal(image_sources=[{"arch": "amd64", "image_reference": "busybox",
                             "authn": {"registry_user": "u", "registry_pw": 1}}]),
     P + "image_sources[0].authn.registry_pw: must be a string"),
    (minimal(image_sources=[{"arch": 64, "image_reference": "busybox"}]),
     P + "image_sources[0].arch: must be a string, got 64"),
    (minimal(image_sources=[{"arch": "amd64", "image_reference": "b"}] * 5),
     P + "image_sources: has 5 entries: the limit is 4"),
    (minimal(env={"1A": "x"}), P + 'env["1A"]: must be a variable name'),
    (minimal(env={"A-B": "x"}), P + 'env["A-B"]: must be a variable name'),
    (minimal(env={"": "x"}), P + 'env[""]: must be a variable name'),
    (minimal(env={"A": 1}), P + 'env["A"]: must be a string, got 1'),
    (minimal(env={"A": "a\0b"}), P + 'env["A"]: must not contain a NUL byte'),
    (minimal(env={"A": "x" * 70000}), P + 'env["A"]: is 70000 characters long'),
    (minimal(env={"V%d" % i: "" for i in range(300)}), P + "env: has 300 entries"),
    (minimal(env=["A=1"]), P + "env: must be an object"),
    (minimal(command=[]), P + "command: must have at least 1 entry"),
    (minimal(command="sh -c x"), P + "command: must be an array"),
    (minimal(command=["sh", 1]), P + "command[1]: must be a string, got 1"),
    (minimal(command=["x"] * 1000), P + "command: has 1000 entries: the limit is 256"),
    (minimal(working_dir="srv"), P + 'working_dir: must be an absolute path, got "srv"'),
    (minimal(working_dir="/srv/../etc"), P + "working_dir: must not contain \"..\""),
    (minimal(working_dir="/" + "a" * 5000), P + "working_dir: is 5001 characters long"),
    (minimal(user=""), P + "user: must be \"user\" or \"user:group\""),
    (minimal(user="a:b:c"), P + "user: must be \"user\" or \"user:group\""),
    (minimal(user="a b"), P + "user: must be \"user\" or \"user:group\""),
    (minimal(user=":5"), P + "user: must be \"user\" or \"user:group\""),
    (minimal(user="99999999999"), P + "user: id 99999999999 is out of range"),
    (minimal(user=-1), P + "user: must be a string, got -1"),
    (minimal(user=True), P + "user: must be a string, got true"),
    (minimal(memory_limit="1M"), P + "memory_limit: must be at least 4M (4194304 bytes), got "
                                     '"1M"'),
    (minimal(memory_limit=1000), P + "memory_limit: must be at least 4M"),
    (minimal(memory_limit="lots"), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit="1.G"), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit=".5G"), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit="-64M"), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit="64X"), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit="１２M"), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit=64.5e6), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit=True), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit="9" * 40), P + "memory_limit: must be a number of bytes or a size"),
    (minimal(memory_limit="99999999T"), P + "memory_limit: is too large"),
    (minimal(cpu_limit=0), P + "cpu_limit: must be a number of cores from 0.01 to 1024"),
    (minimal(cpu_limit=-1), P + "cpu_limit: must be a number of cores"),
    (minimal(cpu_limit="0.5"), P + "cpu_limit: must be a number of cores"),
    (minimal(cpu_limit=float("nan")), P + "cpu_limit: must be a number of cores"),
    (minimal(cpu_limit=float("inf")), P + "cpu_limit: must be a number of cores"),
    (minimal(cpu_limit=True), P + "cpu_limit: must be a number of cores"),
    (minimal(pids_limit=0), P + "pids_limit: must be a number of processes"),
    (minimal(pids_limit=1.0), P + "pids_limit: must be an integer"),
    (minimal(devices=[{"path": "/etc/passwd"}]), P + "devices[0].path: must be a device under "
                                                     "/dev/"),
    (minimal(devices=[{"path": "/dev/../etc/shadow"}]), P + "devices[0].path: must not contain"),
    (minimal(devices=[{"path": "/dev"}]), P + "devices[0].path: must be a device under /dev/"),
    (minimal(devices=[{"path": "/dev/tty", "permissions": "rwx"}]),
     P + 'devices[0].permissions: must be made of the letters r, w and m, got "rwx"'),
    (minimal(devices=[{"path": "/dev/tty", "permissions": ""}]),
     P + "devices[0].permissions: must be made of the letters r, w and m"),
    (minimal(devices=[{"path": "/dev/tty"}, {"path": "/dev//tty"}]),
     P + 'devices[1]: duplicate "/dev/tty" (also in [0])'),
    (minimal(devices=[{"path": "/dev/tty", "major": 5}]), P + "devices[0].major: unknown field"),
    (minimal(net_devices=[{"name": "a/b"}]), P + "net_devices[0].name: must be a network "
                                                 "interface name"),
    (minimal(net_devices=[{"name": "x" * 16}]), P + "net_devices[0].name: must be a network"),
    (minimal(volumes=[{"name": "d", "path": "/"}]), P + 'volumes[0].path: must not be "/"'),
    (minimal(volumes=[{"name": "d", "path": "/proc/x"}]),
     P + 'volumes[0].path: "/proc/x" is under /proc, which edgert mounts itself'),
    (minimal(volumes=[{"name": "d", "path": "/run"}]), P + "volumes[0].path: \"/run\" is under"),
    (minimal(volumes=[{"name": "d", "path": "/host/"}]), P + "volumes[0].path: \"/host\" is"),
    (minimal(volumes=[{"name": "d", "path": "/data/../dev/x"}]),
     P + "volumes[0].path: must not contain \"..\""),
    (minimal(volumes=[{"name": "d", "path": "data"}]), P + "volumes[0].path: must be an absolute"),
    (minimal(volumes=[{"name": "D", "path": "/d"}]), P + "volumes[0].name: must be 1 to 63"),
    (minimal(volumes=[{"name": "d", "path": "/a"}, {"name": "d", "path": "/b"}]),
     P + 'volumes[1]: duplicate "d" (also in [0])'),
    (minimal(volumes=[{"name": "a", "path": "/a"}, {"name": "b", "path": "/a/"}]),
     P + 'volumes[1].path: "/a" is also the path of volumes[0]'),
    (minimal(volumes=[{"name": "a", "path": "/a", "read_only": "yes"}]),
     P + "volumes[0].read_only: must be true or false"),
    (minimal(health_check={"probe": {"type": "tcp", "port": 80, "host": "10.0.0.1"}}),
     P + "health_check.probe.host: must be a loopback address"),
    (minimal(health_check={"probe": {"type": "http", "port": 80, "host": "example.com"}}),
     P + "health_check.probe.host: must be a loopback address"),
    (minimal(health_check={"probe": {"type": "tcp", "port": 0}}),
     P + "health_check.probe.port: must be an integer in 1..65535"),
    (minimal(health_check={"probe": {"type": "tcp"}}),
     P + "health_check.probe.port: required field is missing"),
    (minimal(health_check={"probe": {"type": "ping"}}),
     P + 'health_check.probe.type: must be one of exec, tcp, http, file, got "ping"'),
    (minimal(health_check={"probe": {}}), P + "health_check.probe.type: must be one of"),
    (minimal(health_check={"probe": "curl"}), P + "health_check.probe: must be an object"),
    (minimal(health_check={"probe": {"type": "exec", "command": []}}),
     P + "health_check.probe.command: must have at least 1 entry"),
    (minimal(health_check={"probe": {"type": "exec", "command": ["x"], "port": 1}}),
     P + "health_check.probe.port: unknown field"),
    (minimal(health_check={"probe": {"type": "http", "port": 80, "path": "health"}}),
     P + "health_check.probe.path: must start with '/'"),
    (minimal(health_check={"probe": {"type": "http", "port": 80, "expect_status": [399, 200]}}),
     P + "health_check.probe.expect_status: must be [lowest, highest]"),
    (minimal(health_check={"probe": {"type": "http", "port": 80, "expect_status": [200]}}),
     P + "health_check.probe.expect_status: must have at least 2 entries"),
    (minimal(health_check={"probe": {"type": "http", "port": 80, "expect_status": [99, 200]}}),
     P + "health_check.probe.expect_status[0]: must be an HTTP status"),
    (minimal(health_check={"probe": {"type": "file", "path": "ready"}}),
     P + "health_check.probe.path: must be an absolute path"),
    (minimal(health_check={"interval_s": 0}), P + "health_check.interval_s: must be 1 to 3600"),
    (minimal(health_check={"window": 5}), P + "health_check.window: unknown field"),
    (minimal(restart_policy={"mode": "sometimes"}), P + "restart_policy.mode: must be one of "
                                                        "always, on-failure, never"),
    (minimal(restart_policy={"backoff_initial_s": 10, "backoff_max_s": 5}),
     P + "restart_policy.backoff_max_s: must not be below backoff_initial_s (10), got 5"),
    (minimal(restart_policy={"backoff_factor": 0.5}),
     P + "restart_policy.backoff_factor: must be a number from 1 to 100"),
    (minimal(api_key_roles=["a b"]), P + "api_key_roles[0]: must be a non-empty role name"),
    (minimal(api_key_roles="admin"), P + "api_key_roles: must be an array"),
    (minimal(rollout_strategy="yolo"), P + "rollout_strategy: must be one of "
                                           "download-then-stop, stop-then-download"),
    (minimal(stop_grace_s=-1), P + "stop_grace_s: must be 0 to 3600 seconds"),
    (minimal(stop_grace_s="10"), P + "stop_grace_s: must be an integer"),
])
def test_invalid_inputs(doc, message):
    assert error_of(doc).startswith(message)


def test_long_values_are_cut_short_in_messages():
    message = error_of(minimal(name="x" * 100000))
    assert len(message) < 200


def test_deeply_nested_junk_is_refused_without_recursion():
    junk = []
    for _ in range(100000):
        junk = [junk]
    assert error_of(minimal(env=junk)) == (P + "env" + "[0]" * 15 +
                                           ": nested more than 16 levels deep")


@pytest.mark.parametrize("value,kind", [
    (b"busybox", "bytes"), (("a",), "tuple"), ({"a"}, "set"), (object(), "object"),
])
def test_non_json_values_are_refused(value, kind):
    """msgpack can carry bytes (and Python callers anything): messages must not crash on them."""
    doc = minimal(image_sources=[{"arch": "amd64", "image_reference": value}])
    assert error_of(doc) == (P + "image_sources[0].image_reference: must be JSON data, "
                             "got a value of type %s" % kind)


@pytest.mark.parametrize("doc,where", [
    (minimal(net_devices=[{"name": "eth\ud800"}]), "net_devices[0].name"),
    (minimal(env={"A": "x\udc80"}), "env.A"),
    (minimal(env={"\ud800": "x"}), "env"),
])
def test_lone_surrogates_are_refused(doc, where):
    """JSON can spell them ("\\ud800"); no file name, environment or exec can take them."""
    assert error_of(doc).startswith(P + where + ": holds a lone surrogate")


def test_non_string_keys_are_refused():
    assert error_of(minimal(env={1: "x"})) == (
        P + 'env: keys must be strings, got a key of type int')


def test_huge_lists_are_refused_before_their_entries_are_checked():
    message = error_of(minimal(volumes=[None] * 1000000))
    assert message == P + "volumes: has 1000000 entries: the limit is 32"


# --- network_config -----------------------------------------------------------------------------

N = P + "network_config."


def net(**fields):
    return minimal(network_config=fields)


LAN = [{"host": "br-lan"}]


@pytest.mark.parametrize("doc,message", [
    (net(lan_configure_network="static"), N + "lan_configure_network: must be one of disabled, "
                                              "allocated, dhcp"),
    (net(lan_configure_network="dhcp", lan_interfaces=LAN),
     N + 'access_provided_subnet: required when lan_configure_network is "dhcp"'),
    (net(lan_configure_network="allocated", access_provided_subnet="10.0.0.1/16"),
     N + "lan_interfaces: needs at least one interface"),
    (net(wan_configure_network="dhcp"), N + 'wan_interface: required when wan_configure_network'),
    (net(masquerade=True), N + "masquerade: needs both lan_configure_network and "
                               "wan_configure_network"),
    (net(masquerade=True, lan_configure_network="dhcp", lan_interfaces=LAN,
         access_provided_subnet="10.0.0.1/16"), N + "masquerade: needs both"),
    (net(access_provided_subnet="10.0.0.1"), N + "access_provided_subnet: must be an IPv4 "
                                                 "address with a prefix length"),
    (net(access_provided_subnet="10.0.0.256/16"), N + "access_provided_subnet: must be an IPv4"),
    (net(access_provided_subnet="10.0.0.1/33"), N + "access_provided_subnet: must be an IPv4"),
    (net(access_provided_subnet="010.0.0.1/16"), N + "access_provided_subnet: must be an IPv4"),
    (net(access_provided_subnet="10.0.0/16"), N + "access_provided_subnet: must be an IPv4"),
    (net(access_provided_subnet="10.0.0.1/"), N + "access_provided_subnet: must be an IPv4"),
    (net(access_provided_subnet="10.0.0.1/-1"), N + "access_provided_subnet: must be an IPv4"),
    (net(access_provided_subnet="fd00::1/64"), N + "access_provided_subnet: must be an IPv4"),
    (net(access_provided_subnet="10.0.0.1/16 "), N + "access_provided_subnet: must be an IPv4"),
    (net(access_provided_subnet=167772161), N + "access_provided_subnet: must be a string"),
    (net(dhcp_range="10.0.0.1/24"), N + "dhcp_range: needs access_provided_subnet"),
    (net(access_provided_subnet="10.190.0.1/16", dhcp_range_template="10.191.0.1/24"),
     N + "dhcp_range_template: 10.191.0.1/24 must lie inside access_provided_subnet "
         "10.190.0.1/16 and have a longer prefix"),
    (net(access_provided_subnet="10.190.0.1/16", dhcp_range="10.190.0.1/16"),
     N + "dhcp_range: 10.190.0.1/16 must lie inside"),
    (net(access_provided_subnet="10.190.0.1/16", dhcp_range="10.0.0.0/8"),
     N + "dhcp_range: 10.0.0.0/8 must lie inside"),
    (net(access_provided_subnet="10.190.0.1/16", dhcp_range="10.190.0.1/24",
         dhcp_range_template="10.190.0.1/24"),
     "node_service_input.network_config: dhcp_range_template and dhcp_range exclude each other"),
    (net(lan_interfaces=[{"host": "a"}, {"host": "b", "name": "lan0"}]),
     N + 'lan_interfaces[1].name: "lan0" is also the name of lan_interfaces[0]'),
    (net(wan_interface={"host": "a", "name": "x"}, lan_interfaces=[{"host": "b", "name": "x"}]),
     N + 'lan_interfaces[0].name: "x" is also the name of wan_interface'),
    (net(wan_interface={"host": "a", "mode": "ipvlan"}), N + "wan_interface.mode: must be one of "
                                                             "veth, macvlan"),
    (net(wan_interface={"mode": "veth"}), N + "wan_interface.host: required field is missing"),
    (net(lan_interfaces=[{"host": "x" * 20}]), N + "lan_interfaces[0].host: must be a network"),
    (net(lan_interfaces=[{"host": "e"}] * 9), N + "lan_interfaces: has 9 entries: the limit is 8"),
    (net(bridge="br0"), N + "bridge: unknown field"),
    (minimal(network_config="dhcp"), N[:-1] + ": must be an object"),
    (minimal(network_config={"access_provided_subnet": "10.0.0.1/8"},
             access_provided_subnet="10.0.0.1/16"),
     P + "access_provided_subnet: differs from network_config.access_provided_subnet: set it in "
         "one place"),
    (minimal(network_config=[], dhcp_range="10.0.0.1/24"), N[:-1] + ": must be an object"),
])
def test_invalid_network_configs(doc, message):
    assert error_of(doc).startswith(message)


def test_top_level_subnet_fields_move_into_network_config():
    doc = minimal(access_provided_subnet="10.190.0.1/16", dhcp_range="10.190.5.1/24",
                  network_config={"access_provided_subnet": "10.190.0.1/16"})
    net_out = model.validate_input(doc)["network_config"]
    assert net_out["access_provided_subnet"] == "10.190.0.1/16"
    assert net_out["dhcp_range"] == "10.190.5.1/24"
    only_top = model.validate_input(minimal(access_provided_subnet="10.190.0.1/16"))
    assert only_top["network_config"]["lan_configure_network"] == "disabled"


def test_default_network_is_all_disabled():
    assert model.default_network() == {
        "wan_configure_network": "disabled", "lan_configure_network": "disabled",
        "wan_interface": None, "lan_interfaces": [], "access_provided_subnet": None,
        "dhcp_range_template": None, "dhcp_range": None, "masquerade": False}


@pytest.mark.parametrize("text,parsed", [
    ("10.190.0.1/16", (0x0ABE0001, 16)), ("0.0.0.0/0", (0, 0)),
    ("255.255.255.255/32", (0xFFFFFFFF, 32)), ("192.168.1.0/24", (0xC0A80100, 24)),
])
def test_parse_cidr(text, parsed):
    assert model.parse_cidr(text) == parsed


@pytest.mark.parametrize("text", [
    "", "/", "1.2.3.4", "1.2.3.4/", "1.2.3/8", "1.2.3.4.5/8", "1.2.3.04/8", "1.2.3.4/033",
    "a.b.c.d/8", "1.2.3.4/8/9", " 1.2.3.4/8", "1.2.3.4/+8", "1..3.4/8", "1.2.3.4/１", None, 5,
])
def test_parse_cidr_refuses(text):
    assert model.parse_cidr(text) is None


def test_network_of():
    assert model.format_ipv4(model.network_of(0x0ABE0101, 16)) == "10.190.0.0"
    assert model.network_of(0x0ABE0101, 0) == 0
    assert model.network_of(0x0ABE0101, 32) == 0x0ABE0101


# --- imports ------------------------------------------------------------------------------------

NETWORKED = minimal(access_provided_subnet="10.190.0.1/16",
                    network_config={"lan_configure_network": "allocated",
                                    "lan_interfaces": [{"host": "br-lan"}]})


def test_first_import_creates_the_service():
    service, number = model.import_service(None, NETWORKED, NOW)
    assert number == 1
    assert service["name"] == "web" and service["created"] == NOW
    assert service["network_config"]["access_provided_subnet"] == "10.190.0.1/16"
    [version] = service["versions"]
    assert version["version"] == 1 and version["imported"] == NOW
    assert "name" not in version and "network_config" not in version
    assert version["image_sources"][0]["image_reference"] == "busybox"


def test_first_import_without_network_config_gets_the_default():
    service, _ = model.import_service(None, minimal(), NOW)
    assert service["network_config"] == model.default_network()


def test_later_imports_append_and_inherit_the_network():
    first, _ = model.import_service(None, NETWORKED, NOW)
    frozen = copy.deepcopy(first)
    second, number = model.import_service(first, minimal(env={"V": "2"}), LATER)
    assert number == 2
    assert first == frozen  # the old document is not changed
    assert second["network_config"] == first["network_config"]
    assert [v["version"] for v in second["versions"]] == [1, 2]
    assert second["versions"][1]["env"] == {"V": "2"}
    assert second["versions"][1]["imported"] == LATER
    assert second["created"] == NOW
    same, number = model.import_service(second, NETWORKED, LATER)  # same network: accepted
    assert number == 3


def test_a_different_network_config_is_refused_later():
    first, _ = model.import_service(None, NETWORKED, NOW)
    changed = copy.deepcopy(NETWORKED)
    changed["network_config"]["lan_configure_network"] = "dhcp"
    changed["network_config"]["masquerade"] = True
    changed["network_config"]["wan_configure_network"] = "dhcp"
    changed["network_config"]["wan_interface"] = {"host": "br-wan"}
    with pytest.raises(ConfigError) as info:
        model.import_service(first, changed, LATER)
    assert str(info.value) == (
        'node service "web": network_config is immutable after the first import (differs in: '
        "wan_configure_network, lan_configure_network, wan_interface, masquerade); import "
        "without network_config or create a new node service")


def test_a_top_level_subnet_counts_as_a_network_config():
    first, _ = model.import_service(None, minimal(), NOW)
    with pytest.raises(ConfigError, match="differs in: access_provided_subnet"):
        model.import_service(first, minimal(access_provided_subnet="10.0.0.1/8"), LATER)


def test_import_into_another_service_is_refused():
    first, _ = model.import_service(None, minimal(), NOW)
    with pytest.raises(ConfigError, match='"db" does not match node service "web"'):
        model.import_service(first, minimal(name="db"), LATER)


def test_import_numbers_after_the_highest_version():
    service, _ = model.import_service(None, minimal(), NOW)
    service["versions"] = [dict(service["versions"][0], version=7)]
    assert model.import_service(service, minimal(), LATER)[1] == 8


def test_find_version():
    service, _ = model.import_service(None, minimal(), NOW)
    service, _ = model.import_service(service, minimal(env={"V": "2"}), LATER)
    assert model.find_version(service, 2)["env"] == {"V": "2"}
    assert model.find_version(service, 1)["env"] == {}
    with pytest.raises(NotFound, match='node service "web" has no version 3 \\(latest: 2\\)'):
        model.find_version(service, 3)
    with pytest.raises(NotFound, match="latest: None"):
        model.find_version(dict(service, versions=[]), 1)


def test_invalid_import_is_refused():
    with pytest.raises(ConfigError, match="node_service_input.image_sources"):
        model.import_service(None, {"name": "web"}, NOW)


def test_redact_hides_registry_passwords_everywhere():
    service, _ = model.import_service(None, FULL, NOW)
    service, _ = model.import_service(service, FULL, LATER)
    shown = model.redact(service)
    text = json.dumps(shown)
    assert "secret" not in text
    assert shown["versions"][1]["image_sources"][0]["authn"] == {
        "registry_user": "acme", "registry_pw": "***"}
    assert service["versions"][1]["image_sources"][0]["authn"]["registry_pw"] == "secret"
    assert shown["versions"][0]["image_sources"][1]["authn"] is None


# --- instances and selectors --------------------------------------------------------------------

def test_new_instance():
    instance = model.new_instance("abcdefgh", "web", {"app.conf": "x=1\n"}, "version:3", NOW)
    assert instance == {
        "id": "abcdefgh", "node_service": "web", "config_maps": {"app.conf": "x=1\n"},
        "rollout_config": {"version_target_selector": "version:3"}, "desired": "running",
        "current_version": None, "good_version": None, "failed_versions": [], "rollout": None,
        "created": NOW}


def test_new_instance_takes_the_documented_selector_form_and_no_maps():
    instance = model.new_instance("a1", "web", None, {"value": None}, NOW)
    assert instance["rollout_config"] == {"version_target_selector": None}
    assert instance["config_maps"] == {}


@pytest.mark.parametrize("args,message", [
    (("ABC", "web", None, None), 'instance id "ABC": use 1 to 32 lowercase letters and digits'),
    (("abc", "Web", None, None), 'node service name "Web": must be 1 to 63'),
    (("abc", None, None, None), "node service name null: must be a string"),
    (("abc", "web", {"..": ""}, None), 'config_maps[".."]: the name must be a single file'),
    (("abc", "web", None, "latest"), 'version_target_selector "latest": expected null'),
])
def test_new_instance_refuses(args, message):
    with pytest.raises(ConfigError) as info:
        model.new_instance(*args, NOW)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("text", ["abcdefgh", "a", "0", "a" * 32, "x1y2z3"])
def test_instance_ids(text):
    assert model.check_instance_id(text) == text


@pytest.mark.parametrize("text", ["", "a" * 33, "ABCDEFGH", "abc-def", "abc def", "abç",
                                  "../etc", None, 12345678, ["a"], "١٢٣"])
def test_bad_instance_ids(text):
    with pytest.raises(ConfigError, match="use 1 to 32 lowercase letters and digits"):
        model.check_instance_id(text)


def test_instance_id_from_random_bytes():
    seen = set()
    for i in range(200):
        text = model.instance_id_from(i.to_bytes(8, "big") * 2)
        assert len(text) == 8 and model.check_instance_id(text) == text
        seen.add(text)
    assert len(seen) == 200
    assert model.instance_id_from(b"\xff" * 8) == model.instance_id_from(b"\xff" * 8 + b"\0")
    with pytest.raises(ValueError):
        model.instance_id_from(b"1234567")


@pytest.mark.parametrize("value,parsed", [
    (None, None), ("disabled", "disabled"), ("version:201", ("version", 201)),
    ("version:1", ("version", 1)), ({"value": "version:201"}, ("version", 201)),
    ({"value": None}, None), ({}, None), ({"value": "disabled"}, "disabled"),
    ("version:007", ("version", 7)),
])
def test_selectors(value, parsed):
    assert model.parse_selector(value) == parsed


@pytest.mark.parametrize("value", [
    "version:x", "version:", "version:0", "version:-1", "version:1.5", "version: 1",
    "version:1234567890", "latest", "", "Disabled", 5, True, [], {"value": 3},
    {"value": "version:1", "extra": 1}, {"val": "disabled"}, "version:١",
])
def test_bad_selectors(value):
    with pytest.raises(ConfigError, match='expected null, "version:N" or "disabled"'):
        model.parse_selector(value)


def test_selector_message_quotes_the_value():
    with pytest.raises(ConfigError) as info:
        model.parse_selector("version:x")
    assert str(info.value) == ('version_target_selector "version:x": expected null, '
                               '"version:N" or "disabled"')


@pytest.mark.parametrize("value", [None, "disabled", "version:12"])
def test_selector_text_round_trips(value):
    assert model.selector_text(model.parse_selector(value)) == value


# --- target_version -----------------------------------------------------------------------------

def service_with(*numbers):
    return {"name": "web", "versions": [{"version": n} for n in numbers]}


def instance_with(selector=None, current=None, failed=()):
    instance = model.new_instance("abc", "web", None, selector, NOW)
    instance["current_version"] = current
    instance["failed_versions"] = list(failed)
    return instance


@pytest.mark.parametrize("numbers,selector,current,failed,target,reason", [
    ((1, 2, 3), None, None, (), 3, "latest version 3"),
    ((3, 1, 2), None, 1, (), 3, "latest version 3"),
    ((1, 2, 3), None, 2, (3,), 2, "latest version 3 failed on this device: newest good "
                                  "version is 2"),
    ((1, 2, 3), None, 3, (3,), 2, "latest version 3 failed on this device: newest good "
                                  "version is 2"),
    ((1, 2, 3), None, 3, (3, 2), 1, "latest version 3 failed"),
    ((1, 2, 3), None, None, (1, 2, 3), None, 'every version of node service "web" failed'),
    ((), None, None, (), None, 'node service "web" has no version: import one'),
    ((1, 2), None, 5, (), 5, "stays on version 5: no newer version is available"),
    ((1, 2), None, 5, (5,), 2, "latest version 2"),
    ((1, 2, 3), "version:2", 3, (), 2, "pinned to version 2"),
    ((1, 2, 3), "version:2", None, (2,), None, "pinned version 2 failed on this device"),
    ((1, 2, 3), "version:9", None, (), None, 'pinned version 9 does not exist in node service '
                                             '"web" (latest: 3)'),
    ((), "version:9", None, (), None, "pinned version 9 does not exist in node service \"web\" "
                                      "(latest: none)"),
    ((1, 2, 3), "disabled", 2, (), None, "orchestration disabled"),
    ((1, 2, 3), {"value": "disabled"}, 2, (), None, "orchestration disabled"),
])
def test_target_version(numbers, selector, current, failed, target, reason):
    got, why = model.target_version(service_with(*numbers),
                                    instance_with(selector, current, failed))
    assert got == target
    assert why.startswith(reason)


# --- config maps --------------------------------------------------------------------------------

def test_config_maps_accepted():
    maps = {"app.conf": "a=1\n", "A_b-c.9": "", "x" * 128: "ü" * 100}
    out = model.validate_config_maps(maps)
    assert out == maps and out is not maps


@pytest.mark.parametrize("maps,message", [
    ([], "config_maps: must be an object of file name to text"),
    ("x", "config_maps: must be an object"),
    ({"": "x"}, 'config_maps[""]: the name must be a single file name'),
    ({".": "x"}, 'config_maps["."]: the name must be a single file name'),
    ({"..": "x"}, 'config_maps[".."]: the name must be'),
    ({"a/b": "x"}, 'config_maps["a/b"]: the name must be'),
    ({"a b": "x"}, 'config_maps["a b"]: the name must be'),
    ({"a\0": "x"}, 'config_maps["a\\u0000"]: the name must be'),
    ({"ü": "x"}, 'config_maps["\\u00fc"]: the name must be'),
    ({"x" * 129: "x"}, 'config_maps["xxxxxxxx'),
    ({"lxc.env": "x"}, 'config_maps["lxc.env"]: the host writes this file itself'),
    ({".time-status": "x"}, 'config_maps[".time-status"]: the host writes this file itself'),
    ({"prometheus.prom": "x"}, 'config_maps["prometheus.prom"]: the host writes this file'),
    ({"api-key": "x"}, 'config_maps["api-key"]: the host writes this file itself'),
    ({"a": b"x"}, 'config_maps.a: must be JSON data, got a value of type bytes'),
    ({1: "x"}, "config_maps: keys must be strings, got a key of type int"),
    ({"a": "\ud800"}, "config_maps.a: holds a lone surrogate (U+D800 at 0)"),
    ({"a": None}, 'config_maps["a"]: must be a string, got null'),
    ({"a": "x" * ((1 << 20) + 1)}, 'config_maps["a"]: is 1048577 bytes: the limit is 1048576'),
    ({"a": "ü" * ((1 << 19) + 1)}, 'config_maps["a"]: is 1048578 bytes'),
    ({"f%d" % i: "" for i in range(65)}, "config_maps: has 65 entries: the limit is 64"),
    ({"f%d" % i: "x" * (1 << 20) for i in range(5)}, "config_maps: hold 5242880 bytes in all"),
])
def test_config_maps_refused(maps, message):
    with pytest.raises(ConfigError) as info:
        model.validate_config_maps(maps)
    assert str(info.value).startswith(message)


# --- plan_apply ---------------------------------------------------------------------------------

def state_with(services=(), instances=(), settings=None):
    state = {"services": {}, "instances": {}}
    for doc in services:
        service, _ = model.import_service(None, doc, NOW)
        state["services"][service["name"]] = service
    for instance in instances:
        state["instances"][instance["id"]] = instance
    if settings is not None:
        state["settings"] = settings
    return state


def test_apply_on_an_empty_device():
    ops = model.plan_apply(state_with(), {
        "node_services": [minimal()],
        "instances": [{"id": "abcdefgh", "node_service": "web",
                       "config_maps": {"a.conf": "1"}, "version_target_selector":
                       {"value": "version:1"}}],
    })
    assert ops == [("import", model.validate_input(minimal())),
                   ("add_instance", "abcdefgh", "web", {"a.conf": "1"}, "version:1")]


def test_apply_of_the_current_state_does_nothing():
    instance = model.new_instance("abc", "web", {"a": "1"}, None, NOW)
    state = state_with([minimal()], [instance], settings={"update_windows": "daily 01:00-02:00"})
    desired = {"node_services": [minimal()], "settings": {"update_windows": "daily 01:00-02:00"},
               "instances": [{"id": "abc", "node_service": "web", "config_maps": {"a": "1"}}]}
    assert model.plan_apply(state, desired) == []
    assert model.plan_apply(state, {}) == []


def test_apply_imports_a_changed_service_and_updates_instances():
    instance = model.new_instance("abc", "web", {"a": "1"}, None, NOW)
    state = state_with([minimal()], [instance])
    desired = {"node_services": [minimal(env={"X": "1"})],
               "instances": [{"id": "abc", "node_service": "web", "config_maps": {"a": "2"},
                              "version_target_selector": "disabled"}]}
    ops = model.plan_apply(state, desired)
    assert ops == [("import", model.validate_input(minimal(env={"X": "1"}))),
                   ("set_config_maps", "abc", {"a": "2"}),
                   ("set_selector", "abc", "disabled")]


def test_apply_compares_selectors_in_either_stored_form():
    instance = model.new_instance("abc", "web", None, None, NOW)
    instance["rollout_config"]["version_target_selector"] = {"value": "version:2"}
    state = state_with([minimal()], [instance])
    desired = {"instances": [{"id": "abc", "node_service": "web",
                              "version_target_selector": "version:2"}]}
    assert model.plan_apply(state, desired) == []


def test_apply_keeps_absent_instances_unless_pruning():
    state = state_with([minimal()], [model.new_instance(i, "web", None, None, NOW)
                                     for i in ("b", "a", "c")])
    desired = {"instances": [{"id": "b", "node_service": "web"}]}
    assert model.plan_apply(state, desired) == []
    assert model.plan_apply(state, dict(desired, prune=True)) == [
        ("remove_instance", "a"), ("remove_instance", "c")]
    assert model.plan_apply(state, {"prune": True}) == [
        ("remove_instance", "a"), ("remove_instance", "b"), ("remove_instance", "c")]


def test_apply_orders_settings_imports_removals_additions_updates():
    state = state_with([minimal()], [model.new_instance("old", "web", None, None, NOW),
                                     model.new_instance("keep", "web", None, None, NOW)])
    ops = model.plan_apply(state, {
        "prune": True, "settings": {"x": 1},
        "node_services": [minimal(name="db")],
        "instances": [{"id": "keep", "node_service": "web", "config_maps": {"k": "v"}},
                      {"id": "new", "node_service": "db"}],
    })
    assert [op[0] for op in ops] == ["set_settings", "import", "remove_instance", "add_instance",
                                     "set_config_maps"]


def test_apply_checks_settings_with_the_given_function():
    def check(settings):
        if "bad" in settings:
            raise ConfigError("bad: unknown setting")
        return dict(settings, checked=True)
    assert model.plan_apply(state_with(), {"settings": {}}, check) == [
        ("set_settings", {"checked": True})]
    with pytest.raises(ConfigError, match="^settings: bad: unknown setting$"):
        model.plan_apply(state_with(), {"settings": {"bad": 1}}, check)

    def refuse(settings):
        raise EdgertError("setting syslog: expected true or false", code="bad-params")
    with pytest.raises(EdgertError, match="^settings: setting syslog: expected") as info:
        model.plan_apply(state_with(), {"settings": {"syslog": 1}}, refuse)
    assert info.value.code == "bad-params"


def test_apply_refuses_a_network_change():
    state = state_with([NETWORKED])
    with pytest.raises(ConfigError, match=r"^node_services\[0\]: node service \"web\": "
                                          "network_config is immutable"):
        model.plan_apply(state, {"node_services": [minimal(access_provided_subnet="10.0.0.1/8")]})


@pytest.mark.parametrize("desired,message", [
    ([], "the desired state must be an object"),
    ({"services": []}, "services: unknown field (use node_services, instances, settings, prune)"),
    ({"prune": "yes"}, "prune: must be true or false"),
    ({"node_services": {}}, "node_services: must be an array"),
    ({"node_services": [{}] * 65}, "node_services: has 65 entries: the limit is 64"),
    ({"node_services": [minimal(), {"name": "x"}]},
     "node_services[1].image_sources: required field is missing"),
    ({"node_services": [minimal(), minimal()]},
     'node_services[1].name: "web" is also the name of node_services[0]'),
    ({"instances": [{"id": "a", "node_service": "nope"}]},
     'instances[0].node_service: "nope" is neither in node_services nor imported'),
    ({"instances": [{"id": "A", "node_service": "web"}]},
     'instances[0].id: instance id "A": use 1 to 32'),
    ({"instances": [{"node_service": "web"}]}, "instances[0].id: required field is missing"),
    ({"instances": [{"id": "a"}]}, "instances[0].node_service: required field is missing"),
    ({"instances": ["a"]}, "instances[0]: must be an object"),
    ({"instances": [{"id": "a", "node_service": "web", "selector": None}]},
     "instances[0].selector: unknown field"),
    ({"instances": [{"id": "a", "node_service": "web", "version_target_selector": "v1"}]},
     'instances[0].version_target_selector: version_target_selector "v1": expected null'),
    ({"instances": [{"id": "a", "node_service": "web", "config_maps": {"lxc.env": ""}}]},
     'instances[0].config_maps["lxc.env"]: the host writes this file itself'),
    ({"instances": [{"id": "a", "node_service": "web"}, {"id": "a", "node_service": "web"}]},
     'instances[1].id: "a" is also the id of instances[0]'),
    ({"instances": [{"id": "old", "node_service": "db"}], "node_services": [minimal(name="db")]},
     'instances[0].node_service: instance "old" runs node service "web": an instance cannot '
     "change its node service"),
    ({"settings": []}, "settings: must be an object"),
    ({"instances": [{}] * 257}, "instances: has 257 entries: the limit is 256"),
])
def test_apply_refuses_invalid_documents(desired, message):
    state = state_with([minimal()], [model.new_instance("old", "web", None, None, NOW)])
    with pytest.raises(ConfigError) as info:
        model.plan_apply(state, desired)
    assert str(info.value).startswith(message)


def test_apply_returns_nothing_when_a_late_part_is_invalid():
    """Everything is checked before any operation is returned: no partial apply."""
    state = state_with()
    desired = {"node_services": [minimal()],
               "instances": [{"id": "ok", "node_service": "web"},
                             {"id": "BAD", "node_service": "web"}]}
    with pytest.raises(ConfigError):
        model.plan_apply(state, desired)


# --- fuzz-ish: every field of a full document replaced by junk ---------------------------------

JUNK = [None, 0, -1, 2 ** 70, 1.5, float("nan"), True, "", "x" * 5000, "\0", "../..", "\ud800",
        "ü", "a b", "/", [], [None], {}, {"a": 1}, b"x", "/dev/null", "10.0.0.1/8", "version:1"]


def paths_of(value, path=()):
    yield path
    if type(value) is dict:
        for key, v in value.items():
            yield from paths_of(v, path + (key,))
    elif type(value) is list:
        for i, v in enumerate(value):
            yield from paths_of(v, path + (i,))


def replaced(doc, path, junk):
    doc = copy.deepcopy(doc)
    if not path:
        return junk
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = junk
    return doc


@pytest.mark.parametrize("path", list(paths_of(FULL)), ids=lambda p: ".".join(map(str, p)))
def test_junk_anywhere_is_refused_cleanly_or_accepted_consistently(path):
    for junk in JUNK:
        doc = replaced(FULL, path, junk)
        try:
            out = model.validate_input(doc)
        except ConfigError as e:
            assert str(e).startswith("node_service_input"), e
            assert len(str(e)) < 400
        else:
            assert model.validate_input(out) == out
            json.dumps(out, allow_nan=False)
