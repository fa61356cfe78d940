"""/host/lxc.env: the node service's environment as a file any POSIX shell can source (pure).

One ``export NAME='value'`` line per variable. Inside single quotes a POSIX shell takes every
byte literally (newlines, ``$``, backticks, backslashes, double quotes, non-ASCII), except the
single quote itself, which ends the quoting: it is written as ``'\\''`` (close, an escaped
quote, reopen). So ``. /host/lxc.env`` gives every variable exactly its value in sh, dash,
busybox ash and bash alike.
"""

from ..errors import ConfigError

HEADER = b"# Environment of this node service, written by edgert. Use: . /host/lxc.env\n"
NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
NAME_CHARS = NAME_START | frozenset("0123456789")


def check_name(name):
    if type(name) is not str or not name or name[0] not in NAME_START or not NAME_CHARS.issuperset(
            name):
        raise ConfigError("environment variable name %r is not a shell identifier (letters, "
                          "digits and '_', not starting with a digit): rename it, since "
                          "/host/lxc.env could not set it" % (name,), code="bad-env-name")


def _value_bytes(name, value):
    if type(value) is str:
        try:
            value = value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError("environment variable %s: value is not valid Unicode (a lone "
                              "surrogate); fix the value" % name, code="bad-env-value") from None
    elif type(value) is not bytes:
        raise ConfigError("environment variable %s: value must be a string, got %s"
                          % (name, type(value).__name__), code="bad-env-value")
    if b"\0" in value:
        raise ConfigError("environment variable %s: value contains a NUL byte, which no "
                          "environment can hold; remove it" % name, code="bad-env-value")
    return value


def quote(value):
    """``value`` (bytes) as one single-quoted shell word."""
    return b"'" + value.replace(b"'", b"'\\''") + b"'"


def render(env):
    """The file for ``env`` ({name: str or bytes}, in the dict's order)."""
    lines = [HEADER]
    for name, value in env.items():
        check_name(name)
        lines.append(b"export %s=%s\n" % (name.encode(), quote(_value_bytes(name, value))))
    return b"".join(lines)
