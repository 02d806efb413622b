"""`dlkit models`: the pretrained keras-hub presets dlkit can use, and which are cached."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dlkit.core.config import Config, opt


class ModelKind(enum.StrEnum):
    """Which presets to list: text (language models), image (classifiers) or all."""

    all = "all"
    text = "text"
    image = "image"


KIND_CLASSES = {ModelKind.text: ("CausalLM",), ModelKind.image: ("ImageClassifier",),
                ModelKind.all: ("CausalLM", "ImageClassifier")}


@dataclass(kw_only=True)
class ModelsConfig(Config):
    """List the pretrained models (keras-hub presets) dlkit can use, and which are already in
    the local cache ($KAGGLEHUB_CACHE, default ~/.cache/kagglehub).

    Example: dlkit models --kind text --cached
    """

    COMMAND = "models"

    kind: ModelKind = opt(ModelKind.all, "text (generate-text, train-text --from-preset), "
                          "image (classify-image), or all.")
    cached: bool = opt(False, "List only the presets already in the cache (usable offline).",
                       name="--cached")


def list_models(config: ModelsConfig) -> None:
    """A table on stdout, whole (see `console.result_table`), or with --json one JSON
    object."""
    from dlkit.core import console
    from dlkit.core.hub import cache_root, catalog

    rows = [row for row in catalog(KIND_CLASSES[config.kind])
            if row["cached"] or not config.cached]
    if config.json:
        console.emit_json({"cache": str(cache_root()), "models": rows})
        return
    console.result_table(("name", "kind", "family", "parameters", "cached"), [
        (row["name"], row["kind"], row["family"],
         f"{row['parameters'] / 1e6:,.1f}M" if isinstance(row["parameters"], int) else "?",
         "yes" if row["cached"] else "") for row in rows])
    console.info(f"{len(rows)} presets; cache: {cache_root()}")
