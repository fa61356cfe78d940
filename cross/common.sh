# Shared by the cross/ scripts (sourced, bash): the arch table, the work dir, locks, and a
# private apt root that never touches the host's dpkg architectures or apt state.
# shellcheck disable=SC2034  # the variables set here are read by the scripts

# Failures inside $(...) stop the script too.
shopt -s inherit_errexit

CROSS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$CROSS_DIR")
WORK=${EDGERT_CROSS_WORK:-/var/tmp/edgert-cross}
ALL_ARCHES="amd64 armhf arm64 ppc64le"
# The device interpreter. Its cffi emits the shim's C and its 3.11 byte-compiles for every arch.
HOST_PY=/usr/bin/python3
# Package lists older than this are refreshed before resolving (seconds).
APT_MAX_AGE=${EDGERT_CROSS_APT_MAX_AGE:-86400}

say() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { say "error: $*"; exit 1; }

# arch_vars ARCH: sets DEB_ARCH, TRIPLET and QEMU_ARCH (qemu-$QEMU_ARCH-static) for ARCH.
arch_vars() {
    case $1 in
        amd64)   DEB_ARCH=amd64   TRIPLET=x86_64-linux-gnu      QEMU_ARCH=x86_64 ;;
        armhf)   DEB_ARCH=armhf   TRIPLET=arm-linux-gnueabihf   QEMU_ARCH=arm ;;
        arm64)   DEB_ARCH=arm64   TRIPLET=aarch64-linux-gnu     QEMU_ARCH=aarch64 ;;
        ppc64le) DEB_ARCH=ppc64el TRIPLET=powerpc64le-linux-gnu QEMU_ARCH=ppc64le ;;
        *) die "unknown arch '$1': use one of $ALL_ARCHES, or all" ;;
    esac
}

# arches_from_args ARG...: prints the arches named ("all" expands), each checked.
arches_from_args() {
    [ $# -gt 0 ] || die "no arch given: use one of $ALL_ARCHES, or all"
    local arg
    for arg in "$@"; do
        if [ "$arg" = all ]; then echo "$ALL_ARCHES"; else arch_vars "$arg"; echo "$arg"; fi
    done
}

# take_lock NAME: holds $WORK/locks/NAME until this process exits (parallel runs and the
# VM tier share the work dir).
take_lock() {
    mkdir -p "$WORK/locks"
    local fd
    exec {fd}>"$WORK/locks/$1"
    flock "$fd"
}

sha256_of() { sha256sum "$@" | cut -d' ' -f1; }

# --- binfmt_misc ----------------------------------------------------------------------------

BINFMT=/proc/sys/fs/binfmt_misc

# binfmt_register ARCH: a binfmt_misc entry of our own (Debian's qemu-user-static line, F
# flag included) so that ARCH programs can be exec'd, also in a chroot; removed at exit.
binfmt_register() {
    BINFMT_ENTRY=edgert-cross-$QEMU_ARCH
    local conf=/usr/lib/binfmt.d/qemu-$QEMU_ARCH.conf
    [ -r "$conf" ] || die "$conf missing: apt-get install qemu-user-static"
    take_lock "binfmt-$QEMU_ARCH"
    if [ ! -e "$BINFMT/register" ]; then
        mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc on $BINFMT"
    fi
    # Under the lock, an existing entry was left by a killed run.
    [ ! -e "$BINFMT/$BINFMT_ENTRY" ] || echo -1 >"$BINFMT/$BINFMT_ENTRY"
    grep -v '^#' "$conf" | sed "s/^:qemu-$QEMU_ARCH:/:$BINFMT_ENTRY:/" >"$BINFMT/register" ||
        die "cannot register $BINFMT_ENTRY in $BINFMT"
    trap binfmt_unregister EXIT
}

binfmt_unregister() {
    [ ! -e "$BINFMT/$BINFMT_ENTRY" ] || echo -1 >"$BINFMT/$BINFMT_ENTRY"
}

# --- private apt -------------------------------------------------------------------------------

APT_DIR=$WORK/apt
# Host sources and apt.conf.d (mirror, proxy) are used as set up; -c overrides what is ours.
apt_priv() { "$1" -c "$APT_DIR/apt.conf" -q "${@:2}"; }
# apt_arch DEB_ARCH TOOL ARG...: apt seeing only DEB_ARCH, with a cache of its own.
apt_arch() {
    apt_priv "$2" -o APT::Architecture="$1" -o APT::Architectures="$1" \
        -o Dir::Cache::pkgcache="$APT_DIR/cache/pkgcache-$1.bin" "${@:3}"
}

apt_init() {
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    [ -e "$APT_DIR/status" ] || : >"$APT_DIR/status"
    cat >"$APT_DIR/apt.conf.new" <<EOF
Dir::State "$APT_DIR";
Dir::State::Lists "$APT_DIR/lists";
Dir::State::status "$APT_DIR/status";
Dir::Cache "$APT_DIR/cache";
Dir::Cache::pkgcache "$APT_DIR/cache/pkgcache.bin";
Dir::Cache::srcpkgcache "";
APT::Architectures { "amd64"; "armhf"; "arm64"; "ppc64el"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
EOF
    mv "$APT_DIR/apt.conf.new" "$APT_DIR/apt.conf"
}

# apt_refresh [force]: updates the private lists when missing, old, or forced.
apt_refresh() {
    local stamp=$APT_DIR/lists/.updated
    if [ "${1:-}" != force ] && [ -e "$stamp" ] &&
        [ $(( $(date +%s) - $(stat -c %Y "$stamp") )) -lt "$APT_MAX_AGE" ]; then
        return 0
    fi
    say "updating the private package lists in $APT_DIR"
    apt_priv apt-get update >/dev/null || die "apt-get update (private root $APT_DIR) failed"
    touch "$stamp"
}

# closure ARCH SKIP ROOT...: the packages ROOT... need on ARCH (Depends and Pre-Depends; the
# first real alternative of an or-group), never entering a package named in SKIP.
closure() {
    local deb_arch=$1 skip=$2
    shift 2
    apt_arch "$deb_arch" apt-cache depends --recurse --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances "$@" |
        awk -v ROOTS="$*" -v SKIP="$skip" '
            /^[^ ]/ { pkg = $1; in_alt = 0; taken = 0; next }
            /^ [ |][A-Za-z]*Depends: / {
                if (!in_alt) taken = 0
                if (!taken && $2 !~ /^</) { deps[pkg] = deps[pkg] " " $2; taken = 1 }
                in_alt = (substr($0, 2, 1) == "|")
            }
            END {
                n = split(SKIP, s, " "); for (i = 1; i <= n; i++) skip[s[i]] = 1
                n = split(ROOTS, queue, " "); for (i = 1; i <= n; i++) seen[queue[i]] = 1
                for (i = 1; i <= n; i++) {
                    m = split(deps[queue[i]], d, " ")
                    for (j = 1; j <= m; j++)
                        if (!(d[j] in seen) && !(d[j] in skip)) { seen[d[j]] = 1; queue[++n] = d[j] }
                }
                for (p in seen) print p
            }' | sort
}

# manifest ARCH PKG...: "file size SHA256:hash" per .deb the private lists offer for PKG...
manifest() {
    local deb_arch=$1
    shift
    apt_arch "$deb_arch" apt-get --print-uris download "${@/%/:$deb_arch}" |
        awk '{ print $2, $3, $4 }' | sort
}

# verify_debs DIR MANIFEST: deletes the files in DIR whose size or hash differ from MANIFEST;
# prints the package names still missing.
verify_debs() {
    local dir=$1 file size hash
    while read -r file size hash; do
        if [ -e "$dir/$file" ] && [ "$(stat -c %s "$dir/$file")" = "$size" ] &&
            [ "SHA256:$(sha256_of "$dir/$file")" = "$hash" ]; then
            continue
        fi
        rm -f "$dir/$file"
        echo "${file%%_*}"
    done <"$2"
}

# fetch_debs ARCH DIR MANIFEST: makes DIR hold exactly the verified .debs of MANIFEST;
# fails (status 1, with a message) when apt cannot provide them.
fetch_debs() {
    local deb_arch=$1 dir=$2 list=$3 missing f
    mkdir -p "$dir"
    mapfile -t missing < <(verify_debs "$dir" "$list")
    if [ ${#missing[@]} -gt 0 ]; then
        if ! (cd "$dir" && apt_arch "$deb_arch" apt-get download "${missing[@]/%/:$deb_arch}" \
                >/dev/null); then
            say "apt-get download failed for: ${missing[*]}"
            return 1
        fi
        mapfile -t missing < <(verify_debs "$dir" "$list")
        if [ ${#missing[@]} -gt 0 ]; then
            say "downloaded .debs do not match the package lists: ${missing[*]}"
            return 1
        fi
    fi
    for f in "$dir"/*.deb; do
        [ -e "$f" ] || continue
        grep -q "^${f##*/} " "$list" || rm -f "$f"
    done
}
