"""``edgert console`` driven through a pty as a person at a serial console would: the console
runs in a forked child on the slave side, the test types on the master side and reads
everything the terminal shows. A fake dispatcher stands in for the CLI commands.

Ptys need no root. Each setup the console supports for ^C is covered: the terminal as the
controlling terminal (the kernel sends SIGINT) and as a plain fd (the console watches input)."""

import fcntl
import json
import os
import select
import signal
import termios
import time
import traceback

import pytest

from edgert.client import console

PROMPT = b"edgert> "


def fake_dispatch(argv, out, err):
    out.write("ran: %s\n" % json.dumps(argv))
    name, args = argv[0], argv[1:]
    if name == "words":
        out.write("|".join(args) + "\n")
    elif name == "fail":
        err.write("failing on purpose\n")
        return int(args[0])
    elif name == "stream":  # like logs -f: lines until interrupted
        n = 0
        while True:
            out.write("line %d\n" % n)
            n += 1
            time.sleep(0.005)
    elif name == "big":  # like logs of a chatty container: 200 KB in log-line writes
        for line in big_lines():
            out.write(line)
    elif name == "sleep":
        time.sleep(float(args[0]))
    elif name == "color":
        out.write("\x1b[31mred\x1b[0m plain\n")
    elif name == "partial":
        out.write("no newline at the end")
    elif name == "stdio":  # what exec and run hand the container process: our fds 1 and 2
        os.write(1, b"fd1\n")
        os.write(2, b"fd2\n")
    elif name == "boom":
        raise RuntimeError("a bug")
    else:
        err.write("edgert: unknown command %r (see edgert --help)\n" % name)
        return 2
    return 0


fake_dispatch.commands = lambda: [("words", "print the words"), ("stream", "lines forever")]


def big_lines():
    return ["%06d %s\n" % (i, "x" * 43) for i in range(4000)]  # 200,000 bytes


class Session:
    """A console in a forked child on a new pty; the test is the person at the terminal."""

    def __init__(self, controlling=False, term="dumb", tty_args=None, stdio=False, prepare=None,
                 speed=None):
        """``tty_args``: run ``edgert console --tty SLAVE`` + these; ``stdio``: run ``edgert
        console`` on the slave as stdin/stdout; else a Console on the slave fd."""
        self.master, self.slave = os.openpty()
        argv = None if tty_args is None else ["--tty", os.ttyname(self.slave)] + tty_args
        if speed is not None:
            attrs = termios.tcgetattr(self.slave)
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        self.log = b""
        self.seen = 0  # how much of the log expect() has consumed
        self.pid = os.fork()
        if self.pid == 0:
            self._child(controlling, term, argv, stdio, prepare)
        self.code = None

    def _child(self, controlling, term, argv, stdio, prepare):
        code = 99
        try:
            os.close(self.master)
            os.setsid()  # away from pytest's terminal and its signals
            os.environ["TERM"] = term
            if argv is not None:
                os.close(self.slave)
                code = console.main(argv, dispatch=fake_dispatch)
            elif stdio:  # as getty starts it: the terminal on fds 0, 1, 2 and controlling
                for fd in (0, 1, 2):
                    os.dup2(self.slave, fd)
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
                code = console.main([], dispatch=fake_dispatch)
            else:
                if controlling:
                    fcntl.ioctl(self.slave, termios.TIOCSCTTY, 0)
                if prepare:
                    prepare(self.slave)
                code = console.Console(self.slave, self.slave, term, fake_dispatch).run()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)

    def read(self, timeout=0.2):
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: no slave left
                data = b""
            self.log += data
            return data
        return None

    def send(self, data, pause=0.0):
        """Types ``data``, reading the echo meanwhile so neither side blocks the other."""
        for i in range(0, len(data), 256):
            view = data[i:i + 256]
            while view:
                _, writable, _ = select.select([], [self.master], [], 0.05)
                if writable:
                    view = view[os.write(self.master, view):]
                self.read(0)
            if pause:
                time.sleep(pause)

    def expect(self, marker, timeout=10):
        """What the terminal showed up to and including ``marker``, from where the last
        expect stopped."""
        deadline = time.monotonic() + timeout
        while self.log.find(marker, self.seen) < 0:
            assert time.monotonic() < deadline, "no %r in %r" % (marker, self.log[-2000:])
            self.read()
        end = self.log.find(marker, self.seen) + len(marker)
        shown, self.seen = self.log[self.seen:end], end
        return shown

    def command(self, line):
        """Types ``line`` + Enter at a prompt; what it printed up to the next prompt."""
        self.send(line + b"\r")
        return self.expect(PROMPT)

    def attrs(self):
        return termios.tcgetattr(self.master)  # a pty master reads the slave's settings

    def wait(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
                return self.code
            self.read(0.05)
        raise AssertionError("the console did not exit: %r" % self.log[-500:])

    def close(self):
        if self.code is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def session():
    sessions = []

    def start(**kw):
        s = Session(**kw)
        sessions.append(s)
        s.expect(PROMPT)
        return s
    yield start
    for s in sessions:
        s.close()


def ran(shown):
    """The argv lists the fake dispatcher was called with in ``shown``."""
    lines = shown.decode().splitlines()
    return [json.loads(line[5:]) for line in lines if line.startswith("ran: ")]


def test_typing_with_backspace_del_and_ctrl_u(session):
    s = session()
    shown = s.command(b"wordz\x7f\x08ds a\x08b")
    assert ran(shown) == [["words", "b"]]
    assert b"wordz\b \b\b \bds a\b \bb\r\n" in shown
    shown = s.command(b"stop everything\x15words ok")
    assert ran(shown) == [["words", "ok"]]
    assert b"\b \b" * len(b"stop everything") in shown


def test_ctrl_c_at_the_prompt_discards_the_line(session):
    s = session()
    s.send(b"stop web\x03")
    shown = s.expect(PROMPT)
    assert shown == b"stop web^C\r\nedgert> " and not ran(shown)
    assert ran(s.command(b"words after")) == [["words", "after"]]


@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
def test_cr_lf_and_crlf_from_the_terminal(session, ending):
    s = session()
    s.send(b"words one" + ending + b"words two" + ending)
    shown = s.expect(PROMPT) + s.expect(PROMPT)
    assert ran(shown) == [["words", "one"], ["words", "two"]]
    s.send(b"\x04")
    assert s.wait() == 0
    assert s.log.count(PROMPT) == 3  # CRLF is one line end: no empty line in between


@pytest.mark.parametrize("controlling", [True, False], ids=["controlling", "plain-fd"])
def test_ctrl_c_interrupts_a_streaming_command(session, controlling):
    s = session(controlling=controlling)
    s.send(b"stream\r")
    s.expect(b"line 5\r\n")
    # the kernel turns ^C into SIGINT only for its controlling terminal; else the console reads it
    assert bool(s.attrs()[3] & termios.ISIG) == controlling
    s.send(b"\x03")
    shown = s.expect(PROMPT, timeout=5)
    assert shown.endswith(b"^C\r\nedgert> ")
    attrs = s.attrs()
    assert not attrs[3] & (termios.ISIG | termios.ICANON | termios.ECHO)  # editing mode again
    assert ran(s.command(b"words still here")) == [["words", "still", "here"]]
    s.send(b"\x04")
    assert s.wait() == 0


@pytest.mark.parametrize("controlling", [True, False], ids=["controlling", "plain-fd"])
def test_typing_ahead_during_a_command_runs_next(session, controlling):
    s = session(controlling=controlling)
    s.send(b"sleep 0.5\r")
    s.expect(b"ran: [\"sleep\"")
    s.send(b"words ahead\r")
    shown = s.expect(PROMPT) + s.expect(PROMPT)
    assert ran(shown) == [["words", "ahead"]]


def test_ctrl_d_leaves_only_on_an_empty_line_and_restores_the_terminal(session):
    s = session()
    s.send(b"ps\x04")
    time.sleep(0.2)
    assert os.waitpid(s.pid, os.WNOHANG) == (0, 0)
    s.send(b"\x15\x04")
    assert s.wait() == 0
    lflag = s.attrs()[3]  # the pty's own cooked mode again
    assert lflag & termios.ICANON and lflag & termios.ECHO and lflag & termios.ISIG


def test_exit_and_quit(session):
    for word in (b"exit", b"quit"):
        s = session()
        s.send(word + b"\r")
        assert s.wait() == 0


def test_quoting_reaches_the_command(session):
    s = session()
    shown = s.command(b"words 'a b' \"c \\\"d\\\"\" e\\ f ''")
    assert ran(shown) == [["words", "a b", 'c "d"', "e f", ""]]
    shown = s.command(b"words 'unbalanced")
    assert b"edgert console: unbalanced single quote: close it\r\n" in shown and not ran(shown)


def test_exit_codes_and_unknown_commands(session):
    s = session()
    shown = s.command(b"fail 3")
    assert shown.endswith(b"failing on purpose\r\n[exit 3]\r\nedgert> ")
    shown = s.command(b"frobnicate now")
    assert b"edgert: unknown command 'frobnicate'" in shown and b"[exit 2]" in shown
    shown = s.command(b"words fine")
    assert b"[exit" not in shown
    shown = s.command(b"boom")
    assert b"boom failed: RuntimeError: a bug\r\n[exit 1]" in shown


def test_terminal_programs_are_refused(session):
    s = session()
    shown = s.command(b"console")
    assert b"this is the console already" in shown and not ran(shown)
    shown = s.command(b"exec -it web sh")
    assert b"no terminal programs inside the console" in shown and not ran(shown)
    assert ran(s.command(b"exec web ls -t")) == [["exec", "web", "ls", "-t"]]
    shown = s.command(b"exec -u nobody -t web sh")
    assert b"no terminal programs inside the console" in shown and not ran(shown)
    assert ran(s.command(b"exec -u t web ls")) == [["exec", "-u", "t", "web", "ls"]]


def test_help_lists_the_dispatcher_commands(session):
    s = session()
    shown = s.command(b"help")
    assert b"  words          print the words\r\n" in shown and b"^U" in shown and not ran(shown)


@pytest.mark.parametrize("listing,shown", [
    ("usage: edgert COMMAND\n  ps   list\n", "usage: edgert COMMAND\n  ps   list\n"),
    (["ps", "logs"], "commands:\n  ps\n  logs\n"),
    ({"ps": "list", "inspect": "all"}, "commands:\n  inspect        all\n  ps             list\n"),
    (None, "Type a command as after"),
])
def test_help_takes_the_listing_in_several_shapes(listing, shown):
    class Out:
        text = ""

        def write(self, data):
            self.text += data

    def dispatch(argv, out, err):
        return 0
    if listing is not None:
        dispatch.commands = listing
    c = console.Console(0, 1, "dumb", dispatch)
    c.out = Out()
    c.help()
    assert c.out.text.startswith(shown) and "^D on an empty line" in c.out.text


def test_prompt_starts_a_line_after_output_without_newline(session):
    s = session()
    assert s.command(b"partial").endswith(b"no newline at the end\r\nedgert> ")


def test_dumb_terminal_gets_no_escape_sequences(session):
    s = session(term="dumb")
    shown = s.command(b"color")
    s.send(b"abc\x1b[D\x7f\x03")
    s.expect(PROMPT)
    s.send(b"\x04")
    s.wait()
    assert b"red plain" in shown and b"\x1b" not in s.log


def test_other_terminals_get_command_output_unchanged(session):
    s = session(term="vt100")
    assert b"\x1b[31mred\x1b[0m plain" in s.command(b"color")


def test_a_line_too_long_is_refused(session):
    s = session()
    s.send(b"words " + b"a" * 5000 + b"\r")
    shown = s.expect(PROMPT)
    assert b"line too long (more than 4096 characters)" in shown and not ran(shown)
    assert ran(s.command(b"words ok")) == [["words", "ok"]]


def expected_big():
    return "".join(big_lines()).encode().replace(b"\n", b"\r\n")


def big_output(shown):
    start = shown.index(b"000000 ")
    return shown[start:shown.rindex(PROMPT)]


def test_200_kb_arrive_complete_at_115200_baud(session):
    s = session(speed=termios.B115200)
    assert big_output(s.command(b"big")) == expected_big()


def test_200_kb_arrive_complete_through_a_non_blocking_fd_read_slowly(session):
    # getty's fds 0, 1, 2 share one open file: a command that sets O_NONBLOCK on one sets it
    # on all; the console then waits for the terminal instead of dropping output
    s = session(prepare=lambda fd: os.set_blocking(fd, False))
    s.send(b"big\r")
    while PROMPT not in s.log[s.seen + 10:]:
        time.sleep(0.001)
        s.read(1)
    assert big_output(s.expect(PROMPT)) == expected_big()


def test_newlines_become_crlf_when_the_terminal_does_not_translate(session):
    def raw_output(fd):
        attrs = termios.tcgetattr(fd)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    s = session(prepare=raw_output)
    assert not s.attrs()[1] & termios.OPOST
    shown = s.command(b"big")
    assert big_output(shown) == expected_big()
    assert shown.count(b"\n") == shown.count(b"\r\n")


def test_on_stdin_as_getty_starts_it(session):
    s = session(stdio=True, term="")
    assert ran(s.command(b"words 'from getty'")) == [["words", "from getty"]]
    s.send(b"stream\r")
    s.expect(b"line 3\r\n")
    assert s.attrs()[3] & termios.ISIG  # the controlling terminal: the kernel's SIGINT
    s.send(b"\x03")
    assert s.expect(PROMPT, timeout=5).endswith(b"^C\r\nedgert> ")
    s.send(b"\x04")
    assert s.wait() == 0


def test_tty_option_sets_the_line_and_restores_it(session):
    s = session(tty_args=["--baud", "115200"], speed=termios.B9600)
    attrs = s.attrs()
    assert attrs[4] == attrs[5] == termios.B115200
    assert attrs[2] & termios.CSIZE == termios.CS8
    assert not attrs[2] & (termios.PARENB | termios.CSTOPB)
    # the device is the console's stdio, so what exec and run pass on reaches the serial line
    assert b"fd1\r\nfd2\r\n" in s.command(b"stdio")
    # setsid + TIOCSCTTY made it the controlling terminal: ^C is the kernel's SIGINT
    s.send(b"stream\r")
    s.expect(b"line 3\r\n")
    assert s.attrs()[3] & termios.ISIG
    s.send(b"\x03")
    assert s.expect(PROMPT, timeout=5).endswith(b"^C\r\nedgert> ")
    s.send(b"exit\r")
    assert s.wait() == 0
    after = s.attrs()
    assert after[4] == after[5] == termios.B9600  # the speed the line had before
    assert after[3] & termios.ICANON


def test_tty_option_keeps_the_speed_without_baud(session):
    s = session(tty_args=[], speed=termios.B57600)
    assert s.attrs()[4] == termios.B57600
    s.send(b"\x04")
    assert s.wait() == 0


@pytest.mark.parametrize("argv,code,message", [
    (["--tty", "/dev/ttyS0", "--baud", "12345"], 2,
     "unsupported baud rate '12345': use one of 9600, 19200, 38400, 57600, 115200, 230400, "
     "460800, 921600"),
    (["--tty", "/dev/ttyS0", "--baud", "fast"], 2, "unsupported baud rate 'fast'"),
    (["--baud", "115200"], 2, "--baud needs --tty"),
    (["--tty"], 2, "--tty needs a value"),
    (["--speed", "9600"], 2, "unexpected argument '--speed'"),
    (["--tty", "/dev/null"], 1, "/dev/null is not a terminal"),
    (["--tty", "/nonexistent/ttyS9"], 1, "cannot open /nonexistent/ttyS9: No such file"),
])
def test_option_errors_are_one_line(capsys, argv, code, message):
    assert console.main(argv, dispatch=fake_dispatch) == code
    err = capsys.readouterr().err
    assert err.startswith("edgert console: ") and message in err and err.count("\n") == 1
