"""LiteRT (TFLite) files: converted when a model folder is saved, served without TensorFlow.

A model folder whose model takes fixed-shape numeric inputs also holds `model.tflite`, a float32
conversion of its SavedModel (a character model holds `decoder.tflite`, its one-step decoder,
instead). `metadata.json` records each file's SHA-256 and signatures under "litert", so a
replaced, truncated or foreign file is refused with one line instead of being run.

Each `model.tflite` dlkit writes (training, `dlkit export`, `export -o FILE`) also carries what
serving it needs from metadata.json, so that the file works on its own: a TFLite metadata entry
named "dlkit" holding a JSON object (task, class names, input shape, preprocessing, what the
output is), written and read with the flatbuffers schema the LiteRT package ships.

Conversion needs TensorFlow's converter (training and `dlkit export` have TensorFlow loaded);
serving (`LiteModel`, `open_recorded`) needs only NumPy and Google's `ai-edge-litert` interpreter,
so a command that serves a `.tflite` file never imports TensorFlow or Keras. That interpreter
runs LiteRT's built-in operations only: a file holding TensorFlow ops (Flex) or custom ops is
refused when it is loaded, so a `.tflite` file cannot reach files or the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.config import Backend, Quantize
from dlkit.core.errors import UsageError, first_line
from dlkit.core.files import read_bytes

TFLITE_FILE = "model.tflite"
META_KEY = "litert"  # metadata.json: {file name: record (sha256, signatures)}
METADATA_NAME = "dlkit"  # the TFLite metadata entry dlkit writes into its files
# What a file carries of metadata.json: what serving the model alone needs.
SERVING_KEYS = ("task", "dataset", "class_names", "input_shape", "preprocessing", "outputs")
MAX_METADATA_BYTES = 1 << 20


# ---------------------------------------------------------------------------------------------
# Conversion (TensorFlow)

def unsupported_reason(model: Any) -> str | None:
    """Why a Keras model cannot become a fixed-shape `.tflite` file, or None if it can."""
    for tensor in model.inputs:
        name = tensor.name
        if "string" in str(tensor.dtype):
            return (f"its input {name!r} is text (strings), which LiteRT's built-in "
                    "operations cannot take")
        if any(dim is None for dim in tuple(tensor.shape)[1:]):
            return f"its input {name!r} has no fixed shape ({tuple(tensor.shape)[1:]})"
    return None


def unavailable_reason(meta: dict[str, Any]) -> str | None:
    """Why a model folder has no LiteRT file and `dlkit export` cannot write one, told from its
    metadata.json (no model is loaded); None when export can write one."""
    pretrained = meta.get("pretrained")
    task = meta.get("task")
    if isinstance(pretrained, dict) and task == "train-text":
        return (f"it is a keras-hub {pretrained.get('class') or 'language model'} fine-tuned "
                f"from {pretrained.get('from') or 'a preset'}, whose token inputs have no fixed "
                "length, which a LiteRT file needs (dlkit serves keras-hub models with "
                "TensorFlow only)")
    if isinstance(pretrained, dict):
        return (f"its keras-hub backbone ({pretrained.get('backbone') or 'a preset'}) takes "
                "images of any size, and a LiteRT file needs a fixed input shape")
    if task == "train-text-classifier":
        return "it reads text (strings), which LiteRT's built-in operations cannot take"
    return None


def convert_saved_model(folder: Path, quantize: Quantize = Quantize.none,
                        calibration: Callable[[], Iterable[dict[str, np.ndarray]]] | None = None,
                        signature_keys: list[str] | None = None) -> bytes:
    """The SavedModel in `folder` as a `.tflite` flatbuffer (only built-in LiteRT operations).

    `calibration()` yields sample inputs ({input name: batch}) for int8 quantisation. The
    converter loads the SavedModel (running its initialisers), so its graph is scanned first
    (`dlkit.core.saved_model.scan`)."""
    from dlkit.core import saved_model
    from dlkit.core.runtime import import_tensorflow, silenced_stderr

    saved_model.scan(folder)
    tf = import_tensorflow()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder),
                                                         signature_keys=signature_keys)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != Quantize.none:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == Quantize.int8:
        if calibration is None:
            raise UsageError("int8 quantisation needs sample inputs to calibrate on")
        converter.representative_dataset = lambda: (
            {name: np.asarray(value, np.float32) if value.dtype.kind == "f" else value
             for name, value in sample.items()} for sample in calibration())
    with silenced_stderr():  # the MLIR converter logs to fd 2
        return bytes(converter.convert())


def convert_module(functions: dict[str, Any], owner: Any,
                   quantize: Quantize = Quantize.none) -> bytes:
    """`tf.function`s (with input signatures) over the variables of `owner` (a Keras model)
    as one `.tflite` file, one signature each: written by Keras's `ExportArchive` (which
    tracks the variables so that the converter freezes them) to a temporary SavedModel, then
    converted from there."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(owner)
    for name, function in functions.items():
        archive.add_endpoint(name, function)
    with tempfile.TemporaryDirectory(prefix="dlkit-litert-") as tmp:
        archive.write_out(tmp, verbose=False)
        return convert_saved_model(Path(tmp), quantize, signature_keys=list(functions))


def describe(content: bytes, input_order: list[str] | None = None) -> dict[str, Any]:
    """What metadata.json records of a `.tflite` file: its hash and its signatures (input
    names in the model's own order, with shapes; -1 for the batch size)."""
    model = LiteModel.from_bytes(content, "the converted model")
    signatures = {}
    for key in model.signature_keys:
        inputs = model.inputs(key)
        order = [n for n in (input_order or []) if n in inputs] or sorted(inputs)
        signatures[key] = {"inputs": {n: list(inputs[n][0]) for n in order},
                           "outputs": sorted(model.outputs(key))}
    return {"sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content),
            "signatures": signatures}


def convert_model_folder(saved_model: Path, model: Any, meta: dict[str, Any],
                         ) -> tuple[bytes, dict[str, Any]] | None:
    """`model.tflite` for a model folder being written, from `saved_model` (the SavedModel just
    exported from `model`), carrying `meta`'s serving keys: the file's bytes and its metadata
    record; None when the model's inputs have no fixed shape."""
    if unsupported_reason(model) is not None:
        return None
    return converted(lambda: with_metadata(convert_saved_model(saved_model), meta),
                     [t.name for t in model.inputs])


def serving_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The part of a model folder's metadata.json that a `.tflite` file carries."""
    return {key: meta[key] for key in SERVING_KEYS if key in meta}


def with_metadata(content: bytes, meta: dict[str, Any]) -> bytes:
    """`content` with its "dlkit" metadata entry set to `serving_metadata(meta)` (the file is
    rewritten through the schema's object API, as TensorFlow's converter adds its own
    metadata). A model whose weights lie outside the flatbuffer (over 2 GB) is kept as it is."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    info = serving_metadata(meta)
    if not info:
        return content
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    model.buffers = model.buffers or []
    if any(buffer.offset > 1 for buffer in model.buffers):
        return content
    data = np.frombuffer(json.dumps(info, sort_keys=True, ensure_ascii=False).encode(),
                         np.uint8)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if m.name == METADATA_NAME.encode()), None)
    if entry is None:  # a new entry; else its buffer is replaced
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers)
        model.buffers.append(schema.BufferT())
        model.metadata.append(entry)
    model.buffers[entry.buffer] = schema.BufferT(data=data)
    builder = flatbuffers.Builder(len(content) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def converted(convert: Callable[[], bytes], input_order: list[str] | None = None,
              ) -> tuple[bytes, dict[str, Any]] | None:
    """Run a conversion for a model being saved: (bytes, metadata record), or None with a
    warning when the converter fails (the folder is then served by TensorFlow: a missing
    `.tflite` must not cost the trained model). A full disk is still the save's error."""
    from dlkit.core.console import warn
    from dlkit.core.errors import DlkitError

    try:
        content = convert()
    except (OSError, DlkitError):
        raise
    except Exception as exc:  # the converter raises many types for an operation it lacks
        warn(f"could not convert the model to LiteRT ({converter_error(exc)}); it is served "
             "by TensorFlow")
        return None
    return content, describe(content, input_order)


def run_converter(convert: Callable[[], bytes]) -> bytes:
    """Run a conversion that was asked for (`dlkit export`): the converter's failure is one
    line (exit 1) naming what it lacks."""
    from dlkit.core.errors import DlkitError

    try:
        return convert()
    except (DlkitError, OSError):
        raise
    except Exception as exc:  # the converter raises many types for an operation it lacks
        raise DlkitError(f"the LiteRT converter failed: {converter_error(exc)}") from None


def converter_error(exc: BaseException) -> str:
    """The converter's failure in a few words (its MLIR diagnostics are pages long)."""
    text = str(exc).strip()
    if "loc(" in text or "TensorList" in text or "not supported" in text:
        ops = sorted((set(re.findall(r"'tf\.(\w+)'", text)) | set(re.findall(
            r"\[\"(\w+):", text))) - {"StatefulPartitionedCall", "PartitionedCall"})
        named = f": {', '.join(ops[:4])}" if ops else ""
        return f"it needs operations outside LiteRT's built-in set{named}"
    return first_line(text, 200, type(exc).__name__)


# ---------------------------------------------------------------------------------------------
# Serving (NumPy and ai-edge-litert only)

def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class LiteModel:
    """A `.tflite` file loaded into LiteRT's interpreter, run by signature."""

    def __init__(self, interpreter: Any, description: str,
                 record: dict[str, Any] | None = None, content: bytes = b"") -> None:
        self.interpreter, self.description = interpreter, description
        self.record = record or {}  # what metadata.json says of the file
        self.content = content  # the flatbuffer (the interpreter holds it anyway)
        self.signature_keys = sorted(interpreter.get_signature_list())
        self._runners: dict[str, Any] = {}
        self._ran: set[str] = set()

    @classmethod
    def from_bytes(cls, content: bytes, description: str,
                   record: dict[str, Any] | None = None) -> LiteModel:
        """Load a flatbuffer; a file LiteRT cannot read is exit 2, naming it."""
        from ai_edge_litert.interpreter import Interpreter

        from dlkit.core.runtime import silenced_stderr

        try:
            with silenced_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
                interpreter = Interpreter(model_content=content, num_threads=_threads())
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = first_line(exc, 200, "unreadable")
            raise UsageError(f"{description} is damaged or not a LiteRT model ({first})") \
                from None
        if not interpreter.get_signature_list():
            raise UsageError(f"{description} has no signatures; write it with `dlkit export`")
        return cls(interpreter, description, record, content)

    def metadata(self) -> dict[str, Any] | None:
        """The "dlkit" metadata entry the file carries (None when it has none); damaged
        metadata is exit 2."""
        return read_metadata(self.content, self.description)

    def output_op(self, key: str, output: str) -> str | None:
        """The built-in operation that computes a signature's output ("SOFTMAX"...)."""
        return output_op(self.content, key, output)

    def runner(self, key: str) -> Any:
        if key not in self._runners:
            self._runners[key] = self.interpreter.get_signature_runner(key)
        return self._runners[key]

    def inputs(self, key: str) -> dict[str, tuple[tuple[int, ...], Any]]:
        """{input name: (shape with -1 for a free size, numpy dtype)} of a signature."""
        return {name: (tuple(int(d) for d in detail["shape_signature"]), detail["dtype"])
                for name, detail in self.runner(key).get_input_details().items()}

    def outputs(self, key: str) -> dict[str, tuple[int, ...]]:
        return {name: tuple(int(d) for d in detail["shape_signature"])
                for name, detail in self.runner(key).get_output_details().items()}

    def __call__(self, key: str, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        from dlkit.core.runtime import silenced_stderr

        runner = self.runner(key)
        if key in self._ran:
            return runner(**inputs)
        self._ran.add(key)
        with silenced_stderr():  # a signature's first run creates its CPU delegate
            return runner(**inputs)


def open_recorded(folder: Path, meta: dict[str, Any], backend: Backend,
                  name: str = TFLITE_FILE) -> LiteModel | None:
    """The folder's LiteRT model for `--backend` (None: serve with TensorFlow).

    `auto` uses the file when the folder has one; `litert` requires it. A file that
    metadata.json does not record, or whose hash differs from the record (replaced, truncated,
    damaged), is exit 2 in both: running some other model would give wrong answers quietly."""
    if backend == Backend.tensorflow:
        return None
    path = Path(folder).expanduser() / name
    hint = f"rewrite it with `dlkit export {folder}` or use --backend tensorflow"
    if not path.is_file():
        if backend == Backend.litert:
            reason = unavailable_reason(meta)
            if reason is not None:
                raise UsageError(f"--backend litert cannot serve {folder}: {reason}; use "
                                 "--backend tensorflow (or auto)")
            raise UsageError(f"{folder} has no {name} for --backend litert; write one with "
                             f"`dlkit export {folder}` or use --backend tensorflow")
        return None
    records = meta.get(META_KEY)
    record = records.get(name) if isinstance(records, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise UsageError(f"{path} is not recorded in {folder}/metadata.json (dlkit did not "
                         f"write it for this model); {hint}")
    content = read_bytes(path, "the model file")
    if hashlib.sha256(content).hexdigest() != record["sha256"]:
        raise UsageError(f"{path} does not match {folder}/metadata.json (it was replaced or "
                         f"damaged after the model was saved); {hint}")
    return LiteModel.from_bytes(content, str(path), record)


def input_order(model: LiteModel, key: str = "serving_default") -> list[str]:
    """A signature's input names in the Keras model's order (as metadata.json records them)."""
    recorded = model.record.get("signatures", {}).get(key, {}).get("inputs")
    names = sorted(model.inputs(key))
    if isinstance(recorded, dict) and sorted(recorded) == names:
        return list(recorded)
    return names


# ---------------------------------------------------------------------------------------------
# Reading a file's own structure (the flatbuffer, through the LiteRT package's schema)

def read_metadata(content: bytes, description: str = "the LiteRT file") -> dict[str, Any] | None:
    """The JSON object of the file's "dlkit" metadata entry; None when it has none."""
    try:
        return _read_metadata(content, description)
    except (IndexError, TypeError, ValueError, struct.error):  # offsets out of the file
        raise UsageError(f"{description} is damaged (its flatbuffer cannot be read); export "
                         "the model again with `dlkit export`") from None


def _read_metadata(content: bytes, description: str) -> dict[str, Any] | None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != METADATA_NAME.encode():
            continue
        size = model.Buffers(entry.Buffer()).DataLength() if \
            entry.Buffer() < model.BuffersLength() else 0
        data = model.Buffers(entry.Buffer()).DataAsNumpy() if size else None
        if data is None or size > MAX_METADATA_BYTES:
            raise UsageError(f"{description} has a damaged dlkit metadata entry; export the "
                             "model again with `dlkit export`")
        try:
            info = json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError):
            info = None
        if not isinstance(info, dict):
            raise UsageError(f"{description} has a damaged dlkit metadata entry (not a JSON "
                             "object); export the model again with `dlkit export`")
        return info
    return None


_PASS_THROUGH = frozenset({"DEQUANTIZE", "QUANTIZE", "RESHAPE", "CAST"})


def output_op(content: bytes, key: str, output: str) -> str | None:
    """The name of the built-in operation computing output `output` of signature `key`
    (through (de)quantisation and reshapes): "SOFTMAX" for a model that outputs
    probabilities; None when it cannot be told."""
    try:
        return _output_op(content, key, output)
    except (IndexError, TypeError, ValueError, struct.error):  # offsets out of the file
        return None


def _output_op(content: bytes, key: str, output: str) -> str | None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(content, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for i in range(model.SignatureDefsLength()):
        signature = model.SignatureDefs(i)
        if signature.SignatureKey() != key.encode():
            continue
        tensors = [signature.Outputs(j) for j in range(signature.OutputsLength())]
        tensor = next((t.TensorIndex() for t in tensors if t.Name() == output.encode()), None)
        if tensor is None or signature.SubgraphIndex() >= model.SubgraphsLength():
            return None
        graph = model.Subgraphs(signature.SubgraphIndex())
        producers = {}
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            for out in (op.OutputsAsNumpy() if op.OutputsLength() else []):
                producers[int(out)] = op
        for _ in range(graph.OperatorsLength() + 1):
            op = producers.get(tensor)
            if op is None or op.OpcodeIndex() >= model.OperatorCodesLength():
                return None
            code = model.OperatorCodes(op.OpcodeIndex())
            name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            if name not in _PASS_THROUGH or not op.InputsLength():
                return name
            tensor = int(op.Inputs(0))
    return None
