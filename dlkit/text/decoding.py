"""Incremental decoding of a character model, driven from Python on either backend.

The model's decoding step (`dlkit.text.models.decoding_functions`) is a set of named
fixed-shape functions: `step` for LSTM/GRU models, `prefill` and `step` for transformers. The
same functions run under TensorFlow (`tf.function`s) or LiteRT (the signatures of the folder's
`decoder.tflite`); `Decoder` only needs `run(name, **inputs) -> {"logits", "state" | "cache"}`,
so the decoding logic (the prompt, the position, refilling a full window) is written once and
both backends give the same characters. NumPy only: no TensorFlow import here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

DECODER_FILE = "decoder.tflite"

Run = Callable[..., dict[str, Any]]


class Decoder:
    """`start(prompt ids)` then `step(token)`: next-character logits, one call per character."""

    def __init__(self, run: Run, shapes: dict[str, dict[str, tuple[int, ...]]]) -> None:
        """`shapes`: each function's input shapes ({"step": {"token": (1,), ...}, ...})."""
        self.run = run
        self.transformer = "prefill" in shapes
        if self.transformer:
            self.size = int(shapes["prefill"]["ids"][1])
        else:
            self.state_shape = tuple(shapes["step"]["state"])
        self.history: list[int] = []

    def start(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        """Feed the prompt ids; returns (logits, state)."""
        self.history = list(ids)
        if self.transformer:
            return self._refill(self.history[-self.size:])
        state: Any = np.zeros(self.state_shape, np.float32)
        logits = None
        for token in ids:
            logits, state = self.step(token, state)
        return logits, state

    def step(self, token: int, state: Any) -> tuple[np.ndarray, Any]:
        """The logits after `token`, and the new state."""
        if not self.transformer:
            out = self.run("step", token=np.array([token], np.int32), state=state)
            return np.asarray(out["logits"])[0], out["state"]
        self.history.append(token)
        position, cache = state
        if position >= self.size:  # window full: keep the last half as context
            return self._refill(self.history[-max(1, self.size // 2):])
        out = self.run("step", token=np.array([[token]], np.int32),
                       position=np.array(position, np.int32), cache=cache)
        return np.asarray(out["logits"])[0], (position + 1, out["cache"])

    def _refill(self, ids: list[int]) -> tuple[np.ndarray, Any]:
        padded = np.zeros((1, self.size), np.int32)
        padded[0, :len(ids)] = ids
        out = self.run("prefill", ids=padded, length=np.array(len(ids), np.int32))
        return np.asarray(out["logits"])[0], (len(ids), out["cache"])


def lite_decoder(model: Any) -> Decoder:
    """A `Decoder` over a `dlkit.core.litert.LiteModel` of `decoder.tflite`."""
    from dlkit.core.errors import UsageError

    shapes = {key: {name: shape for name, (shape, _) in model.inputs(key).items()}
              for key in model.signature_keys}
    wanted = {"step": {"token"}, "prefill": {"ids", "length"}}
    if "step" not in shapes or any(not names <= set(shapes[key])
                                   for key, names in wanted.items() if key in shapes):
        raise UsageError(f"{model.description} is not a dlkit character decoder (signatures "
                         f"{sorted(shapes)}); retrain the model")
    return Decoder(model, shapes)
