"""End to end through the CLI: `train-vae` and `sample-vae` on the tiny datasets of conftest."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_one_error_line,
    checkpoint_state,
    dlkit_in_process,
    interrupt_after,
    needs_real_data,
    run_dlkit,
    run_in_process,
)

PNG_MAGIC = b"\x89PNG"


# The VAE of the tests below, seeded: it is also the uninterrupted run that the interrupted and
# resumed runs of the SIGINT test must end as.
RECIPE = ("--dataset", "fashion-mnist", "--latent-dim", "2", "--epochs", "3", "--batch-size",
          "32", "--seed", "3", "--deterministic")


@pytest.fixture(scope="module")
def trained(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A convolutional VAE with a 2-D latent space, trained briefly on tiny Fashion-MNIST."""
    out = tmp_path_factory.mktemp("vae") / "model"
    result = run_in_process("train-vae", *RECIPE, "--data-dir", tiny_root, "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    return out, json.loads(result.stdout)


def test_train_vae_reports_nats_per_image(trained: tuple[Path, dict]) -> None:
    out, report = trained
    assert report["arch"] == "conv" and report["latent_dim"] == 2
    assert report["epochs_completed"] == 3 and report["train_examples"] == 240
    assert report["test_loss"] == pytest.approx(report["test_reconstruction"] +
                                                report["test_kl"], rel=1e-4)
    assert 0 < report["test_kl"] and 0 < report["test_reconstruction"] < 28 * 28 * np.log(2)
    history = report["history"]
    assert set(history) >= {"loss", "reconstruction", "kl", "val_loss"}
    assert history["loss"][-1] < history["loss"][0]  # it learns
    plots = {Path(p).name for p in report["artifacts"]["plots"]}
    assert plots == {"training_curves.png", "reconstructions.png", "prior_samples.png",
                     "latent_manifold.png", "latent_scatter.png"}
    for name in plots:
        assert (out / "plots" / name).read_bytes()[:4] == PNG_MAGIC


def test_model_folder_is_a_decoder(trained: tuple[Path, dict]) -> None:
    import keras
    import tensorflow as tf

    out, _ = trained
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "train-vae" and meta["input_shape"] == [2]
    assert meta["image_shape"] == [28, 28, 1] and meta["metrics"]["units"] == "nats per image"
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    (images,) = serve(tf.random.normal([3, 2])).values()
    assert images.shape == (3, 28, 28, 1)
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
    encoder = keras.models.load_model(out / "encoder.keras", compile=False)
    z_mean, z_log_var = encoder(np.zeros((1, 28, 28, 1), np.float32))
    assert z_mean.shape == (1, 2) and z_log_var.shape == (1, 2)


def test_sample_vae_writes_a_grid(trained: tuple[Path, dict], tmp_path: Path) -> None:
    import cv2

    out, _ = trained
    grid = tmp_path / "grid.png"
    result = run_dlkit("sample-vae", "--model", out, "--count", "12", "--columns", "4",
                       "--seed", "3", "--out", grid)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{grid}\n"  # stdout: the path only
    image = cv2.imread(str(grid), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (3 * 30 + 2, 4 * 30 + 2)  # 3 rows x 4 columns of 28 px + 2 px gaps


def test_sample_vae_json_and_seed(cli, trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = trained
    first = cli("sample-vae", "-m", out, "-n", "9", "--seed", "5", "--out", tmp_path / "a.png",
                "--json")
    again = cli("sample-vae", "-m", out, "-n", "9", "--seed", "5", "--out", tmp_path / "b.png")
    assert first.exit_code == 0 and again.exit_code == 0, first.stderr + again.stderr
    assert json.loads(first.stdout)["count"] == 9
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_train_vae_dense_without_manifold(cli, tiny_root: Path, tmp_path: Path) -> None:
    result = cli("train-vae", "--dataset", "mnist", "--arch", "dense", "--latent-dim", "4",
                 "--epochs", "1", "--limit", "64", "--data-dir", tiny_root, "-o",
                 tmp_path / "d", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == "dense" and report["train_examples"] == 64
    assert not (tmp_path / "d" / "plots" / "latent_manifold.png").exists()


@pytest.mark.parametrize("args,needle", [
    (["--latent-dim", "0"], "--latent-dim"),
    (["--dataset", "imagenet"], "'--dataset': 'imagenet' is not one of"),
    (["--arch", "vq"], "'--arch': 'vq' is not one of"),
    (["--max-minutes", "-1"], "--max-minutes"),
])
def test_train_vae_bad_options(cli, tmp_path: Path, args: list[str], needle: str) -> None:
    result = cli("train-vae", *args, "-o", tmp_path / "m")
    assert result.exit_code == 2 and needle in result.stderr
    assert_one_error_line(result.stderr)


def test_sample_vae_bad_input(cli, trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = trained
    other = tmp_path / "other"
    other.mkdir()
    (other / "metadata.json").write_text('{"task": "train-mnist"}')
    cases = [(["-m", other], "not written by train-vae"),
             (["-m", tmp_path / "none"], "does not exist"),
             (["-m", out, "--count", "0"], "--count"),
             (["-m", out, "--out", tmp_path / "grid.jpg"], "must end in .png"),
             (["-m", out, "--out", tmp_path / "no" / "grid.png"], "does not exist")]
    for args, needle in cases:
        result = cli("sample-vae", *args)
        assert result.exit_code == 2 and needle in result.stderr, (args, result.stderr)
        assert_one_error_line(result.stderr)


def _train_args(tiny_root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dlkit", "train-vae", *RECIPE, "--data-dir", str(tiny_root),
            "-o", str(out), "--json", *extra]


def test_train_vae_interrupt_then_resume_matches_uninterrupted(
        trained: tuple[Path, dict], tiny_root: Path, tmp_path: Path) -> None:
    """SIGINT after the first epoch, then --resume: the report of an uninterrupted run
    (`trained`, in-process with the same options: the same history as in a process of its
    own)."""
    out = tmp_path / "m"
    stopped = interrupt_after(_train_args(tiny_root, out), "epoch 1/3", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stdout == ""
    assert_one_error_line(stopped.stderr)
    assert "--resume" in stopped.stderr
    assert checkpoint_state(tmp_path / ".m.resume") and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".m.resume"]  # no half-written model

    resumed = dlkit_in_process(_train_args(tiny_root, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["epochs_completed"] == 3 and len(report["history"]["loss"]) == 3
    assert not (tmp_path / ".m.resume").exists()  # removed once the model folder is saved
    _, expected = trained
    assert report["history"] == expected["history"]
    assert report["test_loss"] == expected["test_loss"]


def test_train_vae_sigterm_then_resume_with_the_same_options(cli, tiny_root: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "m"
    missing = cli(*_train_args(tiny_root, out, "--resume")[3:])
    assert missing.exit_code == 2 and "nothing to resume" in missing.stderr
    assert_one_error_line(missing.stderr)

    stopped = interrupt_after(_train_args(tiny_root, out), "epoch 1/3", signal.SIGTERM)
    assert stopped.returncode == 130, stopped.stderr
    assert_one_error_line(stopped.stderr)
    assert "--resume" in stopped.stderr and not out.exists()
    other = cli(*_train_args(tiny_root, out, "--resume", "--latent-dim", "3")[3:])
    assert other.exit_code == 2 and "--latent-dim" in other.stderr
    assert_one_error_line(other.stderr)

    resumed = cli(*_train_args(tiny_root, out, "--resume", "--quiet")[3:])
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs_completed"] == 3
    assert (out / "model.keras").is_file() and not (tmp_path / ".m.resume").exists()


@needs_real_data
def test_train_vae_real_fashion_mnist(cli, tmp_path: Path) -> None:
    from conftest import REAL_DATA

    result = cli("train-vae", "--dataset", "fashion-mnist", "--epochs", "1", "--limit", "2000",
                 "--data-dir", REAL_DATA, "-o", tmp_path / "m", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["test_loss"] < 28 * 28 * np.log(2)  # beats p = 0.5 pixels
