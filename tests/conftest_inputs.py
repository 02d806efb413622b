"""Fixed inputs for any Keras model, from its input specs (see `assert_plain_keras_loads` in
conftest.py): imported by the tests and by a process where dlkit cannot be imported, so it
imports NumPy only."""

from __future__ import annotations

from typing import Any

import numpy as np


def sample_inputs(model: Any) -> Any:
    """Two examples for each of the model's inputs: text for string inputs, ids 0 and 1 for
    integer ones (characters, class labels), values in 0-255 for float ones (pixels, noise,
    series); unknown sizes are 4."""
    rng = np.random.default_rng(0)
    arrays = []
    for spec in model.inputs:
        shape = (2, *(4 if size is None else size for size in spec.shape[1:]))
        dtype = str(spec.dtype)
        if dtype == "string":
            arrays.append(np.array(["orbit rocket planet", "oven flour butter"], dtype=object))
        elif "int" in dtype:
            arrays.append((np.arange(np.prod(shape)) % 2).reshape(shape).astype(dtype))
        else:
            arrays.append(rng.uniform(0, 255, shape).astype("float32"))
    return arrays[0] if len(arrays) == 1 else arrays
