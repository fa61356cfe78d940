"""/host/lxc.env (edgert/host/lxcenv.py): sourced by real shells, every value byte for byte."""

import os
import subprocess

import pytest

from edgert.errors import ConfigError
from edgert.host import lxcenv

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

SHELLS = [("busybox", ["/bin/busybox", "sh"]), ("dash", ["/bin/dash"]), ("bash", ["/bin/bash"])]
AVAILABLE = [pytest.param(argv, id=name) for name, argv in SHELLS if os.path.exists(argv[0])]
ENV = "/usr/bin/env"

NASTY = {
    "SPACES": "  two  spaces  ",
    "SINGLE": "it's 'quoted'",
    "ONLY_QUOTE": "'",
    "QUOTES": "''\"\"'\\''",
    "DOUBLE": 'say "hi"',
    "DOLLAR": "$HOME ${PATH} $(id) $((1+1))",
    "BACKTICK": "`id` ``",
    "BACKSLASH": "a\\b\\\\c\\",
    "NEWLINES": "line1\nline2\n\n",
    "TAB": "a\tb\t",
    "UTF8": "grüße – 日本 🚀",
    "EMPTY": "",
    "DASH": "-n",
    "DASHES": "--version -e",
    "EQUALS": "a=b==c=",
    "GLOB": "* ? [a-z] ~ ~root",
    "SEMI": "x; exit 1; & | > /tmp/nope",
    "HASH": "# not a comment",
    "CR": "a\rb",
    "_lead": "underscore name",
    "mixed9": "x",
}


def source_and_dump(shell, env_file, names):
    """The exported values after ``. env_file`` in a clean environment, by name (bytes)."""
    script = '. "$1" && exec %s -0' % ENV
    # in the file's directory: a quoting bug would run words of the values as commands
    proc = subprocess.run(shell + ["-c", script, "sh", env_file], env={}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30, cwd=os.path.dirname(env_file))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    seen = {}
    for entry in proc.stdout.split(b"\0")[:-1]:
        name, _, value = entry.partition(b"=")
        seen[name.decode()] = value
    return {name: seen.get(name) for name in names}


def write(tmp_path, env):
    path = tmp_path / "lxc.env"
    path.write_bytes(lxcenv.render(env))
    return str(path)


@pytest.mark.parametrize("shell", AVAILABLE)
def test_shell_gets_every_nasty_value_exactly(shell, tmp_path):
    got = source_and_dump(shell, write(tmp_path, NASTY), NASTY)
    assert got == {name: value.encode() for name, value in NASTY.items()}


@pytest.mark.parametrize("shell", AVAILABLE)
def test_shell_variables_are_set_too_not_only_exported(shell, tmp_path):
    path = write(tmp_path, NASTY)
    names = sorted(NASTY)
    script = '. "$1" && printf "%%s\\0" %s' % " ".join('"$%s"' % n for n in names)
    out = subprocess.run(shell + ["-c", script, "sh", path], env={}, stdout=subprocess.PIPE,
                         check=True, timeout=30, cwd=str(tmp_path)).stdout
    assert out.split(b"\0")[:-1] == [NASTY[n].encode() for n in names]


def test_bytes_values_and_the_file_shape():
    text = lxcenv.render({"A": b"\xff raw", "B": "it's"})
    assert text.splitlines()[1:] == [b"export A='\xff raw'", b"export B='it'\\''s'"]
    assert text.startswith(b"#") and text.endswith(b"\n")


@pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "A=B", "ÄRGER", "A.B", "$A", None])
def test_names_that_are_not_shell_identifiers_are_refused(name):
    with pytest.raises(ConfigError) as err:
        lxcenv.render({name: "x"})
    assert "not a shell identifier" in str(err.value) and err.value.code == "bad-env-name"


def test_nul_and_non_strings_are_refused():
    with pytest.raises(ConfigError, match="VAR: value contains a NUL byte"):
        lxcenv.render({"VAR": "a\0b"})
    with pytest.raises(ConfigError, match="NUL"):
        lxcenv.render({"VAR": b"\0"})
    with pytest.raises(ConfigError, match="must be a string, got int"):
        lxcenv.render({"VAR": 5})
    with pytest.raises(ConfigError, match="lone surrogate"):
        lxcenv.render({"VAR": "\udc80"})


_special = st.sampled_from(list("'\"$`\\\n\t\r =-!*?[]{}~#;&|<>()%") + ["'\\''", "$(", "\\'"])
_any_char = st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")
VALUES = st.lists(_special | _any_char, max_size=40).map("".join)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).map(lambda s: "E_" + s)


@hypothesis.settings(max_examples=60, deadline=None, database=None)
@hypothesis.given(env=st.dictionaries(NAMES, VALUES, min_size=1, max_size=12))
def test_generated_values_survive_every_shell(env, tmp_path_factory):
    path = write(tmp_path_factory.mktemp("env"), env)
    want = {name: value.encode() for name, value in env.items()}
    for shell in AVAILABLE:
        assert source_and_dump(shell.values[0], path, env) == want, shell.id
