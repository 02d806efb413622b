"""Image classifiers: raw 0-255 pixels in (rescaled inside the model), float32 probabilities out.

For 28x28 greyscale digits and clothes (`train-mnist`):
- `mlp`: the seed document's model: Flatten, Dense 128 relu, Dropout 0.2, Dense 10 softmax;
- `cnn`: three conv-BN-ReLU-max-pool blocks (32, 64, 128 filters) and a small dense head, sized
  to train in about 10 s an epoch on Fashion-MNIST on a 2-core CPU: the default.

For small colour photos (`train-cifar`):
- `seed`: the seed document's CNN: Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10;
- `resnet`: a narrow ResNet-9 (the DAWNBench design: conv-pool stages with residual blocks after
  the first and last, global max-pool), quick to train on a CPU: the default.

`recalibrate_batchnorm` recomputes the BatchNormalization statistics of a trained model over the
training data, so a model trained for a few dozen steps (whose moving averages still remember
its first steps) is evaluated and exported with the statistics of its final weights.

Imports Keras at module level: import it inside command bodies only.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from dlkit.image_classifier.config import CifarArch, MnistArch


def image_input(shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """A float input of raw 0-255 pixels and its rescaled [0, 1] tensor."""
    inputs = keras.Input(shape=shape, name="image")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def classifier_head(x: Any, num_classes: int) -> Any:
    """Logits to float32 softmax probabilities (float32 even under mixed precision)."""
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def conv_bn_relu(x: Any, filters: int, name: str) -> Any:
    """3x3 convolution without bias, batch normalisation, ReLU."""
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


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


def _residual(x: Any, filters: int, name: str) -> Any:
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


BUILDERS = {MnistArch.mlp: mlp, MnistArch.cnn: cnn, CifarArch.seed: seed,
            CifarArch.resnet: resnet}


def build(arch: MnistArch | CifarArch, input_shape: tuple[int, int, int],
          num_classes: int) -> keras.Model:
    """The uncompiled classifier `arch` for images of `input_shape`."""
    return BUILDERS[arch](input_shape, num_classes)


def recalibrate_batchnorm(model: keras.Model, images: np.ndarray, batch_size: int,
                          max_batches: int = 40) -> int:
    """Set every BatchNormalization layer's moving mean and variance to the average of its
    batch statistics over (up to `max_batches` batches of) `images`, computed with the final
    weights. Returns the number of batches used (0: the model has no BatchNormalization).

    A layer's moving statistics are an exponential average over training, dominated after a
    short run by the early weights' activations; evaluating with them can put a well-trained
    model near chance (a 2-epoch run on the 1,437 bundled digits: 22 steps). The batches are
    run eagerly in training mode with each layer's momentum set to k/(k+1) for the k-th batch,
    which makes the moving value the plain mean of the batch values."""
    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, layers.BatchNormalization)]
    if not norms or len(images) == 0:
        return 0
    momenta = [layer.momentum for layer in norms]
    count = min(max_batches, max(1, len(images) // batch_size))
    try:
        for k in range(count):
            for layer in norms:
                layer.momentum = k / (k + 1)
            batch = images[k * batch_size:(k + 1) * batch_size].astype(np.float32)
            model(batch, training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    return count
