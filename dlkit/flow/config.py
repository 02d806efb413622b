"""The options of `train-flow` and `sample-flow` (see dlkit.core.config)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from dlkit.core import generators
from dlkit.core.config import Backend, TrainConfig, backend_option, common, opt
from dlkit.data.registry import ImageDataset

STEPS_MAX = 1000  # ODE steps of one sampling run
GUIDANCE_MAX = 100.0


class Solver(enum.StrEnum):
    """How the sampling ODE is integrated: Euler (one network call per step) or Heun (two, but
    one on the last step: second order, better images for the same number of steps)."""

    euler = "euler"
    heun = "heun"


_STEPS_HELP = ("ODE steps from noise to image (Heun calls the network twice per step but the "
               "last).")
_SOLVER_HELP = "ODE solver: euler or heun (second order)."
_GUIDANCE_HELP = ("Classifier-free guidance weight of conditional models: 0 ignores the "
                  "class, 1 is the plain conditional model, more follows the class harder "
                  "(cleaner, less varied).")


@dataclass(kw_only=True)
class FlowConfig(TrainConfig):
    """Train a flow-matching (rectified-flow) image generator: a small U-Net learns the velocity
    that carries noise to images; save it (with an EMA of its weights), a sample grid per epoch,
    a GIF of one sampling trajectory and the loss curve.

    Example: dlkit train-flow --dataset fashion-mnist --conditional --max-minutes 10
    """

    COMMAND = "train-flow"

    dataset: ImageDataset = opt(ImageDataset.mnist, "mnist, fashion-mnist, digits (bundled, "
                                "offline) or cifar10.")
    conditional: bool = opt(False, "Class-conditional generation with classifier-free "
                            "guidance (the class is dropped for 10% of training images).")
    width: int = opt(32, "Channels of the U-Net's upper level (twice as many below).", min=8,
                     max=512)
    steps: int = opt(6, _STEPS_HELP + " For the per-epoch grids and the GIF, and the "
                     "default of sample-flow and evaluate-gan.", min=1, max=STEPS_MAX)
    solver: Solver = opt(Solver.heun, _SOLVER_HELP + " Recorded as the model's default.")
    guidance: float = opt(2.0, _GUIDANCE_HELP + " Recorded as the model's default.", min=0,
                          max=GUIDANCE_MAX)
    data_dir: Path | None = common("data_dir", None)
    limit: int | None = common("limit", None)
    epochs: int = common("epochs", 10)
    batch_size: int = common("batch_size", 64)
    learning_rate: float = common("learning_rate", 3e-3, help="AdamW's peak learning rate "
                                  "(linear warm-up, then a cosine decay over the epochs or "
                                  "--max-minutes).")
    output: Path = common("output", Path("models/flow"))


@dataclass(kw_only=True)
class SampleFlowConfig(generators.SampleImagesConfig):
    """Draw new images from a trained flow model: a grid PNG or one PNG per image.

    Example: dlkit sample-flow --model models/flow --count 64 --label 7 --seed 1 --out seven.png
    """

    COMMAND = "sample-flow"

    model: Path = opt(Path("models/flow"), "Model folder written by train-flow.", flags=("-m",))
    seed: int = common("seed", 0, help="Seed for the noise: the same seed gives the same "
                       "images on either backend.")
    steps: int | None = opt(None, _STEPS_HELP + " Default: the model's.", min=1,
                            max=STEPS_MAX, show_default=False)
    solver: Solver | None = opt(None, _SOLVER_HELP + " Default: the model's.",
                                show_default=False)
    guidance: float | None = opt(None, _GUIDANCE_HELP + " Default: the model's.", min=0,
                                 max=GUIDANCE_MAX, show_default=False)
    backend: Backend = backend_option()
