"""node_service_input documents for daemon tests."""


def service_input(name, image, **extra):
    from helpers.ociarchive import host_arch
    arch = {"arm": "armhf"}.get(host_arch(), host_arch())
    doc = {"name": name, "image_sources": [{"arch": arch, "image_reference": image}],
           "health_check": {"window_s": 2, "interval_s": 1}}
    doc.update(extra)
    return doc
