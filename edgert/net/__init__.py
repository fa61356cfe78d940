"""Container networking: LAN subnets, addresses and the host side of container links."""
