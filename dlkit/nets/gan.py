"""DCGAN generator and discriminator for small images (28x28 grey, 32x32 colour).

- `generator`: noise (and, when conditional, a class label through an embedding) -> a dense
  projection to a small feature map, transposed-convolution upsampling with batch normalisation and
  ReLU, and a `tanh` image in [-1, 1]. Sizes whose side halves to an integer <= 8 work (28 -> 7,
  32 -> 4).
- `discriminator`: strided convolutions with spectral normalisation and LeakyReLU, one real/fake
  logit, plus (conditional models) an auxiliary class head: the AC-GAN design, which makes the
  generator draw the class it is asked for.
- `pixel_generator`: the generator with a final rescale to raw 0-255 pixels, which is what the
  model folder saves, so the exported model produces images any tool (and dlkit's classifiers,
  which take raw pixels) can use directly.
"""

from __future__ import annotations

import keras
from keras import layers


def _start_side(side: int) -> tuple[int, int]:
    """The feature map side the generator starts from and the number of 2x upsamplings."""
    ups = 0
    while side % 2 == 0 and side > 8:
        side //= 2
        ups += 1
    if ups == 0:
        raise ValueError(f"image side {side} cannot be reached by 2x upsampling")
    return side, ups


def generator(image_shape: tuple[int, int, int], latent_dim: int, num_classes: int = 0,
              width: int = 64) -> keras.Model:
    """Noise (N, latent_dim) [+ labels (N,)] -> images (N, H, W, C) in [-1, 1]."""
    height, _, channels = image_shape
    side, ups = _start_side(height)
    noise = keras.Input(shape=(latent_dim,), name="noise")
    inputs = [noise]
    x = noise
    if num_classes:
        label = keras.Input(shape=(), dtype="int32", name="label")
        inputs.append(label)
        embedded = layers.Embedding(num_classes, 32, name="label_embedding")(label)
        x = layers.Concatenate(name="noise_and_label")([noise, embedded])
    filters = width * 2 ** ups
    x = layers.Dense(side * side * filters, use_bias=False, name="project")(x)
    x = layers.BatchNormalization(name="project_bn")(x)
    x = layers.ReLU(name="project_relu")(x)
    x = layers.Reshape((side, side, filters), name="to_map")(x)
    for i in range(ups):
        filters //= 2
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False,
                                   name=f"up{i + 1}")(x)
        x = layers.BatchNormalization(name=f"up{i + 1}_bn")(x)
        x = layers.ReLU(name=f"up{i + 1}_relu")(x)
    x = layers.Conv2D(channels, 3, padding="same", name="to_image")(x)
    images = layers.Activation("tanh", dtype="float32", name="image")(x)
    return keras.Model(inputs if num_classes else noise, images, name="generator")


def discriminator(image_shape: tuple[int, int, int], num_classes: int = 0,
                  width: int = 64) -> keras.Model:
    """Images in [-1, 1] -> a real/fake logit (N, 1) [and class logits (N, K) when conditional]."""
    _, ups = _start_side(image_shape[0])
    images = keras.Input(shape=image_shape, name="image")
    x = images
    filters = width
    for i in range(ups):
        conv = layers.Conv2D(filters, 4, strides=2, padding="same", name=f"down{i + 1}")
        x = layers.SpectralNormalization(conv, name=f"down{i + 1}_sn")(x)
        x = layers.LeakyReLU(0.2, name=f"down{i + 1}_lrelu")(x)
        filters *= 2
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    real = layers.Dense(1, dtype="float32", name="real_logit")(x)
    if not num_classes:
        return keras.Model(images, real, name="discriminator")
    classes = layers.Dense(num_classes, dtype="float32", name="class_logits")(x)
    return keras.Model(images, [real, classes], name="discriminator")


def pixel_generator(gen: keras.Model) -> keras.Model:
    """`gen` with its [-1, 1] output mapped to raw 0-255 pixels (what the model folder saves)."""
    pixels = layers.Rescaling(127.5, offset=127.5, dtype="float32", name="pixels")(gen.output)
    return keras.Model(gen.inputs if len(gen.inputs) > 1 else gen.inputs[0], pixels,
                       name="gan_generator")
