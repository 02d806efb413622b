"""The project's one exception type and its exit codes.

Every expected failure (bad option, missing data, corrupt file) is raised as a `DlkitError`
carrying a one-line message and an exit code; `dlkit.cli.main` maps it to stderr and the exit
status in one place.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # runtime failure: data missing, training failed
EXIT_USAGE = 2  # bad usage or bad input
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM, after saving what can be saved


class DlkitError(Exception):
    """A failure the user can act on: `error: <message>` on stderr, then exit `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class UsageError(DlkitError):
    """Bad usage or bad input (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class DataError(DlkitError):
    """Data that is missing or unreadable (exit 1 unless the user pointed at it: then 2)."""


def require_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise `unknown --option 'x'; choose one of a, b` unless `value` is one of `choices`."""
    if value not in choices:
        raise UsageError(f"unknown {option} {value!r}; choose one of {', '.join(choices)}")

