#!/bin/sh
# The README's rollout walk-through as one script: a node service, an instance, an upgrade
# that is committed, and a broken release that is rolled back automatically.
# Needs root and a running edgertd (EDGERT_SOCKET / EDGERT_RUN_DIR select which one).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
images=${EDGERT_EXAMPLE_DIR:-/tmp/edgert-example}
edgert=${EDGERT:-edgert}
arch=$(/usr/bin/python3 -c 'import os; print({"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64le"}[os.uname().machine])')

/usr/bin/python3 "$here/make_images.py" "$images" >/dev/null

service() {  # service RELEASE: the node_service_input of one release
    cat <<JSON
{"name": "web",
 "image_sources": [{"arch": "$arch", "image_reference": "oci-archive:$images/web-v$1.tar"}],
 "memory_limit": "32M", "cpu_limit": 0.5,
 "volumes": [{"name": "data", "path": "/data"}],
 "health_check": {"window_s": 3, "interval_s": 1,
                  "probe": {"type": "http", "port": 8080, "path": "/"}}}
JSON
}

wait_for() {  # wait_for WHAT COMMAND...: up to 60 s
    what=$1; shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 120 ] || { echo "timed out waiting for $what" >&2; exit 1; }
        sleep 0.5
    done
}

good_is() { $edgert inspect web1 | grep -q "^good_version: *$1\$"; }
failed_has() { $edgert inspect web1 | grep -q "^failed_versions: *$1\$"; }

echo "== release 1"
service 1 | $edgert service import -
$edgert instance add web --id web1
wait_for "release 1 to be committed" good_is 1
$edgert exec web1 sh -c 'echo "written by release 1" > /data/note'
$edgert ps

echo "== release 2: rolled out, watched, committed"
service 2 | $edgert service import -
wait_for "release 2 to be committed" good_is 2
$edgert exec web1 wget -q -O - http://127.0.0.1:8080/

echo "== release 3 is broken: rolled back to 2, marked failed on this device"
service 3 | $edgert service import -
wait_for "release 3 to be marked failed" failed_has 3
wait_for "release 2 to run again" good_is 2
$edgert inspect web1
$edgert exec web1 cat /data/note
$edgert logs web1 | tail -n 5
