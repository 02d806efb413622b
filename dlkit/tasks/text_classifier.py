"""`dlkit train-text-classifier` and `dlkit classify-text`: label short texts.

Training data is either a folder with one subfolder of UTF-8 `.txt` files per class (the layout of
the IMDB and 20 Newsgroups downloads) or a CSV with a text and a label column. A seeded,
per-class split holds out `--val-split` for validation. The vocabulary is learned from the
training texts by a `TextVectorization` layer inside the model, so the saved model (and the
exported SavedModel) takes raw strings and returns class probabilities.

Training checkpoints after every epoch (`dlkit.checkpoint`): `--resume` re-adapts the same
vocabulary (checked against the checkpoint's digest), loads weights and optimizer state, and
continues with the batch order an uninterrupted run would have used.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.errors import UsageError, require_choice
from dlkit.training import TrainConfig

ARCHS = ("bilstm", "transformer")


@dataclass
class TextClassifierConfig(TrainConfig):
    folder: Path | None = None
    csv: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    arch: str = "bilstm"
    vocab_size: int = 20_000
    seq_len: int = 200

    def validate(self) -> None:
        super().validate()
        if (self.folder is None) == (self.csv is None):
            raise UsageError("give the training texts with either --data-dir (one subfolder of "
                             ".txt files per class) or --csv FILE --text-column T "
                             "--label-column L")
        require_choice("--arch", self.arch, ARCHS)
        if self.vocab_size < 3:
            raise UsageError(f"--vocab-size must be at least 3 (got {self.vocab_size})")
        if self.seq_len < 1:
            raise UsageError(f"--seq-len must be at least 1 (got {self.seq_len})")


@dataclass
class Texts:
    """Labelled texts with the class names (sorted) and where they came from."""

    texts: list[str]
    labels: np.ndarray  # int32 indices into class_names
    class_names: list[str]
    source: str


@dataclass
class TextClassifierResult:
    """What a training run reports (`--json` prints it)."""

    task: str
    arch: str
    source: str
    class_names: list[str]
    train_examples: int
    val_examples: int
    val_accuracy: float | None
    val_loss: float | None
    majority_rate: float | None
    vocabulary: int
    epochs: int
    train_seconds: float
    texts_per_second: float
    device: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_folder(root: Path) -> Texts:
    """One subfolder per class, one UTF-8 `.txt` file per example."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"--data-dir {root} is not a folder; give a folder with one subfolder "
                         "of .txt files per class")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"{root} has no class subfolders; put each class's .txt files in a "
                         "subfolder named after the class")
    texts: list[str] = []
    labels: list[int] = []
    for index, folder in enumerate(classes):
        files = sorted(folder.rglob("*.txt"))
        if not files:
            raise UsageError(f"class folder {folder} holds no .txt files; add examples or "
                             "remove the folder")
        for path in files:
            try:
                texts.append(path.read_text(encoding="utf-8").strip())
            except UnicodeDecodeError as exc:
                raise UsageError(f"{path} is not UTF-8 text (byte {exc.start}); convert it, "
                                 "for example with iconv -t UTF-8") from None
            labels.append(index)
    return _checked(Texts(texts, np.array(labels, np.int32), [c.name for c in classes],
                          str(root)))


def read_csv(path: str, text_column: str, label_column: str) -> Texts:
    """A CSV with a text column and a label column (labels become sorted class names)."""
    from dlkit.data.tabular import read_labelled_text

    texts, labels = read_labelled_text(path, text_column, label_column)
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    return _checked(Texts(texts, np.array([index[v] for v in labels], np.int32), names,
                          str(path)))


def _checked(data: Texts) -> Texts:
    if len(data.class_names) < 2:
        raise UsageError(f"{data.source} has a single class ({data.class_names[0]!r}); a "
                         "classifier needs at least two")
    return data


def split(data: Texts, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-class seeded split: train and validation indices."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for k in range(len(data.class_names)):
        members = rng.permutation(np.flatnonzero(data.labels == k))
        n_val = int(round(len(members) * fraction))
        if fraction > 0 and n_val == 0 and len(members) > 1:
            n_val = 1
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return rng.permutation(np.array(train, np.int64)), np.array(sorted(val), np.int64)


def run(config: TextClassifierConfig) -> TextClassifierResult:
    """Read the texts, train, evaluate on the validation part and save the model folder."""
    from dlkit.artifacts import check_output

    config.validate()
    data = (read_folder(config.folder) if config.folder is not None else
            read_csv(str(config.csv), config.text_column, config.label_column))
    if config.limit is not None:
        keep = np.random.default_rng(config.seed).permutation(len(data.texts))[:config.limit]
        keep.sort()
        data = _checked(Texts([data.texts[i] for i in keep], data.labels[keep],
                              data.class_names, data.source))
    config.output = check_output(config.output)
    from dlkit import runtime as rt

    runtime = rt.start(config.seed, config.strategy, config.deterministic)
    return _train(config, data, runtime)


def _dataset(texts: list[str], labels: np.ndarray, batch: int) -> Any:
    """Evaluation batches of (strings, labels), in order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(texts, tf.string), labels)).cache()
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def _train(config: TextClassifierConfig, data: Texts, runtime: Any) -> TextClassifierResult:
    import keras

    from dlkit import artifacts
    from dlkit.checkpoint import ReseedEachEpoch, fit_resumable
    from dlkit.console import info
    from dlkit.data.pipelines import epoch_batches
    from dlkit.nets import text_classifier as nets
    from dlkit.training import Progress, check_finite, warmup_cosine

    train_idx, val_idx = split(data, config.val_split, config.seed)
    if len(train_idx) == 0:
        raise UsageError("no training texts left after the validation split; use more data or "
                         "a smaller --val-split")
    x_train = [data.texts[i] for i in train_idx]
    x_val = [data.texts[i] for i in val_idx]
    y_train, y_val = data.labels[train_idx], data.labels[val_idx]
    steps = -(-len(x_train) // config.batch_size)
    with runtime.strategy.scope():
        # Adapting is deterministic (words sorted by count, then by word), so a resumed run
        # rebuilds the same vocabulary; load_weights does not restore it (it is an asset, not a
        # variable) and the checkpoint's settings hold its digest to check that it did.
        vectorize = nets.vectorizer(x_train, config.vocab_size, config.seq_len)
        model = nets.build(config.arch, vectorize, len(data.class_names))
        model.compile(optimizer=keras.optimizers.Adam(
                          warmup_cosine(config.learning_rate, steps * config.epochs)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        checkpoint = _checkpoint(config, x_train, y_train, x_val, y_val, vectorize)
        done, hist, timer = checkpoint.begin(model, config.resume)
    train_ds = epoch_batches((x_train, y_train), config.batch_size, config.seed, config.epochs,
                             done)
    val_ds = _dataset(x_val, y_val, config.batch_size) if len(x_val) else None
    info(f"training {config.arch} ({model.count_params():,} parameters, vocabulary "
         f"{vectorize.vocabulary_size():,}) on {data.source}: {len(x_train):,} train / "
         f"{len(x_val):,} validation texts, {len(data.class_names)} classes, "
         f"{config.epochs} epochs{f' (resuming after {done})' if done else ''}, "
         f"{runtime.device}")
    fit_resumable(model, train_ds, checkpoint, config.epochs, done, hist, timer.seconds,
                  [ReseedEachEpoch(config.seed), timer, Progress(config.epochs, steps)],
                  validation_data=val_ds, steps_per_epoch=steps)
    train_seconds = float(sum(timer.seconds))
    check_finite(hist)
    val_acc = hist["val_accuracy"][-1] if "val_accuracy" in hist else None
    val_loss = hist["val_loss"][-1] if "val_loss" in hist else None
    majority = (float(np.bincount(y_val, minlength=len(data.class_names)).max() / len(y_val))
                if len(y_val) else None)
    metadata = {
        "task": "train-text-classifier", "arch": config.arch, "source": data.source,
        "class_names": data.class_names, "input_shape": [],
        "preprocessing": {"input": "raw UTF-8 strings, a batch of shape (N,)",
                          "tokenizer": "TextVectorization inside the model: lower case, "
                                       "punctuation stripped, whitespace split",
                          "vocabulary": vectorize.vocabulary_size(),
                          "sequence_length": config.seq_len},
        "metrics": {"val_accuracy": val_acc, "val_loss": val_loss,
                    "majority_rate": majority},
        "history": hist,
        "training": {"epochs": config.epochs, "batch_size": config.batch_size,
                     "learning_rate": config.learning_rate, "seed": config.seed,
                     "train_examples": len(x_train), "val_examples": len(x_val),
                     "seconds": train_seconds, "epoch_seconds": timer.seconds,
                     "device": runtime.device, "mixed_precision": runtime.mixed_precision},
    }

    def write_plots(folder: Path) -> None:
        from dlkit import plots

        plot_dir = folder / artifacts.PLOTS
        plots.training_curves(hist, plot_dir / "training_curves.png",
                              f"train-text-classifier {config.arch}")
        if len(x_val):
            probs = predict(model, x_val)
            matrix = np.zeros((len(data.class_names),) * 2, np.int64)
            np.add.at(matrix, (y_val, probs.argmax(axis=1)), 1)
            plots.confusion_matrix(matrix, data.class_names, plot_dir / "confusion_matrix.png",
                                   "Confusion matrix (validation texts)")

    paths = artifacts.save_model_folder(config.output, model, metadata, write_plots)
    checkpoint.remove()
    texts_seen = len(x_train) * config.epochs
    return TextClassifierResult(
        "train-text-classifier", config.arch, data.source, data.class_names, len(x_train),
        len(x_val), val_acc, val_loss, majority, vectorize.vocabulary_size(), config.epochs,
        train_seconds, texts_seen / train_seconds if train_seconds else 0.0, runtime.device,
        paths, hist)


def _checkpoint(config: TextClassifierConfig, x_train: list[str], y_train: np.ndarray,
                x_val: list[str], y_val: np.ndarray, vectorize: Any) -> Any:
    """The run's resume folder, tied to the options that shape training, to the texts of each
    part and to the adapted vocabulary."""
    from dlkit.checkpoint import Checkpoint

    return Checkpoint(config.output, {
        "task": "train-text-classifier", "arch": config.arch, "vocab_size": config.vocab_size,
        "seq_len": config.seq_len, "epochs": config.epochs, "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "seed": config.seed,
        "train_texts": _digest(x_train, y_train), "val_texts": _digest(x_val, y_val),
        "vocabulary": _digest(vectorize.get_vocabulary(), np.zeros(0, np.int32))})


def _digest(texts: list[str], labels: np.ndarray) -> str:
    """A short fingerprint of labelled texts (the same texts in the same order, same digest)."""
    import hashlib

    h = hashlib.sha256()
    for text in texts:
        h.update(text.encode("utf-8") + b"\0")
    h.update(np.ascontiguousarray(labels, np.int64).tobytes())
    return h.hexdigest()[:16]


def _stdin_lines() -> list[str]:
    """The lines of stdin as UTF-8 text; other bytes are the user's bad input (exit 2)."""
    import sys

    stream = getattr(sys.stdin, "buffer", None)
    try:
        raw = stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
        return raw.decode("utf-8-sig").splitlines()
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise UsageError(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "convert it, for example with iconv -t UTF-8") from None


def predict(model: Any, texts: list[str], batch: int = 256) -> np.ndarray:
    """Class probabilities (N, classes) for raw strings."""
    import tensorflow as tf

    parts = [np.asarray(model(tf.constant(texts[i:i + batch], tf.string), training=False))
             for i in range(0, len(texts), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


@dataclass
class Prediction:
    text: str
    labels: list[str]
    confidences: list[float]

    def to_line(self) -> str:
        return "\t".join(f"{label}\t{conf:.4f}" for label, conf in
                         zip(self.labels, self.confidences, strict=True))

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.labels[0], "confidence": self.confidences[0],
                "top": [{"label": k, "confidence": c} for k, c in
                        zip(self.labels, self.confidences, strict=True)]}


@dataclass
class ClassifyTextConfig:
    model: Path
    texts: list[str]
    top_k: int = 1


def classify(config: ClassifyTextConfig) -> tuple[list[Prediction], float]:
    """Predict the label of each text (`-` reads one text per line from stdin)."""
    from dlkit.artifacts import load_keras_model, load_metadata
    from dlkit.nets import text_classifier as _registered  # noqa: F401 (custom layers)

    if config.top_k < 1:
        raise UsageError(f"--top-k must be at least 1 (got {config.top_k})")
    meta = load_metadata(config.model, "train-text-classifier")
    texts: list[str] = []
    for text in config.texts:
        texts.extend(_stdin_lines() if text == "-" else [text])
    if not texts:
        raise UsageError("no texts to classify; give TEXT arguments or - to read lines from "
                         "stdin")
    model = load_keras_model(config.model)
    names = meta["class_names"]
    started = time.perf_counter()
    probs = predict(model, texts)
    seconds = time.perf_counter() - started
    k = min(config.top_k, len(names))
    order = np.argsort(-probs, axis=1)[:, :k]
    return [Prediction(t, [names[j] for j in row], [float(p[j]) for j in row])
            for t, row, p in zip(texts, order, probs, strict=True)], seconds
