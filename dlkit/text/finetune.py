"""`dlkit train-text --from-preset NAME`: fine-tune a pretrained keras-hub CausalLM on a corpus.

Top to bottom: read the corpus (the checks of `train-text`: empty, binary, not UTF-8), hold out
its last `--val-split` characters, tokenize both parts with the preset's own tokenizer, load the
pretrained model (optionally with LoRA adapters of rank `--lora`: only they train), fit it on
seeded random windows of `--seq-len` tokens with AdamW (warm-up, then cosine decay, over the
epochs or `--max-minutes`), report the validation loss per token and per character each epoch,
and save a model folder holding the fine-tuned keras-hub preset (`preset/`, which
`generate-text --model FOLDER` and `--from-preset FOLDER` load), a SavedModel whose
`serving_default` maps token ids and a padding mask to next-token logits, `metadata.json` and a
loss curve. Ctrl-C saves the model trained so far; `--resume` continues exactly.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dlkit.core import plots
from dlkit.core.console import Report, fmt, info
from dlkit.core.errors import UsageError
from dlkit.core.hub import (
    PRESET_DIR,
    Preset,
    import_keras_hub,
    load_task,
    preset_class,
    resolve,
)
from dlkit.core.runner import Run, fingerprint
from dlkit.core.schedules import Schedule
from dlkit.data.text import eval_windows, read_corpus, split_ids, train_windows
from dlkit.text.config import TextConfig

CHUNK_CHARS = 1 << 16  # tokenize long corpora in pieces of about this many characters


@dataclass(kw_only=True)
class FinetuneResult:
    """What a fine-tuning run reports (`--json` prints it)."""

    task: str
    corpus: str
    preset: str
    model_class: str
    parameters: int
    trainable_parameters: int
    lora_rank: int | None
    train_tokens: int
    val_tokens: int
    seq_len: int
    epochs_run: int
    stopped: str
    val_loss: float | None
    val_loss_per_char: float | None
    train_loss: float | None
    train_seconds: float
    train_tokens_per_second: float
    device: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]]

    def report(self) -> Report:
        return Report(f"train-text --from-preset {self.preset}", {
            "validation loss (nats/token)": self.val_loss,
            "validation loss (nats/char)": self.val_loss_per_char,
            "trainable parameters": f"{self.trainable_parameters:,} of {self.parameters:,}",
            "epochs": f"{self.epochs_run} ({self.stopped})",
            "training time (s)": self.train_seconds, "tokens/s": self.train_tokens_per_second,
            "device": self.device, "model folder": self.artifacts["model_dir"]},
            f"val_loss={fmt(self.val_loss)} model={self.artifacts['model_dir']}", asdict(self))


def finetune(config: TextConfig) -> Report:
    """Read and tokenize the corpus, fine-tune the preset, save the model folder."""
    local = Path(config.from_preset).expanduser()  # a folder is an input; a name is not
    with Run(config, inputs=[config.corpus, config.data_dir,
                             local if local.exists() else None]) as run:
        preset = resolve(config.from_preset, "CausalLM")
        corpus = read_corpus(config.corpus, config.data_dir, config.limit)
        train_text, val_text = split_ids(corpus.text, config.val_split)  # at a character
        tokenizer = load_tokenizer(preset)
        train_ids, val_ids = tokenize(tokenizer, train_text), tokenize(tokenizer, val_text)
        seq_len = _fit_seq_len(config.seq_len, len(train_ids), _context(preset))
        batch = config.batch_size
        steps = max(1, math.ceil(len(train_ids) / (batch * seq_len)))
        runtime = run.start(fingerprint(train_ids, val_ids, _preset_digest(preset)),
                            inputs=[*corpus.files, preset.path])

        with run.scope():
            task = load_task(preset, "CausalLM")
            preprocessor, task.preprocessor = task.preprocessor, None  # fit on token ids
            if config.lora:
                task.backbone.enable_lora(config.lora)
            task.compile(optimizer=keras.optimizers.AdamW(
                             config.learning_rate, weight_decay=config.weight_decay,
                             beta_2=0.99, clipnorm=1.0),
                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         weighted_metrics=[], jit_compile=runtime.jit_compile)
            done = run.restore(task)

        train_ds = train_windows(train_ids, seq_len, batch, config.seed, steps, config.epochs,
                                 done).map(as_inputs)
        val_ds = None
        if len(val_ids) >= 2:
            val_ds = eval_windows(val_ids, min(seq_len, len(val_ids) - 1), batch).map(as_inputs)
        trainable = sum(int(np.prod(w.shape)) for w in task.trainable_weights)
        info(f"fine-tuning {config.from_preset} ({type(task).__name__}, {trainable:,} of "
             f"{task.count_params():,} parameters trained"
             + (f", LoRA rank {config.lora}" if config.lora else "") + f") on {corpus.source}: "
             f"{len(train_ids):,} train / {len(val_ids):,} validation tokens, windows of "
             f"{seq_len}, batch {batch}, {steps} steps per epoch, {config.epochs} epochs"
             + (f" or {config.max_minutes:g} minutes" if config.max_minutes else "")
             + (f" (resuming after {done})" if done else "") + f", {runtime.device}")
        per_char = PerCharacter(len(val_ids) / max(len(val_text), 1))
        history = run.fit(task, train_ds, steps=steps, validation=val_ds,
                          schedule=Schedule(config.learning_rate, warmup_fraction=0.03,
                                            warmup_steps=20, floor=0.1),
                          callbacks=[per_char], save_on_interrupt=True)

        val_loss = history["val_loss"][-1] if history.get("val_loss") else None
        train_loss = history["loss"][-1] if history.get("loss") else None
        val_per_char = per_char.convert(val_loss)
        metadata = {
            "dataset": corpus.source, "arch": type(task).__name__, "input_shape": [None],
            "pretrained": {"from": config.from_preset, "source": preset.source,
                           "preset_dir": PRESET_DIR, "class": type(task).__name__,
                           "lora_rank": config.lora},
            "preprocessing": {
                "input": "token_ids int32 (batch, time) from the preset's tokenizer, "
                         "padding_mask bool (batch, time)",
                "output": "next-token logits (batch, time, vocabulary size)"},
            "text": {"unit": "token", "seq_len": seq_len,
                     "tokens_per_char": len(val_ids) / max(len(val_text), 1)},
            "model": {"parameters": task.count_params(), "trainable": trainable},
            "metrics": {"val_loss": val_loss, "val_loss_per_char": val_per_char,
                        "train_loss": train_loss},
            "training": {"steps_per_epoch": steps, "batch_size": batch,
                         "learning_rate": config.learning_rate, "seed": config.seed,
                         "train_tokens": len(train_ids), "val_tokens": len(val_ids)},
        }

        def write_plots(folder: Path) -> None:
            if history.get("loss"):
                plots.training_curves(history, folder / "plots" / "loss_curve.png",
                                      f"fine-tuning {config.from_preset}: loss (nats/token)")

        def model_files(folder: Path) -> None:
            task.preprocessor = preprocessor
            task.save_to_preset(str(folder / PRESET_DIR))
            export_serving(task, folder / "saved_model")

        paths = run.save(task, metadata, write_plots, model_files=model_files)
        return run.result(
            FinetuneResult, corpus=corpus.source, preset=config.from_preset,
            model_class=type(task).__name__, parameters=task.count_params(),
            trainable_parameters=trainable, lora_rank=config.lora,
            train_tokens=len(train_ids), val_tokens=len(val_ids), seq_len=seq_len,
            epochs_run=run.epochs_completed, **metadata["metrics"],
            train_tokens_per_second=run.per_second(batch * seq_len),
            artifacts={**{k: v for k, v in paths.items() if k != "keras_model"},
                       "preset": str(Path(paths["model_dir"]) / PRESET_DIR)}).report()


def load_tokenizer(preset: Preset) -> Any:
    """The preset's tokenizer alone (no weights loaded)."""
    keras_hub = import_keras_hub()
    try:
        return keras_hub.tokenizers.Tokenizer.from_preset(str(preset.path))
    except Exception as exc:  # no tokenizer.json, or another kind of preset
        raise UsageError(f"{preset.name} holds a {preset_class(preset.path)} preset without a "
                         f"tokenizer ({type(exc).__name__}), not a language model; pass a "
                         "language model preset (`dlkit models` lists them)") from None


def tokenize(tokenizer: Any, text: str) -> np.ndarray:
    """The token ids of `text`, tokenized in pieces cut after a newline (where byte-level BPE
    never merges across), as one int32 array."""
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + CHUNK_CHARS)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        pieces.append(text[start:end])
        start = end
    ids = [np.asarray(tokenizer(piece), np.int32).reshape(-1) for piece in pieces]
    return np.concatenate(ids) if ids else np.zeros(0, np.int32)


def _context(preset: Preset) -> int | None:
    """The model's context length from the preset's config (no weights loaded)."""
    import json

    try:
        config = json.loads((preset.path / "config.json").read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    length = config.get("max_sequence_length") if isinstance(config, dict) else None
    return int(length) if isinstance(length, int) else None


def _fit_seq_len(seq_len: int, train_tokens: int, context: int | None) -> int:
    if context is not None and seq_len > context:
        raise UsageError(f"--seq-len {seq_len} is longer than the model's context of "
                         f"{context} tokens; give --seq-len {context} or less")
    if train_tokens < seq_len + 1:
        if train_tokens < 2:
            raise UsageError("the corpus is too short to train on after the validation split; "
                             "give more text or a smaller --val-split")
        return train_tokens - 1
    return seq_len


def _preset_digest(preset: Preset) -> str:
    """What identifies the starting weights in the resume check: the preset's files' sizes
    and modification times (hashing gigabytes of weights would take longer than a step)."""
    files = sorted(p for p in preset.path.rglob("*") if p.is_file())
    return fingerprint([(str(p.relative_to(preset.path)), p.stat().st_size,
                         int(p.stat().st_mtime)) for p in files])


def as_inputs(x: Any, y: Any) -> tuple[dict[str, Any], Any]:
    """A window of token ids as the backbone's inputs (no padding in a full window)."""
    return {"token_ids": x, "padding_mask": tf.ones_like(x, tf.bool)}, y


def export_serving(task: Any, folder: Path) -> None:
    """A SavedModel whose `serving_default` maps (token_ids, padding_mask) to logits."""
    archive = keras.export.ExportArchive()
    archive.track(task)

    def serve(token_ids: Any, padding_mask: Any) -> Any:
        return task({"token_ids": token_ids, "padding_mask": padding_mask}, training=False)

    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec((None, None), tf.int32, name="token_ids"),
        tf.TensorSpec((None, None), tf.bool, name="padding_mask")])
    archive.write_out(str(folder), verbose=False)


class PerCharacter(keras.callbacks.Callback):
    """Adds the validation loss per character (`val_loss_per_char`: nats per token times the
    validation text's tokens per character) to each epoch's logs."""

    def __init__(self, tokens_per_char: float) -> None:
        super().__init__()
        self.tokens_per_char = tokens_per_char

    def convert(self, loss: float | None) -> float | None:
        return None if loss is None else float(loss) * self.tokens_per_char

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and "val_loss" in logs:
            logs["val_loss_per_char"] = self.convert(logs["val_loss"])
