"""Recurrent forecasters for `train-sequence`: windows of past values in, the next values out.

`build` makes the network that works in normalised units (the seed's `SimpleRNN(50)` + `Dense`);
`with_scaling` wraps it so the saved model takes and returns raw values, the normalisation
(fitted on the training part only) living inside the model as two fixed `Normalization` layers;
`for_serving` unrolls the recurrence over the fixed window for the saved model.
"""

from __future__ import annotations

import keras

_CELLS = {"simplernn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM,
          "gru": keras.layers.GRU}


UNROLL_MAX = 512  # longest window whose saved model is unrolled (see `for_serving`)


def build(arch: str, window: int, horizon: int, units: int = 50,
          dropout: float = 0.0, unroll: bool = False) -> keras.Model:
    """(batch, window, 1) normalised values -> (batch, horizon) normalised forecasts."""
    inputs = keras.Input((window, 1), name="window")
    x = _CELLS[arch](units, name=arch, unroll=unroll)(inputs)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(horizon, dtype="float32", name="forecast")(x)
    return keras.Model(inputs, outputs, name=f"sequence_{arch}")


def for_serving(core: keras.Model, arch: str, horizon: int, units: int) -> keras.Model:
    """The trained network with its recurrence unrolled over the (fixed) window, same weights
    and same numbers: a graph without a while loop, which LiteRT's built-in operations can run
    (so the folder gets its `model.tflite`). Windows longer than UNROLL_MAX stay rolled."""
    window = core.input_shape[1]
    if window > UNROLL_MAX:
        return core
    unrolled = build(arch, window, horizon, units, unroll=True)
    unrolled.set_weights(core.get_weights())
    return unrolled


def with_scaling(core: keras.Model, mean: float, std: float) -> keras.Model:
    """Raw values in, raw forecasts out: normalise, run `core`, undo the normalisation."""
    window = core.input_shape[1]
    inputs = keras.Input((window, 1), name="values")
    scaled = keras.layers.Normalization(axis=None, mean=mean, variance=std ** 2,
                                        name="normalise")(inputs)
    forecast = core(scaled)
    outputs = keras.layers.Normalization(axis=None, mean=mean, variance=std ** 2, invert=True,
                                         name="denormalise", dtype="float32")(forecast)
    return keras.Model(inputs, outputs, name="forecaster")
