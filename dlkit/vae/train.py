"""`dlkit train-vae`: a variational autoencoder for 28x28 images.

Top to bottom: read MNIST, Fashion-MNIST or the bundled digits, build the VAE (convolutional by
default; `dlkit.vae.models`), fit it on a tf.data pipeline (a warm-up, then a cosine decay to zero
over the epochs or `--max-minutes`, whichever ends first), report the reconstruction term, the KL
term and the negative ELBO (their sum) in nats per image on the test set, and save the model
folder with reconstructions, prior samples and, for a 2-D latent space, the latent manifold and
the test set's latent scatter.

The folder's `model.keras` and `saved_model/` hold the *decoder* as a sampler (latent vectors in,
0-255 images out): that is what generating needs, it is a plain functional model any TF tool
loads, and `sample-vae` needs nothing else. The encoder is saved beside it as `encoder.keras`.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlkit.core import plots
from dlkit.core.console import Report, fmt, info
from dlkit.core.runner import Run, fingerprint
from dlkit.core.schedules import Schedule
from dlkit.data.pipelines import plan_steps, training_dataset
from dlkit.vae import models
from dlkit.vae.config import VaeConfig

ENCODER_FILE = "encoder.keras"


@dataclass(kw_only=True)
class VaeResult:
    """What a training run reports (`--json` prints it); losses in nats per image."""

    task: str
    dataset: str
    arch: str
    latent_dim: int
    epochs: int
    epochs_completed: int
    stopped: str
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

    def report(self) -> Report:
        return Report(f"train-vae {self.dataset} ({self.arch}, latent {self.latent_dim})", {
            "test negative ELBO (nats/image)": self.test_loss,
            "reconstruction": self.test_reconstruction, "KL": self.test_kl,
            "epochs": f"{self.epochs_completed}/{self.epochs} ({self.stopped})",
            "training time (s)": self.train_seconds, "device": self.device,
            "model folder": self.artifacts["model_dir"]},
            f"test_loss={fmt(self.test_loss, 2)} model={self.artifacts['model_dir']}",
            asdict(self))


def train_vae(config: VaeConfig) -> Report:
    """Train, evaluate and save a VAE."""
    from dlkit.data.readers import load_mnist_family

    with Run(config, inputs=[config.data_dir]) as run:
        data = load_mnist_family(config.dataset.value, config.data_dir).first(config.limit)
        shape = data.input_shape
        batch = config.batch_size
        steps, per_call = plan_steps(len(data.x_train), batch)
        runtime = run.start(fingerprint(data.x_train, data.x_test), inputs=data.files)

        with run.scope():
            enc = models.encoder(config.arch.value, shape, config.latent_dim)
            dec = models.decoder(config.arch.value, shape, config.latent_dim)
            vae = models.VAE(enc, dec, seed=config.seed, name=f"{config.arch.value}_vae")
            vae.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                        jit_compile=runtime.jit_compile, steps_per_execution=per_call)
            done = run.restore(vae)

        info(f"training a {config.arch.value} VAE (latent {config.latent_dim}, "
             f"{enc.count_params() + dec.count_params():,} parameters) on {data.name}: "
             f"{len(data.x_train):,} train / {len(data.x_test):,} test images, "
             f"{config.epochs} epochs"
             + (f" or {config.max_minutes:g} minutes" if config.max_minutes else "")
             + (f" (resuming after {done})" if done else "") + f", batch {batch}, "
             f"{runtime.device}")
        train_ds = training_dataset(data.x_train, data.y_train, batch, steps, config.seed,
                                    config.epochs, done).map(lambda x, _y: x / 255.0)
        test_ds = _images(data.x_test, batch)
        sampler = models.sampler(dec)
        fixed = np.random.default_rng(config.seed + 1).standard_normal(
            (64, config.latent_dim)).astype(np.float32)
        history = run.fit(vae, train_ds, steps=steps, validation=test_ds,
                          schedule=Schedule(config.learning_rate, warmup_fraction=0.1,
                                            warmup_steps=100),
                          images=lambda: plots.tile(plots.pixels_to_uint8(_here(sampler, fixed))))

        test = run.evaluate(vae, test_ds)
        metadata = {
            "dataset": data.name, "arch": config.arch.value, "latent_dim": config.latent_dim,
            "class_names": data.class_names, "input_shape": [config.latent_dim],
            "image_shape": list(shape),
            "preprocessing": {"input": "latent vectors drawn from N(0, I)",
                              "output": "images as floats 0-255 (sigmoid of Bernoulli logits "
                                        "x 255)",
                              "color": "grayscale", "encoder": ENCODER_FILE,
                              "encoder_input": "images scaled to [0, 1]"},
            "metrics": {"test_loss": float(test["loss"]),
                        "test_reconstruction": float(test["reconstruction"]),
                        "test_kl": float(test["kl"]), "units": "nats per image"},
            "training": {"steps_per_epoch": steps, "batch_size": batch,
                         "learning_rate": config.learning_rate, "seed": config.seed,
                         "train_examples": len(data.x_train)},
        }

        def write_plots(folder: Path) -> None:
            _write_plots(folder / "plots", history, data, enc, sampler, config)

        paths = run.save(sampler, metadata, write_plots,
                         extras=lambda folder: enc.save(folder / ENCODER_FILE), weights=[enc])
        return run.result(
            VaeResult, dataset=data.name, arch=config.arch.value, latent_dim=config.latent_dim,
            train_examples=len(data.x_train), test_examples=len(data.x_test),
            test_loss=float(test["loss"]), test_reconstruction=float(test["reconstruction"]),
            test_kl=float(test["kl"]),
            images_per_second=run.per_second(min(batch, len(data.x_train))),
            artifacts={**paths, "encoder": str(Path(paths["model_dir"]) / ENCODER_FILE)}
        ).report()


def _images(x: np.ndarray, batch: int) -> Any:
    """uint8 (N, H, W, C) -> batches of float32 images in [0, 1], in order."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch)
    return ds.map(lambda img: tf.cast(img, tf.float32) / 255.0,
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _here(model: keras.Model, x: np.ndarray, batch: int = 500) -> Any:
    """`model` on `x` in this process alone, batch by batch, as NumPy. The pictures are drawn
    by the chief alone, and `predict` runs under the run's distribution strategy: with
    `--strategy multi-worker` it waited for the other workers, which draw nothing, until
    they left (then the plots were lost)."""
    parts = [model(x[i:i + batch], training=False) for i in range(0, len(x), batch)]
    return keras.tree.map_structure(lambda *p: np.concatenate([np.asarray(t) for t in p]),
                                    *parts)


def _write_plots(plot_dir: Path, history: dict[str, list[float]], data: Any, enc: Any,
                 sampler: Any, config: VaeConfig) -> None:
    plots.training_curves(history, plot_dir / "training_curves.png",
                          f"train-vae {data.name} (nats per image)")
    x = data.x_test[:16].astype(np.float32) / 255.0
    z_mean, _ = _here(enc, x)
    recon = _here(sampler, z_mean)
    pairs = np.concatenate([data.x_test[:16], plots.pixels_to_uint8(recon)])
    plots.save_grid(pairs, plot_dir / "reconstructions.png", columns=len(x), scale=1,
                    title="Test images (top) and their reconstructions (bottom)")
    z = np.random.default_rng(config.seed).standard_normal((64, config.latent_dim))
    plots.save_grid(plots.pixels_to_uint8(_here(sampler, z.astype(np.float32))),
                    plot_dir / "prior_samples.png", scale=1,
                    title="Samples from the prior N(0, I)")
    if config.latent_dim == 2:
        _manifold(sampler, plot_dir / "latent_manifold.png")
        _scatter(enc, data, plot_dir / "latent_scatter.png")


def _manifold(sampler: Any, path: Path, n: int = 20) -> None:
    """Decode a grid of latent points spaced by the prior's quantiles (Kingma & Welling)."""
    from scipy.stats import norm

    grid = norm.ppf(np.linspace(0.05, 0.95, n))
    z = np.array([[x, y] for y in grid[::-1] for x in grid], np.float32)
    images = plots.pixels_to_uint8(_here(sampler, z))
    plots.save_grid(images, path, columns=n, scale=1,
                    title="2-D latent manifold (prior quantiles 5%-95%)")


def _scatter(enc: Any, data: Any, path: Path, count: int = 5000) -> None:
    """The test set's latent means, coloured by class."""
    x = data.x_test[:count].astype(np.float32) / 255.0
    z_mean, _ = _here(enc, x)
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    points = ax.scatter(z_mean[:, 0], z_mean[:, 1], c=data.y_test[:count], cmap="tab10", s=4,
                        vmin=-0.5, vmax=len(data.class_names) - 0.5)
    bar = fig.colorbar(points, ticks=range(len(data.class_names)))
    bar.ax.set_yticklabels(data.class_names)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(f"Test set in the latent space ({data.name})")
    fig.tight_layout()
    plots.save_figure(fig, path)
