#!/bin/sh
# Runs edgert's test suite as CI does: installs the test peers, builds the native parts in
# the tree, then pytest with the device interpreter. Extra arguments go to pytest.
# The full-system VM tests (marked slow, a minute per boot) run only with EDGERT_SLOW=1;
# CI boots them through cross/vm instead.
set -eu
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
PEERS="gcc libc6-dev make musl-tools busybox-static python3-dev python3-cffi python3-setuptools
 python3-msgpack python3-pyroute2 python3-pytest python3-hypothesis python3-zstandard zstd
 crun runc podman containerd iproute2 nftables iptables kmod faketime time prometheus
 linux-libc-dev-arm64-cross linux-libc-dev-armhf-cross linux-libc-dev-ppc64el-cross libseccomp2
 docker-registry apache2-utils openssl skopeo umoci qemu-user-static
 isc-dhcp-client dhcpcd-base dnsmasq-base"
missing=""
for p in $PEERS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
$PY native/build.py --inplace
make -s -C init
make -s -C tests/probe
set +e
if [ "${EDGERT_SLOW:-0}" = 1 ]; then
    $PY -m pytest "$@"
else
    $PY -m pytest -m "not slow" "$@"
fi
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
