"""The options of `evaluate` (see dlkit.core.config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlkit.core.config import Backend, Config, backend_option, opt


@dataclass(kw_only=True)
class EvaluateConfig(Config):
    """Measure a trained model on labelled data: accuracy and per-class scores, or errors.

    DATA is, for an image classifier (train-mnist, train-cifar), a folder with one subfolder of
    images per class or a CSV of path,label; for a text classifier, a folder of class
    subfolders of .txt files or a CSV of text,label; for a forecaster (train-sequence), a CSV
    with the series.

    Example: dlkit evaluate --model models/pets holdout/ --plots report/ --json > scores.json
    """

    COMMAND = "evaluate"

    data: str = opt(help="Labelled data: a folder of class subfolders, or a CSV file.",
                    argument=True, metavar="DATA")
    model: Path = opt(Path("models/cifar"), "Model folder to evaluate.", flags=("-m",))
    top_k: int = opt(5, "Classifiers: also report top-K accuracy.", flags=("-k",), min=1,
                     max=1000)
    plots: Path | None = opt(None, "Write confusion_matrix.png and worst_mistakes.png (or the "
                             "forecast plot) into this folder.")
    batch_size: int = opt(64, "Examples per prediction batch.", flags=("-b",), min=1,
                          max=4096)
    path_column: str = opt("path", "Image CSV: the column with the image paths (relative to "
                           "the CSV's folder).")
    text_column: str = opt("text", "Text CSV: the column with the texts.")
    label_column: str = opt("label", "CSV: the column with the labels.")
    column: str | None = opt(None, "Forecaster CSV: the series column (default: the one the "
                             "model was trained on).")
    backend: Backend = backend_option()
