"""The options of `serve` (see dlkit.core.config)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dlkit.core.config import Backend, Config, backend_option, opt
from dlkit.core.errors import UsageError
from dlkit.core.files import MiB

MAX_BODY = 32 * MiB  # the largest request body the server reads (a documented limit)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # a model name that fits in a URL path


@dataclass(kw_only=True)
class ServeConfig(Config):
    """Serve trained models over HTTP: TensorFlow Serving's REST API, :classify, :generate.

    GET /v1/models/NAME (status), GET /v1/models/NAME/metadata, POST /v1/models/NAME:predict
    ({"instances": [...]} or {"inputs": ...}); for image classifiers POST
    /v1/models/NAME:classify with the bytes of an image file as the body; for text models POST
    /v1/models/NAME:generate with generate-text's options as JSON, the text streamed back.
    Request bodies of more than 32 MiB are refused. Models with a model.tflite run on LiteRT
    (TensorFlow is never imported), others on TensorFlow.

    Example: dlkit serve --model digits=models/mnist --port 8501
    """

    COMMAND = "serve"

    model: list[str] = opt(help="NAME=FOLDER: serve the model folder (or .keras, .tflite, "
                           "SavedModel, keras-hub image classifier or language model preset) "
                           "as /v1/models/NAME; repeat for several models.",
                           metavar="NAME=FOLDER")
    host: str = opt("127.0.0.1", "Address to listen on (127.0.0.1: this machine only; "
                    "0.0.0.0 exposes the models to the network, without authentication).")
    port: int = opt(8501, "Port to listen on (TensorFlow Serving's REST port; 0 picks a free "
                    "one, printed on stderr).", min=0, max=65535)
    backend: Backend = backend_option()

    def check(self) -> None:
        if not self.model:
            raise UsageError("give at least one --model NAME=FOLDER to serve")
        self.models()

    def models(self) -> dict[str, str]:
        """--model values as {name: folder}, in the order given; exit 2 for a malformed or
        repeated name."""
        found: dict[str, str] = {}
        for value in self.model:
            name, sep, folder = value.partition("=")
            if not sep or not folder:
                raise UsageError(f"--model {value!r} is not NAME=FOLDER (for example "
                                 "--model digits=models/mnist)")
            if not NAME.fullmatch(name):
                raise UsageError(f"--model name {name!r} must be 1-64 letters, digits, '_', "
                                 "'.' or '-', starting with a letter or digit")
            if name in found:
                raise UsageError(f"--model name {name!r} is given twice; each model needs "
                                 "its own name")
            found[name] = folder
        return found
