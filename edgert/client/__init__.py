"""Clients of edgertd: they speak docs/protocol.md and never import edgert.daemon."""
