"""`dlkit sample-gan`: draw images from a trained generator, as a grid PNG or one PNG each.

Sampling is deterministic under a seed: the noise comes from NumPy's seeded generator and the
generator runs in inference mode, from the folder's `model.tflite` through LiteRT (no TensorFlow
import) or from `model.keras`, as `--backend` says: the same seed gives the same images on both.
Images are generated and written batch by batch, so a large `--count` with `--out-dir` never holds
more than one batch in memory; every PNG is written atomically, and the grid only after every image
of `--out-dir` is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.config import Backend
from dlkit.core.console import Report
from dlkit.core.errors import UsageError
from dlkit.core.plots import pixels_to_uint8
from dlkit.core.serving import Predictor, load_predictor
from dlkit.gan.config import SampleGanConfig

BATCH = 250


def to_uint8(images: Any) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 pixels."""
    return pixels_to_uint8((np.asarray(images, np.float32) + 1.0) * 127.5)


@dataclass
class Generator:
    """A trained generator and what its metadata says about it."""

    folder: Path
    model: Predictor
    latent_dim: int
    conditional: bool
    class_names: list[str]
    image_shape: list[int]
    dataset: str


def load_generator(folder: Path, backend: Backend = Backend.auto) -> Generator:
    """Load a train-gan model folder; exit 2 when it is missing, not a GAN, or its metadata
    does not fit its model."""
    from dlkit.core.artifacts import load_metadata

    meta = load_metadata(folder, "train-gan")
    try:
        latent_dim, conditional = int(meta["latent_dim"]), bool(meta["conditional"])
        names, shape = [str(n) for n in meta["class_names"]], list(meta["image_shape"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{folder}/metadata.json lacks the generator's latent_dim, classes or "
                         "image shape; retrain the model") from None
    model = load_predictor(folder, meta, backend)
    if model.input_shapes[0] != (latent_dim,) or len(model.input_shapes) != 1 + conditional:
        raise UsageError(f"{folder}/metadata.json does not match its generator (latent_dim "
                         f"{latent_dim}, conditional {conditional}); retrain the model")
    _check_fits(Path(folder), model, names if conditional else None, shape)
    return Generator(Path(folder), model, latent_dim, conditional, names, shape,
                     str(meta.get("dataset", "")))


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


def check_label(gen: Generator, label: int | None) -> None:
    """--label only for conditional generators, and only a class they know."""
    if label is None:
        return
    if not gen.conditional:
        raise UsageError(f"--label needs a conditional generator; {gen.folder} was trained "
                         "without --conditional")
    if not 0 <= label < len(gen.class_names):
        raise UsageError(f"--label {label} is outside the classes 0-{len(gen.class_names) - 1} "
                         f"({', '.join(gen.class_names)})")


def sample_labels(gen: Generator, count: int, label: int | None) -> np.ndarray | None:
    """The class asked for each sample: `label`, or every class in turn; None if unconditional."""
    if not gen.conditional:
        return None
    if label is not None:
        return np.full(count, label, np.int32)
    return (np.arange(count) % len(gen.class_names)).astype(np.int32)


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


def generate_batches(gen: Generator, count: int, seed: int | None, labels: np.ndarray | None,
                     truncation: float | None = None) -> Iterator[np.ndarray]:
    """`count` uint8 images in batches; the same seed gives the same images."""
    noise = noise_batch(count, gen.latent_dim, seed, truncation)
    for start in range(0, count, BATCH):
        chunk = noise[start:start + BATCH]
        inputs = [chunk] if labels is None else [chunk, labels[start:start + BATCH]]
        yield pixels_to_uint8(gen.model(*inputs))


def generate(gen: Generator, count: int, seed: int | None, labels: np.ndarray | None,
             truncation: float | None = None) -> np.ndarray:
    """`count` uint8 images at once (for a grid, or for scoring)."""
    return np.concatenate(list(generate_batches(gen, count, seed, labels, truncation)))


def sample_gan(config: SampleGanConfig) -> Report:
    """Write a grid PNG and/or one PNG per image; the report lists what was written."""
    from dlkit.core import plots
    from dlkit.core.artifacts import check_output_file

    if config.out is not None:  # checked before any work, so a failure writes nothing
        check_output_file("--out", config.out, inputs=[config.model])
    if config.out_dir is not None:
        check_output_file("--out-dir", config.out_dir, folder=True, inputs=[config.model])
    gen = load_generator(config.model, config.backend)
    check_label(gen, config.label)
    labels = sample_labels(gen, config.count, config.label)
    written: dict[str, Any] = {"model": str(gen.folder), "count": config.count,
                               "seed": config.seed, "label": config.label}
    if config.out_dir is not None:
        written["images"] = [str(p) for p in _write_each(gen, config, labels)]
    if config.out is not None:
        images = generate(gen, config.count, config.seed, labels, config.truncation)
        columns = plots.grid_columns(config.count, len(gen.class_names)
                                     if labels is not None and config.label is None else 0)
        written["grid"] = str(plots.save_grid(images, config.out.expanduser(), columns))
    if labels is not None:
        written["labels"] = [gen.class_names[k] for k in labels]
    lines = [written["grid"]] if "grid" in written else []
    return Report("sample-gan", {}, "\n".join(lines + written.get("images", [])) or None,
                  written)


def _write_each(gen: Generator, config: SampleGanConfig,
                labels: np.ndarray | None) -> list[Path]:
    from dlkit.core import plots

    folder = config.out_dir.expanduser()
    folder.mkdir(exist_ok=True)
    paths = []
    batches = generate_batches(gen, config.count, config.seed, labels, config.truncation)
    for batch in batches:
        for image in batch:
            i = len(paths)
            suffix = "" if labels is None else f"_{_slug(gen.class_names[labels[i]])}"
            paths.append(plots.write_png(image, folder / f"sample_{i:0{_digits(config)}d}"
                                         f"{suffix}.png"))
    return paths


def _digits(config: SampleGanConfig) -> int:
    return max(4, len(str(config.count - 1)))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").lower() or "class"
