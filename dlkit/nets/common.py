"""Building blocks shared by the image classifiers."""

from __future__ import annotations

from typing import Any


def classifier_head(x: Any, num_classes: int) -> Any:
    """Logits to float32 softmax probabilities (float32 even under mixed precision)."""
    from keras import layers

    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def conv_bn_relu(x: Any, filters: int, name: str) -> Any:
    """3x3 convolution without bias, batch normalisation, ReLU."""
    from keras import layers

    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def image_input(shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """A float input of raw 0-255 pixels and its rescaled [0, 1] tensor."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=shape, name="image")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)
