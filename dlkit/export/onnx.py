"""`dlkit export --format onnx`: an ONNX file of a model folder's Keras model, checked.

The folder's `model.keras` (loaded in Keras safe mode) is converted by Keras's own
`model.export(format="onnx")`, which runs tf2onnx on its serving function. tf2onnx writes a
TensorFlow operation it has no ONNX counterpart for into the graph unchanged (a file no ONNX
runtime can load), so the graph is read back and every operation outside the ONNX standard is
refused in one line naming it (the text classifier's string operations, the char transformer's
exact GELU where the opset lacks it). Then onnxruntime runs the file on made-up inputs of the
model's shapes next to the Keras model, and a file that disagrees by more than 1e-4 is not
written. tf2onnx, onnx and onnxruntime are the `onnx` extra: `pip install 'dlkit[onnx]'`.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core import artifacts
from dlkit.core.errors import DlkitError, UsageError, first_line

TOLERANCE = 1e-4  # the largest difference from the Keras model, relative to its outputs
EXTRA = "pip install 'dlkit[onnx]'"


def convert(folder: Path, meta: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """(the ONNX file, what it takes and gives and how far it is from the Keras model)."""
    onnx, onnxruntime = _modules()
    model = artifacts.load_keras_model(folder)
    task = meta.get("task", "unknown")
    sample = _sample_inputs(model)
    with contextlib.suppress(Exception):  # a model must have been called to be exported
        model(sample if len(sample) > 1 else sample[0], training=False)
    content = _exported(model, folder, task)
    graph = onnx.load_from_string(content)
    foreign = sorted({node.op_type for node in graph.graph.node
                      if not onnx.defs.has(node.op_type, node.domain or "")})
    if foreign:
        raise UsageError(f"{folder} ({task} model) cannot be converted to ONNX: TensorFlow "
                         f"operation(s) {', '.join(foreign)} have no ONNX equivalent; its "
                         f"SavedModel ({folder / artifacts.SAVED_MODEL}) serves it instead")
    session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
    names = [t.name for t in model.inputs]
    feed = {i.name: sample[names.index(i.name)] if i.name in names else sample[k]
            for k, i in enumerate(session.get_inputs())}
    got = np.asarray(session.run(None, feed)[0], np.float64)
    out = model(sample if len(sample) > 1 else sample[0], training=False)
    want = np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float64)
    difference = float(np.abs(got - want).max()) if want.size else 0.0
    if got.shape != want.shape or difference > TOLERANCE * max(1.0, float(np.abs(want).max())):
        raise DlkitError(f"the ONNX file of {folder} does not compute what the Keras model "
                         f"computes (largest difference {difference:.3g}); it was not written")
    record = {"inputs": {i.name: [d if isinstance(d, int) else None for d in i.shape]
                         for i in session.get_inputs()},
              "outputs": {o.name: [d if isinstance(d, int) else None for d in o.shape]
                          for o in session.get_outputs()},
              "opset": max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
                           default=None),
              "max_difference": difference}
    return content, record


def _modules() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
        import tf2onnx  # noqa: F401  (what Keras converts with)
    except ImportError as exc:
        raise UsageError(f"--format onnx needs tf2onnx, onnx and onnxruntime ({exc.name} is "
                         f"missing): {EXTRA}") from None
    return onnx, onnxruntime


def _sample_inputs(model: Any) -> list[np.ndarray]:
    """Made-up inputs of the model's shapes (two examples): pixels for images, normal noise
    for vectors, small whole numbers for integer inputs (class labels), words for texts."""
    rng = np.random.default_rng(0)
    sample = []
    for tensor in model.inputs:
        shape = (2, *(d or 8 for d in tensor.shape[1:]))
        dtype = str(tensor.dtype)
        if dtype == "string":
            sample.append(np.array(["a few words", "and more"], dtype=object).reshape(shape[:1]))
        elif "int" in dtype:
            sample.append(rng.integers(0, 2, shape).astype(dtype))
        elif len(shape) == 4:
            sample.append(rng.uniform(0, 255, shape).astype(dtype))
        else:
            sample.append(rng.standard_normal(shape).astype(dtype))
    return sample


def _exported(model: Any, folder: Path, task: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="dlkit-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings(), _quiet_tf2onnx():
                warnings.simplefilter("ignore")
                model.export(str(path), format="onnx", verbose=False)
        except Exception as exc:
            raise UsageError(f"{folder} ({task} model) cannot be converted to ONNX "
                             f"({type(exc).__name__}: {first_line(exc, 200)})") from None
        return path.read_bytes()


@contextlib.contextmanager
def _quiet_tf2onnx() -> Any:
    """tf2onnx logs every shape it cannot infer and every operation it cannot convert (with
    tracebacks) on stderr; what matters of it is the one error line above."""
    import logging

    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith("tf2onnx")] + [logging.getLogger("tf2onnx")]
    levels = [(logger, logger.level) for logger in loggers]
    for logger, _ in levels:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)
