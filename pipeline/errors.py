"""One error root for everything tenantwatch raises on purpose (pySigma's habit).

The CLI turns a ``TenantwatchError`` into a one-line message and an exit code, and so an
``OSError`` (a disk that is full, a folder or bucket that cannot be written: the machine's
trouble, which the message names); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TenantwatchError(Exception):
    """Root of every error tenantwatch raises deliberately."""

    exit_code = 1


class ConfigError(TenantwatchError):
    """The configuration file is missing, unreadable or invalid.

    The message is one line that names the key and what was expected.
    """

    exit_code = 2


class InputError(TenantwatchError):
    """A source given on the command line cannot be read at all (not a bad record: those are
    quarantined)."""

    exit_code = 2


class AwsSetupError(TenantwatchError):
    """AWS cannot be called at all: no credentials, or no region where one is needed."""

    exit_code = 2


class LakeError(TenantwatchError):
    """The lake cannot be written at all (its folder cannot be made, or is not writable)."""

    exit_code = 2


class MissingExtra(TenantwatchError):
    """A part of tenantwatch that an optional extra installs was asked for without it (the
    Spark engine without ``tenantwatch[spark]``): the message names the extra."""

    exit_code = 2
