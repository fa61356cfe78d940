import pytest

from edgert import linuxconst as K
from edgert.errors import ConfigError, Unsupported
from edgert.oci import mountopts
from edgert.oci.mountopts import parse

# option -> (MS_* flag, set?)
FLAGS = [
    ("ro", K.MS_RDONLY, True), ("rw", K.MS_RDONLY, False),
    ("nosuid", K.MS_NOSUID, True), ("suid", K.MS_NOSUID, False),
    ("nodev", K.MS_NODEV, True), ("dev", K.MS_NODEV, False),
    ("noexec", K.MS_NOEXEC, True), ("exec", K.MS_NOEXEC, False),
    ("sync", K.MS_SYNCHRONOUS, True), ("async", K.MS_SYNCHRONOUS, False),
    ("dirsync", K.MS_DIRSYNC, True),
    ("remount", K.MS_REMOUNT, True),
    ("mand", K.MS_MANDLOCK, True), ("nomand", K.MS_MANDLOCK, False),
    ("noatime", K.MS_NOATIME, True), ("atime", K.MS_NOATIME, False),
    ("nodiratime", K.MS_NODIRATIME, True), ("diratime", K.MS_NODIRATIME, False),
    ("relatime", K.MS_RELATIME, True), ("norelatime", K.MS_RELATIME, False),
    ("strictatime", K.MS_STRICTATIME, True), ("nostrictatime", K.MS_STRICTATIME, False),
    ("iversion", K.MS_I_VERSION, True),
    ("noiversion", K.MS_I_VERSION, False),
    ("lazytime", K.MS_LAZYTIME, True), ("nolazytime", K.MS_LAZYTIME, False),
    ("silent", K.MS_SILENT, True), ("loud", K.MS_SILENT, False),
    ("nosymfollow", K.MS_NOSYMFOLLOW, True), ("symfollow", K.MS_NOSYMFOLLOW, False),
    ("acl", K.MS_POSIXACL, True), ("noacl", K.MS_POSIXACL, False),
]

PROPAGATION = [
    ("shared", K.MS_SHARED), ("rshared", K.MS_SHARED | K.MS_REC),
    ("slave", K.MS_SLAVE), ("rslave", K.MS_SLAVE | K.MS_REC),
    ("private", K.MS_PRIVATE), ("rprivate", K.MS_PRIVATE | K.MS_REC),
    ("unbindable", K.MS_UNBINDABLE), ("runbindable", K.MS_UNBINDABLE | K.MS_REC),
]

# option -> (MOUNT_ATTR_* flag, set?)
RECURSIVE = [
    ("rro", K.MOUNT_ATTR_RDONLY, True), ("rrw", K.MOUNT_ATTR_RDONLY, False),
    ("rnosuid", K.MOUNT_ATTR_NOSUID, True), ("rsuid", K.MOUNT_ATTR_NOSUID, False),
    ("rnodev", K.MOUNT_ATTR_NODEV, True), ("rdev", K.MOUNT_ATTR_NODEV, False),
    ("rnoexec", K.MOUNT_ATTR_NOEXEC, True), ("rexec", K.MOUNT_ATTR_NOEXEC, False),
    ("rnodiratime", K.MOUNT_ATTR_NODIRATIME, True), ("rdiratime", K.MOUNT_ATTR_NODIRATIME, False),
    ("rnosymfollow", K.MOUNT_ATTR_NOSYMFOLLOW, True),
    ("rsymfollow", K.MOUNT_ATTR_NOSYMFOLLOW, False),
]

# option -> atime mode it selects (always with MOUNT_ATTR__ATIME in attr_clr)
RECURSIVE_ATIME = [
    ("ratime", K.MOUNT_ATTR_RELATIME), ("rrelatime", K.MOUNT_ATTR_RELATIME),
    ("rnostrictatime", K.MOUNT_ATTR_RELATIME), ("rnoatime", K.MOUNT_ATTR_NOATIME),
    ("rstrictatime", K.MOUNT_ATTR_STRICTATIME), ("rnorelatime", K.MOUNT_ATTR_STRICTATIME),
]

# The runtime-spec's table of Linux mount options (config.md), except tmpcopyup.
SPEC_OPTIONS = """async atime bind defaults dev diratime dirsync exec iversion lazytime loud mand
    noatime nodev nodiratime noexec noiversion nolazytime nomand norelatime nostrictatime nosuid
    nosymfollow private ratime rbind rdev rdiratime relatime remount rexec rnoatime rnodiratime
    rnoexec rnorelatime rnostrictatime rnosuid rnosymfollow ro rprivate rrelatime rro rrw rshared
    rslave rstrictatime rsuid rsymfollow runbindable rw shared silent slave strictatime suid
    symfollow sync unbindable idmap ridmap""".split()


@pytest.mark.parametrize("opt,bit,on", FLAGS)
def test_flag_options(opt, bit, on):
    m = parse([opt], "tmpfs")
    assert (m.flags, m.clear) == ((bit, 0) if on else (0, bit))
    assert m.data == "" and m.propagation == [] and not m.bind


def test_defaults_changes_nothing():
    assert parse(["defaults"], "ext4") == parse([], "ext4")
    assert parse([], "ext4") == (0, 0, [], False, False, "", 0, 0, False, False, False)


@pytest.mark.parametrize("opt,flag", PROPAGATION)
def test_propagation_options(opt, flag):
    m = parse([opt], "bind")
    assert m.propagation == [flag] and m.flags == 0


def test_propagation_keeps_order_and_repeats():
    m = parse(["rslave", "bind", "private", "rshared"], "none")
    assert m.propagation == [K.MS_SLAVE | K.MS_REC, K.MS_PRIVATE, K.MS_SHARED | K.MS_REC]


def test_bind_and_rbind():
    assert parse(["bind"], "none")[3:5] == (True, False)
    assert parse(["rbind"], "none")[3:5] == (True, True)
    assert parse(["rbind"], "none").flags == 0  # bind and MS_REC are not in flags


def test_type_bind_is_a_bind_mount_without_the_option():
    m = parse(["ro"], "bind")
    assert m.bind and not m.recursive and m.flags == K.MS_RDONLY


@pytest.mark.parametrize("opt,bit,on", RECURSIVE)
def test_recursive_attribute_options(opt, bit, on):
    m = parse([opt], "bind")
    assert (m.rec_attr_set, m.rec_attr_clr) == ((bit, 0) if on else (0, bit))
    assert m.flags == 0 and m.clear == 0


@pytest.mark.parametrize("opt,mode", RECURSIVE_ATIME)
def test_recursive_atime_options(opt, mode):
    m = parse([opt], "bind")
    assert m.rec_attr_set == mode
    assert m.rec_attr_clr == K.MOUNT_ATTR__ATIME


def test_last_option_wins():
    assert parse(["ro", "rw"], "bind")[:2] == (0, K.MS_RDONLY)
    assert parse(["rw", "ro"], "bind")[:2] == (K.MS_RDONLY, 0)
    m = parse(["rro", "rrw", "rnosuid"], "bind")
    assert (m.rec_attr_set, m.rec_attr_clr) == (K.MOUNT_ATTR_NOSUID, K.MOUNT_ATTR_RDONLY)
    m = parse(["rnoatime", "rstrictatime"], "bind")
    assert m.rec_attr_set == K.MOUNT_ATTR_STRICTATIME


def test_atime_mode_mixes_with_other_attributes():
    m = parse(["rro", "rnoatime", "rnodev"], "bind")
    assert m.rec_attr_set == K.MOUNT_ATTR_RDONLY | K.MOUNT_ATTR_NOATIME | K.MOUNT_ATTR_NODEV
    assert m.rec_attr_clr == K.MOUNT_ATTR__ATIME


def test_filesystem_specific_options_become_data_in_order():
    m = parse(["nosuid", "strictatime", "mode=755", "size=65536k"], "tmpfs")
    assert m.data == "mode=755,size=65536k"
    assert m.flags == K.MS_NOSUID | K.MS_STRICTATIME
    m = parse(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"], "devpts")
    assert m.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_idmap_options():
    m = parse(["rbind", "idmap"], "bind")
    assert m.idmap and not m.ridmap
    m = parse(["rbind", "ridmap"], "bind")
    assert m.idmap and m.ridmap
    assert "idmap" not in m.data


def test_podman_bind_mount():
    m = parse(["bind", "rprivate", "ro", "nosuid", "noexec", "nodev"], "bind")
    assert m.bind and not m.recursive
    assert m.flags == K.MS_RDONLY | K.MS_NOSUID | K.MS_NOEXEC | K.MS_NODEV
    assert m.propagation == [K.MS_PRIVATE | K.MS_REC]


def test_refused_options():
    with pytest.raises(Unsupported) as e:
        parse(["rw", "copy-symlink"], "tmpfs", "config.json: mounts[2].options")
    assert str(e.value).startswith("config.json: mounts[2].options: 'copy-symlink': ")


def test_tmpcopyup_is_for_tmpfs_only():
    assert parse(["tmpcopyup", "mode=755"], "tmpfs").copyup
    assert not parse(["mode=755"], "tmpfs").copyup
    assert not parse(["tmpcopyup"], "bind").copyup


def test_known_is_every_option_parse_accepts_without_data():
    for opt in mountopts.KNOWN:
        assert parse([opt], "none").data == "", opt
    assert list(mountopts.KNOWN) == sorted(mountopts.KNOWN)
    assert "tmpcopyup" in mountopts.KNOWN


def test_every_runtime_spec_option_is_known():
    assert set(SPEC_OPTIONS) <= set(mountopts.KNOWN)


def test_result_is_a_named_tuple():
    m = parse(["ro"], "bind")
    assert m._fields == ("flags", "clear", "propagation", "bind", "recursive", "data",
                         "rec_attr_set", "rec_attr_clr", "idmap", "ridmap", "copyup")
