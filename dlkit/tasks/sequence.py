"""`dlkit train-sequence` and `dlkit forecast`: a recurrent network that learns a time series.

The series is split chronologically (train, validation, test: the last part is never seen in
training); windows of `window` past values predict the next `horizon` values. The mean and standard
deviation are fitted on the training part only and live inside the saved model, which takes and
returns raw values. The test part is scored with MAE/RMSE next to two baselines any forecaster
must beat: the naive forecast (the last value, repeated) and the seasonal-naive one (the value
one period earlier).

Training checkpoints after every epoch (`dlkit.checkpoint`): an interrupted run resumes with
`--resume`, with the same per-epoch batch order (keyed by seed and epoch) and the best validation
epoch's weights kept in the checkpoint, so it ends as an uninterrupted run would.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.errors import UsageError, require_choice
from dlkit.training import TrainConfig

ARCHS = ("simplernn", "lstm", "gru")


@dataclass
class SequenceConfig(TrainConfig):
    csv: str = ""
    column: str = ""
    time_column: str | None = None
    arch: str = "simplernn"
    window: int = 24
    horizon: int = 1
    units: int = 50
    test_split: float = 0.15
    period: int | None = None

    def validate(self) -> None:
        super().validate()
        require_choice("--arch", self.arch, ARCHS)
        for name, value in (("--window", self.window), ("--horizon", self.horizon),
                            ("--units", self.units)):
            if value < 1:
                raise UsageError(f"{name} must be at least 1 (got {value})")
        if not 0 < self.test_split < 1 or self.val_split + self.test_split >= 0.9:
            raise UsageError("--test-split must be in (0, 1) and leave at least 10% for "
                             f"training with --val-split (got {self.test_split}, "
                             f"{self.val_split})")
        if self.period is not None and self.period < 1:
            raise UsageError(f"--period must be at least 1 (got {self.period})")
        if not self.column:
            raise UsageError("--column is required: the name of the CSV column to learn")


@dataclass
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
    epochs: int
    best_epoch: int
    train_seconds: float
    device: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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


def errors(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    diff = pred - truth
    return float(np.abs(diff).mean()), float(np.sqrt((diff ** 2).mean()))


def run(config: SequenceConfig) -> SequenceResult:
    """Train on the CSV column, score the test part against the baselines, save the folder."""
    from dlkit.artifacts import check_output
    from dlkit.data.tabular import read_series

    config.validate()
    series = read_series(config.csv, config.column, config.time_column)
    parts = split(series.values, config.val_split, config.test_split, config.window,
                  config.horizon)
    config.output = check_output(config.output)
    from dlkit import runtime as rt

    runtime = rt.start(config.seed, config.strategy, config.deterministic,
                       mixed_precision=False)  # a small RNN: float32 everywhere
    return _train(config, series, parts, runtime)


def _train(config: SequenceConfig, series: Any, parts: Parts, runtime: Any) -> SequenceResult:
    from dlkit.checkpoint import KeepBest, ReseedEachEpoch, fit_resumable
    from dlkit.console import info
    from dlkit.data.pipelines import epoch_batches
    from dlkit.training import Progress, check_finite

    values = parts.values
    train_part = values[:parts.val_start]
    # Fitted on the training part only; a pure function of the data, so a resume recomputes it.
    mean, std = float(train_part.mean()), float(train_part.std()) or 1.0
    w, h = config.window, config.horizon
    x_tr, y_tr = windows(values, 0, parts.val_start, w, h)
    x_va, y_va = windows(values, parts.val_start, parts.test_start, w, h)
    test_windows = len(windows(values, parts.test_start, len(values), w, h)[0])
    period, period_source = ((config.period, "--period") if config.period else
                             (infer_period(train_part), "autocorrelation of the training part"))

    steps = -(-len(x_tr) // config.batch_size)
    checkpoint = _checkpoint(config, series, values)
    with runtime.strategy.scope():
        core = _compiled_core(config)
        done, hist, timer = checkpoint.begin(core, config.resume)
    train_ds = _normalised(epoch_batches((x_tr.astype(np.float32), y_tr.astype(np.float32)),
                                         config.batch_size, config.seed, config.epochs, done),
                           mean, std)
    val_ds = _normalised(_ordered(x_va, y_va, config.batch_size), mean, std) \
        if len(x_va) else None
    info(f"training {config.arch}({config.units}) on {series.source} column {series.name!r}: "
         f"{len(x_tr)} train / {len(x_va)} validation / {test_windows} test windows "
         f"(window {w}, horizon {h}), {config.epochs} epochs"
         f"{f' (resuming after {done})' if done else ''}, {runtime.device}")
    callbacks: list[Any] = [ReseedEachEpoch(config.seed), timer, Progress(config.epochs, steps)]
    best = None
    if val_ds is not None:  # keep the weights of the best validation epoch, across resumes
        best = KeepBest(checkpoint, hist)
        callbacks.append(best)
    fit_resumable(core, train_ds, checkpoint, config.epochs, done, hist, timer.seconds,
                  callbacks, validation_data=val_ds, steps_per_epoch=steps)
    check_finite(hist)
    best_epoch = (best.restore() if best else None) or config.epochs
    return _finish(config, series, parts, runtime, core, (mean, std), (period, period_source),
                   hist, timer.seconds, best_epoch, checkpoint)


def _finish(config: SequenceConfig, series: Any, parts: Parts, runtime: Any, core: Any,
            scaling: tuple[float, float], period_info: tuple[int, str],
            hist: dict[str, list[float]], epoch_seconds: list[float], best_epoch: int,
            checkpoint: Any) -> SequenceResult:
    """Score the test part against the baselines, save the model folder, drop the checkpoint."""
    from dlkit import artifacts
    from dlkit.nets import sequence as nets

    values, w, h = parts.values, config.window, config.horizon
    (mean, std), (period, period_source) = scaling, period_info
    x_te, y_te = windows(values, parts.test_start, len(values), w, h)
    train_seconds = float(sum(epoch_seconds))
    model = nets.with_scaling(core, mean, std)
    pred = model.predict(x_te[..., None].astype("float32"), verbose=0)
    firsts = np.arange(max(parts.test_start, w), len(values) - h + 1)
    naive, seasonal = naive_forecasts(values, x_te, firsts, h, period)
    scores = {"model": errors(pred, y_te), "naive": errors(naive, y_te),
              "seasonal": errors(seasonal, y_te)}
    points = {"train": parts.val_start, "validation": parts.test_start - parts.val_start,
              "test": len(values) - parts.test_start}
    metadata = {
        "task": "train-sequence", "arch": config.arch, "csv": series.source,
        "column": series.name, "time_column": series.time_name, "window": w, "horizon": h,
        "input_shape": [w, 1],
        "preprocessing": {"input": f"the last {w} raw values of the series, oldest first",
                          "normalisation": {"mean": mean, "std": std,
                                            "fitted_on": "training part only",
                                            "where": "inside the model"}},
        "period": period, "period_source": period_source, "points": points,
        "metrics": {"test_mae": scores["model"][0], "test_rmse": scores["model"][1],
                    "naive_mae": scores["naive"][0], "naive_rmse": scores["naive"][1],
                    "seasonal_naive_mae": scores["seasonal"][0],
                    "seasonal_naive_rmse": scores["seasonal"][1]},
        "history": hist,
        "training": {"epochs": config.epochs, "best_epoch": best_epoch,
                     "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                     "seed": config.seed, "units": config.units, "seconds": train_seconds,
                     "epoch_seconds": epoch_seconds, "device": runtime.device},
    }

    def write_plots(folder: Path) -> None:
        from dlkit import plots

        plot_dir = folder / artifacts.PLOTS
        plots.training_curves(hist, plot_dir / "training_curves.png",
                              f"train-sequence {config.arch}")
        _forecast_plot(series, firsts, y_te, pred, naive, seasonal, period,
                       plot_dir / "forecast_vs_actual.png")

    paths = artifacts.save_model_folder(config.output, model, metadata, write_plots)
    checkpoint.remove()
    return SequenceResult(
        "train-sequence", config.arch, series.source, series.name, w, h, period, period_source,
        points, scores["model"][0], scores["model"][1], scores["naive"][0], scores["naive"][1],
        scores["seasonal"][0], scores["seasonal"][1], config.epochs, best_epoch, train_seconds,
        runtime.device, paths, hist)


def _checkpoint(config: SequenceConfig, series: Any, values: np.ndarray) -> Any:
    """The run's resume folder, tied to the options that shape training and to the data."""
    import hashlib

    from dlkit.checkpoint import Checkpoint

    digest = hashlib.sha256(np.ascontiguousarray(values, np.float64).tobytes()).hexdigest()
    return Checkpoint(config.output, {
        "task": "train-sequence", "column": series.name, "data_sha256": digest[:16],
        "arch": config.arch, "window": config.window, "horizon": config.horizon,
        "units": config.units, "epochs": config.epochs, "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "seed": config.seed,
        "val_split": config.val_split, "test_split": config.test_split})


def _compiled_core(config: SequenceConfig) -> Any:
    """The network in normalised units, compiled as every run (new or resumed) compiles it."""
    import keras

    from dlkit.nets import sequence as nets

    core = nets.build(config.arch, config.window, config.horizon, config.units)
    core.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="mse",
                 metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    return core


def _ordered(x: np.ndarray, y: np.ndarray, batch: int) -> Any:
    """Validation batches, in order."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(
        (x.astype(np.float32), y.astype(np.float32))).cache().batch(batch)


def _normalised(ds: Any, mean: float, std: float) -> Any:
    """Batches of normalised (window, 1) inputs and (horizon,) targets."""
    import tensorflow as tf

    return ds.map(lambda a, b: (((a - mean) / std)[..., None], (b - mean) / std),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _forecast_plot(series: Any, firsts: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                   naive: np.ndarray, seasonal: np.ndarray, period: int, path: Path) -> None:
    """The test part: actual values and the one-step-ahead forecasts of model and baselines."""
    from dlkit.plots import _pyplot

    plt = _pyplot()
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _time_axis(series: Any, firsts: np.ndarray) -> Any:
    if series.times:
        try:
            return np.array([float(series.times[i]) for i in firsts])
        except ValueError:
            pass
    return firsts


@dataclass
class ForecastConfig:
    model: Path
    csv: str
    column: str | None = None
    steps: int | None = None


def forecast(config: ForecastConfig) -> dict[str, Any]:
    """The next values after the end of the CSV's series: {"header": [...], "rows": [...]}."""
    from dlkit.artifacts import load_keras_model, load_metadata
    from dlkit.data.tabular import next_times, read_series

    meta = load_metadata(config.model, "train-sequence")
    window, horizon = int(meta["window"]), int(meta["horizon"])
    steps = horizon if config.steps is None else config.steps
    if steps < 1:
        raise UsageError(f"--steps must be at least 1 (got {steps})")
    column = config.column or meta["column"]
    time_column = meta.get("time_column")
    series = read_series(config.csv, column, time_column, time_optional=True)
    if len(series.values) < window:
        raise UsageError(f"{series.source} has {len(series.values)} values; the model needs "
                         f"the last {window} (its --window)")
    model = load_keras_model(config.model)
    history = list(series.values[-window:].astype(np.float32))
    produced: list[float] = []
    while len(produced) < steps:  # beyond the horizon: feed forecasts back in
        x = np.array(history[-window:], np.float32).reshape(1, window, 1)
        step = model.predict(x, verbose=0)[0]
        produced.extend(float(v) for v in step)
        history.extend(float(v) for v in step)
    produced = produced[:steps]
    times = next_times(series.times, steps) if series.times else None
    first = (time_column if times else "step")
    labels = times or [str(i) for i in range(1, steps + 1)]
    return {"header": [first, column],
            "rows": [[t, f"{v:.6g}"] for t, v in zip(labels, produced, strict=True)]}
