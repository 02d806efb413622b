"""`dlkit train-text`: a character-level language model on any UTF-8 corpus.

Reads the corpus (a file, stdin, or Tiny Shakespeare through the data lookup), holds out the
last `--val-split` of it for validation, trains on seeded random windows of `--seq-len`
characters with AdamW and a warm-up + cosine schedule, reports validation loss in nats and bits
per character each epoch with a short sample on stderr, and saves the model folder (vocabulary in
`metadata.json`) with a loss-curve PNG. `--max-minutes` bounds the training time: the schedule
decays over whichever comes first, the epochs or the time, and training stops when time is up.
Every epoch's end writes a resumable checkpoint beside the output (`dlkit.checkpoint`); Ctrl-C or
SIGTERM saves the model as trained so far and exits 130, and `--resume` continues the run (the
same windows, dropout masks and learning-rate schedule as an uninterrupted run).

Imports TensorFlow (quietly) at module level: import this module inside command bodies only.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlkit import runtime as rt
from dlkit.console import err, info, is_quiet, warn
from dlkit.errors import EXIT_INTERRUPTED, DlkitError, UsageError, require_choice

rt.import_tensorflow()  # before Keras, so TensorFlow's start-up chatter stays off stderr

import keras  # noqa: E402

from dlkit.training import TrainConfig  # noqa: E402

ARCHS = ("gru", "lstm", "transformer")
# (layers, width) per architecture, chosen by measurement on Tiny Shakespeare (docs/text.md).
DEFAULT_SIZES = {"gru": (1, 512), "lstm": (1, 512), "transformer": (4, 192)}
SAMPLE_CHARS = 200


@dataclass
class TextConfig(TrainConfig):
    """Options of `train-text` (the common ones come from TrainConfig)."""

    corpus: str | None = None
    arch: str = "gru"
    seq_len: int = 128
    layers: int | None = None  # None: the architecture's default (DEFAULT_SIZES)
    dim: int | None = None
    heads: int = 4
    dropout: float = 0.0
    weight_decay: float = 0.1
    sample_every_epoch: bool = True

    def validate(self) -> None:
        super().validate()
        require_choice("--arch", self.arch, ARCHS)
        default_layers, default_dim = DEFAULT_SIZES[self.arch]
        self.layers = default_layers if self.layers is None else self.layers
        self.dim = default_dim if self.dim is None else self.dim
        for name in ("seq_len", "layers", "dim", "heads"):
            value = getattr(self, name)
            if value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
        if self.arch == "transformer" and self.dim % self.heads:
            raise UsageError(f"--dim {self.dim} must be divisible by --heads {self.heads}")
        if not 0 <= self.dropout < 1:
            raise UsageError(f"--dropout must be in [0, 1) (got {self.dropout})")


@dataclass
class TextResult:
    """What a `train-text` run reports (`--json` prints it)."""

    task: str
    corpus: str
    arch: str
    parameters: int
    vocab_size: int
    train_chars: int
    val_chars: int
    seq_len: int
    epochs_run: int
    stopped_by_time: bool
    val_loss: float | None
    val_bpc: float | None
    train_loss: float
    train_seconds: float
    train_chars_per_second: float
    device: str
    sample: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run(config: TextConfig) -> TextResult:
    """Read the corpus, train, save the model folder; returns a `TextResult`."""
    from dlkit.artifacts import check_output
    from dlkit.data.text import read_corpus

    config.validate()
    config.output = check_output(config.output)
    corpus = read_corpus(config.corpus, config.data_dir, config.limit)
    runtime = rt.start(config.seed, config.strategy, config.deterministic)
    return _train(config, corpus, runtime)


def _train(config: TextConfig, corpus: Any, runtime: rt.Runtime) -> TextResult:
    from dlkit.checkpoint import Checkpoint, ReseedEachEpoch, fit_resumable
    from dlkit.data.text import eval_windows, split_ids, train_windows
    from dlkit.training import EpochTimer, Progress, check_finite

    ids = corpus.encode(corpus.text)
    train_ids, val_ids = split_ids(ids, config.val_split)
    seq_len = _fit_seq_len(config.seq_len, len(train_ids))
    batch = config.batch_size
    steps = max(1, math.ceil(len(train_ids) / (batch * seq_len)))
    checkpoint = Checkpoint(config.output, _settings(config, corpus, seq_len, len(train_ids)),
                            writer=runtime.chief)
    with runtime.strategy.scope():
        model = _compiled_model(config, len(corpus.vocab), seq_len, runtime)
        state = checkpoint.restore(model) if config.resume else {}
    done = int(state.get("epochs_done", 0))
    hist: dict[str, list[float]] = state.get("history", {})
    timer = EpochTimer()
    timer.seconds.extend(state.get("epoch_seconds", []))
    budget = Budget(config.learning_rate, config.epochs * steps, config.max_minutes)
    budget.resume(state.get("extra", {}))
    checkpoint.extra_state = budget.state

    train_ds = train_windows(train_ids, seq_len, batch, config.seed, steps, config.epochs, done)
    val_ds = None
    if len(val_ids) >= 2:
        val_ds = eval_windows(val_ids, min(seq_len, len(val_ids) - 1), batch)
    else:
        warn("the validation split is too short to measure; training without validation")
    info(f"training {model.name} ({model.count_params():,} parameters) on {corpus.source}: "
         f"{len(train_ids):,} train / {len(val_ids):,} validation characters, vocabulary "
         f"{len(corpus.vocab)}, windows of {seq_len}, batch {batch}, {steps} steps per epoch, "
         f"{config.epochs} epochs" + (f" or {config.max_minutes:g} minutes" if config.max_minutes
                                      else "") + (f" (resuming after {done})" if done else "")
         + f", {runtime.device}")
    sampler = EpochSample(config.arch, corpus.vocab, config.seed,
                          enabled=config.sample_every_epoch and not is_quiet())
    callbacks = [ReseedEachEpoch(config.seed), budget, timer, PerCharacter(),
                 Progress(config.epochs, steps), sampler]
    interrupted = False
    try:
        fit_resumable(model, train_ds, checkpoint, config.epochs, done, hist, timer.seconds,
                      callbacks, validation_data=val_ds, steps_per_epoch=steps)
    except DlkitError as exc:  # Ctrl-C/SIGTERM: save the model so far too, then say so
        if exc.code != EXIT_INTERRUPTED:
            raise
        interrupted = True
    try:
        check_finite(hist)
    except DlkitError:
        checkpoint.remove()  # resuming a diverged run would diverge again
        raise
    train_seconds = float(sum(state.get("epoch_seconds", []))) + budget.elapsed()
    result = _save(config, corpus, model, runtime, hist, seq_len, len(train_ids), len(val_ids),
                   train_seconds, budget, timer, steps, interrupted)
    if interrupted:
        raise checkpoint.interrupted(config.epochs, "saved the model as trained so far to "
                                     f"{config.output}")
    checkpoint.remove()
    return result


def _compiled_model(config: TextConfig, vocab_size: int, seq_len: int,
                    runtime: rt.Runtime) -> keras.Model:
    from dlkit.nets import text as nets

    model = nets.build(config.arch, vocab_size, seq_len, config.layers, config.dim,
                       config.heads, config.dropout)
    model.compile(optimizer=keras.optimizers.AdamW(config.learning_rate,
                                                   weight_decay=config.weight_decay,
                                                   beta_2=0.99, clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=runtime.jit_compile)
    return model


def _settings(config: TextConfig, corpus: Any, seq_len: int, train_chars: int
              ) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the model, the data and the schedule.
    (`--max-minutes` is not among them: it is a budget for each session of the run.)"""
    digest = hashlib.sha256(corpus.text.encode("utf-8")).hexdigest()[:16]
    return {"task": "train-text", "corpus_sha256": digest,
            "train_chars": train_chars, "arch": config.arch, "seq_len": seq_len,
            "layers": config.layers, "dim": config.dim, "heads": config.heads,
            "dropout": config.dropout, "epochs": config.epochs,
            "batch_size": config.batch_size, "learning_rate": config.learning_rate,
            "weight_decay": config.weight_decay, "seed": config.seed}


def _fit_seq_len(seq_len: int, train_chars: int) -> int:
    """Windows need seq_len + 1 characters; shorten them for a corpus smaller than that."""
    if train_chars >= seq_len + 1:
        return seq_len
    if train_chars < 2:
        raise UsageError("the corpus is too short to train on after the validation split; "
                         "give more text or a smaller --val-split")
    warn(f"the training text has only {train_chars} characters: using windows of "
         f"{train_chars - 1} instead of --seq-len {seq_len}")
    return train_chars - 1


def _save(config: TextConfig, corpus: Any, model: Any, runtime: rt.Runtime,
          hist: dict[str, list[float]], seq_len: int, n_train: int, n_val: int,
          train_seconds: float, budget: Budget, timer: Any, steps: int,
          interrupted: bool) -> TextResult:
    from dlkit import artifacts, plots

    val_loss = hist["val_loss"][-1] if hist.get("val_loss") else None
    val_bpc = val_loss / math.log(2) if val_loss is not None else None
    train_loss = hist["loss"][-1] if hist.get("loss") else float("nan")
    epochs_run = len(hist.get("loss", []))
    trained_chars = budget.steps_done * config.batch_size * seq_len
    sample = _final_sample(config.arch, model, corpus.vocab, config.seed)
    most_common = Counter(corpus.text).most_common(1)[0][0]
    metadata = {
        "task": "train-text", "dataset": corpus.source, "arch": config.arch,
        "input_shape": [None], "preprocessing": {
            "input": "int32 character ids (batch, time <= seq_len) from text.vocab",
            "output": "next-character logits (batch, time, vocab size)"},
        "text": {"vocab": corpus.vocab, "seq_len": seq_len, "most_common_char": most_common,
                 "unit": "unicode code point"},
        "model": {"layers": config.layers, "dim": config.dim, "heads": config.heads,
                  "dropout": config.dropout, "parameters": model.count_params()},
        "metrics": {"val_loss": val_loss, "val_bpc": val_bpc, "train_loss": train_loss},
        "history": hist,
        "training": {"epochs": config.epochs, "epochs_run": epochs_run,
                     "steps_per_epoch": steps, "steps": budget.steps_done,
                     "batch_size": config.batch_size, "learning_rate": config.learning_rate,
                     "weight_decay": config.weight_decay, "max_minutes": config.max_minutes,
                     "stopped_by_time": budget.out_of_time, "interrupted": interrupted,
                     "seed": config.seed, "train_chars": n_train, "val_chars": n_val,
                     "seconds": train_seconds, "epoch_seconds": timer.seconds,
                     "device": runtime.device, "mixed_precision": runtime.mixed_precision},
        "sample": sample,
    }

    def write_plots(folder: Path) -> None:
        if hist.get("loss"):
            plots.training_curves(hist, folder / artifacts.PLOTS / "loss_curve.png",
                                  f"train-text {config.arch}: loss (nats/char)")

    paths = artifacts.save_model_folder(config.output, model, metadata, write_plots)
    return TextResult("train-text", corpus.source, config.arch, model.count_params(),
                      len(corpus.vocab), n_train, n_val, seq_len, epochs_run,
                      budget.out_of_time, val_loss, val_bpc, train_loss, train_seconds,
                      trained_chars / train_seconds if train_seconds else 0.0, runtime.device,
                      sample, paths, hist)


def _final_sample(arch: str, model: Any, vocab: list[str], seed: int,
                  length: int = SAMPLE_CHARS, decoder: Any = None) -> str:
    """`length` characters sampled at temperature 0.8, starting from an empty prompt."""
    from dlkit.nets.text import decoder as make_decoder
    from dlkit.tasks.generate import Sampler, fallback_char, generate, start_ids

    ids, _ = start_ids("", vocab, fallback_char(vocab, {}))
    decoder = decoder or make_decoder(arch, model)
    return "".join(generate(decoder, vocab, ids, length, Sampler(0.8, None, seed)))


class Budget(keras.callbacks.Callback):
    """Learning rate per step (linear warm-up, cosine decay to 10%) and the time limit.

    Progress is the larger of steps done / planned and minutes spent / `--max-minutes`, so the
    schedule finishes its decay when either runs out; training stops once time is up. A resumed
    run (`resume`) continues the schedule where the checkpoint left it; its time budget is a new
    one for this session, over which the rest of the decay is spread.
    """

    WARMUP_FRACTION = 0.03

    def __init__(self, peak: float, total_steps: int, max_minutes: float | None,
                 warmup_steps: int = 100) -> None:
        super().__init__()
        self.peak, self.total = peak, max(1, total_steps)
        self.seconds = max_minutes * 60 if max_minutes else None
        self.warmup = min(warmup_steps, max(1, self.total // 10))
        self.steps_done = 0
        self.out_of_time = False
        self._resumed_steps, self._resumed_progress = 0, 0.0
        self._start = time.perf_counter()

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the schedule (see `resume`)."""
        return {"steps_done": self.steps_done, "progress": self.progress()}

    def resume(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's `state()` (an empty dict: a new run)."""
        self.steps_done = self._resumed_steps = int(state.get("steps_done", 0))
        self._resumed_progress = float(state.get("progress", 0.0))

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def progress(self) -> float:
        if not self.seconds:  # steps only: exactly the same rates in a resumed run
            return min(self.steps_done / self.total, 1.0)
        left = self.total - self._resumed_steps
        session = max((self.steps_done - self._resumed_steps) / left if left > 0 else 1.0,
                      self.elapsed() / self.seconds)
        start = self._resumed_progress
        return min(start + (1.0 - start) * session, 1.0)

    def rate(self) -> float:
        """Warm-up ends after `warmup` steps or 3% of the budget, whichever comes first."""
        progress = self.progress()
        warm = max((self.steps_done + 1) / self.warmup, progress / self.WARMUP_FRACTION)
        if warm < 1:
            return self.peak * warm
        return self.peak * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.model.optimizer.learning_rate.assign(self.rate())

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps_done += 1
        if self.seconds and self.elapsed() >= self.seconds:
            self.out_of_time = True
            self.model.stop_training = True


class PerCharacter(keras.callbacks.Callback):
    """Adds bits per character (`bpc`, `val_bpc`) beside the losses in nats per character to
    each epoch's logs (which the checkpoint callback then records in the history)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for key in ("loss", "val_loss"):
            if key in logs:
                logs[key.replace("loss", "bpc")] = float(logs[key]) / math.log(2)


class EpochSample(keras.callbacks.Callback):
    """A short sample on stderr after each epoch (not with --quiet)."""

    def __init__(self, arch: str, vocab: list[str], seed: int, enabled: bool = True) -> None:
        super().__init__()
        self.arch, self.vocab, self.seed, self.enabled = arch, vocab, seed, enabled

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.enabled:
            return
        from dlkit.nets.text import decoder

        self._decoder = getattr(self, "_decoder", None) or decoder(self.arch, self.model)
        text = _final_sample(self.arch, self.model, self.vocab, self.seed + epoch, 120,
                             self._decoder)
        err.print(f"  sample: {text!r}", markup=False, highlight=False)
