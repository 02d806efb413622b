"""`dlkit classify-text`: label texts with a train-text-classifier model.

Texts come as arguments, or one per line from stdin (`-`); each gets one line on stdout,
`label<TAB>confidence` (K pairs with `--top-k`), in input order, or with --json one JSON array.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlkit.core.config import Backend
from dlkit.core.console import emit_json, info
from dlkit.core.errors import UsageError
from dlkit.text_classifier.config import ClassifyTextConfig


@dataclass
class Prediction:
    text: str
    labels: list[str]
    confidences: list[float]

    def to_line(self) -> str:
        return "\t".join(f"{label}\t{conf:.4f}" for label, conf in
                         zip(self.labels, self.confidences, strict=True))

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.labels[0], "confidence": self.confidences[0],
                "top": [{"label": k, "confidence": c} for k, c in
                        zip(self.labels, self.confidences, strict=True)]}


def classify_text(config: ClassifyTextConfig) -> None:
    """Print one prediction per text (`-` reads one text per line from stdin)."""
    predictions, seconds = classify(config)
    if config.json:
        emit_json([p.to_json() for p in predictions])
    else:
        try:
            sys.stdout.write("".join(p.to_line() + "\n" for p in predictions))
            sys.stdout.flush()
        except BrokenPipeError:  # the reader has gone (`| head`): a quiet end
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    info(f"classified {len(predictions)} texts in {seconds:.2f} s")


def classify(config: ClassifyTextConfig) -> tuple[list[Prediction], float]:
    """The predictions for the texts, in order, and the seconds the model took."""
    from dlkit.core.artifacts import load_metadata
    from dlkit.core.serving import open_model
    from dlkit.text_classifier.train import predict

    meta = load_metadata(config.model, "train-text-classifier")
    names = meta.get("class_names")
    if not isinstance(names, list) or len(names) < 2:
        raise UsageError(f"{config.model}/metadata.json lists no class names; retrain the "
                         "model")
    texts: list[str] = []
    for text in config.texts:
        texts.extend(_stdin_lines() if text == "-" else [text])
    if not texts:
        raise UsageError("no texts to classify; give TEXT arguments or - to read lines from "
                         "stdin")
    model = open_model(config.model, Backend.tensorflow, meta=meta)
    started = time.perf_counter()
    probs = predict(model, texts)
    seconds = time.perf_counter() - started
    if probs.shape[1] != len(names):
        raise UsageError(f"the model gives {probs.shape[1]} scores per text but its metadata "
                         f"names {len(names)} classes; retrain the model")
    k = min(config.top_k, len(names))
    order = np.argsort(-probs, axis=1)[:, :k]
    return [Prediction(t, [str(names[j]) for j in row], [float(p[j]) for j in row])
            for t, row, p in zip(texts, order, probs, strict=True)], seconds


def _stdin_lines() -> list[str]:
    """The lines of stdin (at most LINES_LIMIT bytes) as UTF-8 text; other bytes are the
    user's bad input (exit 2)."""
    from dlkit.core.files import LINES_LIMIT, read_stdin

    raw = read_stdin("the texts", LINES_LIMIT, "classify them in parts")
    try:
        return raw.decode("utf-8-sig").splitlines()
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise UsageError(f"stdin is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "convert it, for example with iconv -t UTF-8") from None
