"""The options of `train-gan`, `sample-gan` and `evaluate-gan` (see dlkit.core.config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlkit.core import generators
from dlkit.core.config import Backend, Config, TrainConfig, backend_option, common, opt
from dlkit.core.generators import COUNT_MAX
from dlkit.data.registry import ImageDataset


@dataclass(kw_only=True)
class GanConfig(TrainConfig):
    """Train a DCGAN; save the generator, a sample grid per epoch, a GIF and loss curves.

    Example: dlkit train-gan --dataset fashion-mnist --conditional --epochs 5
    """

    COMMAND = "train-gan"

    dataset: ImageDataset = opt(ImageDataset.mnist, "mnist, fashion-mnist, digits (bundled, "
                              "offline) or cifar10.")
    conditional: bool = opt(False, "Class-conditional generation (AC-GAN): ask the generator "
                            "for a class.")
    latent_dim: int = opt(64, "Size of the generator's noise vector.", min=1, max=1024)
    width: int = opt(16, "Filters of the generator's last upsampling layer (each one before "
                     "it has twice as many; the discriminator starts at twice this).", min=4,
                     max=512)
    data_dir: Path | None = common("data_dir", None)
    limit: int | None = common("limit", None)
    epochs: int = common("epochs", 10)
    batch_size: int = common("batch_size", 16, help="Images per step. 16 (not DCGAN's 64 or "
                             "128): on a CPU a step's cost grows with its images, so smaller "
                             "batches give more steps in the same minutes, and this GAN "
                             "learns per step.")
    learning_rate: float = common("learning_rate", 4e-4, help="Adam's learning rate for both "
                                  "networks (constant; beta1 0 and beta2 0.9, as in SNGAN).")
    output: Path = common("output", Path("models/gan"))


@dataclass(kw_only=True)
class SampleGanConfig(generators.SampleImagesConfig):
    """Draw new images from a trained generator: a grid PNG or one PNG per image.

    Example: dlkit sample-gan --model models/gan --count 64 --label 7 --seed 1 --out sevens.png
    """

    COMMAND = "sample-gan"

    model: Path = opt(Path("models/gan"), "Model folder written by train-gan.", flags=("-m",))
    seed: int = common("seed", 0, help="Seed for the noise: the same seed gives the same "
                       "images.")
    truncation: float | None = opt(None, "Redraw noise values beyond +-T (truncation trick: "
                                   "cleaner, less varied).", min=0.05, max=10)
    backend: Backend = backend_option()


@dataclass(kw_only=True)
class EvaluateGanConfig(Config):
    """Score generated images (of a train-gan or train-flow model) with a trained classifier.

    Reports the share the classifier labels with confidence >= threshold ("recognisable"), the
    label-histogram entropy relative to ln(classes), and for conditional models the share
    labelled as the class asked for.

    Example: dlkit evaluate-gan --model models/gan --classifier models/mnist --json
    """

    COMMAND = "evaluate-gan"

    model: Path = opt(Path("models/gan"), "Model folder written by train-gan or train-flow.",
                      flags=("-m",))
    classifier: Path = opt(Path("models/mnist"), "Classifier folder written by train-mnist "
                           "(or train-cifar) on the same dataset.")
    count: int = opt(1000, "Number of samples scored.", flags=("-n",), min=1, max=COUNT_MAX)
    seed: int = common("seed", 0, help="Seed for the noise.")
    threshold: float = opt(0.9, "Confidence that counts as recognisable (a label-smoothed "
                           "classifier's probabilities are first mapped back through its "
                           "smoothing, so its sure answers score near 1).", min=0, min_open=True,
                           max=1)
    truncation: float | None = opt(None, "GAN models: redraw noise values beyond +-T "
                                   "(truncation trick: cleaner, less varied).", min=0.05, max=10)
    recall: bool = opt(False, "Also measure variety against the real dataset: the GAN-train "
                       "accuracy (a classifier trained only on --train-count generated images "
                       "tested on the real test set) and the Frechet distance between real "
                       "and generated images in the scoring classifier's feature space, next "
                       "to the real-train-vs-real-test distance.", name="--recall")
    train_count: int = opt(10_000, "With --recall: generated images the GAN-train classifier "
                           "learns from.", min=100, max=COUNT_MAX)
    data_dir: Path | None = common("data_dir", None, help="With --recall: read the real "
                                   "dataset from this folder only.")
