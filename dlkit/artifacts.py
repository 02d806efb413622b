"""The model folder: save it atomically, load it back.

A model folder holds `saved_model/` (TensorFlow SavedModel with a `serving_default` signature),
`model.keras` (for reloading and fine-tuning), `metadata.json` (everything needed to use the model)
and `plots/`. It is built in a hidden sibling folder and swapped into place at the end, so a run
that fails or is interrupted never leaves half a model and never touches the previous one.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import datetime as _dt
import fcntl
import json
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlkit import __version__
from dlkit.errors import DlkitError, UsageError

METADATA = "metadata.json"
SAVED_MODEL = "saved_model"
KERAS_FILE = "model.keras"
PLOTS = "plots"


def check_output(output: Path, chief: bool = True) -> Path:
    """Fail early (exit 2) when `output` cannot be written, before any training starts, and
    hold its lock. A non-chief worker of a multi-worker run (`chief=False`) writes nothing
    there and takes no lock."""
    output = output.expanduser().resolve()
    if not chief:
        return output
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {output} exists and is not a folder; choose another --output")
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{output.name}.probe-", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise UsageError(f"cannot write to {parent} ({exc.strerror}); choose a writable "
                         "--output") from None
    _lock_output(output)
    return output


_held_locks: dict[Path, int] = {}


def _lock_output(output: Path) -> None:
    """Hold an exclusive lock on `output` for the rest of this process, so two runs never write
    the same model folder at once: the second fails at start with a clear message."""
    if output in _held_locks:
        return
    lock_path = output.with_name(f".{output.name}.lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DlkitError(f"another dlkit run (pid {holder}) is writing {output}; wait for "
                             "it to finish or choose another --output") from None
        try:  # the previous holder may have removed the file after we opened it: retry then
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held_locks[output] = fd
    _remove_stale_staging(output)


def _remove_stale_staging(output: Path) -> None:
    """Delete the staging folders of runs that were killed (SIGKILL) while saving `output`:
    only the lock holder builds one, so with the lock held every one there is stale."""
    prefix = f".{output.name}.new-"
    for stale in output.parent.iterdir():
        if stale.name.startswith(prefix) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


@atexit.register
def release_output_locks() -> None:
    """Drop the output locks this process holds (the CLI calls it when a command ends)."""
    while _held_locks:
        output, fd = _held_locks.popitem()
        output.with_name(f".{output.name}.lock").unlink(missing_ok=True)
        os.close(fd)


class Staging:
    """A hidden folder beside the final output where the new model folder is built."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = Path(tempfile.mkdtemp(prefix=f".{output.name}.new-", dir=output.parent))
        self.path.chmod(0o777 & ~_umask())  # mkdtemp's folder is private; a model folder is not
        (self.path / PLOTS).mkdir()

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    def commit(self) -> Path:
        """Swap the staged folder into place; the previous model is removed only afterwards."""
        if self.output.exists():
            if not _exchange(self.path, self.output):
                backup = self.output.with_name(f".{self.output.name}.old-{os.getpid()}")
                os.rename(self.output, backup)
                os.rename(self.path, self.output)
                self.path = backup
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            os.rename(self.path, self.output)
        return self.output

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _umask() -> int:
    """The process's umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False if unsupported."""
    libc_name = ctypes.util.find_library("c")
    if platform.system() != "Linux" or not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def save_model_folder(output: Path, model: Any, metadata: dict[str, Any],
                      write_extras: Callable[[Path], None] | None = None) -> dict[str, str]:
    """Write the whole model folder to `output` atomically and return the artifact paths.

    `write_extras(staging_dir)` adds task-specific files (plots, vocabularies) before the swap.
    """
    staging = Staging(output)
    try:
        model.save(staging.path / KERAS_FILE)
        model.export(str(staging.path / SAVED_MODEL), format="tf_saved_model", verbose=False)
        meta = {**metadata, "versions": versions(), "created": _now()}
        (staging.path / METADATA).write_text(json.dumps(meta, indent=2, default=_plain) + "\n")
        if write_extras is not None:
            write_extras(staging.path)
        final = staging.commit()
    except BaseException:
        staging.discard()
        raise
    return artifact_paths(final)


def artifact_paths(folder: Path) -> dict[str, str]:
    """The artifact paths of a model folder, as reported in `--json`."""
    paths = {"model_dir": folder, "saved_model": folder / SAVED_MODEL,
             "keras_model": folder / KERAS_FILE, "metadata": folder / METADATA}
    plots = sorted((folder / PLOTS).glob("*.png"))
    result = {key: str(value) for key, value in paths.items()}
    result["plots"] = [str(p) for p in plots]  # type: ignore[assignment]
    return result


def load_metadata(folder: Path, task: str | None = None) -> dict[str, Any]:
    """Read `metadata.json` from a model folder; exit 2 with a hint when it is not one, or (with
    `task`) when another command wrote it."""
    folder = Path(folder).expanduser()
    train = f"dlkit {task or 'train-cifar'} --output {folder}"
    if not folder.is_dir():
        what = "is a file, not a model folder" if folder.exists() else "does not exist"
        raise UsageError(f"model folder {folder} {what}; train one first (`{train}`)")
    path = folder / METADATA
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{folder} is not a dlkit model folder (no {METADATA})") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is unreadable ({exc}); retrain the model") from None
    if task is not None and meta.get("task") != task:
        raise UsageError(f"{folder} was not written by {task} (task {meta.get('task')!r}); "
                         f"pass a {task} model folder or train one (`{train}`)")
    return meta


def load_keras_model(folder: Path) -> Any:
    """Load `model.keras` from a model folder (for fine-tuning and inference)."""
    import keras

    path = Path(folder) / KERAS_FILE
    if not path.is_file():
        raise UsageError(f"{folder} has no {KERAS_FILE}; it is not a dlkit model folder")
    if not zipfile.is_zipfile(path):  # Keras would call a damaged archive "File not found"
        raise UsageError(f"{path} is damaged (not a .keras zip archive); retrain the model")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise DlkitError(f"cannot load {path}: {str(exc).splitlines()[0]}", 2) from None


def versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf

    return {"dlkit": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
