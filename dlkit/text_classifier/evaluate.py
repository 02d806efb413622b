"""`dlkit evaluate` on a text classifier's model folder (train-text-classifier): labelled texts
(a folder of class subfolders of `.txt` files, or a CSV of `text,label`) scored with
`dlkit.core.evaluation`'s classification scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlkit.core.config import Backend
from dlkit.core.console import Report
from dlkit.core.evaluation import EvaluateConfig, class_indices, classification_scores


def evaluate_text_classifier(config: EvaluateConfig, meta: dict[str, Any]) -> Report:
    """Accuracy and per-class scores on labelled texts (see the module doc)."""
    from dlkit.core.runtime import import_tensorflow
    from dlkit.core.serving import open_model

    import_tensorflow()
    from dlkit.text_classifier.train import predict, read_csv, read_folder

    data = Path(config.data).expanduser()
    texts = (read_folder(data, at_least_two=False) if data.is_dir() else
             read_csv(str(data), config.text_column, config.label_column, at_least_two=False))
    names = [str(n) for n in meta.get("class_names", [])]
    truth = class_indices([texts.class_names[k] for k in texts.labels], names, config.data)
    model = open_model(config.model, Backend.tensorflow, meta=meta)
    probs = predict(model, texts.texts, config.batch_size)
    return classification_scores(config, "text", names, truth, probs, 0).report()
