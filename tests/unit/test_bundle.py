"""config.json of an instance: built from image config, version, instance and paths, and valid for
edgert's runtime (checked with the same validator edgert-oci uses)."""

import copy

import pytest

from edgert.daemon import bundle, model
from edgert.errors import ConfigError, NotFound
from edgert.oci import spec
from edgert.oci.defaults import PATH

NOW = "2026-12-03T15:00:00Z"
RUN = "/run/edgert/containers/abcdefgh"
PATHS = {
    "rootfs": RUN + "/rootfs",
    "host_dir": RUN + "/host",
    "cgroup": "/edgert/abcdefgh",
    "volumes": {"data": "/var/lib/edgert/volumes/abcdefgh/data",
                "cfg": "/var/lib/edgert/volumes/abcdefgh/cfg"},
    "devices": {"/dev/ttyS0": ("c", 4, 64, 0o660, 0, 20),
                "/dev/sda": ("b", 8, 0, 0o660, 0, 6),
                "/dev/fifo": ("p", 0, 0, 0o600, 0, 0)},
    "image": "ghcr.io/acme/web:1.2",
}
IMAGE = {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
         "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION=1.25", "EMPTY="],
         "WorkingDir": "/usr/share/nginx"}


def version_of(**fields):
    doc = {"name": "web", "image_sources": [{"arch": "amd64", "image_reference": "busybox"}]}
    doc.update(fields)
    service, number = model.import_service(None, doc, NOW)
    return service["versions"][-1]


INSTANCE = model.new_instance("abcdefgh", "web", None, None, NOW)


def build(version=None, image=IMAGE, paths=PATHS, user=(0, 0, ())):
    config = bundle.build_config(version or version_of(), INSTANCE, image, paths, user)
    validated = spec.validate(copy.deepcopy(config), "/run/edgert/oci/abcdefgh")
    return config, validated


def test_minimal_version_on_an_nginx_like_image():
    config, _ = build()
    process = config["process"]
    assert process["args"] == ["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]
    assert process["env"] == ["PATH=/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION=1.25",
                              "EMPTY="]
    assert process["cwd"] == "/usr/share/nginx"
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": []}
    assert config["hostname"] == "abcdefgh"
    assert config["root"] == {"path": RUN + "/rootfs", "readonly": False}
    assert config["linux"]["cgroupsPath"] == "/edgert/abcdefgh"
    assert config["annotations"] == {"edgert.instance": "abcdefgh", "edgert.version": "1",
                                     "edgert.service": "web"}
    assert config["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert config["linux"]["devices"] == []
    assert "netDevices" not in config["linux"]


def test_run_is_a_bounded_fresh_tmpfs_and_host_a_writable_noexec_bind():
    config, validated = build()
    by_destination = {m["destination"]: m for m in config["mounts"]}
    assert by_destination["/run"] == {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                                      "options": ["nosuid", "nodev", "mode=755", "size=16m"]}
    assert by_destination["/host"] == {"destination": "/host", "type": "bind",
                                       "source": RUN + "/host",
                                       "options": ["bind", "nosuid", "nodev", "noexec", "rw"]}
    assert [m["destination"] for m in config["mounts"]][-1] == "/host"
    assert len([m for m in config["mounts"] if m["destination"] == "/run"]) == 1


def test_command_overrides_entrypoint_and_cmd():
    config, _ = build(version_of(command=["/bin/sh", "-c", "exec web"]))
    assert config["process"]["args"] == ["/bin/sh", "-c", "exec web"]


@pytest.mark.parametrize("image,args", [
    ({"Cmd": ["sh"]}, ["sh"]),
    ({"Entrypoint": ["/init"]}, ["/init"]),
    ({"Entrypoint": ["/init"], "Cmd": None}, ["/init"]),
    ({"Entrypoint": [], "Cmd": ["a", "b"]}, ["a", "b"]),
])
def test_args_from_the_image(image, args):
    assert build(image=image)[0]["process"]["args"] == args


@pytest.mark.parametrize("image", [{}, None, {"Entrypoint": None, "Cmd": []}])
def test_no_command_anywhere(image):
    with pytest.raises(ConfigError) as info:
        build(image=image)
    assert str(info.value) == ('image ghcr.io/acme/web:1.2 has no Entrypoint or Cmd: set '
                               '"command" in the node service')


def test_no_command_names_the_service_without_an_image_path():
    paths = dict(PATHS)
    del paths["image"]
    with pytest.raises(ConfigError, match="image of node service web has no Entrypoint"):
        build(image={}, paths=paths)


@pytest.mark.parametrize("image,message", [
    ({"Entrypoint": "/init"}, "config.Entrypoint must be a list of strings"),
    ({"Cmd": [1]}, "config.Cmd must be a list of strings"),
    ({"Cmd": ["x"], "Env": "A=1"}, "config.Env must be a list of strings"),
    ({"Cmd": ["x"], "Env": ["NOVALUE"]}, "config.Env entry 'NOVALUE' is not KEY=value"),
    ({"Cmd": ["x"], "Env": ["=x"]}, "config.Env entry '=x' is not KEY=value"),
])
def test_broken_image_configs(image, message):
    with pytest.raises(ConfigError, match=message):
        build(image=image)


def test_version_env_overrides_the_image_and_keeps_order():
    config, _ = build(version_of(env={"NGINX_VERSION": "9", "NEW": "a\nb", "PATH": "/x"}))
    assert config["process"]["env"] == ["PATH=/x", "NGINX_VERSION=9", "EMPTY=", "NEW=a\nb"]


def test_default_path_when_nobody_sets_one():
    config, _ = build(version_of(env={"A": "1"}), image={"Cmd": ["sh"], "Env": ["B=2"]})
    assert config["process"]["env"] == [PATH, "B=2", "A=1"]


@pytest.mark.parametrize("working_dir,image_dir,cwd", [
    ("/srv", "/usr", "/srv"), (None, "/usr", "/usr"), (None, None, "/"), (None, "", "/"),
    (None, "app", "/app"),
])
def test_cwd(working_dir, image_dir, cwd):
    image = {"Cmd": ["sh"], "WorkingDir": image_dir}
    assert build(version_of(working_dir=working_dir), image=image)[0]["process"]["cwd"] == cwd


def test_limits():
    config, validated = build(version_of(memory_limit="64M", cpu_limit=0.5, pids_limit=100))
    resources = config["linux"]["resources"]
    assert resources["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    assert resources["cpu"] == {"quota": 50000, "period": 100000}
    assert resources["pids"] == {"limit": 100}
    assert validated["linux"]["resources"]["memory"]["limit"] == 64 << 20


@pytest.mark.parametrize("cores,quota", [(0.01, 1000), (1, 100000), (2.5, 250000),
                                         (0.333333, 33333)])
def test_cpu_quota(cores, quota):
    config, _ = build(version_of(cpu_limit=cores))
    assert config["linux"]["resources"]["cpu"]["quota"] == quota


def test_volumes_are_binds_in_order():
    config, validated = build(version_of(volumes=[
        {"name": "data", "path": "/data"}, {"name": "cfg", "path": "/etc/web", "read_only": True}]))
    volumes = [m for m in config["mounts"] if m["destination"] in ("/data", "/etc/web")]
    assert volumes == [
        {"destination": "/data", "type": "bind", "source": PATHS["volumes"]["data"],
         "options": ["bind", "nosuid", "nodev", "rw"]},
        {"destination": "/etc/web", "type": "bind", "source": PATHS["volumes"]["cfg"],
         "options": ["bind", "nosuid", "nodev", "ro"]},
    ]


def test_devices_get_a_node_and_a_cgroup_rule():
    config, validated = build(version_of(devices=[
        {"path": "/dev/ttyS0"}, {"path": "/dev/sda", "permissions": "r"},
        {"path": "/dev/fifo"}]))
    assert config["linux"]["devices"] == [
        {"path": "/dev/ttyS0", "type": "c", "major": 4, "minor": 64, "fileMode": 0o660,
         "uid": 0, "gid": 20},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o660,
         "uid": 0, "gid": 6},
        {"path": "/dev/fifo", "type": "p", "major": 0, "minor": 0, "fileMode": 0o600,
         "uid": 0, "gid": 0},
    ]
    assert config["linux"]["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 4, "minor": 64, "access": "rw"},
        {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"},
    ]


def test_a_missing_device_is_reported():
    with pytest.raises(NotFound, match="instance abcdefgh: device /dev/ttyUSB0 is not on this "
                                       "device"):
        build(version_of(devices=[{"path": "/dev/ttyUSB0"}]))


def test_net_devices_move_into_the_container():
    config, validated = build(version_of(net_devices=[{"name": "can0"}, {"name": "eth1"}]))
    assert config["linux"]["netDevices"] == {"can0": {}, "eth1": {}}


def test_network_namespace_new_or_joined():
    config, _ = build()
    assert {"type": "network"} in config["linux"]["namespaces"]
    config, _ = build(paths=dict(PATHS, netns="/run/netns/edgert-abcdefgh"))
    assert {"type": "network", "path": "/run/netns/edgert-abcdefgh"} in \
        config["linux"]["namespaces"]


def test_a_one_off_container_without_service_host_dir_or_cgroup():
    """edgert run: no node service, no /host, the runtime's default cgroup."""
    paths = {"rootfs": "rootfs", "volumes": {}, "host_dir": None, "cgroup": None,
             "devices": {}}
    config = bundle.build_config(version_of(), {"id": "run1"}, IMAGE, paths)
    spec.validate(copy.deepcopy(config), "/run/edgert/oci/run1")
    assert config["annotations"] == {"edgert.instance": "run1", "edgert.version": "1"}
    assert "cgroupsPath" not in config["linux"]
    assert "/host" not in [m["destination"] for m in config["mounts"]]
    with pytest.raises(ConfigError, match="image of container run1 has no Entrypoint"):
        bundle.build_config(version_of(), {"id": "run1"}, {}, paths)


def test_a_non_root_user_gets_no_effective_capabilities():
    config, _ = build(user=(1000, 1000, (27, 100)))
    assert config["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [27, 100]}
    assert config["process"]["capabilities"]["effective"] == []


def test_everything_at_once_validates():
    version = version_of(
        command=["/bin/web"], env={"A": "1"}, working_dir="/srv", memory_limit="1G",
        cpu_limit=4, pids_limit=4096, devices=[{"path": "/dev/ttyS0", "permissions": "rwm"}],
        net_devices=[{"name": "can0"}],
        volumes=[{"name": "data", "path": "/data"}, {"name": "cfg", "path": "/data/cfg",
                                                     "read_only": True}])
    config, validated = build(version, user=(33, 33, ()))
    assert validated["mounts"][-1]["destination"] == "/host"
    assert validated["process"]["args"] == ["/bin/web"]


def test_the_inputs_are_not_changed():
    version = version_of(volumes=[{"name": "data", "path": "/data"}])
    frozen = copy.deepcopy((version, INSTANCE, IMAGE, PATHS))
    build(version)
    assert (version, INSTANCE, IMAGE, PATHS) == frozen


# --- parse_user ---------------------------------------------------------------------------------

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
broken line
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
nginx:x:101:101:nginx user:/nonexistent:/bin/false
odd:x:abc:1::/:/bin/sh
"""
GROUP = """root:x:0:
daemon:x:1:
adm:x:4:nginx
www-data:x:33:nginx,other
nginx:x:101:
video:x:44:root,nginx
dup:x:4:nginx
bad:x:notanumber:nginx
"""


@pytest.mark.parametrize("user,expected", [
    (None, (0, 0, [44])), ("", (0, 0, [44])), ("root", (0, 0, [44])), ("0", (0, 0, [44])),
    ("nginx", (101, 101, [4, 33, 44])), ("101", (101, 101, [4, 33, 44])),
    ("nginx:nginx", (101, 101, [])), ("nginx:44", (101, 44, [])), ("www-data", (33, 33, [])),
    ("1000", (1000, 0, [])), ("1000:1000", (1000, 1000, [])), ("0:adm", (0, 4, [])),
    ("daemon", (1, 1, [])),
])
def test_parse_user(user, expected):
    assert bundle.parse_user(user, PASSWD, GROUP) == expected


@pytest.mark.parametrize("user,expected", [
    ("1000", (1000, 0, [])), ("1000:50", (1000, 50, [])), ("0", (0, 0, [])),
    (None, (0, 0, [])),
])
def test_numeric_users_need_no_files(user, expected):
    assert bundle.parse_user(user, None, None) == expected


@pytest.mark.parametrize("user,passwd,group,message", [
    ("nobody", PASSWD, GROUP, "user 'nobody': nobody is not in the image's /etc/passwd"),
    ("nginx", None, None, "user 'nginx': nginx is not in the image's /etc/passwd"),
    ("nginx:wheel", PASSWD, GROUP, "user 'nginx:wheel': group wheel is not in the image's "
                                   "/etc/group"),
    ("0:adm", PASSWD, None, "group adm is not in the image's /etc/group"),
    ("odd", PASSWD, GROUP, "the image's /etc/passwd entry has a bad uid or gid"),
    ("nginx:", PASSWD, GROUP, "expected \"user\" or \"user:group\""),
    (":0", PASSWD, GROUP, "expected \"user\" or \"user:group\""),
    ("4294967295", None, None, "4294967295 is not in the image's /etc/passwd"),
])
def test_parse_user_errors(user, passwd, group, message):
    with pytest.raises(ConfigError) as info:
        bundle.parse_user(user, passwd, group)
    assert message in str(info.value)


def test_parse_user_in_a_config():
    user = bundle.parse_user("nginx", PASSWD, GROUP)
    config, validated = build(user=user)
    assert validated["process"]["user"]["additionalGids"] == [4, 33, 44]
