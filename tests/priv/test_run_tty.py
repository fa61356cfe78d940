"""A foreground run with process.terminal and no --console-socket: edgert-oci proxies the
container's terminal to its own (as on a serial console)."""

import os
import select
import subprocess
import time


def read_until_exit(master, proc, timeout=20):
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=5)
    return out


def test_foreground_run_proxies_the_terminal(oci, make_bundle):
    bundle = make_bundle(["/bin/sh", "-c", "tty; read line; echo got:$line; exit 4"],
                         terminal=True)
    master, slave = os.openpty()
    proc = subprocess.Popen([oci.binary, "--root", oci.root, "run", "--bundle", bundle, "tty1"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    try:
        time.sleep(0.5)
        os.write(master, b"hello\r")
        out = read_until_exit(master, proc)
    finally:
        os.close(master)
    text = out.decode(errors="replace")
    assert "/dev/pts/0" in text and "got:hello" in text, text
    assert proc.returncode == 4


def test_detached_terminal_without_console_socket_is_a_clear_error(oci, make_bundle):
    bundle = make_bundle(["/bin/sh"], terminal=True)
    proc = oci("run", "--detach", "--bundle", bundle, "tty2", check=False)
    assert proc.returncode == 1
    assert b"no --console-socket" in proc.stderr
