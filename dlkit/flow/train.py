"""`dlkit train-flow`: a rectified-flow image generator (optionally class-conditional, with
classifier-free guidance) on small images.

Top to bottom: uint8 images go through a tf.data pipeline that scales them to [-1, 1] inside the
graph and pairs each batch with noise (by optimal transport within each class when
conditional: `models.paired_with_noise`); the U-Net (`dlkit.flow.models.velocity_net`) learns
the velocity from noise to images in `FlowMatcher.train_step`, with AdamW at a rate that warms
up, then decays (cosine) over the epochs or `--max-minutes`, whichever ends first; after every
epoch a grid is drawn from fixed noise by the moving-average network, with
`dlkit.flow.sample.integrate` (the loop sample-flow runs) into the checkpoint folder. At the
end the model folder gets the moving-average velocity network (SavedModel, `model.keras`,
`model.tflite`), metadata with the sampling defaults (--steps, --solver, --guidance), the
per-epoch grids and their GIF, a GIF of one sampling trajectory (the fixed noise turning into
the final grid, step by step) and the loss curve.

Resumable like train-gan: the checkpoint holds the network, its EMA, the optimizer and the
history, and the grids live beside it. Ctrl-C or SIGTERM saves the network as trained so far,
keeps the checkpoint and exits 130.

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
from dlkit.core.console import Report, fmt, info
from dlkit.core.files import write_atomic
from dlkit.core.precision import as_float32
from dlkit.core.runner import Run, fingerprint
from dlkit.core.schedules import Schedule
from dlkit.data.pipelines import plan_steps, training_dataset
from dlkit.data.readers import load_image_dataset
from dlkit.flow import models
from dlkit.flow.config import FlowConfig
from dlkit.flow.sample import Sampling, guided, integrate, noise_for, to_uint8

GRID_SAMPLES = 100
GRIDS = "grids"  # the per-epoch grids' folder inside the checkpoint folder
WEIGHT_DECAY = 0.01
TRAJECTORY_MS = 150  # per frame of the trajectory GIF; the last one stays longer
FINAL_FRAME_MS = 2000


@dataclass(kw_only=True)
class FlowResult:
    """What a train-flow run reports (`--json` prints it)."""

    task: str
    dataset: str
    conditional: bool
    image_shape: list[int]
    parameters: int
    sampling: dict[str, Any]
    epochs: int
    epochs_completed: int
    stopped: str
    batch_size: int
    train_examples: int
    final_loss: float | None
    train_seconds: float
    images_per_second: float
    device: str
    final_grid: str | None
    trajectory: str | None
    artifacts: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)

    def report(self) -> Report:
        return Report(f"train-flow {self.dataset}", {
            "epochs": f"{self.epochs_completed}/{self.epochs} ({self.stopped})",
            "loss": self.final_loss, "training time (s)": self.train_seconds,
            "images/s": self.images_per_second, "device": self.device,
            "final grid": self.final_grid, "model folder": self.artifacts["model_dir"]},
            f"loss={fmt(self.final_loss)} grid={self.final_grid} "
            f"model={self.artifacts['model_dir']}", asdict(self))


def train_flow(config: FlowConfig) -> Report:
    """Train a flow model (or, with --resume, continue one) and save its velocity network."""
    with Run(config, inputs=[config.data_dir]) as run:
        data = load_image_dataset(config.dataset.value, config.data_dir)
        x, y = data.x_train[:config.limit], data.y_train[:config.limit]
        num_classes = len(data.class_names) if config.conditional else 0
        image_shape = tuple(int(d) for d in x.shape[1:])
        batch = min(config.batch_size, len(x))
        steps, per_call = plan_steps(len(x), batch)
        runtime = run.start(fingerprint(x, y), inputs=data.files, cpu_bfloat16=True)

        with run.scope():
            net = models.velocity_net(image_shape, num_classes, config.width)
            flow = models.FlowMatcher(net, num_classes, config.seed)
            flow.compile(optimizer=keras.optimizers.AdamW(config.learning_rate,
                                                          weight_decay=WEIGHT_DECAY),
                         jit_compile=runtime.jit_compile, steps_per_execution=per_call)
            flow.build()
            done = run.restore(flow)

        sampling = Sampling(config.steps, config.solver, config.guidance)
        fixed = FixedSamples(flow.ema, image_shape, num_classes, sampling, config.seed)
        grids = GridEachEpoch(fixed.draw, fixed.columns, run.checkpoint.folder / GRIDS)
        info(f"training a {'conditional ' if num_classes else ''}flow model (U-Net, "
             f"{net.count_params():,} parameters) on {data.name}: {len(x):,} images "
             f"{image_shape}, {config.epochs} epochs"
             + (f" or {config.max_minutes:g} minutes" if config.max_minutes else "")
             + (f" (resuming after {done})" if done else "") + f", batch {batch}, "
             f"{runtime.device}; sample grids each epoch in {grids.folder}")
        train_ds = models.paired_with_noise(
            training_dataset(x, y.astype(np.int32), batch, steps, config.seed, config.epochs,
                             done), config.seed + 2, done * steps, bool(num_classes))
        history = run.fit(flow, train_ds, steps=steps, callbacks=[grids],
                          schedule=Schedule(config.learning_rate, warmup_fraction=0.05,
                                            warmup_steps=200),
                          images=lambda: grids.picture, save_on_interrupt=True)

        shown = grids.saved(run.epochs_completed)
        metadata = {
            "dataset": data.name, "class_names": data.class_names,
            "conditional": bool(num_classes), "num_classes": len(data.class_names),
            "image_shape": list(image_shape), "input_shape": list(image_shape),
            "inputs": {"x": "x_t, images in [-1, 1] space (N, H, W, C) float32",
                       "t": "time (N,) float32: 0 is noise, 1 an image",
                       **({"label": f"int32 class index (N,); {num_classes} = no class "
                                    "(classifier-free guidance)"} if num_classes else {})},
            "output": "the velocity dx/dt (N, H, W, C) float32",
            "flow": {**sampling.as_dict(), "null_label": num_classes if num_classes else None,
                     "objective": "rectified flow: x_t = (1 - t) x0 + t x1, v = x1 - x0",
                     "pairing": ("minibatch optimal transport within each class"
                                 if num_classes else "none: independent noise"),
                     "noise": "standard normal float32 (N, H, W, C), NumPy "
                              "default_rng(seed), batch after batch",
                     "pixels": "x at t = 1, clipped to [-1, 1], (x + 1) * 127.5"},
            "preprocessing": {"color": "grayscale" if image_shape[-1] == 1 else "rgb",
                              **({"foreground": "light-on-dark"} if image_shape[-1] == 1
                                 else {})},
            "training": {"batch_size": batch, "learning_rate": config.learning_rate,
                         "weight_decay": WEIGHT_DECAY, "ema_decay": models.EMA_DECAY,
                         "label_dropout": models.LABEL_DROPOUT if num_classes else None,
                         "seed": config.seed, "width": config.width,
                         "parameters": net.count_params(), "max_minutes": config.max_minutes,
                         "train_examples": len(x)},
        }

        def write_plots(folder: Path) -> None:
            plot_dir = folder / "plots"
            for grid in shown:
                write_atomic(plot_dir / grid.name, grid.read_bytes())
            if shown:
                plots.write_gif(shown, plot_dir / "epochs.gif")
            frames = fixed.trajectory()
            plots.write_gif(frames, plot_dir / "trajectory.gif",
                            [TRAJECTORY_MS] * (len(frames) - 1) + [FINAL_FRAME_MS])
            if history.get("loss"):
                plots.training_curves({"loss": history["loss"]}, plot_dir / "loss_curves.png",
                                      f"train-flow {data.name}")

        saved = as_float32(flow.ema)  # what training computed in, saved in float32
        fixed.network = saved  # the trajectory GIF: drawn as sample-flow draws
        paths = run.save(saved, metadata, write_plots, weights=[flow])
        plot_dir = Path(paths["model_dir"]) / "plots"
        final = str(plot_dir / shown[-1].name) if shown else None
        trajectory = plot_dir / "trajectory.gif"
        return run.result(
            FlowResult, dataset=data.name, conditional=bool(num_classes),
            image_shape=list(image_shape), parameters=net.count_params(),
            sampling=sampling.as_dict(), batch_size=batch, train_examples=len(x),
            final_loss=(history.get("loss") or [None])[-1],
            images_per_second=run.per_second(batch), final_grid=final,
            trajectory=str(trajectory) if trajectory.is_file() else None).report()


class FixedSamples:
    """The grid every epoch shows: fixed noise (column k is class k when conditional) carried
    to images by `network` (a Keras model whose weights change as it trains)."""

    def __init__(self, network: keras.Model, image_shape: tuple[int, ...], num_classes: int,
                 sampling: Sampling, seed: int) -> None:
        self.network, self.sampling = network, sampling
        self.noise = noise_for(np.random.default_rng(seed + 1), GRID_SAMPLES, list(image_shape))
        self.labels = ((np.arange(GRID_SAMPLES) % num_classes).astype(np.int32)
                       if num_classes else None)
        self.columns = plots.grid_columns(GRID_SAMPLES, num_classes)
        self.velocity = guided(self._call, num_classes, sampling.guidance)

    def _call(self, x: np.ndarray, t: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        inputs = [x, t] if labels is None else [x, t, labels]
        return np.asarray(self.network(inputs, training=False).numpy(), np.float32)

    def draw(self, visit: Any = None) -> np.ndarray:
        """The grid's uint8 images, drawn by the network as it is now."""
        x = integrate(self.velocity, self.noise, self.labels, self.sampling.steps,
                      self.sampling.solver, visit)
        return to_uint8(x)

    def trajectory(self) -> list[np.ndarray]:
        """One tiled picture per ODE step, from the noise to the final grid."""
        frames: list[np.ndarray] = []
        self.draw(lambda x: frames.append(plots.tile(to_uint8(x), self.columns, scale=2)))
        return frames
