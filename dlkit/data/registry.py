"""The datasets dlkit knows: their on-disk layouts and canonical download sources."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


class GreyDataset(enum.StrEnum):
    """The 28x28 greyscale datasets (train-mnist, train-vae)."""

    mnist = "mnist"
    fashion_mnist = "fashion-mnist"
    digits = "digits"


class ImageDataset(enum.StrEnum):
    """The small labelled image sets the image generators train on (train-gan, train-flow)."""

    mnist = "mnist"
    fashion_mnist = "fashion-mnist"
    digits = "digits"
    cifar10 = "cifar10"


IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass(frozen=True)
class Remote:
    """One file to download: its URL, `algo:hexdigest` checksum and where it lands in a root."""

    url: str
    checksum: str
    dest: str
    extract: bool = False  # a .tar.gz unpacked beside itself


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: the layouts that satisfy it (all paths of one layout must exist) and its
    canonical download."""

    name: str
    description: str
    layouts: tuple[tuple[str, ...], ...]
    remote: tuple[Remote, ...] = field(default=())
    bundled: bool = False  # shipped inside a Python package: nothing to locate


_FASHION_URL = "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_FASHION_MD5 = ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "mnist", "MNIST handwritten digits, 28x28 grey, 10 classes",
            layouts=(("mnist.npz",), tuple(f"mnist/{f}" for f in IDX_FILES)),
            remote=(Remote("https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
                           "sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
                           "mnist.npz"),),
        ),
        DatasetSpec(
            "fashion-mnist", "Fashion-MNIST clothing, 28x28 grey, 10 classes",
            layouts=(tuple(f"fashion-mnist/{f}" for f in IDX_FILES),),
            remote=tuple(Remote(_FASHION_URL + f, "md5:" + md5, f"fashion-mnist/{f}")
                         for f, md5 in zip(IDX_FILES, _FASHION_MD5, strict=True)),
        ),
        DatasetSpec(
            "digits", "scikit-learn's bundled 8x8 handwritten digits, upscaled to 28x28",
            layouts=(), bundled=True,
        ),
        DatasetSpec(
            "cifar10", "CIFAR-10 colour photos, 32x32, 10 classes",
            layouts=(("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"),),
            remote=(Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                           "md5:c58f30108f718f92721af3b95e74349a", "cifar-10-python.tar.gz",
                           extract=True),),
        ),
        DatasetSpec(
            "tinyshakespeare", "Tiny Shakespeare, 1.1M characters of plain text",
            layouts=(("tinyshakespeare/input.txt",), ("shakespeare.txt",)),
            remote=(Remote("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                           "tinyshakespeare/input.txt",
                           "sha256:86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                           "tinyshakespeare/input.txt"),),
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    from dlkit.core.errors import UsageError

    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]
