"""podman 4.3 (with conmon) drives the runtime: run, exit codes, tty, exec, pause, stop.

See tests/interop/conftest.py for the private storage and how to point these
tests at another runtime.
"""

def test_run_prints_output(podman):
    assert podman.run("--rm", podman.image, "echo", "hi").stdout == "hi\n"


def test_run_passes_exit_code(podman):
    proc = podman.run("--rm", podman.image, "sh", "-c", "exit 3", check=False)
    assert proc.returncode == 3, proc.stderr


def test_run_with_tty(podman):
    # -t makes podman hand the runtime a --console-socket.
    proc = podman.run("--rm", "--tty", podman.image, "/probe", "isatty", "1")
    assert proc.stdout.strip() == "isatty=1"


def test_detached_exec_pause_stop_rm(podman):
    name = "lifecycle"
    podman.run("--detach", "--name", name, podman.image, "/probe", "signals")
    try:
        assert podman.state(name) == "running"
        assert podman("exec", name, "echo", "there").stdout == "there\n"
        assert podman("exec", "--tty", name, "/probe", "isatty", "1").stdout.strip() == "isatty=1"
        podman("pause", name)
        assert podman.state(name) == "paused"
        podman("unpause", name)
        assert podman.state(name) == "running"
        podman("stop", "--time", "2", name)
        assert podman.state(name) == "exited"
        # The probe exits 0 on SIGTERM: 137 would mean stop had to SIGKILL it.
        exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert exit_code == "0"
        assert "sig=15" in podman("logs", name).stdout.split()
        podman("rm", name)
        assert podman("ps", "--all", "--quiet", "--filter", "name=" + name).stdout == ""
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
