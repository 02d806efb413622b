"""Classifiers for small colour photos (CIFAR-10, or the user's own image folders).

- `seed`: the seed document's CNN: Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10.
- `resnet`: a narrow ResNet-9 (the DAWNBench design: conv-pool stages with residual blocks after
  the first and last, global max-pool, scaled logits), quick to train on a CPU. The default.
"""

from __future__ import annotations

import keras
from keras import layers

from dlkit.nets.common import classifier_head, conv_bn_relu, image_input

ARCHS = ("seed", "resnet")


def seed(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    inputs, x = image_input(input_shape)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cifar_seed")


def _residual(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    shortcut = x
    x = conv_bn_relu(x, filters, f"{name}_1")
    x = conv_bn_relu(x, filters, f"{name}_2")
    return layers.Add(name=f"{name}_add")([shortcut, x])


def resnet(input_shape: tuple[int, int, int], num_classes: int, width: int = 32) -> keras.Model:
    inputs, x = image_input(input_shape)
    x = conv_bn_relu(x, width, "prep")
    for stage, (mult, residual) in enumerate(((2, True), (4, False), (8, True))):
        name = f"stage{stage + 1}"
        x = conv_bn_relu(x, width * mult, name)
        x = layers.MaxPooling2D(name=f"{name}_pool")(x)
        if residual:
            x = _residual(x, width * mult, f"{name}_res")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cifar_resnet")


def build(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    return {"seed": seed, "resnet": resnet}[arch](input_shape, num_classes)
