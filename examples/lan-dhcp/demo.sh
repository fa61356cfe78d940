#!/bin/sh
# The README's LAN walk-through as one script: a container that routes a LAN. It gets a WAN
# address on the client bridge (WAN "allocated"), serves DHCP on its LAN bridge and NATs the
# LAN to its WAN; a LAN client (a network namespace with a veth into the LAN bridge) takes a
# lease with busybox udhcpc and fetches a page from a stand-in for the internet: a second
# namespace, 198.51.100.2 (TEST-NET-2), behind this machine's own uplink veth. No traffic
# leaves the machine.
#
# Needs root, busybox, iproute2, nftables, and an edgertd running in this network namespace
# whose config has "wan_masquerade": true (EDGERT selects the CLI command, as in the rollout
# demo). Everything the script creates is removed when it ends, also on failure.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
images=${EDGERT_EXAMPLE_DIR:-/tmp/edgert-example}
edgert=${EDGERT:-edgert}
lan_bridge=${LAN_BRIDGE:-edg-lan}
wan_bridge=${WAN_BRIDGE:-edg-wan}
client=edg-client-$$      # the LAN client's namespace
internet=edg-inet-$$      # the stand-in for the internet
work=$(mktemp -d)
arch=$(/usr/bin/python3 -c 'import os; print({"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64le"}[os.uname().machine])')
made_bridges=""

cleanup() {
    set +e
    $edgert instance rm lan1 >/dev/null 2>&1
    $edgert service rm gw >/dev/null 2>&1
    [ -f "$work/httpd.pid" ] && kill "$(cat "$work/httpd.pid")" 2>/dev/null
    ip netns del "$client" 2>/dev/null
    ip netns del "$internet" 2>/dev/null      # its veth's other end (edg-up0) goes with it
    for bridge in $made_bridges; do ip link del "$bridge"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

wait_for() {  # wait_for WHAT COMMAND...: up to 30 s
    what=$1; shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 60 ] || { echo "timed out waiting for $what" >&2; exit 1; }
        sleep 0.5
    done
}

$edgert settings | grep -q '"wan_masquerade": *true' || {
    echo "edgertd's config needs \"wan_masquerade\": true (see README.md)" >&2; exit 1; }

echo "== bridges: $lan_bridge (the LAN, no address), $wan_bridge (10.77.0.1/24, client network)"
for bridge in "$lan_bridge" "$wan_bridge"; do
    if ! ip link show "$bridge" >/dev/null 2>&1; then
        ip link add "$bridge" type bridge
        made_bridges="$made_bridges $bridge"
    fi
    ip link set "$bridge" up
done
ip -4 addr show dev "$wan_bridge" | grep -q 'inet 10\.77\.0\.1/24' ||
    ip addr add 10.77.0.1/24 dev "$wan_bridge"
sysctl -qw net.ipv4.ip_forward=1

echo "== the internet's stand-in: 198.51.100.2, a web server, no route back to 10.77.0.0/24"
ip netns add "$internet"
ip link add edg-up0 type veth peer name up1 netns "$internet"
ip addr add 198.51.100.1/24 dev edg-up0
ip link set edg-up0 up
ip -n "$internet" addr add 198.51.100.2/24 dev up1
ip -n "$internet" link set up1 up
ip -n "$internet" link set lo up
mkdir "$work/www"
echo "hello from the internet" > "$work/www/index.html"
ip netns exec "$internet" busybox httpd -f -p 198.51.100.2:80 -h "$work/www" \
    </dev/null >/dev/null 2>&1 &
echo $! > "$work/httpd.pid"

echo "== the router container: node service gw, instance lan1"
/usr/bin/python3 "$here/../rollout/make_images.py" "$images" >/dev/null
$edgert service import - <<JSON
{"name": "gw",
 "image_sources": [{"arch": "$arch", "image_reference": "oci-archive:$images/web-v1.tar"}],
 "network_config": {"wan_configure_network": "allocated", "wan_interface": {"host": "$wan_bridge"},
                    "lan_configure_network": "dhcp", "lan_interfaces": [{"host": "$lan_bridge"}],
                    "access_provided_subnet": "10.190.0.1/16",
                    "dhcp_range_template": "10.190.0.1/24", "masquerade": true}}
JSON
$edgert instance add gw --id lan1
running() { $edgert inspect lan1 | grep -q '^state: *running$'; }
wait_for "lan1 to run" running
$edgert inspect lan1 | grep -E '^(subnet|lan0|wan0):'

echo "== a LAN client: namespace $client, veth into $lan_bridge, busybox udhcpc"
ip netns add "$client"
ip link add edg-cl0 type veth peer name eth0 netns "$client"
ip link set edg-cl0 master "$lan_bridge" up
ip -n "$client" link set lo up
ip -n "$client" link set eth0 up
cat > "$work/udhcpc.sh" <<'SCRIPT'
#!/bin/sh
case "$1" in
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        ip route replace default via "${router%% *}" dev "$interface"
        echo "lease: $ip/$mask router $router dns ${dns:-none}" ;;
esac
SCRIPT
chmod +x "$work/udhcpc.sh"
ip netns exec "$client" busybox udhcpc -i eth0 -f -q -n -t 10 -T 1 -s "$work/udhcpc.sh" 2>&1 |
    grep '^lease:'
ip -n "$client" -4 addr show dev eth0 | grep inet
ip -n "$client" route show default

echo "== through the container's NAT and the host's masquerade"
ip netns exec "$client" busybox ping -c 2 -W 2 198.51.100.2
# (busybox-static's wget crashes in glibc's NSS on Debian hosts: nc speaks the HTTP)
printf 'GET / HTTP/1.0\r\n\r\n' | ip netns exec "$client" busybox nc -w 5 198.51.100.2 80
