"""Classifiers for 28x28 greyscale digits and clothes (MNIST, Fashion-MNIST, digits).

- `mlp`: the seed document's model: Flatten, Dense 128 relu, Dropout 0.2, Dense 10 softmax.
- `cnn`: three conv-BN-ReLU-max-pool blocks (32, 64, 128 filters) and a small dense head, sized
  to train in about 10 s an epoch on Fashion-MNIST on a 2-core CPU: the default.
"""

from __future__ import annotations

import keras
from keras import layers

from dlkit.nets.common import classifier_head, conv_bn_relu, image_input

ARCHS = ("mlp", "cnn")


def mlp(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    inputs, x = image_input(input_shape)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="mnist_mlp")


def cnn(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    inputs, x = image_input(input_shape)
    for i, filters in enumerate((32, 64, 128)):
        x = conv_bn_relu(x, filters, f"block{i + 1}")
        x = layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="mnist_cnn")


def build(arch: str, input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    return {"mlp": mlp, "cnn": cnn}[arch](input_shape, num_classes)
