"""`dlkit export --quantize int8` on an image classifier's folder: the training images it
calibrates on, found the way training found them (registered as the "calibration" of
train-mnist and train-cifar in `dlkit.core.registry`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.config import recorded_settings
from dlkit.core.errors import UsageError
from dlkit.image_classifier.config import model_image_size


def calibration_images(meta: dict[str, Any], count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` of the model's training images (at most all of them), at its input size, as
    float32 (N, H, W, C)."""
    from dlkit.data.images import read_image_folder, resize
    from dlkit.data.readers import load_cifar10, load_mnist_family
    from dlkit.image_classifier.train import is_image_folder

    data_dir = recorded_settings(meta).get("data-dir")
    data_dir = Path(data_dir) if isinstance(data_dir, str) and data_dir else None
    declared = meta.get("input_shape")
    height, width, channels = (list(declared if isinstance(declared, list) else [])
                               + [None, None, None])[:3]
    height, width = model_image_size(height, width, "the model's metadata.json")
    if meta.get("task") == "train-mnist":
        images = load_mnist_family(str(meta.get("dataset")), data_dir).x_train
    elif data_dir is not None and data_dir.is_dir() and is_image_folder(data_dir):
        images = read_image_folder(data_dir, (height, width)).images
    else:
        images = load_cifar10(data_dir).x_train
    images = images[rng.choice(len(images), min(count, len(images)), replace=False)]
    if images.shape[1:3] != (height, width):
        images = np.stack([resize(i, (height, width)) for i in images])
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] != channels:
        raise UsageError(f"the training images have {images.shape[-1]} channels but the model "
                         f"takes {channels}")
    return images.astype(np.float32)
