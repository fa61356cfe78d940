import pytest

from edgert.errors import EdgertError
from edgert.oci import cli
from edgert.runtime.container import exit_code, parse_signal


def test_flags_long_short_equals_and_repeat():
    values, bools = cli.VERBS["exec"]
    opts, pos = cli.parse_flags(["--env", "A=1", "-e=B=2", "--tty", "--detach=false", "-u",
                                 "5:6", "ctr", "sh", "-c", "echo -n"], values, bools,
                                stop_at_positional=True)
    assert opts == {"env": ["A=1", "B=2"], "tty": True, "detach": False, "user": "5:6"}
    assert pos == ["ctr", "sh", "-c", "echo -n"]


def test_unknown_and_missing_values_are_usage_errors():
    values, bools = cli.VERBS["create"]
    with pytest.raises(cli.UsageError, match="unknown option --bogus"):
        cli.parse_flags(["--bogus", "x"], values, bools)
    with pytest.raises(cli.UsageError, match="--bundle needs a value"):
        cli.parse_flags(["--bundle"], values, bools)
    with pytest.raises(cli.UsageError, match="true or false"):
        cli.parse_flags(["--no-new-keyring=maybe"], values, bools)


@pytest.mark.parametrize("text,num", [("TERM", 15), ("SIGKILL", 9), ("9", 9), ("sigusr1", 10),
                                      ("RTMIN", 34), ("RTMIN+2", 36), ("RTMAX", 64),
                                      ("RTMAX-1", 63), ("WINCH", 28)])
def test_signals(text, num):
    assert parse_signal(text) == num


@pytest.mark.parametrize("text", ["", "FOO", "0", "65", "RTMIN+40"])
def test_bad_signals(text):
    with pytest.raises(EdgertError, match="unknown signal"):
        parse_signal(text)


def test_exit_code_shell_convention():
    assert exit_code(3 << 8) == 3
    assert exit_code(9) == 137


def test_main_usage_errors_exit_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main(["--root"]) == 2


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("edgert-oci version ") and "spec: 1.2.0" in out


def test_state_of_missing_container(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "state", "nope"]) == 1
    assert "container 'nope' does not exist" in capsys.readouterr().err


def test_json_log_file(tmp_path, capsys):
    log = tmp_path / "log.json"
    cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json", "start", "x"])
    import json
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "'x' does not exist" in entry["msg"]


def test_unsupported_flags(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "--systemd-cgroup", "list"]) == 1
    assert "--systemd-cgroup is not supported" in capsys.readouterr().err


def test_bad_container_id(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "state", "../etc"]) == 1
    assert "invalid container id" in capsys.readouterr().err
