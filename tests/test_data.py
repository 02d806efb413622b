"""Dataset lookup, downloads and the canonical-format readers."""

from __future__ import annotations

import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import REAL_DATA, assert_one_error_line, needs_real_data, write_idx

from dlkit.core.errors import DataError, UsageError
from dlkit.data import locate as loc
from dlkit.data import readers
from dlkit.data.registry import DATASETS, DatasetSpec, Remote


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DLKIT_DATA, an empty Keras cache and system folder, cwd in tmp."""
    monkeypatch.delenv("DLKIT_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(loc, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "x.gz", array)
    np.testing.assert_array_equal(readers.read_idx(tmp_path / "x.gz"), array)


def test_truncated_idx_is_a_clear_error(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", np.zeros((4, 28, 28), np.uint8))
    raw = gzip.decompress((tmp_path / "x.gz").read_bytes())
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="cut.gz is corrupt or truncated"):
        readers.read_idx(tmp_path / "cut.gz")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="corrupt"):
        readers.read_idx(tmp_path / "bad.gz")


def test_cifar_batches_of_any_size(tiny_root: Path) -> None:
    data = readers.read_cifar10(tiny_root / "cifar-10-batches-py")
    assert data.x_train.shape == (97 + 83, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (50, 32, 32, 3)
    assert data.class_names[0] == "class0"


def test_corrupt_cifar_batch(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": [1, 2, 3]})[:10])
    with pytest.raises(DataError, match="corrupt"):
        readers.read_cifar_batch(tmp_path / "data_batch_1")


def test_mnist_npz_and_digits(tiny_root: Path) -> None:
    data = readers.read_mnist_npz(tiny_root / "mnist.npz")
    assert data.x_train.shape == (240, 28, 28, 1)
    digits = readers.read_digits()
    assert digits.x_train.shape[1:] == (28, 28, 1)
    assert len(digits.x_train) + len(digits.x_test) == 1797
    assert digits.x_train.max() > 200  # scaled to 0-255


def test_digits_read_from_the_bundled_file_equal_scikit_learns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The digits are read from scikit-learn's CSV without importing `sklearn.datasets`, and
    are `load_digits`'s own (which `read_digits` falls back to where the file is not found)."""
    import importlib.util

    direct = readers.read_digits()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    fallback = readers.read_digits()
    np.testing.assert_array_equal(direct.x_train, fallback.x_train)
    np.testing.assert_array_equal(direct.y_test, fallback.y_test)


def test_lookup_order(isolated: Path, tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = DATASETS["fashion-mnist"]
    monkeypatch.setenv("DLKIT_DATA", str(tiny_root))
    assert loc.find(spec).origin == "$DLKIT_DATA"
    other = isolated / "other"
    (other / "fashion-mnist").mkdir(parents=True)
    for f in (tiny_root / "fashion-mnist").iterdir():
        (other / "fashion-mnist" / f.name).write_bytes(f.read_bytes())
    assert loc.find(spec, other).origin == "--data-dir"
    assert loc.find(spec, other).root == other


def test_missing_data_dir_is_usage_error(isolated: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        loc.find(DATASETS["mnist"], isolated / "nope")


def test_not_found_offline_names_every_place(isolated: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLKIT_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        loc.locate(DATASETS["cifar10"])
    message = info.value.message
    for place in ("./data", "Keras cache", "system", "DLKIT_OFFLINE"):
        assert place in message


def _local_spec(source: Path, checksum: str) -> DatasetSpec:
    return DatasetSpec("toy", "toy", layouts=(("toy/file.bin",),),
                       remote=(Remote(source.as_uri(), checksum, "toy/file.bin"),))


def test_download_verifies_checksum_and_writes_atomically(
        isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLKIT_OFFLINE", raising=False)
    source = isolated / "remote.bin"
    source.write_bytes(b"payload" * 1000)
    good = "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    found = loc.locate(_local_spec(source, good))
    assert found.origin == "Keras cache"
    assert found.files[0].read_bytes() == source.read_bytes()

    target = isolated / "keras" / "datasets" / "toy"
    for f in target.iterdir():
        f.unlink()
    with pytest.raises(DataError, match="checksum mismatch"):
        loc.locate(_local_spec(source, "md5:" + "0" * 32))
    assert list(target.iterdir()) == []  # no partial file left behind


def test_download_unreachable(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLKIT_OFFLINE", raising=False)
    with pytest.raises(DataError, match="download failed"):
        loc.locate(_local_spec(isolated / "missing.bin", "md5:" + "0" * 32))


def test_datasets_command(cli, tiny_root: Path) -> None:
    result = cli("datasets", "--data-dir", tiny_root, "--json")
    assert result.exit_code == 0
    import json

    rows = {row["name"]: row for row in json.loads(result.stdout)["datasets"]}
    assert rows["fashion-mnist"]["found"] and "--data-dir" in rows["fashion-mnist"]["where"]
    assert rows["digits"]["found"]
    table = cli("datasets", "--data-dir", tiny_root)
    assert "cifar10" in table.stdout


def test_train_without_data_exits_1_naming_places(cli, isolated: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLKIT_OFFLINE", "1")
    result = cli("train-mnist", "--dataset", "fashion-mnist", "-o", isolated / "m")
    assert result.exit_code == 1
    assert_one_error_line(result.stderr)
    assert "tried" in result.stderr and not (isolated / "m").exists()


@needs_real_data
def test_real_datasets_read() -> None:
    fashion = readers.load_mnist_family("fashion-mnist", REAL_DATA)
    assert fashion.x_train.shape == (60000, 28, 28, 1) and fashion.x_test.shape[0] == 10000
    assert fashion.class_names[9] == "Ankle boot"
    mnist = readers.load_mnist_family("mnist", REAL_DATA)
    assert mnist.x_train.shape[1:] == (28, 28, 1)
    cifar = readers.load_cifar10(REAL_DATA)
    assert cifar.x_train.shape[1:] == (32, 32, 3) and len(cifar.x_test) > 0
    assert cifar.class_names[3] == "cat"


def test_a_class_folder_without_examples_is_refused_by_name(cli, image_folder: Path,
                                                           tmp_path: Path) -> None:
    """Issue 24: an image class folder with no images silently became a class. Every reader
    of class folders (train-cifar, evaluate, train-text-classifier) refuses it, naming it."""
    import shutil

    images = tmp_path / "images"
    shutil.copytree(image_folder, images)
    (images / "zebras").mkdir()
    texts = tmp_path / "texts"
    for name in ("space", "food"):
        (texts / name).mkdir(parents=True)
        (texts / name / "a.txt").write_text(f"{name} words\n")
    (texts / "zebras").mkdir()
    model, nothing = tmp_path / "m", tmp_path / "never"
    trained = cli("train-cifar", "--data-dir", image_folder, "--arch", "seed", "--epochs", "1",
                  "-o", model, "--quiet")
    assert trained.exit_code == 0, trained.stderr
    for folder, args in ((images, ("train-cifar", "--data-dir", images, "--arch", "seed", "-o",
                                   nothing)),
                         (images, ("evaluate", images, "--model", model)),
                         (texts, ("train-text-classifier", "--data-dir", texts, "-o", nothing))):
        result = cli(*args, "--quiet")
        assert result.exit_code == 2, (args, result.stderr)
        assert_one_error_line(result.stderr)
        assert f"class folder {folder}/zebras holds no " in result.stderr, result.stderr
        assert not nothing.exists()
    (images / "zebras" / "z.png").write_bytes(b"\x89PNG not really")
    result = cli("train-cifar", "--data-dir", images, "--arch", "seed", "-o", nothing,
                 "--quiet")
    assert result.exit_code == 2 and "zebras holds no readable image (z.png: " in result.stderr
