"""Issue 11: dlkit never loses a user's data.

Through the real CLI: a diverged run never replaces a good model; a full disk (a small tmpfs the
test mounts) is one error line with the previous files intact and no temporary file left; a kill
between a checkpoint's writes leaves a checkpoint that resumes exactly; resume compares the data,
not only its size; a failure after training keeps the trained weights for `--resume`; huge images
and FIFOs are refused; closed stderr/stdin and a closed stdout pipe are handled; tab, newline and
non-UTF-8 file names keep the TSV output one line per image. The exit codes of the refusals are
rows of tests/test_bad_input.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_one_error_line,
    pattern_images,
    run_dlkit,
    run_in_process,
    train_in_process,
)

MNIST = ("train-mnist", "--dataset", "mnist", "--arch", "mlp", "--limit", "96",
         "--batch-size", "32", "--quiet")


def fingerprint(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def mnist(root: Path, out: Path, *extra: str) -> list[str]:
    return [*MNIST, "--data-dir", str(root), "-o", str(out), *extra]


# ---------------------------------------------------------------------------------------------
# A diverged run never replaces a good model

DIVERGING = {
    "train-mnist": ("train-mnist", "--dataset", "mnist", "--data-dir", "{root}", "--arch",
                    "mlp", "--limit", "64", "--batch-size", "64", "--val-split", "0"),
    "train-vae": ("train-vae", "--dataset", "mnist", "--data-dir", "{root}", "--arch",
                  "dense", "--latent-dim", "2", "--limit", "64", "--batch-size", "64"),
    "train-sequence": ("train-sequence", "--csv", "{csv}", "--column", "value", "--window",
                       "4", "--units", "4", "--members", "1", "--batch-size", "256"),
}


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    corpus = folder / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 12)
    csv = folder / "series.csv"
    t = np.arange(80)
    csv.write_text("t,value\n" + "".join(f"{i},{10 + 3 * np.sin(i / 2):.3f}\n" for i in t))
    return {"corpus": corpus, "csv": csv}


@pytest.mark.parametrize("command", sorted(DIVERGING))
def test_diverged_run_keeps_the_good_model(command: str, cli, tiny_root: Path, tmp_path: Path,
                                           small_inputs: dict[str, Path]) -> None:
    places = {"root": str(tiny_root), **{k: str(v) for k, v in small_inputs.items()}}
    args = [a.format(**places) for a in DIVERGING[command]]
    out = tmp_path / "model"
    good = cli(*args, "--epochs", "1", "-o", out, "--quiet")
    assert good.exit_code == 0, good.stderr
    before = fingerprint(out)

    bad = cli(*args, "--epochs", "2", "--learning-rate", "1e30", "-o", out, "--json")
    assert bad.exit_code == 1, bad.stderr
    assert_one_error_line(bad.stderr)
    assert "diverged" in bad.stderr and "was not changed" in bad.stderr
    assert bad.stdout == ""  # no JSON with NaN in it (NaN is not JSON)
    assert fingerprint(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no checkpoint, no lock


# ---------------------------------------------------------------------------------------------
# A full disk: one line, exit 1, the previous files intact, no temporary files

@contextlib.contextmanager
def small_disk(where: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (skips the test when mounting is not allowed)."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                              str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave: int = 0) -> None:
    """Write a filler file until the disk is full, or has only `leave` bytes free."""
    stats = os.statvfs(disk)
    room = stats.f_bavail * stats.f_frsize - leave
    with open(disk / "filler", "ab", buffering=0) as f:
        try:
            while room > 0:
                room -= f.write(b"\0" * min(room, 65536))
        except OSError:
            pass


def assert_disk_full_error(result: object) -> None:
    """Exit 1 with one `error:` line that says the disk is full (an in-process CliRunner
    result or a finished subprocess)."""
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    stderr = result.stderr  # type: ignore[attr-defined]
    assert code == 1, stderr
    assert_one_error_line(stderr)
    assert "No space left on device" in stderr and "Traceback" not in stderr, stderr


@pytest.fixture(scope="module")
def gan_model(zoo) -> Path:
    return zoo("gan")


def test_full_disk_keeps_the_previous_png(cli, gan_model: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        grid = disk / "grid.png"
        grid.write_bytes(b"the previous grid")
        fill(disk)
        result = cli("sample-gan", "--model", gan_model, "--count", "64", "--out", grid)
        assert_disk_full_error(result)
        assert grid.read_bytes() == b"the previous grid"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "grid.png"]


def test_full_disk_keeps_the_previous_csv_and_show(cli, zoo, tmp_path: Path) -> None:
    import cv2

    model = zoo("mnist")
    image = tmp_path / "digit.png"
    assert cv2.imwrite(str(image), pattern_images(1, 28, 1, seed=4)[0][0])
    with small_disk(tmp_path / "disk") as disk:
        (disk / "p.csv").write_text("old,csv\n")
        (disk / "s.png").write_bytes(b"old png")
        fill(disk)
        for option, name in (("--csv", "p.csv"), ("--show", "s.png")):
            result = cli("classify-image", image, "--model", model, option, disk / name)
            assert_disk_full_error(result)
        assert (disk / "p.csv").read_text() == "old,csv\n"
        assert (disk / "s.png").read_bytes() == b"old png"
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "p.csv", "s.png"]


def small_training(command: str, root: Path, corpus: Path, out: Path) -> list[str]:
    """A training command of a few seconds whose checkpoint is over 200 KB."""
    return {"train-mnist": mnist(root, out, "--epochs", "2"),
            "train-text": ["train-text", "--corpus", str(corpus), "--epochs", "2",
                           "--seq-len", "8", "--dim", "64", "--quiet", "-o", str(out)],
            "train-vae": ["train-vae", "--dataset", "mnist", "--data-dir", str(root), "--arch",
                          "dense", "--latent-dim", "2", "--limit", "64", "--batch-size", "32",
                          "--epochs", "2", "--quiet", "-o", str(out)]}[command]


@pytest.fixture(scope="module")
def earlier_models(tiny_root: Path, small_inputs: dict[str, Path],
                   tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`earlier_models(command)`: the folder `small_training(command)` writes, trained once for
    the module (the tests below copy it where their failing run will write)."""
    root = tmp_path_factory.mktemp("earlier")
    trained: dict[str, Path] = {}

    def folder(command: str) -> Path:
        if command not in trained:
            out = root / command
            train_in_process(*small_training(command, tiny_root, small_inputs["corpus"], out))
            trained[command] = out
        return trained[command]

    return folder


@pytest.mark.parametrize("command", ["train-mnist", "train-text", "train-vae"])
def test_full_disk_while_training_keeps_the_earlier_model(
        command: str, tiny_root: Path, tmp_path: Path, small_inputs: dict[str, Path],
        earlier_models: Callable[[str], Path]) -> None:
    """A disk with 200 KB free (the checkpoint's write fails half-way), then none: one line,
    exit 1, no crash (this used to end in SIGSEGV with h5py tracebacks), the earlier model
    untouched, the lock released, nothing else left."""
    with small_disk(tmp_path / "disk", "64m") as disk:
        args = small_training(command, tiny_root, small_inputs["corpus"], disk / "model")
        shutil.copytree(earlier_models(command), disk / "model")  # the earlier model
        before = fingerprint(disk / "model")
        for leave in (200 * 1024, 0):
            fill(disk, leave)
            full = run_dlkit(*args, env={"DLKIT_DATA": ""})
            assert_disk_full_error(full)
            assert "cannot write the checkpoint" in full.stderr, full.stderr
            assert fingerprint(disk / "model") == before
            assert sorted(p.name for p in disk.iterdir()) == ["filler", "model"]


@pytest.mark.parametrize("command", ["train-mnist", "train-text", "train-vae"])
def test_checkpoint_that_cannot_be_written_is_one_line(
        command: str, tiny_root: Path, tmp_path: Path, small_inputs: dict[str, Path],
        earlier_models: Callable[[str], Path]) -> None:
    """The checkpoint's write fails 4 KB in (the first write of a run that grows a file past
    that): exit 1 and one line, where HDF5 used to fail mid-file and crash the process at exit
    (SIGSEGV); the earlier model untouched, no checkpoint or temporary file left."""
    out = tmp_path / "model"
    args = small_training(command, tiny_root, small_inputs["corpus"], out)
    shutil.copytree(earlier_models(command), out)  # the earlier model
    before = fingerprint(out)
    limited = run_dlkit(*args, env={"DLKIT_DATA": ""}, file_size_limit=4096)
    assert limited.returncode == 1, (limited.returncode, limited.stderr[-3000:])
    assert_one_error_line(limited.stderr)
    assert "cannot write the checkpoint" in limited.stderr
    assert "File too large" in limited.stderr and "h5py" not in limited.stderr
    assert fingerprint(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_tensorboard_on_a_full_disk_is_one_line(tiny_root: Path, tmp_path: Path) -> None:
    """TensorFlow reports the full disk as a ResourceExhaustedError: it is the one `cannot
    write` line, exit 1, and the model is not written."""
    out = tmp_path / "model"
    with small_disk(tmp_path / "disk") as disk:
        fill(disk)
        full = run_dlkit(*mnist(tiny_root, out, "--epochs", "1", "--tensorboard",
                                str(disk / "logs")), env={"DLKIT_DATA": ""})
        assert_disk_full_error(full)
        assert f"cannot write the TensorBoard logs in {disk / 'logs'}" in full.stderr
        assert "ResourceExhaustedError" not in full.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk"]


def test_tensorboard_write_failing_later_keeps_the_epochs(cli, tiny_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The logs of epoch 2 cannot be written (a fake full disk, so it runs anywhere): one
    line that says the checkpointed epochs are kept, and --resume continues from them."""
    import tensorflow as tf

    from dlkit.core.callbacks import TensorBoard

    log_epoch = TensorBoard._log_epoch_metrics

    def full_at_epoch_2(self: TensorBoard, epoch: int, logs: dict) -> None:
        if epoch == 1:
            raise tf.errors.ResourceExhaustedError(None, None, f"{tmp_path}/logs/train/events"
                                                   ".out.tfevents; No space left on device")
        log_epoch(self, epoch, logs)

    out = tmp_path / "model"
    args = mnist(tiny_root, out, "--epochs", "2", "--tensorboard", tmp_path / "logs")
    with monkeypatch.context() as patch:
        patch.setattr(TensorBoard, "_log_epoch_metrics", full_at_epoch_2)
        failed = cli(*args)
    assert failed.exit_code == 1, failed.stderr
    assert_one_error_line(failed.stderr)
    assert f"cannot write the TensorBoard logs in {tmp_path / 'logs'} (No space left on " \
           "device)" in failed.stderr
    assert "2 of 2 epochs are saved" in failed.stderr and "--resume" in failed.stderr
    assert not out.exists()
    resumed = cli(*args, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs_completed"] == 2


# ---------------------------------------------------------------------------------------------
# A checkpoint is one unit; resume compares the data

def _history(out: Path) -> dict:
    return json.loads((out / "metadata.json").read_text())["history"]


KILL_ARGS = ("--epochs", "3", "--deterministic", "--seed", "3")


@pytest.fixture(scope="module")
def straight(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run the killed-and-resumed ones must end as."""
    out = tmp_path_factory.mktemp("straight") / "straight"
    done = run_in_process(*mnist(tiny_root, out, *KILL_ARGS), env={"DLKIT_DATA": ""})
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("fault", ["checkpoint-before-publish@2", "checkpoint-after-publish@2"])
def test_kill_between_checkpoint_writes_resumes_exactly(fault: str, tiny_root: Path,
                                                        tmp_path: Path, straight: Path) -> None:
    """SIGKILL in the middle of writing epoch 2's checkpoint (before or after it is published):
    --resume continues from the newest complete checkpoint and ends exactly as an uninterrupted
    run (no epoch trained twice, none skipped)."""
    args = KILL_ARGS
    out = tmp_path / "m"
    killed = run_dlkit(*mnist(tiny_root, out, *args),
                       env={"DLKIT_DATA": "", "DLKIT_FAULT": fault})
    assert killed.returncode == -9
    saved = sorted(p.name for p in (tmp_path / ".m.resume").iterdir())
    expected_epoch = 1 if "before" in fault else 2
    assert f"epoch-{expected_epoch:05d}" in saved
    resumed = run_in_process(*mnist(tiny_root, out, *args, "--resume"), env={"DLKIT_DATA": ""})
    assert resumed.returncode == 0, resumed.stderr
    assert _history(out) == _history(straight)
    assert not (tmp_path / ".m.resume").exists()


def test_resume_compares_the_data_itself(cli, tiny_root: Path, tmp_path: Path) -> None:
    """Same options, same number of examples, different pixels: refused (exit 2, naming the
    data), before any work, and the checkpoint is untouched."""
    data = tmp_path / "data"
    shutil.copytree(tiny_root, data)
    out = tmp_path / "m"
    first = cli(*mnist(data, out, "--epochs", "2"), env={"DLKIT_FAULT": "after-fit:error"})
    assert first.exit_code == 1 and "--resume" in first.stderr, first.stderr
    checkpoint = tmp_path / ".m.resume"
    saved = fingerprint(checkpoint)

    with np.load(data / "mnist.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["x_train"] = 255 - arrays["x_train"]  # the same count, other images
    np.savez(data / "mnist.npz", **arrays)
    changed = cli(*mnist(data, out, "--epochs", "2", "--resume"))
    assert changed.exit_code == 2 and "the training data" in changed.stderr, changed.stderr
    assert_one_error_line(changed.stderr)
    for option in (("--limit", "64"), ("--val-split", "0.2")):
        other = cli(*mnist(data, out, "--epochs", "2", "--resume"), *option)
        assert other.exit_code == 2 and option[0] in other.stderr, other.stderr
    assert fingerprint(checkpoint) == saved


# ---------------------------------------------------------------------------------------------
# Work is never thrown away at the end

@pytest.mark.parametrize("fault", ["after-fit:error", "model-save:enospc"])
def test_failure_after_training_keeps_the_weights_for_resume(fault: str, cli, tiny_root: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "m"
    failed = cli(*mnist(tiny_root, out, "--epochs", "2"), env={"DLKIT_FAULT": fault})
    assert failed.exit_code == 1, failed.stderr
    assert_one_error_line(failed.stderr)
    assert "--resume" in failed.stderr and not out.exists()
    resumed = cli(*mnist(tiny_root, out, "--epochs", "2", "--resume", "--json"))
    assert resumed.exit_code == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["epochs_completed"] == 2 and len(report["history"]["loss"]) == 2
    assert not (tmp_path / ".m.resume").exists()


def test_transformer_with_one_character_context_trains_and_saves(cli, tmp_path: Path,
                                                                 small_inputs: dict) -> None:
    out = tmp_path / "t"
    result = cli("train-text", "--corpus", small_inputs["corpus"], "--arch", "transformer",
                 "--seq-len", "1", "--dim", "8", "--heads", "2", "--layers", "1", "--epochs",
                 "1", "-o", out, "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["sample"]) == 200
    assert (out / "saved_model" / "saved_model.pb").is_file()


# ---------------------------------------------------------------------------------------------
# Bounded resources

def _huge_png(path: Path, side: int = 20000) -> None:
    """A 20000x20000 black PNG of a few hundred KB (3.7 GB of pixels once decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))


def test_a_huge_image_is_refused_without_decoding_it(zoo, tmp_path: Path) -> None:
    model = zoo("mnist")
    huge = tmp_path / "huge.png"
    _huge_png(huge)
    code, stdout, stderr, peak_mib = _run_measured("classify-image", huge, "--model", model,
                                                   folder=tmp_path)
    assert code == 2 and stdout == ""
    assert_one_error_line(stderr)
    assert "megapixels" in stderr and str(huge) in stderr
    assert peak_mib < 1500, peak_mib  # decoded, its pixels alone would take 3.7 GB


def _run_measured(*args: object, folder: Path) -> tuple[int, str, str, float]:
    """`python -m dlkit ARGS`: its exit code, stdout, stderr and its own peak memory in MiB.

    Started from a small Python process that reports the peak from wait4: a process forked
    straight from this (large) test worker would count the worker's memory as its own peak."""
    peak = folder / "peak.txt"
    measure = ("import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); "
               "_, status, usage = os.wait4(p.pid, 0); "
               "open(sys.argv[1], 'w').write(str(usage.ru_maxrss)); "
               "sys.exit(os.waitstatus_to_exitcode(status))")
    result = subprocess.run([sys.executable, "-c", measure, str(peak), sys.executable, "-m",
                             "dlkit", *map(str, args)], capture_output=True, text=True)
    return result.returncode, result.stdout, result.stderr, int(peak.read_text()) / 1024


@pytest.mark.parametrize("command", ["train-text", "classify-image"])
def test_an_endless_stdin_is_read_only_to_its_limit(command: str, photos: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    """`< /dev/zero` in a real process: the read stops at the documented limit (256 MiB of
    corpus, 64 MiB of image paths) with one line and exit 2, instead of growing until the
    kernel kills the process."""
    model, _ = photos
    args = {"train-text": f"train-text --corpus - -o {tmp_path / 't'}",
            "classify-image": f"classify-image - --model {model}"}[command]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = _shell(f"{sys.executable} -m dlkit {args} < /dev/zero", tmp_path)
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert result.returncode == 2, result.stderr[-2000:]
    assert_one_error_line(result.stderr)
    assert "on stdin: more than" in result.stderr and result.stdout == ""
    assert peak_mib < 2000 or before / 1024 >= 2000, peak_mib
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_fifo_is_refused_not_read_forever(cli, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for args in (("train-text", "--corpus", fifo, "-o", tmp_path / "t"),
                 ("train-sequence", "--csv", fifo, "--column", "v", "-o", tmp_path / "s")):
        result = cli(*args)
        assert result.exit_code == 2 and "FIFO" in result.stderr, result.stderr
        assert_one_error_line(result.stderr)


# ---------------------------------------------------------------------------------------------
# The streams

def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "DLKIT_DATA": ""}, timeout=600)


@pytest.fixture(scope="module")
def photos(zoo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model and a folder of digit images, some with awkward names."""
    import cv2

    root = tmp_path_factory.mktemp("photos")
    model = zoo("mnist")
    images = root / "images"
    images.mkdir()
    names = [b"plain.png", b"tab\there.png", b"new\nline.png", b"caf\xe9.png", b"back\\.png"]
    for i, name in enumerate(names):
        ok, data = cv2.imencode(".png", pattern_images(1, 28, 1, seed=i)[0][0])
        (images / os.fsdecode(name)).write_bytes(data.tobytes())
    return model, images


def test_stderr_or_stdin_closed(photos: tuple[Path, Path], tmp_path: Path) -> None:
    model, images = photos
    py = f"{sys.executable} -m dlkit"
    closed_err = _shell(f"{py} classify-image {images / 'plain.png'} --model {model} 2>&-",
                        tmp_path)
    assert closed_err.returncode == 0 and closed_err.stdout.startswith(str(images)), closed_err
    closed_in = _shell(f"{py} train-text --corpus - -o {tmp_path / 't'} <&-", tmp_path)
    assert closed_in.returncode == 2, closed_in.stderr
    assert_one_error_line(closed_in.stderr)
    assert "empty" in closed_in.stderr


def test_csv_is_written_when_stdout_is_closed_early(photos: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    model, images = photos
    out = tmp_path / "all.csv"
    result = _shell(f"{sys.executable} -m dlkit classify-image {images} --model {model} "
                    f"--csv {out} | head -1", tmp_path)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1
    import csv

    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 1 + 5  # header and every image
    assert {os.fsencode(r[0]) for r in rows[1:]} == {
        os.fsencode(str(p)) for p in images.iterdir()}


def test_tsv_is_one_line_per_image_whatever_the_name(photos: tuple[Path, Path]) -> None:
    model, images = photos
    result = subprocess.run([sys.executable, "-m", "dlkit", "classify-image", str(images),
                             "--model", str(model)], capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode("utf-8").splitlines()
    assert len(lines) == 5
    paths = sorted(line.split("\t")[0].rsplit("/", 1)[1] for line in lines)
    assert paths == sorted(["plain.png", "tab\\there.png", "new\\nline.png", "caf\\xe9.png",
                            "back\\\\.png"])


# ---------------------------------------------------------------------------------------------
# Issue 24: outputs never overwrite inputs or user files; one writer per model folder (the
# exit codes of the refusals are rows of tests/test_bad_input.py)

def _without_manifest(folder: Path) -> None:
    """Make `folder` look saved before dlkit kept a manifest in metadata.json."""
    meta = json.loads((folder / "metadata.json").read_text())
    meta.pop("manifest", None)
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_retraining_keeps_what_a_user_added_anywhere_in_the_model_folder(
        cli, zoo, tiny_root: Path, tmp_path: Path) -> None:
    """A model folder is replaced only when it holds nothing but what dlkit wrote, at any
    depth: its manifest (or, for a folder saved before there was one, the known layout of
    saved_model/ and plots/) is compared with the whole tree."""
    out = tmp_path / "m"
    train = mnist(tiny_root, out, "--epochs", "1")
    zoo.copy("mnist", out)  # a folder a train-mnist run wrote
    manifest = json.loads((out / "metadata.json").read_text())["manifest"]
    assert {"plots/", "plots/training_curves.png", "saved_model/", "saved_model/saved_model.pb",
            "saved_model/variables/variables.index", "model.keras"} <= set(manifest)
    assert cli(*train).exit_code == 0  # only its own files: replaced
    added = {"plots/NOTES.txt": "plots/NOTES.txt", "saved_model/mine/": "saved_model/mine/",
             "saved_model/variables/mine.bin": "saved_model/variables/mine.bin"}
    for name, shown in added.items():
        for legacy in (False, True):
            if legacy:
                _without_manifest(out)
            path = out / name
            path.mkdir() if name.endswith("/") else path.write_text("the user's\n")
            before = fingerprint(out)
            result = cli(*train)
            assert result.exit_code == 2, (name, legacy, result.stderr)
            assert_one_error_line(result.stderr)
            assert f"holds files dlkit did not write ({shown})" in result.stderr
            assert fingerprint(out) == before and path.exists()
            path.rmdir() if name.endswith("/") else path.unlink()
    assert cli(*train).exit_code == 0  # the user's files gone, a folder without manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_lock_or_checkpoint_name_that_is_a_link_is_never_written_through(
        cli, zoo, tiny_root: Path, tmp_path: Path) -> None:
    """The names dlkit picks beside an output (`.NAME.lock`, `.NAME.resume`) are refused when
    they are links (or a hard link to another file, or a file that is not a lock): the file
    or folder they point at is untouched, for a training and for `export`."""
    out = zoo.copy("mnist", tmp_path / "m")  # a folder a train-mnist run wrote
    precious, elsewhere = tmp_path / "precious.txt", tmp_path / "elsewhere"
    precious.write_text("the user's file\n")
    elsewhere.mkdir()
    (elsewhere / ".tmp-keep").mkdir()
    lock, resume = tmp_path / ".m.lock", tmp_path / ".m.resume"
    cases = [(lock, lambda: lock.symlink_to(precious), "symbolic link"),
             (lock, lambda: lock.symlink_to(tmp_path / "nowhere.txt"), "symbolic link"),
             (lock, lambda: os.link(precious, lock), "hard links"),
             (lock, lambda: lock.write_text("not a process id\n"), "not a dlkit lock file"),
             (resume, lambda: resume.symlink_to(elsewhere), "symbolic link")]
    model_before = fingerprint(out)
    for name, make, why in cases:
        make()
        for args in (mnist(tiny_root, out, "--epochs", "1"), ["export", str(out)]):
            if args[0] == "export" and name == resume:
                continue  # export writes no checkpoint
            result = cli(*args)
            assert result.exit_code == 2 and why in result.stderr, (args, result.stderr)
            assert_one_error_line(result.stderr)
        name.unlink()
    assert precious.read_text() == "the user's file\n" and precious.stat().st_nlink == 1
    assert not (tmp_path / "nowhere.txt").exists()
    assert [p.name for p in elsewhere.iterdir()] == [".tmp-keep"]
    assert fingerprint(out) == model_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "m", "precious.txt"]


def test_export_into_a_linked_model_folder_writes_the_real_one(cli, zoo, tiny_root: Path,
                                                              tmp_path: Path) -> None:
    """`export LINK` rewrites the folder the link points at (the link stays a link, nothing is
    left beside either), keeps what else is in it as it is (a link inside stays a link) and
    keeps that out of the manifest, so a later training still refuses to delete it."""
    real = zoo.copy("mnist", tmp_path / "real" / "m")  # a folder a train-mnist run wrote
    link = tmp_path / "m"
    link.symlink_to(real, target_is_directory=True)
    (real / "plots" / "NOTES.txt").write_text("the user's notes\n")
    (real / "plots" / "data").symlink_to(tiny_root, target_is_directory=True)
    old_lite = (real / "model.tflite").stat().st_ino
    result = cli("export", link, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["file"] == str(link / "model.tflite")
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert (real / "model.tflite").stat().st_ino != old_lite  # the real folder was rewritten
    assert (real / "plots" / "NOTES.txt").read_text() == "the user's notes\n"
    assert (real / "plots" / "data").is_symlink()
    meta = json.loads((real / "metadata.json").read_text())
    assert "model.tflite" in meta["files"] and "model.tflite" in meta["manifest"]
    assert "plots/NOTES.txt" not in meta["manifest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "real"]
    assert sorted(p.name for p in real.parent.iterdir()) == ["m"]  # no lock, no staging left
    retrain = cli(*mnist(tiny_root, link, "--epochs", "1"))
    assert retrain.exit_code == 2 and "plots/NOTES.txt" in retrain.stderr, retrain.stderr


def test_export_into_a_model_folder_takes_its_lock(cli, zoo, tmp_path: Path) -> None:
    """One writer per model folder: `export FOLDER` while another run holds the folder's lock
    (a training writing it) is one line naming that run, exit 1, and the folder unchanged;
    `export -o FILE` writes no folder and needs no lock."""
    from test_bad_input import held_lock

    out = zoo.copy("mnist", tmp_path / "m")  # a folder a train-mnist run wrote
    before = fingerprint(out)
    with held_lock(out):
        refused = cli("export", out)
        to_file = cli("export", out, "--quantize", "dynamic", "-o", tmp_path / "q.tflite")
    assert refused.exit_code == 1, refused.stderr
    assert_one_error_line(refused.stderr)
    assert "another dlkit run (pid 4242) is writing" in refused.stderr
    assert fingerprint(out) == before
    assert to_file.exit_code == 0 and (tmp_path / "q.tflite").is_file(), to_file.stderr
