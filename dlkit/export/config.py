"""The options of `export` (see dlkit.core.config)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from dlkit.core import hub
from dlkit.core.config import Config, Quantize, opt
from dlkit.core.errors import UsageError


class ExportFormat(enum.StrEnum):
    tflite = "tflite"
    onnx = "onnx"


@dataclass(kw_only=True)
class ExportConfig(Config):
    """Write a LiteRT (.tflite) or ONNX (.onnx) file for a trained model folder.

    Without --output, the folder's own model.tflite (decoder.tflite for train-text models) is
    written, float32, and the folder is rewritten atomically: for folders saved by an older
    dlkit. With --output, a separate file, optionally quantised (int8 is calibrated on a sample
    of the model's training data); `classify-image --model FILE.tflite` serves it.

    A keras-hub image classifier preset (a name, handle or preset folder) with --output FOLDER
    becomes a model folder whose model.tflite holds the preset's image converter, so
    classify-image and serve run it on LiteRT.

    Example: dlkit export models/mnist --quantize int8 --output mnist-int8.tflite

    Example: dlkit export mobilenet_v3_small_100_imagenet --output models/mobilenet
    """

    COMMAND = "export"

    model: Path = opt(help="Model folder written by a dlkit train command, or a keras-hub "
                      "image classifier preset (with --output FOLDER).", argument=True,
                      metavar="MODEL")
    format: ExportFormat = opt(ExportFormat.tflite, "File format: tflite (LiteRT) or onnx "
                               "(needs --output FILE.onnx).")
    quantize: Quantize = opt(Quantize.none, "none (float32: the same results as TensorFlow), "
                             "dynamic (int8 weights: about 4x smaller) or int8 (int8 weights "
                             "and activations, calibrated on the training data).")
    calibration_samples: int = opt(256, "int8: training examples to calibrate on.", min=8,
                                   max=100_000)
    output: Path | None = opt(None, "The .tflite file to write (default: the model folder's "
                              "own file; --quantize needs --output), or for a preset the model "
                              "folder to write.", flags=("-o",), show_default=False)

    def check(self) -> None:
        if hub.is_preset(str(self.model)):
            self._check_preset()
            return
        if self.format == ExportFormat.onnx:
            if self.quantize != Quantize.none:
                raise UsageError("--quantize applies to LiteRT files; --format onnx writes "
                                 "float32")
            if self.output is None or self.output.suffix.lower() != ".onnx":
                raise UsageError("--format onnx needs --output FILE.onnx (the model folder "
                                 "itself is not changed)")
            return
        if self.output is None and self.quantize != Quantize.none:
            raise UsageError(f"--quantize {self.quantize.value} needs --output FILE.tflite: "
                             "the model folder's own file stays float32, with TensorFlow's "
                             "results")
        if self.output is not None and self.output.suffix.lower() != ".tflite":
            raise UsageError(f"--output {self.output} must name a .tflite file")

    def _check_preset(self) -> None:
        """A preset becomes a float32 LiteRT model folder, named by --output."""
        if self.format != ExportFormat.tflite or self.quantize != Quantize.none:
            raise UsageError(f"{self.model} is a keras-hub preset, which export writes as a "
                             "float32 LiteRT model folder; drop --format and --quantize (then "
                             "quantise that folder with `dlkit export FOLDER --quantize dynamic "
                             "-o FILE.tflite`)")
        if self.output is None or self.output.suffix.lower() in (".tflite", ".onnx"):
            raise UsageError(f"{self.model} is a keras-hub preset: give --output FOLDER, the "
                             "model folder to write (classify-image and serve then run it on "
                             "LiteRT)")
