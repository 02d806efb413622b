"""Reading users' CSV files: a numeric time series for `train-sequence` / `forecast`, and
(text, label) rows for `train-text-classifier`.

Plain `csv` module, no pandas: every problem (missing file, missing column, a non-numeric cell, an
empty file) becomes one `UsageError` line that names the file, the row and what to do.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlkit.core.errors import UsageError
from dlkit.core.files import TEXT_LIMIT, read_bytes, read_stdin


@dataclass
class Series:
    """One numeric column of a CSV, in file order, with its (optional) time column as text."""

    name: str
    values: np.ndarray  # float64, shape (N,)
    times: list[str] | None
    time_name: str | None
    source: str


def read_rows(path: Path | str) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows of a CSV file (`-` reads stdin), at most TEXT_LIMIT bytes;
    blank lines are skipped."""
    source = str(path)
    try:
        if source == "-":
            text = read_stdin("the CSV", TEXT_LIMIT).decode("utf-8-sig")
        else:
            text = read_bytes(path, "CSV file", "check the --csv path",
                              limit=TEXT_LIMIT).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{source} is not UTF-8 text (byte {exc.start}); save it as UTF-8 "
                         "CSV") from None
    try:
        rows = [row for row in csv.reader(text.splitlines()) if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise UsageError(f"{source} is not a valid CSV file ({exc})") from None
    if not rows:
        raise UsageError(f"{source} is empty; give a CSV file with a header row")
    header = [h.strip() for h in rows[0]]
    return header, rows[1:]


def column_index(header: list[str], name: str, source: str, option: str) -> int:
    """Where column `name` is in `header`; exit 2 naming the columns there are when it is not."""
    if name in header:
        return header.index(name)
    raise UsageError(f"{source} has no column {name!r} (columns: {', '.join(header)}); "
                     f"pick one with {option}")


def read_series(path: Path | str, column: str, time_column: str | None = None,
                time_optional: bool = False) -> Series:
    """Read a numeric column (and optionally a time column) of a CSV file.

    With `time_optional`, a missing time column is ignored instead of being an error.
    """
    header, rows = read_rows(path)
    source = str(path)
    index = column_index(header, column, source, "--column")
    if time_column and time_optional and time_column not in header:
        time_column = None
    t_index = column_index(header, time_column, source, "--time-column") if time_column else None
    values = np.empty(len(rows), np.float64)
    for i, row in enumerate(rows):
        cell = row[index].strip() if index < len(row) else ""
        try:
            values[i] = float(cell)
        except ValueError:
            raise UsageError(f"{source} row {i + 2}: column {column!r} holds {cell!r}, not a "
                             "number; fix or remove that row") from None
        if not np.isfinite(values[i]):
            raise UsageError(f"{source} row {i + 2}: column {column!r} holds {cell!r}; fill "
                             "in or remove missing values")
    times = ([row[t_index].strip() if t_index < len(row) else "" for row in rows]
             if t_index is not None else None)
    return Series(column, values, times, time_column, source)


def read_labelled_text(path: Path | str, text_column: str,
                       label_column: str) -> tuple[list[str], list[str]]:
    """(texts, labels) from a CSV; rows with an empty text or label are skipped."""
    header, rows = read_rows(path)
    source = str(path)
    t = column_index(header, text_column, source, "--text-column")
    k = column_index(header, label_column, source, "--label-column")
    texts, labels = [], []
    for row in rows:
        text = row[t].strip() if t < len(row) else ""
        label = row[k].strip() if k < len(row) else ""
        if text and label:
            texts.append(text)
            labels.append(label)
    if not texts:
        raise UsageError(f"{source} has no rows with both {text_column!r} and {label_column!r} "
                         "filled in")
    return texts, labels


def next_times(times: list[str] | None, count: int) -> list[str] | None:
    """The `count` time stamps after `times` when they advance by a constant step (numbers or
    ISO dates); None when they do not."""
    if not times or len(times) < 2:
        return None
    try:
        numbers = np.array([float(t) for t in times])
        step = numbers[-1] - numbers[-2]
        if step > 0 and np.allclose(np.diff(numbers[-10:]), step):
            integral = all("." not in t and "e" not in t.lower() for t in times[-2:])
            future = numbers[-1] + step * np.arange(1, count + 1)
            return [str(int(round(v))) if integral else f"{v:g}" for v in future]
        return None
    except ValueError:
        pass
    try:
        dates = np.array(times[-10:], dtype="datetime64")
    except ValueError:
        return None
    step = dates[-1] - dates[-2]
    if step <= np.timedelta64(0) or not (np.diff(dates) == step).all():
        return None
    return [str(dates[-1] + step * k) for k in range(1, count + 1)]
