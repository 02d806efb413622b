"""tf.data input pipelines for image classification.

Images stay uint8 until they are inside the graph: the pipeline caches the uint8 tensors, shuffles,
batches, then casts (and augments) per batch in parallel and prefetches. Scaling to [0, 1] is the
model's first layer, so the exported SavedModel takes raw 0-255 pixels like any image tool gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Augment = Callable[[Any, Any], Any]  # (uint8 image, (2,) int64 seed) -> augmented image


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out `fraction` of (x, y) as a validation set, after a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * fraction))
    if fraction > 0 and n_val == 0 and len(x) > 1:
        n_val = 1
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def image_dataset(x: np.ndarray, y: np.ndarray, batch_size: int) -> Any:
    """Evaluation batches, in order: (float32 0-255 images, int labels) from uint8 arrays."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def training_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, steps: int, seed: int,
                     epochs: int, first_epoch: int = 0, augment: Augment | None = None) -> Any:
    """`steps` training batches per epoch for epochs `first_epoch`..`epochs - 1`, as one dataset.

    Each epoch's order and augmentation come from stateless random ops keyed by (seed, epoch),
    so they differ from epoch to epoch yet are the same in every run with that seed, and a run
    resumed at epoch k sees exactly what an uninterrupted run saw from epoch k on. (Stateful
    random ops inside tf.data restart their sequence with each new iterator: with a global seed
    every epoch would get the same crops and flips.) Batches are full-size (a different
    remainder is left out each epoch) unless the data is smaller than one batch. Fit it with
    `steps_per_epoch=steps`; `plan_steps` picks `steps`.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    images, labels, n = tf.constant(x), tf.constant(y), len(x)
    full_batches = n >= batch_size

    def one_epoch(epoch: Any) -> Any:
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=key)
        ds = tf.data.Dataset.from_tensor_slices(order)
        if augment is None:  # gather whole batches: far fewer tf.data elements
            return ds.batch(batch_size, full_batches).take(steps).map(
                lambda idx: (tf.gather(images, idx), tf.gather(labels, idx)))

        def load(index: Any) -> Any:
            item_key = tf.stack([tf.constant(seed, tf.int64) + 1, epoch * n + index])
            return augment(tf.gather(images, index), item_key), tf.gather(labels, index)

        return ds.take(steps * batch_size).map(load, num_parallel_calls=autotune).batch(
            batch_size, full_batches)

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


def pad_crop_flip(pad: int, flip: bool) -> Augment:
    """Per-image augmentation: reflect-pad by `pad`, random crop back, random horizontal flip;
    stateless, keyed by the (2,) int seed it is given."""
    import tensorflow as tf

    def augment(image: Any, key: Any) -> Any:
        crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        out = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_key)
        return tf.image.stateless_random_flip_left_right(out, seed=flip_key) if flip else out

    return augment
