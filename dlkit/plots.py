"""PNG pictures of a run: training curves, confusion matrices, labelled image grids.

matplotlib with the Agg backend (no display needed); every function writes one PNG and returns
its path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """One panel per metric (loss, accuracy, ...), training and validation together."""
    plt = _pyplot()
    names = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], path: Path,
                     title: str = "Confusion matrix (test set)") -> Path:
    """A confusion matrix heat map with counts in the cells (rows: true, columns: predicted)."""
    plt = _pyplot()
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def image_grid(images: np.ndarray, titles: Sequence[str], path: Path, title: str = "",
               colors: Sequence[str] | None = None, columns: int | None = None) -> Path:
    """A grid of uint8 images (N, H, W, C) with a caption under each."""
    plt = _pyplot()
    count = len(images)
    cols = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / cols))
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
