"""The Keras callbacks every training run gets from the runner (and the few a family adds).

- `Progress`: a rich bar per epoch on a terminal's stderr, one plain line per epoch in logs;
- `EpochTimer`: the wall time of each epoch;
- `TimeBudget`: the run's progress (steps or minutes, whichever is further) and the time limit;
- `LearningRate`: sets the optimizer's rate from `dlkit.core.schedules` at each step;
- `StopOnNaN`: stops at the first non-finite loss, validation metric or weight, so a diverged
  epoch is never checkpointed and the run ends without replacing a good model;
- `ReseedEachEpoch`: the same dropout masks in a resumed run as in an uninterrupted one;
- `SaveEachEpoch`: the checkpoint at every epoch's end (`dlkit.core.checkpoint`);
- `KeepBest`: the best validation epoch's weights, kept across resumes;
- `GridEachEpoch`: a generator's sample grid after each epoch, kept across resumes;
- `TensorBoard` and `SampleImages`: `--tensorboard` logs, a write that fails (a full disk) being
  the one `cannot write` line like every other write.

Imports Keras at module level: import this module inside command bodies only.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit.core.checkpoint import Checkpoint, deferred_interrupts, weights_h5
from dlkit.core.console import err, is_quiet, stderr_is_terminal
from dlkit.core.errors import disk_cause, disk_error
from dlkit.core.files import write_atomic
from dlkit.core.schedules import Schedule


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of each epoch (validation included)."""

    def __init__(self, seconds: list[float] | None = None) -> None:
        super().__init__()
        self.seconds: list[float] = list(seconds or [])

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class Progress(keras.callbacks.Callback):
    """Per-epoch progress on stderr: a rich bar on a terminal, one plain line per epoch in logs."""

    def __init__(self, epochs: int, steps: int | None, label: str = "epoch") -> None:
        super().__init__()
        self.epochs, self.steps, self.label = epochs, steps, label
        self._bar: Any = None
        self._start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        if stderr_is_terminal() and not is_quiet():
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
                            console=err, transient=True)
            self._bar.start()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        if self._bar is not None:
            self._task = self._bar.add_task(f"{self.label} {epoch + 1}/{self.epochs}",
                                            total=self.steps, metrics="")

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self._bar is not None:
            # `batch` is the last step run; with steps_per_execution > 1 calls skip steps.
            self._bar.update(self._task, completed=batch + 1,
                             metrics=format_metrics(logs or {}, train=True))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        line = (f"{self.label} {epoch + 1}/{self.epochs}  {format_metrics(logs or {})}  "
                f"{time.perf_counter() - self._start:.1f}s")
        if self._bar is not None:
            self._bar.remove_task(self._task)
            self._bar.console.print(line, markup=False, highlight=False)
        elif not is_quiet():
            err.print(line, markup=False, highlight=False)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def format_metrics(logs: dict[str, Any], train: bool = False) -> str:
    """`loss 0.2809  accuracy 0.8987 ...` from a Keras logs dict."""
    items = [(k, v) for k, v in logs.items() if k != "learning_rate"
             and not (train and k.startswith("val_"))]
    return "  ".join(f"{k} {float(v):.4f}" for k, v in items)


class TimeBudget(keras.callbacks.Callback):
    """How far the run is, in [0, 1], and the `--max-minutes` limit.

    Progress is steps done / planned steps or, with a time budget, the larger of that and the
    share of this session's minutes spent, so a schedule driven by it finishes its decay when
    either runs out; training stops at the step that spends the budget. A resumed run carries
    on from the checkpoint's progress (`state`), spreading the rest over its new budget; with
    no time budget, progress depends on the step alone, so a resumed run follows exactly the
    curve of an uninterrupted one."""

    def __init__(self, steps_per_epoch: int, epochs: int, max_minutes: float | None,
                 state: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.steps_per_epoch, self.total = steps_per_epoch, max(1, steps_per_epoch * epochs)
        self.seconds = max_minutes * 60 if max_minutes else None
        state = state or {}
        self.steps_done = self._resumed_steps = int(state.get("steps_done", 0))
        self._resumed_progress = float(state.get("progress", 0.0))
        self.out_of_time = False
        self._epoch = 0
        self._start = time.perf_counter()

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (see the class doc)."""
        return {"steps_done": self.steps_done, "progress": self.progress()}

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def progress(self) -> float:
        if not self.seconds:
            return min(self.steps_done / self.total, 1.0)
        left = self.total - self._resumed_steps
        session = max((self.steps_done - self._resumed_steps) / left if left > 0 else 1.0,
                      self.elapsed() / self.seconds)
        start = self._resumed_progress
        return min(start + (1.0 - start) * session, 1.0)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps_done = self._epoch * self.steps_per_epoch + batch + 1
        if self.seconds and self.elapsed() >= self.seconds:
            self.out_of_time = True
            self.model.stop_training = True


class LearningRate(keras.callbacks.Callback):
    """Sets the learning rate of `optimizers` (default: the model's) from `schedule` before
    every step (every compiled call of `steps_per_execution` steps)."""

    def __init__(self, schedule: Schedule, budget: TimeBudget,
                 optimizers: list[Any] | None = None) -> None:
        super().__init__()
        self.schedule, self.budget, self.optimizers = schedule, budget, optimizers

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        rate = self.schedule(self.budget.progress(), self.budget.steps_done, self.budget.total)
        for optimizer in self.optimizers or [self.model.optimizer]:
            optimizer.learning_rate.assign(rate)


class StopOnNaN(keras.callbacks.Callback):
    """`keras.callbacks.TerminateOnNaN` for every loss a model logs (a GAN logs two), its
    validation metrics and its weights: the first non-finite one stops training at once and
    marks the epoch as diverged, so it is never checkpointed (see `SaveEachEpoch`)."""

    def __init__(self) -> None:
        super().__init__()
        self.diverged_epoch: int | None = None
        self._epoch = 0

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not _finite_losses(logs):
            self._diverge()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        finite = all(math.isfinite(float(v)) for k, v in (logs or {}).items()
                     if k != "learning_rate")
        if not finite or not weights_finite(self.model):
            self._diverge()

    def _diverge(self) -> None:
        if self.diverged_epoch is None:
            self.diverged_epoch = self._epoch
        self.model.stop_training = True


def _finite_losses(logs: dict | None) -> bool:
    return all(math.isfinite(float(v)) for k, v in (logs or {}).items() if k.endswith("loss"))


def weights_finite(model: keras.Model) -> bool:
    """Whether every weight of `model` is a finite number."""
    return all(np.isfinite(np.asarray(w)).all() for w in model.weights
               if np.issubdtype(np.asarray(w).dtype, np.floating))


class SaveEachEpoch(keras.callbacks.Callback):
    """Adds each epoch's logs to the history and writes the checkpoint, unless the epoch
    diverged (`guard`)."""

    def __init__(self, checkpoint: Checkpoint, history: dict[str, list[float]],
                 seconds: list[float], guard: StopOnNaN) -> None:
        super().__init__()
        self.checkpoint, self.history, self.seconds, self.guard = (checkpoint, history,
                                                                   seconds, guard)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.guard.diverged:
            return
        for key, value in (logs or {}).items():
            if key != "learning_rate":
                self.history.setdefault(key, []).append(float(value))
        self.checkpoint.save(self.model, epoch + 1, self.history, self.seconds)


class StopOnSignal(keras.callbacks.Callback):
    """Ctrl-C and SIGTERM during `fit`, acted on between steps.

    While training (`with StopOnSignal() as stop: model.fit(..., callbacks=[stop, ...])`) the
    first SIGINT/SIGTERM is only recorded; the callback raises KeyboardInterrupt at the next
    step boundary, where Keras and TensorFlow are in a consistent state (an interrupt raised at
    whatever bytecode the main thread was running could leave TensorFlow objects half-made and
    crash the process). A second signal interrupts at once."""

    def __init__(self) -> None:
        super().__init__()
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopOnSignal:
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._record)
                              for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _record(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def check(self, *args: Any, **kwargs: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt

    on_train_batch_begin = on_train_batch_end = on_test_batch_end = check
    on_epoch_begin = on_epoch_end = check


class ReseedEachEpoch(keras.callbacks.Callback):
    """Sets every random layer's seed state (dropout, ...) from (seed, epoch, layer) at the
    start of each epoch, so a resumed run draws the same masks as an uninterrupted one (the
    generators' running state is not part of a saved model)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for index, generator in enumerate(_seed_generators(self.model)):
            generator.state.assign(np.array([self.seed * 1000 + index, epoch << 32], np.int64)
                                   .astype(generator.state.dtype))


def _seed_generators(model: keras.Model) -> list[Any]:
    found = []
    for layer in model._flatten_layers(include_self=True):
        found += [v for v in vars(layer).values() if isinstance(v, keras.random.SeedGenerator)]
    return found


class SampleImages(keras.callbacks.Callback):
    """After each epoch, `draw()` (a uint8 picture, H x W x C) as a TensorBoard image summary
    in `folder`, the epoch as its step."""

    def __init__(self, folder: Path, draw: Any) -> None:
        super().__init__()
        self.folder, self.draw = folder, draw
        self._writer: Any = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        picture = np.asarray(self.draw(), np.uint8)
        with writing_logs(self.folder):
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(str(self.folder))
            with self._writer.as_default():
                tf.summary.image("samples", picture[None], step=epoch)
            self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            with writing_logs(self.folder):
                self._writer.close()


@contextlib.contextmanager
def writing_logs(folder: Path | str) -> Iterator[None]:
    """TensorBoard logs being written to `folder`: a write that fails for want of space (which
    TensorFlow raises as a ResourceExhaustedError or another OpError) becomes the one
    `cannot write` line (exit 1)."""
    try:
        yield
    except Exception as exc:
        cause = disk_cause(exc)
        if cause is None:
            raise
        raise disk_error(f"the TensorBoard logs in {folder}", cause) from None


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, each hook run inside `writing_logs` (its writers are made,
    written, flushed and closed in several of them)."""


def _in_writing_logs(hook: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(hook)
    def guarded(self: TensorBoard, *args: Any, **kwargs: Any) -> Any:
        with writing_logs(self.log_dir):
            return hook(self, *args, **kwargs)
    return guarded


for _hook in ("set_model", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end"):
    setattr(TensorBoard, _hook, _in_writing_logs(getattr(keras.callbacks.TensorBoard, _hook)))


class GridEachEpoch(keras.callbacks.Callback):
    """After each epoch, a grid of the images `draw()` makes (uint8, N x H x W x C: a
    generator's from fixed inputs), `columns` wide, written into `folder` as epoch_NNN.png
    (beside the checkpoint, so a resumed run keeps the grids of the epochs before)."""

    def __init__(self, draw: Any, columns: int, folder: Path) -> None:
        super().__init__()
        self.draw, self.columns, self.folder = draw, columns, folder
        self.picture: np.ndarray | None = None  # the last epoch's grid (for TensorBoard)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from dlkit.core import plots

        self.picture = plots.tile(self.draw(), self.columns, scale=2)
        self.folder.mkdir(parents=True, exist_ok=True)
        plots.write_png(self.picture, self.folder / f"epoch_{epoch + 1:03d}.png")

    def saved(self, epochs: int) -> list[Path]:
        """The grids of the first `epochs` epochs that exist."""
        return [p for p in (self.folder / f"epoch_{e:03d}.png" for e in range(1, epochs + 1))
                if p.is_file()]


class KeepBest(keras.callbacks.Callback):
    """`EarlyStopping(restore_best_weights=True)` without the stopping, and resumable.

    The weights of the epoch with the lowest `monitor` so far are written to the checkpoint
    folder (`best-<epoch>.weights.h5`) when that epoch ends, and the best value is taken back
    from the saved history on a resume, so a resumed run ends (after `restore()`) with the same
    weights as an uninterrupted one. Each process also keeps the best weights in memory: the
    workers of a multi-worker run that write no checkpoint restore from there. A best file is
    pruned only once a later epoch's checkpoint is committed, so the best epoch's weights
    survive a kill at any moment."""

    def __init__(self, checkpoint: Checkpoint, history: dict[str, list[float]],
                 monitor: str = "val_loss") -> None:
        super().__init__()
        self.checkpoint, self.monitor = checkpoint, monitor
        seen = np.array(history.get(monitor, []), np.float64)
        seen[~np.isfinite(seen)] = np.inf  # as on_epoch_end: NaN and inf never improve
        self.best_epoch: int | None = int(np.argmin(seen)) if (seen < np.inf).any() else None
        self.best = float(seen[self.best_epoch]) if self.best_epoch is not None else np.inf
        self._weights: list[np.ndarray] | None = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        keep = self._path(self.best_epoch) if self.best_epoch is not None else None
        for path in self.checkpoint.folder.glob("best-*.weights.h5"):
            if path != keep:  # an older best, or one of an epoch the checkpoint never saved
                path.unlink(missing_ok=True)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not float(value) < self.best:  # NaN never improves
            return
        self.best, self.best_epoch = float(value), epoch
        self._weights = self.model.get_weights()  # every worker keeps its own copy
        if not self.checkpoint.writer:
            return
        what = f"the checkpoint in {self.checkpoint.folder}"
        with deferred_interrupts():
            try:
                self.checkpoint.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise disk_error(what, exc) from None
            write_atomic(self._path(epoch), weights_h5(self.model), what)

    def restore(self) -> int | None:
        """Load the best epoch's weights into the model; that epoch (1-based), or None when
        the monitored value never improved (the model keeps its last weights)."""
        if self.best_epoch is None:
            return None
        if self._weights is not None:  # this session's best (the only copy off the chief)
            self.model.set_weights(self._weights)
        else:  # the best epoch came before a resume: its weights are in the checkpoint
            self.model.load_weights(self._path(self.best_epoch))
        return self.best_epoch + 1

    def _path(self, epoch: int) -> Path:
        return self.checkpoint.folder / f"best-{epoch:05d}.weights.h5"
