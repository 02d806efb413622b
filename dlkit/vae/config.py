"""The options of `train-vae` and `sample-vae` (see dlkit.core.config)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from dlkit.core.config import Backend, Config, TrainConfig, backend_option, common, opt
from dlkit.core.errors import UsageError
from dlkit.data.registry import GreyDataset

GRID_MAX = 10_000  # images in one grid PNG


class VaeArch(enum.StrEnum):
    """conv: the convolutional VAE; dense: the fully-connected baseline."""

    conv = "conv"
    dense = "dense"


@dataclass(kw_only=True)
class VaeConfig(TrainConfig):
    """Train a variational autoencoder; report reconstruction, KL and their sum (nats/image).

    Example: dlkit train-vae --dataset fashion-mnist --latent-dim 2 --epochs 10
    """

    COMMAND = "train-vae"

    dataset: GreyDataset = opt(GreyDataset.mnist, "mnist, fashion-mnist or digits (bundled, "
                              "offline).")
    arch: VaeArch = opt(VaeArch.conv, "conv (convolutional) or dense (the fully-connected "
                        "baseline).")
    latent_dim: int = opt(16, "Size of the latent space (2 adds the latent manifold and "
                          "scatter plots).", min=1, max=512)
    data_dir: Path | None = common("data_dir", None)
    limit: int | None = common("limit", None)
    epochs: int = common("epochs", 10)
    learning_rate: float = common("learning_rate", 2e-3)
    output: Path = common("output", Path("models/vae"))


@dataclass(kw_only=True)
class SampleVaeConfig(Config):
    """Decode random latent vectors into new images; write them as one grid PNG.

    Example: dlkit sample-vae --model models/vae --count 64 --seed 1 --out grid.png
    """

    COMMAND = "sample-vae"

    model: Path = opt(Path("models/vae"), "Model folder written by train-vae.", flags=("-m",))
    count: int = opt(64, "Number of images.", flags=("-n",), min=1, max=GRID_MAX)
    out: Path = opt(Path("vae_samples.png"), "Grid PNG to write.")
    columns: int | None = opt(None, "Images per row (default: square).", min=1, max=GRID_MAX)
    seed: int = common("seed", 0, help="Seed for the latent vectors: the same seed gives the "
                       "same images.")
    backend: Backend = backend_option()

    def check(self) -> None:
        if self.out.suffix.lower() != ".png":
            raise UsageError(f"--out {self.out} must end in .png")
