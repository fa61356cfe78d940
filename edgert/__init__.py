"""edgert: a lightweight OCI container runtime for routers and edge devices."""

__version__ = "0.1.0"
OCI_VERSION = "1.2.0"
