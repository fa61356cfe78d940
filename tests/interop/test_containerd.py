"""containerd 1.6 (ctr + runc shim v2) drives the runtime: run, exit codes, exec, ps, pause, kill.

See tests/interop/conftest.py for the private daemon and how to point these
tests at another runtime.
"""


def test_run_prints_output(containerd):
    assert containerd.run("t-echo", "echo", "hi").stdout == "hi\n"


def test_run_passes_exit_code(containerd):
    proc = containerd.run("t-exit", "sh", "-c", "exit 3", check=False)
    assert proc.returncode == 3, proc.stderr


def test_detached_exec_pause_kill_delete(containerd):
    name = "t-detached"
    containerd.run(name, "/probe", "signals", detach=True)
    try:
        assert containerd.task_status(name) == "RUNNING"
        exec_out = containerd.ctr("task", "exec", "--exec-id", "e1", name, "echo", "there")
        assert exec_out.stdout == "there\n"
        assert containerd.ctr("task", "ps", name).stdout.splitlines()[1:], "no processes"
        containerd.ctr("task", "pause", name)
        assert containerd.task_status(name) == "PAUSED"
        containerd.ctr("task", "resume", name)
        assert containerd.task_status(name) == "RUNNING"
        containerd.ctr("task", "kill", "--signal", "SIGTERM", name)
        containerd.wait_status(name, "STOPPED")
        containerd.ctr("task", "delete", name)
        containerd.ctr("container", "delete", name)
        assert containerd.task_status(name) is None
    finally:
        containerd.ctr("task", "delete", "--force", name, check=False)
        containerd.ctr("container", "delete", name, check=False)
