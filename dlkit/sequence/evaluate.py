"""`dlkit evaluate` on a forecaster's model folder (train-sequence): every window of a CSV's
series is forecast and scored with MAE/RMSE beside the naive and seasonal-naive forecasts (in the
series' units); with `--plots`, the forecasts against the actual values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.console import Report
from dlkit.core.errors import UsageError
from dlkit.core.evaluation import EvaluateConfig


@dataclass(kw_only=True)
class ForecastScores:
    """What `evaluate` reports for a forecaster (in the series' units)."""

    model: str
    data: str
    column: str
    windows: int
    mae: float
    rmse: float
    naive_mae: float
    naive_rmse: float
    seasonal_naive_mae: float
    seasonal_naive_rmse: float
    period: int
    plots: list[str] = field(default_factory=list)

    def report(self) -> Report:
        return Report(f"evaluate {self.model} on {self.data}", {
            "windows": self.windows, "MAE / RMSE": f"{self.mae:.4g} / {self.rmse:.4g}",
            "naive MAE / RMSE": f"{self.naive_mae:.4g} / {self.naive_rmse:.4g}",
            f"seasonal naive (period {self.period}) MAE / RMSE":
                f"{self.seasonal_naive_mae:.4g} / {self.seasonal_naive_rmse:.4g}"},
            f"rmse={self.rmse:.4g} naive_rmse={self.naive_rmse:.4g} "
            f"seasonal_naive_rmse={self.seasonal_naive_rmse:.4g} windows={self.windows}",
            asdict(self))


def evaluate_forecaster(config: EvaluateConfig, meta: dict[str, Any]) -> Report:
    """Every window of the CSV's series forecast and scored (see the module doc)."""
    from dlkit.core.runtime import import_tensorflow
    from dlkit.core.serving import open_model
    from dlkit.data.tabular import read_series

    import_tensorflow()
    from dlkit.sequence.train import errors, forecast_plot, naive_forecasts, windows

    try:
        w, h, period = int(meta["window"]), int(meta["horizon"]), int(meta.get("period") or 1)
        column = config.column or str(meta["column"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{config.model}/metadata.json lacks the forecaster's window, horizon "
                         "or column; retrain the model") from None
    series = read_series(config.data, column, meta.get("time_column"), time_optional=True)
    values = series.values
    x, y = windows(values, 0, len(values), w, h)
    firsts = np.arange(w, len(values) - h + 1)
    keep = firsts >= period * int(np.ceil(h / period))  # where the seasonal naive is defined
    if not keep.any():
        raise UsageError(f"{series.source} has {len(values)} values; evaluating needs more than "
                         f"--window + --horizon ({w + h}) and the period ({period})")
    x, y, firsts = x[keep], y[keep], firsts[keep]
    pred = open_model(config.model, config.backend, meta=meta)(x[..., None].astype("float32"))
    naive, seasonal = naive_forecasts(values, x, firsts, h, period)
    (mae, rmse), (n_mae, n_rmse), (s_mae, s_rmse) = (errors(pred, y), errors(naive, y),
                                                     errors(seasonal, y))
    scores = ForecastScores(model=str(config.model), data=str(config.data), column=column,
                            windows=len(x), mae=mae, rmse=rmse, naive_mae=n_mae,
                            naive_rmse=n_rmse, seasonal_naive_mae=s_mae,
                            seasonal_naive_rmse=s_rmse, period=period)
    if config.plots is not None:
        folder = Path(config.plots).expanduser()
        folder.mkdir(exist_ok=True)
        path = folder / "forecast_vs_actual.png"
        forecast_plot(series, firsts, y, pred, naive, seasonal, period, path)
        scores.plots.append(str(path))
    return scores.report()
