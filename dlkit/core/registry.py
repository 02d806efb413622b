"""What the model families offer the shared code, by name, imported on first use.

`dlkit.core` and `dlkit.data` import no family, and no family imports another. Where shared code
needs something only a family has (the opener of its model folders, how `dlkit evaluate`
measures its models), the family registers it here from its package's `__init__.py`, as a
"module:attribute" string:

    register("evaluator", "train-sequence", "dlkit.sequence.evaluate:evaluate_forecaster")

The kinds in use: "generator" (task -> opener of its image-generator folders, see
`dlkit.core.generators`), "evaluator" (task -> `dlkit evaluate`'s measure, see
`dlkit.core.evaluation`), "exporter" and "calibration" (task -> what `dlkit export` converts or
calibrates on, see `dlkit.export.export`), "model" (a model other families build, such as the
train-mnist CNN that `evaluate-gan --recall` trains), "image-classifier" (task -> how
classify-image opens its folders, for `dlkit serve`'s `:classify`), "text-generator" (task ->
generate-text for `dlkit serve`'s `:generate`), "preset-exporter" (a keras-hub task class -> what
makes a LiteRT model folder of its presets, for `dlkit export PRESET -o FOLDER`).

Nothing is imported when a family registers; a lookup imports the target. Before its first
lookup the registry imports every family package (every subpackage of `dlkit` but core and
data), so what they offer is known whichever module a program imported first; the packages'
`__init__.py` files import nothing but this module, so that costs milliseconds, and `dlkit
--help` (which never looks anything up) stays instant.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

SHARED = ("core", "data")  # the subpackages of dlkit that are not families

_TABLES: dict[str, dict[str, str]] = {}
_discovered = False


def register(kind: str, name: str, target: str) -> None:
    """Offer `target` ("module:attribute", or "module") as the `kind` named `name`."""
    _TABLES.setdefault(kind, {})[name] = target


def names(kind: str) -> list[str]:
    """Every name registered as `kind`, sorted."""
    _discover()
    return sorted(_TABLES.get(kind, {}))


def load(kind: str, name: str) -> Any | None:
    """What is registered as the `kind` named `name` (its module imported now), or None when
    nothing is."""
    _discover()
    target = _TABLES.get(kind, {}).get(name)
    if target is None:
        return None
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _discover() -> None:
    """Import every family package once: each registers what it offers when imported."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import dlkit

    for found in pkgutil.iter_modules(dlkit.__path__):
        if found.ispkg and found.name not in SHARED:
            importlib.import_module(f"dlkit.{found.name}")
