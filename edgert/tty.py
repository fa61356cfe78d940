"""Terminals: raw mode, window size, serial line settings, full writes and pty proxying.

Shared by the runtime (the terminal of a foreground ``run``) and the clients (``edgert
console``), so it imports nothing from either. termios is used directly: the stdlib ``tty`` and
``pty`` modules are not on the device's list.
"""

import errno
import fcntl
import os
import select
import struct
import termios

# Serial speeds ``edgert console --baud`` accepts: the usual rates of router UARTs.
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)

# termios attribute list indexes (iflag, oflag, cflag, lflag, ispeed, ospeed, cc)
IFLAG, OFLAG, CFLAG, LFLAG, ISPEED, OSPEED, CC = range(7)


def raw_attrs(attrs):
    """``attrs`` (a tcgetattr list) changed for raw mode: bytes in and out unchanged, no echo,
    no signals from the keyboard, reads return as soon as one byte is there."""
    attrs = list(attrs)
    attrs[CC] = list(attrs[CC])
    attrs[IFLAG] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP
                      | termios.IXON)
    attrs[OFLAG] &= ~termios.OPOST
    attrs[CFLAG] = (attrs[CFLAG] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    attrs[LFLAG] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    attrs[CC][termios.VMIN] = 1
    attrs[CC][termios.VTIME] = 0
    return attrs


def cbreak_attrs(attrs):
    """``attrs`` changed so that keys arrive one by one as typed: no line editing, no echo, CR
    and LF untranslated; signals, flow control and output processing stay as they were."""
    attrs = list(attrs)
    attrs[CC] = list(attrs[CC])
    attrs[IFLAG] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR)
    attrs[LFLAG] &= ~(termios.ECHO | termios.ICANON)
    attrs[CC][termios.VMIN] = 1
    attrs[CC][termios.VTIME] = 0
    return attrs


def raw_mode(fd):
    """Puts terminal ``fd`` in raw mode; returns the attributes to give to ``restore``."""
    saved = termios.tcgetattr(fd)
    termios.tcsetattr(fd, termios.TCSAFLUSH, raw_attrs(saved))
    return saved


def restore(fd, saved):
    """Sets ``saved`` attributes back once everything written so far has been sent."""
    termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def translates_newlines(fd):
    """True when the terminal turns "\\n" into "\\r\\n" itself (OPOST and ONLCR)."""
    try:
        oflag = termios.tcgetattr(fd)[OFLAG]
    except termios.error:  # not a terminal: nobody translates
        return False
    return bool(oflag & termios.OPOST and oflag & termios.ONLCR)


def serial_attrs(attrs, baud=None):
    """``attrs`` changed for a serial line: 8 data bits, no parity, 1 stop bit, receiver on,
    modem lines ignored (three-wire console cables have none), "\n" sent as "\r\n" (a previous
    program may have left the line raw), and ``baud`` when given."""
    attrs = list(attrs)
    attrs[OFLAG] |= termios.OPOST | termios.ONLCR
    attrs[CFLAG] &= ~(termios.CSIZE | termios.PARENB | termios.CSTOPB)
    attrs[CFLAG] |= termios.CS8 | termios.CREAD | termios.CLOCAL
    if baud is not None:
        attrs[ISPEED] = attrs[OSPEED] = baud_constant(baud)
    return attrs


def baud_constant(baud):
    """The termios speed constant of ``baud`` (an int); ValueError for a rate not offered."""
    if baud not in BAUD_RATES:
        raise ValueError(baud)
    return getattr(termios, "B%d" % baud)


def window_size(fd):
    """(rows, columns) of terminal ``fd``, or None when it does not know (serial lines say 0x0)."""
    import struct
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


def window_size(fd):
    """(rows, columns) of terminal ``fd``; None when it is no terminal or has no size set."""
    try:
        rows, columns = struct.unpack("HH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)[:4])
    except OSError:
        return None
    return (rows, columns) if rows and columns else None


def copy_window_size(src, dst):
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def is_foreground(fd):
    """True when ``fd`` is our controlling terminal and our process group is its foreground one,
    that is when the kernel sends us SIGINT for ^C typed on it (with ISIG on)."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:  # ENOTTY: not our controlling terminal (or not a terminal at all)
        return False


def make_controlling(fd):
    """Makes terminal ``fd`` our controlling terminal when the kernel allows it: we start a new
    session (impossible for a process group leader, e.g. a shell's job) and claim the terminal
    (impossible when it is another session's). Returns whether it worked."""
    try:
        os.setsid()
    except OSError:
        pass
    try:
        fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
    except OSError:
        return False
    return is_foreground(fd)


def write_all(fd, data):
    """Writes all of ``data``: partial writes are continued, and a non-blocking fd (a terminal
    shares that flag with every fd of its open file) is waited on until it takes more."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            wait_for(fd, select.POLLOUT)


def read_some(fd, size=4096):
    """Reads what is there (at least one byte), waiting if ``fd`` is non-blocking; b"" at the
    end of input, a hangup (EIO) included."""
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            wait_for(fd, select.POLLIN)
        except OSError as e:
            if e.errno != errno.EIO:
                raise
            return b""


def wait_for(fd, events):
    poller = select.poll()
    poller.register(fd, events)
    poller.poll()


def proxy(master, infd=0, outfd=1):
    """Copies ``infd`` -> master and master -> ``outfd`` until the other side hangs up, with
    ``infd`` in raw mode meanwhile when it is a terminal (serial consoles included)."""
    saved = None
    if os.isatty(infd):
        copy_window_size(infd, master)
        saved = raw_mode(infd)
    watch = [master, infd]
    try:
        while True:
            ready, _, _ = select.select(watch, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed, the container is gone
                    data = b""
                if not data:
                    return
                write_all(outfd, data)
            if infd in ready:
                data = os.read(infd, 65536)
                if data:
                    write_all(master, data)
                else:  # our input ended: pass end-of-file on as the terminal's EOF character
                    watch.remove(infd)
                    write_all(master, b"\x04")
    finally:
        if saved is not None:
            restore(infd, saved)
        os.close(master)
