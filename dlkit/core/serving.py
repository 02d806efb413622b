"""One way to open a model: `open_model(spec, backend)` gives a `Predictor`, a function of NumPy
arrays, for every inference command (classify-image, classify-text, forecast, sample-gan,
sample-vae, sample-flow, evaluate).

`spec` is any of:
- a dlkit model folder (its `metadata.json` says what it is): served from its `model.tflite`
  through LiteRT when `--backend` allows (TensorFlow is then never imported; see
  `dlkit.core.litert.open_recorded` for `auto`), else on TensorFlow from its `model.keras`, or,
  with `saved_model=True`, from its SavedModel, which needs no Keras import (classify-image's
  start-up);
- a `.tflite` file (LiteRT only): its metadata is the dlkit entry the file carries, else that
  of the model folder holding it when the folder's metadata.json records this very file;
- a SavedModel folder (`saved_model.pb`), its graph scanned first (`dlkit.core.saved_model`);
- a `.keras` file, loaded in Keras safe mode (the metadata.json beside it when it is a model
  folder's `model.keras`);
- a keras-hub ImageClassifier preset (a name, a `kaggle://`/`hf://` handle, a preset folder:
  `dlkit.core.hub`), on TensorFlow only, fed raw pixels that its own image converter resizes.

Whatever the source, the command gets the same `Predictor`: input shapes to check against its
metadata, `run` on a batch, the metadata that came with the model and where it was read, so a
command's checks and outputs are written once. What a command does with the inputs and outputs
(decoding images, printing labels) stays in the command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core import hub, litert
from dlkit.core.artifacts import KERAS_FILE, METADATA, SAVED_MODEL, load_keras_model, load_metadata
from dlkit.core.config import Backend
from dlkit.core.errors import UsageError
from dlkit.core.files import read_bytes
from dlkit.core.saved_model import GRAPH_FILE

BATCH = 256  # examples per model call
SIGNATURE = "serving_default"
PROBABILITY_OPS = {"Softmax", "Sigmoid", "SOFTMAX", "LOGISTIC"}  # graph ops that give them


def _not_known() -> bool:
    return False


@dataclass
class Predictor:
    """`predictor(*inputs)` runs the model on whole arrays, `BATCH` examples at a time, and
    returns its (first) output as float32; `run(inputs)` runs it on one batch."""

    run: Callable[[list[Any]], np.ndarray]
    input_shapes: list[tuple[int | None, ...]]  # per input, without the batch size
    output_shape: tuple[int | None, ...]  # the (first) output's, without the batch size
    backend: str  # "litert" or "tensorflow"
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)  # what came with the model
    metadata_source: str = ""  # where `metadata` was read, for messages
    # Whether the model's graph ends in a softmax or sigmoid: asked only when its metadata does
    # not say what it outputs (reading a .tflite file's graph costs an import).
    gives_probabilities: Callable[[], bool] = _not_known
    resizes_images: bool = False  # a keras-hub preset: its image converter resizes the input
    input_names: list[str] = field(default_factory=list)  # per input, where the model says
    input_dtypes: list[str] = field(default_factory=list)  # per input (NumPy names)
    output_name: str = ""  # the (first) output's name, where the model says

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        count = len(inputs[0])
        parts = [self.run([x[start:start + BATCH] for x in inputs])
                 for start in range(0, count, BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0,), np.float32)


def open_model(spec: str | Path, backend: Backend, *, meta: dict[str, Any] | None = None,
               saved_model: bool = False) -> Predictor:
    """The model `spec` names (see the module doc) for `--backend`. `meta`: the metadata.json
    of the dlkit model folder `spec`, already read and checked by the command (a folder is
    then the only thing `spec` can be). `saved_model`: a folder's TensorFlow model is its
    SavedModel rather than its `model.keras`. Anything else is exit 2 naming what it is."""
    if meta is None and hub.is_preset(str(spec)):
        return _preset(str(spec), backend)
    path = Path(spec).expanduser()
    if meta is None and path.is_dir() and (path / METADATA).is_file():
        meta = load_metadata(path)
    if meta is not None:
        return _folder(path, meta, backend, saved_model)
    if path.is_file() and path.suffix == ".tflite":
        return _lite_file(path, backend)
    if backend == Backend.litert:
        raise UsageError(f"--backend litert needs a dlkit model folder with {litert.TFLITE_FILE} "
                         f"or a .tflite file; {path} is neither")
    if path.is_dir() and (path / GRAPH_FILE).is_file():
        return _saved_model(path)
    if path.is_file() and path.suffix == ".keras":
        return _keras_file(path)
    raise UsageError(f"{path} is not a model; pass a dlkit model folder (with {METADATA}), "
                     "a .keras file, a .tflite file or a SavedModel folder")


def _folder(folder: Path, meta: dict[str, Any], backend: Backend,
            saved_model: bool) -> Predictor:
    """A dlkit model folder's model (see `open_model`), with its metadata."""
    lite = litert.open_recorded(folder, meta, backend)
    if lite is not None:
        predictor = lite_predictor(lite)
    elif saved_model and (folder / SAVED_MODEL / GRAPH_FILE).is_file():
        predictor = _saved_model(folder / SAVED_MODEL)
    else:
        predictor = _keras(folder, KERAS_FILE)
    predictor.metadata, predictor.metadata_source = meta, str(folder / METADATA)
    return predictor


# ---------------------------------------------------------------------------------------------
# LiteRT (NumPy and ai-edge-litert only)

def _sizes(shape: tuple[Any, ...]) -> tuple[int | None, ...]:
    """A shape without its batch size, None for a free size (-1 in LiteRT)."""
    return tuple(None if d is None or d < 0 else int(d) for d in shape[1:])


def lite_predictor(model: litert.LiteModel) -> Predictor:
    """A LiteRT model's `serving_default` signature as a Predictor, its inputs in the Keras
    model's order (as metadata.json recorded it)."""
    if SIGNATURE not in model.signature_keys:
        raise UsageError(f"{model.description} has no {SIGNATURE} signature; rewrite it with "
                         "`dlkit export`")
    names = litert.input_order(model, SIGNATURE)
    details = model.inputs(SIGNATURE)
    outputs = model.outputs(SIGNATURE)
    output = sorted(outputs)[0]

    def run(inputs: list[Any]) -> np.ndarray:
        feed = {name: np.ascontiguousarray(x, details[name][1])
                for name, x in zip(names, inputs, strict=True)}
        return np.asarray(model(SIGNATURE, **feed)[output], np.float32)

    return Predictor(run, [_sizes(details[n][0]) for n in names], _sizes(outputs[output]),
                     "litert", f"LiteRT {model.description}",
                     gives_probabilities=lambda: model.output_op(SIGNATURE, output)
                     in PROBABILITY_OPS, input_names=list(names),
                     input_dtypes=[np.dtype(details[n][1]).name for n in names],
                     output_name=output)


def _lite_file(path: Path, backend: Backend) -> Predictor:
    """A `.tflite` file on its own, with the metadata it carries (see the module doc)."""
    if backend == Backend.tensorflow:
        raise UsageError(f"{path} is a LiteRT file; it runs only with --backend litert or auto")
    model = litert.LiteModel.from_bytes(read_bytes(path, "--model"), str(path))
    entry = model.metadata()
    predictor = lite_predictor(model)
    if entry is not None:
        predictor.metadata = entry
        predictor.metadata_source = f"the dlkit metadata in {model.description}"
    else:
        recorded = _recording_folder(path, model.content)
        if recorded is not None:
            predictor.metadata, predictor.metadata_source = recorded, str(path.parent / METADATA)
    return predictor


def _recording_folder(path: Path, content: bytes) -> dict[str, Any] | None:
    """The metadata.json of the model folder holding `path` when it records this file (same
    SHA-256, as an older dlkit wrote files without metadata of their own); None otherwise."""
    import hashlib

    if not (path.parent / METADATA).is_file():
        return None
    try:
        meta = load_metadata(path.parent)
    except UsageError:
        return None
    records = meta.get(litert.META_KEY)
    record = records.get(path.name) if isinstance(records, dict) else None
    digest = hashlib.sha256(content).hexdigest()
    return meta if isinstance(record, dict) and record.get("sha256") == digest else None


# ---------------------------------------------------------------------------------------------
# TensorFlow

def _saved_model(folder: Path) -> Predictor:
    """A SavedModel's serving_default signature, once `dlkit.core.saved_model` has scanned its
    graph (TensorFlow only: Keras is not imported). Inputs in the order of their names."""
    from dlkit.core import saved_model
    from dlkit.core.runtime import import_tensorflow_lean

    tf = import_tensorflow_lean()
    module, graph = saved_model.load(folder)
    signature = getattr(module, "signatures", {}).get(SIGNATURE)
    if signature is None:
        raise UsageError(f"the SavedModel {folder} has no {SIGNATURE} signature")
    specs = signature.structured_input_signature[1]
    names = sorted(specs)
    outputs = signature.structured_outputs
    key = sorted(outputs)[0]

    def run(inputs: list[Any]) -> np.ndarray:
        feed = {name: tf.cast(x, specs[name].dtype)
                for name, x in zip(names, inputs, strict=True)}
        return np.asarray(signature(**feed)[key], np.float32)

    last = saved_model.output_op(graph, SIGNATURE, key)
    shapes = [_sizes(tuple(specs[n].shape)) if specs[n].shape.rank is not None else ()
              for n in names]
    return Predictor(run, shapes, _sizes(tuple(outputs[key].shape)), "tensorflow",
                     f"SavedModel {folder}", gives_probabilities=lambda: last in PROBABILITY_OPS,
                     input_names=names, input_dtypes=[specs[n].dtype.name for n in names],
                     output_name=key)


def _keras_file(path: Path) -> Predictor:
    """A `.keras` file, with the metadata.json beside it when it is a model folder's own."""
    predictor = _keras(path.parent, path.name)
    if path.name == KERAS_FILE and (path.parent / METADATA).is_file():
        predictor.metadata = load_metadata(path.parent)
        predictor.metadata_source = str(path.parent / METADATA)
    return predictor


def _keras(folder: Path, name: str) -> Predictor:
    """The `.keras` file `name` of `folder` (Keras safe mode, `artifacts.load_keras_model`)."""
    from dlkit.core.runtime import import_tensorflow_lean

    import_tensorflow_lean()
    return keras_predictor(load_keras_model(folder, name), f"Keras model {folder / name}")


def keras_predictor(model: Any, description: str) -> Predictor:
    """A Keras model (loaded, or just trained) as a Predictor: called in inference mode."""

    def run(inputs: list[Any]) -> np.ndarray:
        out = model(inputs[0] if len(inputs) == 1 else inputs, training=False)
        return np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float32)

    return Predictor(run, [_sizes(tuple(t.shape)) for t in model.inputs],
                     _sizes(tuple(model.outputs[0].shape)), "tensorflow", description,
                     gives_probabilities=lambda: _keras_gives_probabilities(model),
                     input_names=[str(getattr(t, "name", "")) for t in model.inputs],
                     input_dtypes=[str(getattr(t, "dtype", "float32")) for t in model.inputs],
                     output_name=str(model.output_names[0]) if model.output_names else "")


def _keras_gives_probabilities(model: Any) -> bool:
    """Whether a Keras model's (first) output comes out of a softmax or sigmoid: its last
    layer is a Softmax layer or has that activation."""
    import keras

    history = getattr(model.outputs[0], "_keras_history", None)
    layer = history[0] if history else model.layers[-1]
    if isinstance(layer, keras.layers.Softmax):
        return True
    return getattr(layer, "activation", None) in (keras.activations.softmax,
                                                 keras.activations.sigmoid)


def _preset(spec: str, backend: Backend) -> Predictor:
    """A keras-hub ImageClassifier, fed what its own `predict()` is fed: each image's raw 0-255
    RGB pixels at the image's own size, which its image converter resizes (and crops, scales,
    normalises) itself. Its metadata: the dlkit folder's that holds it (train-cifar
    --backbone), else ImageNet's class names for a 1,000-class model."""
    from dlkit.core import console

    hub.refuse_litert(spec, backend)
    preset = hub.resolve(spec, "ImageClassifier")
    task = hub.load_task(preset, "ImageClassifier")
    converter = getattr(task.preprocessor, "image_converter", None)
    size = tuple(getattr(converter, "image_size", None) or (None, None))
    import keras
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def predict(images: Any) -> Any:
        pixels = converter(images) if converter is not None else images
        return task(pixels, training=False)

    outputs = int(task.output_shape[-1]) if task.output_shape else None
    activation = keras.activations.get(getattr(task, "activation", None))
    probabilities = activation in (keras.activations.softmax, keras.activations.sigmoid)
    predictor = Predictor(lambda inputs: np.asarray(predict(inputs[0]), np.float32),
                          [(*size, 3)], (outputs,), "tensorflow",
                          f"keras-hub {type(task).__name__} {spec}",
                          gives_probabilities=lambda: probabilities,
                          resizes_images=converter is not None)
    folder = preset.path.parent  # a preset that train-cifar --backbone wrote: its classes
    if preset.path.name == hub.PRESET_DIR and (folder / METADATA).is_file():
        predictor.metadata = load_metadata(folder)
        predictor.metadata_source = str(folder / METADATA)
    elif outputs == 1000:
        predictor.metadata = {"class_names": hub.imagenet_names()}
        predictor.metadata_source = "keras-hub's ImageNet class names"
    shown = f", {size[0]}x{size[1]} images" if None not in size else ""
    console.info(f"loaded {spec} ({type(task).__name__}, {task.count_params():,} parameters"
                 f"{shown}) from {preset.source}")
    return predictor
