"""Image generators' model folders, whichever family wrote them, as one `Generator`.

A generator family (train-gan, train-flow) registers the function that opens its model folders
in `dlkit.core.registry`, from its package's `__init__.py`:

    register("generator", "train-flow", "dlkit.flow.sample:open_generator")

The opener is imported on first use only. Commands that just need images from a generator
(`evaluate-gan` scores any registered folder) open it with `open_generator`, and what every
sample-* command does with the images (a grid PNG, one PNG per image, the classes asked for)
is written once here, so no family imports another.

Imports no NumPy, Keras or TensorFlow at module level: the config modules import
`check_outputs`, and `dlkit --help` imports every config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlkit.core import registry
from dlkit.core.config import Config, opt
from dlkit.core.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from dlkit.core.config import Backend

GRID_MAX = 10_000  # images in one grid PNG (100 x 100)
COUNT_MAX = 1_000_000  # images one sample-* call writes (streamed, batch by batch)


@dataclass(kw_only=True)
class SampleImagesConfig(Config):
    """The options every sample-* command of a generator shares: how many images, where they
    go, which class."""

    count: int = opt(100, f"Number of images (a grid holds at most {GRID_MAX:,}; --out-dir "
                     "takes more).", flags=("-n",), min=1, max=COUNT_MAX)
    out: Path | None = opt(None, "Grid PNG to write (default samples.png unless --out-dir is "
                           "given).", show_default=False)
    out_dir: Path | None = opt(None, "Also write one PNG per image here.")
    label: int | None = opt(None, "Class index to draw (conditional models only).", min=0)

    def check(self) -> None:
        self.out = check_outputs(self.out, self.out_dir, self.count)
BATCH = 250  # images a generator draws at a time

Draw = Callable[[int, "int | None", "np.ndarray | None"], Iterator["np.ndarray"]]


def generator_tasks() -> list[str]:
    """The training commands whose folders are image generators (each registers its opener
    as the "generator" of its task, called as `opener(folder, metadata, backend, settings)`
    and returning a `Generator`)."""
    return registry.names("generator")


@dataclass
class Generator:
    """A trained image generator: what its metadata says, and `draw(count, seed, labels)`,
    which yields `count` uint8 images (N, H, W, C) in batches of at most `BATCH` (the same seed
    and labels give the same images)."""

    folder: Path
    task: str
    conditional: bool
    class_names: list[str]
    image_shape: list[int]
    dataset: str
    backend: str
    draw: Draw
    settings: dict[str, Any] = field(default_factory=dict)  # how it samples (reported)


def open_generator(folder: Path, backend: Backend, **settings: Any) -> Generator:
    """Any registered generator's model folder. `settings` are the command's sampling options
    (None: not given); the family refuses those it has no use for. Exit 2 when the folder is
    missing or not an image generator's."""
    from dlkit.core.artifacts import load_metadata

    meta = load_metadata(folder, train_hint=f"dlkit {'|'.join(generator_tasks())} --output "
                                             f"{folder}")
    task = meta.get("task")
    opener = registry.load("generator", task) if isinstance(task, str) else None
    if opener is None:
        raise UsageError(f"{folder} is not an image generator's model folder (task {task!r}); "
                         f"pass a folder written by {' or '.join(generator_tasks())}")
    given = {key: value for key, value in settings.items() if value is not None}
    return opener(Path(folder), meta, backend, given)


def refuse_settings(folder: Path, task: str, settings: dict[str, Any],
                    allowed: tuple[str, ...] = ()) -> None:
    """Exit 2 for a sampling option (`settings`, by field name) that the generator in `folder`,
    written by `task`, has no use for."""
    for key in settings:
        if key not in allowed:
            option = "--" + key.replace("_", "-")
            raise UsageError(f"{option} does not apply to {folder} (a {task} model); leave it "
                             "out")


def check_outputs(out: Path | None, out_dir: Path | None, count: int) -> Path | None:
    """A sample-* command's `--out`/`--out-dir`: the grid defaults to samples.png when neither
    is given; it must be a .png and hold at most GRID_MAX images. Returns `--out`."""
    if out is None and out_dir is None:
        out = Path("samples.png")
    if out is not None and out.suffix.lower() != ".png":
        raise UsageError(f"--out {out} must name a .png file")
    if out is not None and count > GRID_MAX:
        raise UsageError(f"--count {count} is too many for one grid (at most {GRID_MAX:,}); "
                         "use --out-dir for more images")
    return out


def check_label(gen: Generator, label: int | None) -> None:
    """--label only for conditional generators, and only a class they know."""
    if label is None:
        return
    if not gen.conditional:
        raise UsageError(f"--label needs a conditional generator; {gen.folder} was trained "
                         "without --conditional")
    if not 0 <= label < len(gen.class_names):
        raise UsageError(f"--label {label} is outside the classes 0-{len(gen.class_names) - 1} "
                         f"({', '.join(gen.class_names)})")


def sample_labels(gen: Generator, count: int, label: int | None) -> np.ndarray | None:
    """The class asked for each sample: `label`, or every class in turn; None if unconditional."""
    import numpy as np

    if not gen.conditional:
        return None
    if label is not None:
        return np.full(count, label, np.int32)
    return (np.arange(count) % len(gen.class_names)).astype(np.int32)


def generate(gen: Generator, count: int, seed: int | None,
             labels: np.ndarray | None) -> np.ndarray:
    """`count` uint8 images at once (for a grid, or for scoring)."""
    import numpy as np

    return np.concatenate(list(gen.draw(count, seed, labels)))


def write_samples(gen: Generator, count: int, seed: int, label: int | None, out: Path | None,
                  out_dir: Path | None) -> dict[str, Any]:
    """What every sample-* command writes: one PNG per image in `out_dir` (written batch by
    batch, never more than a batch in memory besides the grid's images) and, once they are all
    written, the grid PNG `out` (columns = classes when every class is drawn). The outputs
    must have been checked with `dlkit.core.artifacts.check_output_file`. Returns what
    `--json` prints (with the time it took and the images per second)."""
    import time

    import numpy as np

    from dlkit.core import plots

    check_label(gen, label)
    labels = sample_labels(gen, count, label)
    written: dict[str, Any] = {"model": str(gen.folder), "count": count, "seed": seed,
                               "label": label, **gen.settings}
    folder = out_dir.expanduser() if out_dir is not None else None
    if folder is not None:
        folder.mkdir(exist_ok=True)
    kept, paths = [], []
    started = time.perf_counter()
    for batch in gen.draw(count, seed, labels):
        if out is not None:
            kept.append(batch)
        for image in batch if folder is not None else ():
            i = len(paths)
            suffix = "" if labels is None else f"_{_slug(gen.class_names[labels[i]])}"
            paths.append(plots.write_png(image, folder / f"sample_{i:0{_digits(count)}d}"
                                         f"{suffix}.png"))
    if folder is not None:
        written["images"] = [str(p) for p in paths]
    if out is not None:
        columns = plots.grid_columns(count, len(gen.class_names)
                                     if labels is not None and label is None else 0)
        written["grid"] = str(plots.save_grid(np.concatenate(kept), out.expanduser(), columns))
    if labels is not None:
        written["labels"] = [gen.class_names[k] for k in labels]
    seconds = time.perf_counter() - started
    written.update(backend=gen.backend, seconds=seconds,
                   images_per_second=count / max(seconds, 1e-9))
    return written


def sample_lines(written: dict[str, Any]) -> str | None:
    """stdout of a sample-* command: the grid, then every image file, one per line."""
    lines = [written["grid"]] if "grid" in written else []
    return "\n".join(lines + written.get("images", [])) or None


def _digits(count: int) -> int:
    return max(4, len(str(count - 1)))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-").lower() or "class"
