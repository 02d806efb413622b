"""Train, evaluate and save an image classifier: the flow `train-mnist` and `train-cifar` share.

The task modules supply the data (uint8 arrays), the model builder and the recipe (augmentation,
label smoothing); this module runs the fit on a tf.data pipeline, measures the test set, draws the
plots and writes the model folder atomically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit import artifacts, plots
from dlkit.checkpoint import Checkpoint, ReseedEachEpoch, fit_resumable
from dlkit.console import info
from dlkit.data.pipelines import (
    Augment,
    image_dataset,
    plan_steps,
    split_validation,
    training_dataset,
)
from dlkit.data.readers import ArraySplits
from dlkit.errors import DlkitError
from dlkit.runtime import Runtime
from dlkit.training import (
    Progress,
    TrainConfig,
    check_finite,
    warmup_cosine,
)


@dataclass
class Recipe:
    """How to train one architecture: model builder and optimisation details."""

    build: Callable[[tuple[int, int, int], int], keras.Model]
    augment: Augment | None = None
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    preprocessing: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassifierResult:
    """What a training run reports (`--json` prints it)."""

    task: str
    dataset: str
    arch: str
    epochs: int
    batch_size: int
    train_examples: int
    test_examples: int
    test_accuracy: float
    test_loss: float
    train_seconds: float
    images_per_second: float
    device: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def limit_splits(data: ArraySplits, limit: int | None) -> ArraySplits:
    """Keep only the first `limit` training and test examples (smoke runs)."""
    if limit is None:
        return data
    return ArraySplits(data.name, data.x_train[:limit], data.y_train[:limit],
                       data.x_test[:limit], data.y_test[:limit], data.class_names)


def train_classifier(task: str, arch: str, data: ArraySplits, recipe: Recipe,
                     config: TrainConfig, runtime: Runtime,
                     extra_metadata: dict[str, Any] | None = None) -> ClassifierResult:
    """Fit `recipe` on `data`, evaluate on the test split and save the model folder."""
    num_classes = len(data.class_names)
    x_train, y_train, x_val, y_val = split_validation(data.x_train, data.y_train,
                                                      config.val_split, config.seed)
    if len(x_train) == 0:
        raise DlkitError("no training examples left after the validation split; "
                         "use more data or a smaller --val-split", 2)
    global_batch = config.batch_size
    steps, per_call = plan_steps(len(x_train), global_batch)
    checkpoint = Checkpoint(config.output, {
        "task": task, "dataset": data.name, "arch": arch, "epochs": config.epochs,
        "batch_size": global_batch, "learning_rate": config.learning_rate, "seed": config.seed,
        "train_examples": len(x_train)}, writer=runtime.chief)
    with runtime.strategy.scope():
        model = recipe.build(data.input_shape, num_classes)
        _compile(model, recipe, runtime, per_call, keras.optimizers.AdamW(
            warmup_cosine(config.learning_rate, steps * config.epochs),
            weight_decay=recipe.weight_decay))
        done, hist, timer = checkpoint.begin(model, config.resume)
    train_ds = _labelled(training_dataset(x_train, y_train, global_batch, steps, config.seed,
                                          config.epochs, done, recipe.augment), num_classes)
    val_ds = (_labelled(image_dataset(x_val, y_val, global_batch), num_classes)
              if len(x_val) else None)

    info(f"training {model.name} ({model.count_params():,} parameters) on {data.name}: "
         f"{len(x_train):,} train / {len(x_val):,} validation / {len(data.x_test):,} test "
         f"images, {config.epochs} epochs{f' (resuming after {done})' if done else ''}, "
         f"batch {global_batch}, {runtime.device}")
    fit_resumable(model, train_ds, checkpoint, config.epochs, done, hist, timer.seconds,
                  [ReseedEachEpoch(config.seed), timer, Progress(config.epochs, steps)],
                  validation_data=val_ds, steps_per_epoch=steps)
    train_seconds = float(sum(timer.seconds))
    check_finite(hist)

    probs = model.predict(image_dataset(data.x_test, data.y_test, global_batch)
                          .map(lambda x, y: x), verbose=0)
    predicted = probs.argmax(axis=1)
    test_accuracy = float((predicted == data.y_test).mean())
    picked = np.clip(probs[np.arange(len(probs)), data.y_test], 1e-7, 1.0)
    test_loss = float(-np.log(picked).mean())

    metadata = {
        "task": task, "dataset": data.name, "arch": arch, "class_names": data.class_names,
        "input_shape": list(data.input_shape),
        "preprocessing": {"input": "raw pixels 0-255, RGB channel order for colour images",
                          "scaling": "divide by 255 (inside the model)",
                          "resize_to": list(data.input_shape[:2]), **recipe.preprocessing},
        "metrics": {"test_accuracy": test_accuracy, "test_loss": test_loss},
        "history": hist,
        "training": {"epochs": config.epochs, "batch_size": global_batch,
                     "learning_rate": config.learning_rate, "seed": config.seed,
                     "label_smoothing": recipe.label_smoothing,
                     "train_examples": len(x_train), "val_examples": len(x_val),
                     "seconds": train_seconds, "epoch_seconds": timer.seconds,
                     "device": runtime.device, "mixed_precision": runtime.mixed_precision},
        **(extra_metadata or {}),
    }

    def write_plots(folder: Path) -> None:
        plot_dir = folder / artifacts.PLOTS
        plots.training_curves(hist, plot_dir / "training_curves.png", f"{task} {data.name}")
        plots.confusion_matrix(_confusion(data.y_test, predicted, num_classes), data.class_names,
                               plot_dir / "confusion_matrix.png")
        _prediction_grid(data, predicted, probs, plot_dir / "test_predictions.png")

    if runtime.chief:
        paths = artifacts.save_model_folder(config.output, model, metadata, write_plots)
    else:  # a multi-worker run's other workers: the chief writes the one model folder
        paths = artifacts.artifact_paths(config.output)
    checkpoint.remove()
    images = steps * min(global_batch, len(x_train)) * config.epochs
    return ClassifierResult(task, data.name, arch, config.epochs, global_batch, len(x_train),
                            len(data.x_test), test_accuracy, test_loss, train_seconds,
                            images / train_seconds if train_seconds else 0.0, runtime.device,
                            paths, hist)


def _compile(model: keras.Model, recipe: Recipe, runtime: Runtime, per_call: int,
             optimizer: keras.Optimizer) -> None:
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(
                      label_smoothing=recipe.label_smoothing),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                  jit_compile=runtime.jit_compile, steps_per_execution=per_call)


def _labelled(ds: Any, num_classes: int) -> Any:
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))


def _confusion(truth: np.ndarray, predicted: np.ndarray, n: int) -> np.ndarray:
    matrix = np.zeros((n, n), np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def _prediction_grid(data: ArraySplits, predicted: np.ndarray, probs: np.ndarray,
                     path: Path, count: int = 25) -> None:
    """The seed's 5x5 grid of test images, captioned `predicted (confidence)`; wrong in red."""
    count = min(count, len(data.x_test))
    names = data.class_names
    titles = [f"{names[predicted[i]]} ({probs[i, predicted[i]]:.0%})" for i in range(count)]
    colors = ["black" if predicted[i] == data.y_test[i] else "red" for i in range(count)]
    plots.image_grid(data.x_test[:count], titles, path, "Test images: predicted label",
                     colors, columns=5)

