"""The terminal of a foreground ``run`` without --console-socket: the runtime receives the pty
master from the container (as an engine would over its console socket) and copies bytes between
it and its own stdin/stdout, in raw mode when stdin is a terminal (serial consoles included)."""

import os

from ..errors import EdgertError


def socketpair():
    """A connected pair of unix stream sockets, as fds (the container end, our end)."""
    import _socket
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    return a.detach(), b.detach()


def receive_master(fd):
    """The pty master fd the container sent over ``fd`` (SCM_RIGHTS)."""
    import _socket
    import array
    sock = _socket.socket(fileno=fd)
    try:
        _, ancillary, _, _ = sock.recvmsg(1024, _socket.CMSG_SPACE(4))
    finally:
        sock.close()
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            return array.array("i", data[:4])[0]
    raise EdgertError("the container sent no terminal", code="console")


def copy_window_size(src, dst):
    import fcntl
    import termios
    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def raw_mode(fd):
    """Puts terminal ``fd`` in raw mode; returns the attributes to restore."""
    import termios
    saved = termios.tcgetattr(fd)
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON)
    attrs[1] &= ~termios.OPOST
    attrs[2] = (attrs[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSAFLUSH, attrs)
    return saved


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def proxy(master):
    """Copies stdin -> master and master -> stdout until the container side hangs up."""
    import select
    import termios
    saved = None
    if os.isatty(0):
        copy_window_size(0, master)
        saved = raw_mode(0)
    watch = [master, 0]
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
                write_all(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    write_all(master, data)
                else:  # our stdin ended: pass end-of-file on as the terminal's EOF character
                    watch.remove(0)
                    write_all(master, b"\x04")
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
