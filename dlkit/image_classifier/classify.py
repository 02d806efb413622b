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
from dlkit.core.errors import EXIT_OK, EXIT_USAGE, UsageError
from dlkit.core.files import atomic_file, read_bytes
from dlkit.data.image_batches import (
    Inputs,
    Preprocess,
    collect_inputs,
    image_batches,
    numpy_batches,
    stdin_paths,
)
from dlkit.image_classifier.config import ClassifyImageConfig, model_image_size

EXIT_SOME_FAILED = 1
SHOW_MAX = 36  # images in the --show picture


def classify_images(config: ClassifyImageConfig) -> int:
    """The classify-image command: predictions stream to stdout as `path<TAB>label<TAB>conf`
    lines (or one JSON array at the end with --json), unreadable files are one `error:` line
    each, and the exit code says whether every file was classified (0), some failed (1) or
    none could be (2)."""
    model = Path(config.model).expanduser()
    for option, path in (("--csv", config.csv), ("--show", config.show)):
        if path is not None:  # never into the model folder (a SavedModel one included)
            check_output_file(option, path, protect=[model] if model.is_dir() else [])
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


def escape_path(path: str) -> str:
    """A path as one field of a tab-separated line: backslash, tab, newline and carriage return
    as `\\\\`, `\\t`, `\\n`, `\\r`; bytes that are not UTF-8 (a file name in another encoding)
    as `\\xNN`. Ordinary names are unchanged."""
    out = path.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    out = out.replace("\r", "\\r")
    return out.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
        if _has_surrogates(out) else out


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


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

@dataclass
class _Loaded:
    predict: Callable[[Any], Any]
    input_shape: tuple[int | None, ...]  # (H, W, C), None where the model accepts any size
    outputs: int | None
    description: str
    backend: str  # "litert" or "tensorflow"


def load_classifier(config: ClassifyImageConfig) -> Classifier:
    """Load the model once and work out its preprocessing and class names. A dlkit folder is
    served from its `model.tflite` through LiteRT when `--backend` allows (TensorFlow is then
    never imported), else from its SavedModel."""
    path = Path(config.model).expanduser()
    meta: dict[str, Any] = {}
    if is_preset(str(config.model)):
        return _load_preset(config)
    if not path.exists():
        raise UsageError(f"model {path} does not exist; train one (for example `dlkit "
                         f"train-cifar --output {path}`) or pass --model")
    if path.is_dir() and (path / METADATA).is_file():
        meta = load_metadata(path)
        lite = litert.open_model(path, meta, config.backend)
        saved = path / SAVED_MODEL
        loaded = (_load_lite(lite) if lite is not None
                  else _load_saved_model(saved) if (saved / "saved_model.pb").is_file()
                  else _load_keras(path / KERAS_FILE))
    elif path.is_file() and path.suffix == ".tflite":
        loaded = _load_lite_file(path, config.backend)
    elif config.backend == Backend.litert:
        raise UsageError(f"--backend litert needs a dlkit model folder with {litert.TFLITE_FILE} "
                         f"or a .tflite file; {path} is neither")
    elif path.is_dir() and (path / "saved_model.pb").is_file():
        loaded = _load_saved_model(path)
    elif path.is_file() and path.suffix == ".keras":
        if path.name == KERAS_FILE and (path.parent / METADATA).is_file():
            meta = load_metadata(path.parent)
        loaded = _load_keras(path)
    else:
        raise UsageError(f"{path} is not a model; pass a dlkit model folder (with {METADATA}), "
                         "a .keras file, a .tflite file or a SavedModel folder")
    shape = _input_shape(meta, loaded, config.input_size)
    names = _class_names(meta, config.labels, loaded.outputs)
    prep = Preprocess(size=shape[:2], channels=shape[2],
                      invert=_invert_mode(meta, config.invert.value),
                      center_digit=meta.get("dataset") == "mnist", scale=config.scale.value)
    return Classifier(_probabilities(loaded.predict), names, prep, loaded.description,
                      loaded.backend)


def is_preset(spec: str) -> bool:
    """Whether `--model` names a keras-hub preset: a handle, a preset folder (config.json, which
    dlkit's folders never hold), or a bare name that is not a file or folder here."""
    from dlkit.pretrained.hub import CONFIG_FILE, HF, KAGGLE

    if spec.startswith((KAGGLE, HF)):
        return True
    path = Path(spec).expanduser()
    if path.exists():
        return path.is_dir() and (path / CONFIG_FILE).is_file()
    return os.sep not in spec and not path.suffix


def _load_preset(config: ClassifyImageConfig) -> Classifier:
    """A keras-hub ImageClassifier: its own image converter (size, scale, mean and standard
    deviation) inside the predict function, which takes raw 0-255 RGB pixels resized to the
    converter's size; ImageNet class names for 1,000-class models."""
    from dlkit.pretrained.hub import (
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
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def predict(images: Any) -> Any:
        pixels = converter(images) if converter is not None else images
        return task(pixels, training=False)

    outputs = int(task.output_shape[-1]) if task.output_shape else None
    folder = preset.path.parent  # a preset that train-cifar --backbone wrote: its classes
    inside = preset.path.name == PRESET_DIR and (folder / METADATA).is_file()
    meta = load_metadata(folder) if inside else {}
    names = _class_names(meta, config.labels, outputs)
    if config.labels is None and not meta and outputs == 1000:
        keras_hub = import_keras_hub()
        names = [keras_hub.utils.imagenet_id_to_name(i) for i in range(1000)]
    prep = Preprocess(size=(int(size[0]), int(size[1])), channels=3, invert="no",
                      center_digit=False, scale="raw")
    console.info(f"loaded {config.model} ({type(task).__name__}, {task.count_params():,} "
                 f"parameters, {size[0]}x{size[1]} images) from {preset.source}")
    return Classifier(_probabilities(predict), names, prep,
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
    return _Loaded(lambda images: predictor.run([images]), shape, classes,
                   f"LiteRT {model.description}", "litert")


def _load_lite_file(path: Path, backend: Backend) -> _Loaded:
    if backend == Backend.tensorflow:
        raise UsageError(f"{path} is a LiteRT file; it runs only with --backend litert or auto")
    content = read_bytes(path, "--model")
    return _load_lite(litert.LiteModel.from_bytes(content, str(path)))


def _load_saved_model(folder: Path) -> _Loaded:
    from dlkit.core.runtime import import_tensorflow_lean

    tf = import_tensorflow_lean()
    try:
        module = tf.saved_model.load(str(folder))
    except Exception as exc:  # TensorFlow raises many types for a damaged SavedModel
        raise UsageError(f"cannot load the SavedModel {folder}: {_first_line(exc)}") from None
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

    return _Loaded(predict, tuple(spec.shape[1:]), outputs[key].shape[-1],
                   f"SavedModel {folder}", "tensorflow")


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
        raise UsageError(f"cannot load {path}: {_first_line(exc)}") from None
    shapes = [tuple(t.shape) for t in model.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 4:
        raise UsageError(f"{path} takes inputs {shapes}; classify-image needs a model with one "
                         "(batch, height, width, channels) image input")

    @tf.function(reduce_retracing=True)
    def predict(images: Any) -> Any:
        out = model(images, training=False)
        return out[0] if isinstance(out, (list, tuple)) else out

    outputs = model.outputs[0].shape[-1] if len(model.outputs) == 1 else None
    return _Loaded(predict, shapes[0][1:], outputs, f"Keras model {path}", "tensorflow")


def _input_shape(meta: dict[str, Any], loaded: _Loaded,
                 requested: tuple[int, int] | None) -> tuple[int, int, int]:
    declared = meta.get("input_shape")
    if declared and not isinstance(declared, list):
        raise UsageError(f"the model's metadata.json gives input_shape as a "
                         f"{type(declared).__name__}, not a list; retrain the model")
    model_shape = tuple(declared or loaded.input_shape)
    height, width, channels = (list(model_shape) + [None, None, None])[:3]
    if height is not None and width is not None:
        source = "the model's metadata.json" if declared else loaded.description
        height, width = model_image_size(height, width, source)
    if requested is not None:
        if (height, width) not in ((None, None), tuple(requested)):
            raise UsageError(f"--input-size {requested[0]} {requested[1]} does not match the "
                             f"model's input {height}x{width}; leave --input-size out")
        height, width = requested
    if height is None or width is None:
        raise UsageError("the model accepts any image size; give the size it was trained on "
                         "with --input-size HEIGHT WIDTH")
    channels = channels or (1 if meta.get("preprocessing", {}).get("color") == "grayscale"
                            else 3)
    if channels not in (1, 3):
        raise UsageError(f"the model takes {channels}-channel images; classify-image feeds "
                         "greyscale (1) or RGB (3)")
    return int(height), int(width), int(channels)


def _class_names(meta: dict[str, Any], labels: Path | None, outputs: int | None) -> list[str]:
    if labels is not None:
        hint = "give a text file with one class name per line"
        try:
            text = read_bytes(labels, "--labels", hint).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"--labels {labels} is not UTF-8 text ({exc.reason}); {hint}") \
                from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    elif meta.get("class_names"):
        names = [str(n) for n in meta["class_names"]]
    else:
        names = [str(i) for i in range(outputs or 0)]
    if outputs is not None and outputs > 1 and len(names) != outputs:
        raise UsageError(f"the model has {outputs} classes but {len(names)} labels were given; "
                         "--labels needs one name per line for every class")
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


def _probabilities(predict: Callable[[Any], Any]) -> Callable[[Any], np.ndarray]:
    """Model outputs as class probabilities: softmax for logits, two columns for a sigmoid."""

    def run(images: Any) -> np.ndarray:
        out = np.asarray(predict(images), np.float64).reshape(int(images.shape[0]), -1)
        if out.shape[1] == 1:
            p = out[:, 0] if out.min() >= 0 and out.max() <= 1 else 1 / (1 + np.exp(-out[:, 0]))
            return np.stack([1 - p, p], axis=1)
        if out.min() >= 0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            return out
        shifted = np.exp(out - out.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    return run


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# ---------------------------------------------------------------------------------------------
# Running

def run(config: ClassifyImageConfig, on_prediction: Callable[[Prediction], None] | None,
        on_error: Callable[[str, str], None], progress: bool = True,
        read_stdin: Callable[[], Any] = stdin_paths) -> ClassifyResult:
    """Classify every input; predictions and per-file errors stream to the callbacks in order
    (`progress`: a bar on a terminal's stderr, off while results stream to that terminal)."""
    classifier = load_classifier(config)
    inputs = collect_inputs(config.paths, read_stdin)
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
    batches = numpy_batches if classifier.backend == "litert" else image_batches
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
