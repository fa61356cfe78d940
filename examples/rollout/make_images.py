#!/usr/bin/python3
"""Builds the rollout example's images offline, from this machine's busybox-static:
web-v1.tar and web-v2.tar (a tiny web server that reports its version) and web-v3.tar (a
broken release that exits at once). Usage: make_images.py DIR"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from edgert import rootfs  # noqa: E402
from tests.helpers.ociarchive import write_oci_archive  # noqa: E402

SERVE = ("mkdir -p /www && echo \"web $RELEASE\" > /www/index.html && echo \"serving $RELEASE\""
         " && exec httpd -f -p 8080 -h /www")
RELEASES = {
    "web-v1.tar": ("1", SERVE),
    "web-v2.tar": ("2", SERVE),
    "web-v3.tar": ("3", "echo \"release 3: missing config, giving up\"; exit 1"),
}


def main(directory):
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, "busybox-rootfs")
    if not os.path.isdir(base):
        rootfs.build_busybox_rootfs(base)
    for name, (release, script) in RELEASES.items():
        write_oci_archive(base, os.path.join(directory, name), ref="localhost/example/web:" + release,
                          cmd=("/bin/sh", "-c", script),
                          env=("PATH=/bin:/sbin:/usr/bin:/usr/sbin", "RELEASE=" + release))
        print(os.path.join(directory, name))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/edgert-example")
