"""`dlkit train-cifar`: a classifier for small colour photos (CIFAR-10, or the user's own
image folders with one subfolder per class)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlkit import runtime as rt
from dlkit.console import info, warn
from dlkit.errors import DataError, UsageError, require_choice
from dlkit.training import TrainConfig

DATASETS = ("cifar10",)
ARCHS = ("seed", "resnet")


@dataclass
class CifarConfig(TrainConfig):
    dataset: str = "cifar10"
    arch: str = "resnet"
    image_size: int = 32
    augment: bool = True
    label_smoothing: float = 0.1
    test_split: float = 0.2  # image folders only: held out for the test set

    def validate(self) -> None:
        super().validate()
        require_choice("--dataset", self.dataset, DATASETS)
        require_choice("--arch", self.arch, ARCHS)
        if not 8 <= self.image_size <= 512:
            raise UsageError(f"--image-size must be between 8 and 512 (got {self.image_size})")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError("--label-smoothing must be in [0, 1)")


def is_image_folder(folder: Path) -> bool:
    """True when `folder` looks like one subfolder of images per class (not a CIFAR layout)."""
    return not (folder / "cifar-10-batches-py").is_dir() and any(
        d.is_dir() and not d.name.startswith(".") for d in folder.iterdir())


def load_data(config: CifarConfig):
    """CIFAR-10 through the data lookup, or the user's image folder given as --data-dir."""
    from dlkit.data.readers import ArraySplits, load_cifar10

    folder = config.data_dir
    if folder is not None and folder.is_dir() and is_image_folder(folder):
        return _image_folder_splits(folder, config), "image-folder"
    data = load_cifar10(config.data_dir)
    if config.image_size != 32:
        from dlkit.data.images import resize

        size = (config.image_size, config.image_size)
        data = ArraySplits(data.name, np.stack([resize(i, size) for i in data.x_train]),
                           data.y_train, np.stack([resize(i, size) for i in data.x_test]),
                           data.y_test, data.class_names)
    return data, "cifar10"


def _image_folder_splits(folder: Path, config: CifarConfig):
    from dlkit.data.images import read_image_folder
    from dlkit.data.pipelines import split_validation
    from dlkit.data.readers import ArraySplits

    info(f"reading images from {folder} (one subfolder per class)")
    found = read_image_folder(folder, (config.image_size, config.image_size))
    for path, why in found.skipped:
        warn(f"skipped {path}: {why}")
    if len(found.images) == 0:
        raise DataError(f"no readable images under {folder}/<class>/; put images (JPEG, PNG, "
                        "BMP, WebP, TIFF) in one subfolder per class", 2)
    if len(found.class_names) < 2 or len(np.unique(found.labels)) < 2:
        raise DataError(f"{folder} needs at least two class subfolders with images", 2)
    x_train, y_train, x_test, y_test = split_validation(found.images, found.labels,
                                                        config.test_split, config.seed + 1)
    return ArraySplits(folder.name, x_train, y_train, x_test, y_test, found.class_names)


def run(config: CifarConfig):
    """Train, evaluate and save; returns a `ClassifierResult`."""
    from dlkit.artifacts import check_output

    config.validate()
    config.output = check_output(config.output, chief=rt.is_chief(config.strategy))
    runtime = rt.start(config.seed, config.strategy, config.deterministic, multi_worker=True)

    from dlkit.data.pipelines import pad_crop_flip
    from dlkit.nets import cifar as nets
    from dlkit.tasks.image_classifier import Recipe, limit_splits, train_classifier

    data, source = load_data(config)
    data = limit_splits(data, config.limit)
    pad = max(2, config.image_size // 8)
    recipe = Recipe(lambda shape, n: nets.build(config.arch, shape, n),
                    augment=pad_crop_flip(pad, flip=True) if config.augment else None,
                    label_smoothing=config.label_smoothing, weight_decay=5e-4,
                    preprocessing={"color": "rgb"})
    return train_classifier("train-cifar", config.arch, data, recipe, config, runtime,
                            {"source": source})
