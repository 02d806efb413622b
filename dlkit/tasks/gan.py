"""`dlkit train-gan`: a DCGAN (optionally class-conditional, AC-GAN style) on small images.

The flow: uint8 images go through a tf.data pipeline that scales them to [-1, 1] inside the graph;
a Keras 3 model with a custom `train_step` alternates discriminator and generator updates (both
from one generator forward pass, two gradient tapes); callbacks print the per-epoch losses, draw a
sample grid from a fixed noise batch into a progress folder each epoch, stop on a time budget and
stop on NaN losses, keeping the last good generator. The generator that is drawn and saved is an
exponential moving average of the trained one's weights (smoother, sharper samples for the same
training time). At the end the model folder gets that generator (0-255 pixel output; SavedModel +
.keras), metadata, the per-epoch grids, an animated GIF of them and the loss curves.

Resumable: every epoch's end writes a checkpoint beside the output (`dlkit.checkpoint`: both
networks, the EMA generator, both optimizers, the history) and the per-epoch grids live in that
checkpoint folder, so a run resumed with `--resume` ends with the same curves and GIF as an
uninterrupted one. Ctrl-C or SIGTERM keeps the last good generator in the output folder and
exits 130, saying how to resume.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit import artifacts, plots
from dlkit import runtime as rt
from dlkit.checkpoint import STATE_FILE, Checkpoint, ReseedEachEpoch, fit_resumable
from dlkit.console import info
from dlkit.errors import EXIT_INTERRUPTED, DlkitError, UsageError, require_choice
from dlkit.tasks.gan_eval import grid_columns, save_grid, to_uint8
from dlkit.training import EpochTimer, Progress, TrainConfig

DATASETS = ("mnist", "fashion-mnist", "digits", "cifar10")
GRID_SAMPLES = 100
GRIDS = "grids"  # the per-epoch grids' folder inside the checkpoint folder
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

    def build(self, input_shape: Any = None) -> None:
        """Nothing to create (the networks are built functional models); marks the model built
        so that its weights can be saved and loaded before it is ever called."""
        self.built = True

    def build_optimizers(self) -> None:
        """Create both optimizers' variables (before loading a checkpoint into them)."""
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

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
    """Each epoch: a grid from fixed noise, a snapshot of good weights; stops on NaN or time.

    `history` is the run's (the checkpoint callback records each epoch's losses in it);
    `grids` (the grid PNGs so far, in `folder`), `good_weights` and `good_epochs` start from
    a resumed checkpoint's (see `resume`)."""

    def __init__(self, gan: GAN, fixed: Any, columns: int, folder: Path,
                 deadline: float | None, history: dict[str, list[float]]) -> None:
        super().__init__()
        self.gan, self.fixed, self.columns, self.folder = gan, fixed, columns, folder
        self.deadline, self.history = deadline, history
        self.good_weights: list[np.ndarray] | None = None
        self.good_epochs = 0
        self.stopped = "completed"
        self.grids: list[Path] = []

    def resume(self, epochs_done: int) -> None:
        """Continue after `epochs_done` checkpointed epochs: their grids are in `folder`, and
        the EMA generator restored from the checkpoint is their last good one."""
        self.good_epochs = epochs_done
        self.good_weights = [np.array(w) for w in self.gan.ema_generator.get_weights()]
        self.grids = [p for p in (self.folder / _grid_name(e) for e in range(epochs_done))
                      if p.is_file()]

    def good_history(self) -> dict[str, list[float]]:
        """The losses of the good epochs (not those of an epoch that diverged)."""
        return {k: v[:self.good_epochs] for k, v in self.history.items()}

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
        images = to_uint8(self.gan.ema_generator(self.fixed, training=False))
        path = self.folder / _grid_name(epoch)
        save_grid(images, path, self.columns)
        if path not in self.grids:
            self.grids.append(path)
        self.good_weights = weights
        self.good_epochs = epoch + 1


def _grid_name(epoch: int) -> str:
    return f"epoch_{epoch + 1:03d}.png"


def run(config: GanConfig) -> GanResult:
    """Train a GAN (or, with --resume, continue one) and save its generator."""
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
    checkpoint = Checkpoint(config.output, _settings(config, data.name, len(x)),
                            writer=runtime.chief)

    from dlkit.nets import gan as nets

    with runtime.strategy.scope():
        gen = nets.generator(image_shape, config.latent_dim, num_classes, config.width)
        disc = nets.discriminator(image_shape, num_classes, config.width * 2)
        gan = GAN(gen, disc, config.latent_dim, num_classes, config.seed)
        gan.compile(keras.optimizers.Adam(config.learning_rate, beta_1=0.5),
                    keras.optimizers.Adam(config.learning_rate, beta_1=0.5),
                    jit_compile=runtime.jit_compile)
        gan.build()
        if not config.resume:
            _start_over(checkpoint)
        done, history, timer = checkpoint.begin(gan, config.resume, gan.build_optimizers)

    progress_dir = checkpoint.folder / GRIDS
    progress_dir.mkdir(parents=True, exist_ok=True)
    fixed, columns = _fixed_inputs(config, num_classes)
    deadline = (time.monotonic() + config.max_minutes * 60) if config.max_minutes else None
    watch = Watch(gan, fixed, columns, progress_dir, deadline, history)
    if done:
        watch.resume(done)
    info(f"training a {'conditional ' if num_classes else ''}GAN (generator "
         f"{gen.count_params():,}, discriminator {disc.count_params():,} parameters) on "
         f"{data.name}: {len(x):,} images {image_shape}, {config.epochs} epochs"
         f"{f' (resuming after {done})' if done else ''}, batch {config.batch_size}, "
         f"{runtime.device}; sample grids each epoch in {progress_dir}")
    try:
        interrupted = _fit(gan, _dataset(x, y, config, steps, done), checkpoint, config, steps,
                           done, timer, watch)
        return _finish(config, data.name, data.class_names, image_shape, num_classes, gen,
                       watch, timer, runtime, len(x), checkpoint, interrupted)
    finally:
        if not (checkpoint.folder / STATE_FILE).is_file():
            checkpoint.remove()  # no epoch was checkpointed: nothing to resume, no grids to keep


def _settings(config: GanConfig, dataset: str, examples: int) -> dict[str, Any]:
    """What a checkpoint must match to be resumed (`--max-minutes` is a budget per session)."""
    return {"task": "train-gan", "dataset": dataset, "conditional": config.conditional,
            "latent_dim": config.latent_dim, "width": config.width, "epochs": config.epochs,
            "batch_size": config.batch_size, "learning_rate": config.learning_rate,
            "seed": config.seed, "train_examples": examples}


def _start_over(checkpoint: Checkpoint) -> None:
    """A new run removes an old checkpoint of this output (its grids would mix into this
    run's)."""
    if checkpoint.folder.exists():
        info(f"starting over: removing the old checkpoint {checkpoint.folder} "
             "(use --resume to continue a run)")
        checkpoint.remove()


def _load(config: GanConfig) -> Any:
    from dlkit.data.readers import load_cifar10, load_mnist_family

    if config.dataset == "cifar10":
        return load_cifar10(config.data_dir)
    return load_mnist_family(config.dataset, config.data_dir)


def _dataset(x: np.ndarray, y: np.ndarray, config: GanConfig, steps: int, done: int) -> Any:
    """uint8 images -> `steps` batches per epoch for epochs `done`..`epochs - 1`, scaled to
    [-1, 1] inside the graph; each epoch's order is keyed by (seed, epoch), so a resumed run
    sees the batches an uninterrupted one saw."""
    import tensorflow as tf

    from dlkit.data.pipelines import training_dataset

    ds = training_dataset(x, y.astype(np.int32), config.batch_size, steps, config.seed,
                          config.epochs, done)
    return ds.map(lambda img, label: (img / 127.5 - 1.0, label),
                  num_parallel_calls=tf.data.AUTOTUNE)


def _fixed_inputs(config: GanConfig, num_classes: int) -> tuple[Any, int]:
    """The fixed noise batch for the per-epoch grids (column k is class k when conditional)."""
    rng = np.random.default_rng(config.seed + 1)
    noise = rng.standard_normal((GRID_SAMPLES, config.latent_dim)).astype(np.float32)
    if not num_classes:
        return noise, grid_columns(GRID_SAMPLES, 0)
    labels = (np.arange(GRID_SAMPLES) % num_classes).astype(np.int32)
    return [noise, labels], grid_columns(GRID_SAMPLES, num_classes)


def _fit(gan: GAN, ds: Any, checkpoint: Checkpoint, config: GanConfig, steps: int, done: int,
         timer: EpochTimer, watch: Watch) -> bool:
    """Train from epoch `done`, checkpointing each epoch; True when interrupted by Ctrl-C or
    SIGTERM (what was learned is still saved)."""
    callbacks = [ReseedEachEpoch(config.seed), timer, watch, Progress(config.epochs, steps)]
    try:
        fit_resumable(gan, ds, checkpoint, config.epochs, done, watch.history, timer.seconds,
                      callbacks, steps_per_epoch=steps)
    except DlkitError as exc:
        if exc.code != EXIT_INTERRUPTED:
            raise
        return True
    return False


def _finish(config: GanConfig, dataset: str, class_names: list[str],
            image_shape: tuple[int, int, int], num_classes: int, gen: keras.Model, watch: Watch,
            timer: EpochTimer, runtime: rt.Runtime, examples: int, checkpoint: Checkpoint,
            interrupted: bool) -> GanResult:
    """Save the last good generator with its plots, then report (or raise the stop reason).
    The checkpoint stays only after an interrupt; a finished or diverged run removes it."""
    from dlkit.nets.gan import pixel_generator

    if watch.stopped == "diverged":
        checkpoint.remove()  # resuming would diverge again: the advice is another rate
    if watch.good_weights is None:
        if interrupted:
            raise checkpoint.interrupted(config.epochs)
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
        raise checkpoint.interrupted(config.epochs, f"kept the generator from epoch "
                                     f"{watch.good_epochs} in {paths['model_dir']}")
    checkpoint.remove()
    if stopped == "diverged":
        raise DlkitError(f"training diverged in epoch {watch.good_epochs + 1} (NaN losses); kept "
                         f"the generator from epoch {watch.good_epochs} in {paths['model_dir']}. "
                         "Lower --learning-rate and retry")
    history = watch.good_history()
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
        "history": watch.good_history(),
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
    losses = {k: v for k, v in watch.good_history().items() if k in ("d_loss", "g_loss")}
    plots.training_curves(losses, plot_dir / "loss_curves.png", f"train-gan {dataset}")


def _gif(frames: list[Path], path: Path) -> None:
    from PIL import Image

    images = [Image.open(p).convert("P") for p in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=400, loop=0)
