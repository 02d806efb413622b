"""A model folder's model as a function of NumPy arrays, on LiteRT or TensorFlow.

`load_predictor` is how the commands that run a trained numeric model (sample-gan, sample-vae,
forecast) get it: from `model.tflite` through LiteRT when `--backend` allows (no TensorFlow
import at all), else from `model.keras` through Keras. Both give the same `Predictor`, so the
command's checks of input shapes against metadata.json and its outputs are written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core import litert
from dlkit.core.config import Backend
from dlkit.core.errors import UsageError

BATCH = 256  # examples per model call


@dataclass
class Predictor:
    """`predictor(*inputs)` runs the model on whole arrays, `BATCH` examples at a time, and
    returns its (first) output as float32."""

    run: Callable[[list[np.ndarray]], np.ndarray]
    input_shapes: list[tuple[int | None, ...]]  # per input, without the batch size
    output_shape: tuple[int | None, ...]  # the (first) output's, without the batch size
    backend: str  # "litert" or "tensorflow"
    description: str

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        count = len(inputs[0])
        parts = [self.run([x[start:start + BATCH] for x in inputs])
                 for start in range(0, count, BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def load_predictor(folder: Path, meta: dict[str, Any], backend: Backend) -> Predictor:
    """The folder's model for `--backend` (see `dlkit.core.litert.open_model` for `auto`)."""
    lite = litert.open_model(folder, meta, backend)
    if lite is not None:
        return lite_predictor(lite)
    return _keras(folder)


def _sizes(shape: tuple[int, ...]) -> tuple[int | None, ...]:
    """A shape without its batch size, None for a free size (-1 in LiteRT)."""
    return tuple(None if d is None or d < 0 else int(d) for d in shape[1:])


def lite_predictor(model: litert.LiteModel) -> Predictor:
    """A LiteRT model's `serving_default` signature as a Predictor, its inputs in the Keras
    model's order (as metadata.json recorded it)."""
    key = "serving_default"
    if key not in model.signature_keys:
        raise UsageError(f"{model.description} has no {key} signature; rewrite it with "
                         "`dlkit export`")
    names = litert.input_order(model, key)
    details = model.inputs(key)
    outputs = model.outputs(key)
    output = sorted(outputs)[0]

    def run(inputs: list[np.ndarray]) -> np.ndarray:
        feed = {name: np.ascontiguousarray(x, details[name][1])
                for name, x in zip(names, inputs, strict=True)}
        return np.asarray(model(key, **feed)[output], np.float32)

    return Predictor(run, [_sizes(details[n][0]) for n in names], _sizes(outputs[output]),
                     "litert", model.description)


def _keras(folder: Path) -> Predictor:
    from dlkit.core.artifacts import load_keras_model
    from dlkit.core.runtime import import_tensorflow

    import_tensorflow()
    model = load_keras_model(folder)

    def run(inputs: list[np.ndarray]) -> np.ndarray:
        out = model(inputs[0] if len(inputs) == 1 else inputs, training=False)
        return np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float32)

    return Predictor(run, [_sizes(tuple(t.shape)) for t in model.inputs],
                     _sizes(tuple(model.outputs[0].shape)), "tensorflow",
                     f"Keras model {folder}")
