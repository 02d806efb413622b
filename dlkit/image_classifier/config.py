"""The options of `train-mnist`, `train-cifar` and `classify-image` (see dlkit.core.config)."""

from __future__ import annotations

import enum
import numbers
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from dlkit.core.config import (
    Backend,
    ClassWeight,
    Config,
    TrainConfig,
    backend_option,
    common,
    opt,
)
from dlkit.core.errors import UsageError
from dlkit.core.files import LINES_LIMIT, size_text
from dlkit.data.registry import GreyDataset

# The largest image side dlkit feeds a model: --input-size, and any size a model declares (its
# metadata, its input shape, a preset's image converter), which is untrusted input.
MAX_IMAGE_SIDE = 4096


class MnistArch(enum.StrEnum):
    """airbench: a whitened ConvNet after airbench; mlp: the seed document's model; cnn: three
    conv-BN-ReLU-pool blocks."""

    airbench = "airbench"
    mlp = "mlp"
    cnn = "cnn"


class CifarDataset(enum.StrEnum):
    cifar10 = "cifar10"


class CifarArch(enum.StrEnum):
    """airbench: a whitened ConvNet after airbench; resnet: a narrow ResNet-9; seed: the seed
    document's CNN."""

    airbench = "airbench"
    resnet = "resnet"
    seed = "seed"


@dataclass(frozen=True)
class Recipe:
    """A model's training defaults: what an option left unset becomes."""

    epochs: int
    batch_size: int
    learning_rate: float
    label_smoothing: float
    augment: bool
    members: int = 1
    activation: str = "gelu"  # airbench's nonlinearity
    fixed_whitening: bool = False  # airbench's whitening convolution left untrained
    # the model saved holds an exponential moving average of the weights whose time constant is
    # this fraction of the run's steps (None: the last weights)
    weight_average: float | None = None


# airbench against the issue-25 budgets on a 2-core AVX512-BF16 CPU (benchmarks/
# bench_classifiers.py; choices made on validation splits). Fashion-MNIST (54,000 images): batch
# 256; with GELU 6 epochs took 176 s for 0.929 (5 fit 150 s: 0.927). In mixed bfloat16 on this CPU
# the exact GELU (erf) costs about as much as the convolutions: ReLU trains 1.40-1.48x more images
# per CPU-second (the same net, interleaved in one process; an experiment's 5 GELU epochs 276
# CPU-s, 7 ReLU epochs 261), and 7 ReLU epochs beat 5 GELU ones on a held-out 6,000 (0.9437
# against 0.9363, test-time augmentation on both), so 28x28 images get ReLU and 7, in batches of
# 128 (test 0.9337 against 0.9317 for 256, the same CPU time; with GELU 0.9297 against 0.9268).
# The CIFAR-10 subset (3,661 training images): small data wants many small steps, and width or
# epochs did not pay. With 40 epochs, 3,051 images and validation on 1,017: batch 256 at rate 0.2
# 0.729, 128 at 0.1 0.754, 64 at 0.1 0.768 (at 0.2 0.744), 32 at 0.05 0.779; and two networks
# trained side by side, their probabilities averaged, +2.4 points over one (0.789); one network in
# batches of 64 reached 0.755 in 30 epochs. The CIFAR recipe is that ensemble in batches of 64,
# for the 36 epochs that fit the budget (two members cost 2.4x one's CPU time per epoch; 30 epochs
# of them scored 0.787 on the test set). For 28x28 images the whitening convolution is left as
# computed (not trained): the backward pass then skips the gradient of the next convolution's
# input, which made Fashion-MNIST's steps 1.09x as many per CPU-second (interleaved in one
# process) and 7 epochs 143-145 s against 151-169 s; alone it cost 0.08 test points (0.9341 and
# 0.9343 against 0.9349 and 0.9351, seeds 0 and 1), which an average of the weights over the last
# thirtieth of the steps won back: 0.9355 and 0.9342 (the saved models on the held-out 6,000:
# 0.9378 and 0.9387 against 0.9405 and 0.9378 trained, 0.9368 and 0.9368 fixed alone).
# The others keep the recipes they had before airbench.
AIRBENCH = Recipe(epochs=40, batch_size=256, learning_rate=0.2, label_smoothing=0.2,
                  augment=True)
AIRBENCH_CIFAR = replace(AIRBENCH, epochs=36, batch_size=64, learning_rate=0.1, members=2)
ADAMW_CIFAR = Recipe(epochs=20, batch_size=128, learning_rate=4e-3, label_smoothing=0.1,
                     augment=True)
ADAMW_MNIST = Recipe(epochs=5, batch_size=128, learning_rate=2e-3, label_smoothing=0.0,
                     augment=False)


MIN_STEPS, MIN_BATCH = 12, 16  # see ClassifierConfig.fit_batch_size


@dataclass(kw_only=True)
class ClassifierConfig(TrainConfig):
    """What both image classifiers take. Options left unset take the arch's `Recipe`."""

    RECIPES: ClassVar[dict[Any, Recipe]] = {}

    data_dir: Path | None = common("data_dir", None)
    limit: int | None = common("limit", None)
    val_split: float = common("val_split", 0.1)
    augment: bool | None = opt(None, "Random translations by a few pixels (reflect padding) "
                               "and, for photos and clothes, mirror images; the saved airbench "
                               "model then averages its predictions over such views (test-time "
                               "augmentation) [default: on, except for mlp and cnn].",
                               show_default=False)
    label_smoothing: float | None = opt(None, "Label smoothing of the cross-entropy [default: "
                                        "0.2 for airbench].", min=0, max=1, max_open=True,
                                        show_default=False)
    epochs: int | None = common("epochs", None)
    batch_size: int | None = common("batch_size", None, help="Examples per step (global: split "
                                    "across all replicas) [default: 64 for airbench in "
                                    "train-cifar, else 128].")
    members: int | None = opt(None, "airbench only: networks trained side by side on the same "
                              "batches, each on its own loss, whose probabilities the saved "
                              "model averages (an ensemble) [default: 2 for train-cifar, 1 "
                              "for train-mnist].", min=1, max=8, show_default=False)

    def model_arch(self) -> Any:
        """The architecture trained: --arch (None for a --backbone)."""
        return self.arch

    def recipe(self) -> Recipe:
        return self.RECIPES[self.model_arch()]

    def check(self) -> None:
        recipe = self.recipe()
        for name in ("epochs", "learning_rate", "label_smoothing", "augment", "members"):
            if getattr(self, name) is None:
                setattr(self, name, getattr(recipe, name))
        if self.members > 1 and self.model_arch() != "airbench":
            raise UsageError(f"--members {self.members} needs --arch airbench (an ensemble "
                             "of the other models is not built)")

    def fit_batch_size(self, examples: int) -> int:
        """The batch size for `examples` training images: --batch-size when given, else the
        recipe's, made smaller for a small training set so that an epoch has at least
        MIN_STEPS steps (not below MIN_BATCH images). 225 photos in batches of 256 would be
        one step an epoch, and 20 epochs too few steps to learn anything; the learning rate
        per step stays the recipe's (measured on the 1,293 bundled digits, 2 epochs: batch 107
        at rate 0.2 reaches 0.96, at 0.084 (scaled with the batch) 0.82, batch 256 0.78)."""
        if self.batch_size is None:
            self.batch_size = max(min(self.recipe().batch_size, examples // MIN_STEPS),
                                  MIN_BATCH)
        return self.batch_size


@dataclass(kw_only=True)
class MnistConfig(ClassifierConfig):
    """Train a classifier on MNIST-style 28x28 images; save it with plots and metadata.

    Example: dlkit train-mnist --dataset fashion-mnist --epochs 5 --json > result.json
    """

    COMMAND = "train-mnist"

    dataset: GreyDataset = opt(GreyDataset.mnist, "The images: mnist, fashion-mnist, or "
                                "digits (scikit-learn's bundled digits: works offline).")
    RECIPES: ClassVar[dict[Any, Recipe]] = {
        MnistArch.airbench: replace(AIRBENCH, epochs=7, batch_size=128, activation="relu",
                                    fixed_whitening=True, weight_average=1 / 30),
        MnistArch.cnn: ADAMW_MNIST,
        MnistArch.mlp: ADAMW_MNIST}

    arch: MnistArch = opt(MnistArch.airbench, "airbench (a ConvNet with a whitened first "
                          "layer, after airbench), mlp (the seed's Flatten-Dense-Dropout-Dense) "
                          "or cnn (three conv-BN-ReLU-pool blocks).")
    epochs: int | None = common("epochs", None, help="Passes over the training set [default: "
                                "7 for airbench, else 5].")
    learning_rate: float | None = common("learning_rate", None, help="Peak learning rate "
                                         "[default: 0.2 for airbench (SGD), else 0.002 "
                                         "(AdamW)].")
    output: Path = common("output", Path("models/mnist"))


@dataclass(kw_only=True)
class CifarConfig(ClassifierConfig):
    """Train a classifier on CIFAR-10 or on your own image folders; save it with plots.

    Example: dlkit train-cifar --epochs 30 --output models/cifar
    """

    COMMAND = "train-cifar"
    RECIPES: ClassVar[dict[Any, Recipe]] = {
        CifarArch.airbench: AIRBENCH_CIFAR, CifarArch.resnet: ADAMW_CIFAR,
        CifarArch.seed: ADAMW_CIFAR, None: ADAMW_CIFAR}

    dataset: CifarDataset = opt(CifarDataset.cifar10, "The dataset when --data-dir is not an "
                                "image folder.")
    arch: CifarArch | None = opt(None, "airbench (a ConvNet with a whitened first layer, after "
                                 "airbench: the default), resnet (a narrow ResNet-9) or seed "
                                 "(the seed document's CNN).", show_default=False)
    backbone: str | None = opt(None, "Transfer learning: a new head on this pretrained "
                               "keras-hub image backbone (a preset name, kaggle:// or hf:// "
                               "handle, a preset folder or a folder train-cifar --backbone "
                               "wrote), then the whole network fine-tuned.",
                               show_default=False)
    head_epochs: int | None = opt(None, "With --backbone: the epochs that train only the new "
                                  "head, before fine-tuning everything at a tenth of the "
                                  "learning rate [default: a quarter of --epochs].", min=0,
                                  max=100_000, show_default=False)
    data_dir: Path | None = common(
        "data_dir", None, help="Read CIFAR-10 from this folder only (the folder holding "
        "cifar-10-batches-py/, or that folder itself), or train on your own images: a folder "
        "with one subfolder of images per class.")
    image_size: int = opt(32, "Side in pixels that images are resized to.", min=8, max=512)
    test_split: float = opt(0.2, "Image folders only: the fraction held out as the test set.",
                            min=0, max=1, min_open=True, max_open=True)
    class_weight: ClassWeight = opt(ClassWeight.none, "balanced: weight each class by "
                                    "n / (classes x its count), for imbalanced folders.")
    epochs: int | None = common("epochs", None, help="Passes over the training set [default: "
                                f"{AIRBENCH_CIFAR.epochs} for airbench, else 20].")
    learning_rate: float | None = common("learning_rate", None, help="Peak learning rate "
                                         f"[default: {AIRBENCH_CIFAR.learning_rate} for "
                                         "airbench (SGD), else 0.004 (AdamW)].")
    output: Path = common("output", Path("models/cifar"))

    def model_arch(self) -> CifarArch | None:
        """airbench by default; None (the AdamW recipe) for a backbone."""
        return self.arch or (CifarArch.airbench if self.backbone is None else None)

    def check(self) -> None:
        super().check()
        if self.backbone is None:
            if self.head_epochs is not None:
                raise UsageError("--head-epochs belongs to transfer learning; give --backbone "
                                 "PRESET too")
            self.arch = self.arch or CifarArch.airbench
            return
        if self.arch is not None:
            raise UsageError("--backbone replaces --arch (the backbone is the model); give "
                             "one of them")
        if self.head_epochs is None:
            self.head_epochs = max(1, self.epochs // 4) if self.epochs > 1 else 0
        if self.head_epochs >= self.epochs:
            raise UsageError(f"--head-epochs {self.head_epochs} leaves no epoch to fine-tune "
                             f"the backbone in; give fewer than --epochs {self.epochs}")


class Invert(enum.StrEnum):
    auto = "auto"
    yes = "yes"
    no = "no"


class Scale(enum.StrEnum):
    """The pixel range a model takes."""

    raw = "raw"
    unit = "unit"
    signed = "signed"


@dataclass(kw_only=True)
class ClassifyImageConfig(Config):
    """Classify image files with a trained model: one line per image, path<TAB>label<TAB>confidence.

    Example: dlkit classify-image photos/ cat.jpg --model models/cifar --top-k 3
    """

    COMMAND = "classify-image"

    paths: list[str] = opt(help="Image files, folders (searched recursively) or - to read "
                           f"paths from stdin, one per line (at most {size_text(LINES_LIMIT)}).",
                           argument=True, metavar="PATH")
    model: str = opt("models/cifar", "A dlkit model folder, a .keras, .tflite or SavedModel "
                     "file, or a pretrained keras-hub image classifier: a preset name "
                     "(mobilenet_v3_small_100_imagenet; `dlkit models --kind image` lists "
                     "them), a kaggle:// or hf:// handle, or a preset folder.", flags=("-m",))
    labels: Path | None = opt(None, "Class names, one per line (models without "
                              "metadata.json).")
    input_size: tuple[int, int] | None = opt(None, "Model input size when the model does not "
                                             "fix it.", metavar="H W", min=1,
                                             max=MAX_IMAGE_SIDE)
    invert: Invert = opt(Invert.auto, "auto: invert dark-on-light images for digit models; "
                         "yes; no.")
    scale: Scale = opt(Scale.raw, "Pixel range the model takes: raw (0-255, dlkit models), "
                       "unit (0-1) or signed (-1..1).")
    top_k: int = opt(1, "Print the K best labels per image.", flags=("-k",), min=1,
                     max=1000)
    batch_size: int = opt(64, "Images per prediction batch.", flags=("-b",), min=1, max=4096)
    backend: Backend = backend_option()
    csv: Path | None = opt(None, "Also write the predictions to this CSV file.")
    show: Path | None = opt(None, "Write a PNG grid of the images with their labels.")
    json: bool = opt(False, "Print one JSON array of the predictions on stdout.",
                     name="--json", group=3)

    def check(self) -> None:
        if self.show is not None and self.show.suffix.lower() != ".png":
            raise UsageError(f"--show {self.show} must name a .png file")


def model_image_size(height: Any, width: Any, source: str) -> tuple[int, int]:
    """The (height, width) that `source` (a model, its metadata or its image converter)
    declares, when both are whole numbers from 1 to MAX_IMAGE_SIDE, as `--input-size` must be;
    exit 2 otherwise (a model could declare a size whose images fill the memory)."""
    sides = (height, width)
    if None in sides:
        raise UsageError(f"{source} gives no image size (height and width); the model is "
                         "damaged or not an image classifier")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
               and 1 <= s <= MAX_IMAGE_SIDE for s in sides):
        shown = "x".join(str(s)[:20] for s in sides)
        raise UsageError(f"{source} declares {shown} images; dlkit takes sizes from 1 to "
                         f"{MAX_IMAGE_SIDE} pixels a side (as --input-size), so the model is "
                         "damaged or not one dlkit can feed")
    return int(height), int(width)
