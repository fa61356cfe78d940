"""The terminal of a foreground ``run`` without --console-socket: the runtime receives the pty
master from the container (as an engine would over its console socket) and copies bytes between
it and its own stdin/stdout, in raw mode when stdin is a terminal (serial consoles included)."""

from ..errors import EdgertError
from ..tty import copy_window_size, proxy

# container.py takes the terminal helpers from here; they live in edgert.tty (shared with clients)
__all__ = ["socketpair", "receive_master", "copy_window_size", "proxy"]


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
        _, ancillary, _, _ = sock.recvmsg(1024, _socket.CMSG_SPACE(4), _socket.MSG_CMSG_CLOEXEC)
    finally:
        sock.close()
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS and len(data) >= 4:
            return array.array("i", data[:4])[0]
    raise EdgertError("the container sent no terminal", code="console")
