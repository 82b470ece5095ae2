"""One base for every error a user can cause: the CLI turns it into one line and an exit code
(``exit_code``) in one place; anything else is a bug and keeps its traceback."""

from __future__ import annotations


class MtlsiError(Exception):
    """A problem with the user's input, files or machine; the message is one line."""

    exit_code = 2


class ConfigError(MtlsiError, ValueError):
    """A model config or option value that is unknown, malformed, of the wrong type or out of
    range (checked where the value is used, so library callers get it too)."""


class BundleError(MtlsiError, ValueError):
    """A bundle that cannot be used; one line naming the file and the problem.

    Defined here rather than in ``bundle`` because ``verify`` raises it and ``bundle`` imports
    ``verify``."""
