"""`dlkit train-sequence`: a recurrent network that learns a time series from a CSV column.

The series is split chronologically (train, validation, test: the last part is never seen in
training); windows of `window` past values predict the next `horizon` values. The model is a
frozen least-squares AR(p) part plus a recurrent network that corrects it (`models.build`); the
transform (none, sqrt, log) and the order p are chosen by a rolling-origin evaluation that ends
with the validation part (`choose`). The
transform, mean and standard deviation (fitted on the training part only) live inside the saved
model, which takes and returns raw values. The test part is scored with MAE/RMSE next to three
baselines: the naive forecast (the last value, repeated), the seasonal-naive one (the value one
period earlier) and the classic AR(p) least-squares fit on the raw values.

Training checkpoints after every epoch (`dlkit.core.checkpoint`): an interrupted run resumes
with `--resume`, with the same per-epoch batch order (keyed by seed and epoch) and the best
validation epoch's weights kept in the checkpoint, so it ends as an uninterrupted run would.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit.core import plots
from dlkit.core.callbacks import KeepBest
from dlkit.core.console import Report, info
from dlkit.core.errors import UsageError
from dlkit.core.runner import Run, fingerprint
from dlkit.data.pipelines import epoch_batches
from dlkit.sequence import models
from dlkit.sequence.config import SequenceConfig


@dataclass(kw_only=True)
class SequenceResult:
    """What a training run reports (`--json` prints it)."""

    task: str
    arch: str
    csv: str
    column: str
    window: int
    horizon: int
    period: int
    period_source: str
    points: dict[str, int]
    test_mae: float
    test_rmse: float
    naive_mae: float
    naive_rmse: float
    seasonal_naive_mae: float
    seasonal_naive_rmse: float
    ar_baseline_order: int
    ar_mae: float
    ar_rmse: float
    transform: str
    ar_order: int
    choice_source: str
    epochs: int
    best_epoch: int
    train_seconds: float
    device: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]]

    def report(self) -> Report:
        return Report(f"train-sequence {self.column} ({self.arch})", {
            "test MAE / RMSE": f"{self.test_mae:.4g} / {self.test_rmse:.4g}",
            "naive MAE / RMSE": f"{self.naive_mae:.4g} / {self.naive_rmse:.4g}",
            f"seasonal naive (period {self.period}) MAE / RMSE":
                f"{self.seasonal_naive_mae:.4g} / {self.seasonal_naive_rmse:.4g}",
            f"AR({self.ar_baseline_order}) least squares MAE / RMSE":
                f"{self.ar_mae:.4g} / {self.ar_rmse:.4g}",
            "model": f"{self.transform} transform, AR({self.ar_order}) + {self.arch} "
                     f"({self.choice_source})",
            "best epoch": self.best_epoch, "training time (s)": self.train_seconds,
            "model folder": self.artifacts["model_dir"]},
            f"test_rmse={self.test_rmse:.4g} naive_rmse={self.naive_rmse:.4g} "
            f"seasonal_naive_rmse={self.seasonal_naive_rmse:.4g} "
            f"ar_rmse={self.ar_rmse:.4g} model={self.artifacts['model_dir']}", asdict(self))


@dataclass
class Parts:
    """Chronological split: indices where the validation and the test targets start."""

    values: np.ndarray
    val_start: int
    test_start: int


def split(values: np.ndarray, val_split: float, test_split: float, window: int,
          horizon: int) -> Parts:
    """Split chronologically; exit 2 when a part is too short for one window + horizon."""
    n = len(values)
    if n < window + horizon:
        raise UsageError(f"the series has {n} values, fewer than --window + --horizon = "
                         f"{window + horizon}; use a smaller --window or a longer series")
    test_start = n - max(horizon, int(round(n * test_split)))
    val_start = test_start - (int(round(n * val_split)) if val_split > 0 else 0)
    if val_split > 0 and test_start - val_start < horizon:
        val_start = test_start - horizon
    if val_start < window + horizon:
        raise UsageError(f"the series has {n} values: too short to keep a training part of at "
                         f"least --window + --horizon = {window + horizon} values after the "
                         "validation and test parts; use a smaller --window, --val-split or "
                         "--test-split")
    return Parts(values, val_start, test_start)


def windows(values: np.ndarray, start: int, stop: int, window: int,
            horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N, window) and targets (N, horizon) for every target run in [start, stop)."""
    firsts = np.arange(max(start, window), stop - horizon + 1)
    x = np.stack([values[t - window:t] for t in firsts]) if len(firsts) else \
        np.zeros((0, window))
    y = np.stack([values[t:t + horizon] for t in firsts]) if len(firsts) else \
        np.zeros((0, horizon))
    return x, y


def infer_period(train: np.ndarray, max_lag: int | None = None) -> int:
    """The lag (>= 2) of the highest autocorrelation peak of the training part; 1 if none."""
    x = train - train.mean()
    n = len(x)
    max_lag = min(max_lag or n // 3, n // 2)
    denom = float((x * x).sum()) or 1.0
    acf = np.array([float((x[:n - k] * x[k:]).sum()) / denom for k in range(max_lag + 1)])
    peaks = [k for k in range(2, max_lag) if acf[k] > acf[k - 1] and acf[k] >= acf[k + 1]
             and acf[k] > 0]
    return max(peaks, key=lambda k: acf[k]) if peaks else 1


def naive_forecasts(values: np.ndarray, x: np.ndarray, firsts: np.ndarray, horizon: int,
                    period: int) -> tuple[np.ndarray, np.ndarray]:
    """Naive (last value repeated) and seasonal-naive (value `period` steps back) forecasts."""
    naive = np.repeat(x[:, -1:], horizon, axis=1)
    seasonal = np.empty((len(firsts), horizon))
    for h in range(horizon):
        back = period * math.ceil((h + 1) / period)
        seasonal[:, h] = values[firsts + h - back]
    return naive, seasonal


@dataclass
class Choice:
    """The transform and the AR order of the model, and what chose them."""

    transform: str
    ar_order: int
    source: str


CV_FOLDS = 5  # rolling-origin folds that choose the transform and the AR order


def folds(parts: Parts, window: int, horizon: int) -> list[tuple[int, int]]:
    """Rolling-origin evaluation (Hyndman & Athanasopoulos, "Forecasting: principles and
    practice", 5.10): up to CV_FOLDS consecutive blocks as long as the validation part, the
    last one being the validation part; each is forecast by a fit on everything before it.
    Blocks whose history is shorter than two windows are left out. [] without validation."""
    size = parts.test_start - parts.val_start
    if size < horizon:
        return []
    cuts = [parts.test_start - k * size for k in range(CV_FOLDS, 0, -1)]
    return [(cut, cut + size) for cut in cuts if cut >= 2 * window + horizon or
            cut == parts.val_start]


def _ar_cv(values: np.ndarray, parts: Parts, window: int, horizon: int, transform: str,
           order: int) -> float:
    """Rolling-origin RMSE, in raw units, of AR(order) fitted on the transformed series."""
    t = models.forward(transform, values)
    squared = []
    for cut, stop in folds(parts, window, horizon):
        kernel, bias = models.ar_fit(*windows(t, 0, cut, window, horizon), order)
        xs, ys = windows(values, cut, stop, window, horizon)
        pred = models.inverse(transform, models.ar_predict(models.forward(transform, xs),
                                                           kernel, bias))
        squared.append(((pred - ys) ** 2).ravel())
    return float(np.sqrt(np.concatenate(squared).mean())) if squared else math.inf


def _bic_order(values: np.ndarray, parts: Parts, window: int, horizon: int) -> int:
    """The AR order with the lowest BIC on the training part (used without validation)."""
    x, y = windows(values, 0, parts.val_start, window, horizon)
    n = len(x)

    def bic(order: int) -> float:
        rss = float(((models.ar_predict(x, *models.ar_fit(x, y, order)) - y) ** 2).sum()) \
            or 1e-12
        return n * math.log(rss / n) + (order + 1) * math.log(n)

    return min(range(1, window + 1), key=bic)


def choose(values: np.ndarray, parts: Parts, config: SequenceConfig) -> Choice:
    """The transform and AR order: as the options say, else those whose AR fit forecasts best in
    a rolling-origin evaluation that ends with the validation part (`folds`: the validation
    part alone, a few dozen points for a short series, cannot tell the transforms apart; sqrt
    and log only when no value before the test part is negative); without validation windows,
    no transform and the order of the lowest BIC."""
    w, h = config.window, config.horizon
    has_val = parts.test_start - parts.val_start >= h
    auto_t = config.transform.value == "auto"
    non_negative = values[:parts.test_start].min() >= 0
    transforms = [config.transform.value] if not auto_t else \
        ["none"] + (["sqrt", "log"] if non_negative and has_val else [])
    orders = [config.ar_order] if config.ar_order else range(1, w + 1)
    if not has_val and config.ar_order is None:
        return Choice(transforms[0], _bic_order(values, parts, w, h),
                      "AR order by BIC on the training part: no validation windows")
    if len(transforms) == 1 and len(orders) == 1:
        return Choice(transforms[0], config.ar_order or 0, "as the options say")
    _, transform, order = min((_ar_cv(values, parts, w, h, t, p), t, p)
                              for t in transforms for p in orders)
    return Choice(transform, 0 if config.ar_order == 0 else order,
                  "chosen by rolling-origin evaluation up to the test part")


def ar_baseline(values: np.ndarray, parts: Parts, window: int,
                horizon: int) -> tuple[int, np.ndarray]:
    """The classic baseline: AR(p) least squares on the raw values, p chosen as `choose` does
    (BIC without validation), refitted on training + validation. Returns (p, test forecasts)."""
    order = min(range(1, window + 1),
                key=lambda p: _ar_cv(values, parts, window, horizon, "none", p)) \
        if folds(parts, window, horizon) else _bic_order(values, parts, window, horizon)
    x, y = windows(values, 0, parts.test_start, window, horizon)
    kernel, bias = models.ar_fit(x, y, order)
    return order, models.ar_predict(windows(values, parts.test_start, len(values), window,
                                            horizon)[0], kernel, bias)


def errors(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    diff = pred - truth
    return float(np.abs(diff).mean()), float(np.sqrt((diff ** 2).mean()))


def train_sequence(config: SequenceConfig) -> Report:
    """Train on the CSV column, score the test part against the baselines, save the folder."""
    from dlkit.data.tabular import read_series

    with Run(config, inputs=[config.csv]) as run:
        series = read_series(config.csv, config.column, config.time_column)
        parts = split(series.values, config.val_split, config.test_split, config.window,
                      config.horizon)
        values, w, h = parts.values, config.window, config.horizon
        # The choice and the statistics come from the training and validation parts only;
        # pure functions of the data, so a resume recomputes them.
        choice = choose(values, parts, config)
        transformed = models.forward(choice.transform, values)
        train_part = transformed[:parts.val_start]
        mean, std = float(train_part.mean()), float(train_part.std()) or 1.0
        x_tr, y_tr = windows(transformed, 0, parts.val_start, w, h)
        x_va, y_va = windows(transformed, parts.val_start, parts.test_start, w, h)
        x_te, y_te = windows(values, parts.test_start, len(values), w, h)
        period, period_source = ((config.period, "--period") if config.period else
                                 (infer_period(values[:parts.val_start]),
                                  "autocorrelation of the training part"))
        steps = -(-len(x_tr) // config.batch_size)
        runtime = run.start(fingerprint(values, parts.val_start, parts.test_start),
                            mixed_precision=False)  # a small RNN: float32 everywhere

        with run.scope():
            core = models.build(config.arch.value, w, h, config.units, choice.ar_order,
                                config.members)
            if choice.ar_order:
                models.set_ar(core, *models.ar_fit((x_tr - mean) / std, (y_tr - mean) / std,
                                                   choice.ar_order))
            core.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse",
                         metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
            done = run.restore(core)

        train_ds = _normalised(epoch_batches((x_tr.astype(np.float32), y_tr.astype(np.float32)),
                                             config.batch_size, config.seed, config.epochs,
                                             done), mean, std, config.members)
        val_ds = _normalised(_ordered(x_va, y_va, config.batch_size), mean, std,
                             config.members) if len(x_va) else None
        info(f"training AR({choice.ar_order}) + {config.arch.value}({config.units}) on "
             f"{choice.transform} values ({choice.source}) from {series.source} column "
             f"{series.name!r}: {len(x_tr)} train / {len(x_va)} validation / {len(x_te)} test "
             f"windows (window {w}, horizon {h}), {config.epochs} epochs"
             f"{f' (resuming after {done})' if done else ''}, {runtime.device}")
        best = KeepBest(run.checkpoint, run.history) if val_ds is not None else None
        history = run.fit(core, train_ds, steps=steps, validation=val_ds,
                          callbacks=[best] if best else [])
        best_epoch = (best.restore() if best else None) or run.epochs_completed

        model = models.with_scaling(
            models.for_serving(core, config.arch.value, h, config.units, choice.ar_order,
                               config.members), mean, std, choice.transform)
        pred = model.predict(x_te[..., None].astype("float32"), verbose=0)
        firsts = np.arange(max(parts.test_start, w), len(values) - h + 1)
        naive, seasonal = naive_forecasts(values, x_te, firsts, h, period)
        ar_order, ar_pred = ar_baseline(values, parts, w, h)
        scores = {"model": errors(pred, y_te), "naive": errors(naive, y_te),
                  "seasonal": errors(seasonal, y_te), "ar": errors(ar_pred, y_te)}
        points = {"train": parts.val_start, "validation": parts.test_start - parts.val_start,
                  "test": len(values) - parts.test_start}
        metadata = {
            "arch": config.arch.value, "column": series.name,
            # resolved: `export --quantize int8` reads it from any working directory
            "csv": series.source if series.source == "-" else str(Path(series.source).resolve()),
            "time_column": series.time_name, "window": w, "horizon": h, "input_shape": [w, 1],
            "preprocessing": {"input": f"the last {w} raw values of the series, oldest first",
                              "transform": {"kind": choice.transform, "source": choice.source,
                                            "where": "inside the model"},
                              "normalisation": {"mean": mean, "std": std,
                                                "of": "the transformed values",
                                                "fitted_on": "training part only",
                                                "where": "inside the model"}},
            "period": period, "period_source": period_source, "points": points,
            "metrics": {"test_mae": scores["model"][0], "test_rmse": scores["model"][1],
                        "naive_mae": scores["naive"][0], "naive_rmse": scores["naive"][1],
                        "seasonal_naive_mae": scores["seasonal"][0],
                        "seasonal_naive_rmse": scores["seasonal"][1],
                        "ar_baseline_order": ar_order, "ar_mae": scores["ar"][0],
                        "ar_rmse": scores["ar"][1]},
            "training": {"best_epoch": best_epoch, "batch_size": config.batch_size,
                         "learning_rate": config.learning_rate, "seed": config.seed,
                         "units": config.units, "members": config.members,
                         "ar_order": choice.ar_order,
                         "transform": choice.transform, "choice_source": choice.source},
        }

        def write_plots(folder: Path) -> None:
            plots.training_curves(history, folder / "plots" / "training_curves.png",
                                  f"train-sequence {config.arch.value}")
            forecast_plot(series, firsts, y_te, pred, naive, seasonal, period,
                           folder / "plots" / "forecast_vs_actual.png")

        run.save(model, metadata, write_plots)
        return run.result(
            SequenceResult, arch=config.arch.value, csv=series.source, column=series.name,
            window=w, horizon=h, period=period, period_source=period_source, points=points,
            **metadata["metrics"], transform=choice.transform, ar_order=choice.ar_order,
            choice_source=choice.source, best_epoch=best_epoch).report()


def _ordered(x: np.ndarray, y: np.ndarray, batch: int) -> Any:
    """Validation batches, in order."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(
        (x.astype(np.float32), y.astype(np.float32))).cache().batch(batch)


def _normalised(ds: Any, mean: float, std: float, members: int) -> Any:
    """Batches of normalised (window, 1) inputs and targets: (horizon,) for one member,
    (members, horizon) for an ensemble (every member learns the same target)."""
    import tensorflow as tf

    def target(b: Any) -> Any:
        b = (b - mean) / std
        return b if members == 1 else tf.repeat(b[:, None, :], members, axis=1)

    return ds.map(lambda a, b: (((a - mean) / std)[..., None], target(b)),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def forecast_plot(series: Any, firsts: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                   naive: np.ndarray, seasonal: np.ndarray, period: int, path: Path) -> None:
    """The test part: actual values and the one-step-ahead forecasts of model and baselines."""
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(10, 4))
    x_axis = _time_axis(series, firsts)
    ax.plot(x_axis, truth[:, 0], color="black", label="actual", linewidth=2)
    ax.plot(x_axis, pred[:, 0], label="model", marker="o", markersize=3)
    ax.plot(x_axis, naive[:, 0], label="naive (last value)", linestyle="--", alpha=0.7)
    ax.plot(x_axis, seasonal[:, 0], label=f"seasonal naive (period {period})", linestyle=":",
            alpha=0.7)
    ax.set_title(f"{series.name}: forecast against actual on the test part (first step ahead)")
    ax.set_xlabel(series.time_name or "step")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plots.save_figure(fig, path)


def _time_axis(series: Any, firsts: np.ndarray) -> Any:
    if series.times:
        try:
            return np.array([float(series.times[i]) for i in firsts])
        except ValueError:
            pass
    return firsts
