"""Resumable training: a checkpoint folder beside the output, written at every epoch's end.

`<parent>/.<name>.resume/` holds one folder per checkpoint, `epoch-NNNNN/`, with the model's
weights and optimizer state (`checkpoint.weights.h5`) and `state.json` (epochs done, history so
far, the run's settings and data fingerprint, what the callbacks carry over). A checkpoint is one
unit: it is written whole into a temporary folder, flushed to disk and renamed into place in one
step, and only then is the previous one removed, so a kill at any instant leaves the old
checkpoint or the new one, never weights of one epoch with the state of another. `--resume`
loads the newest complete one.

An interrupted run leaves the folder behind; the same command with `--resume` rebuilds the model
from the same settings, loads the weights into it and continues; a finished run removes it.
Weights rather than a whole `.keras` model, so that any model a command builds (functional
models, and subclassed ones with their own `train_step` such as the VAE and the GAN) can be
checkpointed without registering it for deserialisation. The `.weights.h5` is built in memory
(`weights_h5`) and written as plain bytes: HDF5 never holds a file on disk, so a full disk fails
a plain write (one line) instead of an HDF5 write, which leaves the HDF5 library in a state that
crashes the process at exit (SIGSEGV in `H5_term_library`), whatever is closed by hand.

Imports Keras: import this module inside command bodies only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import keras

from dlkit.core.errors import DlkitError, Interrupted, UsageError, disk_error, first_line
from dlkit.core.files import fsync_dir, fsync_tree, refuse_link
from dlkit.core.signals import interrupts_handled_by

WEIGHTS_FILE = "checkpoint.weights.h5"
STATE_FILE = "state.json"
_EPOCH = re.compile(r"^epoch-(\d{5,})$")


class Checkpoint:
    """The resume folder of one output folder, tied to the settings of the run (`settings`,
    which include the data's fingerprint)."""

    def __init__(self, output: Path, settings: dict[str, Any], writer: bool = True,
                 labels: Callable[[str], str] | None = None) -> None:
        self.folder = output.with_name(f".{output.name}.resume")
        self.writer = writer  # False on the non-chief workers of a multi-worker run
        if writer:  # it is written, emptied and removed: never wherever a link points
            refuse_link(self.folder, "the checkpoint folder")
        self.settings = settings
        self.labels = labels or (lambda key: key)  # a setting's name as the user knows it
        self.epochs_saved = 0
        # What callbacks carry over a resume (a schedule's position, ...): called at each save,
        # stored in state.json under "extra" and handed back by load_state().
        self.extra_state: dict[str, Callable[[], Any]] = {}

    # -- reading ------------------------------------------------------------------------------

    def latest(self) -> Path | None:
        """The newest complete checkpoint folder, or None."""
        if not self.folder.is_dir():
            return None
        found = sorted((int(m.group(1)), p) for p in self.folder.iterdir()
                       if (m := _EPOCH.match(p.name)) and (p / STATE_FILE).is_file()
                       and (p / WEIGHTS_FILE).is_file())
        return found[-1][1] if found else None

    def load_state(self) -> dict[str, Any]:
        """The saved state (epochs done, history, epoch seconds, extra); exit 2 if there is
        none or it was written with other settings. Reads only: a mismatch changes nothing."""
        latest = self.latest()
        if latest is None:
            raise UsageError(f"nothing to resume: no checkpoint at {self.folder}; "
                             "run without --resume")
        try:
            state = json.loads((latest / STATE_FILE).read_text())
            saved = state["settings"]
            int(state["epochs_done"])
            if not isinstance(saved, dict) or not isinstance(state["history"], dict):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise DlkitError(f"the checkpoint state in {latest} is damaged; run without "
                             "--resume") from None
        if saved != self.settings:
            keys = sorted(set(saved) | set(self.settings))
            changed = [self.labels(k) for k in keys if saved.get(k) != self.settings.get(k)]
            raise UsageError(f"the checkpoint at {self.folder} was written with other "
                             f"settings ({', '.join(changed)}); resume with the same options "
                             "and data, or run without --resume")
        return state

    def restore(self, model: keras.Model) -> dict[str, Any]:
        """Load the newest checkpoint's weights and optimizer state into `model` (built and
        compiled by the caller exactly as for a new run, its optimizers' variables created:
        `Run.restore` does) and return its state."""
        state = self.load_state()
        latest = self.latest()
        try:
            _load_matching_weights(model, latest / WEIGHTS_FILE)
        except Exception as exc:  # a damaged or mismatched file raises many types
            why = first_line(exc, default=type(exc).__name__)
            raise DlkitError(f"cannot load the checkpoint in {latest} ({why}); run without "
                             "--resume") from None
        self.epochs_saved = int(state["epochs_done"])
        return state

    # -- writing ------------------------------------------------------------------------------

    def save(self, model: keras.Model, epochs_done: int, history: dict[str, list[float]],
             seconds: list[float]) -> None:
        """Publish the checkpoint of `epochs_done` epochs as one unit (see the module doc)."""
        if self.writer:
            with deferred_interrupts():
                self._write(model, epochs_done, history, seconds)
        self.epochs_saved = epochs_done

    def _write(self, model: keras.Model, epochs_done: int, history: dict[str, list[float]],
               seconds: list[float]) -> None:
        state = {"epochs_done": epochs_done, "history": history, "epoch_seconds": seconds,
                 "settings": self.settings,
                 "extra": {key: get() for key, get in self.extra_state.items()}}
        final = self.folder / f"epoch-{epochs_done:05d}"
        tmp = self.folder / f".tmp-{final.name}-{os.getpid()}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            (tmp / WEIGHTS_FILE).write_bytes(weights_h5(model))
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
            fsync_tree(tmp)
            fault_point("checkpoint-before-publish")
            if final.exists():  # left by a run killed after publishing it: same content
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_dir(self.folder)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(OSError):  # a folder this write made, and nothing in it
                self.folder.rmdir()
            raise disk_error(f"the checkpoint in {self.folder}", exc) from None
        fault_point("checkpoint-after-publish")
        for older in self.folder.iterdir():
            m = _EPOCH.match(older.name)
            if m and int(m.group(1)) < epochs_done:
                shutil.rmtree(older, ignore_errors=True)

    def clean_stale(self) -> None:
        """Remove what a killed run left half-written (only the output's lock holder calls
        this, so every temporary folder in there is stale)."""
        if self.writer and self.folder.is_dir():
            for path in self.folder.glob(".tmp-*"):
                shutil.rmtree(path, ignore_errors=True)

    def remove(self) -> None:
        if self.writer:
            shutil.rmtree(self.folder, ignore_errors=True)

    def interrupted(self, total_epochs: int, kept: str | None = None) -> Interrupted:
        """The exit-130 error for Ctrl-C/SIGTERM: what is saved and how to continue (`kept`:
        what else the command saved, e.g. "saved the model as trained so far to DIR")."""
        if not self.epochs_saved:
            return Interrupted("interrupted before the first epoch ended; "
                               f"{kept or 'nothing was saved'} (run the command again to "
                               "start over)")
        kept = f"{kept}; " if kept else ""
        return Interrupted(f"interrupted; {kept}{self.epochs_saved} of {total_epochs} epochs "
                           f"are saved in the checkpoint at {self.folder}: run the same "
                           "command with --resume to continue")


class _MemoryWeightsFile(io.BytesIO):
    """An in-memory `.weights.h5` for `keras.Model.save_weights`: Keras checks the suffix of
    the name it is given (`str()` of it) and hands any `io.BytesIO` to h5py as the file."""

    def __str__(self) -> str:
        return WEIGHTS_FILE


def weights_h5(model: keras.Model) -> memoryview:
    """The bytes of `model.save_weights(...)` (weights and optimizer state), built in memory
    (see the module doc for why never on disk); a view of the buffer, not a second copy."""
    buffer = _MemoryWeightsFile()
    model.save_weights(buffer)
    return buffer.getbuffer()


@contextlib.contextmanager
def weights_in_memory() -> Iterator[None]:
    """Within the block, Keras's `save_weights` to a `.weights.h5` path (which keras-hub's
    `save_to_preset` calls for a backbone and a task head) builds the file in memory and
    writes its bytes with a plain write, as `weights_h5` does (see the module doc): keras-hub
    gives no other way in. Sharded weights (keras-hub shards past 10 GB) are left to Keras."""
    from keras.src.saving import saving_lib

    original = saving_lib.save_weights_only

    def save_weights_only(model: keras.Model, filepath: Any, max_shard_size: Any = None,
                          objects_to_skip: Any = None) -> None:
        if max_shard_size is not None or isinstance(filepath, io.IOBase):
            original(model, filepath, max_shard_size, objects_to_skip)
            return
        buffer = _MemoryWeightsFile()
        original(model, buffer, None, objects_to_skip)
        Path(filepath).write_bytes(buffer.getbuffer())

    saving_lib.save_weights_only = save_weights_only
    try:
        yield
    finally:
        saving_lib.save_weights_only = original


_fault_counts: dict[str, int] = {}


def reset_faults() -> None:
    """Start counting fault points afresh (each training run does: tests run several
    in one process)."""
    _fault_counts.clear()


def fault_point(name: str) -> None:
    """A test hook, so tests can prove what a failure at a given point leaves behind:
    `DLKIT_FAULT=<name>[@<n>][:<action>]` acts the n-th time (default: the first) the run
    passes the point `name`. Actions: `kill` (SIGKILL, the default), `enospc` (a full disk:
    OSError ENOSPC) and `error` (an unexpected RuntimeError). Does nothing otherwise."""
    spec = os.environ.get("DLKIT_FAULT", "")
    point, _, action = spec.partition(":")
    point, _, nth = point.partition("@")
    if point != name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] != int(nth or 1):
        return
    if action == "enospc":
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")
    if action == "error":
        raise RuntimeError(f"fault injected at {name}")
    os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends (a checkpoint is written whole), then act on
    them as usual."""
    caught: list[int] = []
    try:
        with interrupts_handled_by(lambda s, _f: caught.append(s)):
            yield
    finally:
        if caught:
            signal.raise_signal(caught[0])


@contextlib.contextmanager
def quiet_h5py() -> Iterator[None]:
    """When an HDF5 write fails (a full disk), h5py's objects report the same error again
    from their destructors, as "Exception ignored" tracebacks on stderr; the failure itself is
    raised and reported once, so those echoes are dropped."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if "h5py" not in repr(getattr(unraisable, "object", "")):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    except BaseException:
        import gc

        gc.collect()  # let the failed file's objects go now, while the hook is in place
        raise
    finally:
        sys.unraisablehook = previous


# What Keras only warns about when a weights file does not fit the model it is loaded into: the
# optimizer's variables (another network: a checkpoint of an older dlkit, say) or whole objects.
_MISMATCH_WARNINGS = ("Skipping variable loading", "could not be loaded")


def _load_matching_weights(model: Any, path: Path) -> None:
    """`model.load_weights(path)`, raising ValueError where Keras would only warn that part of
    the file does not fit the model (it would then resume with a fresh optimizer, or with some
    weights left as initialised). Other warnings are passed on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    for warning in caught:
        message = str(warning.message)
        if any(marker in message for marker in _MISMATCH_WARNINGS):
            raise ValueError(f"it was written for another network: {message}")
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
