"""The models a server holds: each opened once at start-up, then answering requests.

A served model is `dlkit.core.serving.open_model`'s `Predictor` (what `:predict` runs: the
model's own inputs and first output, as TensorFlow Serving would serve its SavedModel), plus,
for image classifiers and keras-hub image presets, the classifier `classify-image` would open
(what `:classify` runs: image bytes decoded, prepared and scored exactly as classify-image
does it). A `train-text` folder or a keras-hub language model preset is generate-text's
generator instead (what `:generate` runs).
A model runs one request at a time (a LiteRT interpreter is not thread-safe); the server runs
the requests of different models side by side. What each family offers comes through
`dlkit.core.registry`: serve imports no family.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core import hub, registry
from dlkit.core.artifacts import METADATA, load_metadata
from dlkit.core.config import Backend
from dlkit.core.errors import UsageError
from dlkit.core.serving import Predictor, open_model
from dlkit.data.image_batches import decode_prepared, to_batch

VERSION = "1"  # every model is served as version 1 (TensorFlow Serving's version paths)
TOP_K_MAX = 1000
TEXT_DTYPES = ("string", "object", "str")  # what string inputs' dtypes are called


class RequestError(ValueError):
    """A request the model cannot answer: the HTTP status and the one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Served:
    """One model behind /v1/models/NAME."""

    name: str
    source: str  # what --model named
    predictor: Predictor | None  # None for a text generator (it answers :generate only)
    classifier: Any = None  # classify-image's classifier (image classifiers only)
    generator: Any = None  # generate-text's generator (text models only)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def backend(self) -> str:
        if self.predictor is None:
            return "litert" if "LiteRT" in self.generator.engine else "tensorflow"
        return self.predictor.backend

    @property
    def description(self) -> str:
        if self.predictor is None:
            return f"{self.generator.engine} text generator"
        return self.predictor.description

    @property
    def routes(self) -> list[str]:
        """The methods this model answers."""
        return ([":predict"] if self.predictor is not None else []) + \
            ([":classify"] if self.classifier is not None else []) + \
            ([":generate"] if self.generator is not None else [])

    def predict(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The model's first output for a batch of inputs (already checked)."""
        with self.lock:
            return self.predictor(*inputs)

    def classify(self, image: bytes, top_k: int) -> dict[str, Any]:
        """classify-image's answer for one image file's bytes: label, confidence, top k."""
        if self.classifier is None:
            raise RequestError(400, f"model {self.name!r} is not an image classifier; it "
                               f"answers {', '.join(self.routes)}")
        prepared, why = decode_prepared(image, self.classifier.prep)
        if prepared is None:
            raise RequestError(400, f"the body is not an image dlkit reads: {why}")
        with self.lock:
            probs = self.classifier.predict(to_batch([prepared], self.classifier.prep))[0]
        names = self.classifier.class_names
        order = np.argsort(-probs)[:min(top_k, len(names))]
        top = [{"label": names[c], "confidence": round(float(probs[c]), 6)} for c in order]
        return {"label": top[0]["label"], "confidence": top[0]["confidence"], "top": top}

    def generate(self, request: Any) -> Iterator[str]:
        """generate-text's text for a :generate request: the prompt, then the pieces as the
        model makes them. Its first piece is taken here, so a request the model cannot take
        fails before anything is sent."""
        if self.generator is None:
            raise RequestError(400, f"model {self.name!r} does not generate text; it answers "
                               f"{', '.join(self.routes)}")
        try:
            pieces = self.generator.pieces(self.generator.settings(request))
            first = next(pieces)
        except UsageError as exc:
            raise RequestError(400, exc.message.replace("--", "")) from None
        return itertools.chain([first], pieces)

    def warm_up(self) -> None:
        """Answer one made-up request of each kind before the first client's (the image
        decoders are imported, LiteRT's tensors allocated, TensorFlow's function traced)."""
        if self.generator is not None:
            for _ in self.generate({"length": 2, "sampler": "greedy"}):
                pass
        specs = self.inputs()
        if specs and all(d is not None for _, _, shape in specs for d in shape):
            self.predict([np.array([""] * np.prod(shape, dtype=int), object).reshape(1, *shape)
                          if dtype in TEXT_DTYPES else np.zeros((1, *shape), dtype)
                          for _, dtype, shape in specs])
        if self.classifier is not None:
            import cv2

            self.classify(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), 1)

    def inputs(self) -> list[tuple[str, str, tuple[int | None, ...]]]:
        """(name, NumPy dtype, shape without the batch) of each input, in the model's order."""
        p = self.predictor
        if p is None:
            return []
        names = p.input_names or [f"input_{i}" for i in range(len(p.input_shapes))]
        dtypes = p.input_dtypes or ["float32"] * len(p.input_shapes)
        return list(zip(names, dtypes, p.input_shapes, strict=True))


def open_served(name: str, source: str, backend: Backend) -> Served:
    """Open `source` as `--model NAME=SOURCE` names it; exit 2 (before the server starts) for
    anything that is not a model."""
    path = Path(source).expanduser()
    if hub.is_preset(source):
        if hub.preset_kind(source) == "CausalLM":
            generator = registry.load("text-generator", "keras-hub")
            return Served(name, source, None, generator=generator(source, backend))
        return _classifier(name, source, "keras-hub", backend)
    if not path.exists():
        raise UsageError(f"--model {name}={source}: no such file or folder")
    if (path / METADATA).is_file():
        task = load_metadata(path).get("task")
        if isinstance(task, str) and registry.load("image-classifier", task) is not None:
            return _classifier(name, source, task, backend)
        generator = registry.load("text-generator", task) if isinstance(task, str) else None
        if generator is not None:
            return Served(name, source, None, generator=generator(source, backend))
    predictor = open_model(source, backend)
    task = predictor.metadata.get("task")
    if isinstance(task, str) and registry.load("image-classifier", task) is not None:
        return _classifier(name, source, task, backend)  # a .tflite file that says so
    return Served(name, source, predictor)


def _classifier(name: str, source: str, task: str, backend: Backend) -> Served:
    """An image classifier opened as classify-image opens it: one model for both routes."""
    classifier = registry.load("image-classifier", task)(source, backend)
    return Served(name, source, classifier.model, classifier)


def as_arrays(served: Served, payload: Any) -> tuple[list[np.ndarray], bool]:
    """A :predict request body (TensorFlow Serving's row or columnar format) as one array per
    input, and whether it was columnar ("inputs", answered with "outputs")."""
    if not isinstance(payload, dict):
        raise RequestError(400, "the body must be a JSON object with \"instances\" or "
                           "\"inputs\"")
    signature = payload.get("signature_name", "serving_default")
    if signature not in ("serving_default", ""):
        raise RequestError(400, f"signature_name {signature!r}: the model has only "
                           "serving_default")
    if ("instances" in payload) == ("inputs" in payload):
        raise RequestError(400, "give exactly one of \"instances\" (a list of examples) and "
                           "\"inputs\" (a batch per input)")
    specs = served.inputs()
    names = [n for n, _, _ in specs]
    if "instances" in payload:
        rows = payload["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError(400, "\"instances\" must be a non-empty list of examples")
        columns = {n: [_field(row, n, names) for row in rows] for n in names}
        columnar = False
    else:
        value = payload["inputs"]
        if isinstance(value, dict):
            missing = [n for n in names if n not in value]
            if missing:
                raise RequestError(400, f"\"inputs\" lacks {', '.join(missing)}; the model "
                                   f"takes {', '.join(names)}")
            columns = {n: value[n] for n in names}
        elif len(names) == 1:
            columns = {names[0]: value}
        else:
            raise RequestError(400, f"the model takes several inputs ({', '.join(names)}): "
                               "give \"inputs\" as an object of them")
        columnar = True
    arrays = [_array(columns[n], n, dtype, shape) for n, dtype, shape in specs]
    if len({len(a) for a in arrays}) > 1:
        raise RequestError(400, "the inputs hold different numbers of examples")
    return arrays, columnar


def _field(row: Any, name: str, names: list[str]) -> Any:
    """One instance's value for input `name`: the instance itself for a one-input model
    (unless it is an object naming the input), else the instance's field."""
    if isinstance(row, dict):
        if name not in row:
            raise RequestError(400, f"an instance lacks {name!r}; the model takes "
                               f"{', '.join(names)}")
        return row[name]
    if len(names) > 1:
        raise RequestError(400, f"the model takes several inputs ({', '.join(names)}): give "
                           "each instance as an object of them")
    return row


def _array(value: Any, name: str, dtype: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """A batch for input `name` as the model takes it; 400 naming what is wrong."""
    if dtype in TEXT_DTYPES:
        return _strings(value, name, shape)
    kind = np.dtype(dtype)
    if kind.kind not in "biuf":
        raise RequestError(400, f"input {name!r} takes {dtype} values, which :predict does "
                           "not accept as JSON")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise RequestError(400, f"input {name!r} is not a regular array of numbers (every "
                           "example must have the same shape)") from None
    if array.ndim == 0:
        raise RequestError(400, f"input {name!r} must be a batch (a list), not one number")
    if not np.isfinite(array).all():
        raise RequestError(400, f"input {name!r} holds a value that is not a finite number")
    expected = tuple(shape)
    if len(array.shape) - 1 != len(expected) or any(
            e is not None and e != a for e, a in zip(expected, array.shape[1:], strict=False)):
        want = "x".join("?" if d is None else str(d) for d in expected) or "scalar"
        got = "x".join(str(d) for d in array.shape[1:]) or "scalar"
        raise RequestError(400, f"input {name!r} takes examples of shape {want}, got {got}")
    if kind.kind in "biu":
        if not np.equal(np.floor(array), array).all():
            raise RequestError(400, f"input {name!r} takes whole numbers ({dtype})")
        info = np.iinfo(kind) if kind.kind != "b" else None
        if info is not None and (array.min() < info.min or array.max() > info.max):
            raise RequestError(400, f"input {name!r} holds a value beyond {dtype}")
    return array.astype(kind)


def _strings(value: Any, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """A batch of texts (a string input, such as train-text-classifier's): a list of JSON
    strings, one per example."""
    if shape or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(400, f"input {name!r} takes texts: give one JSON string per "
                           "example")
    return np.array(value, dtype=object)


def top_k(value: str | None) -> int:
    """The `top_k` query parameter of :classify (1 when absent)."""
    if value is None:
        return 1
    try:
        k = int(value)
    except ValueError:
        k = 0
    if not 1 <= k <= TOP_K_MAX:
        raise RequestError(400, f"top_k must be a whole number from 1 to {TOP_K_MAX} (got "
                           f"{value!r})")
    return k
