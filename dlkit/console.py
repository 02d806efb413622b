"""Where output goes: results on stdout, everything else (logs, progress, warnings) on stderr.

No TensorFlow here: this module is imported by `dlkit --help`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

# stderr console for humans; `highlight=False` keeps paths and numbers uncoloured in logs.
err = Console(stderr=True, highlight=False, soft_wrap=True)

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence informational messages (warnings and errors still print)."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def stderr_is_terminal() -> bool:
    """True when stderr is an interactive terminal (rich bars) rather than a log or pipe."""
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("1", "true")


def info(message: str) -> None:
    """An informational line on stderr (suppressed by --quiet)."""
    if not _quiet:
        err.print(message, markup=False)


def warn(message: str) -> None:
    """A warning line on stderr (never suppressed)."""
    err.print(f"warning: {message}", markup=False, style="yellow")


def error_line(message: str) -> None:
    """The one `error: ...` line for a failure."""
    err.print(f"error: {message}", markup=False, style="bold red")


def emit_json(obj: Any) -> None:
    """Print exactly one JSON object on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(value: Any) -> Any:
    # numpy scalars and Paths show up in results; keep JSON plain.
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def summary_table(title: str, rows: dict[str, Any]) -> None:
    """A short two-column table on stderr summarising a run (suppressed by --quiet)."""
    if _quiet:
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, _format(value))
    err.print(table)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
