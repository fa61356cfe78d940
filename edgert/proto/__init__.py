"""The control-socket protocol: framing (rpc) and the method schema (schema); pure core."""
