"""``edgert console``: the edgert commands as a line shell for a serial port.

Made for a dumb terminal at 115200 baud, started by getty/inittab on stdin/stdout or opening
the line itself (``--tty DEVICE [--baud N]``).

Terminal modes. While a line is typed the terminal is in cbreak mode with ISIG off: every key
reaches the ``LineEditor``, which echoes printable ASCII, erases with BS or DEL ("\\b \\b"),
kills the line on ^U, discards it on ^C and leaves on ^D at an empty line; CR, LF and CRLF
all end a line; other control keys and escape sequences (arrow keys) are dropped. Output
processing is left as the line had it, so commands and the processes ``exec`` runs (they
write to the terminal directly) see a normal terminal; if it does not turn "\\n" into "\\r\\n",
``Output`` does.

^C while a command runs is SIGINT for the console process, whatever the setup:
- the terminal is our controlling terminal (getty, or ``--tty`` when setsid + TIOCSCTTY
  worked): the console sets the terminal's own mode back while the command runs, with ISIG on
  and only ^C active (^\\ and ^Z would kill or stop the console), and the kernel sends SIGINT;
- it is not (busybox init's /dev/console cannot be one, a shell's job cannot setsid, a pipe):
  the line stays in cbreak mode, the input fd gets O_ASYNC so the kernel sends SIGIO when bytes
  arrive, and the handler reads them: ^C raises SIGINT, other bytes are kept as type-ahead for
  the next prompt. The running command then gets no terminal input.
SIGINT becomes KeyboardInterrupt (or whatever the command installed, e.g. ``exec`` forwards
it to the container process); the console prints ^C and a new prompt.

No escape sequences: the console writes none, and on a dumb, unknown or unset TERM it also
removes those in command output (colours in container logs).

Refused: lines over 4096 characters (noise on a serial line), and terminal programs inside
the console (``console``, ``exec -t``, ``run -t``); ``exec`` without -t is fine. With
``--tty`` the device is also our stdin, stdout and stderr for the session, because ``exec``
and ``run`` hand those fds to the container process.
"""

import os
import signal
import sys

from .. import tty
from ..errors import EdgertError

PROMPT = "edgert> "
MAX_LINE = 4096
DUMB_TERMS = ("", "dumb", "unknown")
ROW = 80  # columns a dumb terminal is assumed to have: ^U erases in place below that

USAGE = """usage: edgert console [--tty DEVICE [--baud N]]

The edgert commands as a line shell: type a command as after "edgert" (help lists them).
Without --tty it runs on stdin/stdout (as getty or inittab start it). --tty opens a serial
device, sets 8N1 and, with --baud, the speed (%s).
""" % ", ".join(str(b) for b in tty.BAUD_RATES)

HELP_KEYS = """keys: BS or DEL erases a character, ^U the line; ^C discards the line or interrupts
a command; ^D on an empty line leaves.
built-ins: help, exit, quit
"""

CTRL_C, CTRL_D, BS, TAB, LF, CR, CTRL_U, ESC, DEL = 3, 4, 8, 9, 10, 13, 21, 27, 127


# -- words ----------------------------------------------------------------------------------

def split_words(line):
    """The words of a command line, quoted as in sh: '...' keeps everything, "..." keeps
    everything but \\" and \\\\, a backslash outside quotes keeps the next character."""
    words = []
    word = None  # the characters of the word being read; None between words
    quote = None
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        i += 1
        if quote == "'":
            if c == "'":
                quote = None
            else:
                word.append(c)
        elif quote == '"':
            if c == '"':
                quote = None
            elif c == "\\" and i < n and line[i] in '"\\':
                word.append(line[i])
                i += 1
            else:
                word.append(c)
        elif c in " \t":
            if word is not None:
                words.append("".join(word))
                word = None
        else:
            if word is None:
                word = []
            if c in "'\"":
                quote = c
            elif c == "\\":
                if i == n:
                    raise EdgertError("the line ends with a backslash: nothing to escape",
                                      code="syntax")
                word.append(line[i])
                i += 1
            else:
                word.append(c)
    if quote:
        raise EdgertError("unbalanced %s quote: close it" % ("single" if quote == "'"
                                                             else "double"), code="syntax")
    if word is not None:
        words.append("".join(word))
    return words


def refusal(argv):
    """Why the console will not run ``argv`` (a terminal program inside it), or None."""
    if argv[0] == "console":
        return "console: this is the console already"
    if argv[0] == "exec" and _exec_wants_tty(argv[1:]):
        return ("exec -t: no terminal programs inside the console; run exec without -t "
                "(the command's output comes here)")
    if argv[0] == "run" and _run_wants_tty(argv[1:]):
        return ("run -t: no terminal programs inside the console; run without -t "
                "(the command's output comes here)")
    return None


def _run_wants_tty(args):
    from .commands import Usage, parse_run
    try:
        options = parse_run(args)[0]
    except Usage:
        return False  # the command itself will say what is wrong
    return "-t" in options or "--tty" in options


def _exec_wants_tty(args):
    """exec's options come before the instance id: -t, -it, -ti or --tty ask for a terminal
    (-u and --user take a value)."""
    args = list(args)
    while args:
        arg = args.pop(0)
        if arg in ("-u", "--user"):
            del args[:1]
            continue
        if arg == "--tty":
            return True
        if not arg.startswith("-") or arg.startswith("--"):
            return False
        if "t" in arg and set(arg[1:]) <= set("it"):
            return True
    return False


# -- typing ---------------------------------------------------------------------------------

class LineEditor:
    """Bytes typed on a terminal -> echo and events. Pure: the caller reads and writes.

    ``receive(data)`` queues bytes; ``next_event()`` returns (echo bytes, event) where event is
    None (more bytes needed) or one of ("line", text), ("interrupt", None), ("eof", None),
    ("error", message). Bytes after an event stay queued for the next call. Echo uses "\\n"
    for a new line (``Output`` sends it as the terminal needs)."""

    def __init__(self, prompt=PROMPT, limit=MAX_LINE):
        self.prompt = prompt.encode()
        self.limit = limit
        self.queue = bytearray()
        self.chars = []
        self.too_long = False
        self.after_cr = False  # an LF right after a CR ends no second line (CRLF)
        self.escape = None  # inside an escape sequence: "esc", "csi" or "ss3"

    def receive(self, data):
        self.queue += data

    def discard(self):
        """Forgets the line being typed and everything queued."""
        del self.queue[:]
        self.clear()

    def clear(self):
        self.chars = []
        self.too_long = False
        self.escape = None

    def next_event(self):
        echo = bytearray()
        used = 0
        event = None
        for byte in self.queue:
            used += 1
            event = self._key(byte, echo)
            if event is not None:
                break
        del self.queue[:used]
        return bytes(echo), event

    def _key(self, byte, echo):
        after_cr, self.after_cr = self.after_cr, False
        if self.escape is not None and byte >= 0x20:
            self._escape(byte)
            return None
        self.escape = None  # a control key cuts a sequence short (line noise)
        if byte == ESC:
            self.escape = "esc"
        elif byte in (CR, LF):
            if byte == LF and after_cr:
                return None
            self.after_cr = byte == CR
            echo += b"\n"
            line, too_long = "".join(self.chars), self.too_long
            self.clear()
            if too_long:
                return ("error", "line too long (more than %d characters): ignored"
                        % self.limit)
            return ("line", line)
        elif byte == CTRL_C:
            echo += b"^C\n"
            self.clear()
            return ("interrupt", None)
        elif byte == CTRL_D:
            if not self.chars and not self.too_long:
                echo += b"\n"
                return ("eof", None)
        elif byte in (BS, DEL):
            if self.chars:
                self.chars.pop()
                echo += b"\b \b"
        elif byte == CTRL_U:
            if len(self.prompt) + len(self.chars) < ROW:
                echo += b"\b \b" * len(self.chars)
            else:  # "\b" cannot go back up a wrapped line: start afresh below
                echo += b"\n" + self.prompt
            self.clear()
        elif byte == TAB or 0x20 <= byte < 0x7f:
            char = " " if byte == TAB else chr(byte)
            if len(self.chars) < self.limit:
                self.chars.append(char)
                echo.append(ord(char))
            else:
                self.too_long = True
        return None  # other control keys and non-ASCII bytes: dropped

    def _escape(self, byte):
        if self.escape == "esc":
            self.escape = {0x5b: "csi", 0x4f: "ss3"}.get(byte)  # ESC [ ... or ESC O x
        elif self.escape == "ss3" or 0x40 <= byte <= 0x7e:  # the final byte
            self.escape = None


class EscapeFilter:
    """Removes escape sequences (ESC [ ... final, ESC ] ... BEL or ESC \\, ESC x) from a byte
    stream, across writes."""

    def __init__(self):
        self.state = None  # None, "esc", "csi", "osc"

    def feed(self, data):
        if self.state is None and 0x1b not in data:
            return data
        out = bytearray()
        for byte in data:
            if self.state is None:
                if byte == ESC:
                    self.state = "esc"
                else:
                    out.append(byte)
            elif self.state == "esc":
                self.state = {0x5b: "csi", 0x5d: "osc"}.get(byte)
            elif self.state == "csi":
                if 0x40 <= byte <= 0x7e:
                    self.state = None
            elif byte == ESC:  # inside osc: ESC \ ends it
                self.state = "esc"
            elif byte == 0x07:
                self.state = None
        return bytes(out)


# -- the terminal ---------------------------------------------------------------------------

class Output:
    """The console's output, also given to commands as stdout and stderr: str or bytes, written
    whole (never dropped), "\\n" as "\\r\\n" when the terminal does not do it, escape sequences
    removed when asked."""

    encoding = "utf-8"

    def __init__(self, fd, crlf, strip_escapes):
        self.fd = fd
        self.crlf = crlf
        self.escapes = EscapeFilter() if strip_escapes else None
        self.at_line_start = True
        self.broken = False  # writing failed: the line is gone, the console ends

    def write(self, data):
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
        if self.escapes is not None:
            raw = self.escapes.feed(raw)
        self.send(raw)
        return len(data)

    def send(self, raw):
        """Writes the console's own bytes (no escapes to filter)."""
        if not raw:
            return
        if self.crlf:
            raw = raw.replace(b"\n", b"\r\n")
        try:
            tty.write_all(self.fd, raw)
        except OSError:
            self.broken = True
            raise
        self.at_line_start = raw.endswith(b"\n")

    def flush(self):
        pass

    def isatty(self):
        return os.isatty(self.fd)


class Interrupts:
    """Turns ^C typed while a command runs into SIGINT (see the module's doc): ``arm()``
    before the command, ``disarm()`` after (also safe to call twice)."""

    def __init__(self, fd, original):
        self.fd = fd
        self.by_kernel = original is not None and tty.is_foreground(fd)
        self.command_attrs = command_attrs(original) if self.by_kernel else None
        self.editing_attrs = editing_attrs(original) if original is not None else None
        self.armed = False
        self.typeahead = bytearray()
        self.saved_handler = None

    def start(self):
        if not self.by_kernel:
            self.saved_handler = signal.signal(signal.SIGIO, self.on_input)

    def stop(self):
        self.disarm()
        if self.saved_handler is not None:
            signal.signal(signal.SIGIO, self.saved_handler)

    def arm(self):
        if self.by_kernel:
            _set_attrs(self.fd, self.command_attrs)
            return
        import fcntl
        self.armed = True
        # O_ASYNC first: a terminal makes its foreground group the SIGIO owner; we want it
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) | os.O_ASYNC)
        fcntl.fcntl(self.fd, fcntl.F_SETOWN, os.getpid())
        self.on_input()  # what came before O_ASYNC raised no SIGIO

    def disarm(self):
        if self.by_kernel:
            _set_attrs(self.fd, self.editing_attrs)
            return
        if self.armed:
            self.armed = False
            import fcntl
            fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_ASYNC)

    def take_typeahead(self):
        data = bytes(self.typeahead)
        del self.typeahead[:]
        return data

    def on_input(self, *_):
        import select
        while self.armed and select.select([self.fd], [], [], 0)[0]:
            data = tty.read_some(self.fd)
            if not data:  # end of input (or hangup): the prompt after the command ends
                self.disarm()
                return
            if CTRL_C in data:  # as the kernel does for ^C: type-ahead goes too
                del self.typeahead[:]
                signal.raise_signal(signal.SIGINT)
                return
            self.typeahead += data


def editing_attrs(original):
    import termios
    attrs = tty.cbreak_attrs(original)
    attrs[tty.LFLAG] &= ~(termios.ISIG | termios.IEXTEN)
    return attrs


def command_attrs(original):
    """The line's own mode for a running command, with ^C as the only signal key."""
    import termios
    attrs = list(original)
    attrs[tty.CC] = list(attrs[tty.CC])
    attrs[tty.LFLAG] |= termios.ISIG
    attrs[tty.LFLAG] &= ~termios.ECHOCTL  # the console prints the ^C itself
    attrs[tty.CC][termios.VINTR] = bytes([CTRL_C])
    attrs[tty.CC][termios.VQUIT] = attrs[tty.CC][termios.VSUSP] = b"\0"  # disabled
    return attrs


def _set_attrs(fd, attrs):
    import termios
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class Console:
    """The shell: prompt, read a line, run it through ``dispatch(argv, out, err) -> code``."""

    def __init__(self, infd, outfd, term, dispatch):
        self.infd = infd
        self.outfd = outfd
        self.term = term or ""
        self.dispatch = dispatch
        self.editor = LineEditor()
        self.echo = os.isatty(infd)  # a pipe's writer sees what it sent
        self.out = None
        self.interrupts = None

    def run(self):
        """Reads and runs lines until exit, quit, ^D or the end of input; returns 0."""
        original = None
        if self.echo:
            import termios
            original = termios.tcgetattr(self.infd)
        self.interrupts = Interrupts(self.infd, original)
        saved_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
        self.interrupts.start()
        try:
            if original is not None:
                _set_attrs(self.infd, self.interrupts.editing_attrs)
            self.out = Output(self.outfd, not tty.translates_newlines(self.outfd),
                              self.term in DUMB_TERMS)
            while True:
                try:
                    if not self.step():
                        return 0
                except KeyboardInterrupt:
                    self.interrupts.disarm()
                    self.editor.discard()
                    self.out.send(b"^C\n")
        except OSError:
            if self.out is not None and self.out.broken:  # the line hung up
                return 0
            raise
        finally:
            self.interrupts.stop()
            signal.signal(signal.SIGINT, saved_sigint)
            if original is not None:
                try:
                    tty.restore(self.infd, original)
                except OSError:
                    pass

    def step(self):
        """One prompt and what was typed at it; False when the console should end."""
        if not self.out.at_line_start:
            self.out.send(b"\n")
        self.out.send(PROMPT.encode())
        kind, value = self.read_event()
        if kind == "eof":
            return False
        if kind == "error":
            self.say(value)
        if kind != "line":
            return True
        try:
            argv = split_words(value)
        except EdgertError as e:
            self.say(str(e))
            return True
        if argv and argv[0] in ("exit", "quit"):
            return False
        if argv:
            self.run_command(argv)
        return True

    def read_event(self):
        while True:
            echo, event = self.editor.next_event()
            if echo and self.echo:
                self.out.send(echo)
            if event is not None:
                return event
            data = tty.read_some(self.infd)
            if not data:
                return ("eof", None)
            self.editor.receive(data)

    def run_command(self, argv):
        if argv[0] == "help":
            return self.help()
        why = refusal(argv)
        if why:
            self.say(why)
            return
        try:
            self.interrupts.arm()
            code = self.call(argv)
        finally:
            self.interrupts.disarm()
            self.editor.receive(self.interrupts.take_typeahead())
        if code:
            if not self.out.at_line_start:
                self.out.send(b"\n")
            self.out.send(b"[exit %d]\n" % code)

    def call(self, argv):
        try:
            return self.dispatch(argv, self.out, self.out) or 0
        except EdgertError as e:
            self.say("%s: %s" % (argv[0], e))
            return e.exit_code
        except SystemExit as e:
            if isinstance(e.code, str):
                self.say(e.code)
            return e.code if isinstance(e.code, int) else 1
        except Exception as e:  # a failing command must not end the console
            if self.out.broken:
                raise
            self.say("%s failed: %s: %s" % (argv[0], type(e).__name__, e))
            return 1

    def help(self):
        """The dispatcher's ``commands`` (text, names, (name, summary) pairs or a dict; or a
        callable returning one) and the console's keys."""
        listing = getattr(self.dispatch, "commands", None)
        if callable(listing):
            listing = listing()
        if isinstance(listing, dict):
            listing = sorted(listing.items())
        if isinstance(listing, str):
            self.out.write(listing.rstrip("\n") + "\n")
        elif listing:
            self.out.write("commands:\n")
            for item in listing:
                name, summary = (item, "") if isinstance(item, str) else item
                self.out.write(("  %-14s %s" % (name, summary)).rstrip() + "\n")
        else:
            self.out.write("Type a command as after \"edgert\" on a shell, e.g. ps, logs ID.\n")
        self.out.write(HELP_KEYS)

    def say(self, message):
        if not self.out.at_line_start:
            self.out.send(b"\n")
        self.out.write("edgert console: %s\n" % message)


# -- edgert console -------------------------------------------------------------------------

def parse_args(argv):
    """(device or None, baud or None); None for --help."""
    device = baud = None
    args = list(argv)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if arg in ("-h", "--help"):
            return None
        if name not in ("--tty", "--baud"):
            raise EdgertError("unexpected argument %r (see edgert console --help)" % arg,
                              code="usage")
        if not eq:
            if not args:
                raise EdgertError("%s needs a value" % name, code="usage")
            value = args.pop(0)
        if name == "--tty":
            device = value
        else:
            baud = parse_baud(value)
    if baud is not None and device is None:
        raise EdgertError("--baud needs --tty (on stdin, getty has set the speed)", code="usage")
    return device, baud


def parse_baud(text):
    rates = ", ".join(str(b) for b in tty.BAUD_RATES)
    try:
        baud = int(text)
        tty.baud_constant(baud)
    except ValueError:
        raise EdgertError("unsupported baud rate %r: use one of %s" % (text, rates),
                          code="usage") from None
    return baud


def main(argv, dispatch=None):
    try:
        parsed = parse_args(argv)
        if parsed is None:
            sys.stdout.write(USAGE)
            return 0
        device, baud = parsed
        if dispatch is None:
            from .commands import run as dispatch
        term = os.environ.get("TERM", "")
        if device is None:
            return Console(0, 1, term, dispatch).run()
        return on_device(device, baud, term, dispatch)
    except EdgertError as e:
        sys.stderr.write("edgert console: %s\n" % e)
        return 2 if e.code == "usage" else e.exit_code


def on_device(path, baud, term, dispatch):
    """Runs the console on serial device ``path``: the line set to 8N1 (and ``baud``), made
    our stdin, stdout, stderr and, if possible, controlling terminal; its settings restored
    at the end."""
    import termios
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise EdgertError("cannot open %s: %s" % (path, e.strerror), code="console") from None
    try:
        if not os.isatty(fd):
            raise EdgertError("%s is not a terminal: give a serial device such as /dev/ttyS0"
                              % path, code="console")
        original = termios.tcgetattr(fd)
        _set_attrs(fd, tty.serial_attrs(original, baud))
        os.set_blocking(fd, True)  # O_NONBLOCK was for the open (no wait for carrier)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [_dup_or_none(n) for n in (0, 1, 2)]
        try:
            for n in (0, 1, 2):  # exec and run hand the container process our stdio
                os.dup2(fd, n)
            tty.make_controlling(0)
            return Console(0, 1, term, dispatch).run()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for n, copy in enumerate(saved):
                if copy is None:
                    os.close(n)
                else:
                    os.dup2(copy, n)
                    os.close(copy)
            try:
                tty.restore(fd, original)
            except OSError:  # the line is gone
                pass
    finally:
        os.close(fd)


def _dup_or_none(fd):
    try:
        return os.dup(fd)
    except OSError:
        return None
