"""PNG pictures of a run: training curves, confusion matrices, image grids, an animated GIF.

One tiler (`tile`) makes every mosaic of images (sample grids, reconstructions); captioned grids
use matplotlib with the Agg backend (no display needed). Every picture is encoded in memory and
written with `dlkit.core.files.write_atomic`, so a failed or interrupted write never leaves a
truncated file and the previous one survives.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.files import write_atomic


def pixels_to_uint8(pixels: Any) -> np.ndarray:
    """Float 0-255 pixels -> uint8 (rounded, clipped): what a saved PNG holds."""
    return np.clip(np.rint(np.asarray(pixels, np.float32)), 0, 255).astype(np.uint8)


def pyplot() -> Any:
    """matplotlib.pyplot with the Agg backend (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG (atomically) and close it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return write_atomic(path, buffer.getvalue())


def training_curves(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """One panel per metric (loss, accuracy, ...), training and validation together."""
    plt = pyplot()
    names = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    if not names:
        names = list(history)[:1]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(5 * max(1, len(names)), 3.6),
                             squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path,
                     title: str = "Confusion matrix (test set)") -> Path:
    """A confusion matrix heat map with counts in the cells (rows: true, columns: predicted)."""
    plt = pyplot()
    n = len(class_names)
    size = max(5.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > threshold else "black")
    fig.tight_layout()
    return save_figure(fig, path)


def confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts of (true, predicted) label pairs."""
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


def captioned_grid(images: Sequence[np.ndarray], titles: Sequence[str], path: Path,
                   title: str = "", colors: Sequence[str] | None = None,
                   columns: int | None = None) -> Path:
    """A grid of uint8 images (each H x W x C, any size) with a caption over each."""
    count = len(images)
    cols = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / cols))
    if count and len({np.shape(image) for image in images}) == 1:
        return _captioned_mosaic(np.stack(images), titles, path, title, colors, cols, rows)
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.1 * rows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= count:
            continue
        image = images[index]
        grey = image.ndim == 2 or image.shape[-1] == 1
        ax.imshow(image.squeeze(-1) if grey and image.ndim == 3 else image,
                  cmap="gray" if grey else None, vmin=0, vmax=255)
        ax.set_title(titles[index], fontsize=8, color=colors[index] if colors else "black")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


CAPTION_BAND = 0.5  # of an image's height, above it, for a caption of up to two lines


def _captioned_mosaic(images: np.ndarray, titles: Sequence[str], path: Path, title: str,
                      colors: Sequence[str] | None, cols: int, rows: int) -> Path:
    """`captioned_grid` for images of one size: one mosaic on one axes, the captions drawn as
    text over it (a fifth of the CPU time of an axes per image, for the same picture)."""
    plt = pyplot()
    if images.ndim == 3:
        images = images[..., None]
    height, width, channels = images.shape[1:]
    band, gap = math.ceil(CAPTION_BAND * height), max(1, width // 8)
    sheet = tile(images, cols, gap=gap, band=band, background=255)
    fig = plt.figure(figsize=(1.9 * cols, 2.1 * rows + (0.4 if title else 0)))
    ax = fig.add_axes((0.02, 0.01, 0.96, (2.1 * rows - 0.02) / fig.get_figheight()))
    grey = channels == 1
    ax.imshow(sheet[..., 0] if grey else sheet, cmap="gray" if grey else None, vmin=0,
              vmax=255, interpolation="nearest")
    ax.axis("off")
    for i, caption in enumerate(titles[:len(images)]):
        r, c = divmod(i, cols)
        x, y = gap + c * (width + gap) + width / 2, gap + r * (band + height + gap) + band
        ax.text(x, y - 0.5, caption, ha="center", va="bottom", fontsize=8,
                color=colors[i] if colors else "black")
    if title:
        fig.suptitle(title, y=1 - 0.15 / fig.get_figheight())
    return save_figure(fig, path)


def grid_columns(count: int, num_classes: int = 0) -> int:
    """Columns of a sample grid: one per class for conditional samples, else about square."""
    if num_classes and count >= num_classes:
        return num_classes
    return max(1, math.ceil(math.sqrt(count)))


def tile(images: np.ndarray, columns: int | None = None, scale: int = 1, gap: int = 2,
         band: int = 0, background: int = 96) -> np.ndarray:
    """uint8 images (N, H, W, C) -> one uint8 mosaic `columns` wide (default about square),
    each image enlarged `scale` times, `band` empty rows above each (room for a caption), on
    a `background` grey."""
    count, height, width, channels = images.shape
    columns = columns or grid_columns(count)
    rows = max(1, math.ceil(count / columns))
    h, w = height * scale, width * scale
    sheet = np.full((rows * (band + h + gap) + gap, columns * (w + gap) + gap, channels),
                    background, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        big = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1) if scale > 1 else image
        top, left = gap + r * (band + h + gap) + band, gap + c * (w + gap)
        sheet[top:top + h, left:left + w] = big
    return sheet


def save_grid(images: np.ndarray, path: Path, columns: int | None = None, scale: int = 2,
              title: str = "") -> Path:
    """A mosaic of uint8 images as a PNG: pixels only, or under a matplotlib title."""
    mosaic = tile(images, columns, scale)
    if not title:
        return write_png(mosaic, path)
    plt = pyplot()
    height, width = mosaic.shape[:2]
    fig, ax = plt.subplots(figsize=(max(4, width / 80), max(3, height / 80 + 0.5)))
    ax.imshow(mosaic.squeeze(-1) if mosaic.shape[-1] == 1 else mosaic, cmap="gray",
              vmin=0, vmax=255)
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)


def encode_png(image: np.ndarray) -> bytes:
    """One uint8 image (H, W, 1|3, RGB order) as PNG bytes."""
    import cv2

    picture = image[..., 0] if image.shape[-1] == 1 else image[..., ::-1]  # OpenCV wants BGR
    ok, data = cv2.imencode(".png", np.ascontiguousarray(picture))
    if not ok:
        raise ValueError("OpenCV could not encode the image as PNG")
    return data.tobytes()


def write_png(image: np.ndarray, path: Path) -> Path:
    """Write one uint8 image (H, W, 1|3, RGB order) as a PNG file, atomically."""
    return write_atomic(path, encode_png(image))


def write_gif(frames: Sequence[Path | np.ndarray], path: Path,
              milliseconds: int | Sequence[int] = 400) -> Path:
    """An animated GIF (looping) of PNG files or uint8 images (H, W, 1|3), written atomically;
    `milliseconds`: how long each frame shows (one value for all, or one per frame)."""
    from PIL import Image

    def frame(item: Path | np.ndarray) -> Any:
        if isinstance(item, np.ndarray):
            return Image.fromarray(item[..., 0] if item.shape[-1] == 1 else item).convert("P")
        return Image.open(item).convert("P")

    images = [frame(f) for f in frames]
    duration = milliseconds if isinstance(milliseconds, int) else list(milliseconds)
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=duration, loop=0)
    return write_atomic(path, buffer.getvalue())
