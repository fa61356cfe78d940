#!/usr/bin/python3
"""Unpack benchmark: edgert vs tar -xzf vs umoci raw unpack vs umoci unpack, same 4 layers.

Run by hand, as root: ``tests/bench/bench_unpack.py [--rounds 5] [--work DIR]``.
Builds (once, cached in --work) a ~190 MB, 4-layer, ~11.5k-file image from this machine's
/usr/lib/python3.11, /usr/lib/python3, /usr/share/{vim,perl,i18n,zoneinfo,perl5} as gzip
layers plus an OCI layout holding them, then times each tool extracting all four layers into
a fresh directory: one warm-up, then --rounds rounds rotating the order; medians are
printed with MB/s of uncompressed tar, CPU time (user+sys, children included: steadier than
wall time on a busy machine) and edgert's ratios. ``gzip -dc`` of the layers to /dev/null
is timed too (the floor for a single inflating core), and edgert with gzip inflated in its
own process instead of a child (what a single-CPU device gets).

Peak RSS of the edgert process (wait4) is printed for the image and for a single layer
holding one 512 MiB file: it must not grow with layer or file size.
"""

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "/usr/bin/python3"
GZIP_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYERS = [
    ["usr/lib/python3.11"],
    ["usr/lib/python3"],
    ["usr/share/vim", "usr/share/perl"],
    ["usr/share/i18n", "usr/share/zoneinfo", "usr/share/perl5"],
]

EDGERT_SCRIPT = """
import sys, json
sys.path.insert(0, %r)
from edgert.image.unpack import unpack_layers
layers = json.loads(sys.argv[2])
child = {"auto": None, "no": False}[sys.argv[3]] if len(sys.argv) > 3 else None
unpack_layers([tuple(l) for l in layers], sys.argv[1], inflate_in_child=child)
"""


def sha256_file(path, decompress=False):
    digest = hashlib.sha256()
    size = 0
    opener = gzip.open if decompress else open
    with opener(path, "rb") as f:
        while True:
            data = f.read(1 << 20)
            if not data:
                break
            digest.update(data)
            size += len(data)
    return "sha256:" + digest.hexdigest(), size


def build(work):
    """Layer blobs (cached) and an OCI layout; returns [(path, diff_id, tar_bytes)], layout."""
    layers = []
    for i, trees in enumerate(LAYERS, 1):
        blob = os.path.join(work, "layer%d.tar.gz" % i)
        if not os.path.exists(blob):
            print("building", blob, "from", " ".join("/" + t for t in trees), flush=True)
            with open(blob + ".tmp", "wb") as out:
                tar = subprocess.Popen(["tar", "--numeric-owner", "-cf", "-", "-C", "/"] + trees,
                                       stdout=subprocess.PIPE)
                subprocess.run(["gzip", "-6", "-n"], stdin=tar.stdout, stdout=out, check=True)
                if tar.wait():
                    raise SystemExit("tar failed building %s" % blob)
            os.rename(blob + ".tmp", blob)
        diff_id, size = sha256_file(blob, decompress=True)
        layers.append((blob, diff_id, size))
    layout = os.path.join(work, "oci")
    if not os.path.exists(layout):
        make_layout(layout, layers)
    return layers, layout


def _put_blob(layout, data=None, path=None):
    if path is not None:
        digest, size = sha256_file(path)
    else:
        digest, size = "sha256:" + hashlib.sha256(data).hexdigest(), len(data)
    target = os.path.join(layout, "blobs", "sha256", digest.split(":")[1])
    if path is not None:
        os.link(path, target)
    else:
        with open(target, "wb") as f:
            f.write(data)
    return {"digest": digest, "size": size}


def make_layout(layout, layers):
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]}}
    config_desc = _put_blob(layout, json.dumps(config).encode())
    config_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
    layer_descs = []
    for path, _, _ in layers:
        desc = _put_blob(layout, path=path)
        desc["mediaType"] = GZIP_MEDIA
        layer_descs.append(desc)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": layer_descs}
    manifest_desc = _put_blob(layout, json.dumps(manifest).encode())
    manifest_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": "bench"}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [manifest_desc]}, f)


def run(argv):
    """Wall time, CPU time (user+sys, with the command's own children) and peak RSS (KiB)
    of one command, from wait4 on that child; its output goes to /dev/null."""
    start = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit("failed (%d): %s" % (os.waitstatus_to_exitcode(status), " ".join(argv)))
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def commands(layers, layout, dest):
    blobs = [p for p, _, _ in layers]
    spec = json.dumps([[p, GZIP_MEDIA, d] for p, d, _ in layers])
    untar = " && ".join("tar -xzf %s -C %s" % (b, dest) for b in blobs)
    return {
        "edgert": (None, [PYTHON, "-c", EDGERT_SCRIPT % REPO, dest, spec]),
        "edgert, inflate in-process": (None, [PYTHON, "-c", EDGERT_SCRIPT % REPO, dest, spec,
                                              "no"]),
        "tar -xzf": (dest, ["sh", "-c", untar]),
        "umoci raw unpack": (None, ["umoci", "raw", "unpack", "--image", layout + ":bench", dest]),
        "umoci unpack": (None, ["umoci", "unpack", "--image", layout + ":bench", dest]),
        "gzip -dc (inflate only)": (None, ["sh", "-c", " && ".join(
            "gzip -dc %s >/dev/null" % b for b in blobs)]),
    }


def clean(dest):
    if os.path.lexists(dest):
        shutil.rmtree(dest)
    os.sync()  # the previous run's writeback must not land in the next one's time


def big_file_rss(work):
    """Peak RSS of edgert applying one layer that holds a single 512 MiB file."""
    blob = os.path.join(work, "bigfile.tar.gz")
    if not os.path.exists(blob):
        size = 512 << 20
        import tarfile
        info = tarfile.TarInfo("big")
        info.size = size
        with gzip.open(blob + ".tmp", "wb", 1) as f:
            f.write(info.tobuf(tarfile.GNU_FORMAT))
            block = os.urandom(1 << 16) * 16
            for _ in range(size // len(block)):
                f.write(block)
            f.write(bytes(1024))
        os.rename(blob + ".tmp", blob)
    dest = os.path.join(work, "dest-big")
    clean(dest)
    spec = json.dumps([[blob, GZIP_MEDIA]])
    elapsed, _, rss = run([PYTHON, "-c", EDGERT_SCRIPT % REPO, dest, spec])
    clean(dest)
    return elapsed, rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", default="/var/tmp/edgert-bench-unpack")
    parser.add_argument("--only", action="append", help="time only these commands")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    layers, layout = build(args.work)
    tar_bytes = sum(size for _, _, size in layers)
    gz_bytes = sum(os.path.getsize(p) for p, _, _ in layers)
    dest = os.path.join(args.work, "dest")
    cmds = commands(layers, layout, dest)
    if args.only:
        cmds = {k: v for k, v in cmds.items() if k in args.only}
    print("image: %d layers, %.1f MB uncompressed tar, %.1f MB gzip; %d CPUs; load %.2f"
          % (len(layers), tar_bytes / 1e6, gz_bytes / 1e6, os.cpu_count(), os.getloadavg()[0]))
    times = {name: [] for name in cmds}
    cpu = {name: [] for name in cmds}
    rss = []
    names = list(cmds)
    for round_no in range(args.rounds + 1):
        order = names[round_no % len(names):] + names[:round_no % len(names)]
        for name in order:
            mkdir, argv = cmds[name]
            clean(dest)
            if mkdir:
                os.mkdir(mkdir)
            elapsed, cpu_s, peak = run(argv)
            if round_no:  # round 0 warms the page cache
                times[name].append(elapsed)
                cpu[name].append(cpu_s)
                if name == "edgert":
                    rss.append(peak)
    clean(dest)
    print("%-28s %9s %9s %9s %9s %9s" % ("command", "median s", "min s", "max s", "MB/s",
                                          "CPU s"))
    for name, values in times.items():
        med = statistics.median(values)
        print("%-28s %9.3f %9.3f %9.3f %9.1f %9.3f" % (name, med, min(values), max(values),
                                                       tar_bytes / med / 1e6,
                                                       statistics.median(cpu[name])))
    if "edgert" in times:
        edgert = statistics.median(times["edgert"])
        for name, values in times.items():
            if name != "edgert":
                print("edgert speed vs %-28s %.2fx"
                      % (name + ":", statistics.median(values) / edgert))
        print("edgert peak RSS: %.1f MiB (median of rounds)" % (statistics.median(rss) / 1024))
        elapsed, big_rss = big_file_rss(args.work)
        print("edgert peak RSS, one layer with a 512 MiB file: %.1f MiB (%.2f s)"
              % (big_rss / 1024, elapsed))


if __name__ == "__main__":
    sys.exit(main())
