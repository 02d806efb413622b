"""`dlkit evaluate` on an image classifier's model folder (train-mnist, train-cifar).

The labelled images (a folder of class subfolders, or a CSV of `path,label`) go through
classify-image's own loading and pipeline, so the accuracy is the one `classify-image` would
give on those files; the scores are `dlkit.core.evaluation`'s, plus a grid of the most confident
mistakes (true and predicted label on each) with `--plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.console import Report, warn
from dlkit.core.errors import UsageError
from dlkit.core.evaluation import EvaluateConfig, class_indices, classification_scores
from dlkit.image_classifier.classify import load_classifier, probabilities
from dlkit.image_classifier.config import ClassifyImageConfig

WORST = 25  # images in the worst-mistakes grid


def evaluate_image_classifier(config: EvaluateConfig, meta: dict[str, Any]) -> Report:
    """Accuracy and per-class scores on labelled images (see the module doc); with --plots,
    the confusion matrix and the most confident mistakes."""
    paths, names = _labelled_images(config)
    classifier = load_classifier(ClassifyImageConfig(paths=[], model=config.model,
                                                     backend=config.backend))
    truth = class_indices(names, classifier.class_names, config.data)
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
    scores = classification_scores(config, "image", classifier.class_names, truth[kept],
                                   np.concatenate(probs), len(failed))
    if config.plots is not None:
        scores.plots.append(str(_worst_mistakes([paths[i] for i in kept], truth[kept],
                                                np.concatenate(probs),
                                                classifier.class_names,
                                                Path(config.plots).expanduser())))
    return scores.report()


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
