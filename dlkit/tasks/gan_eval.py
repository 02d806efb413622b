"""`dlkit sample-gan` and `dlkit evaluate-gan`: draw images from a trained generator and score them.

Sampling is deterministic under a seed: the noise comes from NumPy's seeded generator and the
generator runs in inference mode. Scoring uses a classifier trained by `dlkit train-mnist` (or
`train-cifar`) on the same kind of images: the share of samples it labels with confidence >= 0.9
("recognisable"), the entropy of its label histogram relative to ln(classes) ("no mode
collapse") and, for conditional generators, the share labelled as the class that was asked for.

Grid helpers here are NumPy + OpenCV only (no TensorFlow), so train-gan's callbacks use them too.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.errors import DlkitError, UsageError

CONFIDENT = 0.9


def to_uint8(images: Any) -> np.ndarray:
    """Generator output in [-1, 1] -> uint8 pixels."""
    return pixels_to_uint8((np.asarray(images, np.float32) + 1.0) * 127.5)


def pixels_to_uint8(pixels: Any) -> np.ndarray:
    """Float 0-255 pixels -> uint8 (rounded, clipped): what a saved PNG holds."""
    return np.clip(np.rint(np.asarray(pixels, np.float32)), 0, 255).astype(np.uint8)


def grid_columns(count: int, num_classes: int) -> int:
    """Columns of a sample grid: one per class for conditional samples, else about square."""
    if num_classes and count >= num_classes:
        return num_classes
    return max(1, math.ceil(math.sqrt(count)))


def tile(images: np.ndarray, columns: int, scale: int = 2, gap: int = 2) -> np.ndarray:
    """uint8 images (N, H, W, C) -> one uint8 picture, `columns` wide, enlarged `scale` times."""
    count, height, width, channels = images.shape
    rows = max(1, math.ceil(count / columns))
    h, w = height * scale, width * scale
    sheet = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, channels), 96, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
        top, left = gap + r * (h + gap), gap + c * (w + gap)
        sheet[top:top + h, left:left + w] = big
    return sheet


def save_grid(images: np.ndarray, path: Path, columns: int, scale: int = 2) -> Path:
    """Write a grid PNG of uint8 images (RGB or grey)."""
    write_png(tile(images, columns, scale), path)
    return path


def write_png(image: np.ndarray, path: Path) -> None:
    """Write one uint8 image (H, W, 1|3, RGB order) as PNG; a clear error when it cannot."""
    import cv2

    picture = image[..., 0] if image.shape[-1] == 1 else image[..., ::-1]  # OpenCV wants BGR
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder for {path} ({exc.strerror}); choose a "
                         "writable place") from None
    if not cv2.imwrite(str(path), picture):
        raise UsageError(f"cannot write {path}; use a .png name in a writable folder")


@dataclass
class Generator:
    """A trained generator and what its metadata says about it."""

    folder: Path
    model: Any
    latent_dim: int
    conditional: bool
    class_names: list[str]
    image_shape: list[int]
    dataset: str


def load_generator(folder: Path) -> Generator:
    """Load a train-gan model folder; exit 2 when it is missing or not a GAN."""
    from dlkit.artifacts import load_keras_model, load_metadata

    meta = load_metadata(folder, "train-gan")
    from dlkit.runtime import import_tensorflow

    import_tensorflow()
    return Generator(Path(folder), load_keras_model(folder), int(meta["latent_dim"]),
                     bool(meta["conditional"]), list(meta["class_names"]),
                     list(meta["image_shape"]), str(meta.get("dataset", "")))


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


def generate(gen: Generator, count: int, seed: int | None, labels: np.ndarray | None,
             truncation: float | None = None, batch_size: int = 250) -> np.ndarray:
    """`count` uint8 images; the same seed gives the same images."""
    noise = noise_batch(count, gen.latent_dim, seed, truncation)
    parts = []
    for start in range(0, count, batch_size):
        chunk = noise[start:start + batch_size]
        inputs = chunk if labels is None else [chunk, labels[start:start + batch_size]]
        parts.append(pixels_to_uint8(gen.model(inputs, training=False)))
    return np.concatenate(parts)


def check_truncation(truncation: float | None) -> None:
    if truncation is not None and not 0.05 <= truncation <= 10:
        raise UsageError(f"--truncation must be between 0.05 and 10 (got {truncation})")


@dataclass
class SampleConfig:
    """sample-gan's options."""

    model: Path
    count: int = 100
    out: Path | None = None
    out_dir: Path | None = None
    label: int | None = None
    seed: int | None = None
    truncation: float | None = None

    def validate(self) -> None:
        if self.count < 1:
            raise UsageError(f"--count must be at least 1 (got {self.count})")
        check_truncation(self.truncation)
        if self.out is not None and self.out.suffix.lower() != ".png":
            raise UsageError(f"--out {self.out} must name a .png file")
        if self.out is not None:  # checked before any work, so a failure writes nothing
            check_writable("--out", self.out, folder=False)
        if self.out_dir is not None:
            check_writable("--out-dir", self.out_dir, folder=True)


def check_writable(option: str, path: Path, folder: bool) -> None:
    """Exit 2 when `path` (a file, or a folder with `folder`) is the wrong kind of thing or the
    nearest existing folder above it (missing folders are created) is not writable."""
    path = Path(path).expanduser()
    if path.exists() and path.is_dir() != folder:
        raise UsageError(f"{option} {path} is {'a file' if folder else 'a folder'}; choose "
                         f"another {option}")
    parent = path if folder and path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"{option} {path}: {parent} is not a writable folder; choose another "
                         f"{option}")


def sample(config: SampleConfig) -> dict[str, Any]:
    """Write a grid PNG and/or one PNG per image; returns what was written."""
    config.validate()
    gen = load_generator(config.model)
    check_label(gen, config.label)
    labels = sample_labels(gen, config.count, config.label)
    images = generate(gen, config.count, config.seed, labels, config.truncation)
    written: dict[str, Any] = {"model": str(gen.folder), "count": config.count,
                               "seed": config.seed, "label": config.label}
    if config.out is not None:
        columns = grid_columns(config.count, len(gen.class_names) if labels is not None
                               and config.label is None else 0)
        written["grid"] = str(save_grid(images, config.out, columns))
    if config.out_dir is not None:
        written["images"] = [str(p) for p in _write_each(images, labels, gen, config.out_dir)]
    if labels is not None:
        written["labels"] = [gen.class_names[k] for k in labels]
    return written


def _write_each(images: np.ndarray, labels: np.ndarray | None, gen: Generator,
                folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        suffix = "" if labels is None else f"_{_slug(gen.class_names[labels[i]])}"
        path = folder / f"sample_{i:04d}{suffix}.png"
        write_png(image, path)
        paths.append(path)
    return paths


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").lower() or "class"


@dataclass
class EvalConfig:
    """evaluate-gan's options."""

    model: Path
    classifier: Path
    count: int = 1000
    seed: int = 0
    threshold: float = CONFIDENT
    truncation: float | None = None

    def validate(self) -> None:
        if self.count < 1:
            raise UsageError(f"--count must be at least 1 (got {self.count})")
        check_truncation(self.truncation)
        if not 0 < self.threshold <= 1:
            raise UsageError(f"--threshold must be in (0, 1] (got {self.threshold})")


@dataclass
class EvalResult:
    """evaluate-gan's scores (printed as JSON)."""

    model: str
    classifier: str
    dataset: str
    classifier_dataset: str
    conditional: bool
    count: int
    seed: int
    threshold: float
    truncation: float | None
    recognisable: float
    label_entropy: float
    mean_confidence: float
    label_histogram: dict[str, int]
    conditional_accuracy: float | None
    per_class_accuracy: dict[str, float] | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(config: EvalConfig) -> EvalResult:
    """Generate `count` samples (every class equally when conditional) and score them."""
    from dlkit.artifacts import load_keras_model, load_metadata

    config.validate()
    gen = load_generator(config.model)
    cls_meta = load_metadata(config.classifier)
    _check_compatible(gen, cls_meta, config.classifier)
    classifier = load_keras_model(config.classifier)
    labels = sample_labels(gen, config.count, None)
    images = generate(gen, config.count, config.seed, labels, config.truncation)
    probs = np.asarray(classifier.predict(images.astype(np.float32), batch_size=250, verbose=0))
    return _score(config, gen, cls_meta, probs, labels)


def _check_compatible(gen: Generator, cls_meta: dict[str, Any], folder: Path) -> None:
    shape = list(cls_meta.get("input_shape") or [])
    if "class_names" not in cls_meta or not shape or cls_meta.get("task") == "train-gan":
        raise UsageError(f"{folder} is not a classifier model folder; train one with "
                         f"`dlkit train-mnist --dataset {gen.dataset or 'mnist'}`")
    if shape != gen.image_shape:
        raise UsageError(f"the classifier takes {shape} images but the generator makes "
                         f"{gen.image_shape}; use a classifier trained on {gen.dataset}")
    if gen.conditional and len(cls_meta["class_names"]) != len(gen.class_names):
        raise UsageError(f"the classifier knows {len(cls_meta['class_names'])} classes, the "
                         f"generator {len(gen.class_names)}; use one trained on {gen.dataset}")


def _score(config: EvalConfig, gen: Generator, cls_meta: dict[str, Any], probs: np.ndarray,
           labels: np.ndarray | None) -> EvalResult:
    if probs.ndim != 2 or not np.all(np.isfinite(probs)):
        raise DlkitError("the classifier returned unusable scores; retrain it")
    names = list(cls_meta["class_names"])
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    counts = np.bincount(predicted, minlength=len(names))
    share = counts / counts.sum()
    nonzero = share[share > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / math.log(len(names)))
    cond_acc = per_class = None
    if labels is not None:
        hits = predicted == labels
        cond_acc = float(hits.mean())
        per_class = {gen.class_names[k]: float(hits[labels == k].mean())
                     for k in range(len(gen.class_names)) if np.any(labels == k)}
    return EvalResult(str(gen.folder), str(config.classifier), gen.dataset,
                      str(cls_meta.get("dataset", "")), gen.conditional, config.count,
                      config.seed, config.threshold, config.truncation,
                      float((confidence >= config.threshold).mean()), entropy,
                      float(confidence.mean()),
                      {names[k]: int(c) for k, c in enumerate(counts)}, cond_acc, per_class)
