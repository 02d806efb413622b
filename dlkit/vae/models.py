"""Variational autoencoders for `train-vae`: encoder to a latent mean and log-variance,
reparameterisation, decoder, loss = reconstruction + KL divergence (the seed's recipe).

`conv` is the convolutional VAE dlkit trains by default (two strided 3x3 convolutions in the
encoder, linear heads on their features; a 256-unit layer and two strided 4x4 transposed
convolutions in the decoder, the last one giving the logits: sized for CPU time, see
CONV_WIDTH); `dense` is the fully-connected baseline (512-256 hidden units, mirrored in the
decoder) the benchmark compares it with. `VAE` is a Keras 3 model with its own `train_step`
(TensorFlow backend, `tf.GradientTape`) that reports the reconstruction term, the KL term and
their sum, all in nats per image. The decoder outputs Bernoulli logits; `sampler` wraps it
into the model that is saved: latent vectors in, 0-255 images out.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

# The convolutional VAE's size, chosen by test negative ELBO after 1-4 minutes of training on
# Fashion-MNIST on a 2-core CPU (benchmarks/bench_vae.py): narrower or hidden-layer-free
# variants ran faster but ended higher; the previous decoder's full-resolution transposed
# convolution and 3x3 output convolution made each image cost about 1.6x as much time.
CONV_WIDTH = 32
CONV_ENCODER_HIDDEN = 0
CONV_DECODER_HIDDEN = 256


def encoder(arch: str, shape: tuple[int, int, int], latent_dim: int,
            width: int = CONV_WIDTH, hidden: int = CONV_ENCODER_HIDDEN) -> keras.Model:
    """Images scaled to [0, 1] -> (z_mean, z_log_var)."""
    inputs = keras.Input(shape, name="image")
    if arch == "conv":
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(inputs)
        x = keras.layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.Flatten()(x)
        if hidden:
            x = keras.layers.Dense(hidden, activation="relu")(x)
    else:
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(512, activation="relu")(x)
        x = keras.layers.Dense(256, activation="relu")(x)
    z_mean = keras.layers.Dense(latent_dim, dtype="float32", name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, dtype="float32", name="z_log_var")(x)
    return keras.Model(inputs, [z_mean, z_log_var], name=f"{arch}_encoder")


def decoder(arch: str, shape: tuple[int, int, int], latent_dim: int,
            width: int = CONV_WIDTH, hidden: int = CONV_DECODER_HIDDEN) -> keras.Model:
    """Latent vectors -> per-pixel Bernoulli logits of the image."""
    height, image_width, channels = shape
    inputs = keras.Input((latent_dim,), name="z")
    if arch == "conv":
        h, w = -(-height // 4), -(-image_width // 4)
        x = keras.layers.Dense(hidden, activation="relu")(inputs) if hidden else inputs
        x = keras.layers.Dense(h * w * 2 * width, activation="relu")(x)
        x = keras.layers.Reshape((h, w, 2 * width))(x)
        x = keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same",
                                         activation="relu")(x)
        x = keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same",
                                         dtype="float32")(x)
        logits = keras.layers.Cropping2D(((0, 4 * h - height), (0, 4 * w - image_width)),
                                         dtype="float32", name="logits")(x)
    else:
        x = keras.layers.Dense(256, activation="relu")(inputs)
        x = keras.layers.Dense(512, activation="relu")(x)
        x = keras.layers.Dense(height * image_width * channels, dtype="float32")(x)
        logits = keras.layers.Reshape(shape, name="logits")(x)
    return keras.Model(inputs, logits, name=f"{arch}_decoder")


def sampler(dec: keras.Model) -> keras.Model:
    """The saved model: latent vectors (N, D) -> images (N, H, W, C) as floats in 0-255."""
    inputs = keras.Input(dec.input_shape[1:], name="z")
    probs = keras.layers.Activation("sigmoid", dtype="float32")(dec(inputs))
    images = keras.layers.Rescaling(255.0, dtype="float32", name="image")(probs)
    return keras.Model(inputs, images, name="vae_decoder")


class VAE(keras.Model):
    """Encoder + decoder trained on the negative ELBO; `fit` logs loss, reconstruction, kl."""

    def __init__(self, enc: keras.Model, dec: keras.Model, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder, self.decoder = enc, dec
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.total_tracker = keras.metrics.Mean(name="loss")
        self.recon_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        # The encoder and decoder come built and the VAE adds no layers of its own: it is
        # built too (its weights can be saved, e.g. in a resume checkpoint, before any call).
        self.built = True

    @property
    def metrics(self) -> list[Any]:
        return [self.total_tracker, self.recon_tracker, self.kl_tracker]

    def call(self, images: Any, training: bool = False) -> Any:
        z_mean, _ = self.encoder(images, training=training)
        return self.decoder(z_mean, training=training)

    def terms(self, images: Any, training: bool) -> tuple[Any, Any]:
        """Per-image reconstruction (Bernoulli NLL, nats) and KL(q(z|x) || N(0, I)) terms."""
        z_mean, z_log_var = self.encoder(images, training=training)
        z_mean, z_log_var = ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32")
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        z = z_mean + ops.exp(0.5 * z_log_var) * eps
        logits = ops.cast(self.decoder(z, training=training), "float32")
        targets = ops.cast(images, "float32")
        bce = ops.binary_crossentropy(targets, logits, from_logits=True)
        recon = ops.sum(ops.reshape(bce, (ops.shape(bce)[0], -1)), axis=1)
        kl = -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=1)
        return recon, kl

    def _track(self, recon: Any, kl: Any) -> dict[str, Any]:
        self.total_tracker.update_state(recon + kl)
        self.recon_tracker.update_state(recon)
        self.kl_tracker.update_state(kl)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            recon, kl = self.terms(data, training=True)
            # each replica's mean over its share of the global batch; the replicas' gradients
            # are summed, so each is divided by their number (as Keras's compiled losses do)
            loss = ops.mean(recon + kl) / replicas
            scaled = self.optimizer.scale_loss(loss)  # loss scaling under mixed precision
        grads = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        return self._track(recon, kl)

    def test_step(self, data: Any) -> dict[str, Any]:
        recon, kl = self.terms(data, training=False)
        return self._track(recon, kl)
