"""`dlkit train-gan`: a DCGAN (optionally class-conditional, AC-GAN style) on small images.

The flow: uint8 images go through a tf.data pipeline that scales them to [-1, 1] inside the graph;
a Keras 3 model with a custom `train_step` alternates discriminator and generator updates (both
from one generator forward pass, two gradient tapes); callbacks print the per-epoch losses, draw a
sample grid from a fixed noise batch into a progress folder each epoch, stop on a time budget and
stop on NaN losses, keeping the last good generator. The generator that is drawn and saved is an
exponential moving average of the trained one's weights (smoother, sharper samples for the same
training time). At the end the model folder gets that generator (0-255 pixel output; SavedModel +
.keras), metadata, the per-epoch grids, an animated GIF of them and the loss curves.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit import artifacts, plots
from dlkit import runtime as rt
from dlkit.console import info
from dlkit.errors import DlkitError, UsageError, require_choice
from dlkit.tasks.gan_eval import grid_columns, save_grid, to_uint8
from dlkit.training import EpochTimer, Progress, TrainConfig

DATASETS = ("mnist", "fashion-mnist", "digits", "cifar10")
GRID_SAMPLES = 100
EMA_DECAY = 0.999


@dataclass
class GanConfig(TrainConfig):
    """train-gan's options (the common ones plus the GAN's own)."""

    dataset: str = "mnist"
    latent_dim: int = 64
    conditional: bool = False
    width: int = 32

    def validate(self) -> None:
        super().validate()
        require_choice("--dataset", self.dataset, DATASETS)
        if self.latent_dim < 1:
            raise UsageError(f"--latent-dim must be at least 1 (got {self.latent_dim})")
        if not 4 <= self.width <= 512:
            raise UsageError(f"--width must be between 4 and 512 (got {self.width})")


@dataclass
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
    final_d_loss: float
    final_g_loss: float
    train_seconds: float
    images_per_second: float
    device: str
    final_grid: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class GAN(keras.Model):
    """Generator and discriminator trained together by a custom `train_step`.

    Non-saturating logistic losses with one-sided label smoothing; conditional models add the
    AC-GAN auxiliary class loss to both players.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, latent_dim: int,
                 num_classes: int, seed: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        # An exponential moving average of the generator's weights: smoother, sharper samples.
        self.ema_generator = keras.models.clone_model(generator)
        self.ema_generator.set_weights(generator.get_weights())
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.noise_seed = keras.random.SeedGenerator(seed)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.extra_trackers = ([keras.metrics.Mean(name="d_class_acc")] if num_classes else [])

    def compile(self, d_optimizer: keras.Optimizer, g_optimizer: keras.Optimizer,
                **kwargs: Any) -> None:
        super().compile(**kwargs)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.d_loss_tracker, self.g_loss_tracker, *self.extra_trackers]

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.generator(inputs, training=training)

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        real, labels = data
        batch = tf.shape(real)[0]
        noise = keras.random.normal((batch, self.latent_dim), seed=self.noise_seed)
        g_inputs = [noise, labels] if self.num_classes else noise
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as d_tape, tf.GradientTape() as g_tape:
            fake = self.generator(g_inputs, training=True)
            real_out = self.discriminator(real, training=True)
            fake_out = self.discriminator(fake, training=True)
            d_loss, g_loss, class_acc = self._gan_losses(real_out, fake_out, labels)
            d_scaled, g_scaled = d_loss / replicas, g_loss / replicas
        d_vars = self.discriminator.trainable_weights
        g_vars = self.generator.trainable_weights
        self.d_optimizer.apply(d_tape.gradient(d_scaled, d_vars), d_vars)
        self.g_optimizer.apply(g_tape.gradient(g_scaled, g_vars), g_vars)
        self._update_ema()
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        if self.num_classes:
            self.extra_trackers[0].update_state(class_acc)
        return {m.name: m.result() for m in self.metrics}

    def _update_ema(self) -> None:
        """EMA of every generator weight (batch-norm statistics too), warming up from 0.9."""
        from keras import ops

        step = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(EMA_DECAY, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.ema_generator.weights, self.generator.weights,
                                   strict=True):
            average.assign(decay * average + (1.0 - decay) * weight)

    def _gan_losses(self, real_out: Any, fake_out: Any, labels: Any) -> tuple[Any, Any, Any]:
        from keras import ops

        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        real_logit = real_out[0] if self.num_classes else real_out
        fake_logit = fake_out[0] if self.num_classes else fake_out
        d_loss = (bce(ops.full_like(real_logit, 0.9), real_logit)
                  + bce(ops.zeros_like(fake_logit), fake_logit))
        g_loss = bce(ops.ones_like(fake_logit), fake_logit)
        if not self.num_classes:
            return d_loss, g_loss, 0.0
        cce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        real_class, fake_class = real_out[1], fake_out[1]
        d_loss = d_loss + cce(labels, real_class) + cce(labels, fake_class)
        g_loss = g_loss + cce(labels, fake_class)
        hits = ops.cast(ops.equal(ops.argmax(real_class, axis=-1),
                                  ops.cast(labels, "int64")), "float32")
        return d_loss, g_loss, ops.mean(hits)


class Watch(keras.callbacks.Callback):
    """Each epoch: a grid from fixed noise, a snapshot of good weights; stops on NaN or time."""

    def __init__(self, gan: GAN, fixed: Any, columns: int, folder: Path,
                 deadline: float | None) -> None:
        super().__init__()
        self.gan, self.fixed, self.columns, self.folder = gan, fixed, columns, folder
        self.deadline = deadline
        self.good_weights: list[np.ndarray] | None = None
        self.good_epochs = 0
        self.stopped = "completed"
        self.grids: list[Path] = []
        self.history: dict[str, list[float]] = {}

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if not all(math.isfinite(float(logs[k])) for k in ("d_loss", "g_loss") if k in logs):
            self.stopped = "diverged"
            self.model.stop_training = True
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self.stopped = "time limit"
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        weights = [np.array(w) for w in self.gan.ema_generator.get_weights()]
        if self.stopped == "diverged" or not all(np.isfinite(w).all() for w in weights):
            self.stopped = "diverged"
            self.model.stop_training = True
            return
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        images = to_uint8(self.gan.ema_generator(self.fixed, training=False))
        path = self.folder / f"epoch_{epoch + 1:03d}.png"
        save_grid(images, path, self.columns)
        self.grids.append(path)
        self.good_weights = weights
        self.good_epochs = epoch + 1


def run(config: GanConfig) -> GanResult:
    """Train a GAN and save its generator; returns a `GanResult`."""
    config.validate()
    config.output = artifacts.check_output(config.output)
    runtime = rt.start(config.seed, config.strategy, config.deterministic, mixed_precision=False)
    data = _load(config)
    x, y = data.x_train, data.y_train
    if config.limit is not None:
        x, y = x[:config.limit], y[:config.limit]
    num_classes = len(data.class_names) if config.conditional else 0
    image_shape = tuple(int(d) for d in x.shape[1:])
    steps = max(1, len(x) // config.batch_size)  # full batches only (see _dataset)

    from dlkit.nets import gan as nets

    with runtime.strategy.scope():
        gen = nets.generator(image_shape, config.latent_dim, num_classes, config.width)
        disc = nets.discriminator(image_shape, num_classes, config.width * 2)
        gan = GAN(gen, disc, config.latent_dim, num_classes, config.seed)
        gan.compile(keras.optimizers.Adam(config.learning_rate, beta_1=0.5),
                    keras.optimizers.Adam(config.learning_rate, beta_1=0.5),
                    jit_compile=runtime.jit_compile)

    progress_dir = Path(tempfile.mkdtemp(prefix=f".{config.output.name}.progress-",
                                         dir=config.output.parent))
    fixed, columns = _fixed_inputs(config, num_classes)
    deadline = (time.monotonic() + config.max_minutes * 60) if config.max_minutes else None
    watch = Watch(gan, fixed, columns, progress_dir, deadline)
    info(f"training a {'conditional ' if num_classes else ''}GAN (generator "
         f"{gen.count_params():,}, discriminator {disc.count_params():,} parameters) on "
         f"{data.name}: {len(x):,} images {image_shape}, {config.epochs} epochs, batch "
         f"{config.batch_size}, {runtime.device}; sample grids each epoch in {progress_dir}")
    timer = EpochTimer()
    try:
        interrupted = _fit(gan, _dataset(x, y, config), config, steps, [timer, watch])
        return _finish(config, data.name, data.class_names, image_shape, num_classes, gen,
                       watch, timer, runtime, len(x), interrupted)
    finally:
        shutil.rmtree(progress_dir, ignore_errors=True)


def _load(config: GanConfig) -> Any:
    from dlkit.data.readers import load_cifar10, load_mnist_family

    if config.dataset == "cifar10":
        return load_cifar10(config.data_dir)
    return load_mnist_family(config.dataset, config.data_dir)


def _dataset(x: np.ndarray, y: np.ndarray, config: GanConfig) -> Any:
    """uint8 images -> cached, shuffled batches scaled to [-1, 1] inside the graph."""
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))).cache()
    ds = ds.shuffle(min(len(x), 60_000), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size, drop_remainder=len(x) >= config.batch_size)
    ds = ds.map(lambda img, label: (tf.cast(img, tf.float32) / 127.5 - 1.0, label),
                num_parallel_calls=autotune)
    return ds.prefetch(autotune)


def _fixed_inputs(config: GanConfig, num_classes: int) -> tuple[Any, int]:
    """The fixed noise batch for the per-epoch grids (column k is class k when conditional)."""
    rng = np.random.default_rng(config.seed + 1)
    noise = rng.standard_normal((GRID_SAMPLES, config.latent_dim)).astype(np.float32)
    if not num_classes:
        return noise, grid_columns(GRID_SAMPLES, 0)
    labels = (np.arange(GRID_SAMPLES) % num_classes).astype(np.int32)
    return [noise, labels], grid_columns(GRID_SAMPLES, num_classes)


def _fit(gan: GAN, ds: Any, config: GanConfig, steps: int, callbacks: list[Any]) -> bool:
    """Run model.fit; True when interrupted by Ctrl-C (what was learned is still saved)."""
    try:
        gan.fit(ds, epochs=config.epochs, verbose=0, shuffle=False,
                callbacks=[*callbacks, Progress(config.epochs, steps)])
    except KeyboardInterrupt:
        return True
    return False


def _finish(config: GanConfig, dataset: str, class_names: list[str],
            image_shape: tuple[int, int, int], num_classes: int, gen: keras.Model, watch: Watch,
            timer: EpochTimer, runtime: rt.Runtime, examples: int,
            interrupted: bool) -> GanResult:
    """Save the last good generator with its plots, then report (or raise the stop reason)."""
    from dlkit.nets.gan import pixel_generator

    if watch.good_weights is None:
        if interrupted:
            raise KeyboardInterrupt
        raise DlkitError("training diverged in the first epoch (NaN losses); nothing was saved. "
                         "Lower --learning-rate (for example 1e-4) and retry")
    gen.set_weights(watch.good_weights)
    seconds = float(sum(timer.seconds))
    stopped = "interrupted" if interrupted else watch.stopped
    metadata = _metadata(config, dataset, class_names, image_shape, num_classes, watch,
                         timer, runtime, examples, stopped)

    def write_plots(folder: Path) -> None:
        _write_plots(folder / artifacts.PLOTS, watch, dataset)

    paths = artifacts.save_model_folder(config.output, pixel_generator(gen), metadata,
                                        write_plots)
    final_grid = str(Path(paths["model_dir"]) / artifacts.PLOTS / watch.grids[-1].name)
    if interrupted:
        info(f"interrupted: kept the generator from epoch {watch.good_epochs} in "
             f"{paths['model_dir']}")
        raise KeyboardInterrupt
    if stopped == "diverged":
        raise DlkitError(f"training diverged in epoch {watch.good_epochs + 1} (NaN losses); kept "
                         f"the generator from epoch {watch.good_epochs} in {paths['model_dir']}. "
                         "Lower --learning-rate and retry")
    history = watch.history
    return GanResult(
        "train-gan", dataset, bool(num_classes), config.latent_dim, list(image_shape),
        config.epochs, watch.good_epochs, stopped, config.batch_size, examples,
        history["d_loss"][-1], history["g_loss"][-1], seconds,
        examples * watch.good_epochs / seconds if seconds else 0.0, runtime.device,
        final_grid, paths, history)


def _metadata(config: GanConfig, dataset: str, class_names: list[str],
              image_shape: tuple[int, int, int], num_classes: int, watch: Watch,
              timer: EpochTimer, runtime: rt.Runtime, examples: int,
              stopped: str) -> dict[str, Any]:
    return {
        "task": "train-gan", "dataset": dataset, "class_names": class_names,
        "conditional": bool(num_classes), "num_classes": len(class_names),
        "latent_dim": config.latent_dim, "image_shape": list(image_shape),
        "input_shape": list(image_shape),
        "inputs": ({"noise": [config.latent_dim], "label": "int32 class index"}
                   if num_classes else {"noise": [config.latent_dim]}),
        "noise": "standard normal, float32",
        "output": "raw pixels 0-255 (float32), RGB channel order for colour images",
        "preprocessing": {"color": "grayscale" if image_shape[-1] == 1 else "rgb",
                          **({"foreground": "light-on-dark"} if image_shape[-1] == 1 else {})},
        "history": watch.history,
        "training": {"epochs": config.epochs, "epochs_completed": watch.good_epochs,
                     "stopped": stopped, "batch_size": config.batch_size,
                     "learning_rate": config.learning_rate, "seed": config.seed,
                     "width": config.width, "max_minutes": config.max_minutes,
                     "train_examples": examples, "seconds": float(sum(timer.seconds)),
                     "epoch_seconds": timer.seconds, "device": runtime.device},
    }


def _write_plots(plot_dir: Path, watch: Watch, dataset: str) -> None:
    """The per-epoch grids, an animated GIF of them and the loss curves."""
    for grid in watch.grids:
        shutil.copy2(grid, plot_dir / grid.name)
    _gif(watch.grids, plot_dir / "epochs.gif")
    losses = {k: v for k, v in watch.history.items() if k in ("d_loss", "g_loss")}
    plots.training_curves(losses, plot_dir / "loss_curves.png", f"train-gan {dataset}")


def _gif(frames: list[Path], path: Path) -> None:
    from PIL import Image

    images = [Image.open(p).convert("P") for p in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=400, loop=0)
