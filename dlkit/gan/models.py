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
- `GAN`: both networks trained together by a custom `train_step` (hinge losses as in SNGAN, the
  AC-GAN class loss when conditional), with an exponential moving average of the generator's
  weights: the generator that is drawn and saved.

Imports Keras at module level: import it inside command bodies only.
"""

from __future__ import annotations

from typing import Any

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


EMA_DECAY = 0.999
LOSS = "hinge"  # what `GAN._gan_losses` computes (recorded in metadata.json)


class GAN(keras.Model):
    """Generator and discriminator trained together by a custom `train_step`.

    Hinge losses (Lim & Ye 2017; SNGAN's choice with a spectrally normalised discriminator);
    conditional models add the AC-GAN auxiliary class loss to both players.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 num_classes: int, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        # An exponential moving average of the generator's weights: smoother, sharper samples.
        self.ema_generator = keras.models.clone_model(generator)
        self.ema_generator.set_weights(generator.get_weights())
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.extra_trackers = ([keras.metrics.Mean(name="d_class_acc")] if num_classes else [])

    def compile(self, d_optimizer: keras.Optimizer, g_optimizer: keras.Optimizer,
                **kwargs: Any) -> None:
        super().compile(optimizer=None, **kwargs)  # the two players have their own
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    def build(self, input_shape: Any = None) -> None:
        """Nothing to create (the networks are built functional models); marks the model built
        so that its weights can be saved and loaded before it is ever called."""
        self.built = True

    def build_optimizers(self) -> None:
        """Create both optimizers' variables (before loading a checkpoint into them)."""
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.d_loss_tracker, self.g_loss_tracker, *self.extra_trackers]

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.generator(inputs, training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        real, labels = data
        batch = tf.shape(real)[0]
        noise = keras.random.normal((batch, self.latent_dim), seed=self.noise_seed)
        g_inputs = [noise, labels] if self.num_classes else noise
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as d_tape, tf.GradientTape() as g_tape:
            fake = self.generator(g_inputs, training=True)
            # One discriminator call on real and fake together: one larger batch runs faster
            # on a CPU than two small ones (the discriminator has no batch statistics).
            both = self.discriminator(tf.concat([real, fake], axis=0), training=True)
            real_out, fake_out = _split(both, batch)
            d_loss, g_loss, class_acc = self._gan_losses(real_out, fake_out, labels)
            d_scaled, g_scaled = d_loss / replicas, g_loss / replicas
        d_vars = self.discriminator.trainable_weights
        g_vars = self.generator.trainable_weights
        self.d_optimizer.apply(d_tape.gradient(d_scaled, d_vars), d_vars)
        self.g_optimizer.apply(g_tape.gradient(g_scaled, g_vars), g_vars)
        self._update_ema()
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        if self.num_classes:
            self.extra_trackers[0].update_state(class_acc)
        return {m.name: m.result() for m in self.metrics}

    def _update_ema(self) -> None:
        """EMA of every generator weight (batch-norm statistics too), warming up from 0.9."""
        from keras import ops

        step = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(EMA_DECAY, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.ema_generator.weights, self.generator.weights,
                                   strict=True):
            average.assign(decay * average + (1.0 - decay) * weight)

    def _gan_losses(self, real_out: Any, fake_out: Any, labels: Any) -> tuple[Any, Any, Any]:
        """Hinge losses (the discriminator's margin loss, the generator raising the fake
        score), plus the AC-GAN class loss on both players when conditional."""
        from keras import ops

        real_logit = real_out[0] if self.num_classes else real_out
        fake_logit = fake_out[0] if self.num_classes else fake_out
        d_loss = ops.mean(ops.relu(1.0 - real_logit)) + ops.mean(ops.relu(1.0 + fake_logit))
        g_loss = -ops.mean(fake_logit)
        if not self.num_classes:
            return d_loss, g_loss, 0.0
        cce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        real_class, fake_class = real_out[1], fake_out[1]
        d_loss = d_loss + cce(labels, real_class) + cce(labels, fake_class)
        g_loss = g_loss + cce(labels, fake_class)
        hits = ops.cast(ops.equal(ops.argmax(real_class, axis=-1),
                                  ops.cast(labels, "int64")), "float32")
        return d_loss, g_loss, ops.mean(hits)


def _split(outputs: Any, batch: Any) -> tuple[Any, Any]:
    """The discriminator's outputs on [real; fake] split into (real, fake), per head."""
    if isinstance(outputs, list | tuple):
        return [o[:batch] for o in outputs], [o[batch:] for o in outputs]
    return outputs[:batch], outputs[batch:]
