"""`dlkit classify-image`: classify image files with a trained model, one file or thousands.

The model is opened once by `dlkit.core.serving.open_model`: a dlkit model folder, a `.tflite`
file, a `.keras` file, any SavedModel folder (`--labels`, `--input-size`) or a keras-hub
preset. This module keeps the image side: the preprocessing and class names the model's
metadata (and the options) call for, checked against the model; files decoded in parallel in a
tf.data pipeline (`dlkit.data.image_batches`), batched and predicted; each prediction handed to
a callback as soon as its batch is done, so output streams. Files that cannot be read are
reported one by one and the others are still classified.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core import console, hub
from dlkit.core.artifacts import check_output_file
from dlkit.core.config import Backend
from dlkit.core.console import has_surrogates as _has_surrogates
from dlkit.core.console import tsv_field as escape_path
from dlkit.core.errors import EXIT_OK, EXIT_USAGE, UsageError
from dlkit.core.files import atomic_file, read_bytes
from dlkit.core.serving import Predictor, open_model
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
    model: Predictor | None = None  # the model itself (its raw outputs)


# ---------------------------------------------------------------------------------------------
# Loading the model

# dlkit's image classifier folders (softmax outputs); "export": a keras-hub preset's folder
IMAGE_TASKS = ("train-mnist", "train-cifar", "export")
OUTPUT_KINDS = ("probabilities", "logits")  # metadata "outputs": what the model gives


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
    """Open the model once (`dlkit.core.serving.open_model`: a dlkit folder is served from
    its `model.tflite` through LiteRT when `--backend` allows, so TensorFlow is never imported,
    else from its SavedModel) and work out its preprocessing and class names. Metadata that
    does not fit the model is exit 2 before anything is predicted."""
    path = Path(config.model).expanduser()
    preset = hub.is_preset(str(config.model))
    if not preset and not path.exists():
        raise UsageError(f"model {path} does not exist; train one (for example `dlkit "
                         f"train-cifar --output {path}`) or pass --model")
    model = open_model(config.model, config.backend, saved_model=True)
    meta = _Metadata(model.metadata, model.metadata_source)
    if preset:
        return _preset_classifier(model, meta, config)
    _check_metadata(model, meta, path, config)
    shape = _input_shape(meta, model, config.input_size)
    names = _class_names(meta, config.labels, _classes(model))
    prep = Preprocess(size=shape[:2], channels=shape[2],
                      invert=_invert_mode(meta.values, config.invert.value),
                      center_digit=meta.values.get("dataset") == "mnist",
                      scale=config.scale.value)
    return Classifier(_probabilities(model, _gives_probabilities(meta, model)), names, prep,
                      model.description, model.backend, model)


def serving_classifier(model: str, backend: Backend) -> Classifier:
    """The classifier `dlkit serve` answers `:classify` requests with: `model` opened as
    `classify-image --model MODEL --backend BACKEND` opens it, every other option at its
    default, so a served image gets the label and confidence classify-image prints."""
    return load_classifier(ClassifyImageConfig(paths=[], model=model, backend=backend))


def _preset_classifier(model: Predictor, meta: _Metadata,
                       config: ClassifyImageConfig) -> Classifier:
    """A keras-hub ImageClassifier: raw 0-255 RGB pixels, at each image's own size when its
    image converter resizes them, else at the size it declares (or --input-size)."""
    height, width = model.input_shapes[0][:2]
    size = (height, width) if height is not None and width is not None else config.input_size
    if size is None:
        raise UsageError(f"{config.model} does not say its image size; give --input-size "
                         "HEIGHT WIDTH")
    size = model_image_size(*size, f"the image converter of {config.model}")
    names = _class_names(meta, config.labels, _classes(model))
    prep = Preprocess(size=None if model.resizes_images else size, channels=3, invert="no",
                      center_digit=False, scale="raw")
    return Classifier(_probabilities(model, model.gives_probabilities()), names, prep,
                      model.description, model.backend, model)


def _check_metadata(model: Predictor, meta: _Metadata, path: Path,
                    config: ClassifyImageConfig) -> None:
    """Exit 2 when the metadata says the model is not an image classifier, or when a
    `.tflite` file comes without metadata and `--invert auto` would have to guess whether its
    model reads light-on-dark digits (dlkit writes its folder's class names and preprocessing
    into every file it exports; an older dlkit's folder recording the file also says)."""
    task = meta.values.get("task")
    if task is not None and task not in IMAGE_TASKS:
        raise UsageError(f"{path} holds a {task} model, not an image classifier; pass a model "
                         "written by train-mnist or train-cifar (or by export PRESET -o FOLDER)")
    lite_file = path.is_file() and path.suffix == ".tflite"
    if lite_file and not meta.values and config.invert == Invert.auto:
        raise UsageError(
            f"{model.description} carries no dlkit metadata, so its preprocessing is "
            "unknown (whether it reads light-on-dark digits, for --invert auto); give "
            "--invert no or --invert yes (and --labels for class names), or write the "
            "file with `dlkit export MODEL_FOLDER -o FILE`, which puts them in it")


def _classes(model: Predictor) -> int | None:
    """How many scores the model gives per image (None when it does not say)."""
    return model.output_shape[-1] if model.output_shape else None


def _image_input(model: Predictor) -> tuple[int | None, ...]:
    """The model's one (height, width, channels) input; exit 2 for any other inputs."""
    if len(model.input_shapes) != 1:
        raise UsageError(f"{model.description} takes {len(model.input_shapes)} inputs; "
                         "classify-image needs a model with one image input")
    (shape,) = model.input_shapes
    if len(shape) != 3:
        raise UsageError(f"{model.description} takes inputs of shape {shape}; expected "
                         "(height, width, channels) images")
    return shape


def _input_shape(meta: _Metadata, model: Predictor,
                 requested: tuple[int, int] | None) -> tuple[int, int, int]:
    """(height, width, channels) of the images to feed: the model's own sizes, completed by
    its metadata, then by --input-size. Metadata that contradicts the model is exit 2, and so
    is a size (the model's or its metadata's) beyond what --input-size takes."""
    model_shape = _image_input(model)
    height, width, channels = model_shape
    source = model.description
    if meta.values.get("input_shape") is not None:
        recorded = _recorded_shape(meta)
        if any(m is not None and m != r for m, r in zip((height, width, channels), recorded,
                                                         strict=True)):
            raise UsageError(
                f"{meta.source} says the model takes {_size(recorded)} images but the model "
                f"itself takes {_size(model_shape)}; the metadata belongs to another "
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


def _gives_probabilities(meta: _Metadata, model: Predictor) -> bool:
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
    return model.gives_probabilities()


def _probabilities(model: Predictor, probabilities: bool) -> Callable[[Any], np.ndarray]:
    """Model outputs as class probabilities: softmax for logits (sigmoid for one column);
    probabilities renormalised to sum to 1 (a quantised model's are off by a little)."""

    def run(images: Any) -> np.ndarray:
        out = np.asarray(model.run([images]), np.float64).reshape(int(images.shape[0]), -1)
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
