"""Where output goes: results on stdout, everything else (logs, progress, warnings) on stderr.

Nothing printed through rich here is read as rich markup: class names, paths, prompts and
model names come from users and model files, and `[/]` or `[red]x` in one must show as typed
(markup would crash on the first and swallow the second). Style is given with `style=` or
`rich.text.Text`, never with markup in the text.

Tables of results (`result_table`) are never cut: whole cells on a terminal, tab-separated lines
in a pipe or a file.

No TensorFlow here: this module is imported by `dlkit --help`.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def open_standard_streams() -> None:
    """Give every closed standard stream (0, 1, 2) /dev/null, before anything opens a file.

    A process started with `2>&-` or `<&-` has no file descriptor there, and the next file it
    opens (a lock, a checkpoint) would take that number: TensorFlow's C++ logs would then be
    written into it. With /dev/null in its place, the command runs and reports through the
    streams that are open."""
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, mode)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
    for name, errors in (("stdout", "surrogateescape"), ("stderr", "backslashreplace")):
        stream = getattr(sys, name)
        if hasattr(stream, "reconfigure"):  # a file name that is not UTF-8 keeps its bytes
            stream.reconfigure(errors=errors)
    for name, fd, mode in (("stdin", 0, "r"), ("stdout", 1, "w"), ("stderr", 2, "w")):
        if getattr(sys, name) is None:  # Python found the stream closed at start-up
            stream = io.TextIOWrapper(io.FileIO(fd, mode, closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
            setattr(sys, name, stream)
            setattr(sys, f"__{name}__", stream)


class _Stderr:
    """The current sys.stderr, looked up at each write (pytest and Typer's test runner swap it);
    a closed or missing stderr swallows the text, so the command still runs."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (OSError, ValueError, AttributeError):
            return len(text)

    def flush(self) -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass

    def isatty(self) -> bool:
        try:
            return sys.stderr.isatty()
        except (OSError, ValueError, AttributeError):
            return False

    def fileno(self) -> int:
        return sys.stderr.fileno()


# stderr console for humans; `highlight=False` keeps paths and numbers uncoloured in logs, and
# `markup=False` shows every string as it is (see the module doc), tables' cells included.
err = Console(file=_Stderr(), highlight=False, markup=False,  # type: ignore[arg-type]
              soft_wrap=True)

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence informational messages (warnings and errors still print)."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (rich bars) rather than a log or pipe."""
    return err.file.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def info(message: str) -> None:
    """An informational line on stderr (suppressed by --quiet)."""
    if not _quiet:
        err.print(message)


def warn(message: str) -> None:
    """A warning line on stderr (never suppressed)."""
    err.print(f"warning: {message}", style="yellow")


def error_line(message: str) -> None:
    """The one `error: ...` line for a failure."""
    err.print(f"error: {message}", style="bold red")


def to_json(obj: Any) -> str:
    """JSON text of a result: NaN and infinities become null (they are not JSON), NumPy values
    and paths plain values."""
    return json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False)


def emit_json(obj: Any) -> None:
    """Print exactly one JSON object on stdout."""
    sys.stdout.write(to_json(obj) + "\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a NumPy scalar
        return _finite(value.item())
    if hasattr(value, "tolist"):
        return _finite(value.tolist())
    return value


def _json_default(value: Any) -> Any:
    return str(value)  # paths, enums


@dataclass
class Report:
    """What a command prints when it ends: a summary table on stderr and one result line on
    stdout, or with --json the `data` object alone on stdout."""

    title: str
    rows: dict[str, Any]
    line: str | None
    data: dict[str, Any] = field(default_factory=dict)
    code: int = 0

    def show(self, as_json: bool) -> None:
        if as_json:
            emit_json(self.data)
            return
        summary_table(self.title, self.rows)
        if self.line is not None:
            sys.stdout.write(self.line + "\n")
            sys.stdout.flush()


def summary_table(title: str, rows: dict[str, Any]) -> None:
    """A short two-column table on stderr summarising a run (suppressed by --quiet)."""
    if _quiet or not rows:
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, _format(value))
    err.print(table)


def result_table(columns: Sequence[str], rows: Iterable[Sequence[str | Text]]) -> None:
    """A table of results on stdout, never cut. On a terminal, a rich table whose long cells
    fold onto more lines (no "…"); in a pipe or a file, where no width is right and scripts
    read it, tab-separated lines under a header line, each cell whole (`tsv_field`), for
    `cut`, `awk` and `sort`. A `Text` cell keeps its style on a terminal."""
    if not _stdout_is_terminal():
        lines = ["\t".join(columns)]
        lines += ["\t".join(tsv_field(str(cell)) for cell in row) for row in rows]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        return
    table = Table(*columns)
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        table.add_row(*row)
    Console(highlight=False, markup=False).print(table)


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (OSError, ValueError, AttributeError):
        return False


def tsv_field(text: str) -> str:
    """`text` as one field of a tab-separated line: backslash, tab, newline and carriage return
    as `\\\\`, `\\t`, `\\n`, `\\r`; bytes that are not UTF-8 (a file name in another
    encoding) as `\\xNN`. Ordinary text is unchanged."""
    out = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    out = out.replace("\r", "\\r")
    return out.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
        if has_surrogates(out) else out


def has_surrogates(text: str) -> bool:
    """Whether `text` holds bytes that were not UTF-8 (Python keeps them as lone surrogates)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def fmt(value: Any, digits: int = 4) -> str:
    """A metric for a result line: `nan` for a missing one."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "nan"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return "-" if value is None else str(value)
