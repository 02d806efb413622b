"""`dlkit export`: a LiteRT file for a trained model folder, float32 or quantised (or an ONNX
file: `dlkit.export.onnx`).

Numeric models are converted from the folder's SavedModel (the serving graph, preprocessing
included, after `dlkit.core.saved_model.scan` has checked its graph) and carry the folder's
serving metadata (class names, preprocessing) in the file; character models from their
one-step decoder (`dlkit.text.models`). int8 quantisation is calibrated on inputs like the
ones the model saw in training: a sample of its training images (found the way training found
them), its latent noise (GAN, VAE), or windows of its training series. Models that LiteRT
cannot take (the text classifier reads strings) are one line naming the reason.

Without `-o` the file is added to the model folder, which is then rewritten like a training
writes it: under the folder's lock (one writer at a time), as one atomic swap, and in the real
folder when the one named is a symbolic link (the link stays a link). With `-o FILE`, FILE must
not be one of what the export reads (the folder, the calibration data) nor lie inside it.

Imports TensorFlow and Keras: import this module inside command bodies only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core import artifacts, hub, litert, registry
from dlkit.core.config import Quantize, recorded_settings
from dlkit.core.console import Report, to_json
from dlkit.core.errors import DlkitError, UsageError, disk_error
from dlkit.core.files import write_atomic
from dlkit.core.hub import PRESET_DIR
from dlkit.export.config import ExportConfig, ExportFormat


def export(config: ExportConfig) -> Report:
    """Convert, then write the file (or rewrite the model folder with it); report it."""
    if hub.is_preset(str(config.model)):
        return _export_preset(str(config.model), config.output)
    folder = config.model.expanduser()
    meta = artifacts.load_metadata(folder)
    if config.format == ExportFormat.onnx:
        return _export_onnx(folder, meta, config)
    if config.output is None:
        name, content, record = _export_into(folder, config)
        output = folder / name
    else:  # checked before the conversion: a bad path costs nothing
        output = artifacts.check_output_file("--output", config.output,
                                             inputs=_reads(folder, meta, config))
        name, content, record = _convert(folder, meta, config)
        write_atomic(output, content)
    signatures = record["signatures"]
    data = {"model": str(folder), "file": str(output), "bytes": len(content),
            "quantize": config.quantize.value, "signatures": signatures}
    rows = {"file": str(output), "size": f"{len(content) / 1e6:.2f} MB",
            "quantize": config.quantize.value,
            "inputs": "; ".join(f"{key}: " + ", ".join(f"{n} {tuple(s)}" for n, s in
                                                      sig["inputs"].items())
                                for key, sig in signatures.items())}
    return Report(f"export {folder}", rows, str(output), data)


def _export_preset(spec: str, output: Path) -> Report:
    """A keras-hub image classifier preset as a LiteRT model folder (the image classifier
    family's "preset-exporter")."""
    paths = registry.load("preset-exporter", "ImageClassifier")(spec, output)
    folder = Path(paths["model_dir"])
    meta = artifacts.load_metadata(folder)
    record = (meta.get(litert.META_KEY) or {}).get(litert.TFLITE_FILE) or {}
    data = {"model": spec, "folder": str(folder), "file": str(folder / litert.TFLITE_FILE),
            "bytes": record.get("bytes"), "input_shape": meta.get("input_shape"),
            "classes": len(meta.get("class_names") or []) or None}
    rows = {"folder": str(folder), "model.tflite": f"{(record.get('bytes') or 0) / 1e6:.2f} MB",
            "input": "x".join(map(str, meta.get("input_shape") or [])) + " raw RGB pixels"}
    return Report(f"export {spec}", rows, str(folder), data)


def _export_onnx(folder: Path, meta: dict[str, Any], config: ExportConfig) -> Report:
    from dlkit.export import onnx

    output = artifacts.check_output_file("--output", config.output, inputs=[folder])
    content, record = onnx.convert(folder, meta)
    write_atomic(output, content)
    data = {"model": str(folder), "file": str(output), "bytes": len(content), "format": "onnx",
            **record}
    rows = {"file": str(output), "size": f"{len(content) / 1e6:.2f} MB",
            "opset": record["opset"],
            "inputs": ", ".join(f"{n} {tuple(s)}" for n, s in record["inputs"].items()),
            "largest difference from Keras": f"{record['max_difference']:.2g}"}
    return Report(f"export {folder}", rows, str(output), data)


def _convert(folder: Path, meta: dict[str, Any], config: ExportConfig,
             ) -> tuple[str, bytes, dict[str, Any]]:
    """(the folder's file name for it, the flatbuffer, its metadata record)."""
    reason = litert.unavailable_reason(meta)
    if reason is not None:
        raise UsageError(f"dlkit export cannot convert {folder} to LiteRT: {reason}; it "
                         f"converts {EXPORTABLE}. {_instead(folder, meta)}")
    exporter = registry.load("exporter", str(meta.get("task")))
    if exporter is not None:  # a model LiteRT gets in another form than its SavedModel
        return exporter(folder, config.quantize)
    model = artifacts.load_keras_model(folder)
    reason = litert.unsupported_reason(model)
    if reason is not None:
        raise UsageError(f"{folder} ({meta.get('task', 'unknown')} model) cannot be converted "
                         f"to LiteRT: {reason}")
    names = [t.name for t in model.inputs]
    calibration = None
    if config.quantize == Quantize.int8:
        calibration = _calibration(names, _calibration_inputs(
            folder, meta, model, config.calibration_samples))
    content = litert.run_converter(lambda: litert.with_metadata(litert.convert_saved_model(
        folder / artifacts.SAVED_MODEL, config.quantize, calibration), meta))
    return litert.TFLITE_FILE, content, litert.describe(content, names)


# What `dlkit export` converts: the models dlkit builds itself, with fixed-shape numeric inputs.
EXPORTABLE = ("models dlkit trains from scratch (train-mnist, train-cifar without --backbone, "
              "train-text without --from-preset, train-gan, train-vae, train-sequence)")


def _instead(folder: Path, meta: dict[str, Any]) -> str:
    """What to do with a folder export cannot convert: the command that serves it, and its
    portable files."""
    command = {"train-text": f"dlkit generate-text --model {folder}",
               "train-cifar": f"dlkit classify-image IMAGE --model {folder}",
               "train-text-classifier": f"dlkit classify-text TEXT --model {folder}",
               }.get(str(meta.get("task")))
    steps = [f"`{command}` serves it with TensorFlow"] if command else []
    steps.append(f"TensorFlow tools load {folder / artifacts.SAVED_MODEL}")
    if (folder / PRESET_DIR).is_dir():
        steps.append(f"keras-hub loads the preset {folder / PRESET_DIR}")
    return "Instead: " + "; ".join(steps)


def _export_into(folder: Path, config: ExportConfig) -> tuple[str, bytes, dict[str, Any]]:
    """Convert the model of `folder` and add the file to it, in the real folder (a symbolic
    link to it stays a link) and under its lock, from its metadata as it is under the lock."""
    real = artifacts.lock_folder(folder.resolve(), "wait for it to finish, or export to a "
                                 "file of its own with -o")
    meta = artifacts.load_metadata(real)
    name, content, record = _convert(real, meta, config)
    _add_to_folder(real, meta, name, content, record)
    return name, content, record


def _reads(folder: Path, meta: dict[str, Any], config: ExportConfig) -> list[Any]:
    """What the export reads: the model folder and, for int8, the training data it calibrates
    on (as its metadata names it)."""
    reads: list[Any] = [folder]
    if config.quantize == Quantize.int8:
        data_dir = recorded_settings(meta).get("data-dir")
        reads += [p for p in (data_dir, meta.get("csv")) if isinstance(p, str)]
    return reads


def _calibration(names: list[str], inputs: list[np.ndarray],
                 ) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    def samples() -> Iterator[dict[str, np.ndarray]]:
        for i in range(len(inputs[0])):
            yield {name: x[i:i + 1] for name, x in zip(names, inputs, strict=True)}

    return samples


def _calibration_inputs(folder: Path, meta: dict[str, Any], model: Any,
                        count: int) -> list[np.ndarray]:
    """Inputs like the training ones, for int8 calibration (one array per model input)."""
    task = meta.get("task")
    rng = np.random.default_rng(0)
    if task in ("train-gan", "train-vae"):
        latent = int(model.inputs[0].shape[-1])
        inputs = [rng.standard_normal((count, latent)).astype(np.float32)]
        if len(model.inputs) == 2:  # a conditional generator: every class in turn
            classes = len(meta.get("class_names") or [0])
            inputs.append((np.arange(count) % classes).astype(np.int32))
        return inputs
    calibrate = registry.load("calibration", str(task))
    if calibrate is None:
        raise UsageError(f"--quantize int8 does not know the training data of {task} models; "
                         "use --quantize dynamic")
    try:
        return [calibrate(meta, count, rng)]
    except DlkitError as exc:
        raise UsageError(f"--quantize int8 calibrates on the training data of {folder}, which "
                         f"cannot be read: {exc.message}") from None


def _add_to_folder(folder: Path, meta: dict[str, Any], name: str, content: bytes,
                   record: dict[str, Any]) -> Path:
    """Rewrite the model folder (its real path, locked) with the file added and metadata.json
    recording it, as one atomic swap (the folder is never seen half updated). Whatever else is
    in it is copied as it is (symbolic links as links) and stays out of its manifest."""
    staging = artifacts.Staging(folder)
    try:
        shutil.copytree(folder, staging.path, symlinks=True, dirs_exist_ok=True)
        write_atomic(staging.path / name, content)
        updated = {**meta, "files": sorted(set(meta.get("files") or []) | {name}),
                   litert.META_KEY: {**(meta.get(litert.META_KEY) or {}), name: record}}
        if isinstance(meta.get(artifacts.MANIFEST), list):
            updated[artifacts.MANIFEST] = sorted(set(meta[artifacts.MANIFEST]) | {name})
        write_atomic(staging.path / artifacts.METADATA, to_json(updated) + "\n")
        staging.commit()
    except OSError as exc:
        staging.discard()
        raise disk_error(f"the model folder {folder}", exc) from None
    except BaseException:
        staging.discard()
        raise
    return folder / name
