"""`dlkit forecast`: the next values after the end of a series, from a train-sequence model.

Reads the CSV's column (the one the model learned, unless `--column` says otherwise), feeds the
model the last `window` values and writes a CSV of the forecast on stdout (`step,value`, or the
next time stamps when the series' time column advances by a constant step). Beyond the model's
horizon, forecasts are fed back in as inputs. The model runs from the folder's `model.tflite`
through LiteRT (no TensorFlow import) or from `model.keras`, as `--backend` says.
"""

from __future__ import annotations

import csv
import sys
from typing import Any

import numpy as np

from dlkit.core.console import emit_json
from dlkit.core.errors import UsageError
from dlkit.sequence.config import ForecastConfig


def forecast(config: ForecastConfig) -> None:
    """Print the forecast as CSV (or, with --json, one JSON object)."""
    table = predict(config)
    if config.json:
        emit_json({"model": str(config.model), "columns": table["header"],
                   "rows": table["rows"]})
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    try:
        writer.writerow(table["header"])
        writer.writerows(table["rows"])
        sys.stdout.flush()
    except BrokenPipeError:  # the reader has gone (`| head -1`): a quiet end
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def predict(config: ForecastConfig) -> dict[str, Any]:
    """The next values after the end of the CSV's series: {"header": [...], "rows": [...]}."""
    from dlkit.core.artifacts import load_metadata
    from dlkit.core.serving import open_model
    from dlkit.data.tabular import next_times, read_series

    meta = load_metadata(config.model, "train-sequence")
    try:
        window, horizon, trained_column = int(meta["window"]), int(meta["horizon"]), \
            str(meta["column"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{config.model}/metadata.json lacks the model's window, horizon or "
                         "column; retrain the model") from None
    steps = horizon if config.steps is None else config.steps
    column = config.column or trained_column
    time_column = meta.get("time_column")
    series = read_series(config.csv, column, time_column, time_optional=True)
    if len(series.values) < window:
        raise UsageError(f"{series.source} has {len(series.values)} values; the model needs "
                         f"the last {window} (its --window)")
    model = open_model(config.model, config.backend, meta=meta)
    if model.input_shapes != [(window, 1)]:
        raise UsageError(f"{config.model}/metadata.json's window {window} does not match the "
                         "model; retrain it")
    history = list(series.values[-window:].astype(np.float32))
    produced: list[float] = []
    while len(produced) < steps:  # beyond the horizon: feed forecasts back in
        x = np.array(history[-window:], np.float32).reshape(1, window, 1)
        step = model(x)[0]
        produced.extend(float(v) for v in step)
        history.extend(float(v) for v in step)
    produced = produced[:steps]
    times = next_times(series.times, steps) if series.times else None
    first = (time_column if times else "step")
    labels = times or [str(i) for i in range(1, steps + 1)]
    return {"header": [first, column],
            "rows": [[t, f"{v:.6g}"] for t, v in zip(labels, produced, strict=True)]}
