"""The DHCP client edge: a UDP socket on port 68 inside a container's network namespace,
the life cycle of ``dhcp.Client``, and applying the lease there (address, default route,
resolv.conf).

Receiving before we have an address works because the client asks for broadcast replies
(flag 0x8000) and the kernel delivers 255.255.255.255 to a socket bound to the device.
pyroute2 is imported only when a client starts: it costs the daemon megabytes.
"""

import errno
import os
import struct

from ..fsutil import atomic_write
from . import in_netns, udp_socket_on_device
from .dhcp import BROADCAST, SERVER_PORT, Client

RECEIVE_MAX = 1500


def _jitter():
    """The random -1..+1 s RFC 2131 adds to every retransmission delay."""
    return struct.unpack("!H", os.urandom(2))[0] / 32767.5 - 1.0


def _new_xid():
    return struct.unpack("!I", os.urandom(4))[0]


class DhcpClient:
    """Keeps a lease on ``ifname`` in ``netns_path``: ``on_lease(lease)`` after it is applied
    (bound or renewed), ``on_expire()`` after an expired or refused lease is removed."""

    def __init__(self, loop, netns_path, ifname, on_lease, on_expire, resolv_conf_path=None,
                 hostname=None):
        from pyroute2 import IPRoute
        self.loop = loop
        self.ifname = ifname
        self.on_lease = on_lease
        self.on_expire = on_expire
        self.resolv_conf_path = resolv_conf_path
        self.timer = None
        self.applied = None     # the lease whose address is on the interface
        self.ipr = in_netns(netns_path, IPRoute)
        try:
            found = self.ipr.link_lookup(ifname=ifname)
            if not found:
                raise OSError(errno.ENODEV, "no interface %s in %s" % (ifname, netns_path))
            self.index = found[0]
            self.ipr.link("set", index=self.index, state="up")
            chaddr = bytes.fromhex(self.ipr.get_links(self.index)[0]
                                   .get_attr("IFLA_ADDRESS").replace(":", ""))
            self.sock = udp_socket_on_device(netns_path, ifname, 68)
        except BaseException:
            self.ipr.close()
            raise
        self.logic = Client(chaddr, hostname, jitter=_jitter, new_xid=_new_xid)
        loop.add_reader(self.sock.fileno(), self._on_readable)
        self._act(self.logic.start(loop.time()))

    def close(self, remove_address=True):
        """Stops the client; the address stays unless ``remove_address``."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if remove_address:
            self._remove_address()
        self.ipr.close()

    def _on_readable(self, fd):
        while self.sock is not None:
            try:
                data, _ = self.sock.recvfrom(RECEIVE_MAX)
            except BlockingIOError:
                return
            except OSError as e:
                self.loop.log("DHCP client on %s: receive failed: %s" % (self.ifname, e))
                return
            self._act(self.logic.receive(data, self.loop.time()))

    def _on_timer(self):
        self.timer = None
        self._act(self.logic.tick(self.loop.time()))

    def _act(self, actions):
        for action in actions:
            kind = action[0]
            if kind == "send":
                self._send(action[1], action[2])
            elif kind in ("bound", "renewed"):
                self._apply(action[1])
                self.on_lease(action[1])
            elif kind == "expired":
                self._remove_address()
                self.on_expire()
            elif kind == "wait_until":
                if self.timer is not None:
                    self.timer.cancel()
                self.timer = self.loop.call_later(max(0.0, action[1] - self.loop.time()),
                                                  self._on_timer)

    def _send(self, payload, destination):
        address = "255.255.255.255" if destination == BROADCAST else destination
        try:
            self.sock.sendto(payload, (address, SERVER_PORT))
        except OSError as e:
            # retransmission covers a lost send; the lease timers go on regardless
            self.loop.log("DHCP client on %s: sending to %s failed: %s"
                          % (self.ifname, address, os.strerror(e.errno or 0)))

    def _apply(self, lease):
        old = self.applied
        if old is not None and (old["address"], old["prefix"]) != (lease["address"],
                                                                    lease["prefix"]):
            self._remove_address()
        if self.applied is None:
            self._netlink(self.ipr.addr, "add", index=self.index, address=lease["address"],
                          prefixlen=lease["prefix"])
        self.applied = lease
        if lease["router"]:
            self._netlink(self.ipr.route, "replace", dst="0.0.0.0/0", gateway=lease["router"],
                          oif=self.index)
        if self.resolv_conf_path and lease["dns"]:
            text = "".join("nameserver %s\n" % server for server in lease["dns"])
            try:
                atomic_write(self.resolv_conf_path,
                             "# written by edgert's DHCP client\n" + text)
            except OSError as e:
                self.loop.log("DHCP client on %s: writing %s failed: %s"
                              % (self.ifname, self.resolv_conf_path, e))

    def _remove_address(self):
        """Removing the address also removes the routes through it (the default route)."""
        lease, self.applied = self.applied, None
        if lease is not None:
            self._netlink(self.ipr.addr, "del", index=self.index, address=lease["address"],
                          prefixlen=lease["prefix"])

    def _netlink(self, call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except Exception as e:  # pyroute2's NetlinkError; EEXIST/ESRCH mean done already
            code = getattr(e, "code", None)
            if code not in (errno.EEXIST, errno.ESRCH, errno.EADDRNOTAVAIL):
                self.loop.log("DHCP client on %s: netlink %s %r failed: %s"
                              % (self.ifname, getattr(call, "__name__", "call"), args, e))
