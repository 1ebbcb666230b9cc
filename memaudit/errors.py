"""Exit codes and the errors that map onto them (pytest's convention)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What `memaudit` returns to the shell."""

    OK = 0
    """Every check passed (or there were no checks)."""
    CHECKS_FAILED = 1
    """At least one threshold check failed."""
    USAGE_ERROR = 2
    """Bad command line or configuration, bad data, or the run was interrupted."""
    INTERNAL_ERROR = 3
    """A bug in memaudit or a probe raised an unexpected exception."""
    SOURCE_UNAVAILABLE = 4
    """A checkpoint could not be had: missing revision or repo, gated, offline with no cache."""
    NO_PROBES = 5
    """Nothing was collected: no probe matched."""


class MemauditError(Exception):
    """An error meant for the user: one paragraph that says what is wrong and what to do."""

    exit_code: ExitCode = ExitCode.USAGE_ERROR

    def __init__(self, message: str, exit_code: ExitCode | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(MemauditError):
    """The yaml, a data file or a command-line option is wrong (exit 2)."""


class SourceUnavailable(MemauditError):
    """A checkpoint cannot be found or fetched (exit 4)."""

    exit_code = ExitCode.SOURCE_UNAVAILABLE


class NothingCollected(MemauditError):
    """No probe was collected or selected (exit 5)."""

    exit_code = ExitCode.NO_PROBES


def did_you_mean(name: str, choices) -> str:
    """A ' Did you mean X?' suffix naming the closest of `choices`, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""
