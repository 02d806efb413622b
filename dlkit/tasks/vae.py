"""`dlkit train-vae` and `dlkit sample-vae`: a variational autoencoder for 28x28 images.

Trains `dlkit.nets.vae.VAE` (convolutional by default) on MNIST, Fashion-MNIST or the bundled
digits with a tf.data pipeline, reports the reconstruction term, the KL term and the negative ELBO
(their sum) in nats per image on the test set, draws reconstructions, prior samples and, for a 2-D
latent space, the latent manifold and the test set's latent scatter. The learning rate warms up
and then decays to zero along a cosine over the epochs or, with --max-minutes, over the time
budget, whichever ends first. Every epoch ends with a resumable checkpoint (dlkit.checkpoint):
Ctrl-C/SIGTERM exit 130 and `--resume` continues the run exactly.

The model folder's `model.keras` and `saved_model/` hold the *decoder* as a sampler (latent vectors
in, 0-255 images out): that is what generating needs, it is a plain functional model any TF tool
loads without dlkit's classes, and `sample-vae` needs nothing else. The encoder is saved beside it
as `encoder.keras` for users who want latent codes of their own images.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.errors import UsageError, require_choice
from dlkit.training import TrainConfig

DATASETS = ("mnist", "fashion-mnist", "digits")
ARCHS = ("conv", "dense")
ENCODER_FILE = "encoder.keras"
WARMUP_STEPS = 100  # learning-rate warm-up (at most a tenth of the run)


@dataclass
class VaeConfig(TrainConfig):
    dataset: str = "mnist"
    arch: str = "conv"
    latent_dim: int = 16
    learning_rate: float = 2e-3  # with the cosine schedule (measured on Fashion-MNIST)

    def validate(self) -> None:
        super().validate()
        require_choice("--dataset", self.dataset, DATASETS)
        require_choice("--arch", self.arch, ARCHS)
        if not 1 <= self.latent_dim <= 512:
            raise UsageError(f"--latent-dim must be between 1 and 512 (got {self.latent_dim})")


@dataclass
class VaeResult:
    """What a training run reports (`--json` prints it); losses in nats per image."""

    task: str
    dataset: str
    arch: str
    latent_dim: int
    epochs: int
    epochs_completed: int
    train_examples: int
    test_examples: int
    test_loss: float  # negative ELBO
    test_reconstruction: float
    test_kl: float
    train_seconds: float
    images_per_second: float
    device: str
    artifacts: dict[str, Any]
    history: dict[str, list[float]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _train_dataset(data: Any, batch: int, steps: int, config: VaeConfig, done: int) -> Any:
    """Epochs `done`..`epochs - 1` of training batches in [0, 1]; each epoch's order is keyed by
    (seed, epoch), so a resumed run sees what an uninterrupted one saw."""
    from dlkit.data.pipelines import training_dataset

    ds = training_dataset(data.x_train, data.y_train, batch, steps, config.seed, config.epochs,
                          done)
    return ds.map(lambda images, _labels: images / 255.0)


def _test_dataset(x: np.ndarray, batch: int) -> Any:
    """uint8 (N, H, W, C) -> batches of float32 images in [0, 1], in order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch)
    return ds.map(lambda img: tf.cast(img, tf.float32) / 255.0,
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _schedule_callback(peak: float, total_steps: int, max_minutes: float | None) -> Any:
    import keras

    class CosineToBudget(keras.callbacks.Callback):
        """Learning rate: a short linear warm-up, then a cosine decay to zero at the end of the
        run. Progress is the larger of steps done / `epochs` x steps per epoch (restored with
        the optimizer on --resume, so a resumed run follows the same curve) and, with
        --max-minutes, the fraction of this session's budget used: a time-bounded run uses its
        whole budget and still ends at a low learning rate."""

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.start = time.monotonic()

        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            step = int(self.model.optimizer.iterations.numpy())
            progress = step / total_steps
            if max_minutes:
                progress = max(progress, (time.monotonic() - self.start) / (max_minutes * 60))
            warmup = min(1.0, (step + 1) / max(1, min(WARMUP_STEPS, total_steps // 10)))
            rate = peak * warmup * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
            self.model.optimizer.learning_rate.assign(rate)

    return CosineToBudget()


def _deadline_callback(max_minutes: float | None) -> Any:
    import keras

    class Deadline(keras.callbacks.Callback):
        """Stops training at the step that uses up this session's time budget (the epoch is
        then closed with its validation pass)."""

        def on_train_begin(self, logs: dict | None = None) -> None:
            self.start = time.monotonic()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if max_minutes and time.monotonic() - self.start >= max_minutes * 60:
                self.model.stop_training = True

    return Deadline()


def run(config: VaeConfig) -> VaeResult:
    """Train, evaluate and save a VAE; returns a `VaeResult`."""
    from dlkit.artifacts import check_output

    config.validate()
    config.output = check_output(config.output)
    from dlkit import runtime as rt

    runtime = rt.start(config.seed, config.strategy, config.deterministic)
    from dlkit.data.readers import load_mnist_family

    data = load_mnist_family(config.dataset, config.data_dir)
    if config.limit is not None:
        data.x_train, data.y_train = data.x_train[:config.limit], data.y_train[:config.limit]
        data.x_test, data.y_test = data.x_test[:config.limit], data.y_test[:config.limit]
    return _train(config, data, runtime)


def _checkpoint(config: VaeConfig, data: Any) -> Any:
    """The resume folder, tied to the options a resumed run must repeat (--max-minutes is not
    one: the budget applies to each session)."""
    from dlkit.checkpoint import Checkpoint

    return Checkpoint(config.output, {
        "task": "train-vae", "dataset": data.name, "arch": config.arch,
        "latent_dim": config.latent_dim, "epochs": config.epochs,
        "batch_size": config.batch_size, "learning_rate": config.learning_rate,
        "seed": config.seed, "train_examples": len(data.x_train)})


def _build(config: VaeConfig, shape: tuple[int, int, int], runtime: Any,
           per_call: int) -> Any:
    import keras

    from dlkit.nets import vae as nets

    with runtime.strategy.scope():
        enc = nets.encoder(config.arch, shape, config.latent_dim)
        dec = nets.decoder(config.arch, shape, config.latent_dim)
        model = nets.VAE(enc, dec, seed=config.seed, name=f"{config.arch}_vae")
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                      jit_compile=runtime.jit_compile, steps_per_execution=per_call)
    return model


def _train(config: VaeConfig, data: Any, runtime: Any) -> VaeResult:
    from dlkit import artifacts
    from dlkit.checkpoint import ReseedEachEpoch, fit_resumable
    from dlkit.console import info
    from dlkit.data.pipelines import plan_steps
    from dlkit.nets import vae as nets
    from dlkit.training import EpochTimer, Progress, check_finite

    shape = data.input_shape
    steps, per_call = plan_steps(len(data.x_train), config.batch_size)
    checkpoint = _checkpoint(config, data)
    model = _build(config, shape, runtime, per_call)
    enc, dec = model.encoder, model.decoder
    done, hist, timer = 0, {}, EpochTimer()
    if config.resume:
        state = checkpoint.restore(model)
        done, hist = int(state["epochs_done"]), state["history"]
        timer.seconds.extend(state["epoch_seconds"])
    budget = f" or {config.max_minutes:g} minutes" if config.max_minutes else ""
    info(f"training a {config.arch} VAE (latent {config.latent_dim}, "
         f"{enc.count_params() + dec.count_params():,} parameters) on {data.name}: "
         f"{len(data.x_train):,} train / {len(data.x_test):,} test images, "
         f"{config.epochs} epochs{budget}{f' (resuming after {done})' if done else ''}, "
         f"batch {config.batch_size}, {runtime.device}")
    test_ds = _test_dataset(data.x_test, config.batch_size)
    callbacks = [ReseedEachEpoch(config.seed), timer, Progress(config.epochs, steps),
                 _schedule_callback(config.learning_rate, steps * config.epochs,
                                    config.max_minutes),
                 _deadline_callback(config.max_minutes)]
    if done < config.epochs:
        fit_resumable(model, _train_dataset(data, config.batch_size, steps, config, done),
                      checkpoint, config.epochs, done, hist, timer.seconds, callbacks,
                      validation_data=test_ds, steps_per_epoch=steps)
    train_seconds = float(sum(timer.seconds))
    check_finite(hist)
    test = model.evaluate(test_ds, verbose=0, return_dict=True)
    completed = len(hist["loss"])
    train_steps = int(model.optimizer.iterations.numpy())
    sample_model = nets.sampler(dec)
    metadata = {
        "task": "train-vae", "dataset": data.name, "arch": config.arch,
        "latent_dim": config.latent_dim, "class_names": data.class_names,
        "input_shape": [config.latent_dim], "image_shape": list(shape),
        "preprocessing": {"input": "latent vectors drawn from N(0, I)",
                          "output": "images as floats 0-255 (sigmoid of Bernoulli logits x 255)",
                          "color": "grayscale", "encoder": ENCODER_FILE,
                          "encoder_input": "images scaled to [0, 1]"},
        "metrics": {"test_loss": float(test["loss"]),
                    "test_reconstruction": float(test["reconstruction"]),
                    "test_kl": float(test["kl"]), "units": "nats per image"},
        "history": hist,
        "training": {"epochs": config.epochs, "epochs_completed": completed,
                     "steps": train_steps, "steps_per_epoch": steps,
                     "max_minutes": config.max_minutes, "batch_size": config.batch_size,
                     "learning_rate": config.learning_rate,
                     "schedule": "linear warm-up, cosine decay to 0 over the epochs "
                                 "or the time budget", "seed": config.seed,
                     "train_examples": len(data.x_train), "seconds": train_seconds,
                     "epoch_seconds": timer.seconds, "device": runtime.device,
                     "mixed_precision": runtime.mixed_precision},
    }

    def write_extras(folder: Path) -> None:
        enc.save(folder / ENCODER_FILE)
        _write_plots(folder / artifacts.PLOTS, hist, data, enc, sample_model, config)

    paths = artifacts.save_model_folder(config.output, sample_model, metadata, write_extras)
    checkpoint.remove()
    paths["encoder"] = str(Path(paths["model_dir"]) / ENCODER_FILE)
    images = train_steps * min(config.batch_size, len(data.x_train))
    return VaeResult("train-vae", data.name, config.arch, config.latent_dim, config.epochs,
                     completed, len(data.x_train), len(data.x_test), float(test["loss"]),
                     float(test["reconstruction"]), float(test["kl"]), train_seconds,
                     images / train_seconds if train_seconds else 0.0, runtime.device, paths,
                     hist)


def _write_plots(plot_dir: Path, hist: dict[str, list[float]], data: Any, enc: Any,
                 sample_model: Any, config: VaeConfig) -> None:
    from dlkit import plots

    plots.training_curves(hist, plot_dir / "training_curves.png",
                          f"train-vae {data.name} (nats per image)")
    x = data.x_test[:16].astype(np.float32) / 255.0
    z_mean, _ = enc.predict(x, verbose=0)
    recon = sample_model.predict(z_mean, verbose=0)
    pairs = np.concatenate([data.x_test[:16], _to_uint8(recon)])
    save_grid(pairs, plot_dir / "reconstructions.png", columns=len(x),
              title="Test images (top) and their reconstructions (bottom)")
    z = np.random.default_rng(config.seed).standard_normal((64, config.latent_dim))
    save_grid(_to_uint8(sample_model.predict(z.astype(np.float32), verbose=0)),
              plot_dir / "prior_samples.png", title="Samples from the prior N(0, I)")
    if config.latent_dim == 2:
        _manifold(sample_model, plot_dir / "latent_manifold.png")
        _scatter(enc, data, plot_dir / "latent_scatter.png")


def _to_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)


def tile(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 images (N, H, W, C) into one (rows*H, cols*W, C) mosaic with padding."""
    n, h, w, c = images.shape
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 64, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h,
               pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
    return canvas


def save_grid(images: np.ndarray, path: Path, columns: int | None = None,
              title: str = "") -> Path:
    """Write a mosaic of uint8 images as a PNG (with a title when given)."""
    from dlkit.plots import _pyplot

    mosaic = tile(images, columns)
    if not title:
        import cv2

        if not cv2.imwrite(str(path), cv2.cvtColor(mosaic, cv2.COLOR_RGB2BGR)
                           if mosaic.shape[-1] == 3 else mosaic):
            raise UsageError(f"cannot write {path}; check the --out path")
        return path
    plt = _pyplot()
    height, width = mosaic.shape[:2]
    fig, ax = plt.subplots(figsize=(max(4, width / 40), max(3, height / 40 + 0.5)))
    ax.imshow(mosaic.squeeze(-1) if mosaic.shape[-1] == 1 else mosaic, cmap="gray",
              vmin=0, vmax=255)
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _manifold(sample_model: Any, path: Path, n: int = 20) -> None:
    """Decode a grid of latent points spaced by the prior's quantiles (Kingma & Welling)."""
    from scipy.stats import norm

    grid = norm.ppf(np.linspace(0.05, 0.95, n))
    z = np.array([[x, y] for y in grid[::-1] for x in grid], np.float32)
    images = _to_uint8(sample_model.predict(z, verbose=0))
    save_grid(images, path, columns=n, title="2-D latent manifold (prior quantiles 5%-95%)")


def _scatter(enc: Any, data: Any, path: Path, count: int = 5000) -> None:
    """The test set's latent means, coloured by class."""
    from dlkit.plots import _pyplot

    x = data.x_test[:count].astype(np.float32) / 255.0
    z_mean, _ = enc.predict(x, verbose=0)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    points = ax.scatter(z_mean[:, 0], z_mean[:, 1], c=data.y_test[:count], cmap="tab10", s=4,
                        vmin=-0.5, vmax=len(data.class_names) - 0.5)
    bar = fig.colorbar(points, ticks=range(len(data.class_names)))
    bar.ax.set_yticklabels(data.class_names)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(f"Test set in the latent space ({data.name})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass
class SampleConfig:
    model: Path
    count: int = 64
    out: Path = Path("vae_samples.png")
    seed: int | None = None
    columns: int | None = None


def sample(config: SampleConfig) -> dict[str, Any]:
    """Draw `count` latent vectors from N(0, I), decode them and write one grid PNG."""
    from dlkit.artifacts import load_keras_model, load_metadata

    if config.count < 1:
        raise UsageError(f"--count must be at least 1 (got {config.count})")
    if config.columns is not None and config.columns < 1:
        raise UsageError(f"--columns must be at least 1 (got {config.columns})")
    meta = load_metadata(config.model, "train-vae")
    out = Path(config.out).expanduser()
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out} must end in .png")
    if not out.parent.is_dir():
        raise UsageError(f"folder {out.parent} does not exist; create it or choose another "
                         "--out")
    model = load_keras_model(config.model)
    rng = np.random.default_rng(config.seed)
    z = rng.standard_normal((config.count, int(meta["latent_dim"]))).astype(np.float32)
    started = time.perf_counter()
    images = _to_uint8(model.predict(z, verbose=0, batch_size=256))
    save_grid(images, out, config.columns)
    return {"grid": str(out), "count": config.count, "seed": config.seed,
            "latent_dim": int(meta["latent_dim"]), "seconds": time.perf_counter() - started}
