"""The model folder: claim the output safely, save it atomically, load it back.

A model folder holds `saved_model/` (TensorFlow SavedModel with a `serving_default` signature),
`model.keras` (for reloading and fine-tuning), `model.tflite` (the same model for LiteRT, when
its inputs have fixed shapes: see `dlkit.core.litert`), `metadata.json` (everything needed to
use the model, and the list of files dlkit wrote there) and `plots/`. It is built in a hidden
sibling folder and swapped into place at the end, so a run that fails or is interrupted never
leaves half a model and never touches the previous one.

`claim_output` decides, before any work, whether a run may write its `--output`: an existing
folder is replaced only when it is a model folder that dlkit wrote with nothing else anywhere in
it (its metadata.json keeps the manifest of every path the save wrote); the working directory,
the home folder, a folder inside a model folder, and a folder that is, holds or lies inside one
of the command's inputs are refused with one line (exit 2), untouched. `check_inputs` is that
last rule for every output of every command (`check_output_file` and `check_log_folder` apply
it with the other checks an output file or a log folder needs).

One writer per folder: every command that writes into a model folder (a training, `export`)
first takes the folder's lock (`lock_folder`: a `.NAME.lock` file beside it, never opened
through a symbolic link); a second one fails at start (exit 1) naming the first one's PID.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import datetime as _dt
import fcntl
import json
import os
import platform
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from dlkit import __version__
from dlkit.core import litert
from dlkit.core.console import to_json
from dlkit.core.errors import DlkitError, UsageError, disk_cause, disk_error, keras_load_error
from dlkit.core.files import (
    MiB,
    fsync_dir,
    fsync_tree,
    open_lock_file,
    read_bytes,
    size_text,
    umask,
    write_atomic,
)

METADATA = "metadata.json"
SAVED_MODEL = "saved_model"
KERAS_FILE = "model.keras"
LABELS_FILE = "labels.txt"  # a classifier's class names, one per line
PLOTS = "plots"
KERAS_JSON_LIMIT = 64 * MiB  # a JSON file in a .keras archive (config.json, metadata.json)
METADATA_LIMIT = 64 * MiB  # a model folder's metadata.json
MANIFEST = "manifest"  # metadata.json's list of every path the save wrote in the folder
# What folders written before metadata.json listed its files may hold.
_KNOWN_FILES = {METADATA, SAVED_MODEL, KERAS_FILE, PLOTS, "encoder.keras"}
# What the subfolders of a folder written before metadata.json kept a manifest may hold.
_KNOWN_LAYOUT = {
    SAVED_MODEL: ("saved_model.pb", "fingerprint.pb", "keras_metadata.pb", "variables/",
                  "variables/variables.index", "variables/variables.data-*-of-*", "assets/",
                  "assets/*"),
    PLOTS: ("*.png", "*.gif"),
}


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
    lock_folder(output)
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


def check_inputs(output: Path, inputs: Iterable[Path | str | None], option: str = "output",
                 holds: bool = True) -> None:
    """Exit 2 when `output` is one of the inputs, lies inside an input folder, or (`holds`, for
    an output folder that is replaced or filled with folders of its own) holds an input:
    writing it would destroy an input or add to the data the next run reads. `option` names
    the output in the message. Symbolic links are followed on both sides; None, "" and `-`
    (stdin) are skipped; thousands of inputs in a few folders cost one `lstat` each."""
    output = Path(os.path.realpath(Path(output).expanduser()))
    real = _RealPaths()
    for given in inputs:
        if given is None or str(given) in ("", "-"):
            continue
        path = real(given)
        if path == output:
            raise UsageError(f"{option} {output} is one of the inputs; choose another {option} "
                             "(dlkit never writes over what it reads)")
        if holds and path.is_relative_to(output):
            raise UsageError(f"{option} {output} holds the input {path}; choose {option} away "
                             "from the inputs")
        if output.is_relative_to(path) and path.is_dir():
            raise UsageError(f"{option} {output} is inside the input folder {path}; choose "
                             f"{option} outside the inputs")


class _RealPaths:
    """The real paths (absolute, no symbolic links) of many paths, each folder resolved once
    (the inputs of a run are thousands of files in a few folders)."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, given: Path | str) -> Path:
        text = os.path.expanduser(os.fspath(given))
        if ".." in Path(text).parts:  # ".." after a link is not what abspath makes of it
            return Path(os.path.realpath(text))
        folder, name = os.path.split(os.path.abspath(text))
        real = self._folders.get(folder)
        if real is None:
            real = self._folders[folder] = os.path.realpath(folder)
        path = os.path.join(real, name)
        return Path(os.path.realpath(path) if os.path.islink(path) else path)


def check_output_file(option: str, path: Path, folder: bool = False,
                      inputs: Iterable[Path | str | None] = ()) -> Path:
    """Exit 2 before any work when an inference command cannot write `path` (a file, or with
    `folder` a folder it may create): the wrong kind of thing is there, its parent folder is
    missing or not writable, it lies inside a dlkit model folder, or it is one of `inputs` (the
    files and folders the command reads: the model, the images) or lies inside an input
    folder (`check_inputs`). Returns the resolved path."""
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
    for above in path.parents:
        if is_model_folder(above):
            raise UsageError(f"{option} {path} is inside the model folder {above}; write it "
                             "elsewhere (dlkit never writes into a model folder it reads)")
    check_inputs(path, inputs, option, holds=False)
    return path


def check_log_folder(option: str, folder: Path, output: Path,
                     inputs: Iterable[Path | str | None] = ()) -> Path:
    """A folder a run will create and keep writing (TensorBoard logs): exit 2 before any work
    when it is a file, when the nearest existing folder above it is not writable, when it lies
    inside a model folder (replacing the model would delete the logs), or when it is, holds or
    lies inside one of `inputs` (the next run would read the logs as data)."""
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
    check_inputs(folder, inputs, option)
    return folder


def _refuse_foreign(output: Path) -> None:
    """An existing output must be empty or a model folder dlkit wrote with nothing else in it,
    at any depth (checked under the lock)."""
    if not output.is_dir():
        return
    try:
        entries = sorted(p.name for p in output.iterdir())
    except OSError as exc:
        raise UsageError(f"cannot read output {output} ({exc.strerror}); choose another "
                         "--output") from None
    if not entries:
        return
    meta = model_metadata(output)
    foreign = entries if meta is None else foreign_entries(output, meta)
    if not foreign:
        return
    shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
    raise UsageError(f"output {output} holds files dlkit did not write ({shown}); to replace "
                     "it, delete it first, or choose another --output")


def is_model_folder(folder: Path) -> bool:
    """A folder dlkit wrote: its metadata.json names the task and dlkit's version."""
    return model_metadata(folder) is not None


def model_metadata(folder: Path) -> dict[str, Any] | None:
    """The metadata.json of a folder dlkit wrote, or None when it is not one."""
    try:
        meta = json.loads(read_bytes(folder / METADATA, METADATA, limit=METADATA_LIMIT))
    except (OSError, ValueError, UsageError):  # none, unreadable, a FIFO, too large
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        return None
    if not isinstance(meta.get("versions"), dict) or "dlkit" not in meta["versions"]:
        return None
    return meta


def foreign_entries(folder: Path, meta: dict[str, Any]) -> list[str]:
    """What a model folder holds that dlkit did not write there (paths relative to it, folders
    with a trailing /, sorted): whatever its manifest does not list, or, for a folder saved
    before dlkit kept one, what is neither a top-level name metadata.json lists nor in the
    known layout of saved_model/ and plots/."""
    found = tree(folder)
    listed = meta.get(MANIFEST)
    if isinstance(listed, list):
        allowed = {str(p) for p in listed} | {METADATA}
        return sorted(p for p in found if p not in allowed)
    names = meta.get("files")
    top_level = (set(map(str, names)) if isinstance(names, list) else _KNOWN_FILES) | {METADATA}
    return sorted(p for p in found if not _in_layout(p, top_level))


def _in_layout(entry: str, top_level: set[str]) -> bool:
    top, _, rest = entry.partition("/")
    if top not in top_level:
        return False
    if not rest or top not in _KNOWN_LAYOUT:
        return True
    return any(fnmatchcase(rest, pattern) and rest.count("/") == pattern.count("/")
               for pattern in _KNOWN_LAYOUT[top])


def tree(folder: Path) -> list[str]:
    """Every path under `folder`, relative to it, folders with a trailing / (a symbolic link is
    listed as what it is, never followed); a folder that cannot be read is `NAME/ (unreadable)`."""
    found: list[str] = []

    def unreadable(exc: OSError) -> None:
        name = Path(exc.filename or folder).relative_to(folder).as_posix()
        found.append(f"{name}/ (unreadable)")

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        here = Path(root).relative_to(folder)
        for name in dirs:
            link = os.path.islink(os.path.join(root, name))
            found.append((here / name).as_posix() + ("" if link else "/"))
        found.extend((here / name).as_posix() for name in files)
    return found


_held_locks: dict[Path, int] = {}


def lock_folder(folder: Path, hint: str = "wait for it to finish or choose another --output",
                ) -> Path:
    """Hold an exclusive lock on the model folder `folder` (resolved) for the rest of this
    process, so two commands never write it at once: the second fails at start (exit 1, with
    `hint`). The lock is the file `.NAME.lock` beside it, holding the PID; it is never opened
    through a symbolic link, and a file there that is not a dlkit lock is refused (exit 2).
    Returns `folder`."""
    if folder in _held_locks:
        return folder
    lock_path = _lock_path(folder)
    while True:
        fd = open_lock_file(lock_path, "the lock file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DlkitError(f"another dlkit run (pid {holder}) is writing {folder}; "
                             f"{hint}") from None
        if _same_file(fd, lock_path):  # the previous holder may have removed it: retry then
            break
        os.close(fd)
    held = os.pread(fd, 64, 0).strip()
    if len(held) > 32 or (held and not held.isdigit()):  # a stale lock holds a PID
        os.close(fd)
        raise UsageError(f"{lock_path} is not a dlkit lock file (it holds something else than "
                         "a process id); move it away, then run the command again")
    _held_locks[folder] = fd
    try:  # who holds it, for the other run's message (a full disk may refuse even this)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        pass
    _remove_stale_staging(folder)
    return folder


def _lock_path(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.lock")


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` (not followed) is still the file open as `fd`."""
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


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
        lock_path = _lock_path(output)
        if _same_file(fd, lock_path):  # never another's file, or a link put in its place
            with contextlib.suppress(OSError):
                lock_path.unlink()
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
            converted = litert.convert_model_folder(staging.path / SAVED_MODEL, model,
                                                    metadata)
            if converted is not None:
                write_atomic(staging.path / litert.TFLITE_FILE, converted[0])
                lite[litert.TFLITE_FILE] = converted[1]
        if write_extras is not None:
            with weights_in_memory():  # a keras-hub preset among them
                write_extras(staging.path)
        labels = labels_text(metadata)
        if labels is not None:
            write_atomic(staging.path / LABELS_FILE, labels)
        files = sorted({p.name for p in staging.path.iterdir()} | {METADATA})
        manifest = sorted({*tree(staging.path), METADATA})
        meta = {**metadata, "files": files, MANIFEST: manifest, "versions": versions(),
                "created": _now()}
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


def labels_text(metadata: dict[str, Any]) -> str | None:
    """A classifier's `labels.txt`: its class names one per line, in the order of its
    outputs (what LiteRT and TensorFlow Serving tools read); None for a model that does not
    output class scores."""
    names = metadata.get("class_names")
    if metadata.get("outputs") not in ("probabilities", "logits") or not isinstance(names, list):
        return None
    return "".join(" ".join(str(name).splitlines()) + "\n" for name in names)


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
    check_metadata_fields(meta, path)
    if task is not None and meta.get("task") != task:
        raise UsageError(f"{folder} was not written by {task} (task {meta.get('task')!r}); "
                         f"pass a {task} model folder or train one (`{train}`)")
    return meta


def _class_names_ok(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) for v in value)
            and len(set(value)) == len(value))


def _shape_ok(value: Any) -> bool:
    return isinstance(value, list) and all(
        v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0) for v in value)


# The metadata.json fields commands read, each with what it must be when present.
_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task": (lambda v: isinstance(v, str), "a string"),
    "class_names": (_class_names_ok, "a non-empty list of distinct class names (strings)"),
    "input_shape": (_shape_ok, "a list of sizes (positive integers, or null for any size)"),
    **{key: (lambda v: isinstance(v, dict), "an object")
       for key in ("preprocessing", "config", "text", "pretrained", "metrics")},
}


def check_metadata_fields(meta: dict[str, Any], path: Path) -> None:
    """Exit 2 naming the field when metadata.json holds one of the fields commands read in a
    form dlkit never writes (`class_names: []`, an `input_shape` of words, ...): a hand-edited
    or foreign file is one line here, not an IndexError deep inside a command."""
    for key, (valid, what) in _FIELDS.items():
        if key in meta and not valid(meta[key]):
            shown = json.dumps(meta[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise UsageError(f"{path}: {key!r} must be {what} (got {shown}); retrain the "
                             "model, or restore its metadata.json")


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
        raise keras_load_error(path, exc) from None


def keras_layer_config(path: Path, layer: str) -> dict[str, Any] | None:
    """The config of the layer named `layer` in a `.keras` archive's config.json, read as JSON
    without Keras (nothing is deserialised); None when the archive, its config or the layer
    is not there."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > KERAS_JSON_LIMIT:
                return None
            pending = [json.loads(archive.read(info))]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            config = item.get("config")
            if isinstance(config, dict) and config.get("name") == layer and "class_name" in item:
                return config
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


# A class dlkit registered with Keras (`"dlkit>Name"`): only older dlkit versions wrote them,
# before every model became stock Keras, and dlkit no longer has any.
_DLKIT_LAYER = re.compile(rb'"(dlkit>[A-Za-z_][A-Za-z0-9_]*)"')


def register_layers_of(path: Path) -> None:
    """Import keras-hub when the `.keras` archive holds its layers (a fine-tuned pretrained
    backbone), so Keras can find their classes; nothing is imported otherwise (keras-hub costs
    seconds). dlkit's own models are stock Keras: an archive naming one of the custom layers
    older dlkit versions wrote is refused in one line (its folder's SavedModel and `.tflite`
    files still run). Every `.keras` load passes here first: an archive whose JSON files (which
    Keras reads whole) are larger than KERAS_JSON_LIMIT is refused (exit 2) before Keras opens
    it."""
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
    retired = _DLKIT_LAYER.search(config)
    if retired is not None:
        raise UsageError(f"{path} was written by an older dlkit (its layer "
                         f"{retired.group(1).decode()} is gone: models are plain Keras now); "
                         "retrain it, or use its saved_model/ or .tflite files")
    if b'"keras_hub>' in config:
        from dlkit.core.hub import import_keras_hub

        import_keras_hub()


def versions() -> dict[str, str]:
    import keras
    import numpy
    import tensorflow as tf

    return {"dlkit": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

