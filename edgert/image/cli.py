"""``edgert image ...``: parse the verb's arguments, call pull.py/store.py, print results.

Output is made for a serial console: one short line per image, ``--json`` for programs.
"""

import os
import sys

from .. import jsonfast
from ..errors import EdgertError

USAGE = """usage: edgert image [--root DIR] COMMAND ...

commands:
  pull REF [--arch A] [--creds USER:PASS] [--authfile F] [--tls-verify=false]
           [--cert-dir D] [--quiet|--json]      fetch an image (docker://, oci:, oci-archive:,
                                                docker-archive:) and unpack its layers
  import REF [--name NAME] [--arch A] [--quiet|--json]
                                                add an oci:, oci-archive: or docker-archive: image
  ls [--json]                                   list images
  inspect IMAGE [--arch A]                      print an image's record and config as JSON
  rm IMAGE... [--arch A]                        remove images (content goes with prune)
  prune [--json]                                remove content no image or container uses
  df [--json]                                   show space used and reclaimable
  unpack IMAGE DEST [--arch A]                  write the flattened rootfs to DEST

A store holds one record per image name and architecture; inspect, rm and unpack choose
this machine's architecture unless --arch names another.

options for every command:
  --root DIR               the store (default /var/lib/edgert)
  --drop-compressed        after unpacking, delete compressed layers (keeps diff IDs)
"""

# option -> takes a value
_OPTIONS = {"--root": True, "--arch": True, "--creds": True, "--authfile": True,
            "--tls-verify": True, "--cert-dir": True, "--name": True, "--quiet": False,
            "-q": False, "--json": False, "--drop-compressed": False, "--help": False,
            "-h": False}


class UsageError(EdgertError):
    code = "usage"
    exit_code = 2


def parse_args(argv):
    """(options dict, positional list); ``--opt VALUE`` and ``--opt=VALUE`` both work."""
    options, positional = {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positional.extend(argv[i + 1:])
            break
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name not in _OPTIONS:
                raise UsageError("unknown option %r (see edgert image --help)" % name)
            if _OPTIONS[name] and not eq:
                i += 1
                if i == len(argv):
                    raise UsageError("option %s needs a value" % name)
                value = argv[i]
            elif not _OPTIONS[name] and eq:
                raise UsageError("option %s takes no value" % name)
            options[name.lstrip("-")] = value if _OPTIONS[name] else True
        else:
            positional.append(arg)
        i += 1
    return options, positional


def main(argv, stdout=None, stderr=None):
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        options, args = parse_args(argv)
        if not args or options.get("help") or options.get("h"):
            stdout.write(USAGE)
            return 0 if args or options else 2
        verb, args = args[0], args[1:]
        handler = _VERBS.get(verb)
        if handler is None:
            raise UsageError("unknown command %r (see edgert image --help)" % verb)
        return handler(options, args, stdout, stderr) or 0
    except EdgertError as e:
        stderr.write("edgert image: %s\n" % e)
        return e.exit_code
    except OSError as e:
        stderr.write("edgert image: %s\n" % _os_error(e))
        return 1
    except KeyboardInterrupt:
        stderr.write("edgert image: interrupted (a new pull resumes where this one stopped)\n")
        return 130


def _os_error(e):
    import errno
    text = e.strerror or str(e)
    if e.filename:
        text = "%s (%s)" % (text, e.filename)
    if e.errno == errno.ENOSPC:
        text += ": free space (edgert image prune) and run the command again; it resumes"
    elif e.errno in (errno.EACCES, errno.EPERM):
        text += ": run as root or choose a --root you can write"
    return text


def _store(options):
    from .store import DEFAULT_ROOT, Store
    root = (options.get("root") or os.environ.get("EDGERT_IMAGE_ROOT")
            or os.environ.get("EDGERT_ROOT") or DEFAULT_ROOT)

    def on_wait():
        sys.stderr.write("edgert image: waiting for another edgert using %s\n" % root)
        sys.stderr.flush()
    return Store(root, drop_compressed_after_unpack=bool(options.get("drop-compressed")),
                 on_wait=on_wait)


def _snapshots(store):
    from .snapshot import Snapshotter
    return Snapshotter(store.root)


def _progress(options, stdout, stderr):
    from .progress import Progress
    if options.get("json"):
        return Progress("json", stdout)
    if options.get("quiet") or options.get("q"):
        return Progress("quiet", stderr)
    return Progress(None, stderr)


def _want(args, count, usage):
    if len(args) != count:
        raise UsageError("usage: edgert image %s" % usage)


def _tls_verify(options):
    value = options.get("tls-verify", "true")
    if value not in ("true", "false"):
        raise UsageError("--tls-verify must be true or false, got %r" % value)
    return value == "true"


def cmd_pull(options, args, stdout, stderr):
    _want(args, 1, "pull REF [--arch A] [--creds USER:PASS] [--authfile F] "
                   "[--tls-verify=false] [--cert-dir D] [--quiet|--json]")
    from .pull import pull
    store = _store(options)
    progress = _progress(options, stdout, stderr)
    record = pull(store, args[0], options.get("arch"), options.get("creds"),
                  options.get("authfile"), _tls_verify(options), options.get("cert-dir"),
                  _snapshots(store), progress)
    if not options.get("json"):
        stdout.write(record.digest + "\n")


def cmd_import(options, args, stdout, stderr):
    _want(args, 1, "import oci:DIR[:TAG]|oci-archive:TAR[:TAG]|docker-archive:TAR [--name N]")
    from .archive import import_image
    store = _store(options)
    record = import_image(store, args[0], options.get("arch"), _snapshots(store),
                          _progress(options, stdout, stderr), name=options.get("name"))
    if not options.get("json"):
        stdout.write(record.digest + "\n")


def cmd_ls(options, args, stdout, stderr):
    _want(args, 0, "ls [--json]")
    store = _store(options)
    records = store.images()
    if options.get("json"):
        stdout.write(jsonfast.dumps([_summary(r, store) for r in records]) + "\n")
        return
    stdout.write("%-50s %-8s %-14s %s\n" % ("NAME", "ARCH", "DIGEST", "SIZE"))
    from .progress import human_bytes
    for r in records:
        stdout.write("%-50s %-8s %-14s %s\n" % (r.name, r.arch, r.digest[7:19],
                                                human_bytes(_size(r))))


def _size(record):
    return sum(layer["size"] for layer in record.layers)


def _summary(record, store):
    return {"name": record.name, "digest": record.digest, "arch": record.arch,
            "layers": len(record.layers), "size": _size(record), "created": record.created}


def cmd_inspect(options, args, stdout, stderr):
    _want(args, 1, "inspect IMAGE [--arch A]")
    from .manifest import MAX_CONFIG_SIZE
    store = _store(options)
    record = store.get_image(args[0], options.get("arch"))
    doc = record.as_dict()
    doc["image_config"] = jsonfast.loads(store.read_blob(record.config,
                                                         MAX_CONFIG_SIZE).decode("utf-8"))
    stdout.write(jsonfast.dumps_pretty(doc) + "\n")


def cmd_rm(options, args, stdout, stderr):
    if not args:
        raise UsageError("usage: edgert image rm IMAGE... [--arch A]")
    from .pull import remove
    for record in remove(_store(options), args, options.get("arch")):
        stdout.write("removed %s (%s)\n" % (record.name, record.arch))


def cmd_prune(options, args, stdout, stderr):
    _want(args, 0, "prune [--json]")
    store = _store(options)
    freed = store.prune(_snapshots(store))
    if options.get("json"):
        stdout.write(jsonfast.dumps(freed) + "\n")
        return
    from .progress import human_bytes
    stdout.write("removed %d blobs and %d snapshots, freed %s\n"
                 % (freed["blobs"], freed["snapshots"], human_bytes(freed["bytes"])))


def cmd_df(options, args, stdout, stderr):
    _want(args, 0, "df [--json]")
    store = _store(options)
    usage = store.df(_snapshots(store))
    if options.get("json"):
        stdout.write(jsonfast.dumps(usage) + "\n")
        return
    from .progress import human_bytes as h
    blobs, snaps = usage["blobs"], usage["snapshots"]
    stdout.write("%-10s %8s %12s %12s\n" % ("TYPE", "COUNT", "SIZE", "RECLAIMABLE"))
    stdout.write("%-10s %8d %12s %12s\n" % ("images", usage["images"], "", ""))
    stdout.write("%-10s %8d %12s %12s\n" % ("blobs", blobs["count"], h(blobs["bytes"]),
                                            h(blobs["reclaimable"])))
    stdout.write("%-10s %8d %12s %12s\n" % ("snapshots", snaps["count"], h(snaps["bytes"]),
                                            h(snaps["reclaimable"])))
    stdout.write("%-10s %8s %12s %12s\n" % ("ingest", "", h(usage["ingest"]),
                                            h(usage["ingest"])))


def cmd_unpack(options, args, stdout, stderr):
    _want(args, 2, "unpack IMAGE DEST [--arch A]")
    from .pull import unpack
    store = _store(options)
    unpack(store, args[0], args[1], _snapshots(store), arch=options.get("arch"))


_VERBS = {"pull": cmd_pull, "import": cmd_import, "ls": cmd_ls, "inspect": cmd_inspect,
          "rm": cmd_rm, "prune": cmd_prune, "df": cmd_df, "unpack": cmd_unpack}
