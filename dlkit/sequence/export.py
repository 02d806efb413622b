"""`dlkit export --quantize int8` on a train-sequence folder: windows of the training series it
calibrates on (registered as the "calibration" of train-sequence in `dlkit.core.registry`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def calibration_windows(meta: dict[str, Any], count: int, rng: np.random.Generator,
                        ) -> np.ndarray:
    """At most `count` windows of the training CSV's series, float32 (N, window, 1)."""
    from dlkit.data.tabular import read_series

    window = int(meta["window"])
    series = read_series(str(meta["csv"]), str(meta["column"]), meta.get("time_column"),
                         time_optional=True)
    values = np.asarray(series.values, np.float32)
    starts = np.arange(max(1, len(values) - window + 1))
    starts = starts[rng.permutation(len(starts))[:count]]
    return np.stack([values[s:s + window] for s in starts])[..., None]
