"""`dlkit train-gan`: a DCGAN (optionally class-conditional, AC-GAN style) on small images.

Top to bottom: uint8 images go through a tf.data pipeline that scales them to [-1, 1] inside the
graph; the GAN (`dlkit.gan.models.GAN`) alternates discriminator and generator updates in its own
`train_step` at a constant Adam rate (SNGAN's recipe); after every epoch a grid is drawn from a
fixed noise batch into the checkpoint folder; at the end the model folder gets the moving-average
generator (0-255 pixel output; SavedModel + .keras), metadata, the per-epoch grids, an animated
GIF of them and the loss curves.

Resumable: the checkpoint holds both networks, the EMA generator, both optimizers and the history,
and the per-epoch grids live beside it, so a run resumed with `--resume` ends with the same curves
and GIF as an uninterrupted one. Ctrl-C or SIGTERM saves the generator as trained so far, keeps
the checkpoint and exits 130.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit.core import plots
from dlkit.core.callbacks import GridEachEpoch
from dlkit.core.console import Report, info
from dlkit.core.files import write_atomic
from dlkit.core.runner import Run, fingerprint
from dlkit.data.pipelines import training_dataset
from dlkit.data.readers import load_image_dataset
from dlkit.gan import models
from dlkit.gan.config import GanConfig
from dlkit.gan.sample import to_uint8

GRID_SAMPLES = 100
GRIDS = "grids"  # the per-epoch grids' folder inside the checkpoint folder
ADAM_BETAS = (0.0, 0.9)  # SNGAN's Adam for hinge losses: no first-moment momentum


@dataclass(kw_only=True)
class GanResult:
    """What a train-gan run reports (`--json` prints it)."""

    task: str
    dataset: str
    conditional: bool
    latent_dim: int
    image_shape: list[int]
    epochs: int
    epochs_completed: int
    stopped: str
    batch_size: int
    train_examples: int
    final_d_loss: float | None
    final_g_loss: float | None
    train_seconds: float
    images_per_second: float
    device: str
    final_grid: str | None
    artifacts: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)

    def report(self) -> Report:
        return Report(f"train-gan {self.dataset}", {
            "epochs": f"{self.epochs_completed}/{self.epochs} ({self.stopped})",
            "d loss": self.final_d_loss, "g loss": self.final_g_loss,
            "training time (s)": self.train_seconds, "device": self.device,
            "final grid": self.final_grid, "model folder": self.artifacts["model_dir"]},
            f"grid={self.final_grid} model={self.artifacts['model_dir']}", asdict(self))


def train_gan(config: GanConfig) -> Report:
    """Train a GAN (or, with --resume, continue one) and save its generator."""
    with Run(config, inputs=[config.data_dir]) as run:
        data = load_image_dataset(config.dataset.value, config.data_dir)
        x, y = data.x_train[:config.limit], data.y_train[:config.limit]
        num_classes = len(data.class_names) if config.conditional else 0
        image_shape = tuple(int(d) for d in x.shape[1:])
        batch = config.batch_size
        steps = max(1, len(x) // batch)  # full batches only
        runtime = run.start(fingerprint(x, y), inputs=data.files, mixed_precision=False)

        with run.scope():
            gen = models.generator(image_shape, config.latent_dim, num_classes, config.width)
            disc = models.discriminator(image_shape, num_classes, config.width * 2)
            gan = models.GAN(gen, disc, config.latent_dim, num_classes, config.seed)
            gan.compile(_adam(config.learning_rate), _adam(config.learning_rate),
                        jit_compile=runtime.jit_compile)
            gan.build()
            done = run.restore(gan, gan.build_optimizers)

        fixed, columns = _fixed_inputs(config, num_classes)
        grids = GridEachEpoch(lambda: to_uint8(gan.ema_generator(fixed, training=False)),
                              columns, run.checkpoint.folder / GRIDS)
        info(f"training a {'conditional ' if num_classes else ''}GAN (generator "
             f"{gen.count_params():,}, discriminator {disc.count_params():,} parameters) on "
             f"{data.name}: {len(x):,} images {image_shape}, {config.epochs} epochs"
             f"{f' (resuming after {done})' if done else ''}, batch {batch}, "
             f"{runtime.device}; sample grids each epoch in {grids.folder}")
        train_ds = training_dataset(x, y.astype(np.int32), batch, steps, config.seed,
                                    config.epochs, done)
        train_ds = train_ds.map(lambda img, label: (img / 127.5 - 1.0, label))
        history = run.fit(gan, train_ds, steps=steps, callbacks=[grids],
                          images=lambda: grids.picture, save_on_interrupt=True)

        shown = grids.saved(run.epochs_completed)
        metadata = {
            "dataset": data.name, "class_names": data.class_names,
            "conditional": bool(num_classes), "num_classes": len(data.class_names),
            "latent_dim": config.latent_dim, "image_shape": list(image_shape),
            "input_shape": list(image_shape),
            "inputs": ({"noise": [config.latent_dim], "label": "int32 class index"}
                       if num_classes else {"noise": [config.latent_dim]}),
            "noise": "standard normal, float32",
            "output": "raw pixels 0-255 (float32), RGB channel order for colour images",
            "preprocessing": {"color": "grayscale" if image_shape[-1] == 1 else "rgb",
                              **({"foreground": "light-on-dark"} if image_shape[-1] == 1
                                 else {})},
            "training": {"batch_size": batch, "learning_rate": config.learning_rate,
                         "seed": config.seed, "width": config.width,
                         "loss": models.LOSS, "adam_betas": list(ADAM_BETAS),
                         "max_minutes": config.max_minutes, "train_examples": len(x)},
        }

        def write_plots(folder: Path) -> None:
            plot_dir = folder / "plots"
            for grid in shown:
                write_atomic(plot_dir / grid.name, grid.read_bytes())
            if shown:
                plots.write_gif(shown, plot_dir / "epochs.gif")
            losses = {k: v for k, v in history.items() if k in ("d_loss", "g_loss")}
            if losses:
                plots.training_curves(losses, plot_dir / "loss_curves.png",
                                      f"train-gan {data.name}")

        paths = run.save(models.pixel_generator(gan.ema_generator), metadata, write_plots,
                         weights=[gan])
        final = str(Path(paths["model_dir"]) / "plots" / shown[-1].name) if shown else None
        return run.result(
            GanResult, dataset=data.name, conditional=bool(num_classes),
            latent_dim=config.latent_dim, image_shape=list(image_shape), batch_size=batch,
            train_examples=len(x), final_d_loss=_last(history, "d_loss"),
            final_g_loss=_last(history, "g_loss"), images_per_second=run.per_second(batch),
            final_grid=final).report()


def _adam(learning_rate: float) -> keras.Optimizer:
    """Adam with `ADAM_BETAS`, as SNGAN trains with hinge losses."""
    return keras.optimizers.Adam(learning_rate, beta_1=ADAM_BETAS[0], beta_2=ADAM_BETAS[1])


def _last(history: dict[str, list[float]], key: str) -> float | None:
    return history[key][-1] if history.get(key) else None


def _fixed_inputs(config: GanConfig, num_classes: int) -> tuple[Any, int]:
    """The fixed noise batch for the per-epoch grids (column k is class k when conditional)."""
    rng = np.random.default_rng(config.seed + 1)
    noise = rng.standard_normal((GRID_SAMPLES, config.latent_dim)).astype(np.float32)
    if not num_classes:
        return noise, plots.grid_columns(GRID_SAMPLES, 0)
    labels = (np.arange(GRID_SAMPLES) % num_classes).astype(np.int32)
    return [noise, labels], plots.grid_columns(GRID_SAMPLES, num_classes)
