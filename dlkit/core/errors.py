"""The project's exceptions and exit codes.

Every expected failure (bad option, missing data, corrupt file, a full disk) is raised as a
`DlkitError` carrying a one-line message and an exit code; `dlkit.cli` maps it to stderr and the
exit status in one place. An interrupt (Ctrl-C, SIGTERM) is its own type, `Interrupted`, so that
code which must act on it (save what can be saved) catches the type, not an exit code.

A message that quotes what a library raised quotes its `first_line` (library messages run to
pages, and some are empty); `keras_load_error` is the one line for a model Keras refused.
"""

from __future__ import annotations

import errno
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1  # runtime failure: data missing, training failed, disk full
EXIT_USAGE = 2  # bad usage or bad input
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM, after saving what can be saved

# The errors a full or read-only disk gives: what was being written is an environment failure.
DISK_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}


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


class Interrupted(DlkitError):
    """Ctrl-C or SIGTERM ended the run (exit 130); the message says what was kept."""

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message, EXIT_INTERRUPTED)


def first_line(exc: BaseException | str, limit: int = 300, default: str = "") -> str:
    """What a one-line message can quote of an exception's (or a library's) text: its first
    non-blank line, stripped, at most `limit` characters; `default` when there is none (an
    exception raised without a message)."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip()[:limit] if lines else default


def disk_error(what: str, exc: OSError) -> DlkitError:
    """The one line for an OSError while writing `what` (disk full, read-only, ...)."""
    reason = " ".join((exc.strerror or str(exc) or type(exc).__name__).split())  # one line
    if exc.errno in DISK_ERRNOS:
        return DlkitError(f"cannot write {what} ({reason}); free some space or choose another "
                          "place, then run the command again")
    return DlkitError(f"cannot write {what} ({reason})")


def disk_cause(exc: BaseException) -> OSError | None:
    """The OSError behind a failed write, or None when `exc` is not one (TensorFlow reports a
    full disk as an OpError, e.g. a ResourceExhaustedError, with the reason in its text)."""
    if isinstance(exc, DlkitError):
        return None
    if isinstance(exc, OSError):
        return exc
    text = str(exc)
    for number, phrase in ((errno.ENOSPC, "No space left on device"),
                           (errno.EROFS, "Read-only file system"),
                           (errno.EDQUOT, "Disk quota exceeded"),
                           (errno.EFBIG, "File too large")):
        if phrase in text:
            return OSError(number, phrase)
    return None


# What Keras safe mode refuses to deserialise, as its messages name it, and what to say.
_SAFE_MODE_REFUSALS = (
    ("`Lambda` layer", "its Lambda layer holds Python code"),
    ("Python lambda", "it holds a Python lambda"),
    ("TFSMLayer", "its TFSMLayer would load and run an external SavedModel"),
    ("vocabulary file", "a layer would read a vocabulary file outside the archive"),
    ("torch.nn.Module", "it holds a pickled PyTorch module"),
)


def keras_load_error(path: Path | str, exc: BaseException) -> UsageError:
    """The one line for a `.keras` file (or preset) Keras could not load. Keras safe mode
    (always on in dlkit) refusing code in the file is said as such: the file is not damaged,
    it asks to run code dlkit will not run."""
    text = str(exc)
    if "safe_mode" in text or "arbitrary code execution" in text:
        why = next((w for needle, w in _SAFE_MODE_REFUSALS if needle in text),
                   "it asks to run code")
        return UsageError(f"Keras safe mode refused to run code from {path} ({why}); dlkit "
                          "loads models in safe mode only: rebuild the model without it, or "
                          "retrain it with dlkit")
    return UsageError(f"cannot load {path}: {first_line(text, default=type(exc).__name__)}")
