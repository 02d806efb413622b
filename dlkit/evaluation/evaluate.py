"""`dlkit evaluate`: measure a trained model on labelled data the user brings.

The model folder's task decides what is measured:

- image classifiers (train-mnist, train-cifar): a folder of class subfolders or a CSV of
  `path,label`; the images go through classify-image's own pipeline, so the accuracy is the one
  `classify-image` would give on those files;
- text classifiers: a folder of class subfolders of `.txt` files or a CSV of `text,label`;
- forecasters (train-sequence): a CSV with the series; every window is forecast and scored with
  MAE/RMSE beside the naive and seasonal-naive forecasts.

Classifiers get accuracy, top-k accuracy and scikit-learn's per-class precision, recall and F1
(a table on stderr, everything with --json), and with `--plots DIR` a confusion matrix and a grid
of the most confident mistakes (true and predicted label on each).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.console import Report, err, fmt, is_quiet, warn
from dlkit.core.errors import UsageError
from dlkit.evaluation.config import EvaluateConfig

CLASSIFIERS = ("train-mnist", "train-cifar", "train-text-classifier")
WORST = 25  # images in the worst-mistakes grid


@dataclass
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


@dataclass
class ForecastScores:
    """What `evaluate` reports for a forecaster (in the series' units)."""

    model: str
    data: str
    column: str
    windows: int
    mae: float
    rmse: float
    naive_mae: float
    naive_rmse: float
    seasonal_naive_mae: float
    seasonal_naive_rmse: float
    period: int
    plots: list[str] = field(default_factory=list)

    def report(self) -> Report:
        return Report(f"evaluate {self.model} on {self.data}", {
            "windows": self.windows, "MAE / RMSE": f"{self.mae:.4g} / {self.rmse:.4g}",
            "naive MAE / RMSE": f"{self.naive_mae:.4g} / {self.naive_rmse:.4g}",
            f"seasonal naive (period {self.period}) MAE / RMSE":
                f"{self.seasonal_naive_mae:.4g} / {self.seasonal_naive_rmse:.4g}"},
            f"rmse={self.rmse:.4g} naive_rmse={self.naive_rmse:.4g} "
            f"seasonal_naive_rmse={self.seasonal_naive_rmse:.4g} windows={self.windows}",
            asdict(self))


def evaluate(config: EvaluateConfig) -> Report:
    """Measure the model on DATA (see the module doc)."""
    from dlkit.core.artifacts import check_output_file, load_metadata

    meta = load_metadata(config.model, train_hint=f"dlkit train-cifar --output {config.model}")
    if config.plots is not None:
        check_output_file("--plots", config.plots, folder=True,
                          inputs=[config.data, config.model])
    task = meta.get("task")
    if task in ("train-mnist", "train-cifar"):
        return _images(config, meta).report()
    if task == "train-text-classifier":
        return _texts(config, meta).report()
    if task == "train-sequence":
        return _series(config, meta).report()
    raise UsageError(f"{config.model} holds a {task} model; evaluate measures image and text "
                     "classifiers and forecasters")


# ---------------------------------------------------------------------------------------------
# Image classifiers

def _images(config: EvaluateConfig, meta: dict[str, Any]) -> ClassificationScores:
    from dlkit.image_classifier.classify import load_classifier, probabilities
    from dlkit.image_classifier.config import ClassifyImageConfig

    paths, names = _labelled_images(config)
    classifier = load_classifier(ClassifyImageConfig(paths=[], model=config.model,
                                                     backend=config.backend))
    truth = _indices(names, classifier.class_names, config.data)
    failed: dict[int, str] = {}
    kept, probs = [], []
    for indices, batch in probabilities(classifier, paths, config.batch_size,
                                        lambda i, why: failed.__setitem__(i, why)):
        kept.extend(indices.tolist())
        probs.append(batch)
    for i in sorted(failed):
        warn(f"skipped {paths[i]}: {failed[i]}")
    if not kept:
        raise UsageError(f"no readable images in {config.data}")
    scores = _classification(config, "image", classifier.class_names, truth[kept],
                             np.concatenate(probs), len(failed))
    if config.plots is not None:
        scores.plots.append(str(_worst_mistakes([paths[i] for i in kept], truth[kept],
                                                np.concatenate(probs),
                                                classifier.class_names,
                                                Path(config.plots).expanduser())))
    return scores


def _labelled_images(config: EvaluateConfig) -> tuple[list[str], list[str]]:
    """(image paths, their label names) from a folder of class subfolders or a CSV."""
    from dlkit.data.classes import class_folders
    from dlkit.data.images import IMAGE_KINDS, find_images

    data = Path(config.data).expanduser()
    if data.is_dir():
        pairs = [(str(p), folder.name) for folder, paths in
                 class_folders(data, find_images, f"images ({IMAGE_KINDS})") for p in paths]
    else:
        from dlkit.data.tabular import column_index, read_rows

        header, rows = read_rows(data)
        p = column_index(header, config.path_column, str(data), "--path-column")
        k = column_index(header, config.label_column, str(data), "--label-column")
        pairs = [(str(data.parent / row[p].strip()), row[k].strip()) for row in rows
                 if len(row) > max(p, k) and row[p].strip() and row[k].strip()]
    if not pairs:
        raise UsageError(f"{data} holds no labelled images; give a folder with one subfolder "
                         "of images per class, or a CSV of path,label")
    return [p for p, _ in pairs], [n for _, n in pairs]


def _worst_mistakes(paths: list[str], truth: np.ndarray, probs: np.ndarray,
                    names: list[str], folder: Path) -> Path:
    """The most confident wrong predictions, captioned with the true and predicted label."""
    from dlkit.core import plots
    from dlkit.data.images import ImageError, read_image, resize

    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != truth)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]])][:WORST]
    shown, titles = [], []
    for i in wrong:
        try:
            image = read_image(Path(paths[i]))
        except ImageError:
            continue
        side = 96 / max(image.shape[:2])
        shown.append(resize(image, (max(1, round(image.shape[0] * side)),
                                    max(1, round(image.shape[1] * side)))))
        titles.append(f"true: {names[truth[i]]}\npred: {names[predicted[i]]} "
                      f"({probs[i, predicted[i]]:.0%})")
    path = folder / "worst_mistakes.png"
    folder.mkdir(exist_ok=True)
    title = "Most confident mistakes" if shown else "No mistakes"
    return plots.captioned_grid(shown, titles, path, title, ["red"] * len(shown), columns=5)


# ---------------------------------------------------------------------------------------------
# Text classifiers

def _texts(config: EvaluateConfig, meta: dict[str, Any]) -> ClassificationScores:
    from dlkit.core.artifacts import load_keras_model
    from dlkit.core.runtime import import_tensorflow

    import_tensorflow()
    from dlkit.text_classifier import models  # noqa: F401 (registers the custom layers)
    from dlkit.text_classifier.train import predict, read_csv, read_folder

    data = Path(config.data).expanduser()
    texts = (read_folder(data, at_least_two=False) if data.is_dir() else
             read_csv(str(data), config.text_column, config.label_column, at_least_two=False))
    names = [str(n) for n in meta.get("class_names", [])]
    truth = _indices([texts.class_names[k] for k in texts.labels], names, config.data)
    probs = predict(load_keras_model(config.model), texts.texts, config.batch_size)
    return _classification(config, "text", names, truth, probs, 0)


# ---------------------------------------------------------------------------------------------
# Classification scores, shared

def _indices(labels: list[str], names: list[str], data: str) -> np.ndarray:
    """The model's class index of every label; exit 2 naming the labels it does not know."""
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise UsageError(f"{data} has classes the model does not know ({shown}); the model "
                         f"knows {', '.join(names[:10])}{', ...' if len(names) > 10 else ''}")
    return np.array([index[label] for label in labels], np.int64)


def _classification(config: EvaluateConfig, kind: str, names: list[str], truth: np.ndarray,
                    probs: np.ndarray, skipped: int) -> ClassificationScores:
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
        str(config.model), kind, str(config.data), len(truth), skipped,
        float((predicted == truth).mean()), k, float((top == truth[:, None]).any(axis=1).mean()),
        per_class, matrix.tolist())
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


# ---------------------------------------------------------------------------------------------
# Forecasters

def _series(config: EvaluateConfig, meta: dict[str, Any]) -> ForecastScores:
    from dlkit.core.runtime import import_tensorflow
    from dlkit.core.serving import load_predictor
    from dlkit.data.tabular import read_series

    import_tensorflow()
    from dlkit.forecaster.train import errors, forecast_plot, naive_forecasts, windows

    try:
        w, h, period = int(meta["window"]), int(meta["horizon"]), int(meta.get("period") or 1)
        column = config.column or str(meta["column"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{config.model}/metadata.json lacks the forecaster's window, horizon "
                         "or column; retrain the model") from None
    series = read_series(config.data, column, meta.get("time_column"), time_optional=True)
    values = series.values
    x, y = windows(values, 0, len(values), w, h)
    firsts = np.arange(w, len(values) - h + 1)
    keep = firsts >= period * int(np.ceil(h / period))  # where the seasonal naive is defined
    if not keep.any():
        raise UsageError(f"{series.source} has {len(values)} values; evaluating needs more than "
                         f"--window + --horizon ({w + h}) and the period ({period})")
    x, y, firsts = x[keep], y[keep], firsts[keep]
    pred = load_predictor(config.model, meta, config.backend)(x[..., None].astype("float32"))
    naive, seasonal = naive_forecasts(values, x, firsts, h, period)
    (mae, rmse), (n_mae, n_rmse), (s_mae, s_rmse) = (errors(pred, y), errors(naive, y),
                                                     errors(seasonal, y))
    scores = ForecastScores(str(config.model), str(config.data), column, len(x), mae, rmse,
                            n_mae, n_rmse, s_mae, s_rmse, period)
    if config.plots is not None:
        folder = Path(config.plots).expanduser()
        folder.mkdir(exist_ok=True)
        path = folder / "forecast_vs_actual.png"
        forecast_plot(series, firsts, y, pred, naive, seasonal, period, path)
        scores.plots.append(str(path))
    return scores
