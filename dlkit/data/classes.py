"""Labelled folders: one subfolder per class, named after it, holding that class's examples.

`train-cifar --data-dir` and `evaluate` read images this way, `train-text-classifier --data-dir`
and `evaluate` read `.txt` files this way. `class_folders` lists them once for all: the classes
in name order (hidden folders skipped), each with its example files; a class folder without one
is refused with one line naming it (exit 2), since it would otherwise silently become a class
the model is asked to learn from no examples.

No TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dlkit.core.errors import UsageError


def class_folders(root: Path, find: Callable[[Path], list[Path]], what: str
                  ) -> list[tuple[Path, list[Path]]]:
    """[(class folder, its example files)] under `root`, in class-name order; `find(folder)`
    lists a folder's examples (`what` names them in the message). An empty list when `root`
    has no class subfolders (the caller says what it expected)."""
    classes = sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    found = [(folder, find(folder)) for folder in classes]
    for folder, files in found:
        if not files:
            raise UsageError(f"class folder {folder} holds no {what}; add examples of class "
                             f"{folder.name!r} or remove the folder")
    return found
