"""`dlkit evaluate-gan`: score a generator's images with a trained classifier.

The generator is any model folder `dlkit.core.generators` opens (train-gan, train-flow), drawn
with the sampling settings its metadata records. The classifier is one trained by
`dlkit train-mnist` (or `train-cifar`) on the same kind of images. Scores: the share of samples
it labels with confidence >= the threshold ("recognisable"), the entropy of its label
histogram relative to ln(classes) ("no mode collapse") and, for conditional generators, the
share labelled as the class that was asked for. With `--recall`, the figures of
`dlkit.gan.recall` (GAN-train accuracy, Frechet distance) too.

Confidence is read against what the classifier was trained to say. A classifier trained with
label smoothing e over K classes (train-mnist's default: e = 0.2) learns to answer
1 - e + e/K (0.82) when it is sure, so no image would ever reach a 0.9 threshold; its
probabilities p are mapped back through the smoothing, (p - e/K) / (1 - e), clipped at 0 and
renormalised, before they are scored. The map is the same for every class, so labels (and the
GAN-train labelling) do not change; without smoothing it is the identity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.config import Backend
from dlkit.core.console import Report, fmt
from dlkit.core.errors import DlkitError, UsageError
from dlkit.core.generators import (
    Generator,
    generate,
    generator_tasks,
    open_generator,
    sample_labels,
)
from dlkit.gan.config import EvaluateGanConfig


@dataclass(kw_only=True)
class EvalResult:
    """evaluate-gan's scores."""

    model: str
    generator: str  # the command that trained it
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
    sampling: dict[str, Any]  # the generator's sampling settings (flow: steps, solver, ...)
    recall: dict[str, Any] | None = None

    def report(self) -> Report:
        rows = {"recognisable": self.recognisable, "label entropy": self.label_entropy,
                "mean confidence": self.mean_confidence}
        line = (f"recognisable={fmt(self.recognisable)} "
                f"label_entropy={fmt(self.label_entropy)}")
        if self.conditional_accuracy is not None:
            rows["label accuracy"] = self.conditional_accuracy
            line += f" conditional_accuracy={fmt(self.conditional_accuracy)}"
        if self.recall is not None:
            r = self.recall
            rows["recognisable, real test images"] = r["recognisable_reference"]
            rows["GAN-train accuracy (real images)"] = (
                f"{fmt(r['gan_train_accuracy'])} ({fmt(r['gan_train_reference'])})")
            rows["Frechet distance (real train vs test)"] = (
                f"{r['frechet_distance']:.4g} ({r['frechet_reference']:.4g}; "
                f"{r['frechet_ratio']:.2f}x)")
            line += (f" gan_train_accuracy={fmt(r['gan_train_accuracy'])} "
                     f"frechet_ratio={r['frechet_ratio']:.3g}")
        return Report(f"evaluate-gan {self.model} ({self.count} samples)", rows, line,
                      asdict(self))


def evaluate_gan(config: EvaluateGanConfig) -> Report:
    """Generate `count` samples (every class equally when conditional) and score them."""
    from dlkit.core.artifacts import load_keras_model, load_metadata

    # TensorFlow runs the classifier anyway; the generator runs on it too
    gen = open_generator(config.model, Backend.tensorflow, truncation=config.truncation)
    cls_meta = load_metadata(config.classifier)
    _check_compatible(gen, cls_meta, config.classifier)
    real = None
    if config.recall:  # read before any work: a missing dataset is the first error
        from dlkit.gan import recall

        real = recall.load_real(gen.dataset, config.data_dir, gen.image_shape)
    classifier = load_keras_model(config.classifier)
    labels = sample_labels(gen, config.count, None)
    images = generate(gen, config.count, config.seed, labels)
    probs = _probabilities(classifier, cls_meta, images)
    result = _score(config, gen, cls_meta, probs, labels)
    if real is not None:
        result.recall = asdict(_recall(config, gen, classifier, cls_meta, real))
    return result.report()


def _predict(classifier: Any, images: np.ndarray) -> np.ndarray:
    return np.asarray(classifier.predict(images.astype(np.float32), batch_size=250, verbose=0))


def _probabilities(classifier: Any, cls_meta: dict[str, Any], images: np.ndarray) -> np.ndarray:
    """The classifier's class probabilities for `images`, on the scale of an unsmoothed one."""
    return unsmooth(_predict(classifier, images), _label_smoothing(cls_meta))


def _label_smoothing(cls_meta: dict[str, Any]) -> float:
    """The label smoothing the classifier was trained with (metadata.json's training section;
    0 when absent or not a number in [0, 1))."""
    value = (cls_meta.get("training") or {}).get("label_smoothing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    value = float(value)
    return value if 0.0 <= value < 1.0 else 0.0


def unsmooth(probs: np.ndarray, smoothing: float) -> np.ndarray:
    """Probabilities of a classifier trained with label smoothing `smoothing`, mapped back to
    the scale of an unsmoothed one (see the module doc): (p - e/K) / (1 - e), clipped at 0 and
    renormalised per row."""
    if smoothing <= 0.0 or probs.ndim != 2:
        return probs
    floor = smoothing / probs.shape[1]
    mapped = np.clip((probs - floor) / (1.0 - smoothing), 0.0, None)
    totals = mapped.sum(axis=1, keepdims=True)
    return np.where(totals > 0, mapped / np.where(totals > 0, totals, 1.0), probs)


def _recall(config: EvaluateGanConfig, gen: Generator, classifier: Any,
            cls_meta: dict[str, Any], real: Any) -> Any:
    """GAN-train and Frechet figures from --train-count new images (another seed than the
    scored ones), labelled as asked (conditional) or as the classifier sees them."""
    from dlkit.gan import recall

    labels = sample_labels(gen, config.train_count, None)
    images = generate(gen, config.train_count, config.seed + 1, labels)
    if labels is None:
        labels = _predict(classifier, images).argmax(axis=1)

    def recognisable(some: np.ndarray) -> float:
        confidence = _probabilities(classifier, cls_meta, some).max(axis=1)
        return float((confidence >= config.threshold).mean())

    return recall.measure(real, images, labels, classifier, len(cls_meta["class_names"]),
                          config.seed, recognisable)


def _check_compatible(gen: Generator, cls_meta: dict[str, Any], folder: Path) -> None:
    shape = list(cls_meta.get("input_shape") or [])
    if ("class_names" not in cls_meta or not shape
            or cls_meta.get("task") in generator_tasks()):
        raise UsageError(f"{folder} is not a classifier model folder; train one with "
                         f"`dlkit train-mnist --dataset {gen.dataset or 'mnist'}`")
    if shape != gen.image_shape:
        raise UsageError(f"the classifier takes {shape} images but the generator makes "
                         f"{gen.image_shape}; use a classifier trained on {gen.dataset}")
    if gen.conditional and len(cls_meta["class_names"]) != len(gen.class_names):
        raise UsageError(f"the classifier knows {len(cls_meta['class_names'])} classes, the "
                         f"generator {len(gen.class_names)}; use one trained on {gen.dataset}")


def _score(config: EvaluateGanConfig, gen: Generator, cls_meta: dict[str, Any], probs: np.ndarray,
           labels: np.ndarray | None) -> EvalResult:
    if probs.ndim != 2 or not np.all(np.isfinite(probs)):
        raise DlkitError("the classifier returned unusable scores; retrain it")
    names = list(cls_meta["class_names"])
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    counts = np.bincount(predicted, minlength=len(names))
    share = counts / counts.sum()
    nonzero = share[share > 0]
    entropy = max(0.0, float(-(nonzero * np.log(nonzero)).sum() / math.log(len(names))))
    cond_acc = per_class = None
    if labels is not None:
        hits = predicted == labels
        cond_acc = float(hits.mean())
        per_class = {gen.class_names[k]: float(hits[labels == k].mean())
                     for k in range(len(gen.class_names)) if np.any(labels == k)}
    return EvalResult(model=str(gen.folder), generator=gen.task,
                      classifier=str(config.classifier), dataset=gen.dataset,
                      classifier_dataset=str(cls_meta.get("dataset", "")),
                      conditional=gen.conditional, count=config.count, seed=config.seed,
                      threshold=config.threshold, truncation=config.truncation,
                      recognisable=float((confidence >= config.threshold).mean()),
                      label_entropy=entropy, mean_confidence=float(confidence.mean()),
                      label_histogram={names[k]: int(c) for k, c in enumerate(counts)},
                      conditional_accuracy=cond_acc, per_class_accuracy=per_class,
                      sampling=gen.settings)
