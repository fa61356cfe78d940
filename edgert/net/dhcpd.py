"""The DHCP server edge: a UDP socket on port 67 inside a container's network namespace,
the lease logic of ``dhcp.Server``, and the lease file.

Replies to clients without an address go to 255.255.255.255:68 through the same socket:
it is bound to the LAN device, so the limited broadcast leaves through that device, and
every DHCP client accepts a broadcast reply. Unicast to the offered address (what RFC 2131
suggests when the broadcast flag is clear) would need an ARP entry for an address nobody
holds yet, i.e. a raw socket or an ARP table write; the RFC allows the broadcast instead.
"""

import errno
import json
import os

from ..fsutil import atomic_write
from . import udp_socket_on_device
from .dhcp import BROADCAST, CLIENT_PORT, SERVER_PORT, DhcpError

# a DHCP message fits one Ethernet frame; bigger datagrams are not DHCP
RECEIVE_MAX = 1500


class DhcpServer:
    """Serves ``server_logic`` (a dhcp.Server) on ``ifname`` in ``netns_path`` through
    ``loop``; leases are reloaded from ``lease_file`` at start and saved on every change."""

    def __init__(self, loop, netns_path, ifname, server_logic, lease_file):
        self.loop = loop
        self.ifname = ifname
        self.logic = server_logic
        self.lease_file = lease_file
        self.bad_packets = 0
        self._load()
        self.saved_revision = self.logic.revision
        self.sock = udp_socket_on_device(netns_path, ifname, SERVER_PORT)
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self):
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _load(self):
        try:
            with open(self.lease_file, "rb") as f:
                document = json.loads(f.read())
        except FileNotFoundError:
            return
        except ValueError as e:
            self.loop.log("DHCP leases in %s are not JSON (%s); starting with none"
                          % (self.lease_file, e))
            return
        try:
            self.logic.import_leases(document, self.loop.time())
        except DhcpError as e:
            self.loop.log("DHCP leases in %s: %s; starting with none" % (self.lease_file, e))

    def _save(self):
        document = self.logic.export_leases(self.loop.time())
        try:
            atomic_write(self.lease_file, json.dumps(document, sort_keys=True), 0o600)
        except OSError as e:
            # the clients still get their answers; the next change tries the write again
            self.loop.log("DHCP server on %s: saving leases to %s failed: %s"
                          % (self.ifname, self.lease_file, e))
            return
        self.saved_revision = self.logic.revision

    def _on_readable(self, fd):
        while self.sock is not None:
            try:
                data, _ = self.sock.recvfrom(RECEIVE_MAX)
            except BlockingIOError:
                return
            except OSError as e:
                self.loop.log("DHCP server on %s: receive failed: %s" % (self.ifname, e))
                return
            self._answer(data)

    def _answer(self, data):
        try:
            replies = self.logic.handle(data, self.loop.time())
        except DhcpError:
            self.bad_packets += 1   # hostile or broken senders on the LAN: count, go on
            return
        if self.logic.revision != self.saved_revision:
            # the lease is on disk before the client hears of it
            self._save()
        for payload, destination in replies:
            address = "255.255.255.255" if destination == BROADCAST else destination
            try:
                self.sock.sendto(payload, (address, CLIENT_PORT))
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.ENOBUFS):
                    self.loop.log("DHCP server on %s: sending to %s failed: %s"
                                  % (self.ifname, address, os.strerror(e.errno or 0)))
