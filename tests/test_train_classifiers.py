"""End to end through the CLI: `train-mnist` and `train-cifar` on tiny data the tests make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_error_line, run_dlkit

PNG_MAGIC = b"\x89PNG"


def assert_model_folder(folder: Path, task: str, input_shape: list[int]) -> dict:
    """The model folder of docs/design.md#artifacts: loadable SavedModel (which passes dlkit's
    own scan of untrusted graphs), .keras, metadata and PNG plots."""
    import tensorflow as tf

    from dlkit.core.saved_model import scan

    meta = json.loads((folder / "metadata.json").read_text())
    scan(folder / "saved_model")
    assert meta["task"] == task and meta["input_shape"] == input_shape
    assert len(meta["class_names"]) == 10 and "test_accuracy" in meta["metrics"]
    assert meta["versions"]["tensorflow"] and meta["training"]["seed"] == 0
    loaded = tf.saved_model.load(str(folder / "saved_model"))
    serve = loaded.signatures["serving_default"]
    batch = tf.zeros([2, *input_shape], tf.float32)
    (probs,) = serve(batch).values()
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-4)
    assert (folder / "model.keras").stat().st_size > 0
    for name in ("training_curves.png", "confusion_matrix.png", "test_predictions.png"):
        assert (folder / "plots" / name).read_bytes()[:4] == PNG_MAGIC
    return meta


@pytest.mark.parametrize("dataset,arch", [("fashion-mnist", "mlp"), ("mnist", "cnn")])
def test_train_mnist_end_to_end(cli, tiny_root: Path, tmp_path: Path, dataset: str,
                                arch: str) -> None:
    out = tmp_path / "model"
    result = cli("train-mnist", "--dataset", dataset, "--arch", arch, "--epochs", "2",
                 "--batch-size", "32", "--data-dir", tiny_root, "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)  # stdout is exactly one JSON object
    assert report["dataset"] == dataset and report["arch"] == arch and report["epochs"] == 2
    assert 0.0 <= report["test_accuracy"] <= 1.0 and report["images_per_second"] > 0
    assert report["artifacts"]["model_dir"] == str(out.resolve())
    meta = assert_model_folder(out, "train-mnist", [28, 28, 1])
    assert meta["preprocessing"]["foreground"] == "light-on-dark"
    assert len(meta["history"]["loss"]) == 2 and "val_loss" in meta["history"]


def test_train_mnist_digits_learns(cli, tmp_path: Path) -> None:
    result = cli("train-mnist", "--dataset", "digits", "--epochs", "4", "--batch-size", "32",
                 "-o", tmp_path / "d", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["test_accuracy"] > 0.6  # real digits: it learns


def test_train_cifar_end_to_end(cli, tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cifar"
    for arch in ("seed", "resnet"):
        result = cli("train-cifar", "--arch", arch, "--epochs", "1", "--batch-size", "32",
                     "--data-dir", tiny_root, "-o", out, "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["arch"] == arch
        meta = assert_model_folder(out, "train-cifar", [32, 32, 3])
        assert meta["class_names"][0] == "class0" and meta["arch"] == arch
    # the second run replaced the first atomically: no staging folders left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar"]


def test_train_cifar_on_image_folders(cli, image_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "shapes"
    result = cli("train-cifar", "--data-dir", image_folder, "--arch", "seed", "--epochs", "2",
                 "--batch-size", "8", "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["class_names"] == ["circles", "squares"] and meta["source"] == "image-folder"
    assert "broken.png" in result.stderr  # the corrupt file is reported and skipped


def test_plain_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    result = run_dlkit("train-mnist", "--dataset", "digits", "--epochs", "2", "--limit", "200",
                       "-o", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    assert "epoch 1/2" in result.stderr and "epoch 2/2" in result.stderr
    assert result.stdout.startswith("test_accuracy=")  # results only on stdout
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()


@pytest.mark.parametrize("args,code,phrase", [
    (["train-mnist", "--dataset", "nope"], 2, "'--dataset': 'nope' is not one of"),
    (["train-mnist", "--arch", "transformer"], 2, "'--arch': 'transformer' is not one of"),
    (["train-mnist", "--epochs", "0"], 2, "'--epochs' / '-e': Input should be greater than or "
     "equal to 1"),
    (["train-mnist", "--batch-size", "-3"], 2, "'--batch-size' / '-b': Input should be greater"),
    (["train-mnist", "--learning-rate", "nan"], 2, "--learning-rate"),
    (["train-mnist", "--limit", "0"], 2, "--limit"),
    (["train-cifar", "--arch", "vgg"], 2, "'--arch': 'vgg' is not one of"),
    (["train-cifar", "--dataset", "cifar1000"], 2, "'--dataset': 'cifar1000' is not one of"),
    (["train-cifar", "--image-size", "2"], 2, "--image-size"),
    (["train-mnist", "--data-dir", "/definitely/not/here"], 2, "does not exist"),
])
def test_bad_options(cli, tmp_path: Path, args: list[str], code: int, phrase: str) -> None:
    result = cli(*args, "-o", tmp_path / "m")
    assert result.exit_code == code, result.stderr
    assert_one_error_line(result.stderr)
    assert phrase in result.stderr
    assert not (tmp_path / "m").exists()


def test_unwritable_output(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    result = cli("train-mnist", "--dataset", "digits", "-o", blocker / "model")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)
    assert "cannot write" in result.stderr


def test_corrupt_data_keeps_previous_model(cli, tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    ok = cli("train-mnist", "--dataset", "mnist", "--data-dir", tiny_root, "--epochs", "1",
             "-o", out, "--quiet")
    assert ok.exit_code == 0, ok.stderr
    before = (out / "metadata.json").read_text()

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mnist.npz").write_bytes((tiny_root / "mnist.npz").read_bytes()[:300])
    result = cli("train-mnist", "--dataset", "mnist", "--data-dir", bad, "--epochs", "1",
                 "-o", out)
    assert result.exit_code == 1
    assert_one_error_line(result.stderr)
    assert "corrupt or truncated" in result.stderr
    assert (out / "metadata.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "m"]


def test_empty_image_folder(cli, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    (folder / "cats").mkdir(parents=True)
    (folder / "dogs").mkdir()
    (folder / "dogs" / "notes.txt").write_text("no images here")
    result = cli("train-cifar", "--data-dir", folder, "-o", tmp_path / "m")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)
    assert f"class folder {folder / 'cats'} holds no images" in result.stderr  # issue 24


def test_seed_and_deterministic_repeat_exactly(cli, tmp_path: Path) -> None:
    reports = []
    for run in range(2):
        result = cli("train-mnist", "--dataset", "digits", "--epochs", "2", "--limit", "400",
                     "--seed", "3", "--deterministic", "-o", tmp_path / f"m{run}", "--json")
        assert result.exit_code == 0, result.stderr
        reports.append(json.loads(result.stdout))
    assert reports[0]["history"] == reports[1]["history"]
    assert reports[0]["test_loss"] == reports[1]["test_loss"]
