"""Forecasters for `train-sequence`: windows of past values in, the next values out.

The network works on transformed, normalised values. `build` makes a hybrid of a linear
autoregression and a recurrent network (Zhang 2003's AR + neural-network hybrid): an AR(p) part,
fitted by least squares on the training part and frozen, plus a recurrent cell (the seed's
`SimpleRNN`, an LSTM or a GRU) whose output layer starts at zero, so training begins at the AR
forecast and the recurrent part learns what the linear one misses. Several such recurrent
members, each trained on its own loss, are averaged (an ensemble: on a few hundred points one
network's forecast depends much on its seed). `with_scaling` wraps it so
the saved model takes and returns raw values: the variance-stabilising transform (square root or
log, chosen on the validation part) and the normalisation (fitted on the training part only)
live inside the model as fixed operations and layers (stock Keras only: plain Keras loads
the saved `model.keras`). `for_serving` unrolls the recurrence for the saved model.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

_CELLS = {"simplernn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM,
          "gru": keras.layers.GRU}


UNROLL_MAX = 512  # longest window whose saved model is unrolled (see `for_serving`)


def forward(kind: str, values: np.ndarray) -> np.ndarray:
    """The transform `transform_values(x, kind)` computes, in NumPy (negative values clip to 0)."""
    if kind == "sqrt":
        return np.sqrt(np.maximum(values, 0.0))
    if kind == "log":
        return np.log1p(np.maximum(values, 0.0))
    return values


def inverse(kind: str, values: np.ndarray) -> np.ndarray:
    """What `transform_values(x, kind, inverse=True)` computes, in NumPy."""
    if kind == "sqrt":
        return np.square(np.maximum(values, 0.0))
    if kind == "log":
        return np.expm1(np.maximum(values, 0.0))
    return values


def transform_values(x: Any, kind: str, inverse: bool = False) -> Any:
    """`forward(kind)` (or, with `inverse`, `inverse(kind)`) as Keras operations. On the symbolic
    input of a functional model they become nodes of that model, which plain Keras saves and
    loads (no custom layer: a `model.keras` opens without dlkit). Negative inputs clip to 0
    first (the transforms are chosen only for series without negative values), so a forecast is
    never NaN."""
    if kind == "none":
        return x
    x = ops.relu(x)
    if inverse:
        return ops.square(x) if kind == "sqrt" else ops.expm1(x)
    return ops.sqrt(x) if kind == "sqrt" else ops.log1p(x)


def ar_fit(x: np.ndarray, y: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares AR(order) on windows x (N, window) -> y (N, horizon): one linear
    regression per horizon step on the last `order` values. Returns (kernel, bias)."""
    design = np.c_[x[:, -order:], np.ones(len(x))]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return coef[:-1], coef[-1]


def ar_predict(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return x[:, -len(kernel):] @ kernel + bias


def build(arch: str, window: int, horizon: int, units: int = 50, ar_order: int = 0,
          members: int = 1, unroll: bool = False) -> keras.Model:
    """(batch, window, 1) normalised values -> normalised forecasts, (batch, horizon) for one
    member, (batch, members, horizon) for an ensemble (each member its own recurrent network;
    the mean squared error over members is the mean of their own losses). With
    `ar_order`, every member adds its correction to one frozen linear AR part (set its weights
    with `set_ar`), its output layer starting at zero. `average` makes the served model."""
    inputs = keras.Input((window, 1), name="window")
    linear = None
    if ar_order:
        recent = keras.layers.Reshape((ar_order,), name="recent")(
            keras.layers.Cropping1D((window - ar_order, 0), name="last_values")(inputs))
        linear = keras.layers.Dense(horizon, dtype="float32", name="autoregression",
                                    trainable=False)(recent)
    outputs = []
    for m in range(members):
        suffix = f"_{m}" if members > 1 else ""
        x = _CELLS[arch](units, name=f"{arch}{suffix}", unroll=unroll)(inputs)
        out = keras.layers.Dense(horizon, dtype="float32", name=f"forecast{suffix}",
                                 kernel_initializer="zeros" if ar_order else "glorot_uniform")(x)
        if linear is not None:
            out = keras.layers.Add(name=f"hybrid{suffix}", dtype="float32")([linear, out])
        outputs.append(out)
    if members == 1:
        return keras.Model(inputs, outputs[0], name=f"sequence_{arch}")
    stacked = keras.layers.Concatenate(axis=1, name="members", dtype="float32")(
        [keras.layers.Reshape((1, horizon), name=f"member_{m}")(out)
         for m, out in enumerate(outputs)])
    return keras.Model(inputs, stacked, name=f"sequence_{arch}")


def average(core: keras.Model) -> keras.Model:
    """The ensemble's mean forecast, (batch, horizon) (the model itself for one member)."""
    if len(core.output.shape) == 2:
        return core
    mean = keras.layers.GlobalAveragePooling1D(name="ensemble_mean", dtype="float32")(
        core.output)
    return keras.Model(core.input, mean, name=core.name)


def set_ar(model: keras.Model, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Put the least-squares AR coefficients into the frozen `autoregression` layer."""
    model.get_layer("autoregression").set_weights([kernel.astype("float32"),
                                                   bias.astype("float32")])


def for_serving(core: keras.Model, arch: str, horizon: int, units: int, ar_order: int = 0,
                members: int = 1) -> keras.Model:
    """The trained ensemble's mean, its recurrence unrolled over the (fixed) window, same
    weights and same numbers: a graph without a while loop, which LiteRT's built-in operations
    can run (so the folder gets its `model.tflite`). Windows longer than UNROLL_MAX stay
    rolled."""
    window = core.input_shape[1]
    if window > UNROLL_MAX:
        return average(core)
    unrolled = build(arch, window, horizon, units, ar_order, members, unroll=True)
    unrolled.set_weights(core.get_weights())
    return average(unrolled)


def with_scaling(core: keras.Model, mean: float, std: float,
                 transform: str = "none") -> keras.Model:
    """Raw values in, raw forecasts out: transform, normalise, run `core`, undo both."""
    window = core.input_shape[1]
    inputs = keras.Input((window, 1), name="values")
    x = transform_values(inputs, transform)
    scaled = keras.layers.Normalization(axis=None, mean=mean, variance=std ** 2,
                                        name="normalise")(x)
    forecast = core(scaled)
    x = keras.layers.Normalization(axis=None, mean=mean, variance=std ** 2, invert=True,
                                   name="denormalise", dtype="float32")(forecast)
    outputs = transform_values(x, transform, inverse=True)
    return keras.Model(inputs, outputs, name="forecaster")
