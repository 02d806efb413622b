"""`dlkit train-mnist` and `dlkit train-cifar`: train an image classifier, evaluate it, save it.

The flow of both, top to bottom: read the images (uint8 arrays), hold out a validation part, build
the classifier and compile it (AdamW, warm-up then cosine decay, label smoothing for CIFAR), fit
it on a seeded tf.data pipeline (augmentation inside the graph), recompute its BatchNormalization
statistics with the final weights, measure the test set, save the model folder with its plots.
The runner (`dlkit.core.runner`) does the plumbing: the output lock, resume, progress, the time
budget, the NaN stop and the atomic save.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit.core import plots
from dlkit.core.config import ClassWeight, class_weights
from dlkit.core.console import Report, fmt, info, warn
from dlkit.core.errors import UsageError
from dlkit.core.precision import as_float32
from dlkit.core.runner import Run, fingerprint
from dlkit.core.schedules import Schedule
from dlkit.data.pipelines import (
    eval_batch,
    image_dataset,
    plan_steps,
    split_validation,
    training_dataset,
    translate_flip,
)
from dlkit.data.readers import ArraySplits
from dlkit.data.registry import GreyDataset
from dlkit.image_classifier import models
from dlkit.image_classifier.config import CifarConfig, ClassifierConfig, MnistArch, MnistConfig


@dataclass(kw_only=True)
class ClassifierResult:
    """What a training run reports (`--json` prints it)."""

    task: str
    dataset: str
    arch: str
    epochs: int
    epochs_completed: int
    stopped: str
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

    def report(self) -> Report:
        return Report(f"{self.task} {self.dataset} ({self.arch})", {
            "test accuracy": self.test_accuracy, "test loss": self.test_loss,
            "epochs": f"{self.epochs_completed}/{self.epochs} ({self.stopped})",
            "training time (s)": self.train_seconds, "images/s": self.images_per_second,
            "device": self.device, "model folder": self.artifacts["model_dir"]},
            f"test_accuracy={fmt(self.test_accuracy)} model={self.artifacts['model_dir']}",
            asdict(self))


def train_mnist(config: MnistConfig) -> Report:
    """Train a classifier on 28x28 greyscale images (MNIST, Fashion-MNIST, digits)."""
    from dlkit.data.readers import load_mnist_family

    with Run(config, inputs=[config.data_dir]) as run:
        data = load_mnist_family(config.dataset.value, config.data_dir).first(config.limit)
        # Clothes look the same mirrored; digits and letters do not.
        flip = "alternate" if config.dataset == GreyDataset.fashion_mnist else "none"
        augment = translate_flip(2, flip, config.seed) if config.augment else None
        # Digits are light on dark (MNIST's convention): classify-image inverts dark-on-light
        # photos for these models.
        return train(run, config, data, augment=augment, mirrored=flip != "none",
                     weight_decay=5e-4 if config.arch == MnistArch.airbench else 0.0,
                     preprocessing={"color": "grayscale", "foreground": "light-on-dark"})


def train_cifar(config: CifarConfig) -> Report:
    """Train a classifier on CIFAR-10 or on the user's image folders; with --backbone, by
    transfer learning from a pretrained keras-hub backbone (`transfer`)."""
    local = Path(config.backbone).expanduser() if config.backbone else None
    with Run(config, inputs=[config.data_dir, local if local and local.exists() else None]) \
            as run:
        pretrained = None
        if config.backbone:
            from dlkit.image_classifier import transfer

            pretrained = transfer.open_backbone(config.backbone)  # loads in run.scope()
            transfer.check_image_size(pretrained, config.image_size)
        data, source = load_cifar_or_folder(config)
        data = data.first(config.limit)
        augment = translate_flip(max(2, config.image_size // 16), "alternate", config.seed) \
            if config.augment else None
        return train(run, config, data, augment=augment, mirrored=config.augment,
                     weight_decay=5e-4,
                     preprocessing={"color": "rgb"}, extra={"source": source},
                     pretrained=pretrained)


def train(run: Run, config: ClassifierConfig, data: ArraySplits, augment: Any, mirrored: bool,
          weight_decay: float, preprocessing: dict[str, Any],
          extra: dict[str, Any] | None = None, pretrained: Any = None) -> Report:
    """The flow train-mnist and train-cifar share: split, build, fit, evaluate, save
    (`mirrored`: training showed mirror images, so test-time augmentation may too;
    `pretrained`: a `transfer.Pretrained` backbone to fine-tune instead of `--arch`, with
    `transfer.Recipe` in place of `Scratch`)."""
    label_smoothing = config.label_smoothing
    x_train, y_train, x_val, y_val = split_validation(data.x_train, data.y_train,
                                                      config.val_split, config.seed)
    if len(x_train) == 0:
        raise UsageError("no training examples left after the validation split; use more "
                         "data or a smaller --val-split")
    num_classes = len(data.class_names)
    batch = config.fit_batch_size(len(x_train))
    steps, per_call = plan_steps(len(x_train), batch)
    runtime = run.start(fingerprint(x_train, y_train, x_val, y_val, data.x_test, data.y_test),
                        inputs=data.files, cpu_bfloat16=pretrained is None)

    if pretrained is None:
        recipe: Any = Scratch(config, num_classes, weight_decay, x_train, mirrored,
                              steps * config.epochs)
    else:
        from dlkit.image_classifier import transfer

        recipe = transfer.Recipe(run, config, pretrained, num_classes, weight_decay)
    with run.scope():
        model = recipe.build(data.input_shape)
        model.compile(optimizer=recipe.optimizer(),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                      metrics=[_accuracy(recipe.members)],
                      jit_compile=runtime.jit_compile, steps_per_execution=per_call)
        done = run.restore(model)

    info(f"training {model.name} ({model.count_params():,} parameters) on {data.name}: "
         f"{len(x_train):,} train / {len(x_val):,} validation / {len(data.x_test):,} test "
         f"images, {config.epochs} epochs{f' (resuming after {done})' if done else ''}, "
         f"batch {batch}, {runtime.device}")
    weights = class_weights(y_train, num_classes, getattr(config, "class_weight",
                                                          ClassWeight.none))
    train_ds = _per_member(_weighted(_one_hot(
        training_dataset(x_train, y_train, batch, steps, config.seed, config.epochs, done,
                         augment), num_classes), weights), recipe.members)
    val_ds = _per_member(_one_hot(image_dataset(x_val, y_val, eval_batch(batch, x_val)),
                                  num_classes), recipe.members) if len(x_val) else None
    calibrate = [models.CalibrateBatchNorm(x_train, batch)] if recipe.recalibrate else []
    history = run.fit(model, train_ds, steps=steps, validation=val_ds,
                      schedule=recipe.schedule(), callbacks=[*calibrate, *recipe.callbacks()])

    if recipe.recalibrate:  # a pretrained backbone keeps its statistics (see transfer)
        models.recalibrate_batchnorm(model, x_train, batch,
                                     forward=calibrate[0].forward if calibrate else None)
    model = as_float32(recipe.serving(model))  # what is saved is what is measured
    test_ds = image_dataset(data.x_test, data.y_test, eval_batch(batch, data.x_test))
    probs = model.predict(test_ds.map(lambda x, y: x), verbose=0)
    predicted = probs.argmax(axis=1)
    test_accuracy = float((predicted == data.y_test).mean())
    picked = np.clip(probs[np.arange(len(probs)), data.y_test], 1e-7, 1.0)
    test_loss = float(-np.log(picked).mean())

    metadata = {
        "dataset": data.name, "arch": recipe.arch, "class_names": data.class_names,
        "input_shape": list(data.input_shape),
        "preprocessing": {"input": "raw pixels 0-255, RGB channel order for colour images",
                          "scaling": "divide by 255 (inside the model)",
                          "resize_to": list(data.input_shape[:2]), **preprocessing},
        "outputs": "probabilities",  # a softmax: classify-image must not apply another
        "metrics": {"test_accuracy": test_accuracy, "test_loss": test_loss},
        "training": {"batch_size": batch, "learning_rate": config.learning_rate,
                     "seed": config.seed, "label_smoothing": label_smoothing,
                     "train_examples": len(x_train), "val_examples": len(x_val),
                     "class_weights": weights},
        **(extra or {}), **recipe.metadata(),
    }

    def write_plots(folder: Path) -> None:
        plot_dir = folder / "plots"
        plots.training_curves(history, plot_dir / "training_curves.png",
                              f"{run.task} {data.name}")
        plots.confusion_matrix(plots.confusion(data.y_test, predicted, num_classes),
                               data.class_names, plot_dir / "confusion_matrix.png")
        _prediction_grid(data, predicted, probs, plot_dir / "test_predictions.png")

    run.save(model, metadata, write_plots, extras=recipe.extras(model))
    return run.result(ClassifierResult, dataset=data.name, arch=recipe.arch, batch_size=batch,
                      train_examples=len(x_train), test_examples=len(data.x_test),
                      **metadata["metrics"],
                      images_per_second=run.per_second(min(batch, len(x_train)))).report()


class Scratch:
    """The recipe of a model trained from scratch (`--arch`): for airbench, SGD with Nesterov
    momentum and weight decay, a long warm-up from a fifth of the peak rate, then a decay to a
    twentieth of it, and test-time augmentation in the saved model when training flipped and
    translated the images; for the others, AdamW with one warm-up and cosine decay. The
    BatchNormalization statistics are recomputed with the current weights before every
    validation and after training. Where the recipe says so (28x28 images), the whitening stays
    as computed from the data, and the weights saved are an exponential moving average of the
    weights over the last thirtieth of the steps (Keras's `use_ema`; `fit` puts the average in
    place when it ends). With `--members` > 1 (airbench), an ensemble: the networks
    see the same batches, each learns from its own loss, and the saved model averages their
    probabilities. Transfer learning (`transfer.Recipe`) has the same interface."""

    recalibrate = True

    def __init__(self, config: ClassifierConfig, num_classes: int, weight_decay: float,
                 images: np.ndarray, mirrored: bool, total_steps: int) -> None:
        self.config, self.num_classes, self.weight_decay = config, num_classes, weight_decay
        fraction = config.recipe().weight_average
        # the EMA's momentum: 1 - 1/(its time constant in steps); None without an average
        self.ema = None if fraction is None else 1 - 1 / max(1.0, fraction * total_steps)
        self.images, self.mirrored = images, mirrored
        self.arch = config.arch.value
        self.sgd = self.arch == "airbench"
        self.members = config.members

    def build(self, input_shape: tuple[int, int, int]) -> keras.Model:
        recipe = self.config.recipe()
        return models.build(self.config.arch, input_shape, self.num_classes, self.images,
                            self.members, recipe.activation, recipe.fixed_whitening)

    def optimizer(self) -> Any:
        if self.sgd:
            # The loss is the members' mean, so each member's gradient is 1/members of what it
            # would be alone: the rate is members times larger (see `schedule`) and the decay
            # (which Keras multiplies by the rate) members times smaller, which makes every
            # member's SGD step exactly the one it would take trained alone.
            average = {} if self.ema is None else {"use_ema": True, "ema_momentum": self.ema}
            return keras.optimizers.SGD(self.config.learning_rate, momentum=0.9, nesterov=True,
                                        weight_decay=self.weight_decay / self.members, **average)
        return keras.optimizers.AdamW(self.config.learning_rate,
                                      weight_decay=self.weight_decay)

    def schedule(self) -> Schedule:
        if self.sgd:
            return Schedule(self.config.learning_rate * self.members, warmup_fraction=0.2,
                            start=0.2, floor=0.05)
        return Schedule(self.config.learning_rate, warmup_fraction=0.1, start=0.1)

    def callbacks(self) -> list[Any]:
        return []

    def metadata(self) -> dict[str, Any]:
        recipe = self.config.recipe()
        return {"test_time_augmentation": self._tta, "ensemble_members": self.members,
                **({"activation": recipe.activation, "fixed_whitening": recipe.fixed_whitening,
                    "ema_momentum": self.ema} if self.sgd else {})}

    @property
    def _tta(self) -> str | None:
        return "mirror and one-pixel shifts" if self.sgd and self.mirrored else None

    def serving(self, model: keras.Model) -> keras.Model:
        model = models.ensemble_mean(model)
        return models.with_test_time_augmentation(model) if self._tta else model

    def extras(self, model: keras.Model) -> Any:
        return None


def _accuracy(members: int) -> Any:
    """The metric logged as accuracy: an ensemble's is that of its members' mean."""
    if members == 1:
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return keras.metrics.MeanMetricWrapper(models.ensemble_accuracy, name="accuracy")


def _per_member(ds: Any, members: int) -> Any:
    """(x, one-hot y[, weight]) batches with y repeated for each of an ensemble's members."""
    if members == 1:
        return ds
    import tensorflow as tf

    return ds.map(lambda x, y, *w: (x, tf.repeat(y[:, None], members, axis=1), *w))


def _one_hot(ds: Any, num_classes: int) -> Any:
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))


def _weighted(ds: Any, weights: list[float]) -> Any:
    """(x, one-hot y) batches with each example's class weight, unless all weights are 1."""
    import tensorflow as tf

    if all(w == 1.0 for w in weights):
        return ds
    table = tf.constant(weights, tf.float32)
    return ds.map(lambda x, y: (x, y, tf.gather(table, tf.argmax(y, axis=-1))))


def _prediction_grid(data: ArraySplits, predicted: np.ndarray, probs: np.ndarray,
                     path: Path, count: int = 25) -> None:
    """The seed's 5x5 grid of test images, captioned `predicted (confidence)`; a wrong one in
    red with the true label beside it."""
    count = min(count, len(data.x_test))
    names = data.class_names
    titles = [f"{names[predicted[i]]} ({probs[i, predicted[i]]:.0%})"
              + ("" if predicted[i] == data.y_test[i] else f"\ntrue: {names[data.y_test[i]]}")
              for i in range(count)]
    colors = ["black" if predicted[i] == data.y_test[i] else "red" for i in range(count)]
    plots.captioned_grid(list(data.x_test[:count]), titles, path,
                         "Test images: predicted label", colors, columns=5)


# ---------------------------------------------------------------------------------------------
# train-cifar's data: CIFAR-10 through the data lookup, or the user's image folder

def is_image_folder(folder: Path) -> bool:
    """True when `folder` looks like one subfolder of images per class (not a CIFAR layout)."""
    if (folder / "cifar-10-batches-py").is_dir() or (folder / "data_batch_1").exists():
        return False
    return any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir())


def load_cifar_or_folder(config: CifarConfig) -> tuple[ArraySplits, str]:
    """CIFAR-10 (resized to --image-size), or the user's image folder given as --data-dir."""
    from dlkit.data.readers import load_cifar10

    folder = config.data_dir
    if folder is not None and folder.is_dir() and is_image_folder(folder):
        return _image_folder_splits(folder, config), "image-folder"
    data = load_cifar10(config.data_dir)
    if config.image_size != 32:
        from dlkit.data.images import resize

        size = (config.image_size, config.image_size)
        data.x_train = np.stack([resize(i, size) for i in data.x_train])
        data.x_test = np.stack([resize(i, size) for i in data.x_test])
    return data, "cifar10"


def _image_folder_splits(folder: Path, config: CifarConfig) -> ArraySplits:
    from dlkit.data.images import read_image_folder

    info(f"reading images from {folder} (one subfolder per class)")
    found = read_image_folder(folder, (config.image_size, config.image_size))
    for path, why in found.skipped:
        warn(f"skipped {path}: {why}")
    if len(found.images) == 0:
        raise UsageError(f"no readable images under {folder}/<class>/; put images (JPEG, "
                         "PNG, BMP, WebP, TIFF) in one subfolder per class")
    if len(found.class_names) < 2 or len(np.unique(found.labels)) < 2:
        raise UsageError(f"{folder} needs at least two class subfolders with images")
    x_train, y_train, x_test, y_test = split_validation(found.images, found.labels,
                                                        config.test_split, config.seed + 1)
    return ArraySplits(folder.name, x_train, y_train, x_test, y_test, found.class_names,
                       (folder,))
