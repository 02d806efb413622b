"""Pretrained models from keras-hub: turn a `--model` / `--from-preset` value into a local
preset folder, and load the keras-hub task from it (shared by the families that serve or
fine-tune keras-hub models: image classifiers, language models, and `dlkit models`).

A value is one of: a keras-hub preset name (`gpt2_base_en`), a Kaggle handle
(`kaggle://keras/gpt2/keras/gpt2_base_en[/3]`), a Hugging Face handle (`hf://org/name`), a local
preset folder (what `save_to_preset` writes: `config.json`, weights, tokenizer assets) or a dlkit
model folder that holds one in `preset/` (what fine-tuning writes).

Names come from keras-hub's own preset table, which ships with the package (no network). A handle
already in the standard cache (`$KAGGLEHUB_CACHE`, default `~/.cache/kagglehub`, in the layout
kagglehub writes; Hugging Face's cache for `hf://`) is loaded straight from the cache folder:
keras-hub 0.32 would ask Kaggle for the newest version first, even for a cached preset, and fail
offline. Anything else is downloaded into that cache (whatever the libraries print goes to stderr)
unless `DLKIT_OFFLINE=1`. A preset that cannot be had is one line saying what failed and how to
fix it (exit 1); an unknown name is one line with the closest known names (exit 2).

A preset folder is untrusted input that keras-hub reads without a bound, so before it is used
every file in it must be a regular file (a FIFO would block the read forever, a device never
end it), and every one but the weights (which HDF5 reads piece by piece) at most
PRESET_FILE_LIMIT: exit 2 naming the file otherwise.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlkit.core.config import Backend
from dlkit.core.errors import DataError, UsageError, first_line, keras_load_error
from dlkit.core.files import MiB, offline, size_text

# The kinds of task dlkit serves, as keras-hub's task class names, with what a user calls them.
KINDS = {"CausalLM": "language model", "ImageClassifier": "image classifier"}
PRESET_DIR = "preset"  # the keras-hub preset inside a dlkit model folder
CONFIG_FILE = "config.json"
TASK_FILE = "task.json"  # a task preset's class (save_to_preset writes it beside config.json)
KAGGLE, HF = "kaggle://", "hf://"
PRESET_FILE_LIMIT = 64 * MiB  # a preset's configs and tokenizer assets (not its weights)
PRESET_ENTRIES_LIMIT = 10_000  # files and folders in one preset folder
WEIGHTS_SUFFIX = ".weights.h5"
FIX = ("check the network, set KAGGLEHUB_CACHE to a cache that holds it, or pass a local preset "
       "folder (what keras-hub's save_to_preset writes)")


@dataclass(frozen=True)
class Preset:
    """A preset found on disk: `path` is the local folder keras-hub loads."""

    name: str  # as the user gave it
    path: Path
    source: str  # "local folder", "the kagglehub cache", "downloaded", ...


def refuse_litert(spec: str, backend: Backend) -> None:
    """keras-hub models run on TensorFlow only: `--backend litert` with one is exit 2."""
    if backend == Backend.litert:
        raise UsageError(f"{spec} is a pretrained keras-hub model, which runs on TensorFlow "
                         "only; drop --backend litert")


def is_preset(spec: str) -> bool:
    """Whether a `--model` value names a keras-hub preset: a handle, a preset folder
    (config.json, which dlkit's folders never hold at their top), or a bare name that is not a
    file or folder here."""
    if spec.startswith((KAGGLE, HF)):
        return True
    path = Path(spec).expanduser()
    if path.exists():
        return path.is_dir() and (path / CONFIG_FILE).is_file()
    return os.sep not in spec and not path.suffix


def cache_root() -> Path:
    """kagglehub's cache folder: `$KAGGLEHUB_CACHE`, default `~/.cache/kagglehub`."""
    return Path(os.environ.get("KAGGLEHUB_CACHE") or Path.home() / ".cache" / "kagglehub")


def import_keras_hub() -> Any:
    """keras-hub, imported with TensorFlow's start-up chatter (and tensorflow-text's) kept off
    stderr."""
    from dlkit.core import runtime

    runtime.import_tensorflow()
    with runtime.silenced_stderr():
        import keras_hub
    return keras_hub


def preset_table(kind: str) -> dict[str, dict[str, Any]]:
    """keras-hub's built-in presets of a task kind: name -> {"metadata", "kaggle_handle"}.
    Language models are the decoder-only ones (keras-hub files its encoder-decoder
    `Seq2SeqLM`s, BART and T5, under CausalLM too, but they need an encoder input)."""
    models = import_keras_hub().models
    table = dict(getattr(models, kind).presets)
    if kind == "CausalLM":
        for name in models.Seq2SeqLM.presets:
            table.pop(name, None)
    return table


def resolve(spec: str, kind: str) -> Preset:
    """The local preset folder for `spec` (see the module doc), its files checked; downloads
    it when needed."""
    preset = _find(spec, kind)
    check_preset_files(preset.path)
    return preset


def check_preset_files(folder: Path) -> None:
    """Exit 2 unless every file under `folder` (links followed) is a regular file within its
    size limit (see the module doc)."""
    entries = 0
    root = _preset_entry(folder)
    seen = {(root.st_dev, root.st_ino)}  # folders walked (a link may lead back up)
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            children = sorted(current.iterdir())
        except OSError as exc:
            raise UsageError(f"cannot read the preset folder {current} ({exc.strerror}); "
                             "check its permissions") from None
        for path in children:
            entries += 1
            if entries > PRESET_ENTRIES_LIMIT:
                raise UsageError(f"{folder} holds more than {PRESET_ENTRIES_LIMIT:,} files; "
                                 "it is not a keras-hub preset folder")
            info = _preset_entry(path)
            if stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    pending.append(path)
            elif not path.name.endswith(WEIGHTS_SUFFIX) and info.st_size > PRESET_FILE_LIMIT:
                raise UsageError(f"{path} is larger than {size_text(PRESET_FILE_LIMIT)}, the "
                                 "most dlkit reads of a preset's file (weights aside); it is "
                                 "not a keras-hub preset file")


def _preset_entry(path: Path) -> os.stat_result:
    """The status of a preset folder's entry (through links): a folder or a regular file;
    exit 2 otherwise."""
    try:
        info = path.stat()
    except OSError as exc:
        raise UsageError(f"cannot read {path} in the preset ({exc.strerror}); the preset is "
                         "damaged: download it again or pass another") from None
    if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "not a regular file"
        raise UsageError(f"{path} in the preset is {kind}; a preset holds regular files only")
    return info


def _find(spec: str, kind: str) -> Preset:
    """The local preset folder for `spec`, unchecked."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return Preset(spec, _local_folder(path), "local folder")
    if spec.startswith(KAGGLE):
        return _kaggle(spec, spec)
    if spec.startswith(HF):
        return _hugging_face(spec)
    if os.sep in spec or path.exists():
        what = "is a file, not a preset folder" if path.exists() else "does not exist"
        raise UsageError(f"{spec} {what}; pass a preset name (`dlkit models` lists them), a "
                         "kaggle:// or hf:// handle, or a preset folder")
    table = preset_table(kind)
    if spec in table:
        return _kaggle(table[spec]["kaggle_handle"], spec)
    for other in KINDS:
        if other != kind and spec in preset_table(other):
            raise UsageError(f"{spec} is {_a(KINDS[other])} preset, not {_a(KINDS[kind])}; "
                             f"pass {_a(KINDS[kind])} preset (`dlkit models` lists them)")
    close = difflib.get_close_matches(spec, list(table), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(f"unknown pretrained model {spec!r} (and no folder of that name); "
                     f"{hint}`dlkit models` lists the {KINDS[kind]}s dlkit can use")


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _local_folder(path: Path) -> Path:
    """A preset folder, or the one inside a dlkit model folder."""
    if (path / CONFIG_FILE).is_file():
        return path
    if (path / PRESET_DIR / CONFIG_FILE).is_file():
        return path / PRESET_DIR
    raise UsageError(f"{path} is not a keras-hub preset folder (no {CONFIG_FILE}) nor a dlkit "
                     "model folder holding one; pass a preset folder, a preset name or a handle")


# -- Kaggle ------------------------------------------------------------------------------------

def kaggle_parts(handle: str) -> list[str]:
    """owner, model, framework, variation[, version] of a `kaggle://` handle (exit 2 if bad)."""
    parts = handle.removeprefix(KAGGLE).strip("/").split("/")
    if len(parts) not in (4, 5) or not all(parts) or (len(parts) == 5 and not parts[4].isdigit()):
        raise UsageError(f"{handle} is not a Kaggle model handle; the form is "
                         "kaggle://OWNER/MODEL/FRAMEWORK/VARIATION[/VERSION]")
    return parts


def kaggle_cached(handle: str) -> Path | None:
    """The cache folder of `handle` when kagglehub has completed it (its `.complete` marker
    for the whole model, or for the preset's config.json); the newest cached version when the
    handle names none."""
    parts = kaggle_parts(handle)
    base = cache_root().joinpath("models", *parts[:4])
    if len(parts) == 5:
        versions = [parts[4]]
    else:
        found = base.iterdir() if base.is_dir() else []
        versions = sorted((p.name for p in found if p.name.isdigit()), key=int, reverse=True)
    for version in versions:
        folder = base / version
        markers = (base / f"{version}.complete",
                   base / ".complete" / version / f"{CONFIG_FILE}.complete")
        if (folder / CONFIG_FILE).is_file() and any(m.exists() for m in markers):
            return folder
    return None


def _kaggle(handle: str, name: str) -> Preset:
    cached = kaggle_cached(handle)
    if cached is not None:
        return Preset(name, cached, f"the kagglehub cache ({cached})")

    def fetch() -> str:
        import kagglehub

        return kagglehub.model_download(handle.removeprefix(KAGGLE))

    where = cache_root() / "models" / "/".join(kaggle_parts(handle)[:4])
    return Preset(name, _download(fetch, name, where), "downloaded from Kaggle")


# -- Hugging Face --------------------------------------------------------------------------------

def _hugging_face(handle: str) -> Preset:
    repo = handle.removeprefix(HF).strip("/")
    if repo.count("/") != 1:
        raise UsageError(f"{handle} is not a Hugging Face handle; the form is hf://ORG/NAME")
    from huggingface_hub import snapshot_download

    with contextlib.suppress(Exception):  # not cached: huggingface_hub raises several types
        with _stdout_to_stderr():
            cached = Path(snapshot_download(repo, local_files_only=True))
        if (cached / CONFIG_FILE).is_file():
            return Preset(handle, cached, f"the Hugging Face cache ({cached})")
    path = _download(lambda: snapshot_download(repo), handle, "the Hugging Face cache")
    if not (path / CONFIG_FILE).is_file():
        raise UsageError(f"{handle} is not a keras-hub preset (no {CONFIG_FILE} in it)")
    return Preset(handle, path, "downloaded from Hugging Face")


# -- downloading and loading -----------------------------------------------------------------------

def _download(fetch: Callable[[], str], name: str, where: Path | str) -> Path:
    if offline():
        raise DataError(f"pretrained model {name} is not in {where} and DLKIT_OFFLINE=1 forbids "
                        "downloading it; unset DLKIT_OFFLINE, set KAGGLEHUB_CACHE to a cache "
                        "that holds it, or pass a local preset folder")
    from dlkit.core.console import info

    info(f"downloading {name} into {where}")
    try:
        with _stdout_to_stderr():
            return Path(fetch())
    except Exception as exc:  # network, authentication, quota: many types
        first = first_line(exc, 200)
        raise DataError(f"cannot download pretrained model {name} ({type(exc).__name__}: "
                        f"{first}); {FIX}") from None


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """What keras-hub, kagglehub and Keras print (progress, notices) goes to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def preset_class(path: Path) -> str:
    """The backbone class a preset folder holds (from its config.json), for messages."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        return str(config.get("class_name") or config.get("registered_name") or "unknown")
    except (OSError, ValueError, AttributeError):
        return "unknown"


def preset_kind(spec: str) -> str | None:
    """The `KINDS` key of the task a preset holds ("CausalLM" or "ImageClassifier"): a
    built-in name by keras-hub's tables, a folder or a handle (downloaded first when it is not
    cached) by the class its task.json names; None for anything else (a backbone alone, a task
    of another kind, an unknown name)."""
    path = Path(spec).expanduser()
    if not path.exists() and not spec.startswith((KAGGLE, HF)):
        return next((kind for kind in KINDS if spec in preset_table(kind)), None)
    preset = resolve(spec, next(iter(KINDS)))  # the kind matters only for names
    try:
        name = json.loads((preset.path / TASK_FILE).read_text()).get("registered_name")
    except (OSError, ValueError, AttributeError):
        return None
    models = import_keras_hub().models
    import keras

    task = keras.saving.get_registered_object(name) if isinstance(name, str) else None
    return next((kind for kind in KINDS
                 if isinstance(task, type) and issubclass(task, getattr(models, kind))), None)


def imagenet_names() -> list[str]:
    """ImageNet's 1,000 class names as keras-hub ships them, made distinct as a model folder's
    class names must be: the ones ImageNet names alike ("crane" the bird and the machine,
    "maillot") get their class index in parentheses."""
    name_of = import_keras_hub().utils.imagenet_id_to_name
    names = [name_of(i) for i in range(1000)]
    repeated = {n for n in names if names.count(n) > 1}
    return [f"{n} ({i})" if n in repeated else n for i, n in enumerate(names)]


def load_task(preset: Preset, kind: str, **kwargs: Any) -> Any:
    """The keras-hub task (`kind`: "CausalLM" or "ImageClassifier") saved in `preset.path`;
    exit 2 when the folder holds another kind of model or is damaged."""
    from dlkit.core import runtime

    task_class = getattr(import_keras_hub().models, kind)
    try:
        with _stdout_to_stderr(), runtime.silenced_stderr():
            return task_class.from_preset(str(preset.path), **kwargs)
    except Exception as exc:  # keras-hub raises ValueError, FileNotFoundError, KeyError, ...
        if "safe_mode" in str(exc):  # Keras safe mode refused code in the preset's config
            raise keras_load_error(preset.path, exc) from None
        backbone = preset_class(preset.path)
        if "subclass" in str(exc) or "compatible" in str(exc):
            raise UsageError(f"{preset.name} holds a {backbone} preset, not "
                             f"{_a(KINDS[kind])}; pass {_a(KINDS[kind])} preset "
                             "(`dlkit models` lists them)") from None
        first = first_line(exc, 200)
        raise UsageError(f"cannot load the preset in {preset.path} ({type(exc).__name__}: "
                         f"{first}); it is damaged or incomplete: download it again or pass "
                         "another preset") from None


def catalog(kinds: tuple[str, ...] = tuple(KINDS)) -> list[dict[str, Any]]:
    """Every built-in preset of `kinds`: name, kind, family, parameters, cached or not."""
    rows = []
    for kind in kinds:
        for name, entry in sorted(preset_table(kind).items()):
            meta = entry.get("metadata", {})
            rows.append({"name": name, "kind": KINDS[kind], "family": meta.get("path", ""),
                         "parameters": meta.get("params"),
                         "cached": kaggle_cached(entry["kaggle_handle"]) is not None,
                         "handle": entry["kaggle_handle"],
                         "description": meta.get("description", "")})
    return rows
