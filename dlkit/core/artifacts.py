"""The model folder: claim the output safely, save it atomically, load it back.

A model folder holds `saved_model/` (TensorFlow SavedModel with a `serving_default` signature),
`model.keras` (for reloading and fine-tuning), `model.tflite` (the same model for LiteRT, when
its inputs have fixed shapes: see `dlkit.core.litert`), `metadata.json` (everything needed to
use the model, and the list of files dlkit wrote there) and `plots/`. It is built in a hidden
sibling folder and swapped into place at the end, so a run that fails or is interrupted never
leaves half a model and never touches the previous one.

`claim_output` decides, before any work, whether a run may write its `--output`: an existing
folder is replaced only when it is a model folder that dlkit wrote (nothing else in it); the
working directory, the home folder, a folder inside a model folder, and a folder that is, holds or
lies inside one of the command's inputs are refused with one line (exit 2), untouched.
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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dlkit import __version__
from dlkit.core import litert
from dlkit.core.console import to_json
from dlkit.core.errors import DlkitError, UsageError, disk_cause, disk_error
from dlkit.core.files import (
    MiB,
    fsync_dir,
    fsync_tree,
    read_bytes,
    size_text,
    umask,
    write_atomic,
)

METADATA = "metadata.json"
SAVED_MODEL = "saved_model"
KERAS_FILE = "model.keras"
PLOTS = "plots"
KERAS_JSON_LIMIT = 64 * MiB  # a JSON file in a .keras archive (config.json, metadata.json)
METADATA_LIMIT = 64 * MiB  # a model folder's metadata.json
# What folders written before metadata.json listed its files may hold.
_KNOWN_FILES = {METADATA, SAVED_MODEL, KERAS_FILE, PLOTS, "encoder.keras"}


# ---------------------------------------------------------------------------------------------
# Claiming the output

def claim_output(output: Path, inputs: Iterable[Path | str | None] = (),
                 chief: bool = True) -> Path:
    """The resolved output folder, checked and locked for this run (see the module doc).

    A non-chief worker of a multi-worker run (`chief=False`) writes nothing there and takes
    no lock."""
    output = Path(output).expanduser().resolve()
    if not chief:
        return output
    try:
        str(output).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"output {os.fsencode(output)!r} is not a UTF-8 path, which "
                         "TensorFlow cannot write to; choose a UTF-8 name for --output") \
            from None
    _refuse_special(output)
    try:
        output.exists()
    except OSError as exc:  # a folder on the way that this user cannot enter
        raise UsageError(f"cannot use output {output} ({exc.strerror}); choose a folder you "
                         "can write to") from None
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {output} exists and is not a folder; choose another --output")
    for above in output.parents:
        if is_model_folder(above):
            raise UsageError(f"output {output} is inside the model folder {above}; choose a "
                             "folder outside it")
    check_inputs(output, inputs)
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{output.name}.probe-", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise UsageError(f"cannot write to {parent} ({exc.strerror}); choose a writable "
                         "--output") from None
    _lock_output(output)
    _refuse_foreign(output)
    return output


def _refuse_special(output: Path) -> None:
    cwd = Path.cwd().resolve()
    for place, what in ((cwd, "the working directory"), (Path.home().resolve(),
                                                          "your home folder"),
                        (Path(output.anchor), "the root folder")):
        if output == place:
            raise UsageError(f"output {output} is {what}; give a model folder of its own, such "
                             "as -o models/NAME")
    if cwd.is_relative_to(output):
        raise UsageError(f"output {output} holds the working directory; give a model folder "
                         "of its own, such as -o models/NAME")


def check_inputs(output: Path, inputs: Iterable[Path | str | None]) -> None:
    """Exit 2 when the output is one of the inputs, holds one, or lies inside an input folder
    (training into its own data would destroy or pollute it)."""
    output = Path(output).resolve()
    for given in inputs:
        if given is None or str(given) == "-":
            continue
        path = Path(given).expanduser().resolve()
        if path == output or path.is_relative_to(output):
            raise UsageError(f"output {output} is or holds the input {path}; choose an output "
                             "folder away from the data")
        if path.is_dir() and output.is_relative_to(path):
            raise UsageError(f"output {output} is inside the input folder {path}; choose an "
                             "output folder away from the data")


def check_output_file(option: str, path: Path, folder: bool = False,
                      protect: Iterable[Path] = ()) -> Path:
    """Exit 2 before any work when an inference command cannot write `path` (a file, or with
    `folder` a folder it may create): the wrong kind of thing is there, its parent folder is
    missing or not writable, or it lies inside a dlkit model folder or one of `protect` (the
    model being used). Returns the resolved path."""
    path = Path(path).expanduser().resolve()
    if path.exists() and path.is_dir() != folder:
        raise UsageError(f"{option} {path} is {'a file' if folder else 'a folder'}; choose "
                         f"another {option}")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK) or (path.is_dir() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path}: {parent} is not a writable folder; choose another "
                         f"{option}")
    guarded = [Path(p).expanduser().resolve() for p in protect]
    for above in [path, *path.parents]:
        if above in guarded or (above != path and is_model_folder(above)):
            raise UsageError(f"{option} {path} is inside the model folder {above}; write it "
                             "elsewhere (dlkit never writes into a model folder it reads)")
    return path


def check_log_folder(option: str, folder: Path, output: Path) -> Path:
    """A folder a run will create and keep writing (TensorBoard logs): exit 2 before any work
    when it is a file, when the nearest existing folder above it is not writable, or when it
    lies inside a model folder (replacing the model would delete the logs)."""
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder} is a file; give a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"{option} {folder}: {existing} is not a writable folder")
    for above in [folder, *folder.parents]:
        if above == output or is_model_folder(above):
            raise UsageError(f"{option} {folder} is inside the model folder {above}, which a "
                             "new model replaces; keep the logs beside it")
    return folder


def _refuse_foreign(output: Path) -> None:
    """An existing output must be empty or a model folder dlkit wrote (checked under the lock)."""
    if not output.is_dir():
        return
    entries = sorted(p.name for p in output.iterdir())
    if not entries or is_model_folder(output):
        return
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise UsageError(f"output {output} holds files dlkit did not write ({shown}); to replace "
                     "it, delete it first, or choose another --output")


def is_model_folder(folder: Path) -> bool:
    """A folder dlkit wrote: its metadata.json names the task and dlkit's version, and it holds
    nothing but the files that metadata lists."""
    try:
        meta = json.loads(read_bytes(folder / METADATA, METADATA, limit=METADATA_LIMIT))
        entries = {p.name for p in folder.iterdir()}
    except (OSError, ValueError, UsageError):  # none, unreadable, a FIFO, too large
        return False
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        return False
    if not isinstance(meta.get("versions"), dict) or "dlkit" not in meta["versions"]:
        return False
    listed = meta.get("files")
    allowed = set(listed) if isinstance(listed, list) else _KNOWN_FILES
    return entries <= allowed | {METADATA}


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
    _held_locks[output] = fd
    try:  # who holds it, for the other run's message (a full disk may refuse even this)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        pass
    _remove_stale_staging(output)


def _remove_stale_staging(output: Path) -> None:
    """Delete the staging folders of runs that were killed (SIGKILL) while saving `output`:
    only the lock holder builds one, so with the lock held every one there is stale."""
    prefixes = (f".{output.name}.new-", f".{output.name}.old-")
    for stale in output.parent.iterdir():
        if stale.name.startswith(prefixes) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


@atexit.register
def release_output_locks() -> None:
    """Drop the output locks this process holds (the CLI calls it when a command ends)."""
    while _held_locks:
        output, fd = _held_locks.popitem()
        output.with_name(f".{output.name}.lock").unlink(missing_ok=True)
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Saving

class Staging:
    """A hidden folder beside the final output where the new model folder is built."""

    def __init__(self, output: Path) -> None:
        self.output = output
        try:
            self.path = Path(tempfile.mkdtemp(prefix=f".{output.name}.new-", dir=output.parent))
            self.path.chmod(0o777 & ~umask())  # mkdtemp's folder is private; a model's is not
            (self.path / PLOTS).mkdir()
        except OSError as exc:
            raise disk_error(f"the model folder {output}", exc) from None

    @property
    def plots(self) -> Path:
        return self.path / PLOTS

    def commit(self) -> Path:
        """Swap the staged folder into place; the previous model is removed only afterwards."""
        from dlkit.core.checkpoint import fault_point

        fsync_tree(self.path)
        fault_point("model-before-swap")
        if self.output.exists():
            if not _exchange(self.path, self.output):
                backup = self.output.with_name(f".{self.output.name}.old-{os.getpid()}")
                os.rename(self.output, backup)
                os.rename(self.path, self.output)
                self.path = backup
            fsync_dir(self.output.parent)
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            os.rename(self.path, self.output)
            fsync_dir(self.output.parent)
        return self.output

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


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
                      write_extras: Callable[[Path], None] | None = None,
                      write_model: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Write the whole model folder to `output` atomically and return the artifact paths.

    `write_extras(staging_dir)` adds task-specific files (plots, vocabularies) before the swap;
    `write_model(staging_dir)` writes the model in another form than `model.keras`, the
    SavedModel and `model.tflite` (a keras-hub preset).
    A full or read-only disk is one `DlkitError` (exit 1) and the previous folder is untouched.
    """
    from dlkit.core.checkpoint import fault_point, quiet_h5py, weights_in_memory

    staging = Staging(output)
    try:
        fault_point("model-save")
        lite = dict(metadata.get(litert.META_KEY) or {})
        if write_model is not None:
            with quiet_h5py(), weights_in_memory():
                write_model(staging.path)
        else:
            with quiet_h5py():
                model.save(staging.path / KERAS_FILE)
                model.export(str(staging.path / SAVED_MODEL), format="tf_saved_model",
                             verbose=False)
            converted = litert.convert_model_folder(staging.path, model)
            if converted is not None:
                write_atomic(staging.path / litert.TFLITE_FILE, converted[0])
                lite[litert.TFLITE_FILE] = converted[1]
        if write_extras is not None:
            with weights_in_memory():  # a keras-hub preset among them
                write_extras(staging.path)
        files = sorted({p.name for p in staging.path.iterdir()} | {METADATA})
        meta = {**metadata, "files": files, "versions": versions(), "created": _now()}
        if lite:
            meta[litert.META_KEY] = lite
        write_atomic(staging.path / METADATA, to_json(meta) + "\n")
        final = staging.commit()
    except BaseException as exc:
        staging.discard()
        cause = disk_cause(exc)
        if cause is not None:
            raise disk_error(f"the model folder {output}", cause) from None
        raise
    return artifact_paths(final)


def artifact_paths(folder: Path) -> dict[str, Any]:
    """The artifact paths of a model folder, as reported in `--json`."""
    paths = {"model_dir": folder, "saved_model": folder / SAVED_MODEL,
             "keras_model": folder / KERAS_FILE, "metadata": folder / METADATA}
    result: dict[str, Any] = {key: str(value) for key, value in paths.items()}
    result["plots"] = [str(p) for p in sorted((folder / PLOTS).glob("*.png"))]
    result["litert"] = [str(p) for p in sorted(folder.glob("*.tflite"))]
    return result


# ---------------------------------------------------------------------------------------------
# Loading

def load_metadata(folder: Path, task: str | None = None, train_hint: str | None = None
                  ) -> dict[str, Any]:
    """Read `metadata.json` from a model folder; exit 2 with a hint when it is not one, or (with
    `task`) when another command wrote it."""
    folder = Path(folder).expanduser()
    train = train_hint or f"dlkit {task or 'train-cifar'} --output {folder}"
    if not folder.is_dir():
        what = "is a file, not a model folder" if folder.exists() else "does not exist"
        raise UsageError(f"model folder {folder} {what}; train one first (`{train}`)")
    path = folder / METADATA
    if not path.exists():
        raise UsageError(f"{folder} is not a dlkit model folder (no {METADATA}); train one "
                         f"first (`{train}`)")
    try:
        meta = json.loads(read_bytes(path, "the model's metadata", limit=METADATA_LIMIT))
    except ValueError as exc:
        raise UsageError(f"{path} is unreadable ({exc}); retrain the model") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{path} is not a JSON object; it is not a dlkit model's metadata "
                         "(retrain the model)")
    if task is not None and meta.get("task") != task:
        raise UsageError(f"{folder} was not written by {task} (task {meta.get('task')!r}); "
                         f"pass a {task} model folder or train one (`{train}`)")
    return meta


def load_keras_model(folder: Path, name: str = KERAS_FILE) -> Any:
    """Load a `.keras` file of a model folder (for fine-tuning and inference)."""
    import keras

    path = Path(folder) / name
    if not path.is_file():
        raise UsageError(f"{folder} has no {name}; it is not a complete dlkit model folder")
    if not zipfile.is_zipfile(path):  # Keras would call a damaged archive "File not found"
        raise UsageError(f"{path} is damaged (not a .keras zip archive); retrain the model")
    register_layers_of(path)
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise UsageError(f"cannot load {path}: {str(exc).splitlines()[0]}") from None


def register_layers_of(path: Path) -> None:
    """Import keras-hub when the `.keras` archive holds its layers (a fine-tuned pretrained
    backbone), and dlkit's own modules whose registered layers it holds, so Keras can find
    their classes; keras-hub is not imported otherwise (seconds). Every `.keras` load passes
    here first: an archive whose JSON files (which Keras reads whole) are larger than
    KERAS_JSON_LIMIT is refused (exit 2) before Keras opens it."""
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.filename.endswith(".json") and member.file_size > KERAS_JSON_LIMIT:
                    raise UsageError(f"{path} holds a {member.filename} of "
                                     f"{member.file_size:,} bytes, more than the "
                                     f"{size_text(KERAS_JSON_LIMIT)} dlkit reads; it is not a "
                                     "model dlkit can load")
            config = archive.read("config.json")
    except (OSError, KeyError, zipfile.BadZipFile):
        return
    if b'"keras_hub>' in config:
        from dlkit.pretrained.hub import import_keras_hub

        import_keras_hub()
    if b'"dlkit>SeriesTransform"' in config:  # train-sequence's transform layers
        import dlkit.forecaster.models  # noqa: F401 (registers the layer)


def versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf

    return {"dlkit": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

