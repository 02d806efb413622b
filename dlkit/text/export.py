"""`dlkit export` on a train-text model folder: its one-step decoder as `decoder.tflite`.

A character model is served one step at a time (`dlkit.text.decoding`), so what LiteRT gets is
not the training model's SavedModel but its decoding functions (`models.decoding_functions`),
one signature each. Registered as the "exporter" of train-text (`dlkit.core.registry`).

Imports TensorFlow and Keras: `dlkit export` imports it when it converts such a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlkit.core import litert
from dlkit.core.config import Quantize
from dlkit.core.errors import UsageError
from dlkit.text.decoding import DECODER_FILE
from dlkit.text.generate import load_text_model
from dlkit.text.models import decoding_functions


def export_decoder(folder: Path, quantize: Quantize) -> tuple[str, bytes, dict[str, Any]]:
    """(the folder's file name for it, the flatbuffer, its metadata record)."""
    if quantize == Quantize.int8:
        raise UsageError("--quantize int8 is not available for train-text models (the "
                         "decoder's state has no calibration data); use --quantize dynamic")
    model, meta = load_text_model(folder)
    content = litert.run_converter(lambda: litert.convert_module(
        decoding_functions(meta["arch"], model), model, quantize))
    return DECODER_FILE, content, litert.describe(content)
