"""SIGKILL in the middle of saving a model folder never loses the previous model (issue 7).

A tiny model is trained into OUT. Then the same command is started again on OUT in a
subprocess and killed with SIGKILL while it builds the new folder: the test polls for the
staging folder that `dlkit.artifacts.Staging` creates beside OUT and kills the run a few
delays after it appears (while the Keras file, the SavedModel, the metadata or the plots are
being written). Each time OUT must hold one complete model, the previous one byte for byte
when the kill came before the swap: its metadata.json parses, model.keras loads and predicts,
its SavedModel loads with `tf.saved_model.load`, and `classify-image` uses it. Finally a normal
run to OUT must succeed despite the stale lock file and staging folder the kills left behind,
and clear the stale staging folders away.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import pattern_images

KILL_DELAYS = (1.2, 0.4, 0.0)  # seconds after the staging folder appears (the last kill is
# the earliest, so it leaves the lock file and staging folder for the final run to meet)
OLD_SEED = 1


def train_args(data: Path, out: Path, seed: int) -> list[str]:
    return ["train-mnist", "--dataset", "mnist", "--data-dir", str(data), "--arch", "mlp",
            "--epochs", "1", "--limit", "64", "--seed", str(seed), "-o", str(out), "--quiet"]


def staging_folders(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.new-*"))


def fingerprint(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file in a model folder, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def kill_while_saving(data: Path, out: Path, seed: int, delay: float) -> bool:
    """Start a run that writes `out`; SIGKILL it `delay` s after its staging folder appears.

    Returns True when the staging folder was still there at the moment of the kill (the kill
    landed in the middle of saving, not after the swap)."""
    before = set(staging_folders(out))
    proc = subprocess.Popen([sys.executable, "-m", "dlkit", *train_args(data, out, seed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "DLKIT_DATA": ""})
    try:
        deadline = time.monotonic() + 240
        while not set(staging_folders(out)) - before:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before saving: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("the run never started saving")
            time.sleep(0.002)
        time.sleep(delay)
        new = set(staging_folders(out)) - before
        mid_save = bool(new)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    return mid_save


def assert_model_loads(out: Path, image: Path, cli) -> dict:
    """The folder is one complete model: metadata, Keras file, SavedModel, classify-image."""
    import keras
    import tensorflow as tf

    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "train-mnist"
    model = keras.models.load_model(out / "model.keras", compile=False)
    probs = np.asarray(model.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0))
    assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-3)
    served = tf.saved_model.load(str(out / "saved_model"))
    assert "serving_default" in served.signatures
    result = cli("classify-image", image, "--model", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(str(image))
    return meta


@pytest.fixture(scope="module")
def digit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import cv2

    image = tmp_path_factory.mktemp("digit") / "digit.png"
    assert cv2.imwrite(str(image), pattern_images(1, 28, 1, seed=4)[0][0])
    return image


def test_sigkill_while_saving_keeps_the_previous_model(cli, tiny_root: Path, tmp_path: Path,
                                                       digit: Path) -> None:
    out = tmp_path / "models" / "mnist"
    first = cli(*train_args(tiny_root, out, OLD_SEED), env={"DLKIT_DATA": ""})
    assert first.exit_code == 0, first.stderr
    current_seed, current = OLD_SEED, fingerprint(out)

    mid_save_kills = 0
    for attempt, delay in enumerate(KILL_DELAYS):
        seed = 100 + attempt
        mid_save = kill_while_saving(tiny_root, out, seed, delay)
        meta = assert_model_loads(out, digit, cli)
        if meta["training"]["seed"] == current_seed:  # killed before the swap: untouched
            assert fingerprint(out) == current, f"the model changed (kill at +{delay}s)"
            mid_save_kills += mid_save
        else:  # the kill came after the swap: the new model is complete
            assert meta["training"]["seed"] == seed
            current_seed, current = seed, fingerprint(out)
    assert mid_save_kills >= 1, "no kill landed in the middle of saving"

    # the kills left a lock file and (mid-save) a staging folder: neither blocks the next run,
    # which removes the stale staging folders once it holds the lock
    lock = out.with_name(f".{out.name}.lock")
    if not lock.exists():  # the last kill came after the run released it: leave one as a
        lock.write_text("999999")  # run killed mid-save does
    again = cli(*train_args(tiny_root, out, 7), env={"DLKIT_DATA": ""})
    assert again.exit_code == 0, again.stderr
    assert assert_model_loads(out, digit, cli)["training"]["seed"] == 7
    assert not staging_folders(out)
    assert not out.with_name(f".{out.name}.lock").exists()
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask  # not private like a temp folder
