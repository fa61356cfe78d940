"""Container networking: DHCP (pure core in dhcp.py, socket edges in dhcpd.py and dhclient.py)
and the helper that opens sockets inside a container's network namespace."""

import os
import socket

from .. import native
from ..linuxconst import CLONE_NEWNET

_home_netns = None


def _home_netns_fd():
    """The daemon's own network namespace, opened once: the way back after a setns."""
    global _home_netns
    if _home_netns is None:
        _home_netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    return _home_netns


def forget_home_netns():
    """In a forked child that closed the inherited fds: open the home namespace anew."""
    global _home_netns
    _home_netns = None


def in_netns(netns_path, make):
    """``make()`` run inside the network namespace at ``netns_path`` (a /proc/PID/ns/net or
    a /run/netns/NAME file): sockets it creates stay in that namespace for life."""
    home = _home_netns_fd()
    target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        native.setns(target, CLONE_NEWNET)
        try:
            return make()
        finally:
            native.setns(home, CLONE_NEWNET)
    finally:
        os.close(target)


def udp_socket_on_device(netns_path, ifname, port):
    """A non-blocking UDP socket inside ``netns_path``, bound to 0.0.0.0:``port`` and to the
    device ``ifname`` (SO_BINDTODEVICE), allowed to broadcast."""
    def make():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                             | socket.SOCK_CLOEXEC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
            sock.bind(("0.0.0.0", port))
        except BaseException:
            sock.close()
            raise
        return sock
    return in_netns(netns_path, make)
