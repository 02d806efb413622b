"""tf.data input pipelines for image classification.

Images stay uint8 until they are inside the graph: the pipeline caches the uint8 tensors, shuffles,
batches, then casts (and augments) per batch in parallel and prefetches. Scaling to [0, 1] is the
model's first layer, so the exported SavedModel takes raw 0-255 pixels like any image tool gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def split_validation(x: np.ndarray, y: np.ndarray, fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out `fraction` of (x, y) as a validation set, after a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * fraction))
    if fraction > 0 and n_val == 0 and len(x) > 1:
        n_val = 1
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def image_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, training: bool, seed: int,
                  augment: Callable[[Any], Any] | None = None) -> Any:
    """A batched `tf.data.Dataset` of (float32 0-255 images, int labels) from uint8 arrays."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if training:
        ds = ds.shuffle(min(len(x), 50_000), seed=seed, reshuffle_each_iteration=True)
    if training and augment is not None:
        ds = ds.map(lambda img, label: (augment(img), label), num_parallel_calls=autotune)
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.map(lambda img, label: (tf.cast(img, tf.float32), label),
                num_parallel_calls=autotune)
    return ds.prefetch(autotune)


def pad_crop_flip(pad: int, flip: bool) -> Callable[[Any], Any]:
    """Per-image augmentation: reflect-pad by `pad`, random crop back, random horizontal flip."""
    import tensorflow as tf

    def augment(image: Any) -> Any:
        shape = tf.shape(image)
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        out = tf.image.random_crop(padded, shape)
        return tf.image.random_flip_left_right(out) if flip else out

    return augment
