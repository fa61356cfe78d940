"""Images: references, registry pulls, content store, layer unpack, snapshots."""
