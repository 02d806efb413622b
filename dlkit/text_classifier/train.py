"""`dlkit train-text-classifier`: a classifier of short texts whose saved model takes strings.

Training data is either a folder with one subfolder of UTF-8 `.txt` files per class (the layout of
the IMDB and 20 Newsgroups downloads) or a CSV with a text and a label column. A seeded,
per-class split holds out `--val-split` for validation. The vocabulary is learned from the
training texts by a `TextVectorization` layer inside the model, so the saved model (and the
exported SavedModel) takes raw strings and returns class probabilities.

Training checkpoints after every epoch (`dlkit.core.checkpoint`): `--resume` re-adapts the same
vocabulary from the same texts (the data fingerprint checks them), loads weights and optimizer
state, and continues with the batch order an uninterrupted run would have used.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit.core import plots
from dlkit.core.config import class_weights
from dlkit.core.console import Report, fmt, info
from dlkit.core.errors import UsageError
from dlkit.core.files import TEXT_LIMIT, read_bytes
from dlkit.core.runner import Run, fingerprint
from dlkit.core.schedules import Schedule
from dlkit.core.serving import Predictor, keras_predictor
from dlkit.data.classes import class_folders
from dlkit.data.pipelines import epoch_batches
from dlkit.text_classifier import models
from dlkit.text_classifier.config import TextClassifierConfig


@dataclass
class Texts:
    """Labelled texts with the class names (sorted) and where they came from."""

    texts: list[str]
    labels: np.ndarray  # int32 indices into class_names
    class_names: list[str]
    source: str

    def first(self, limit: int | None) -> Texts:
        """Only the first `limit` texts (`--limit`); it must still hold two classes."""
        if limit is None:
            return self
        return _checked(Texts(self.texts[:limit], self.labels[:limit], self.class_names,
                              self.source))


@dataclass(kw_only=True)
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

    def report(self) -> Report:
        return Report(f"train-text-classifier ({self.arch})", {
            "validation accuracy": self.val_accuracy, "majority-class rate": self.majority_rate,
            "classes": len(self.class_names), "training time (s)": self.train_seconds,
            "device": self.device, "model folder": self.artifacts["model_dir"]},
            f"val_accuracy={fmt(self.val_accuracy)} model={self.artifacts['model_dir']}",
            asdict(self))


def read_folder(root: Path, at_least_two: bool = True) -> Texts:
    """One subfolder per class, one UTF-8 `.txt` file per example, in reading order: the
    classes taken in turn (so the first N texts hold every class)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UsageError(f"--data-dir {root} is not a folder; give a folder with one subfolder "
                         "of .txt files per class")
    classes = class_folders(root, lambda folder: sorted(folder.rglob("*.txt")), ".txt files")
    if not classes:
        raise UsageError(f"{root} has no class subfolders; put each class's .txt files in a "
                         "subfolder named after the class")
    info(f"reading texts from {root} (one subfolder per class)")
    per_class = [[_read_text(path) for path in files] for _, files in classes]
    order = sorted((i, k) for k, texts in enumerate(per_class) for i in range(len(texts)))
    data = Texts([per_class[k][i] for i, k in order], np.array([k for _, k in order], np.int32),
                 [folder.name for folder, _ in classes], str(root))
    return _checked(data) if at_least_two else data


def _read_text(path: Path) -> str:
    try:
        return read_bytes(path, "text file", limit=TEXT_LIMIT).decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start}); convert it, for "
                         "example with iconv -t UTF-8") from None


def read_csv(path: str, text_column: str, label_column: str,
             at_least_two: bool = True) -> Texts:
    """A CSV with a text column and a label column (labels become sorted class names)."""
    from dlkit.data.tabular import read_labelled_text

    texts, labels = read_labelled_text(path, text_column, label_column)
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    data = Texts(texts, np.array([index[v] for v in labels], np.int32), names, str(path))
    return _checked(data) if at_least_two else data


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


def train_text_classifier(config: TextClassifierConfig) -> Report:
    """Read the texts, train, evaluate on the validation part and save the model folder."""
    with Run(config, inputs=[config.data_dir, config.csv]) as run:
        data = (read_folder(config.data_dir) if config.data_dir is not None else
                read_csv(str(config.csv), config.text_column, config.label_column))
        data = data.first(config.limit)
        train_idx, val_idx = split(data, config.val_split, config.seed)
        if len(train_idx) == 0:
            raise UsageError("no training texts left after the validation split; use more "
                             "data or a smaller --val-split")
        x_train = [data.texts[i] for i in train_idx]
        x_val = [data.texts[i] for i in val_idx]
        y_train, y_val = data.labels[train_idx], data.labels[val_idx]
        steps = -(-len(x_train) // config.batch_size)
        runtime = run.start(fingerprint(x_train, y_train, x_val, y_val, data.class_names))

        with run.scope():
            # Adapting is deterministic (words sorted by count, then by word), so a resumed
            # run rebuilds the same vocabulary (the data fingerprint guarantees the same texts).
            vectorize = models.vectorizer(x_train, config.vocab_size, config.seq_len,
                                          bag=config.arch.value == "bow")
            model = models.build(config.arch.value, vectorize, len(data.class_names))
            model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            done = run.restore(model)

        weights = class_weights(y_train, len(data.class_names), config.class_weight)
        columns = (x_train, y_train) if all(w == 1.0 for w in weights) else \
            (x_train, y_train, np.array(weights, np.float32)[y_train])
        start = _linear_start(run, model, columns, done) if config.arch.value == "bow" else None
        train_ds = epoch_batches(columns, config.batch_size, config.seed, config.epochs, done)
        val_ds = _dataset(x_val, y_val, config.batch_size) if len(x_val) else None
        info(f"training {config.arch.value} ({model.count_params():,} parameters, vocabulary "
             f"{vectorize.vocabulary_size():,}) on {data.source}: {len(x_train):,} train / "
             f"{len(x_val):,} validation texts, {len(data.class_names)} classes, "
             f"{config.epochs} epochs{f' (resuming after {done})' if done else ''}, "
             f"{runtime.device}")
        history = run.fit(model, train_ds, steps=steps, validation=val_ds,
                          schedule=Schedule(config.learning_rate, warmup_fraction=0.1,
                                            start=0.1))

        val_acc = history["val_accuracy"][-1] if "val_accuracy" in history else None
        val_loss = history["val_loss"][-1] if "val_loss" in history else None
        majority = (float(np.bincount(y_val, minlength=len(data.class_names)).max()
                          / len(y_val)) if len(y_val) else None)
        metadata = {
            "arch": config.arch.value, "source": data.source, "class_names": data.class_names,
            "outputs": "probabilities", "input_shape": [],
            "preprocessing": {"input": "raw UTF-8 strings, a batch of shape (N,)",
                              "tokenizer": "TextVectorization inside the model: lower case, "
                                           "punctuation stripped, whitespace split",
                              "vocabulary": vectorize.vocabulary_size(),
                              "sequence_length": (None if config.arch.value == "bow" else
                                                  config.seq_len),
                              "features": ("tf-idf of the vocabulary's words (unknown "
                                           "words left out), unit length"
                                           if config.arch.value == "bow" else "token ids")},
            "metrics": {"val_accuracy": val_acc, "val_loss": val_loss,
                        "majority_rate": majority},
            "training": {"batch_size": config.batch_size, "learning_rate": config.learning_rate,
                         "seed": config.seed, "train_examples": len(x_train),
                         "val_examples": len(x_val), "class_weights": weights,
                         "closed_form_start": start},
        }

        def write_plots(folder: Path) -> None:
            plot_dir = folder / "plots"
            plots.training_curves(history, plot_dir / "training_curves.png",
                                  f"train-text-classifier {config.arch.value}")
            if len(x_val):
                predicted = predict(keras_predictor(model, model.name), x_val).argmax(axis=1)
                plots.confusion_matrix(plots.confusion(y_val, predicted, len(data.class_names)),
                                       data.class_names, plot_dir / "confusion_matrix.png",
                                       "Confusion matrix (validation texts)")

        run.save(model, metadata, write_plots)
        return run.result(
            TextClassifierResult, arch=config.arch.value, source=data.source,
            class_names=data.class_names, train_examples=len(x_train),
            val_examples=len(x_val), **metadata["metrics"],
            vocabulary=vectorize.vocabulary_size(),
            train_seconds=run.train_seconds + (start or {}).get("seconds", 0.0),
            texts_per_second=run.per_second(config.batch_size)).report()


def _linear_start(run: Run, model: keras.Model, columns: tuple[Any, ...],
                  done: int) -> dict[str, Any] | None:
    """A new bow run sets its linear layer in closed form (`dlkit.text_classifier.linear`)
    before the first epoch; a resumed one has its weights from the checkpoint and reports the
    start its first session made (kept in every checkpoint)."""
    if done:
        start = run.extra_state("linear_start")
    else:
        from dlkit.text_classifier.linear import start_linear_layer

        made = start_linear_layer(model, *columns)
        info(made.describe())
        start = asdict(made)
    run.checkpoint.extra_state["linear_start"] = lambda: start
    return start


def _dataset(texts: list[str], labels: np.ndarray, batch: int) -> Any:
    """Evaluation batches of (strings, labels), in order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(texts, tf.string), labels)).cache()
    return ds.batch(batch).prefetch(tf.data.AUTOTUNE)


def predict(model: Predictor, texts: list[str], batch: int = 256) -> np.ndarray:
    """Class probabilities (N, classes) for raw strings, `batch` texts at a time (`model`: the
    folder's, from `dlkit.core.serving.open_model`, or `keras_predictor` of a Keras model)."""
    import tensorflow as tf

    parts = [model.run([tf.constant(texts[i:i + batch], tf.string)])
             for i in range(0, len(texts), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
