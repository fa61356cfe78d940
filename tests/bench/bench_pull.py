#!/usr/bin/python3
"""Pull from a local registry into a runnable rootfs: edgert vs skopeo copy + umoci raw unpack.

Run by hand, as root (not a pytest test). Starts Debian's docker-registry on 127.0.0.1, pushes the
unpack bench's 4-layer image (built and cached by bench_unpack.build), then times, in alternating
rounds with a fresh store each time:

  edgert pull   : edgert image pull docker://HOST/bench (layers land in snapshots: what a
                  container runs on, through overlay)
  edgert pull+unpack : the same plus edgert image unpack bench DEST (a flattened rootfs copied
                  from the snapshots, no second extraction: what umoci's output compares with)
  skopeo+umoci  : skopeo copy docker://HOST/bench oci:DIR  +  umoci raw unpack --image DIR DEST

and prints medians, MB/s of the compressed download and the ratios (target <= 1.0).
Each command starts after an untimed sync(2), so no command pays for writing back what the
one before it left in the page cache (edgert's pull ends with a syncfs of the store's
filesystem, which would otherwise flush umoci's output too).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, os.path.join(REPO, "tests"), REPO]

import bench_unpack  # noqa: E402
from helpers.registry import RegistryServer, skopeo_push  # noqa: E402

PYTHON = "/usr/bin/python3"
EDGERT = [PYTHON, "-I", "-c",
          "import sys; sys.path.insert(0, %r); from edgert.cli import main; "
          "sys.exit(main(sys.argv[1:]))" % REPO]


def timed(cmds):
    # edgert's pull ends with syncfs (its snapshots must survive a power cut), which would
    # also flush whatever the previous command left dirty on the same filesystem (umoci's
    # 190 MB rootfs): start each command with nothing dirty, untimed.
    os.sync()
    start = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", default="/var/tmp/edgert-bench-unpack")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    layers, layout = bench_unpack.build(args.work)
    gz_bytes = sum(os.path.getsize(p) for p, _, _ in layers)
    tmp = tempfile.mkdtemp(prefix="edgert-bench-pull-")
    registry = RegistryServer(os.path.join(tmp, "registry"), os.path.join(tmp, "storage"))
    try:
        skopeo_push(layout, "bench", registry.host, "bench:latest")
        ref = "%s/bench:latest" % registry.host
        samples = {"edgert pull": [], "edgert pull+unpack": [], "skopeo+umoci": []}
        for round_no in range(args.rounds):
            work = os.path.join(tmp, "round%d" % round_no)
            os.makedirs(work)
            runs = {
                "edgert": [
                    EDGERT + ["image", "--root", os.path.join(work, "store"), "pull", "--quiet",
                              "--tls-verify=false", "docker://" + ref],
                    EDGERT + ["image", "--root", os.path.join(work, "store"), "unpack", ref,
                              os.path.join(work, "edgert-rootfs")]],
                "skopeo+umoci": [
                    ["skopeo", "copy", "-q", "--src-tls-verify=false", "docker://" + ref,
                     "oci:%s:bench" % os.path.join(work, "oci")],
                    ["umoci", "raw", "unpack", "--image", os.path.join(work, "oci") + ":bench",
                     os.path.join(work, "umoci-rootfs")]],
            }
            order = list(runs) if round_no % 2 == 0 else list(reversed(runs))
            for name in order:
                if name == "edgert":
                    pull = timed(runs[name][:1])
                    samples["edgert pull"].append(pull)
                    samples["edgert pull+unpack"].append(pull + timed(runs[name][1:]))
                else:
                    samples[name].append(timed(runs[name]))
            shutil.rmtree(work)
        print("\n%-20s %9s %9s %10s" % ("command", "median", "min", "MB/s (gz)"))
        for name, values in samples.items():
            median = statistics.median(values)
            print("%-20s %8.2fs %8.2fs %10.1f" % (name, median, min(values),
                                                  gz_bytes / median / 1e6))
        peer = statistics.median(samples["skopeo+umoci"])
        for name in ("edgert pull", "edgert pull+unpack"):
            print("%-20s / (skopeo copy + umoci raw unpack)  %.2fx  (target <= 1.0)"
                  % (name, statistics.median(samples[name]) / peer))
        print("%d rounds, %.1f MB compressed in %d layers" % (args.rounds, gz_bytes / 1e6,
                                                              len(layers)))
    finally:
        registry.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
