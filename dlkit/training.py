"""What every `train-*` command shares: the progress callback, the optimizer and its schedule,
and the common configuration fields.

Imports Keras at module level: import this module inside command bodies only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from dlkit.console import err, is_quiet, stderr_is_terminal
from dlkit.errors import DlkitError, UsageError


@dataclass
class TrainConfig:
    """Options every training command takes (DESIGN.md's common names)."""

    output: Path
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    data_dir: Path | None = None
    limit: int | None = None
    val_split: float = 0.1
    strategy: str = "auto"
    deterministic: bool = False
    resume: bool = False
    max_minutes: float | None = None  # time budget, for the tasks that take --max-minutes

    def validate(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1 (got {self.epochs})")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise UsageError("--learning-rate must be a positive number "
                             f"(got {self.learning_rate})")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be at least 1 (got {self.limit})")
        if not 0 <= self.val_split < 1:
            raise UsageError(f"--val-split must be in [0, 1) (got {self.val_split})")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise UsageError(f"--max-minutes must be positive (got {self.max_minutes})")


def warmup_cosine(peak: float, total_steps: int, warmup_fraction: float = 0.1) -> Any:
    """Linear warm-up to `peak` over the first steps, then cosine decay to zero."""
    warmup = max(1, int(total_steps * warmup_fraction))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10, decay_steps=max(1, total_steps - warmup), alpha=0.0,
        warmup_target=peak, warmup_steps=warmup)


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time of each epoch (validation included)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class Progress(keras.callbacks.Callback):
    """Per-epoch progress on stderr: a rich bar on a terminal, one plain line per epoch in logs."""

    def __init__(self, epochs: int, steps: int | None, label: str = "epoch",
                 initial_epoch: int = 0) -> None:
        super().__init__()
        self.epochs, self.steps, self.label = epochs, steps, label
        self.initial_epoch = initial_epoch
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


def history_dict(history: Any) -> dict[str, list[float]]:
    """A Keras History as plain floats, for metadata.json and plots."""
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def check_finite(history: dict[str, list[float]]) -> None:
    """Exit 1 with one line when training diverged: the last epoch's loss is NaN or infinite."""
    losses = history.get("loss", [])
    if losses and not math.isfinite(losses[-1]):
        raise DlkitError("training diverged (loss is NaN); lower --learning-rate and retry")
