"""`dlkit datasets`: the datasets dlkit knows and where each was found (or not)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlkit.core.config import Config, common


@dataclass(kw_only=True)
class DatasetsConfig(Config):
    """List the datasets dlkit knows and where each was found (or not)."""

    COMMAND = "datasets"

    data_dir: Path | None = common("data_dir", None, help="Look for the datasets in this folder "
                                   "only.")


def list_datasets(config: DatasetsConfig) -> None:
    """A table on stdout, whole (see `console.result_table`), or with --json one JSON
    object."""
    from dlkit.core import console
    from dlkit.data.locate import find, search_roots
    from dlkit.data.registry import DATASETS

    search_roots(config.data_dir)  # an unusable --data-dir is one error line
    rows = []
    for spec in DATASETS.values():
        found = None if spec.bundled else find(spec, config.data_dir)
        where = ("bundled with scikit-learn" if spec.bundled else
                 f"{found.root} ({found.origin})" if found else "not found")
        rows.append({"name": spec.name, "description": spec.description,
                     "found": spec.bundled or found is not None, "where": where})
    if config.json:
        console.emit_json({"datasets": rows})
        return
    from rich.text import Text

    console.result_table(("dataset", "description", "where"), [
        (row["name"], row["description"],
         row["where"] if row["found"] else Text(row["where"], style="red")) for row in rows])
