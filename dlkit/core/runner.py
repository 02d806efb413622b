"""The training runner: the plumbing every `train-*` command shares, so that a family's training
file reads top to bottom like a Keras code example (config, data, model, fit, save).

    with Run(config, inputs=[config.data_dir]) as run:   # the output checked and locked
        data = load(...)
        run.start(fingerprint(data))                     # resume checked, TensorFlow started
        with run.scope():
            model = build(...); model.compile(...)
            done = run.restore(model)                    # 0, or the epochs a --resume skips
        run.fit(model, train_batches(done), steps=..., validation=..., schedule=...)
        metrics = evaluate(model)
        paths = run.save(model, metadata, extras)        # the model folder, atomically

In minGPT's spirit nothing here knows about images or text. `Run` owns: the output claim and
lock, the runtime (devices, precision, strategy), the resume checkpoint (settings and data
fingerprint compared before any work; one atomic unit per epoch), the standard callbacks (progress,
one time budget, one learning-rate schedule, reseeding, the NaN stop, the checkpoint), the
divergence policy (a NaN anywhere means exit 1 and the previous model untouched), the interrupt
policy (exit 130 with the checkpoint kept; families that ask for it also save the model trained so
far), and the rule that finished work is never thrown away: the checkpoint is removed only once
the model folder is written.

Imports Keras: import this module inside command bodies only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import keras
import numpy as np

from dlkit.core import artifacts
from dlkit.core import runtime as rt
from dlkit.core.callbacks import (
    EpochTimer,
    LearningRate,
    Progress,
    ReseedEachEpoch,
    SampleImages,
    SaveEachEpoch,
    StopOnNaN,
    StopOnSignal,
    TensorBoard,
    TimeBudget,
    weights_finite,
)
from dlkit.core.checkpoint import Checkpoint, fault_point, reset_faults
from dlkit.core.config import TrainConfig, cli_name
from dlkit.core.console import info, warn
from dlkit.core.errors import EXIT_FAILURE, DlkitError, first_line
from dlkit.core.precision import as_float32
from dlkit.core.schedules import Schedule

_Result = TypeVar("_Result")


class Run:
    """One training run of `config` (see the module doc)."""

    def __init__(self, config: TrainConfig, inputs: Iterable[Path | str | None] = ()) -> None:
        reset_faults()
        self.config = config
        self.task = config.COMMAND
        if config.strategy == "multi-worker":
            rt.check_multi_worker()
            rt.form_cluster()  # before anything (a preset, a tokenizer) runs a TensorFlow op
        self.chief = rt.is_chief(config.strategy)
        inputs = list(inputs)
        self.tensorboard: Path | None = None  # checked before the output is claimed and locked
        if config.tensorboard is not None:
            output = Path(config.output).expanduser().resolve()
            self.tensorboard = artifacts.check_log_folder("--tensorboard", config.tensorboard,
                                                          output, inputs)
        self.output = artifacts.claim_output(config.output, inputs, chief=self.chief)
        self.runtime: rt.Runtime | None = None
        self.checkpoint: Checkpoint | None = None
        self.state: dict[str, Any] = {}
        self.history: dict[str, list[float]] = {}
        self.artifacts: dict[str, Any] = {}  # the saved model folder's paths (see `save`)
        self.timer = EpochTimer()
        self.guard = StopOnNaN()
        self.budget: TimeBudget | None = None
        self.done = 0
        self.trained = False  # fit has ended (completed, out of time or interrupted)
        self.xla = False  # whether Keras compiled the training step with XLA
        self.interrupted = False

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        """A failure after training keeps the checkpoint and says how to get the model back."""
        if exc is None or not self.trained or isinstance(exc, (DlkitError, KeyboardInterrupt)):
            return
        if self.checkpoint is not None and self.checkpoint.latest() is not None:
            raise DlkitError(f"{type(exc).__name__} after training: {first_line(exc, 200)}; "
                             f"the trained weights are kept in {self.checkpoint.folder}, and "
                             "the same command with --resume saves them without training "
                             "again (--debug shows the traceback)") from exc

    # -- before training ----------------------------------------------------------------------

    def start(self, fingerprint: str, inputs: Iterable[Path | str | None] = (),
              mixed_precision: bool | None = None, cpu_bfloat16: bool = False) -> rt.Runtime:
        """Once the data is read: check its files against the output, check a --resume
        against its checkpoint (exit 2 before any work on a mismatch), start TensorFlow."""
        config = self.config
        self._check_outputs(inputs)
        settings = {**config.resume_settings(), "data": fingerprint}
        self.checkpoint = Checkpoint(self.output, settings, writer=self.chief,
                                     labels=functools.partial(_label, type(config)))
        if config.resume:
            self.state = self.checkpoint.load_state()
        elif self.chief and self.checkpoint.folder.exists():
            info(f"starting over: removing the old checkpoint {self.checkpoint.folder} "
                 "(use --resume to continue a run)")
            self.checkpoint.remove()
        self.checkpoint.clean_stale()
        self.runtime = rt.start(config.seed, config.strategy, config.deterministic,
                                mixed_precision, config.precision, cpu_bfloat16)
        return self.runtime

    def _check_outputs(self, inputs: Iterable[Path | str | None]) -> None:
        """Every output the run writes (the model folder, the TensorBoard logs) against the
        inputs found once the data is read (exit 2 when one is, holds or lies inside an
        input); the options' own inputs were checked when the run began."""
        inputs = list(inputs)
        artifacts.check_inputs(self.output, inputs)
        if self.tensorboard is not None:
            artifacts.check_inputs(self.tensorboard, inputs, "--tensorboard")

    def scope(self) -> Any:
        """Build and compile models inside this (the distribution strategy's scope)."""
        return self.runtime.strategy.scope()

    def restore(self, model: keras.Model, build_optimizers: Any = None) -> int:
        """The epochs already done: 0 for a new run; with --resume, the checkpoint's, whose
        weights and optimizer state are loaded into `model` (built and compiled as for a new
        run).

        First the optimizers' variables are created (`model.optimizer.build` on the model's
        trainable variables, or `build_optimizers` for models with several), for a new run
        too: Keras would otherwise create them inside the first trace of the train step, and
        a function that creates variables is traced twice (measured: a tiny train-flow run
        9.3 CPU-seconds, 7.0 once they exist; a 3-epoch digits run 4.8-5.1 s, 3.3-3.4)."""
        if build_optimizers is None:
            model.optimizer.build(model.trainable_variables)
        else:
            build_optimizers()
        if self.config.resume:
            self.state = self.checkpoint.restore(model)
            self.history = self.state["history"]
            self.timer = EpochTimer(self.state["epoch_seconds"])
            self.done = int(self.state["epochs_done"])
        return self.done

    def extra_state(self, key: str) -> Any:
        """What a callback stored under `key` in the resumed checkpoint (None for a new run)."""
        return self.state.get("extra", {}).get(key)

    # -- training -----------------------------------------------------------------------------

    def fit(self, model: keras.Model, train: Any, *, steps: int, validation: Any = None,
            schedule: Schedule | None = None, optimizers: list[Any] | None = None,
            callbacks: Iterable[Any] = (), after: Iterable[Any] = (),
            images: Callable[[], np.ndarray] | None = None,
            save_on_interrupt: bool = False) -> dict[str, list[float]]:
        """`model.fit` from the epoch `restore` returned to `--epochs`, with the standard
        callbacks around the family's (`callbacks` run before the checkpoint is written,
        `after` once the epoch's line is printed). Returns the history of the whole run.

        With `--tensorboard DIR`, every checkpointed epoch's logs go to DIR (Keras's
        TensorBoard callback, the epoch as the step, so a resumed run continues the same
        curves), and `images()` (a uint8 picture, H x W x C) to DIR/samples.

        Ctrl-C/SIGTERM: exit 130 with the checkpoint kept; with `save_on_interrupt` the run
        goes on to `save` the model trained so far, which then exits 130. A NaN or infinite
        loss, metric or weight: exit 1, the checkpoint removed, nothing saved."""
        config = self.config
        self.budget = TimeBudget(steps, config.epochs, config.max_minutes,
                                 self.extra_state("budget"))
        self.checkpoint.extra_state["budget"] = self.budget.state
        standard = [ReseedEachEpoch(config.seed), self.timer, self.guard, self.budget]
        if schedule is not None:
            standard.append(LearningRate(schedule, self.budget, optimizers))
        saver = SaveEachEpoch(self.checkpoint, self.history, self.timer.seconds, self.guard)
        stop = StopOnSignal()
        all_callbacks = [stop, *standard, *callbacks, saver, Progress(config.epochs, steps),
                         *self._tensorboard(images), *after]
        fit = model.fit
        if self.runtime.strategy_name == "multi-worker":
            from dlkit.core import distributed

            fit = functools.partial(distributed.fit, model)
        self.checkpoint.epochs_saved = self.done
        try:
            with stop:
                if self.done < config.epochs:
                    fit(train, epochs=config.epochs, initial_epoch=self.done, verbose=0,
                        shuffle=False, callbacks=all_callbacks, steps_per_epoch=steps,
                        validation_data=validation)
                else:  # a resume of a finished run (its save had failed): only saving is left
                    for callback in all_callbacks:
                        callback.set_model(model)
                stop.check()  # a signal during the last step
        except KeyboardInterrupt:
            if not save_on_interrupt:
                raise self.checkpoint.interrupted(config.epochs) from None
            self.interrupted = True
        except DlkitError as exc:  # a write that failed mid-run (a full disk)
            saved = self.checkpoint.epochs_saved
            if saved and exc.code == EXIT_FAILURE and self.checkpoint.latest() is not None:
                exc.message += (f"; {saved} of {config.epochs} epochs are saved in the "
                                f"checkpoint at {self.checkpoint.folder}: run the same command "
                                "with --resume to continue")
            raise
        self.trained = True
        self.xla = bool(getattr(model, "jit_compile", False))
        fault_point("after-fit")
        if self.guard.diverged:
            self.diverged(f"in epoch {self.guard.diverged_epoch + 1}")
        return self.history

    def _tensorboard(self, images: Callable[[], np.ndarray] | None) -> list[Any]:
        """The TensorBoard callbacks (after the checkpoint's: only saved epochs are logged,
        so a resumed run never logs a step twice); none without --tensorboard or on a
        worker that writes nothing."""
        folder = self.tensorboard
        if folder is None or not self.chief:
            return []
        _after_earlier_event_files(folder)
        board = [TensorBoard(str(folder), write_graph=False, profile_batch=0,
                             update_freq="epoch")]
        if images is not None:
            board.append(SampleImages(folder / "samples", images))
        return board

    @property
    def epochs_completed(self) -> int:
        return len(next(iter(self.history.values()), []))

    @property
    def stopped(self) -> str:
        """Why training ended: completed, time limit or interrupted."""
        if self.interrupted:
            return "interrupted"
        if self.budget is not None and self.budget.out_of_time:
            return "time limit"
        return "completed"

    @property
    def train_seconds(self) -> float:
        return float(sum(self.timer.seconds))

    def per_second(self, examples_per_step: int) -> float:
        """Training throughput of this session: examples per second of its epochs."""
        seconds = sum(self.timer.seconds[self.done:])
        steps = self.budget.steps_done - self.done * self.budget.steps_per_epoch
        return steps * examples_per_step / seconds if seconds else 0.0

    def diverged(self, where: str) -> None:
        """Exit 1: the training went to NaN/inf; nothing is saved, the previous model stays."""
        self.checkpoint.remove()  # resuming it would diverge again: the advice is another rate
        rate = cli_name(next(f for f in dataclasses.fields(self.config)
                             if f.name == "learning_rate"))
        raise DlkitError(f"training diverged {where} (a loss, metric or weight became NaN or "
                         f"infinite); {self.output} was not changed. Lower {rate} (now "
                         f"{self.config.learning_rate:g}) and run again")

    # -- after training -----------------------------------------------------------------------

    def evaluate(self, model: keras.Model, dataset: Any) -> dict[str, float]:
        """`model.evaluate(dataset)` as a dict of floats, on every strategy (multi-worker
        included, where Keras's own `evaluate` cannot run)."""
        if self.runtime.strategy_name == "multi-worker":
            from dlkit.core import distributed

            return distributed.evaluate(model, dataset)
        logs = model.evaluate(dataset, verbose=0, return_dict=True)
        return {name: float(value) for name, value in logs.items()}

    def save(self, model: keras.Model, metadata: dict[str, Any], plots: Any = None,
             extras: Any = None, weights: Iterable[keras.Model] = (),
             model_files: Callable[[Path], None] | None = None) -> dict[str, Any]:
        """Write the model folder (with the run's settings, history and timings added to
        `metadata`), then drop the checkpoint.

        `plots(folder)` draws the pictures: it cannot fail the run (a drawing that breaks is a
        warning; a full disk is still an error); `extras(folder)` writes other files the folder
        needs (an encoder); `model_files(folder)`, when given, writes the model itself in
        place of `model.keras`, the SavedModel and `model.tflite`. The model is saved computing
        in float32 (`precision.as_float32`), whatever the run computed in. Non-finite metrics or
        weights (in `model` and in `weights`) are a divergence; a full disk keeps the
        checkpoint, so `--resume` can save the trained model later without training again."""
        model = as_float32(model)
        metrics = metadata.get("metrics", {})
        bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            self.diverged(f"({', '.join(bad)} is not a finite number)")
        if not all(weights_finite(m) for m in (model, *weights)):
            self.diverged("(the final weights are not finite)")
        if not self.chief:
            self.artifacts = artifacts.artifact_paths(self.output)
            return self.artifacts
        meta = {"task": self.task, **metadata, "config": self.config.as_dict(),
                "history": self.history,
                "training": {**metadata.get("training", {}), **self.summary()}}
        def write(folder: Path) -> None:
            if extras is not None:
                extras(folder)
            if plots is not None:
                try:
                    plots(folder)
                except DlkitError:
                    raise
                except Exception as exc:  # a picture is not worth the trained model
                    warn(f"could not draw the plots ({type(exc).__name__}: "
                         f"{first_line(exc, 200)}); the model is saved without them")

        try:
            paths = artifacts.save_model_folder(self.output, model, meta, write, model_files)
        except DlkitError as exc:
            if self.checkpoint.latest() is not None:
                exc.message += (f"; the trained weights are kept in {self.checkpoint.folder}: "
                                "run the same command with --resume to save them without "
                                "training again")
            raise
        if self.interrupted:
            raise self.checkpoint.interrupted(self.config.epochs,
                                              f"saved the model as trained so far to "
                                              f"{self.output}")
        self.checkpoint.remove()
        self.artifacts = paths
        return paths

    def result(self, record: type[_Result], **metrics: Any) -> _Result:
        """The family's result record (a keyword-only dataclass: what `--json` prints), built
        from the family's own `metrics` and what the run knows: the record's fields named
        task, epochs, epochs_completed, stopped, train_seconds, device, artifacts and history
        are filled from the run unless `metrics` gives them."""
        known = {"task": self.task, "epochs": self.config.epochs,
                 "epochs_completed": self.epochs_completed, "stopped": self.stopped,
                 "train_seconds": self.train_seconds, "device": self.runtime.device,
                 "artifacts": self.artifacts, "history": self.history}
        names = {field.name for field in dataclasses.fields(record)}  # type: ignore[arg-type]
        return record(**{key: value for key, value in known.items()
                         if key in names and key not in metrics}, **metrics)

    def summary(self) -> dict[str, Any]:
        """How the run went, for metadata.json and results."""
        runtime = self.runtime
        return {"epochs": self.config.epochs, "epochs_completed": self.epochs_completed,
                "stopped": self.stopped, "seconds": self.train_seconds,
                "epoch_seconds": self.timer.seconds,
                "steps": self.budget.steps_done if self.budget else 0,
                "device": runtime.device, "mixed_precision": runtime.mixed_precision,
                "precision_policy": keras.mixed_precision.global_policy().name,
                "xla": self.xla, "peak_gpu_mib": rt.peak_gpu_mib(runtime),
                "strategy": runtime.strategy_name, "replicas": runtime.replicas}


def _label(config_type: type, key: str) -> str:
    """A checkpoint setting as the user knows it: its option, or "the training data"."""
    if key == "data":
        return "the training data"
    if key == "command":
        return "the command"
    for field in dataclasses.fields(config_type):
        if field.name == key:
            return cli_name(field)
    return key


def fingerprint(*parts: Any) -> str:
    """A short digest of the data a run trains on (arrays, strings, numbers, lists of them):
    the same data in the same order gives the same digest."""
    digest = hashlib.sha256()
    for part in parts:
        _feed(digest, part)
    return digest.hexdigest()[:16]


def _feed(digest: Any, part: Any) -> None:
    if isinstance(part, np.ndarray):
        digest.update(str((part.dtype, part.shape)).encode())
        digest.update(np.ascontiguousarray(part).tobytes())
    elif isinstance(part, str):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    elif isinstance(part, (list, tuple)):
        digest.update(f"[{len(part)}".encode())
        for item in part:
            _feed(digest, item)
    else:
        digest.update(repr(part).encode() + b"\0")


def _after_earlier_event_files(folder: Path) -> None:
    """Wait, at most a second, until the clock has left the second in which the newest event
    file under `folder` was made. TensorBoard reads a run's event files in name order, and the
    name (`events.out.tfevents.SECOND.HOST.PID...`) orders files made in one second by process
    id: a resumed run that logged in the same second as the run before it could be read first,
    its epochs before the earlier ones (seen with tiny test epochs). A name from a clock
    ahead of this one (another machine's logs) never makes the wait longer."""
    import time

    stamps = (p.name.split(".")[3] for p in folder.rglob("events.out.tfevents.*"))
    newest = max((int(s) for s in stamps if s.isdigit()), default=0)
    time.sleep(min(1.0, max(0.0, newest + 1 - time.time())))
