"""The terminal of a foreground ``run`` without --console-socket: the runtime receives the pty
master from the container (as an engine would over its console socket) and copies bytes between
it and its own stdin/stdout, in raw mode when stdin is a terminal (serial consoles included)."""

import os

from ..errors import EdgertError
from ..tty import copy_window_size, proxy

# container.py takes the terminal helpers from here; they live in edgert.tty (shared with clients)
__all__ = ["socketpair", "receive_master", "spawn_on_terminal", "console_size",
           "copy_window_size", "proxy"]


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


def spawn_on_terminal(spawn, undo):
    """For a process.terminal process: ``spawn(console_fd)`` starts it, and the process
    sends its pty master on ``console_fd`` before the exec that spawn waits for. Returns
    (spawn's result, the master); if no master comes, ``undo(result)`` ends the process."""
    peer, ours = socketpair()
    try:
        result = spawn(peer)
    except BaseException:
        os.close(ours)
        raise
    finally:
        os.close(peer)
    try:
        master = receive_master(ours)  # closes ours
    except BaseException:
        undo(result)
        raise
    return result, master


def console_size(rows_columns):
    """The OCI consoleSize of a client's [rows, columns] (24x80 when it sent none)."""
    height, width = rows_columns or (24, 80)
    return {"height": height, "width": width}
