"""`dlkit train-text`: a character-level language model on any UTF-8 corpus.

Top to bottom: read the corpus (a file, stdin, or Tiny Shakespeare through the data lookup),
hold out its last `--val-split` for validation, build a GRU/LSTM (char-rnn) or a small GPT, fit it
on seeded random windows of `--seq-len` characters with AdamW (warm-up, then a cosine decay over
the epochs or `--max-minutes`, whichever ends first), report validation loss in nats and bits per
character each epoch with a short sample on stderr, and save the model folder (vocabulary in
`metadata.json`) with a loss-curve PNG. Ctrl-C or SIGTERM saves the model as trained so far and
exits 130; `--resume` continues the run with the same windows, dropout masks and schedule.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras

from dlkit.core import litert, plots
from dlkit.core.console import Report, err, fmt, info, is_quiet, warn
from dlkit.core.errors import UsageError
from dlkit.core.files import write_atomic
from dlkit.core.precision import as_float32
from dlkit.core.runner import Run, fingerprint
from dlkit.core.sampling import Sampler
from dlkit.core.schedules import Schedule
from dlkit.data.text import eval_windows, read_corpus, split_ids, train_windows
from dlkit.text import models
from dlkit.text.config import TextArch, TextConfig
from dlkit.text.decoding import DECODER_FILE
from dlkit.text.generate import fallback_char, generate, start_ids
from dlkit.text.gru import with_stock_layers

SAMPLE_CHARS = 200


# the shortest validation window of a recurrent model (see _val_window)
RECURRENT_VAL_WINDOW = 1024


@dataclass(kw_only=True)
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
    stopped: str
    stopped_by_time: bool
    val_loss: float | None
    val_bpc: float | None
    train_loss: float | None
    train_seconds: float
    train_chars_per_second: float
    device: str
    sample: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]]

    def report(self) -> Report:
        return Report(f"train-text {self.arch}", {
            "validation loss (nats/char)": self.val_loss, "bits/char": self.val_bpc,
            "epochs": f"{self.epochs_run} ({self.stopped})",
            "training time (s)": self.train_seconds, "chars/s": self.train_chars_per_second,
            "device": self.device, "model folder": self.artifacts["model_dir"]},
            f"val_loss={fmt(self.val_loss)} model={self.artifacts['model_dir']}", asdict(self))


def train_text(config: TextConfig) -> Report:
    """Read the corpus, train, save the model folder (with --from-preset: fine-tune a
    pretrained model instead, `dlkit.text.finetune`)."""
    if config.from_preset:
        from dlkit.text.finetune import finetune

        return finetune(config)
    with Run(config, inputs=[config.corpus, config.data_dir]) as run:
        corpus = read_corpus(config.corpus, config.data_dir, config.limit)
        ids = corpus.encode(corpus.text)
        train_ids, val_ids = split_ids(ids, config.val_split)
        seq_len = _fit_seq_len(config.seq_len, len(train_ids))
        batch = config.batch_size
        steps = max(1, math.ceil(len(train_ids) / (batch * seq_len)))
        runtime = run.start(fingerprint(train_ids, val_ids, corpus.vocab), inputs=corpus.files,
                            cpu_bfloat16=True)

        with run.scope():
            model = models.build(config.arch, len(corpus.vocab), seq_len, config.layers,
                                 config.dim, config.heads, config.dropout)
            model.compile(optimizer=keras.optimizers.AdamW(
                              config.learning_rate, weight_decay=config.weight_decay,
                              beta_2=0.99, clipnorm=1.0),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          jit_compile=runtime.jit_compile)
            done = run.restore(model)

        train_ds = train_windows(train_ids, seq_len, batch, config.seed, steps, config.epochs,
                                 done)
        val_ds, val_window = None, _val_window(config.arch, seq_len, len(val_ids))
        if len(val_ids) >= 2:
            val_ds = eval_windows(val_ids, val_window, max(1, batch * seq_len // val_window))
        else:
            warn("the validation split is too short to measure; training without validation")
        info(f"training {model.name} ({model.count_params():,} parameters) on "
             f"{corpus.source}: {len(train_ids):,} train / {len(val_ids):,} validation "
             f"characters, vocabulary {len(corpus.vocab)}, windows of {seq_len}, batch {batch}, "
             f"{steps} steps per epoch, {config.epochs} epochs"
             + (f" or {config.max_minutes:g} minutes" if config.max_minutes else "")
             + (f" (resuming after {done})" if done else "")
             + (f", validation in windows of {val_window}" if val_ds is not None else "")
             + f", {runtime.device}")
        sampler = EpochSample(config.arch.value, corpus.vocab, config.seed,
                              enabled=not is_quiet())
        history = run.fit(model, train_ds, steps=steps, validation=val_ds,
                          schedule=Schedule(config.learning_rate, warmup_fraction=0.03,
                                            warmup_steps=100, floor=0.1,
                                            min_warmup_steps=config.recipe().warmup),
                          callbacks=[PerCharacter()], after=[sampler], save_on_interrupt=True)

        model = as_float32(with_stock_layers(model))  # what is sampled, converted, saved
        val_loss = history["val_loss"][-1] if history.get("val_loss") else None
        val_bpc = val_loss / math.log(2) if val_loss is not None else None
        train_loss = history["loss"][-1] if history.get("loss") else None
        sample = final_sample(config.arch.value, model, corpus.vocab, config.seed)
        metadata = {
            "dataset": corpus.source, "arch": config.arch.value, "input_shape": [None],
            "preprocessing": {
                "input": "int32 character ids (batch, time <= seq_len) from text.vocab",
                "output": "next-character logits (batch, time, vocab size)"},
            "text": {"vocab": corpus.vocab, "seq_len": seq_len,
                     "most_common_char": Counter(corpus.text).most_common(1)[0][0],
                     "unit": "unicode code point"},
            "model": {"layers": config.layers, "dim": config.dim, "heads": config.heads,
                      "dropout": config.dropout, "parameters": model.count_params()},
            "metrics": {"val_loss": val_loss, "val_bpc": val_bpc, "train_loss": train_loss},
            "training": {"steps_per_epoch": steps, "batch_size": batch,
                         "learning_rate": config.learning_rate, "seed": config.seed,
                         "train_chars": len(train_ids), "val_chars": len(val_ids),
                         "val_window": val_window},
            "sample": sample,
        }

        def write_plots(folder: Path) -> None:
            if history.get("loss"):
                plots.training_curves(history, folder / "plots" / "loss_curve.png",
                                      f"train-text {config.arch.value}: loss (nats/char)")

        decoder = litert.converted(lambda: litert.convert_module(
            models.decoding_functions(config.arch.value, model), model))
        if decoder is not None:
            metadata[litert.META_KEY] = {DECODER_FILE: decoder[1]}
        run.save(model, metadata, write_plots, extras=None if decoder is None else
                 lambda folder: write_atomic(folder / DECODER_FILE, decoder[0]))
        return run.result(
            TextResult, corpus=corpus.source, arch=config.arch.value,
            parameters=model.count_params(), vocab_size=len(corpus.vocab),
            train_chars=len(train_ids), val_chars=len(val_ids), seq_len=seq_len,
            epochs_run=run.epochs_completed, stopped_by_time=run.stopped == "time limit",
            **metadata["metrics"], train_chars_per_second=run.per_second(batch * seq_len),
            sample=sample).report()


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


def _val_window(arch: TextArch, seq_len: int, val_chars: int) -> int:
    """How many consecutive characters each validation window holds.

    A transformer sees at most `seq_len` characters, so it is scored on windows of that length.
    A recurrent model reads text as one stream (`generate-text` carries its state through
    everything it writes), so it is scored on windows of at least RECURRENT_VAL_WINDOW: with
    windows of `--seq-len` one character in 128 would be scored with no context and the next
    few with little, which made the measured loss about 0.02 nats worse than the model is
    (a 10-minute 384-unit GRU on Tiny Shakespeare: 1.508 on windows of 128, 1.486 on windows
    of 1,024)."""
    window = seq_len if arch == TextArch.transformer else max(seq_len, RECURRENT_VAL_WINDOW)
    return max(1, min(window, val_chars - 1))


def final_sample(arch: str, model: Any, vocab: list[str], seed: int,
                 length: int = SAMPLE_CHARS, decoder: Any = None) -> str:
    """`length` characters sampled at temperature 0.8, starting from an empty prompt."""
    ids, _ = start_ids("", vocab, fallback_char(vocab, {}))
    decoder = decoder or models.decoder(arch, model)
    return "".join(generate(decoder, vocab, ids, length, Sampler(0.8, seed=seed)))


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
        self._decoder: Any = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.enabled:
            return
        self._decoder = self._decoder or models.decoder(self.arch, self.model)
        text = final_sample(self.arch, self.model, self.vocab, self.seed + epoch, 120,
                            self._decoder)
        err.print(f"  sample: {text!r}", markup=False, highlight=False)
