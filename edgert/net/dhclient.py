"""The DHCP client edge: a UDP socket on port 68 inside a container's network namespace,
the life cycle of ``dhcp.Client``, and applying the lease there (address, default route,
resolv.conf).

Receiving before we have an address works because the client asks for broadcast replies
(flag 0x8000) and the kernel delivers 255.255.255.255 to a socket bound to the device.
The interface's hardware address and "up" go through ioctls on that socket (they act in the
socket's namespace); addresses and routes through pyroute2 in a forked child (``forked``),
so the daemon never loads pyroute2. Lease changes are applied one at a time, in order.
"""

import fcntl
import os
import struct

from ..fsutil import atomic_write
from . import forked, udp_socket_on_device
from .dhcp import BROADCAST, SERVER_PORT, Client

SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFHWADDR, IFF_UP = 0x8913, 0x8914, 0x8927, 0x1

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
                 hostname=None, write_resolv=None, worker=None, previous=None):
        self.loop = loop
        self.netns_path = netns_path
        self.ifname = ifname
        self.on_lease = on_lease
        self.on_expire = on_expire
        self.resolv_conf_path = resolv_conf_path
        # how resolv.conf is written: atomically by default; in place for a bind-mounted file
        self.write_resolv = write_resolv or (lambda path, text: atomic_write(path, text))
        self.timer = None
        self.applied = None     # the lease whose address is on the interface
        self.pending = []       # netlink changes waiting for the one in flight
        self.in_flight = False
        self.worker = worker    # a forked.Worker (the daemon's); None: a child per change
        self.sock = udp_socket_on_device(netns_path, ifname, 68)
        try:
            chaddr = _link_up_and_hwaddr(self.sock, ifname)
        except BaseException:
            self.sock.close()
            raise
        self.logic = Client(chaddr, hostname, jitter=_jitter, new_xid=_new_xid)
        # ``previous``: the lease the interface still holds (a restarted daemon), verified
        # by the server before anything changes (INIT-REBOOT)
        self.applied = previous
        loop.add_reader(self.sock.fileno(), self._on_readable)
        self._act(self.logic.start(loop.time(), previous))

    def close(self, remove_address=True):
        """Stops the client; the address stays unless ``remove_address``."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        self.pending = []
        lease, self.applied = self.applied, None
        if remove_address and lease is not None:
            from .setup import remove_lease
            try:
                forked.call(remove_lease, (self.netns_path, self.ifname, lease),
                            "DHCP client on %s" % self.ifname)
            except Exception as e:
                self.loop.log(str(e))

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
            elif kind == "expired":
                self._remove_address(self.on_expire)
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
        """Address and default route first, then resolv.conf, then ``on_lease``."""
        old, self.applied = self.applied, lease
        if old is not None and (old["address"], old["prefix"], old["router"]) == (
                lease["address"], lease["prefix"], lease["router"]):
            self._after_apply(lease)   # a renewal: the kernel holds it already
            return
        self._netlink("apply_lease", lease, lambda: self._after_apply(lease))

    def _after_apply(self, lease):
        if self.resolv_conf_path and lease["dns"]:
            text = "".join("nameserver %s\n" % server for server in lease["dns"])
            try:
                self.write_resolv(self.resolv_conf_path,
                                  "# written by edgert's DHCP client\n" + text)
            except OSError as e:
                self.loop.log("DHCP client on %s: writing %s failed: %s"
                              % (self.ifname, self.resolv_conf_path, e))
        self.on_lease(lease)

    def _remove_address(self, then):
        lease, self.applied = self.applied, None
        if lease is None:
            then()
            return
        self._netlink("remove_lease", lease, then)

    def _netlink(self, func, lease, then):
        """``setup.<func>(netns, ifname, lease)`` in a child, after the changes queued before
        it."""
        self.pending.append((func, lease, then))
        if not self.in_flight:
            self._next_change()

    def _next_change(self):
        if not self.pending or self.sock is None:
            self.in_flight = False
            return
        self.in_flight = True
        func, lease, then = self.pending.pop(0)

        def done(ok, value):
            if not ok:   # the next renewal applies it again
                self.loop.log("DHCP client on %s: %s" % (self.ifname, value))
            if self.sock is not None:
                then()
            self._next_change()
        args, what = (self.netns_path, self.ifname, lease), "DHCP client on %s" % self.ifname
        if self.worker is not None:
            self.worker.submit("edgert.net.setup:" + func, args, what, done)
        else:
            from . import setup
            forked.Job(self.loop, getattr(setup, func), args, what, done)


def _link_up_and_hwaddr(sock, ifname):
    """Sets ``ifname`` up and returns its MAC address, both in ``sock``'s namespace."""
    name = ifname.encode()
    request = struct.pack("16sH22x", name, 0)
    flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
    if not flags & IFF_UP:
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sH22x", name, flags | IFF_UP))
    reply = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("16s24x", name))
    return reply[18:24]  # struct ifreq: name[16], sockaddr{family(2), data[14]}
