"""Errors a user can cause and fix.

Everything a user can get wrong (a config value, a file, a model/task pair) raises
:class:`UserError` with one sentence that names the key, file or line and the fix. The
entry points print that sentence alone and exit non-zero instead of a traceback wall.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in input or configuration, explained in one sentence."""


class ConfigError(UserError):
    """A bad configuration value; the message names the config key."""


class DataError(UserError):
    """A missing, corrupt or malformed data file; the message names the file (and line)."""


def require(condition: bool, message: str, kind: type[UserError] = ConfigError) -> None:
    """Raise ``kind(message)`` unless ``condition`` holds (validation reads as a sentence)."""
    if not condition:
        raise kind(message)
