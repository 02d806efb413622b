"""The velocity network of a rectified flow and the model that trains it.

- `velocity_net`: a small U-Net for 28x28 and 32x32 images, v(x_t, t[, label]). A 2x2 patch
  embedding takes the image to half its side (14x14 or 16x16), where one level of residual
  blocks works; a strided convolution halves it again (7x7 or 8x8) for the second level with
  twice the channels and the middle block; the way up mirrors it with skip connections, and a
  2x2 transposed convolution gives back full-size pixels. Residual blocks are SiLU and a 3x3
  convolution, twice, with the conditioning added in between (no normalisation but the one
  before the output). The conditioning is a
  sinusoidal embedding of t (frequencies fixed, an MLP after them) plus, for conditional
  models, a learned class embedding with one extra "null" class (index = number of classes)
  that stands for "no class" in classifier-free guidance. Plain Keras layers and `keras.ops`
  only, so `model.keras` loads in safe mode and the SavedModel converts to LiteRT.
- `paired_with_noise`: the training batches (x1 an image scaled to [-1, 1], its label, x0
  standard normal noise), the noise matched to the images of its class by minibatch optimal
  transport when the model is conditional.
- `FlowMatcher`: the rectified-flow objective in a Keras `train_step`: t ~ logit-normal,
  x_t = (1 - t) x0 + t x1, and the mean squared error between v(x_t, t) and x1 - x0; the class
  is replaced by the null class for `LABEL_DROPOUT` of the images. It keeps an exponential
  moving average of the network's weights: the network that is drawn and saved.

Imports Keras at module level: import it inside command bodies only.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers, ops

LABEL_DROPOUT = 0.1  # share of training images whose class is hidden (classifier-free guidance)
EMA_DECAY = 0.999
TIME_SAMPLING = "logit-normal"  # or "uniform"
TIME_FREQUENCIES = 32  # sinusoids of the time embedding (as many sines as cosines)


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


def _time_embedding(t: Any, dim: int) -> Any:
    """t (N,) in [0, 1] -> (N, dim): fixed sinusoids of 1000 t (DDPM's scale), then an MLP."""
    half = TIME_FREQUENCIES
    frequencies = 1000.0 * np.exp(-math.log(10_000.0) * np.arange(half) / half)
    phase = layers.Dense(half, use_bias=False, trainable=False, name="time_phase",
                         dtype="float32",  # phases up to 1000 rad: float16/bfloat16 lose them
                         kernel_initializer=keras.initializers.Constant(
                             frequencies[None].astype("float32")))(
        layers.Reshape((1,), name="time_column")(t))
    waves = layers.Concatenate(name="time_sinusoids")([ops.sin(phase), ops.cos(phase)])
    hidden = layers.Dense(dim, activation="silu", name="time_mlp1")(waves)
    return layers.Dense(dim, name="time_mlp2")(hidden)


def _res_block(x: Any, condition: Any, channels: int, name: str) -> Any:
    """SiLU-conv twice, the conditioning added per channel in between; a 1x1 convolution on
    the skip path when the channels change. No normalisation inside the block: the last
    convolution starts at zero, so every block starts as the identity and the activations keep
    their scale (as in SkipInit); the GroupNormalization the blocks had cost about a third
    of each training step on a CPU and did not buy better images (see docs/image-generators.md)."""
    h = layers.Activation("silu", name=f"{name}_act1")(x)
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv1")(h)
    shift = layers.Dense(channels, name=f"{name}_condition")(condition)
    h = layers.Add(name=f"{name}_add_condition")(
        [h, layers.Reshape((1, 1, channels), name=f"{name}_condition_map")(shift)])
    h = layers.Activation("silu", name=f"{name}_act2")(h)
    h = layers.Conv2D(channels, 3, padding="same", kernel_initializer="zeros",
                      name=f"{name}_conv2")(h)
    if x.shape[-1] != channels:
        x = layers.Conv2D(channels, 1, name=f"{name}_skip")(x)
    return layers.Add(name=f"{name}_out")([x, h])


def check_shape(image_shape: tuple[int, int, int]) -> None:
    """The U-Net needs a side divisible by 4 (28 -> 14 -> 7, 32 -> 16 -> 8)."""
    height, width, _ = image_shape
    if height != width or height % 4:
        raise ValueError(f"the flow U-Net takes square images whose side is a multiple of 4, "
                         f"not {height}x{width}")


def velocity_net(image_shape: tuple[int, int, int], num_classes: int = 0, width: int = 32,
                 blocks: int = 1) -> keras.Model:
    """Inputs x (N, H, W, C) in [-1, 1] space, t (N,) [and label (N,) int32: 0..K-1, or K for
    "no class"] -> the velocity (N, H, W, C), float32."""
    check_shape(image_shape)
    channels = image_shape[-1]
    x_in = keras.Input(shape=image_shape, name="x")
    t_in = keras.Input(shape=(), name="t")
    inputs = [x_in, t_in]
    dim = 4 * width
    condition = _time_embedding(t_in, dim)
    if num_classes:
        label = keras.Input(shape=(), dtype="int32", name="label")
        inputs.append(label)
        classes = layers.Embedding(num_classes + 1, dim, name="class_embedding")(label)
        condition = layers.Add(name="time_and_class")([condition, classes])
    condition = layers.Activation("silu", name="condition")(condition)

    h = layers.Conv2D(width, 2, strides=2, name="patch_embed")(x_in)  # H/2
    skips = []
    for i in range(blocks):
        h = _res_block(h, condition, width, f"down1_{i + 1}")
        skips.append(h)
    h = layers.Conv2D(2 * width, 3, strides=2, padding="same", name="downsample")(h)  # H/4
    for i in range(blocks):
        h = _res_block(h, condition, 2 * width, f"down2_{i + 1}")
        skips.append(h)
    h = _res_block(h, condition, 2 * width, "middle")
    for i in range(blocks):
        h = layers.Concatenate(name=f"up2_{i + 1}_concat")([h, skips.pop()])
        h = _res_block(h, condition, 2 * width, f"up2_{i + 1}")
    h = layers.UpSampling2D(2, name="upsample")(h)  # H/2
    h = layers.Conv2D(width, 3, padding="same", name="upsample_conv")(h)
    for i in range(blocks):
        h = layers.Concatenate(name=f"up1_{i + 1}_concat")([h, skips.pop()])
        h = _res_block(h, condition, width, f"up1_{i + 1}")
    h = layers.GroupNormalization(_groups(width), name="out_norm")(h)
    h = layers.Activation("silu", name="out_act")(h)
    velocity = layers.Conv2DTranspose(channels, 2, strides=2, kernel_initializer="zeros",
                                      dtype="float32", name="velocity")(h)  # H
    return keras.Model(inputs, velocity, name="velocity_net")


def paired_with_noise(batches: Any, seed: int, first_batch: int, conditional: bool) -> Any:
    """(x1, labels, x0) batches from (0-255 images, labels) ones: x1 scaled to [-1, 1], x0
    standard normal noise drawn for the batch. For a `conditional` model the noise is reordered
    within each class (so the noise each class gets stays standard normal) so that the pairs
    (x0, x1) are a minibatch optimal transport plan: the order that minimises the summed
    squared distance to the images (Tong et al. 2023, Pooladian et al. 2023). The straight
    lines between such pairs cross less, which makes the velocity easier to learn and the
    few-step sampling more accurate. An unconditional model keeps the noise as drawn: pairing
    across the whole batch made its images worse (both measured in docs/image-generators.md).
    The noise of batch b is keyed by (seed, b): a run resumed at batch `first_batch` draws what
    an uninterrupted one did."""
    import tensorflow as tf

    def pair(b: Any, batch: Any) -> Any:
        images, labels = batch
        x1 = images / 127.5 - 1.0
        x0 = tf.random.stateless_normal(tf.shape(x1), tf.stack([tf.constant(seed, tf.int64), b]))
        if not conditional:
            return x1, labels, x0
        n = tf.shape(x1)[0]
        # -x0 . x1 for every pair: in TensorFlow, since NumPy's BLAS threads would spin against
        # TensorFlow's on a small CPU (a third of the training speed, measured)
        cost = -tf.matmul(tf.reshape(x0, [n, -1]), tf.reshape(x1, [n, -1]), transpose_b=True)
        order = tf.numpy_function(_transport_order, [cost, tf.cast(labels, tf.int32)], tf.int32,
                                  stateful=False)
        return x1, labels, tf.gather(x0, tf.reshape(order, [-1]))

    return batches.enumerate(start=first_batch).map(pair, num_parallel_calls=tf.data.AUTOTUNE)


def _transport_order(cost: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The index of the noise paired with each image, given `cost[i, j]` = -noise_i . image_j:
    the assignment that minimises the summed squared distances (|x0|^2 and |x1|^2 add the
    same whatever the order), pairs across classes ruled out."""
    from scipy.optimize import linear_sum_assignment

    cost = cost.astype(np.float64)
    cost[classes[:, None] != classes[None, :]] = np.inf
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(len(cost), np.int32)
    order[cols] = rows
    return order


class FlowMatcher(keras.Model):
    """Trains `velocity` with the rectified-flow objective (see the module doc) and keeps
    `ema`, the moving average of its weights."""

    def __init__(self, velocity: keras.Model, num_classes: int, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.velocity = velocity
        self.ema = keras.models.clone_model(velocity)
        self.ema.set_weights(velocity.get_weights())
        self.ema.trainable = False
        self.num_classes = num_classes
        self.noise_seed = keras.random.SeedGenerator(seed)  # times and hidden labels
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def build(self, input_shape: Any = None) -> None:
        """Nothing to create (the networks are built functional models); marks the model built
        so that its weights can be saved and loaded before it is ever called."""
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker]

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.velocity(inputs, training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        x1, labels, x0 = data  # see `paired_with_noise`
        batch = ops.shape(x1)[0]
        t = self._times(batch)
        t_map = ops.reshape(t, (-1, 1, 1, 1))
        x_t = (1.0 - t_map) * x0 + t_map * x1
        inputs = [x_t, t]
        if self.num_classes:
            hidden = keras.random.uniform((batch,), seed=self.noise_seed) < LABEL_DROPOUT
            inputs.append(ops.where(hidden, self.num_classes, ops.cast(labels, "int32")))
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            velocity = self.velocity(inputs, training=True)
            loss = ops.mean(ops.square(velocity - (x1 - x0)))
            scaled = self.optimizer.scale_loss(loss / replicas)  # float16: loss scaling
        variables = self.velocity.trainable_weights
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self._update_ema()
        self.loss_tracker.update_state(loss)
        return {m.name: m.result() for m in self.metrics}

    def _times(self, batch: Any) -> Any:
        """t for each image: logit-normal (more weight on the middle of the path, where the
        velocity is hardest to predict) or uniform, as TIME_SAMPLING says."""
        if TIME_SAMPLING == "uniform":
            return keras.random.uniform((batch,), seed=self.noise_seed)
        return ops.sigmoid(keras.random.normal((batch,), seed=self.noise_seed))

    def _update_ema(self) -> None:
        """EMA of every weight, its decay warming up from 0.9 ((1 + n) / (10 + n))."""
        step = ops.cast(self.optimizer.iterations, "float32")
        decay = ops.minimum(EMA_DECAY, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.ema.weights, self.velocity.weights, strict=True):
            average.assign(decay * average + (1.0 - decay) * weight)
