"""Readers for the canonical dataset formats, returning uint8 NumPy arrays.

- MNIST-family idx files (`.gz` or raw), as the MNIST and Fashion-MNIST sites ship them;
- the Keras `mnist.npz` (`x_train`, `y_train`, `x_test`, `y_test`);
- CIFAR-10 "python version" pickled batches, of any number of images per batch;
- scikit-learn's bundled 8x8 digits, upscaled to MNIST's 28x28 layout.

Every reader turns a corrupt or truncated file into a one-line `DataError` naming the file.
"""

from __future__ import annotations

import dataclasses
import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlkit.core.errors import DataError
from dlkit.data.registry import CIFAR10_CLASSES, FASHION_CLASSES, MNIST_CLASSES

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class ArraySplits:
    """A labelled image dataset as uint8 arrays of shape (N, H, W, C) and int labels (N,)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    files: tuple[Path, ...] = ()  # where it was read from (the run's inputs)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def first(self, limit: int | None) -> ArraySplits:
        """Only the first `limit` training and test examples (`--limit`, for smoke runs)."""
        if limit is None:
            return self
        return dataclasses.replace(self, x_train=self.x_train[:limit],
                                   y_train=self.y_train[:limit], x_test=self.x_test[:limit],
                                   y_test=self.y_test[:limit])


def _corrupt(path: Path, why: object) -> DataError:
    return DataError(f"{path} is corrupt or truncated ({why}); delete it so it can be "
                     "downloaded again, or point --data-dir at a good copy")


def read_idx(path: Path) -> np.ndarray:
    """Read one idx file (optionally gzipped) into an array of its declared shape."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise _corrupt(path, exc) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise _corrupt(path, "not an idx file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, "header cut short")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise _corrupt(path, f"{len(raw) - header} data bytes, header promises {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(np.uint8)


def read_idx_set(name: str, files: tuple[Path, ...], class_names: list[str]) -> ArraySplits:
    """Read the four idx files (train images, train labels, test images, test labels)."""
    x_train, y_train, x_test, y_test = (read_idx(f) for f in files)
    _check_pairs(files[0], x_train, y_train)
    _check_pairs(files[2], x_test, y_test)
    return ArraySplits(name, x_train[..., None], y_train.astype(np.int32), x_test[..., None],
                       y_test.astype(np.int32), class_names)


def read_mnist_npz(path: Path) -> ArraySplits:
    """Read the Keras `mnist.npz` layout."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as exc:
        raise _corrupt(path, f"missing array {exc}") from None
    except Exception as exc:  # zip and npy parsing of a damaged file raise many types
        raise _corrupt(path, str(exc) or type(exc).__name__) from None
    _check_pairs(path, arrays["x_train"], arrays["y_train"])
    _check_pairs(path, arrays["x_test"], arrays["y_test"])
    return ArraySplits("mnist", arrays["x_train"].astype(np.uint8)[..., None],
                       arrays["y_train"].astype(np.int32),
                       arrays["x_test"].astype(np.uint8)[..., None],
                       arrays["y_test"].astype(np.int32), MNIST_CLASSES)


def _check_pairs(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 3 or len(x) != len(y) or len(x) == 0:
        raise _corrupt(path, f"images {x.shape} and labels {y.shape} do not match")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: a CIFAR batch needs nothing else, and
    refusing other globals means a crafted file cannot run code."""

    _ALLOWED = {(core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
                for name in ("_reconstruct", "scalar")}
    _ALLOWED |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected object {module}.{name}")


def _load_pickle(path: Path) -> object:
    with open(path, "rb") as f:
        return _ArrayUnpickler(f, encoding="bytes").load()


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickled CIFAR batch into (N, 32, 32, 3) uint8 images and int labels."""
    try:
        batch = _load_pickle(path)
        data = np.asarray(batch[b"data"], dtype=np.uint8)  # type: ignore[index]
        labels = np.asarray(batch.get(b"labels", batch.get(b"fine_labels")),  # type: ignore[union-attr]
                            dtype=np.int32)
    except Exception as exc:  # a damaged pickle can raise almost anything
        raise _corrupt(path, str(exc) or type(exc).__name__) from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise _corrupt(path, f"data {data.shape} and labels {labels.shape} are not CIFAR batches")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar10(folder: Path) -> ArraySplits:
    """Read every `data_batch_N` (any count, any size) and `test_batch` of a CIFAR-10 folder."""
    train_files = sorted(folder.glob("data_batch_*"), key=lambda p: int(p.name.rsplit("_", 1)[1])
                         if p.name.rsplit("_", 1)[1].isdigit() else 0)
    parts = [read_cifar_batch(f) for f in train_files]
    x_test, y_test = read_cifar_batch(folder / "test_batch")
    return ArraySplits("cifar10", np.concatenate([p[0] for p in parts]),
                       np.concatenate([p[1] for p in parts]), x_test, y_test,
                       _cifar_names(folder / "batches.meta"))


def _cifar_names(meta: Path) -> list[str]:
    try:
        names = _load_pickle(meta)[b"label_names"]  # type: ignore[index]
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception:  # batches.meta is optional; the canonical names are known
        return list(CIFAR10_CLASSES)


def read_digits(seed: int = 0) -> ArraySplits:
    """scikit-learn's 1,797 bundled 8x8 digits as MNIST-style 28x28 images (offline default).

    Each digit is scaled from 0-16 to 0-255, resized to 20x20 and centred in a 28x28 field, as
    MNIST centres its digits; a fixed shuffle keeps the last 20% as the test set.
    """
    import cv2

    pixels, targets = _bundled_digits()
    small = (pixels * (255.0 / 16.0)).astype(np.float32)
    big = np.stack([cv2.resize(img, (20, 20), interpolation=cv2.INTER_CUBIC) for img in small])
    images = np.zeros((len(big), 28, 28), np.uint8)
    images[:, 4:24, 4:24] = np.clip(big, 0, 255).astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order][..., None], targets[order].astype(np.int32)
    cut = int(len(images) * 0.8)
    return ArraySplits("digits", images[:cut], labels[:cut], images[cut:], labels[cut:],
                       MNIST_CLASSES)


def _bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits' 8x8 images (0-16) and labels, as `sklearn.datasets.load_digits` returns
    them, read straight from the CSV scikit-learn ships: importing `sklearn.datasets` costs
    about a CPU-second (it imports SciPy and pandas), more than the training of a small model
    on these images. `load_digits` itself where the file is not where scikit-learn keeps it."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec else []
    csv = next((Path(root) / "datasets" / "data" / "digits.csv.gz" for root in roots), None)
    if csv is None or not csv.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    with gzip.open(csv, "rt") as stream:
        table = np.loadtxt(stream, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def load_mnist_family(name: str, data_dir: Path | None) -> ArraySplits:
    """Locate and read `mnist`, `fashion-mnist` or `digits`."""
    from dlkit.data.locate import locate
    from dlkit.data.registry import get_spec

    if name == "digits":
        from dlkit.core.console import info

        info("reading digits from scikit-learn's bundled copy")
        return read_digits()
    found = locate(get_spec(name), data_dir)
    if found.files[0].suffix == ".npz":
        splits = read_mnist_npz(found.files[0])
    else:
        splits = read_idx_set(name, found.files,
                              FASHION_CLASSES if name == "fashion-mnist" else MNIST_CLASSES)
    splits.name = name
    splits.files = found.files
    return splits


def load_cifar10(data_dir: Path | None) -> ArraySplits:
    """Locate and read CIFAR-10."""
    from dlkit.data.locate import locate
    from dlkit.data.registry import get_spec

    found = locate(get_spec("cifar10"), data_dir)
    splits = read_cifar10(found.files[0].parent)
    splits.files = (found.files[0].parent,)
    return splits


def load_image_dataset(name: str, data_dir: Path | None) -> ArraySplits:
    """Locate and read one of the generators' datasets (`registry.ImageDataset`): an MNIST-style
    set or CIFAR-10."""
    if name == "cifar10":
        return load_cifar10(data_dir)
    return load_mnist_family(name, data_dir)
