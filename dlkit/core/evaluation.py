"""`dlkit evaluate`: measure a trained model on labelled data the user brings.

The model folder's task decides what is measured, by the family that trained it: each registers
its measure as the "evaluator" of its tasks (`dlkit.core.registry`), called as
`evaluator(config, metadata)` and returning the command's `Report`:

- image classifiers (train-mnist, train-cifar): a folder of class subfolders or a CSV of
  `path,label`; the images go through classify-image's own pipeline, so the accuracy is the one
  `classify-image` would give on those files;
- text classifiers: a folder of class subfolders of `.txt` files or a CSV of `text,label`;
- forecasters (train-sequence): a CSV with the series; every window is forecast and scored with
  MAE/RMSE beside the naive and seasonal-naive forecasts.

Classifiers get accuracy, top-k accuracy and scikit-learn's per-class precision, recall and F1
(a table on stderr, everything with --json), and with `--plots DIR` a confusion matrix (and, for
images, a grid of the most confident mistakes): the scores shared by every classifier are here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dlkit.core import registry
from dlkit.core.config import Backend, Config, backend_option, opt
from dlkit.core.console import Report, err, fmt, is_quiet
from dlkit.core.errors import UsageError

if TYPE_CHECKING:
    import numpy as np


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


@dataclass(kw_only=True)
class ClassificationScores:
    """What `evaluate` reports for a classifier."""

    model: str
    task: str
    data: str
    examples: int
    skipped: int
    accuracy: float
    top_k: int
    top_k_accuracy: float
    per_class: dict[str, dict[str, float]]
    confusion_matrix: list[list[int]]
    plots: list[str] = field(default_factory=list)

    def report(self) -> Report:
        _per_class_table(self.per_class)
        return Report(f"evaluate {self.model} on {self.data}", {
            "examples": self.examples, "skipped (unreadable)": self.skipped,
            "accuracy": self.accuracy, f"top-{self.top_k} accuracy": self.top_k_accuracy},
            f"accuracy={fmt(self.accuracy)} top_{self.top_k}_accuracy="
            f"{fmt(self.top_k_accuracy)} examples={self.examples}", asdict(self))


def evaluate(config: EvaluateConfig) -> Report:
    """Measure the model on DATA with its family's evaluator (see the module doc)."""
    from dlkit.core.artifacts import check_output_file, load_metadata

    meta = load_metadata(config.model, train_hint=f"dlkit train-cifar --output {config.model}")
    if config.plots is not None:
        check_output_file("--plots", config.plots, folder=True,
                          inputs=[config.data, config.model])
    task = meta.get("task")
    evaluator = registry.load("evaluator", task) if isinstance(task, str) else None
    if evaluator is None:
        raise UsageError(f"{config.model} holds a {task} model; evaluate measures image and "
                         "text classifiers and forecasters")
    return evaluator(config, meta)


# ---------------------------------------------------------------------------------------------
# Classification scores, shared

def class_indices(labels: list[str], names: list[str], data: str) -> np.ndarray:
    """The model's class index of every label; exit 2 naming the labels it does not know."""
    import numpy as np

    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise UsageError(f"{data} has classes the model does not know ({shown}); the model "
                         f"knows {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}")
    return np.array([index[label] for label in labels], np.int64)


def classification_scores(config: EvaluateConfig, kind: str, names: list[str],
                          truth: np.ndarray, probs: np.ndarray,
                          skipped: int) -> ClassificationScores:
    """Accuracy, top-k accuracy, per-class scores and the confusion matrix of `probs` (one row
    of class probabilities per example) against `truth` (class indices); with --plots, the
    confusion matrix picture too."""
    import numpy as np
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    n = len(names)
    predicted = probs.argmax(axis=1)
    k = min(config.top_k, n)
    top = np.argsort(-probs, axis=1)[:, :k]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(range(n)), zero_division=0)
    per_class = {names[c]: {"precision": float(precision[c]), "recall": float(recall[c]),
                            "f1": float(f1[c]), "support": int(support[c])} for c in range(n)}
    matrix = confusion_matrix(truth, predicted, labels=list(range(n)))
    scores = ClassificationScores(
        model=str(config.model), task=kind, data=str(config.data), examples=len(truth),
        skipped=skipped, accuracy=float((predicted == truth).mean()), top_k=k,
        top_k_accuracy=float((top == truth[:, None]).any(axis=1).mean()), per_class=per_class,
        confusion_matrix=matrix.tolist())
    if config.plots is not None:
        from dlkit.core import plots

        folder = Path(config.plots).expanduser()
        folder.mkdir(exist_ok=True)
        scores.plots.append(str(plots.confusion_matrix(
            matrix, names, folder / "confusion_matrix.png", f"Confusion matrix ({config.data})")))
    return scores


def _per_class_table(per_class: dict[str, dict[str, float]]) -> None:
    """Precision, recall, F1 and support per class on stderr (not with --quiet)."""
    if is_quiet():
        return
    from rich.table import Table

    table = Table("class", "precision", "recall", "F1", "support", title="per class",
                  title_justify="left")
    for name, row in per_class.items():
        table.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}",
                      f"{row['f1']:.4f}", str(row["support"]))
    err.print(table)
