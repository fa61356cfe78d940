import json
import os

import pytest

from edgert.runtime.hooks import HookError, run_hooks, spec_state


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_hooks_run_in_order_with_state_on_stdin(tmp_path):
    out = tmp_path / "out"
    a = script(tmp_path, "a", "cat > %s.a; echo a >> %s\n" % (out, out))
    b = script(tmp_path, "b", "echo \"$1 $X\" >> %s\n" % out)
    state = spec_state("c1", "creating", 42, "/b", {"k": "v"})
    run_hooks("prestart", [{"path": a}, {"path": b, "args": ["b", "arg1"], "env": ["X=y"]}],
              state)
    assert out.read_text() == "a\narg1 y\n"
    got = json.loads((tmp_path / "out.a").read_text())
    assert got == {"ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 42,
                   "bundle": "/b", "annotations": {"k": "v"}}


def test_failure_names_hook_and_output(tmp_path):
    bad = script(tmp_path, "bad", "echo broken >&2; exit 3\n")
    with pytest.raises(HookError, match=r"poststart hook #0 \(.*bad\) exited with 3: broken"):
        run_hooks("poststart", [{"path": bad}], {})


def test_timeout_kills(tmp_path):
    slow = script(tmp_path, "slow", "exec sleep 30\n")
    with pytest.raises(HookError, match="timed out after 1s"):
        run_hooks("createRuntime", [{"path": slow, "timeout": 1}], {})


def test_missing_hook_binary(tmp_path):
    with pytest.raises(HookError, match="exited with 127: exec .*No such file"):
        run_hooks("prestart", [{"path": str(tmp_path / "nope")}], {})
