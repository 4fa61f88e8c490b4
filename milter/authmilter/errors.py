"""Exceptions that carry their own exit status and one-line message.

::

    AuthmilterError           exit 1
    ├── UsageError            exit 2   bad command line
    └── ConfigError           exit 78  bad config file, key, table or key file (EX_CONFIG)
    DnsTempError              not an exit error: DNS timeout / SERVFAIL (a temperror, never a fail)
"""

from __future__ import annotations


class AuthmilterError(Exception):
    """An error the command line reports as one line and an exit status."""

    exit_code = 1


class UsageError(AuthmilterError):
    """The command line itself is wrong."""

    exit_code = 2


class ConfigError(AuthmilterError):
    """Configuration that cannot be used; the message names the file, the key and the problem."""

    exit_code = 78

    @classmethod
    def at(cls, path: str, key: str, problem: str) -> ConfigError:
        """Build the canonical ``FILE: KEY: PROBLEM`` message."""
        return cls(f"{path}: {key}: {problem}")


class DnsTempError(Exception):
    """A DNS answer could not be had in time (timeout, SERVFAIL, refused): temporary trouble."""
