"""Domain errors: what failed, on which object, and what to do.

Every error edgert raises for a user mistake or an environment problem is an
``EdgertError``. It carries a short machine-readable ``code`` and prints as one
line. Callers at the edge (CLI, control socket) print ``str(err)`` and exit
with ``err.exit_code``; nothing below them prints tracebacks for these.
"""


class EdgertError(Exception):
    """A failure with a one-line explanation for the operator."""

    code = "error"
    exit_code = 1

    def __init__(self, message, code=None):
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(EdgertError):
    """The bundle's config.json (or another input document) is invalid."""

    code = "invalid-config"


class Unsupported(EdgertError):
    """A field or feature edgert cannot honour on this kernel or at all."""

    code = "unsupported"


class NotFound(EdgertError):
    code = "not-found"


class StateError(EdgertError):
    """An operation does not fit the object's current state."""

    code = "bad-state"
