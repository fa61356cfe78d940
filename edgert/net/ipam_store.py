"""The device's record of instance subnets and WAN addresses (edge): one JSON file,
atomic writes.

``{"instances": {"<instance id>": {"service": "<name>", "subnet": "10.190.3.0/24",
"wan_address": "10.77.0.100/24"}}}`` (either key may be missing). An instance keeps both
until they are released (instance removal), so neither is handed out twice, also across
daemon restarts.
"""

import json

from ..errors import StateError
from ..fsutil import atomic_write
from . import ipam


class Allocations:
    def __init__(self, path):
        self.path = path
        self._instances = self._load()

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                doc = json.loads(f.read())
        except FileNotFoundError:
            return {}
        except ValueError as err:
            raise StateError("%s: subnet allocations unreadable (%s); restore the file or, if "
                             "no instance uses an allocated subnet, remove it" % (self.path, err))
        instances = doc.get("instances") if type(doc) is dict else None
        if type(instances) is not dict or not all(
                type(v) is dict and all(type(v.get(k, "")) is str for k in
                                        ("service", "subnet", "wan_address"))
                for v in instances.values()):
            raise StateError("%s: subnet allocations malformed (expected {\"instances\": {id: "
                             "{\"service\", \"subnet\", \"wan_address\"}}}); restore the file"
                             % self.path)
        return instances

    def _put(self, instance_id, entry):
        """Records ``entry``, saved; the memory stays as the file is when the save fails."""
        old = self._instances.get(instance_id)
        self._instances[instance_id] = entry
        try:
            self._save()
        except BaseException:
            if old is None:
                del self._instances[instance_id]
            else:
                self._instances[instance_id] = old
            raise

    def _save(self):
        atomic_write(self.path, json.dumps({"instances": self._instances}, indent=1,
                                           sort_keys=True) + "\n", 0o600)

    def subnet_of(self, instance_id):
        return (self._instances.get(instance_id) or {}).get("subnet")

    def by_subnet(self):
        """{subnet: instance id} of every allocation on the device."""
        return {v["subnet"]: k for k, v in self._instances.items() if v.get("subnet")}

    def wan_address_of(self, instance_id):
        return (self._instances.get(instance_id) or {}).get("wan_address")

    def wan_addresses(self):
        """{instance id: "a.b.c.d/p"} of every WAN "allocated" address on the device."""
        return {k: v["wan_address"] for k, v in self._instances.items()
                if v.get("wan_address")}

    def set_wan_address(self, instance_id, service, address):
        old = self._instances.get(instance_id)
        if (old or {}).get("wan_address") == address:
            return
        self._put(instance_id, dict(old or {"service": service}, wan_address=address))

    def allocate(self, instance_id, service, network_config, reserved=()):
        """The instance's subnet: the one it has, or a new one (saved before it is returned)."""
        have = self.subnet_of(instance_id)
        if have is not None:
            return have
        if network_config.get("dhcp_range_template") is None:
            raise StateError("node service \"%s\" has no dhcp_range_template: its instances "
                             "get no subnet of their own" % service)
        subnet = ipam.allocate(network_config["access_provided_subnet"],
                               network_config["dhcp_range_template"], self.by_subnet(),
                               reserved, service)
        self._put(instance_id, dict(self._instances.get(instance_id) or {}, service=service,
                                    subnet=subnet))
        return subnet

    def release(self, instance_id):
        """Frees the instance's subnet; True if it had one."""
        entry = self._instances.pop(instance_id, None)
        if entry is None:
            return False
        try:
            self._save()
        except BaseException:
            self._instances[instance_id] = entry
            raise
        return True
