"""linux.netDevices: move host interfaces (a CAN bus, a NIC) into the container and back.

The container's netns is pinned by a bind mount in its state directory, so
delete can still move virtual devices (vcan, dummy) back: the kernel destroys
those, instead of returning them, when their namespace dies.
Addresses do not survive a namespace move; they are re-added on the far side.
"""

import os

from .. import linuxconst as K
from ..errors import EdgertError
from ..fsutil import read_until_eof


def pin_netns(pid, state_dir):
    from .. import native
    path = os.path.join(state_dir, "netns")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    native.mount("/proc/%d/ns/net" % pid, path, None, K.MS_BIND, None)
    return path


def unpin_netns(path):
    from .. import native
    try:
        native.umount2(path, K.MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _in_netns(ns_path, func, *args):
    """Runs ``func(*args)`` in a forked child that joined the netns at ``ns_path``."""
    from .. import native
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
            native.setns(fd, K.CLONE_NEWNET)
            func(*args)
            os._exit(0)
        except BaseException as e:
            os.write(wfd, str(e).encode()[:2000])
            os._exit(1)
    os.close(wfd)
    try:
        msg = read_until_eof(rfd, 2000)
    finally:
        os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if status:
        raise EdgertError(msg.decode("utf-8", "replace") or "netns helper failed",
                          code="netdev")


def _link_state(ipr, index):
    addrs = []
    for msg in ipr.get_addr(index=index):
        if msg.get("scope", 0) == 0:
            addrs.append((msg.get_attr("IFA_ADDRESS"), msg["prefixlen"]))
    up = bool(ipr.get_links(index)[0]["flags"] & 1)
    return addrs, up


def _restore(ipr, name, addrs, up):
    idx = ipr.link_lookup(ifname=name)[0]
    for address, prefix in addrs:
        ipr.addr("add", index=idx, address=address, prefixlen=prefix)
    if up:
        ipr.link("set", index=idx, state="up")


def move_in(pid, net_devices, moved):
    """Moves each ``{host_name: {"name": new_name}}`` into pid's netns, appending every move
    made to ``moved`` as it happens (the caller's state), so a failure halfway can be undone."""
    from ..net.rtnl import IPRoute
    with IPRoute() as ipr:
        indexes = {}
        for host_name in net_devices:
            found = ipr.link_lookup(ifname=host_name)
            if not found:
                raise EdgertError("linux.netDevices: host interface %r does not exist" % host_name,
                                  code="netdev")
            indexes[host_name] = found[0]
        for host_name, spec in net_devices.items():
            name = (spec or {}).get("name") or host_name
            addrs, up = _link_state(ipr, indexes[host_name])
            ipr.link("set", index=indexes[host_name], net_ns_pid=pid, ifname=name)
            moved.append({"host_name": host_name, "name": name, "addrs": addrs, "up": up})
    ns = "/proc/%d/ns/net" % pid
    for m in moved:
        _in_netns(ns, _restore_in, m["name"], m["addrs"], m["up"])


def _restore_in(name, addrs, up):
    from ..net.rtnl import IPRoute
    with IPRoute() as ipr:
        _restore(ipr, name, [tuple(a) for a in addrs], up)


def move_out(pin, moved):
    """Moves the devices back to the host netns under their original names."""
    if not moved:
        return
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _in_netns(pin, _send_back, moved, host_ns)
    finally:
        os.close(host_ns)
    from ..net.rtnl import IPRoute
    with IPRoute() as ipr:
        for m in moved:
            _restore(ipr, m["host_name"], [tuple(a) for a in m["addrs"]], m["up"])


def _send_back(moved, host_ns):
    from ..net.rtnl import IPRoute
    with IPRoute() as ipr:
        for m in moved:
            found = ipr.link_lookup(ifname=m["name"])
            if found:
                ipr.link("set", index=found[0], net_ns_fd=host_ns, ifname=m["host_name"])
