"""Transfer learning for `train-cifar --backbone PRESET`: a new head on a pretrained keras-hub
backbone, trained in the two phases of the Keras guide "Transfer learning & fine-tuning".

The model takes raw 0-255 RGB pixels of any size: the preset's own image converter (resize to its
size, scale, mean and standard deviation) is its first layer, so the SavedModel needs no separate
preprocessing. Then the backbone, its BatchNormalization layers frozen in inference mode (they
keep their pretrained statistics in both phases, as the guide prescribes), a `Gate`, global
average pooling, dropout and a new softmax layer.

Phase one (the first `--head-epochs`, as a fraction of the run's progress) trains only the head:
the gate passes the features forward but no gradient back, and the backbone's weights are kept
out of the weight decay, so they do not move. Phase two opens the gate and fine-tunes everything
at a tenth of the learning rate, warmed up again. Both phases are one `fit` through the runner,
so progress, the time budget, resume and Ctrl-C work as for any model.

`to_preset` turns the trained model into a keras-hub `ImageClassifier` (the same backbone, the
head's weights copied, the converter as its preprocessor), saved in the model folder as
`preset/`: `classify-image --model FOLDER/preset` and `--backbone FOLDER` load it.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from dlkit.core.errors import UsageError, first_line
from dlkit.core.hub import PRESET_DIR, import_keras_hub, preset_class, resolve
from dlkit.core.schedules import Schedule
from dlkit.image_classifier.config import model_image_size

FINE_TUNE_RATE = 0.1  # phase two's peak learning rate, as a fraction of --learning-rate
HEAD_DROPOUT = 0.2


class Gate(keras.layers.Layer):
    """Identity forward; passes gradients back only once opened (`open` is 0.0 or 1.0, a
    non-trainable weight, so it is checkpointed with the model). Training only: the saved
    model is `serving_model`, without it."""

    def build(self, input_shape: Any) -> None:
        self.open = self.add_weight(name="open", shape=(), initializer="zeros",
                                    trainable=False)

    def call(self, x: Any) -> Any:
        gate = keras.ops.cast(self.open, x.dtype)
        return x * gate + keras.ops.stop_gradient(x) * (1 - gate)


@dataclass
class Pretrained:
    """A backbone preset: where it came from, its image converter and, once `load` has run
    (inside the strategy's scope, where its variables must be created), its backbone."""

    name: str
    source: str
    path: Path
    converter: Any
    backbone: Any = None

    def load(self) -> Any:
        """The backbone, loaded from the preset on the first call."""
        if self.backbone is None:
            from dlkit.core import runtime

            try:
                with runtime.silenced_stderr():
                    self.backbone = import_keras_hub().models.Backbone.from_preset(
                        str(self.path))
            except Exception as exc:
                raise UsageError(f"cannot load the backbone of {self.name} "
                                 f"({type(exc).__name__}: {first_line(exc, 200)}); the preset "
                                 "is damaged or incomplete") from None
        return self.backbone


def open_backbone(spec: str) -> Pretrained:
    """An image preset (name, handle or folder; a folder `train-cifar --backbone` wrote holds
    one in `preset/`) with its image converter; its backbone loads later (`Pretrained.load`).
    Exit 2 for a language model or a preset without an image converter."""
    from dlkit.core import runtime

    preset = resolve(spec, "ImageClassifier")
    keras_hub = import_keras_hub()
    what = preset_class(preset.path)
    try:
        with runtime.silenced_stderr():
            converter = keras_hub.layers.ImageConverter.from_preset(str(preset.path))
    except Exception:  # keras-hub raises ValueError and others for a non-image preset
        raise UsageError(f"{spec} holds a {what} preset without an image converter, not an "
                         "image model; pass an image classifier or image backbone preset "
                         "(`dlkit models --kind image` lists them)") from None
    return Pretrained(spec, preset.source, Path(preset.path), converter)


def image_size(pretrained: Pretrained) -> tuple[int, int]:
    return converter_size(pretrained.converter, pretrained.name, "be fine-tuned here")


def converter_size(converter: Any, name: str, purpose: str) -> tuple[int, int]:
    """(height, width) that the image converter of preset `name` resizes to; exit 2 naming
    what it cannot `purpose` ("be fine-tuned here") when it declares no such size."""
    size = getattr(converter, "image_size", None)
    if not size or None in tuple(size):
        raise UsageError(f"{name}'s image converter has no image size; it cannot {purpose}")
    if len(tuple(size)) != 2:
        raise UsageError(f"{name}'s image converter has image size {size}, not "
                         f"(height, width); it cannot {purpose}")
    return model_image_size(*size, f"the image converter of {name}")


def freeze_batchnorm(layer: Any) -> int:
    """Put every BatchNormalization layer inside `layer` in inference mode for good (Keras runs
    a non-trainable BatchNormalization with its moving statistics, and does not update them).
    `training=False` on the backbone's call alone is not enough: keras-hub's backbones are
    Functional models whose layers still see the outer training flag. Returns how many."""
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.trainable = False
        return 1
    return sum(freeze_batchnorm(inner) for inner in getattr(layer, "layers", []))


def build(pretrained: Pretrained, num_classes: int) -> keras.Model:
    """converter -> backbone (inference mode) -> gate -> pooling -> dropout -> softmax."""
    freeze_batchnorm(pretrained.backbone)
    inputs = keras.Input(shape=(None, None, 3), name="image")
    features = pretrained.backbone(pretrained.converter(inputs), training=False)
    if len(features.shape) != 4:
        raise UsageError(f"{pretrained.name}'s backbone gives features of shape "
                         f"{features.shape}, not a feature map; pass an image backbone")
    x = Gate(name="gate")(features)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(HEAD_DROPOUT, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"transfer_{type(pretrained.backbone).__name__}")


def serving_model(model: keras.Model) -> keras.Model:
    """The trained model without its gate (nor dropout): the same layers and weights, only
    Keras's and keras-hub's own, so the saved `model.keras` loads anywhere keras-hub is."""
    inputs = keras.Input(shape=(None, None, 3), name="image")
    converter, backbone = model.layers[1], model.layers[2]
    x = backbone(converter(inputs), training=False)
    x = model.get_layer("pool")(x)
    x = model.get_layer("logits")(x)
    outputs = model.get_layer("probabilities")(x)
    return keras.Model(inputs, outputs, name=model.name)


def optimizer(pretrained: Pretrained, learning_rate: float, weight_decay: float) -> Any:
    """AdamW with the backbone kept out of the weight decay (it must not shrink while frozen)."""
    adamw = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay)
    adamw.exclude_from_weight_decay(var_list=pretrained.backbone.trainable_variables)
    return adamw


class TwoPhases:
    """The learning rate of both phases: warm-up and cosine at `peak` over the head phase,
    then again at `FINE_TUNE_RATE * peak` over the rest (`switch`: where phase two starts,
    as a fraction of the run's progress)."""

    def __init__(self, peak: float, switch: float) -> None:
        self.switch = switch
        self.head = Schedule(peak, warmup_fraction=0.1, start=0.1)
        self.tune = Schedule(peak * FINE_TUNE_RATE, warmup_fraction=0.1, start=0.1)

    def __call__(self, progress: float, step: int, total_steps: int) -> float:
        head_steps = int(total_steps * self.switch)
        if progress < self.switch:
            return self.head(progress / self.switch, step, max(1, head_steps))
        rest = max(1e-9, 1 - self.switch)
        return self.tune((progress - self.switch) / rest, step - head_steps,
                         max(1, total_steps - head_steps))


class OpenGate(keras.callbacks.Callback):
    """Opens the model's gate once the run's progress reaches the fine-tuning phase (read from
    the runner's time budget, the clock the learning rate follows too)."""

    def __init__(self, run: Any, switch: float) -> None:
        super().__init__()
        self.run, self.switch = run, switch

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        opened = 1.0 if self.run.budget.progress() >= self.switch else 0.0
        gate = self.model.get_layer("gate")
        if float(gate.open.numpy()) != opened:
            gate.open.assign(opened)


def to_preset(model: keras.Model, pretrained: Pretrained, num_classes: int,
              folder: Path) -> None:
    """Save the trained model as a keras-hub ImageClassifier preset in `folder/preset`."""
    task_class = _task_class(type(pretrained.backbone))
    preprocessor = task_class.preprocessor_cls(image_converter=pretrained.converter)
    task = task_class(backbone=pretrained.backbone, num_classes=num_classes,
                      preprocessor=preprocessor, pooling="avg", dropout=HEAD_DROPOUT,
                      activation="softmax")
    head = [layer for layer in task.layers if isinstance(layer, keras.layers.Dense)][-1]
    head.set_weights(model.get_layer("logits").get_weights())
    task.save_to_preset(str(folder / PRESET_DIR))


class Recipe:
    """Transfer learning's recipe for the classifiers' training flow (the interface of
    `dlkit.image_classifier.train.Scratch`): this module's model, optimizer, two-phase
    schedule and gate, the serving model without the gate, `preset/` as an extra file."""

    recalibrate = False  # the backbone keeps its pretrained BatchNormalization statistics
    members = 1  # one network (--members is airbench's)

    def __init__(self, run: Any, config: Any, pretrained: Pretrained, num_classes: int,
                 weight_decay: float) -> None:
        self.run, self.config, self.pretrained = run, config, pretrained
        self.num_classes, self.weight_decay = num_classes, weight_decay
        self.switch = (config.head_epochs or 0) / config.epochs
        self.arch = f"backbone {config.backbone}"

    def build(self, input_shape: tuple[int, int, int]) -> keras.Model:
        self.pretrained.load()  # here, in the strategy's scope: its variables are the model's
        return build(self.pretrained, self.num_classes)

    def optimizer(self) -> Any:
        return optimizer(self.pretrained, self.config.learning_rate, self.weight_decay)

    def schedule(self) -> TwoPhases:
        return TwoPhases(self.config.learning_rate, self.switch)

    def callbacks(self) -> list[Any]:
        return [OpenGate(self.run, self.switch)]

    def metadata(self) -> dict[str, Any]:
        return {"pretrained": {
            "backbone": self.config.backbone, "source": self.pretrained.source,
            "class": type(self.pretrained.backbone).__name__,
            "image_size": list(image_size(self.pretrained)),
            "head_epochs": self.config.head_epochs, "fine_tune_rate": FINE_TUNE_RATE,
            "preset_dir": PRESET_DIR}}

    def serving(self, model: keras.Model) -> keras.Model:
        return serving_model(model)

    def extras(self, model: keras.Model) -> Any:
        return lambda folder: to_preset(model, self.pretrained, self.num_classes, folder)


def _task_class(backbone_class: type) -> type:
    """keras-hub's ImageClassifier for this backbone (ResNetImageClassifier for ResNet...)."""
    keras_hub = import_keras_hub()
    pending, found = [keras_hub.models.ImageClassifier], []
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if getattr(cls, "backbone_cls", None) is backbone_class:
            found.append(cls)
    if not found:
        raise UsageError(f"keras-hub has no image classifier for {backbone_class.__name__}; "
                         "pass another backbone")
    return found[0]


def check_image_size(pretrained: Pretrained, side: int) -> None:
    """Images of `side` pixels blown up more than 8 times to the backbone's input size carry
    too little of what it was trained to see: exit 2."""
    height, width = image_size(pretrained)
    if side * 8 < min(height, width):
        raise UsageError(f"--image-size {side} is too small for {pretrained.name}, which "
                         f"takes {height}x{width} images; give --image-size "
                         f"{-(-min(height, width) // 8)} or more")
