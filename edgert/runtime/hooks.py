"""OCI hooks: each gets the container state as JSON on stdin; a timeout kills it."""

import os

from ..errors import EdgertError
from ..jsonfast import dumps


class HookError(EdgertError):
    code = "hook-failed"


def run_hooks(kind, hooks, state):
    """Runs ``hooks`` (a list of runtime-spec hook objects) in order; the first failure raises."""
    if not hooks:
        return
    payload = dumps(state).encode()
    for i, hook in enumerate(hooks):
        name = "%s hook #%d (%s)" % (kind, i, hook["path"])
        status, output = run_one(hook, payload)
        if status is None:
            raise HookError("%s timed out after %ss" % (name, hook.get("timeout")))
        if status != 0:
            tail = output.decode("utf-8", "replace").strip()[-500:]
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
            raise HookError("%s exited with %d%s" % (name, code, ": " + tail if tail else ""))


def run_one(hook, payload):
    """Returns (wait status or None on timeout, combined stdout+stderr)."""
    import select
    import time
    args = hook.get("args") or [hook["path"]]
    env = dict(e.split("=", 1) for e in hook.get("env", []) if "=" in e)
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.execve(hook["path"], args, env)
        except OSError as e:
            os.write(2, ("exec %s: %s" % (hook["path"], e.strerror)).encode())
        os._exit(127)
    os.close(in_r)
    os.close(out_w)
    try:
        os.write(in_w, payload)
    except BrokenPipeError:
        pass
    os.close(in_w)
    timeout = hook.get("timeout")
    deadline = time.monotonic() + timeout if timeout else None
    output = b""
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([out_r], [], [], wait)
            if not ready:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return None, output
            chunk = os.read(out_r, 65536)
            if not chunk:
                break
            output = (output + chunk)[-65536:]
    finally:
        os.close(out_r)
    return os.waitpid(pid, 0)[1], output


def spec_state(container_id, status, pid, bundle, annotations):
    """The runtime-spec state object (what hooks read and `state` prints)."""
    from .. import OCI_VERSION
    state = {"ociVersion": OCI_VERSION, "id": container_id, "status": status,
             "bundle": bundle, "annotations": annotations or {}}
    if pid and status != "stopped":
        state["pid"] = pid
    return state
