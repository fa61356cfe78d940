"""edgert-oci: the runc-compatible command line. Each verb only parses and calls the library.

Hand-parsed (argparse costs more to import than the whole ``start`` verb takes);
flags follow runc's names and forms: ``--flag value``, ``--flag=value``, short
aliases, booleans with an optional ``=true|false``.
"""

import os
import sys

from ..jsonfast import dumps, dumps_pretty, loads

USAGE = """usage: edgert-oci [global options] COMMAND [options] [ID] ...

commands:
  create   --bundle DIR [--pid-file F] [--console-socket S] ID
  start    ID
  run      --bundle DIR [--pid-file F] [--console-socket S] [--detach] ID
  state    ID
  kill     [--all] ID [SIGNAL]
  delete   [--force] ID
  exec     [--process FILE | COMMAND ARGS...] [--detach] [--tty] [--pid-file F]
           [--console-socket S] [--cwd DIR] [--env K=V] [--user UID[:GID]] [--cap CAP] ID
  pause    ID
  resume   ID
  list     [--format table|json] [--quiet]
  ps       [--format table|json] ID
  features
  spec     [--bundle DIR]
global options: --root DIR  --log FILE  --log-format text|json  --debug  --version
"""

GLOBAL_VALUE = {"--root": "root", "--log": "log", "--log-format": "log_format",
                "--criu": "criu", "--rootless": "rootless"}
GLOBAL_BOOL = {"--debug": "debug", "--systemd-cgroup": "systemd_cgroup"}

# verb -> (value flags, bool flags); short aliases map to long names.
VERBS = {
    "create": ({"--bundle": "bundle", "-b": "bundle", "--pid-file": "pid_file",
                "--console-socket": "console_socket", "--preserve-fds": "preserve_fds"},
               {"--no-pivot": "no_pivot", "--no-new-keyring": "no_new_keyring"}),
    "run": ({"--bundle": "bundle", "-b": "bundle", "--pid-file": "pid_file",
             "--console-socket": "console_socket", "--preserve-fds": "preserve_fds"},
            {"--detach": "detach", "-d": "detach", "--no-pivot": "no_pivot",
             "--no-new-keyring": "no_new_keyring", "--keep": "keep"}),
    "start": ({}, {}),
    "state": ({}, {}),
    "kill": ({}, {"--all": "all", "-a": "all"}),
    "delete": ({}, {"--force": "force", "-f": "force"}),
    "pause": ({}, {}),
    "resume": ({}, {}),
    "list": ({"--format": "format", "-f": "format"}, {"--quiet": "quiet", "-q": "quiet"}),
    "ps": ({"--format": "format", "-f": "format"}, {}),
    "features": ({}, {}),
    "spec": ({"--bundle": "bundle", "-b": "bundle"}, {"--rootless": "rootless"}),
    "exec": ({"--process": "process", "-p": "process", "--pid-file": "pid_file",
              "--console-socket": "console_socket", "--cwd": "cwd", "--env": "env",
              "-e": "env", "--user": "user", "-u": "user", "--additional-gids": "gids",
              "-g": "gids", "--cap": "cap", "-c": "cap", "--preserve-fds": "preserve_fds",
              "--process-label": "process_label", "--apparmor": "apparmor",
              "--cgroup": "cgroup"},
             {"--detach": "detach", "-d": "detach", "--tty": "tty", "-t": "tty",
              "--no-new-privs": "no_new_privs", "--ignore-paused": "ignore_paused"}),
}
REPEATABLE = {"env", "cap", "gids"}
# Verbs whose trailing words after the id belong to the verb (not flags).
TRAILING = {"exec", "kill", "ps"}


class UsageError(Exception):
    pass


def parse_bool(flag, value):
    if value in ("true", "1", "yes", ""):
        return True
    if value in ("false", "0", "no"):
        return False
    raise UsageError("%s takes true or false, got %r" % (flag, value))


def parse_flags(argv, values, bools, stop_at_positional=False):
    """Returns (options, positionals). ``stop_at_positional`` keeps what follows the first
    positional untouched after the id (exec's command, kill's signal)."""
    opts, pos = {}, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            pos.extend(argv[i + 1:])
            break
        if arg.startswith("-") and arg != "-" and not (stop_at_positional and pos):
            name, eq, value = arg.partition("=")
            if name in values:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError("%s needs a value" % name)
                    value = argv[i]
                key = values[name]
                if key in REPEATABLE:
                    opts.setdefault(key, []).append(value)
                else:
                    opts[key] = value
            elif name in bools:
                opts[bools[name]] = parse_bool(name, value) if eq else True
            elif name in ("-h", "--help"):
                opts["help"] = True
            else:
                raise UsageError("unknown option %s" % name)
        else:
            pos.append(arg)
        i += 1
    return opts, pos


class Logger:
    """Errors to stderr, and to --log in runc's text or JSON form (engines read it)."""

    def __init__(self, path=None, fmt="text", debug=False):
        self.path, self.fmt, self.debug_on = path, fmt or "text", debug

    def write(self, level, msg):
        if not self.path:
            return
        import time
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            line = dumps({"level": level, "msg": msg, "time": stamp})
        else:
            line = 'time="%s" level=%s msg=%s' % (stamp, level, dumps(msg))
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            os.write(fd, (line + "\n").encode())
            os.close(fd)
        except OSError:
            pass

    def error(self, msg):
        sys.stderr.write("edgert-oci: %s\n" % msg)
        self.write("error", msg)

    def warn(self, msg):
        sys.stderr.write("edgert-oci: %s\n" % msg)
        self.write("warning", msg)


def one_id(verb, pos):
    if len(pos) != 1:
        raise UsageError("%s takes exactly one container id" % verb)
    return pos[0]


def reject_unsupported(opts):
    from ..errors import Unsupported
    if opts.get("no_pivot"):
        raise Unsupported("--no-pivot is not supported: edgert always uses pivot_root (with an "
                          "MS_MOVE fallback on an initramfs root)")
    if int(opts.get("preserve_fds") or 0):
        raise Unsupported("--preserve-fds is not supported yet: edgert-init closes every fd "
                          "above stdio")


def cmd_create(rt, opts, pos):
    reject_unsupported(opts)
    rt.create(one_id("create", pos), opts.get("bundle", "."), opts.get("console_socket"),
              opts.get("pid_file"))
    return 0


def cmd_run(rt, opts, pos):
    reject_unsupported(opts)
    return rt.run(one_id("run", pos), opts.get("bundle", "."), opts.get("console_socket"),
                  opts.get("pid_file"), detach=opts.get("detach", False))


def cmd_start(rt, opts, pos):
    rt.start(one_id("start", pos))
    return 0


def cmd_state(rt, opts, pos):
    print(dumps_pretty(rt.state(one_id("state", pos))))
    return 0


def cmd_kill(rt, opts, pos):
    from ..runtime.container import parse_signal
    if not 1 <= len(pos) <= 2:
        raise UsageError("kill takes a container id and an optional signal")
    rt.kill(pos[0], parse_signal(pos[1] if len(pos) == 2 else "TERM"), opts.get("all", False))
    return 0


def cmd_delete(rt, opts, pos):
    if not pos:
        raise UsageError("delete takes one or more container ids")
    for cid in pos:
        rt.delete(cid, force=opts.get("force", False))
    return 0


def cmd_pause(rt, opts, pos):
    rt.pause(one_id("pause", pos))
    return 0


def cmd_resume(rt, opts, pos):
    rt.resume(one_id("resume", pos))
    return 0


def cmd_list(rt, opts, pos):
    states = rt.list()
    fmt = opts.get("format", "table")
    if opts.get("quiet"):
        for s in states:
            print(s["id"])
    elif fmt == "json":
        print(dumps(states))
    elif fmt == "table":
        print("%-20s %-8s %-10s %-30s %s" % ("ID", "PID", "STATUS", "BUNDLE", "CREATED"))
        for s in states:
            print("%-20s %-8s %-10s %-30s %s" % (s["id"], s.get("pid", 0), s["status"],
                                                 s["bundle"], s.get("created", "")))
    else:
        raise UsageError("--format must be table or json")
    return 0


def cmd_ps(rt, opts, pos):
    if not pos:
        raise UsageError("ps takes a container id")
    pids = rt.ps(pos[0])
    if opts.get("format") == "json":
        print(dumps(pids))
        return 0
    print("%-8s %s" % ("PID", "CMD"))
    for pid in pids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            cmd = "?"
        print("%-8d %s" % (pid, cmd))
    return 0


def cmd_features(rt, opts, pos):
    from .features import features
    print(dumps_pretty(features()))
    return 0


def cmd_spec(rt, opts, pos):
    from ..errors import EdgertError
    from ..fsutil import atomic_write
    from .defaults import default_config
    path = os.path.join(opts.get("bundle", "."), "config.json")
    if os.path.exists(path):
        raise EdgertError("%s already exists (remove it first)" % path, code="exists")
    atomic_write(path, dumps_pretty(default_config()) + "\n")
    return 0


def exec_request(opts, command):
    """(process object from --process, or None; overrides from the flags, like runc's)."""
    from ..errors import ConfigError
    if opts.get("process"):
        try:
            with open(opts["process"], "rb") as f:
                return loads(f.read()), {}
        except (OSError, ValueError) as e:
            raise ConfigError("--process %s: %s" % (opts["process"], e)) from None
    if not command:
        raise UsageError("exec needs --process FILE or a command after the container id")
    overrides = {"args": command, "terminal": opts.get("tty", False),
                 "env": opts.get("env", []), "caps": opts.get("cap", [])}
    if opts.get("cwd"):
        overrides["cwd"] = opts["cwd"]
    if opts.get("no_new_privs"):
        overrides["noNewPrivileges"] = True
    if opts.get("user"):
        uid, _, gid = opts["user"].partition(":")
        try:
            overrides["user"] = {"uid": int(uid), "gid": int(gid or 0),
                                 "additionalGids": [int(g) for g in opts.get("gids", [])]}
        except ValueError:
            raise UsageError("--user takes UID[:GID] as numbers, got %r" % opts["user"]) from None
    return None, overrides


def cmd_exec(rt, opts, pos):
    if not pos:
        raise UsageError("exec takes a container id")
    process, overrides = exec_request(opts, pos[1:])
    if process is not None and opts.get("tty"):
        process["terminal"] = True
    return rt.exec(pos[0], process, opts.get("console_socket"), opts.get("pid_file"),
                   detach=opts.get("detach", False), overrides=overrides)


COMMANDS = {
    "create": cmd_create, "run": cmd_run, "start": cmd_start, "state": cmd_state,
    "kill": cmd_kill, "delete": cmd_delete, "pause": cmd_pause, "resume": cmd_resume,
    "list": cmd_list, "ps": cmd_ps, "features": cmd_features, "spec": cmd_spec,
    "exec": cmd_exec,
}


def main(argv):
    from ..errors import EdgertError
    log = Logger()
    try:
        glob = {}
        i = 0
        while i < len(argv) and argv[i].startswith("-"):
            name, eq, value = argv[i].partition("=")
            if name in GLOBAL_VALUE:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError("%s needs a value" % name)
                    value = argv[i]
                glob[GLOBAL_VALUE[name]] = value
            elif name in GLOBAL_BOOL:
                glob[GLOBAL_BOOL[name]] = parse_bool(name, value) if eq else True
            elif name in ("-v", "--version"):
                from .. import OCI_VERSION, __version__
                print("edgert-oci version %s\nspec: %s" % (__version__, OCI_VERSION))
                return 0
            elif name in ("-h", "--help"):
                sys.stdout.write(USAGE)
                return 0
            else:
                raise UsageError("unknown global option %s" % name)
            i += 1
        log = Logger(glob.get("log"), glob.get("log_format"), glob.get("debug", False))
        if log.debug_on:
            log.write("debug", "edgert-oci " + " ".join(argv))
        if glob.get("systemd_cgroup"):
            from ..errors import Unsupported
            raise Unsupported("--systemd-cgroup is not supported: edgert manages cgroupfs "
                              "directly (give cgroupsPath as a path)")
        if i >= len(argv):
            sys.stderr.write(USAGE)
            return 2
        verb = argv[i]
        if verb not in COMMANDS:
            raise UsageError("unknown command %r" % verb)
        values, bools = VERBS[verb]
        opts, pos = parse_flags(argv[i + 1:], values, bools, stop_at_positional=verb in TRAILING)
        if opts.get("help"):
            sys.stdout.write(USAGE)
            return 0
        from ..runtime.container import DEFAULT_ROOT, Runtime
        rt = Runtime(glob.get("root") or DEFAULT_ROOT, log=log.warn)
        return COMMANDS[verb](rt, opts, pos)
    except UsageError as e:
        log.error("%s (see edgert-oci --help)" % e)
        return 2
    except EdgertError as e:
        log.error(str(e))
        return e.exit_code
    except OSError as e:
        from ..runtime.sync import describe
        log.error(describe(e))
        return 1
    except KeyboardInterrupt:
        return 130
