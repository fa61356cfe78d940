"""The CLI client's pure parts: option parsing, 80-column tables, errors without a daemon."""

import io
import os

import pytest

from edgert.client import commands


def test_options_anywhere_and_repeated():
    options, rest = commands._opts(["--pin", "3", "web", "--config-map=a=b", "--config-map",
                                    "c=d", "--stopped"],
                                   ("--stopped",), ("--pin", "--config-map"))
    assert rest == ["web"]
    assert options == {"--pin": ["3"], "--config-map": ["a=b", "c=d"], "--stopped": True}


@pytest.mark.parametrize("argv, options, rest", [
    (["-t", "-e", "A=1", "img", "ls", "-t", "-e"], {"-t": True, "-e": ["A=1"]},
     ["img", "ls", "-t", "-e"]),
    (["--bundle", "b", "--name=n", "sh", "-c", "--tty"], {"--bundle": ["b"], "--name": ["n"]},
     ["sh", "-c", "--tty"]),
    (["--rm", "--", "img", "-x"], {"--rm": True}, ["img", "-x"]),
])
def test_run_options_end_at_the_image(argv, options, rest):
    """As with docker run: what follows the image is the container's command line."""
    assert commands.parse_run(argv) == (options, rest)


def test_unknown_option_and_missing_value():
    with pytest.raises(commands.Usage):
        commands._opts(["--bogus"], (), ())
    with pytest.raises(commands.Usage):
        commands._opts(["--pin"], (), ("--pin",))


def test_table_never_passes_80_columns_and_is_ascii():
    rows = [("ID", "SERVICE", "NOTE")] + [("x" * 20, "s\u00e9rvice", "n" * 200)] * 3
    text = commands._table(rows)
    assert all(len(line) <= 79 for line in text.splitlines())
    text.encode("ascii")


@pytest.mark.parametrize("argv,code", [
    (["nosuch"], 2), (["ps", "extra"], 2), (["logs"], 2), (["pin", "x"], 2),
    (["inspect", "x"], 1), (["ps"], 1),
])
def test_exit_codes_without_a_daemon(tmp_path, argv, code):
    out, err = io.StringIO(), io.StringIO()
    assert commands.run(argv, out, err, socket_path=str(tmp_path / "none.sock")) == code
    message = err.getvalue()
    assert message.count("\n") == 1 and "Traceback" not in message
    if code == 1:
        assert "edgertd is not running" in message


def test_cli_never_imports_the_daemon_or_the_runtime():
    import subprocess
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = ("import sys; sys.path.insert(0, %r); from edgert.client import commands; "
            "commands.run(['ps'], socket_path='/nonexistent'); "
            "bad = [m for m in sys.modules if m.startswith(('edgert.daemon', 'edgert.runtime', 'msgpack',"
            " 'edgert.image', 'pyroute2', 'cffi'))]; print(bad)" % repo)
    out = subprocess.run(["/usr/bin/python3", "-I", "-c", code], capture_output=True,
                         text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out


def test_inspect_shows_the_network(tmp_path):
    out = io.StringIO()
    cli = commands.Cli(str(tmp_path / "none.sock"), out, io.StringIO())
    cli.call = lambda method, params=None, fds=(): {
        "id": "gw1", "node_service": "gw", "state": "running", "config_maps": [],
        "network": {"subnet": "10.190.3.0/24", "netns": "/run/edgert/netns/gw1",
                    "interfaces": {"wan0": "10.77.0.128/24", "lan0": "10.190.3.1/16"},
                    "dhcp_leases": {"leases": [
                        {"address": "10.190.3.%d" % i, "state": "bound"} for i in range(2, 8)]
                        + [{"address": "10.190.3.9", "state": "released"}]}}}
    assert cli.cmd_inspect(["gw1"]) == 0
    lines = out.getvalue().splitlines()
    assert "subnet:          10.190.3.0/24" in lines
    assert lines.index("lan0:            10.190.3.1/16") < lines.index(
        "wan0:            10.77.0.128/24")
    assert "dhcp leases:     6 bound 10.190.3.2 10.190.3.3 10.190.3.4 10.190.3.5 ..." in lines
    assert all(len(line) <= 79 for line in lines)
