"""`dlkit classify-image`: classify image files with a trained model, one file or thousands.

The model is loaded once: a dlkit model folder (its SavedModel, preprocessing from metadata.json),
a `.keras` file, or any SavedModel folder (`--labels`, `--input-size`). Files are decoded in
parallel in a tf.data pipeline (`dlkit.data.image_batches`), batched and predicted; each
prediction is handed to a callback as soon as its batch is done, so output streams. Files that
cannot be read are reported one by one and the others are still classified.

Start-up matters for one-file calls: a dlkit folder with `model.tflite` (or a `.tflite` file) is
served by LiteRT with the files decoded in a thread pool, and neither TensorFlow nor Keras is
imported. Otherwise TensorFlow is imported without its eager Keras import and a dlkit folder is
served from its SavedModel, so Keras is never imported unless a `.keras` file is the model.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core import console, litert
from dlkit.core.artifacts import (
    KERAS_FILE,
    METADATA,
    SAVED_MODEL,
    check_output_file,
    load_metadata,
    register_layers_of,
)
from dlkit.core.config import Backend
from dlkit.core.console import has_surrogates as _has_surrogates
from dlkit.core.console import tsv_field as escape_path
from dlkit.core.errors import EXIT_OK, EXIT_USAGE, UsageError, keras_load_error
from dlkit.core.files import atomic_file, read_bytes
from dlkit.data.image_batches import (
    Inputs,
    Preprocess,
    collect_inputs,
    image_batches,
    numpy_batches,
    stdin_paths,
)
from dlkit.image_classifier.config import ClassifyImageConfig, Invert, model_image_size

EXIT_SOME_FAILED = 1
SHOW_MAX = 36  # images in the --show picture


def classify_images(config: ClassifyImageConfig) -> int:
    """The classify-image command: predictions stream to stdout as `path<TAB>label<TAB>conf`
    lines (or one JSON array at the end with --json), unreadable files are one `error:` line
    each, and the exit code says whether every file was classified (0), some failed (1) or
    none could be (2)."""
    check_outputs(config, [*config.paths, config.model, config.labels])
    out = _Lines(stop_when_closed=config.csv is None and config.show is None)
    result = run(config, None if config.json else out.write,
                 lambda path, why: console.error_line(f"{escape_path(path)}: {why}"),
                 progress=config.json or not sys.stdout.isatty())
    if config.json:
        console.emit_json([p.to_json() for p in result.predictions])
    if not result.predictions and not result.errors:
        console.error_line("no input images; give image files, folders, or - to read paths "
                           "from stdin")
    count = len(result.predictions)
    console.info(f"classified {count} image{'' if count == 1 else 's'} in {result.seconds:.2f} "
                 f"s ({result.images_per_second:.0f} images/s), {len(result.errors)} failed; "
                 f"{result.model}")
    return result.exit_code


def check_outputs(config: ClassifyImageConfig, inputs: list[Any]) -> None:
    """Exit 2 before any work when --csv or --show cannot be written, or is one of `inputs`
    (an image, the model, the labels) or lies inside an input folder."""
    for option, path in (("--csv", config.csv), ("--show", config.show)):
        if path is not None:
            check_output_file(option, path, inputs=inputs)


class _Lines:
    """Prediction lines on stdout, flushed one by one. When the reader goes away (`| head`),
    the rest is dropped quietly: the run stops there, unless it still has a --csv or --show
    file to write, which it then finishes."""

    def __init__(self, stop_when_closed: bool) -> None:
        self.stop_when_closed, self.closed = stop_when_closed, False

    def write(self, prediction: Prediction) -> None:
        if self.closed:
            return
        try:
            sys.stdout.write(prediction.to_line() + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            self.closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            if self.stop_when_closed:
                raise _ReaderGone from None


class _ReaderGone(Exception):
    """stdout's reader closed the pipe and nothing else is left to write."""


@dataclass
class Prediction:
    """The top classes for one image, best first."""

    path: str
    top: list[tuple[str, float]]

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]

    def to_json(self) -> dict[str, Any]:
        return {"path": escape_path(self.path) if _has_surrogates(self.path) else self.path,
                "label": self.label, "confidence": round(self.confidence, 6),
                "top": [{"label": name, "confidence": round(p, 6)} for name, p in self.top]}

    def to_line(self) -> str:
        """`path<TAB>label<TAB>confidence`, then the next labels and confidences (the path
        escaped by `escape_path`)."""
        return "\t".join([escape_path(self.path),
                          *(f"{name}\t{p:.4f}" for name, p in self.top)])


@dataclass
class ClassifyResult:
    predictions: list[Prediction]
    errors: list[tuple[str, str]]
    seconds: float
    model: str
    artifacts: dict[str, str] = field(default_factory=dict)
    reader_gone: bool = False  # stdout's reader left (`| head`): a quiet, successful end

    @property
    def images_per_second(self) -> float:
        return len(self.predictions) / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.reader_gone:
            return EXIT_OK
        if not self.predictions:
            return EXIT_USAGE
        return EXIT_SOME_FAILED if self.errors else EXIT_OK


@dataclass
class Classifier:
    """A loaded model ready to predict batches of float32 images."""

    predict: Callable[[Any], np.ndarray]
    class_names: list[str]
    prep: Preprocess
    description: str
    backend: str  # "litert" or "tensorflow"


# ---------------------------------------------------------------------------------------------
# Loading the model

IMAGE_TASKS = ("train-mnist", "train-cifar")  # dlkit's image classifiers (softmax outputs)
OUTPUT_KINDS = ("probabilities", "logits")  # metadata "outputs": what the model gives
_PROBABILITY_OPS = {"Softmax", "Sigmoid", "SOFTMAX", "LOGISTIC"}  # graph ops that give them


@dataclass
class _Loaded:
    predict: Callable[[Any], Any]
    input_shape: tuple[int | None, ...]  # (H, W, C), None where the model accepts any size
    outputs: int | None
    description: str
    backend: str  # "litert" or "tensorflow"
    # whether the model's graph ends in a softmax (or sigmoid), asked only when its metadata
    # does not say (reading a .tflite file's graph costs an import)
    graph_gives_probabilities: Callable[[], bool]


@dataclass
class _Metadata:
    """What a model's metadata says (metadata.json, or the entry a .tflite file carries) and
    where it was read, for messages."""

    values: dict[str, Any]
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.values.get("preprocessing", {}), dict):
            raise UsageError(f"{self.source}: preprocessing is not a JSON object; retrain the "
                             "model or put its own metadata back")


def load_classifier(config: ClassifyImageConfig) -> Classifier:
    """Load the model once and work out its preprocessing and class names. A dlkit folder is
    served from its `model.tflite` through LiteRT when `--backend` allows (TensorFlow is then
    never imported), else from its SavedModel. Metadata that does not fit the model is exit 2
    before anything is predicted."""
    path = Path(config.model).expanduser()
    if is_preset(str(config.model)):
        return _load_preset(config)
    if not path.exists():
        raise UsageError(f"model {path} does not exist; train one (for example `dlkit "
                         f"train-cifar --output {path}`) or pass --model")
    loaded, meta = _load_model(path, config)
    shape = _input_shape(meta, loaded, config.input_size)
    names = _class_names(meta, config.labels, loaded.outputs)
    prep = Preprocess(size=shape[:2], channels=shape[2],
                      invert=_invert_mode(meta.values, config.invert.value),
                      center_digit=meta.values.get("dataset") == "mnist",
                      scale=config.scale.value)
    return Classifier(_probabilities(loaded.predict, _gives_probabilities(meta, loaded)),
                      names, prep, loaded.description, loaded.backend)


def _load_model(path: Path, config: ClassifyImageConfig) -> tuple[_Loaded, _Metadata]:
    """The model at `path` (not a preset) and the metadata that goes with it."""
    meta = _Metadata({}, "")
    if path.is_dir() and (path / METADATA).is_file():
        meta = _Metadata(load_metadata(path), str(path / METADATA))
        lite = litert.open_model(path, meta.values, config.backend)
        saved = path / SAVED_MODEL
        loaded = (_load_lite(lite) if lite is not None
                  else _load_saved_model(saved) if (saved / "saved_model.pb").is_file()
                  else _load_keras(path / KERAS_FILE))
    elif path.is_file() and path.suffix == ".tflite":
        lite = _open_lite_file(path, config.backend)
        meta = _lite_file_metadata(lite, path, config)
        loaded = _load_lite(lite)
    elif config.backend == Backend.litert:
        raise UsageError(f"--backend litert needs a dlkit model folder with {litert.TFLITE_FILE} "
                         f"or a .tflite file; {path} is neither")
    elif path.is_dir() and (path / "saved_model.pb").is_file():
        loaded = _load_saved_model(path)
    elif path.is_file() and path.suffix == ".keras":
        if path.name == KERAS_FILE and (path.parent / METADATA).is_file():
            meta = _Metadata(load_metadata(path.parent), str(path.parent / METADATA))
        loaded = _load_keras(path)
    else:
        raise UsageError(f"{path} is not a model; pass a dlkit model folder (with {METADATA}), "
                         "a .keras file, a .tflite file or a SavedModel folder")
    return loaded, meta


def is_preset(spec: str) -> bool:
    """Whether `--model` names a keras-hub preset: a handle, a preset folder (config.json, which
    dlkit's folders never hold), or a bare name that is not a file or folder here."""
    from dlkit.core.hub import CONFIG_FILE, HF, KAGGLE

    if spec.startswith((KAGGLE, HF)):
        return True
    path = Path(spec).expanduser()
    if path.exists():
        return path.is_dir() and (path / CONFIG_FILE).is_file()
    return os.sep not in spec and not path.suffix


def _load_preset(config: ClassifyImageConfig) -> Classifier:
    """A keras-hub ImageClassifier, fed what its own `predict()` is fed: each image's raw
    0-255 RGB pixels at the image's own size, which its image converter resizes (and crops,
    scales, normalises) itself. ImageNet class names for 1,000-class models."""
    from dlkit.core.hub import (
        PRESET_DIR,
        import_keras_hub,
        load_task,
        refuse_litert,
        resolve,
    )

    refuse_litert(str(config.model), config.backend)
    preset = resolve(str(config.model), "ImageClassifier")
    task = load_task(preset, "ImageClassifier")
    converter = getattr(task.preprocessor, "image_converter", None)
    size = tuple(getattr(converter, "image_size", None) or config.input_size or ())
    if len(size) != 2:
        raise UsageError(f"{config.model} does not say its image size; give --input-size "
                         "HEIGHT WIDTH")
    size = model_image_size(*size, f"the image converter of {config.model}")
    import keras
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def predict(images: Any) -> Any:
        pixels = converter(images) if converter is not None else images
        return task(pixels, training=False)

    outputs = int(task.output_shape[-1]) if task.output_shape else None
    folder = preset.path.parent  # a preset that train-cifar --backbone wrote: its classes
    inside = preset.path.name == PRESET_DIR and (folder / METADATA).is_file()
    meta = _Metadata(load_metadata(folder) if inside else {}, str(folder / METADATA))
    names = _class_names(meta, config.labels, outputs)
    if config.labels is None and not meta.values and outputs == 1000:
        keras_hub = import_keras_hub()
        names = [keras_hub.utils.imagenet_id_to_name(i) for i in range(1000)]
    prep = Preprocess(size=None if converter is not None else (int(size[0]), int(size[1])),
                      channels=3, invert="no", center_digit=False, scale="raw")
    console.info(f"loaded {config.model} ({type(task).__name__}, {task.count_params():,} "
                 f"parameters, {size[0]}x{size[1]} images) from {preset.source}")
    activation = keras.activations.get(getattr(task, "activation", None))
    probabilities = activation in (keras.activations.softmax, keras.activations.sigmoid)
    return Classifier(_probabilities(predict, probabilities), names, prep,
                      f"keras-hub {type(task).__name__} {config.model}", "tensorflow")


def _load_lite(model: litert.LiteModel) -> _Loaded:
    """A LiteRT model with one (batch, height, width, channels) input."""
    from dlkit.core.serving import lite_predictor

    predictor = lite_predictor(model)
    if len(predictor.input_shapes) != 1:
        raise UsageError(f"{model.description} takes {len(predictor.input_shapes)} inputs; "
                         "classify-image needs a model with one image input")
    (shape,) = predictor.input_shapes
    if len(shape) != 3:
        raise UsageError(f"{model.description} takes inputs of shape {shape}; expected "
                         "(height, width, channels) images")
    classes = predictor.output_shape[-1] if predictor.output_shape else None
    key = "serving_default"
    output = sorted(model.outputs(key))[0]
    return _Loaded(lambda images: predictor.run([images]), shape, classes,
                   f"LiteRT {model.description}", "litert",
                   lambda: model.output_op(key, output) in _PROBABILITY_OPS)


def _open_lite_file(path: Path, backend: Backend) -> litert.LiteModel:
    if backend == Backend.tensorflow:
        raise UsageError(f"{path} is a LiteRT file; it runs only with --backend litert or auto")
    content = read_bytes(path, "--model")
    return litert.LiteModel.from_bytes(content, str(path))


def _lite_file_metadata(model: litert.LiteModel, path: Path,
                        config: ClassifyImageConfig) -> _Metadata:
    """The metadata a `.tflite` file carries (dlkit writes its folder's class names and
    preprocessing into every file), else that of the model folder holding it when its
    metadata.json records this very file (an older dlkit's). A file without either cannot
    say whether its model reads light-on-dark digits: `--invert auto` is then refused rather
    than guessed."""
    values = model.metadata()
    if values is None:
        folder = _recording_folder(path, model.content)
        if folder is not None:
            return _Metadata(folder, str(path.parent / METADATA))
        if config.invert == Invert.auto:
            raise UsageError(
                f"{model.description} carries no dlkit metadata, so its preprocessing is "
                "unknown (whether it reads light-on-dark digits, for --invert auto); give "
                "--invert no or --invert yes (and --labels for class names), or write the "
                "file with `dlkit export MODEL_FOLDER -o FILE`, which puts them in it")
        return _Metadata({}, "")
    task = values.get("task")
    if task not in IMAGE_TASKS:
        raise UsageError(f"{model.description} holds a {task} model, not an image classifier; "
                         "pass a model written by train-mnist or train-cifar")
    return _Metadata(values, f"the dlkit metadata in {model.description}")


def _recording_folder(path: Path, content: bytes) -> dict[str, Any] | None:
    """The metadata.json of the model folder holding `path` when it records this file (same
    SHA-256); None otherwise."""
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


def _load_saved_model(folder: Path) -> _Loaded:
    """A SavedModel's serving_default signature, once `dlkit.core.saved_model` has scanned
    its graph."""
    from dlkit.core import saved_model
    from dlkit.core.runtime import import_tensorflow_lean

    tf = import_tensorflow_lean()
    module, graph = saved_model.load(folder)
    signature = getattr(module, "signatures", {}).get("serving_default")
    if signature is None:
        raise UsageError(f"the SavedModel {folder} has no serving_default signature")
    inputs = signature.structured_input_signature[1]
    if len(inputs) != 1:
        raise UsageError(f"the SavedModel {folder} takes {len(inputs)} inputs; "
                         "classify-image needs a model with one image input")
    (name, spec), = inputs.items()
    if spec.shape.rank != 4:
        raise UsageError(f"the SavedModel {folder} input {name!r} has shape {spec.shape}; "
                         "expected (batch, height, width, channels)")
    outputs = signature.structured_outputs
    key = sorted(outputs)[0]
    dtype = spec.dtype

    def predict(images: Any) -> Any:
        return signature(**{name: tf.cast(images, dtype)})[key]

    last = saved_model.output_op(graph, "serving_default", key)
    return _Loaded(predict, tuple(spec.shape[1:]), outputs[key].shape[-1],
                   f"SavedModel {folder}", "tensorflow", lambda: last in _PROBABILITY_OPS)


def _load_keras(path: Path) -> _Loaded:
    if not path.is_file():
        raise UsageError(f"{path.parent} has no {SAVED_MODEL}/ or {KERAS_FILE}; it is not a "
                         "dlkit model folder")
    from dlkit.core.runtime import import_tensorflow_lean

    tf = import_tensorflow_lean()
    import keras

    if not zipfile.is_zipfile(path):  # Keras would call a damaged archive "File not found"
        raise UsageError(f"{path} is damaged (not a .keras zip archive); retrain the model or "
                         "pass another --model")
    register_layers_of(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise keras_load_error(path, exc) from None
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 4:
        raise UsageError(f"{path} takes inputs {shapes}; classify-image needs a model with one "
                         "(batch, height, width, channels) image input")

    @tf.function(reduce_retracing=True)
    def predict(images: Any) -> Any:
        out = model(images, training=False)
        return out[0] if isinstance(out, (list, tuple)) else out

    outputs = model.outputs[0].shape[-1] if len(model.outputs) == 1 else None
    return _Loaded(predict, shapes[0][1:], outputs, f"Keras model {path}", "tensorflow",
                   lambda: _keras_gives_probabilities(model))


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


def _input_shape(meta: _Metadata, loaded: _Loaded,
                 requested: tuple[int, int] | None) -> tuple[int, int, int]:
    """(height, width, channels) of the images to feed: the model's own sizes, completed by
    its metadata, then by --input-size. Metadata that contradicts the model is exit 2, and so
    is a size (the model's or its metadata's) beyond what --input-size takes."""
    height, width, channels = (list(loaded.input_shape) + [None, None, None])[:3]
    source = loaded.description
    if meta.values.get("input_shape") is not None:
        recorded = _recorded_shape(meta)
        if any(m is not None and m != r for m, r in zip((height, width, channels), recorded,
                                                         strict=True)):
            raise UsageError(
                f"{meta.source} says the model takes {_size(recorded)} images but the model "
                f"itself takes {_size(loaded.input_shape)}; the metadata belongs to another "
                "model: retrain the model or put its own metadata back")
        height, width, channels = recorded
        source = meta.source
    if height is not None and width is not None:
        height, width = model_image_size(height, width, source)
    if requested is not None:
        if (height, width) not in ((None, None), tuple(requested)):
            raise UsageError(f"--input-size {requested[0]} {requested[1]} does not match the "
                             f"model's input {height}x{width}; leave --input-size out")
        height, width = requested
    if height is None or width is None:
        raise UsageError("the model accepts any image size; give the size it was trained on "
                         "with --input-size HEIGHT WIDTH")
    grey = meta.values.get("preprocessing", {}).get("color") == "grayscale"
    channels = channels or (1 if grey else 3)
    if channels not in (1, 3):
        raise UsageError(f"the model takes {channels}-channel images; classify-image feeds "
                         "greyscale (1) or RGB (3)")
    return int(height), int(width), int(channels)


def _recorded_shape(meta: _Metadata) -> tuple[int, int, int]:
    value = meta.values["input_shape"]
    if (not isinstance(value, list) or len(value) != 3
            or not all(type(d) is int and d > 0 for d in value)):
        raise UsageError(f"{meta.source}: input_shape {value!r} is not [height, width, "
                         "channels]; retrain the model or put its own metadata back")
    return value[0], value[1], value[2]


def _size(shape: tuple[int | None, ...]) -> str:
    return "x".join("any" if d is None else str(d) for d in shape)


def _class_names(meta: _Metadata, labels: Path | None, outputs: int | None) -> list[str]:
    """The class names in output order: --labels, else the metadata's, else the indices.
    A count that differs from the model's outputs is exit 2, naming where the names came
    from."""
    if labels is not None:
        hint = "give a text file with one class name per line"
        try:
            text = read_bytes(labels, "--labels", hint).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"--labels {labels} is not UTF-8 text ({exc.reason}); {hint}") \
                from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
        source, fix = f"--labels {labels}", "--labels needs one name per line for every class"
    elif meta.values.get("class_names"):
        if not isinstance(meta.values["class_names"], list):
            raise UsageError(f"{meta.source}: class_names is not a list; retrain the model or "
                             "give --labels")
        names = [str(n) for n in meta.values["class_names"]]
        source, fix = meta.source, ("the metadata belongs to another model: retrain the model "
                                    "or give --labels")
    else:
        names = [str(i) for i in range(outputs or 0)]
        source, fix = "", ""
    if outputs is not None and outputs > 1 and len(names) != outputs:
        raise UsageError(f"the model has {outputs} classes but {source} names {len(names)}; "
                         f"{fix}")
    if outputs == 1 and len(names) < 2:
        names = ["0", "1"]
    if not names:
        raise UsageError("cannot tell how many classes the model has; pass --labels FILE")
    return names


def _invert_mode(meta: dict[str, Any], invert: str) -> str:
    """`auto` only considers inverting for models trained on light-on-dark images (digits)."""
    if invert != "auto":
        return invert
    light = meta.get("preprocessing", {}).get("foreground") == "light-on-dark"
    return "auto" if light else "no"


def _gives_probabilities(meta: _Metadata, loaded: _Loaded) -> bool:
    """What the model outputs, from its metadata ("outputs"; dlkit's image classifiers have
    always ended in a softmax), else from its graph: never from the values it gives."""
    kind = meta.values.get("outputs")
    if kind is not None:
        if kind not in OUTPUT_KINDS:
            raise UsageError(f"{meta.source}: outputs {kind!r} is not one of "
                             f"{', '.join(OUTPUT_KINDS)}; retrain the model")
        return kind == "probabilities"
    if meta.values.get("task") in IMAGE_TASKS:
        return True
    return loaded.graph_gives_probabilities()


def _probabilities(predict: Callable[[Any], Any],
                   probabilities: bool) -> Callable[[Any], np.ndarray]:
    """Model outputs as class probabilities: softmax for logits (sigmoid for one column);
    probabilities renormalised to sum to 1 (a quantised model's are off by a little)."""

    def run(images: Any) -> np.ndarray:
        out = np.asarray(predict(images), np.float64).reshape(int(images.shape[0]), -1)
        if out.shape[1] == 1:
            p = np.clip(out[:, 0], 0, 1) if probabilities else 1 / (1 + np.exp(-out[:, 0]))
            return np.stack([1 - p, p], axis=1)
        if probabilities:
            out = np.clip(out, 0, None)
            total = out.sum(axis=1, keepdims=True)
            return out / np.where(total > 0, total, 1.0)
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    return run


# ---------------------------------------------------------------------------------------------
# Running

def run(config: ClassifyImageConfig, on_prediction: Callable[[Prediction], None] | None,
        on_error: Callable[[str, str], None], progress: bool = True,
        read_stdin: Callable[[], Any] = stdin_paths) -> ClassifyResult:
    """Classify every input; predictions and per-file errors stream to the callbacks in order
    (`progress`: a bar on a terminal's stderr, off while results stream to that terminal)."""
    classifier = load_classifier(config)
    listed: list[str] = []  # the paths read from stdin: inputs the outputs must not touch
    inputs = collect_inputs(config.paths, lambda: _kept(read_stdin(), listed))
    if listed:
        check_outputs(config, [line.strip() for line in listed if line.strip()])
    for path, why in inputs.errors:
        on_error(path, why)
    start = time.perf_counter()
    try:
        predictions, failures = _classify(classifier, inputs, config, progress,
                                          on_prediction or (lambda p: None), on_error)
    except _ReaderGone:
        return ClassifyResult([], [], time.perf_counter() - start, classifier.description,
                              reader_gone=True)
    seconds = time.perf_counter() - start
    result = ClassifyResult(predictions, [*inputs.errors, *failures], seconds,
                            classifier.description)
    if predictions and config.csv is not None:
        result.artifacts["csv"] = str(write_csv(predictions, config.csv, config.top_k))
    if predictions and config.show is not None:
        result.artifacts["show"] = str(write_grid(predictions, config.show))
    return result


def _kept(lines: Any, kept: list[str]) -> Iterator[str]:
    """`lines`, each also appended to `kept`."""
    for line in lines:
        kept.append(line)
        yield line


def _classify(classifier: Classifier, inputs: Inputs, config: ClassifyImageConfig,
              progress: bool, on_prediction: Callable[[Prediction], None],
              on_error: Callable[[str, str], None],
              ) -> tuple[list[Prediction], list[tuple[str, str]]]:
    """Predict batch by batch; returns the predictions and the files that failed, in order."""
    failed: dict[int, str] = {}  # filled from the pipeline's decoding threads
    failures: list[tuple[str, str]] = []
    reported = 0  # every index below this has been printed or reported

    def flush_errors(upto: int) -> None:
        nonlocal reported
        for i in sorted(k for k in list(failed) if reported <= k < upto):  # list(): atomic
            on_error(inputs.paths[i], failed[i])
            failures.append((inputs.paths[i], failed[i]))
        reported = max(reported, upto)

    predictions: list[Prediction] = []
    if not inputs.paths:
        return predictions, failures
    names = classifier.class_names
    k = min(config.top_k, len(names))
    with _progress(len(inputs.paths) if progress else 0) as advance:
        for indices, probs in probabilities(classifier, inputs.paths, config.batch_size,
                                            lambda i, why: failed.__setitem__(i, why)):
            order = np.argsort(-probs, axis=1)[:, :k]
            for row, index in enumerate(indices):
                flush_errors(int(index))
                top = [(names[c], float(probs[row, c])) for c in order[row]]
                prediction = Prediction(inputs.paths[int(index)], top)
                predictions.append(prediction)
                on_prediction(prediction)
                reported = int(index) + 1
            advance(reported)
        flush_errors(len(inputs.paths))
    return predictions, failures


def probabilities(classifier: Classifier, paths: list[str], batch_size: int,
                  on_failed: Callable[[int, str], None]) -> Iterator[tuple[np.ndarray,
                                                                            np.ndarray]]:
    """(indices into `paths`, class probabilities) batch by batch, in order; a file that
    cannot be read is `on_failed(index, why)` (called from the decoding threads) and left out."""
    names = classifier.class_names
    numpy = classifier.backend == "litert" or classifier.prep.size is None  # sizes vary
    batches = numpy_batches if numpy else image_batches
    for images, indices in batches(paths, classifier.prep, batch_size, on_failed):
        probs = classifier.predict(images)
        if probs.shape[1] != len(names):
            raise UsageError(f"the model gives {probs.shape[1]} scores per image but there "
                             f"are {len(names)} labels; check --labels")
        yield np.asarray(indices), probs


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for many images on a terminal; otherwise nothing."""
    if total < 32 or console.is_quiet() or not console.stderr_is_terminal():
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("classifying", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console.err, transient=True, redirect_stdout=False) as bar:
        task = bar.add_task("classify", total=total)
        yield lambda done: bar.update(task, completed=done)


def write_csv(predictions: list[Prediction], path: Path, top_k: int) -> Path:
    """One row per image: path, label, confidence, then label_2, confidence_2, ...; written
    atomically, paths quoted by the csv module and kept byte for byte (a name that is not
    UTF-8 keeps its own bytes)."""
    path = path.expanduser()
    k = min(top_k, len(predictions[0].top))
    header = ["path", "label", "confidence"]
    header += [f"{col}_{i}" for i in range(2, k + 1) for col in ("label", "confidence")]
    with atomic_file(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for p in predictions:
            writer.writerow([p.path, *(v for name, conf in p.top
                                       for v in (name, f"{conf:.6f}"))])
    return path


def write_grid(predictions: list[Prediction], path: Path) -> Path:
    """The seed's picture: the first images with `label (confidence)` under each."""
    from dlkit.core import plots
    from dlkit.data.images import ImageError, read_image

    shown, titles = [], []
    for p in predictions[:SHOW_MAX]:
        try:
            image = read_image(Path(p.path))
        except ImageError:
            continue
        shown.append(_thumbnail(image, 128))
        titles.append(f"{_short(escape_path(Path(p.path).name))}\n{p.label} "
                      f"({p.confidence:.0%})")
    path = path.expanduser()
    plots.captioned_grid(shown, titles, path, "classify-image: predicted labels")
    return path


def _thumbnail(image: np.ndarray, side: int) -> np.ndarray:
    from dlkit.data.images import resize

    h, w = image.shape[:2]
    factor = side / max(h, w)
    return resize(image, (max(1, round(h * factor)), max(1, round(w * factor))))


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
