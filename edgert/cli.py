"""edgert: the device command line. ``edgert oci ...`` is the runc-compatible surface,
``edgert image ...`` manages images, ``edgert demo`` builds a busybox bundle offline and runs
it as a real container."""

import os
import sys

USAGE = """usage: edgert [--root DIR] [--run-dir DIR] [--socket PATH] COMMAND ...

local commands (no daemon needed):
  oci ...            the runc-compatible OCI command line (same as edgert-oci)
  image ...          images: pull, import, ls, inspect, rm, prune, df, unpack
  demo [--dir DIR]   build a busybox container from this machine's busybox-static and run it
  version            print the version

"""

DEMO_SCRIPT = ("echo \"hello from edgert: $(uname -m) container, hostname $(hostname), "
               "pid $$, init $(cat /proc/1/comm)\"; "
               "echo \"cgroup: $(cat /proc/self/cgroup | head -n 1)\"; id")


def demo(argv):
    from .errors import EdgertError
    from .runtime.container import Runtime
    directory = "/var/lib/edgert/demo"
    if argv[:1] == ["--dir"] and len(argv) == 2:
        directory = argv[1]
    elif argv:
        raise EdgertError("usage: edgert demo [--dir DIR]", code="usage")
    import json
    from . import rootfs
    from .fsutil import atomic_write
    from .oci.defaults import default_config
    bundle = os.path.abspath(directory)
    os.makedirs(bundle, exist_ok=True)
    rootfs_dir = os.path.join(bundle, "rootfs")
    if not os.path.isdir(rootfs_dir):
        rootfs.build_busybox_rootfs(rootfs_dir)
    config = default_config(args=["/bin/sh", "-c", DEMO_SCRIPT], hostname="edgert-demo")
    atomic_write(os.path.join(bundle, "config.json"), json.dumps(config, indent=2))
    rt = Runtime(os.environ.get("EDGERT_OCI_ROOT", "/run/edgert/oci"))
    return rt.run("edgert-demo-%d" % os.getpid(), bundle)


GLOBAL_OPTIONS = {"--root": "EDGERT_ROOT", "--run-dir": "EDGERT_RUN_DIR",
                  "--socket": "EDGERT_SOCKET"}


def take_global_options(argv):
    """--root, --run-dir and --socket before the command become the environment variables
    every part reads (the image store, the client's socket path)."""
    argv = list(argv)
    while argv and argv[0].partition("=")[0] in GLOBAL_OPTIONS:
        name, eq, value = argv.pop(0).partition("=")
        if not eq:
            if not argv:
                raise SystemExit("edgert: %s needs a value" % name)
            value = argv.pop(0)
        os.environ[GLOBAL_OPTIONS[name]] = os.path.abspath(value) if name != "--socket" \
            else value
    return argv


def main(argv):
    from .errors import EdgertError
    argv = take_global_options(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        from .client.commands import USAGE as DAEMON_USAGE
        sys.stdout.write(USAGE + DAEMON_USAGE.partition("\n\n")[2])
        return 0 if argv else 2
    if argv[0] == "console":
        from .client.console import main as console_main
        return console_main(argv[1:])
    from .client.commands import COMMANDS
    if argv[0] in COMMANDS:
        from .client.commands import run
        return run(argv)
    if argv[0] == "oci":
        from .oci.cli import main as oci_main
        return oci_main(argv[1:])
    if argv[0] == "image":
        from .image.cli import main as image_main
        return image_main(argv[1:])
    if argv[0] in ("version", "--version"):
        from . import __version__
        print("edgert %s" % __version__)
        return 0
    try:
        if argv[0] == "demo":
            return demo(argv[1:])
        raise EdgertError("unknown command %r (see edgert --help)" % argv[0], code="usage")
    except EdgertError as e:
        sys.stderr.write("edgert: %s\n" % e)
        return e.exit_code
