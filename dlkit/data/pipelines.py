"""tf.data input pipelines for image classification.

Images stay uint8 until they are inside the graph: the pipeline gathers whole batches of the uint8
tensors in a seeded order, augments each batch in one go (a few vectorised ops per batch rather
than a map over single images: the data pipeline shares the CPU with the model) and prefetches.
Scaling to [0, 1] is the model's first layer, so the exported SavedModel takes raw 0-255 pixels
like any image tool gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# (uint8 images (B, H, W, C), their indices in the training set (B,), the epoch, a (2,) int64
# key) -> float32 augmented images. Stateless: the same arguments give the same batch.
Augment = Callable[[Any, Any, Any, Any], Any]


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out `fraction` of (x, y) as a validation set, after a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * fraction))
    if fraction > 0 and n_val == 0 and len(x) > 1:
        n_val = 1
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


EVAL_VALUES = 2**20  # input values (pixels x channels) per evaluation batch, at most


def eval_batch(batch_size: int, x: np.ndarray) -> int:
    """The batch size for evaluating (validation, test) on images like `x`: larger than the
    training batch where the images are small, since a forward pass without gradients needs
    far less memory and each batch costs a fixed Python and kernel-launch overhead; never
    smaller than the training batch."""
    per_image = int(np.prod(x.shape[1:])) or 1
    return max(batch_size, min(256, EVAL_VALUES // per_image))


def image_dataset(x: np.ndarray, y: np.ndarray, batch_size: int) -> Any:
    """Evaluation batches, in order: (float32 0-255 images, int labels) from uint8 arrays."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def training_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int, seed: int,
                     epochs: int, first_epoch: int = 0, augment: Augment | None = None) -> Any:
    """`steps` training batches per epoch for epochs `first_epoch`..`epochs - 1`, as one dataset.

    Each epoch's order and augmentation come from stateless random ops keyed by (seed, epoch,
    step), so they differ from epoch to epoch yet are the same in every run with that seed, and
    a run resumed at epoch k sees exactly what an uninterrupted run saw from epoch k on.
    (Stateful random ops inside tf.data restart their sequence with each new iterator: with a
    global seed every epoch would get the same crops and flips.) Batches are full-size (a
    different remainder is left out each epoch) unless the data is smaller than one batch. Fit
    it with `steps_per_epoch=steps`; `plan_steps` picks `steps`.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    images, labels, n = tf.constant(x), tf.constant(y), len(x)
    full_batches = n >= batch_size

    def one_epoch(epoch: Any) -> Any:
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)
        ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, full_batches).take(steps)
        if augment is None:
            return ds.map(lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)))

        def load(step: Any, idx: Any) -> Any:
            batch_key = tf.stack([tf.constant(seed, tf.int64) + 1, epoch * steps + step])
            return augment(tf.gather(images, idx), idx, epoch, batch_key), tf.gather(labels, idx)

        return ds.enumerate().map(load, num_parallel_calls=autotune)

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    return ds.map(_to_float, num_parallel_calls=autotune).prefetch(autotune)


def epoch_batches(columns: tuple[Any, ...], batch_size: int, seed: int, epochs: int,
                  first_epoch: int = 0) -> Any:
    """Every example once per epoch, in batches of `batch_size` (the epoch's last batch may be
    smaller), for epochs `first_epoch`..`epochs - 1`, as one dataset of tuples of `columns`
    (arrays, or lists of strings, with the same first dimension).

    Like `training_dataset`, each epoch's order is a stateless shuffle keyed by (seed, epoch),
    so a run resumed at epoch k sees the batches an uninterrupted run saw from epoch k on. Fit
    it with `steps_per_epoch=ceil(len / batch_size)`.
    """
    import tensorflow as tf

    tensors = tuple(tf.constant(c) for c in columns)
    n = int(tensors[0].shape[0])

    def one_epoch(epoch: Any) -> Any:
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(
            lambda idx: tuple(tf.gather(t, idx) for t in tensors))

    return tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch).prefetch(
        tf.data.AUTOTUNE)


def plan_steps(examples: int, batch_size: int, most: int = 16) -> tuple[int, int]:
    """(steps per epoch, steps per compiled call) for `training_dataset`.

    Several steps per call amortise Python's per-step overhead, which dominates for small models
    and batches (measured: 1.5x on the seed CIFAR CNN at batch 32). Keras needs the steps per
    epoch to be a multiple of it, so the epoch is cut to the multiple that drops fewest batches.
    """
    full = examples // batch_size
    if full <= most:
        return max(1, full), max(1, full)
    per_call = max(range(4, most + 1), key=lambda d: (-(full % d), d))
    return full - full % per_call, per_call


def _to_float(images: Any, labels: Any) -> Any:
    import tensorflow as tf

    return tf.cast(images, tf.float32), labels


def translate_flip(translate: int, flip: str, seed: int, cutout: int = 0) -> Augment:
    """Batch augmentation: a random translation by up to `translate` pixels each way (reflect
    padding, then a crop back to size), a horizontal flip, and optionally a `cutout` x `cutout`
    square of zeros at a random place (DeVries & Taylor 2017).

    `flip` is "random" (each image flipped with probability 1/2, anew each epoch), "alternate"
    (each image flipped in every other epoch, starting flipped or not at random: over any two
    epochs the model sees both views, which airbench measured to be worth about 20% fewer
    epochs than random flips) or "none". Everything is a stateless function of the images'
    indices, the epoch and the batch key."""
    import tensorflow as tf

    def augment(images: Any, index: Any, epoch: Any, key: Any) -> Any:
        x = images  # uint8 until the end: a quarter of float32's memory traffic, the same values
        batch, height, width = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        shift_key, cut_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 3))
        rows = tf.broadcast_to(tf.range(height)[None], [batch, height])
        cols = tf.broadcast_to(tf.range(width)[None], [batch, width])
        if flip != "none":  # column j of a flipped image is column W - 1 - j
            flipped = _flipped(flip, index, epoch, seed, flip_key)[:, None]
            cols = tf.where(flipped, width - 1 - cols, cols)
        t = translate
        if t:
            x = tf.pad(x, [[0, 0], [t, t], [t, t], [0, 0]], mode="REFLECT")
            offsets = tf.random.stateless_uniform([2, batch], shift_key, 0, 2 * t + 1, tf.int32)
            rows, cols = rows + offsets[0][:, None], cols + offsets[1][:, None]
        if t or flip != "none":  # one gather moves every pixel to its place
            pixels = rows[:, :, None] * (width + 2 * t) + cols[:, None, :]  # (B, H, W)
            flat = tf.reshape(x, [batch, -1, tf.shape(x)[3]])
            x = tf.reshape(tf.gather(flat, tf.reshape(pixels, [batch, -1]), batch_dims=1),
                           tf.shape(images))
        if cutout:
            centres = tf.random.stateless_uniform([2, batch], cut_key, 0, 1)
            cy = tf.cast(centres[0] * tf.cast(height, tf.float32), tf.int32)
            cx = tf.cast(centres[1] * tf.cast(width, tf.float32), tf.int32)
            half = cutout // 2
            in_rows = tf.abs(tf.range(height)[None] - cy[:, None]) < half + cutout % 2
            in_cols = tf.abs(tf.range(width)[None] - cx[:, None]) < half + cutout % 2
            hole = tf.logical_and(in_rows[:, :, None], in_cols[:, None, :])[..., None]
            x = tf.where(hole, tf.zeros_like(x), x)
        return tf.cast(x, tf.float32)

    return augment


def _flipped(flip: str, index: Any, epoch: Any, seed: int, key: Any) -> Any:
    """Which images of the batch are flipped (bool (B,))."""
    import tensorflow as tf

    if flip == "random":
        return tf.random.stateless_uniform(tf.shape(index), key) < 0.5
    # alternate: a fixed coin per image (a multiplicative hash of its index and the seed),
    # xor the epoch's parity
    hashed = tf.math.floormod((index + seed) * 2654435761, 2**32)
    coin = tf.math.floormod(hashed // 2**16, 2) == 1
    return tf.math.logical_xor(coin, tf.math.floormod(epoch, 2) == 1)
