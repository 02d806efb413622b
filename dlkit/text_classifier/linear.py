"""The closed-form start of the `bow` text classifier's linear layer.

Before the first gradient step, the `probabilities` layer (a softmax over a linear map of the
unit-length tf-idf vector) is set to a multinomial logistic regression fitted by L-BFGS
(scikit-learn) on the features the model itself computes for the training texts. The
regularisation C is chosen by cross-validated log loss on the training texts only, so that
separable data gets a confident fit and noisy data a regularised one. The epochs that follow
fine-tune it as before (Adam, dropout), starting from the convex problem's solution instead of
from random weights: 80 short separable texts are then right and confident after 3 epochs,
where Adam alone was still wrong (issue 26).

Imports TensorFlow, Keras and scikit-learn: import inside command bodies only.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

# The regularisation strengths tried (C = 1 / penalty; the features have unit length).
C_GRID = tuple(float(c) for c in np.logspace(-1, 3, 9))
FOLDS = 5  # at most; fewer when the smallest class has fewer training texts
MAX_ITER = 300  # L-BFGS iterations per fit (large C on separable data need not converge)
TOL = 1e-3  # L-BFGS gradient tolerance: 1e-4 (the default) took 9x longer for the same C
BATCH_CELLS = 1 << 24  # features computed this many floats at a time (64 MB)


@dataclass
class LinearStart:
    """What the closed-form start did (`None` C: it was skipped, and why)."""

    c: float | None
    folds: int
    seconds: float
    note: str = ""

    def describe(self) -> str:
        if self.c is None:
            return f"no closed-form start ({self.note})"
        chosen = f"{self.folds}-fold cross-validated" if self.folds > 1 else "fixed"
        return (f"closed-form start: logistic regression on the tf-idf features, C={self.c:g} "
                f"({chosen}), {self.seconds:.1f} s")


def tfidf_features(model: keras.Model, texts: list[str]) -> Any:
    """The model's own unit-length tf-idf vectors of `texts`, as a SciPy CSR matrix (the
    `unit_length` layer's output, computed a bounded batch at a time)."""
    import scipy.sparse as sp
    import tensorflow as tf

    features = keras.Model(model.inputs, model.get_layer("unit_length").output)
    width = int(features.output.shape[-1])
    rows = max(1, BATCH_CELLS // max(width, 1))
    parts = [sp.csr_matrix(np.asarray(features(tf.constant(texts[i:i + rows], tf.string),
                                               training=False), np.float32))
             for i in range(0, len(texts), rows)]
    return sp.vstack(parts, format="csr")


def fit_logistic(x: Any, y: np.ndarray, sample_weight: np.ndarray | None = None
                 ) -> tuple[Any, float, int]:
    """A multinomial logistic regression of `y` on `x`, C chosen by stratified k-fold log
    loss (k = min(FOLDS, smallest class count); a fixed C=10 when a class has one text).
    Returns the fitted scikit-learn model, its C and the number of folds."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from threadpoolctl import threadpool_limits

    folds = min(FOLDS, int(np.bincount(y)[np.unique(y)].min()))
    # One thread: on a busy 2-core machine OpenBLAS's and OpenMP's spinning threads made
    # these small fits 40x slower than one thread.
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # scikit-learn 1.9 announces that C_ becomes a float in 1.10: np.ravel reads both.
        warnings.filterwarnings("ignore", "The fitted attributes", FutureWarning)
        if folds < 2:
            fitted = LogisticRegression(C=10.0, max_iter=MAX_ITER, tol=TOL)
            fitted.fit(x, y, sample_weight=sample_weight)
            return fitted, 10.0, 1
        fitted = LogisticRegressionCV(Cs=list(C_GRID), l1_ratios=(0.0,), cv=folds,
                                      scoring="neg_log_loss", max_iter=MAX_ITER, tol=TOL)
        fitted.fit(x, y, sample_weight=sample_weight)
        return fitted, float(np.ravel(fitted.C_)[0]), folds


def softmax_weights(fitted: Any, num_classes: int, examples: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (features, num_classes), bias) of a softmax layer that gives the fitted
    model's probabilities. A binary fit's one logit w becomes (-w/2, w/2); a class absent from
    the training texts gets a zero kernel and a bias below every other (less than one text's
    worth of prior)."""
    coef, intercept = np.asarray(fitted.coef_), np.asarray(fitted.intercept_)
    if coef.shape[0] == 1:  # two classes: scikit-learn fits one logit
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate(
            [-intercept, intercept]) / 2
    kernel = np.zeros((coef.shape[1], num_classes), np.float32)
    bias = np.full(num_classes, intercept.min() - np.log(examples + 1.0), np.float32)
    kernel[:, fitted.classes_] = coef.T
    bias[fitted.classes_] = intercept
    return kernel, bias


def start_linear_layer(model: keras.Model, texts: list[str], labels: np.ndarray,
                       sample_weight: np.ndarray | None = None) -> LinearStart:
    """Set the model's `probabilities` layer to the logistic regression of `labels` on the
    model's tf-idf features of `texts` (skipped when the training texts hold one class)."""
    started = time.perf_counter()
    if len(np.unique(labels)) < 2:
        return LinearStart(None, 0, 0.0, "the training texts hold a single class")
    fitted, c, folds = fit_logistic(tfidf_features(model, texts), labels, sample_weight)
    layer = model.get_layer("probabilities")
    layer.set_weights(list(softmax_weights(fitted, layer.units, len(labels))))
    return LinearStart(c, folds, time.perf_counter() - started)
