"""`dlkit train-mnist`: a classifier for 28x28 greyscale images (MNIST, Fashion-MNIST, digits)."""

from __future__ import annotations

from dataclasses import dataclass

from dlkit import runtime as rt
from dlkit.errors import require_choice
from dlkit.training import TrainConfig

DATASETS = ("mnist", "fashion-mnist", "digits")
ARCHS = ("mlp", "cnn")


@dataclass
class MnistConfig(TrainConfig):
    dataset: str = "mnist"
    arch: str = "cnn"

    def validate(self) -> None:
        super().validate()
        require_choice("--dataset", self.dataset, DATASETS)
        require_choice("--arch", self.arch, ARCHS)


def run(config: MnistConfig):
    """Train, evaluate and save; returns a `ClassifierResult`."""
    from dlkit.artifacts import check_output

    config.validate()
    config.output = check_output(config.output, chief=rt.is_chief(config.strategy))
    runtime = rt.start(config.seed, config.strategy, config.deterministic, multi_worker=True)

    from dlkit.data.readers import load_mnist_family
    from dlkit.nets import mnist as nets
    from dlkit.tasks.image_classifier import Recipe, limit_splits, train_classifier

    data = limit_splits(load_mnist_family(config.dataset, config.data_dir), config.limit)
    # Digits are light on dark (MNIST's convention): classify-image inverts dark-on-light photos.
    recipe = Recipe(lambda shape, n: nets.build(config.arch, shape, n),
                    preprocessing={"color": "grayscale", "foreground": "light-on-dark"})
    return train_classifier("train-mnist", config.arch, data, recipe, config, runtime)
