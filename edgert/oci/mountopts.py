"""config.json mount options -> mount(2) flags, propagation and mount_setattr(2) attributes.

The runtime-spec's option strings mirror mount(8). A mount takes up to four
kinds of kernel calls, and ``parse`` sorts every option into one of them:

  mount(2) flags    ``flags`` to set, ``clear`` to keep off (a remount of a
                    bind mount must not inherit them), fs-specific ``data``
  propagation       ``propagation``: one mount(2) call per entry, in order
  recursive attrs   ``rec_attr_set`` / ``rec_attr_clr``: one
                    mount_setattr(AT_RECURSIVE) over the whole bind tree
  id mapping        ``idmap`` (and ``ridmap`` for the recursive form)

Later options override earlier ones, as with mount(8): "ro,rw" is read-write.
Unknown options are filesystem-specific and go to ``data`` unchanged.
"""


from ..errors import Unsupported
from .. import linuxconst as K
from ..record import record

MountOptions = record("MountOptions", (
    "flags",         # MS_* to set
    "clear",         # MS_* explicitly cleared ("rw", "suid", "dev", ...)
    "propagation",   # [MS_SHARED|MS_SLAVE|MS_PRIVATE|MS_UNBINDABLE, maybe | MS_REC], in order
    "bind",          # a bind mount ("bind", "rbind", or type "bind")
    "recursive",     # "rbind": MS_REC with the bind
    "data",          # comma-joined filesystem-specific options, "" if none
    "rec_attr_set",  # MOUNT_ATTR_* to set recursively
    "rec_attr_clr",  # MOUNT_ATTR_* to clear recursively
    "idmap",         # apply an id mapping ("idmap" or "ridmap")
    "ridmap",        # ... to the whole bind tree ("ridmap")
    "copyup",        # "tmpcopyup": fill a new tmpfs with what the image had at that path
))

# option -> (MS_* flag, True to set it / False to clear it); "defaults" changes nothing.
FLAG_OPTIONS = {
    "defaults": (0, True),
    "ro": (K.MS_RDONLY, True), "rw": (K.MS_RDONLY, False),
    "nosuid": (K.MS_NOSUID, True), "suid": (K.MS_NOSUID, False),
    "nodev": (K.MS_NODEV, True), "dev": (K.MS_NODEV, False),
    "noexec": (K.MS_NOEXEC, True), "exec": (K.MS_NOEXEC, False),
    "sync": (K.MS_SYNCHRONOUS, True), "async": (K.MS_SYNCHRONOUS, False),
    "dirsync": (K.MS_DIRSYNC, True),
    "remount": (K.MS_REMOUNT, True),
    "mand": (K.MS_MANDLOCK, True), "nomand": (K.MS_MANDLOCK, False),
    "noatime": (K.MS_NOATIME, True), "atime": (K.MS_NOATIME, False),
    "nodiratime": (K.MS_NODIRATIME, True), "diratime": (K.MS_NODIRATIME, False),
    "relatime": (K.MS_RELATIME, True), "norelatime": (K.MS_RELATIME, False),
    "strictatime": (K.MS_STRICTATIME, True), "nostrictatime": (K.MS_STRICTATIME, False),
    "iversion": (K.MS_I_VERSION, True), "noiversion": (K.MS_I_VERSION, False),
    "lazytime": (K.MS_LAZYTIME, True), "nolazytime": (K.MS_LAZYTIME, False),
    "silent": (K.MS_SILENT, True), "loud": (K.MS_SILENT, False),
    "nosymfollow": (K.MS_NOSYMFOLLOW, True), "symfollow": (K.MS_NOSYMFOLLOW, False),
    "acl": (K.MS_POSIXACL, True), "noacl": (K.MS_POSIXACL, False),
}

PROPAGATION_OPTIONS = {
    "shared": K.MS_SHARED, "rshared": K.MS_SHARED | K.MS_REC,
    "slave": K.MS_SLAVE, "rslave": K.MS_SLAVE | K.MS_REC,
    "private": K.MS_PRIVATE, "rprivate": K.MS_PRIVATE | K.MS_REC,
    "unbindable": K.MS_UNBINDABLE, "runbindable": K.MS_UNBINDABLE | K.MS_REC,
}

# option -> (MOUNT_ATTR_* flag, True to set it / False to clear it)
RECURSIVE_FLAG_OPTIONS = {
    "rro": (K.MOUNT_ATTR_RDONLY, True), "rrw": (K.MOUNT_ATTR_RDONLY, False),
    "rnosuid": (K.MOUNT_ATTR_NOSUID, True), "rsuid": (K.MOUNT_ATTR_NOSUID, False),
    "rnodev": (K.MOUNT_ATTR_NODEV, True), "rdev": (K.MOUNT_ATTR_NODEV, False),
    "rnoexec": (K.MOUNT_ATTR_NOEXEC, True), "rexec": (K.MOUNT_ATTR_NOEXEC, False),
    "rnodiratime": (K.MOUNT_ATTR_NODIRATIME, True), "rdiratime": (K.MOUNT_ATTR_NODIRATIME, False),
    "rnosymfollow": (K.MOUNT_ATTR_NOSYMFOLLOW, True),
    "rsymfollow": (K.MOUNT_ATTR_NOSYMFOLLOW, False),
}

# The atime mode is one 3-bit field for mount_setattr(2), changed by putting
# MOUNT_ATTR__ATIME in attr_clr and the new mode in attr_set. Without noatime
# or strictatime the kernel's default is relatime, so "ratime",
# "rnostrictatime" and "rrelatime" all select relatime, and "rnorelatime"
# (access times always updated) selects strictatime.
RECURSIVE_ATIME_OPTIONS = {
    "ratime": K.MOUNT_ATTR_RELATIME,
    "rrelatime": K.MOUNT_ATTR_RELATIME,
    "rnostrictatime": K.MOUNT_ATTR_RELATIME,
    "rnoatime": K.MOUNT_ATTR_NOATIME,
    "rstrictatime": K.MOUNT_ATTR_STRICTATIME,
    "rnorelatime": K.MOUNT_ATTR_STRICTATIME,
}

# Options other runtimes accept that edgert refuses rather than ignores.
UNSUPPORTED_OPTIONS = {
    "copy-symlink": "crun's copy-symlink extension is not supported by edgert: "
                    "bind-mount the symlink's target instead",
}

KNOWN = tuple(sorted(set(FLAG_OPTIONS) | set(PROPAGATION_OPTIONS) | set(RECURSIVE_FLAG_OPTIONS)
                     | set(RECURSIVE_ATIME_OPTIONS) | {"bind", "rbind", "idmap", "ridmap", "tmpcopyup"}))


def parse(options, mount_type, where="options"):
    """MountOptions for one mount's ``options`` list; ``where`` prefixes error messages.

    ``mount_type`` "bind" makes a bind mount even without a "bind" option, as
    engines write {"type": "bind", "options": ["rbind", ...]} and {"type": "bind"} alike.
    """
    flags = clear = attr_set = attr_clr = 0
    propagation = []
    data = []
    bind = mount_type == "bind"
    recursive = idmap = ridmap = copyup = False
    for opt in options:
        if opt in FLAG_OPTIONS:
            bit, on = FLAG_OPTIONS[opt]
            if on:
                flags, clear = flags | bit, clear & ~bit
            else:
                flags, clear = flags & ~bit, clear | bit
        elif opt in PROPAGATION_OPTIONS:
            propagation.append(PROPAGATION_OPTIONS[opt])
        elif opt == "bind":
            bind = True
        elif opt == "rbind":
            bind = recursive = True
        elif opt in RECURSIVE_FLAG_OPTIONS:
            bit, on = RECURSIVE_FLAG_OPTIONS[opt]
            if on:
                attr_set, attr_clr = attr_set | bit, attr_clr & ~bit
            else:
                attr_set, attr_clr = attr_set & ~bit, attr_clr | bit
        elif opt in RECURSIVE_ATIME_OPTIONS:
            attr_set = (attr_set & ~K.MOUNT_ATTR__ATIME) | RECURSIVE_ATIME_OPTIONS[opt]
            attr_clr |= K.MOUNT_ATTR__ATIME
        elif opt == "idmap":
            idmap = True
        elif opt == "ridmap":
            idmap = ridmap = True
        elif opt == "tmpcopyup":
            copyup = mount_type == "tmpfs"  # runc's meaning: it does nothing on other types
        elif opt in UNSUPPORTED_OPTIONS:
            raise Unsupported("%s: %r: %s" % (where, opt, UNSUPPORTED_OPTIONS[opt]))
        else:
            data.append(opt)
    return MountOptions(flags, clear, propagation, bind, recursive, ",".join(data),
                        attr_set, attr_clr, idmap, ridmap, copyup)
