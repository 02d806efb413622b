"""`dlkit sample-gan`: draw images from a trained generator, as a grid PNG or one PNG each.

Sampling is deterministic under a seed: the noise comes from NumPy's seeded generator and the
generator runs in inference mode, from the folder's `model.tflite` through LiteRT (no TensorFlow
import) or from `model.keras`, as `--backend` says: the same seed gives the same images on both.
`open_generator` is what `dlkit.core.generators` opens train-gan folders with (evaluate-gan
draws through it too); the grid and the one-PNG-per-image output are written there, batch by
batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.config import Backend
from dlkit.core.console import Report
from dlkit.core.errors import UsageError
from dlkit.core.generators import BATCH, Generator, refuse_settings, sample_lines, write_samples
from dlkit.core.plots import pixels_to_uint8
from dlkit.core.serving import Predictor, open_model
from dlkit.gan.config import SampleGanConfig

TASK = "train-gan"


def to_uint8(images: Any) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 pixels."""
    return pixels_to_uint8((np.asarray(images, np.float32) + 1.0) * 127.5)


def open_generator(folder: Path, meta: dict[str, Any], backend: Backend,
                   settings: dict[str, Any]) -> Generator:
    """A train-gan folder as a `Generator` (`settings`: `truncation`, see `noise_batch`);
    exit 2 when its metadata does not fit its model."""
    refuse_settings(folder, TASK, settings, allowed=("truncation",))
    try:
        latent_dim, conditional = int(meta["latent_dim"]), bool(meta["conditional"])
        names, shape = [str(n) for n in meta["class_names"]], list(meta["image_shape"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{folder}/metadata.json lacks the generator's latent_dim, classes or "
                         "image shape; retrain the model") from None
    model = open_model(folder, backend, meta=meta)
    if model.input_shapes[0] != (latent_dim,) or len(model.input_shapes) != 1 + conditional:
        raise UsageError(f"{folder}/metadata.json does not match its generator (latent_dim "
                         f"{latent_dim}, conditional {conditional}); retrain the model")
    _check_fits(Path(folder), model, names if conditional else None, shape)
    truncation = settings.get("truncation")

    def draw(count: int, seed: int | None, labels: np.ndarray | None) -> Iterator[np.ndarray]:
        return _batches(model, latent_dim, count, seed, labels, truncation)

    return Generator(Path(folder), TASK, conditional, names, shape,
                     str(meta.get("dataset", "")), model.backend, draw)


def _check_fits(folder: Path, model: Predictor, names: list[str] | None,
                shape: list[int]) -> None:
    """Exit 2 before sampling when metadata.json's image shape is not what the generator
    makes, or (conditional) its class names are not as many as the generator's classes (the
    size of its label embedding, read from model.keras's config)."""
    from dlkit.core.artifacts import KERAS_FILE, keras_layer_config

    made = list(model.output_shape)
    if len(made) != len(shape) or any(m is not None and m != s
                                      for m, s in zip(made, shape, strict=True)):
        raise UsageError(f"{folder}/metadata.json says the generator makes {shape} images but "
                         f"it makes {made}; retrain the model or put its own metadata back")
    embedding = keras_layer_config(folder / KERAS_FILE, "label_embedding") if names else None
    classes = embedding.get("input_dim") if embedding else None
    if names is not None and isinstance(classes, int) and classes != len(names):
        raise UsageError(f"{folder}/metadata.json names {len(names)} classes but the generator "
                         f"has {classes}; retrain the model or put its own metadata back")


def load_generator(folder: Path, backend: Backend = Backend.auto,
                   truncation: float | None = None) -> Generator:
    """A train-gan model folder; exit 2 when it is missing or another command wrote it."""
    from dlkit.core.artifacts import load_metadata

    meta = load_metadata(folder, TASK)
    settings = {} if truncation is None else {"truncation": truncation}
    return open_generator(Path(folder), meta, backend, settings)


def noise_batch(count: int, latent_dim: int, seed: int | None,
                truncation: float | None = None) -> np.ndarray:
    """Standard normal noise; with `truncation` t, values beyond +-t are drawn again (the
    "truncation trick": more typical, cleaner images, less variety)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((count, latent_dim))
    if truncation is not None:
        outside = np.abs(noise) > truncation
        while outside.any():
            noise[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(noise) > truncation
    return noise.astype(np.float32)


def _batches(model: Predictor, latent_dim: int, count: int, seed: int | None,
             labels: np.ndarray | None, truncation: float | None) -> Iterator[np.ndarray]:
    """`count` uint8 images in batches; the same seed gives the same images."""
    noise = noise_batch(count, latent_dim, seed, truncation)
    for start in range(0, count, BATCH):
        chunk = noise[start:start + BATCH]
        inputs = [chunk] if labels is None else [chunk, labels[start:start + BATCH]]
        yield pixels_to_uint8(model(*inputs))


def sample_gan(config: SampleGanConfig) -> Report:
    """Write a grid PNG and/or one PNG per image; the report lists what was written."""
    from dlkit.core.artifacts import check_output_file

    if config.out is not None:  # checked before any work, so a failure writes nothing
        check_output_file("--out", config.out, inputs=[config.model])
    if config.out_dir is not None:
        check_output_file("--out-dir", config.out_dir, folder=True, inputs=[config.model])
    gen = load_generator(config.model, config.backend, config.truncation)
    written = write_samples(gen, config.count, config.seed, config.label,
                            config.out, config.out_dir)
    return Report("sample-gan", {}, sample_lines(written), written)
