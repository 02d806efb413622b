"""`evaluate-gan --recall`: does the generator cover the real data, not only please a classifier?

The precision-style scores of `dlkit.gan.evaluate` (recognisable, label entropy) reward a
generator that draws a few perfect images per class. Two figures here measure variety against
the real dataset instead:

- GAN-train accuracy (Shmelkov et al. 2018, "How good is my GAN?"): a fresh classifier (the
  `train-mnist` CNN) learns only from generated images, labelled with the class asked for
  (conditional) or the scoring classifier's label (unconditional), and is tested on the real
  test set. A generator that misses part of a class's variety scores low. Printed next to the
  same classifier trained the same way on as many real training images: the ceiling.
- Frechet distance (the FID of Heusel et al. 2017, in the feature space of the dlkit classifier
  used for scoring: its penultimate layer) between generated images and the real test set,
  printed next to the distance between as many real training images and the same test set,
  the floor any generator is measured against.

The share of real test images the scoring classifier calls recognisable (`recognisable_reference`)
is the ceiling of the recognisable share of `dlkit.gan.evaluate` for an unconditional
generator (a guided conditional one can draw more typical images than the real ones).

Imports TensorFlow and Keras: import inside command bodies only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from dlkit.core.errors import UsageError

GAN_TRAIN_EPOCHS = 5
BATCH = 250


@dataclass(kw_only=True)
class Recall:
    """The figures `--recall` adds (see the module doc)."""

    gan_train_accuracy: float
    gan_train_reference: float  # the same training on as many real training images
    gan_train_images: int
    real_test_images: int
    frechet_distance: float
    frechet_reference: float  # real training images against the same real test images
    frechet_ratio: float
    frechet_images: int
    recognisable_reference: float  # the recognisable share of real test images


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between two feature sets (N, D).
    The trace of the square root is that of the symmetric S_a^(1/2) S_b S_a^(1/2), so only
    symmetric eigen-decompositions are needed (no complex square roots)."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = float(np.sqrt(np.clip(cross, 0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * trace_root)


def feature_model(classifier: keras.Model) -> keras.Model:
    """The classifier up to its penultimate layer (the input of its `logits` layer); for a
    classifier with test-time augmentation, that of the model it averages."""
    inner = [layer for layer in classifier.layers if isinstance(layer, keras.Model)]
    if inner:
        classifier = inner[0]
    try:
        logits = classifier.get_layer("logits")
    except ValueError:
        logits = classifier.layers[-1]
    return keras.Model(classifier.inputs, logits.input, name="features")


def features(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images.astype(np.float32), batch_size=BATCH, verbose=0),
                      np.float64).reshape(len(images), -1)


def gan_train_accuracy(images: np.ndarray, labels: np.ndarray, real: Any,
                       num_classes: int, seed: int) -> float:
    """Train the train-mnist CNN (the image classifiers' "mnist-cnn" model, see
    `dlkit.core.registry`) on (images, labels) only; its accuracy on the real test set."""
    from dlkit.core import registry

    keras.utils.set_random_seed(seed)
    model = registry.load("model", "mnist-cnn")(tuple(images.shape[1:]), num_classes)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images.astype(np.float32), labels, batch_size=128, epochs=GAN_TRAIN_EPOCHS,
              shuffle=True, verbose=0)
    scores = model.evaluate(real.x_test.astype(np.float32), real.y_test, batch_size=BATCH,
                            verbose=0, return_dict=True)
    return float(scores["accuracy"])


def load_real(dataset: str, data_dir: Any, image_shape: list[int]) -> Any:
    """The generator's real dataset (the usual lookup: --data-dir, $DLKIT_DATA, ...)."""
    from dlkit.data.readers import load_mnist_family

    if dataset not in ("mnist", "fashion-mnist", "digits"):
        raise UsageError(f"--recall needs the generator's real dataset, and {dataset!r} is not "
                         "one dlkit reads (mnist, fashion-mnist, digits)")
    real = load_mnist_family(dataset, data_dir)
    if list(real.x_test.shape[1:]) != list(image_shape):
        raise UsageError(f"the real {dataset} images are {list(real.x_test.shape[1:])}, the "
                         f"generator's {image_shape}")
    return real


def measure(real: Any, generated: np.ndarray, labels: np.ndarray, classifier: keras.Model,
            num_classes: int, seed: int,
            recognisable: Callable[[np.ndarray], float]) -> Recall:
    """Both figures for `generated` images with their (asked-for or classifier) labels, each
    beside its real-data reference; `recognisable(images)` is the scoring classifier's
    recognisable share of some images."""
    extract = feature_model(classifier)
    n = min(len(generated), len(real.x_test), len(real.x_train))
    test = features(extract, real.x_test[:n])
    rng = np.random.default_rng(seed)
    train = features(extract, real.x_train[rng.choice(len(real.x_train), n, replace=False)])
    fake = features(extract, generated[:n])
    distance, reference = frechet_distance(fake, test), frechet_distance(train, test)
    accuracy = gan_train_accuracy(generated, labels, real, num_classes, seed)
    same_count = rng.choice(len(real.x_train), min(len(generated), len(real.x_train)),
                            replace=False)
    ceiling = gan_train_accuracy(real.x_train[same_count], real.y_train[same_count], real,
                                 num_classes, seed)
    return Recall(gan_train_accuracy=accuracy, gan_train_reference=ceiling,
                  gan_train_images=len(generated), real_test_images=len(real.x_test),
                  frechet_distance=distance, frechet_reference=reference,
                  frechet_ratio=distance / max(reference, 1e-12), frechet_images=n,
                  recognisable_reference=recognisable(real.x_test))
