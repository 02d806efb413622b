"""Resumable training: a checkpoint folder beside the output, written at every epoch's end.

`<parent>/.<name>.resume/` holds the model's weights with its optimizer state
(`checkpoint.weights.h5`) and `state.json` (epochs done, history so far, the run's settings). An
interrupted run leaves it behind; the same command with `--resume` rebuilds the model from the
same settings, loads the weights into it and continues; a finished run removes the folder. Every
file is replaced atomically, so a kill at any moment leaves the last complete checkpoint.

Weights rather than a whole `.keras` model, so that any model a command builds (functional
models, and subclassed ones with their own `train_step` such as the VAE and the GAN) can be
checkpointed without registering it for deserialisation.

Imports Keras: import this module inside command bodies only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit.errors import EXIT_INTERRUPTED, DlkitError, UsageError

WEIGHTS_FILE = "checkpoint.weights.h5"
STATE_FILE = "state.json"


class Checkpoint:
    """The resume folder of one output folder, tied to the settings of the run (`settings`)."""

    def __init__(self, output: Path, settings: dict[str, Any], writer: bool = True) -> None:
        self.folder = output.with_name(f".{output.name}.resume")
        self.writer = writer  # False on the non-chief workers of a multi-worker run
        self.settings = settings
        self.epochs_saved = 0
        # What else a command must carry over a resume (a schedule's position, ...): called
        # at each save, stored in state.json as "extra" and returned by restore()/load_state().
        self.extra_state: Callable[[], dict[str, Any]] | None = None

    def load_state(self) -> dict[str, Any]:
        """The saved state (epochs done, history, epoch seconds); exit 2 if there is none or it
        was written with other settings."""
        state_path = self.folder / STATE_FILE
        if not state_path.is_file():
            raise UsageError(f"nothing to resume: no checkpoint at {self.folder}; "
                             "run without --resume")
        try:
            state = json.loads(state_path.read_text())
            saved_settings = state["settings"]
        except (ValueError, KeyError, TypeError):
            raise DlkitError(f"the checkpoint state {state_path} is damaged; "
                             "run without --resume") from None
        if saved_settings != self.settings:
            changed = sorted(k for k in self.settings if saved_settings.get(k) != self.settings[k])
            raise UsageError(f"the checkpoint at {self.folder} was written with other settings "
                             f"({', '.join(changed)}); resume with the same options or run "
                             "without --resume")
        return state

    def restore(self, model: keras.Model,
                build_optimizers: Callable[[], None] | None = None) -> dict[str, Any]:
        """Load the checkpointed weights and optimizer state into `model` (built and compiled
        by the caller exactly as for a new run) and return the saved state.

        The optimizer's variables must exist before loading: `build_optimizers` creates them
        (default: `model.optimizer.build(model.trainable_variables)`)."""
        state = self.load_state()
        if build_optimizers is None:
            model.optimizer.build(model.trainable_variables)
        else:
            build_optimizers()
        try:
            model.load_weights(self.folder / WEIGHTS_FILE)
        except Exception as exc:  # a damaged or mismatched file raises many types
            raise DlkitError(f"cannot load the checkpoint in {self.folder} "
                             f"({str(exc).splitlines()[0]}); run without --resume") from None
        self.epochs_saved = int(state["epochs_done"])
        return state

    def begin(self, model: keras.Model, resume: bool,
              build_optimizers: Callable[[], None] | None = None) -> tuple[int, dict, Any]:
        """(epochs done, history, epoch timer) for a run's start: empty for a new run; with
        `resume`, those of the checkpoint, whose weights and optimizer state are loaded into
        `model` (see `restore`)."""
        from dlkit.training import EpochTimer

        timer = EpochTimer()
        if not resume:
            return 0, {}, timer
        state = self.restore(model, build_optimizers)
        timer.seconds.extend(state["epoch_seconds"])
        return int(state["epochs_done"]), state["history"], timer

    def interrupted(self, total_epochs: int, kept: str | None = None) -> DlkitError:
        """The exit-130 error for Ctrl-C/SIGTERM: what is saved and how to continue (`kept`:
        what else the command saved, e.g. "saved the model as trained so far to DIR")."""
        if not self.epochs_saved:
            return DlkitError("interrupted before the first epoch ended; "
                              f"{kept or 'nothing was saved'} (run the command again to start "
                              "over)", EXIT_INTERRUPTED)
        kept = f"{kept}; " if kept else ""
        return DlkitError(f"interrupted; {kept}{self.epochs_saved} of {total_epochs} epochs are "
                          f"saved in the checkpoint at {self.folder}: run the same command with "
                          "--resume to continue", EXIT_INTERRUPTED)

    def callback(self, history: dict[str, list[float]], seconds: list[float]) -> Any:
        """A Keras callback that saves model and state after every epoch."""
        return _SaveEachEpoch(self, history, seconds)

    def save(self, model: keras.Model, epochs_done: int, history: dict[str, list[float]],
             seconds: list[float]) -> None:
        if not self.writer:
            self.epochs_saved = epochs_done
            return
        with deferred_interrupts():
            self._write(model, epochs_done, history, seconds)

    def _write(self, model: keras.Model, epochs_done: int, history: dict[str, list[float]],
               seconds: list[float]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp_weights = self.folder / f".tmp-{WEIGHTS_FILE}"
        model.save_weights(tmp_weights)
        os.replace(tmp_weights, self.folder / WEIGHTS_FILE)
        state = {"epochs_done": epochs_done, "history": history, "epoch_seconds": seconds,
                 "settings": self.settings}
        if self.extra_state is not None:
            state["extra"] = self.extra_state()
        tmp_state = self.folder / f".tmp-{STATE_FILE}"
        tmp_state.write_text(json.dumps(state, indent=2))
        os.replace(tmp_state, self.folder / STATE_FILE)
        self.epochs_saved = epochs_done

    def remove(self) -> None:
        if self.writer:
            shutil.rmtree(self.folder, ignore_errors=True)


def fit_resumable(model: keras.Model, dataset: Any, checkpoint: Checkpoint, epochs: int,
                  done: int, history: dict[str, list[float]], seconds: list[float],
                  callbacks: list[Any], **fit_kwargs: Any) -> None:
    """`model.fit` from epoch `done` to `epochs`, checkpointing after every epoch into
    `history`/`seconds`; Ctrl-C or SIGTERM ends it with the exit-130 error saying how to resume
    (the step in flight finishes: Keras checks for the interrupt between steps).

    The checkpoint is written just before the `Progress` callback prints the epoch's line (after
    the callbacks before it have added their metrics), so a printed `epoch K/N` is a saved one."""
    from dlkit import distributed
    from dlkit.training import Progress

    saver = checkpoint.callback(history, seconds)
    at = next((i for i, c in enumerate(callbacks) if isinstance(c, Progress)), len(callbacks))
    callbacks = [*callbacks[:at], saver, *callbacks[at:]]

    fit = (functools.partial(distributed.fit, model) if distributed.is_multi_worker(model)
           else model.fit)
    try:
        fit(dataset, epochs=epochs, initial_epoch=done, verbose=0, shuffle=False,
            callbacks=callbacks, **fit_kwargs)
    except KeyboardInterrupt:
        raise checkpoint.interrupted(epochs) from None


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends (a checkpoint is written whole), then act on
    them as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _f: caught.append(s))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


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


class _SaveEachEpoch(keras.callbacks.Callback):
    def __init__(self, checkpoint: Checkpoint, history: dict[str, list[float]],
                 seconds: list[float]) -> None:
        super().__init__()
        self.checkpoint, self.history, self.seconds = checkpoint, history, seconds

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for key, value in (logs or {}).items():
            if key != "learning_rate":
                self.history.setdefault(key, []).append(float(value))
        self.checkpoint.save(self.model, epoch + 1, self.history, self.seconds)


class KeepBest(keras.callbacks.Callback):
    """`EarlyStopping(restore_best_weights=True)` without the stopping, and resumable.

    The weights of the epoch with the lowest `monitor` so far are written to the checkpoint
    folder (`best-<epoch>.weights.h5`) when that epoch ends, and the best value is taken back
    from the saved history on a resume, so a resumed run ends (after `restore()`) with the same
    weights as an uninterrupted one. A best file is pruned only once a later epoch's checkpoint
    is committed, so the best epoch's weights survive a kill at any moment. For single-process
    runs (the checkpoint's writer): a multi-worker command would need the chief to share them."""

    def __init__(self, checkpoint: Checkpoint, history: dict[str, list[float]],
                 monitor: str = "val_loss") -> None:
        super().__init__()
        self.checkpoint, self.monitor = checkpoint, monitor
        seen = np.array(history.get(monitor, []), np.float64)
        seen[np.isnan(seen)] = np.inf  # as on_epoch_end: NaN and inf never improve
        self.best_epoch: int | None = int(np.argmin(seen)) if (seen < np.inf).any() else None
        self.best = float(seen[self.best_epoch]) if self.best_epoch is not None else np.inf

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
        with deferred_interrupts():
            self.checkpoint.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.checkpoint.folder / ".tmp-best.weights.h5"
            self.model.save_weights(tmp)
            os.replace(tmp, self._path(epoch))

    def restore(self) -> int | None:
        """Load the best epoch's weights into the model; that epoch (1-based), or None when
        the monitored value never improved (the model keeps its last weights)."""
        if self.best_epoch is None:
            return None
        self.model.load_weights(self._path(self.best_epoch))
        return self.best_epoch + 1

    def _path(self, epoch: int) -> Path:
        return self.checkpoint.folder / f"best-{epoch:05d}.weights.h5"
