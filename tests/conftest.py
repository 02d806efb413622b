"""Shared fixtures: tiny datasets in the canonical formats, written by the tests themselves,
and helpers to run the real CLI."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gzip
import os
import pickle
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["DLKIT_OFFLINE"] = "1"  # tests never touch the network
# One TensorFlow thread per pool in every test process (the suite's workers and the commands
# they start): the suite already runs one worker per core, and the tiny models of the tests
# gain nothing from a second thread but its spinning and switching.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def _build_each_app_once() -> None:
    """Typer's CliRunner turns the app into its click command on every `invoke` (19 ms of
    signature and type-hint reading for dlkit's 21 commands), and the suite invokes the app in
    process a few thousand times: build it once per app. The command is what `dlkit` builds
    at start-up; each invocation still parses its arguments into a new context."""
    import functools

    import typer.testing

    typer.testing._get_command = functools.cache(typer.testing._get_command)


_build_each_app_once()


def pytest_configure(config: pytest.Config) -> None:
    """Each process that runs tests imports TensorFlow as a dlkit command does, before the
    test modules import it: quietly, its start-up objects then kept out of the garbage
    collector's full collections (`dlkit.core.runtime`). The pytest-xdist controller, which
    runs no test, does not import it."""
    if config.pluginmanager.has_plugin("dsession"):
        return
    from dlkit.core.runtime import import_tensorflow

    import_tensorflow()


@pytest.fixture(scope="module", autouse=True)
def _earlier_modules_frozen() -> None:
    """What the earlier test modules left alive (session fixtures, pytest's records) lives to
    the end of the session: out of the full collections that the tests of this module and the
    LiteRT converter run (2% of two test files' CPU)."""
    import gc

    gc.collect()
    gc.freeze()


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
REAL_DATA = Path(os.environ.get("DLKIT_DATA") or SHARED)
needs_real_data = pytest.mark.skipif(
    not (REAL_DATA / "fashion-mnist").is_dir(),
    reason=f"real datasets not found at {REAL_DATA} (set DLKIT_DATA)")


def pattern_images(n: int, size: int, channels: int, classes: int = 10,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable synthetic images: class k is a bright block at a class-specific place."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, size, size, channels)).astype(np.uint8)
    cell = max(2, size // 4)
    for i, k in enumerate(labels):
        r, c = divmod(int(k) % 16, 4)
        images[i, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = 230
    return images, labels


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding tiny fashion-mnist (idx .gz), mnist.npz and cifar-10-batches-py."""
    root = tmp_path_factory.mktemp("data")
    write_tiny_data(root)
    return root


def write_tiny_data(root: Path) -> None:
    """The tiny datasets of `tiny_root` into the folder `root`."""
    fm = root / "fashion-mnist"
    fm.mkdir()
    xtr, ytr = pattern_images(240, 28, 1, seed=1)
    xte, yte = pattern_images(60, 28, 1, seed=2)
    write_idx(fm / "train-images-idx3-ubyte.gz", xtr[..., 0])
    write_idx(fm / "train-labels-idx1-ubyte.gz", ytr)
    write_idx(fm / "t10k-images-idx3-ubyte.gz", xte[..., 0])
    write_idx(fm / "t10k-labels-idx1-ubyte.gz", yte)
    np.savez(root / "mnist.npz", x_train=xtr[..., 0], y_train=ytr, x_test=xte[..., 0],
             y_test=yte)
    cifar = root / "cifar-10-batches-py"
    cifar.mkdir()
    for i, n in enumerate((97, 83), start=1):  # batches of odd sizes: no size assumption
        x, y = pattern_images(n, 32, 3, seed=10 + i)
        write_cifar_batch(cifar / f"data_batch_{i}", x, y)
    x, y = pattern_images(50, 32, 3, seed=20)
    write_cifar_batch(cifar / "test_batch", x, y)
    with open(cifar / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(10)]}, f)


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": [int(v) for v in labels]}, f)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of small PNG/JPEG photos, one subfolder each, plus one corrupt file."""
    import cv2

    root = tmp_path_factory.mktemp("images")
    for k, name in enumerate(("circles", "squares")):
        (root / name).mkdir()
        for i in range(24):
            img = np.full((40 + i, 48, 3), 30 + 5 * i, np.uint8)
            if k == 0:
                cv2.circle(img, (24, 20), 12, (255, 255, 255), -1)
            else:
                cv2.rectangle(img, (10, 8), (38, 30), (255, 255, 255), -1)
            cv2.imwrite(str(root / name / f"{i}.{'png' if i % 2 else 'jpg'}"), img)
    (root / "squares" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


@pytest.fixture
def cli():
    """Invoke the real Typer app in-process; returns a Result with stdout, stderr, exit_code."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict | None = None):
        try:
            return runner.invoke(app, [str(a) for a in args], input=input, env=env)
        finally:
            _as_a_new_process()

    return invoke


def train_in_process(*args: object) -> None:
    """Run a training command in-process (no dataset lookup beyond its own options); it must
    succeed."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    try:
        result = CliRunner().invoke(app, [str(a) for a in args], env={"DLKIT_DATA": ""})
    finally:
        _as_a_new_process()
    assert result.exit_code == 0, (args, result.stderr)


def run_in_process(*args: object, input: str | None = None,
                   env: dict | None = None) -> subprocess.CompletedProcess:
    """`run_dlkit` without the new process (and its seconds of TensorFlow start-up), for a
    test about what a command does rather than about the process: the in-process CLI's exit
    code, stdout and stderr as a CompletedProcess."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    words = [str(a) for a in args]
    try:
        result = CliRunner().invoke(app, words, input=input, env=env)
    finally:
        _as_a_new_process()
    return subprocess.CompletedProcess(["dlkit", *words], result.exit_code, result.stdout,
                                       result.stderr)


def dlkit_in_process(command: list[str]) -> subprocess.CompletedProcess:
    """`run_in_process` for a `[python, "-m", "dlkit", ...]` command line: a resumed or
    reference run whose process adds nothing to the test (TensorFlow starts once per worker,
    not once per run)."""
    assert command[1:3] == ["-m", "dlkit"], command
    return run_in_process(*command[3:])


def _as_a_new_process() -> None:
    """Undo the process-wide state a command sets for its one run (Keras's global dtype policy:
    a training in mixed bfloat16 would otherwise make the presets and models a later test builds
    in this process mixed too), as a user's next command starts in a new process."""
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


def run_dlkit(*args: str, input: str | None = None, env: dict | None = None,
              cwd: Path | None = None, timeout: float = 600,
              file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """Run `python -m dlkit ...` in a subprocess, as a user's shell would.

    `file_size_limit` (bytes, RLIMIT_FSIZE) makes a write that grows a file past it fail with
    EFBIG, as a full disk fails one with ENOSPC, at the first file that large: a disk-full
    test that needs no mount, so it runs anywhere."""
    full_env = {**os.environ, **(env or {})}

    def limit_file_size() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, resource.RLIM_INFINITY))

    return subprocess.run([sys.executable, "-m", "dlkit", *map(str, args)], input=input,
                          capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=timeout,
                          preexec_fn=limit_file_size if file_size_limit is not None else None)


def assert_one_error_line(stderr: str) -> None:
    """A failure prints one `error:` line and no traceback."""
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr


# Loads each .keras file given with plain Keras (safe mode) where `import dlkit` fails, and
# writes each model's outputs on fixed inputs (see `sample_inputs`) to the .npz file named first.
_PLAIN_KERAS = """
import sys
sys.modules["dlkit"] = None  # import dlkit raises ImportError from here on
sys.path.insert(0, sys.argv[1])
import keras
import numpy as np
from conftest_inputs import sample_inputs
outputs = {}
for i, path in enumerate(sys.argv[3:]):
    model = keras.models.load_model(path)
    outputs[str(i)] = np.asarray(model.predict(sample_inputs(model), verbose=0))
np.savez(sys.argv[2], **outputs)
"""


def assert_plain_keras_loads(files: list[Path], tmp_path: Path) -> None:
    """Each `.keras` file loads with Keras alone (safe mode, dlkit not importable) and
    computes what dlkit's own loading computes."""
    from conftest_inputs import sample_inputs

    from dlkit.core.artifacts import load_keras_model

    out = tmp_path / "plain_keras.npz"
    done = subprocess.run([sys.executable, "-c", _PLAIN_KERAS, str(Path(__file__).parent), out,
                           *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    plain = np.load(out)
    for i, path in enumerate(files):
        model = load_keras_model(path.parent, path.name)
        ours = np.asarray(model.predict(sample_inputs(model), verbose=0))
        np.testing.assert_allclose(plain[str(i)], ours, rtol=1e-5, atol=1e-5, err_msg=str(path))


def interrupt_after(command: list[str], after: str, sig: int,
                    timeout: float = 120) -> subprocess.CompletedProcess:
    """Start `command`, send `sig` once a stderr line contains `after` (for a train command,
    `epoch K/` means K epochs are checkpointed), and wait for it to end. The returned stderr
    holds every line, those read before the signal included."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    while not seen or after not in seen[-1]:
        seen.append(proc.stderr.readline())
        if not seen[-1] and proc.poll() is not None:
            proc.communicate()
            raise AssertionError(f"ended before {after!r}:\n{''.join(seen)}")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, "".join(seen) + stderr)


def checkpoint_state(resume_dir: Path) -> dict:
    """The state.json of the newest checkpoint in a `.NAME.resume` folder (one `epoch-NNNNN`
    folder per checkpoint, see dlkit.core.checkpoint)."""
    import json

    newest = sorted(resume_dir.glob("epoch-*"))
    assert newest, f"no checkpoint in {resume_dir}"
    return json.loads((newest[-1] / "state.json").read_text())


# ---------------------------------------------------------------------------------------------
# The zoo: tiny trained models shared by every test file (and every xdist worker) of a run.
#
# Training even a tiny model takes seconds (tracing, the SavedModel, the LiteRT file, the
# plots), so a model that several files need is trained once per run, on first use, into a
# folder every worker of the run sees; a worker that asks for it while another trains it waits
# for that one. The folders are shared: a test that writes into one copies it first.

ENGLISH = ("The quick brown fox jumps over the lazy dog. A stitch in time saves nine.\n"
           "To be, or not to be, that is the question. All that glitters is not gold.\n")
TOPICS = {"space": "orbit rocket planet galaxy comet telescope lunar launch star moon",
          "food": "oven flour butter simmer recipe garlic onion bake sauce pepper"}

# {Z}: the zoo's inputs (`data` as tiny_root, corpus.txt, series.csv, texts/)
ZOO_RECIPES: dict[str, tuple[str, ...]] = {
    "mnist": ("train-mnist", "--dataset", "mnist", "--data-dir", "{Z}/data", "--arch", "mlp",
              "--epochs", "1", "--limit", "32"),
    "fashion": ("train-mnist", "--dataset", "fashion-mnist", "--data-dir", "{Z}/data", "--arch",
                "mlp", "--epochs", "1", "--limit", "64"),
    "text": ("train-text", "--corpus", "{Z}/corpus.txt", "--epochs", "1", "--seq-len", "16",
             "--dim", "16", "--batch-size", "8"),
    "gan": ("train-gan", "--dataset", "mnist", "--data-dir", "{Z}/data", "--conditional",
            "--epochs", "1", "--limit", "32", "--batch-size", "16", "--latent-dim", "4",
            "--width", "4"),
    "flow": ("train-flow", "--dataset", "mnist", "--data-dir", "{Z}/data", "--conditional",
             "--epochs", "1", "--limit", "32", "--batch-size", "16", "--width", "8", "--steps",
             "2"),
    "flowu": ("train-flow", "--dataset", "mnist", "--data-dir", "{Z}/data", "--epochs", "1",
              "--limit", "32", "--batch-size", "16", "--width", "8", "--steps", "2"),
    "vae": ("train-vae", "--dataset", "mnist", "--data-dir", "{Z}/data", "--arch", "dense",
            "--latent-dim", "3", "--epochs", "1", "--limit", "32"),
    "seq": ("train-sequence", "--csv", "{Z}/series.csv", "--column", "value", "--window", "4",
            "--units", "4", "--epochs", "1", "--members", "2"),
    "tcls": ("train-text-classifier", "--data-dir", "{Z}/texts", "--epochs", "1", "--seq-len",
             "8", "--vocab-size", "50", "--batch-size", "8"),
}


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created) for the block: across xdist workers too."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Zoo:
    """`zoo("gan")` is the folder of the ZOO_RECIPES model "gan", trained on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs = root / "inputs"

    def __call__(self, name: str) -> Path:
        model = self.root / "models" / name
        with _file_lock(self.root / f"{name}.lock"):
            if not (model / "metadata.json").is_file():
                with _file_lock(self.root / "inputs.lock"):
                    self._write_inputs()
                train_in_process(*(a.format(Z=self.inputs) for a in ZOO_RECIPES[name]),
                                 "-o", model, "--quiet")
        return model

    def copy(self, name: str, to: Path) -> Path:
        """A private copy of model `name` at `to` (to write into, or to move)."""
        shutil.copytree(self(name), to)
        return to

    def _write_inputs(self) -> None:
        done = self.inputs / ".complete"
        if done.exists():
            return
        if self.inputs.exists():
            shutil.rmtree(self.inputs)
        self.inputs.mkdir(parents=True)
        (self.inputs / "data").mkdir()
        write_tiny_data(self.inputs / "data")
        (self.inputs / "corpus.txt").write_text(ENGLISH * 10, encoding="utf-8")
        values = 10 + 3 * np.sin(2 * np.pi * np.arange(120) / 12)
        values += np.random.default_rng(7).normal(0, 0.2, len(values))
        with open(self.inputs / "series.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["t", "value"])
            writer.writerows([i, f"{v:.3f}"] for i, v in enumerate(values))
        for topic, words in TOPICS.items():
            (self.inputs / "texts" / topic).mkdir(parents=True)
            for i in range(8):
                (self.inputs / "texts" / topic / f"{i}.txt").write_text(f"{words} {i}\n",
                                                                         encoding="utf-8")
        done.touch()


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """The run's shared tiny models (see ZOO_RECIPES): one folder for all xdist workers."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    root = base / "zoo"
    root.mkdir(exist_ok=True)
    return Zoo(root)
