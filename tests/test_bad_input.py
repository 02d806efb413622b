"""The bad-input matrix (issue 7): every command against its bad inputs, in one table.

Each row is one command line that a user or a script could get wrong: missing, empty or corrupt
files and folders, the wrong type of thing (a file for a folder, a model folder written by
another command), option values out of range where that depends on more than the option's own
bounds (those, and unknown choices, are tests/test_option_bounds.py's, for every option of every
command) and an output that cannot be written. For each row the test asserts the contract of
docs/design.md#exit-codes: the exit code (2 for the user's bad input or options, 1 for what the
environment lacks, such as a dataset that is nowhere to be found or a corrupt dataset file),
exactly one `error: ...` line on stderr (Typer's own usage errors too), no
traceback, nothing on stdout, and nothing written: the row's scratch folder and the shared inputs
and model folders are byte-for-byte as before (an output folder that existed before the run is
unchanged; no staging folder, lock or checkpoint is left behind).

The rows run in-process through the `cli` fixture (TensorFlow starts once); the model folders
they need are trained once per session on tiny data. Rows about read-only folders run as an
unprivileged user when the tests run as root (root ignores folder permissions).

`matrix_counts()` says how many bad inputs the matrix tries per command.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import gzip
import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import ENGLISH, TOPICS, Zoo, assert_one_error_line, pattern_images, run_dlkit

NOBODY = 65534
ENDLESS = "<endless stdin>"  # Row.stdin: zero bytes without end, as `< /dev/zero` gives


# ---------------------------------------------------------------------------------------------
# The matrix. Placeholders: {A} the shared assets folder, {T} the row's scratch folder,
# {OUT} = {T}/out (the output that must not appear), {F} = {T}/file.txt (a regular file),
# {RO} a read-only folder.

@dataclass(frozen=True)
class Row:
    """One bad command line and the exit code it must end with."""

    command: str
    case: str
    args: tuple[str, ...]
    code: int = 2
    usage: bool = False  # rejected by Typer's option parser (still one `error:` line)
    stdin: str | bytes | None = None  # text may hold placeholders
    existing: str | None = None  # an output that exists before the run and must not change
    as_user: bool = False  # needs folder permissions to count (runs unprivileged as root)
    errors: int = 1  # `error:` lines: classify-image reports each unreadable file on its own
    locked: bool = False  # another run holds the lock on {OUT}
    env: tuple[tuple[str, str], ...] = ()  # extra environment (placeholders allowed)

    @property
    def id(self) -> str:
        return f"{self.command}:{self.case}"


def row(command: str, case: str, *args: str, **kw: object) -> Row:
    return Row(command, case, (command, *args), **kw)  # type: ignore[arg-type]


def train_option_rows(command: str, base: tuple[str, ...]) -> list[Row]:
    """The unwritable outputs every train-* command rejects (its out-of-range options and
    unknown choices are tests/test_option_bounds.py's, generic over every config field)."""
    out = ("-o", "{OUT}")
    return [
        row(command, "unknown option", *base, "--no-such-option", *out, usage=True),
        row(command, "output is a file", *base, "-o", "{F}"),
        row(command, "output parent is a file", *base, "-o", "{F}/model"),
        row(command, "output in a read-only folder", *base, "-o", "{RO}/model", as_user=True),
        row(command, "existing output kept on a bad option", *base, "--epochs", "0", *out,
            existing="{OUT}"),
        row(command, "output locked by another run", *base, *out, code=1, existing="{OUT}",
            locked=True),
        # issue 11: -o never deletes what dlkit did not write
        row(command, "output is the working directory", *base, "-o", "."),
        row(command, "output is the home folder", *base, "-o", "~",
            env=(("HOME", "{T}/home"),)),
        row(command, "output holds other files", *base, "-o", "{A}/nometa"),
        row(command, "output inside a model folder", *base, "-o",
            "{A}/models/mnist/saved_model"),
        row(command, "output above a model folder", *base, "-o", "{A}/models"),
        row(command, "output holds the working directory", *base, "-o", ".."),
        row(command, "output name not UTF-8", *base, "-o", "{T}/caf\udce9"),
    ]


def dataset_rows(command: str, base: tuple[str, ...], dataset: tuple[str, ...]) -> list[Row]:
    """Missing, unusable or corrupt dataset locations (`dataset` picks an MNIST-style set)."""
    out = ("-o", "{OUT}")
    return [
        row(command, "data-dir missing", *base, *dataset, "--data-dir", "{T}/nowhere", *out),
        row(command, "data-dir is a file", *base, *dataset, "--data-dir", "{F}", *out),
        row(command, "dataset nowhere (offline)", *base, *dataset, "--data-dir", "{A}/empty",
            *out, code=1),
        row(command, "dataset unknown", *base, "--dataset", "imagenet-21k", *out),
        row(command, "truncated mnist.npz", *base, "--dataset", "mnist", "--data-dir",
            "{A}/bad_npz", *out, code=1),
        row(command, "random bytes as mnist.npz", *base, "--dataset", "mnist", "--data-dir",
            "{A}/random_npz", *out, code=1),
        row(command, "truncated idx .gz", *base, "--dataset", "fashion-mnist", "--data-dir",
            "{A}/bad_gz", *out, code=1),
        row(command, "idx .gz that is not gzip", *base, "--dataset", "fashion-mnist",
            "--data-dir", "{A}/plain_gz", *out, code=1),
    ]


MNIST = ("--data-dir", "{A}/data", "--arch", "mlp", "--epochs", "1", "--limit", "32", "--quiet")
CIFAR = ("--data-dir", "{A}/data", "--arch", "seed", "--epochs", "1", "--limit", "32",
         "--quiet")
TEXT = ("--corpus", "{A}/corpus.txt", "--epochs", "1", "--seq-len", "16", "--dim", "16",
        "--batch-size", "8", "--quiet")
VAE = ("--data-dir", "{A}/data", "--dataset", "mnist", "--arch", "dense", "--latent-dim", "3",
       "--epochs", "1", "--limit", "32", "--quiet")
SEQ = ("--csv", "{A}/series.csv", "--column", "value", "--window", "4", "--units", "4",
       "--epochs", "1", "--quiet")
TCLS = ("--data-dir", "{A}/texts", "--epochs", "1", "--seq-len", "8", "--vocab-size", "50",
        "--quiet")
GAN = ("--data-dir", "{A}/data", "--dataset", "mnist", "--epochs", "1", "--limit", "32",
       "--latent-dim", "4", "--width", "4", "--batch-size", "16", "--quiet")
FLOW = ("--data-dir", "{A}/data", "--dataset", "mnist", "--epochs", "1", "--limit", "32",
        "--width", "8", "--steps", "2", "--batch-size", "16", "--quiet")


def datasets_rows() -> list[Row]:
    return [
        row("datasets", "data-dir missing", "--data-dir", "{T}/nowhere"),
        row("datasets", "data-dir is a file", "--data-dir", "{F}"),
        row("datasets", "data-dir missing with --json", "--json", "--data-dir", "{T}/nowhere"),
        row("datasets", "data-dir unreadable", "--data-dir", "{A}/private", as_user=True,
            usage=True),
        row("datasets", "unknown option", "--all", usage=True),
        row("datasets", "extra argument", "mnist", usage=True),
        row("datasets", "data-dir without a value", "--data-dir", usage=True),
    ]


def train_mnist_rows() -> list[Row]:
    base = ("--arch", "mlp", "--epochs", "1", "--limit", "32", "--quiet")
    return [
        *train_option_rows("train-mnist", MNIST),
        *dataset_rows("train-mnist", base, ()),
        row("train-mnist", "arch unknown", *MNIST, "--arch", "vit", "-o", "{OUT}"),
        row("train-mnist", "data-dir unreadable", *base, "--data-dir", "{A}/private", "-o",
            "{RO}/model", as_user=True, usage=True),
    ]


def train_cifar_rows() -> list[Row]:
    base = ("--arch", "seed", "--epochs", "1", "--limit", "32", "--quiet")
    out = ("-o", "{OUT}")
    return [
        *train_option_rows("train-cifar", CIFAR),
        row("train-cifar", "arch unknown", *CIFAR, "--arch", "vgg", *out),
        row("train-cifar", "dataset unknown", *CIFAR, "--dataset", "cifar100", *out),
        row("train-cifar", "image-size 4", *CIFAR, "--image-size", "4", *out),
        row("train-cifar", "image-size 10000", *CIFAR, "--image-size", "10000", *out),
        row("train-cifar", "label-smoothing 1", *CIFAR, "--label-smoothing", "1", *out),
        row("train-cifar", "label-smoothing negative", *CIFAR, "--label-smoothing", "-0.5",
            *out),
        row("train-cifar", "data-dir missing", *base, "--data-dir", "{T}/nowhere", *out),
        row("train-cifar", "data-dir is a file", *base, "--data-dir", "{F}", *out),
        row("train-cifar", "dataset nowhere (offline)", *base, "--data-dir", "{A}/empty", *out,
            code=1),
        row("train-cifar", "random bytes as CIFAR batches", *base, "--data-dir",
            "{A}/bad_cifar", *out, code=1),
        row("train-cifar", "truncated CIFAR pickle", *base, "--data-dir", "{A}/cut_cifar", *out,
            code=1),
        row("train-cifar", "image folder of unreadable images", *base, "--data-dir",
            "{A}/broken_images", *out),
        row("train-cifar", "image folder with one class", *base, "--data-dir",
            "{A}/one_class_images", *out),
        row("train-cifar", "image folder with empty classes", *base, "--data-dir",
            "{A}/empty_classes", *out),
        # issue 24: a class folder without a usable image is refused, not a class
        row("train-cifar", "image folder with one empty class", *base, "--data-dir",
            "{A}/one_empty_class", *out),
        row("train-cifar", "image folder with one unreadable class", *base, "--data-dir",
            "{A}/one_unreadable_class", *out),
        row("train-cifar", "output is the data-dir", *base, "--data-dir", "{A}/empty_classes",
            "-o", "{A}/empty_classes"),
        row("train-cifar", "output inside the data-dir", *base, "--data-dir",
            "{A}/empty_classes", "-o", "{A}/empty_classes/model"),
        row("train-cifar", "output holds the data-dir", *base, "--data-dir",
            "{A}/empty_classes/cats", "-o", "{A}/empty_classes"),
        row("train-cifar", "test-split 0", *CIFAR, "--test-split", "0", *out),
        row("train-cifar", "data-dir holds another dataset", *base, "--data-dir",
            "{A}/bad_gz", *out),
    ]


def train_text_rows() -> list[Row]:
    base = ("--epochs", "1", "--seq-len", "16", "--dim", "16", "--batch-size", "8", "--quiet")
    out = ("-o", "{OUT}")
    return [
        *train_option_rows("train-text", TEXT),
        row("train-text", "corpus missing", "--corpus", "{T}/nowhere.txt", *base, *out),
        row("train-text", "corpus is a folder", "--corpus", "{A}/empty", *base, *out),
        row("train-text", "corpus empty", "--corpus", "{A}/empty.txt", *base, *out),
        row("train-text", "corpus one repeated character", "--corpus", "{A}/onechar.txt", *base,
            *out),
        row("train-text", "corpus not UTF-8", "--corpus", "{A}/latin1.txt", *base, *out),
        row("train-text", "corpus binary (NUL bytes)", "--corpus", "{A}/random.bin", *base,
            *out),
        row("train-text", "corpus gzip-compressed", "--corpus", "{A}/corpus.txt.gz", *base,
            *out),
        row("train-text", "corpus on empty stdin", "--corpus", "-", *base, *out, stdin=""),
        row("train-text", "corpus non-UTF-8 stdin", "--corpus", "-", *base, *out,
            stdin=b"caf\xe9 cr\xe8me br\xfbl\xe9e " * 20),
        row("train-text", "default corpus nowhere (offline)", *base, *out, code=1),
        row("train-text", "arch unknown", *TEXT, "--arch", "mamba", *out),
        row("train-text", "seq-len 0", *TEXT, "--seq-len", "0", *out),
        row("train-text", "dim 0", *TEXT, "--dim", "0", *out),
        row("train-text", "layers 0", *TEXT, "--layers", "0", *out),
        row("train-text", "heads 0", *TEXT, "--arch", "transformer", "--heads", "0", *out),
        row("train-text", "dim not divisible by heads", *TEXT, "--arch", "transformer",
            "--heads", "3", *out),
        row("train-text", "dropout 1", *TEXT, "--dropout", "1", *out),
        row("train-text", "data-dir missing", *base, "--data-dir", "{T}/nowhere", *out),
        row("train-text", "corpus is a FIFO", "--corpus", "{A}/fifo", *base, *out),
        row("train-text", "output is the corpus", "--corpus", "{A}/corpus.txt", *base, "-o",
            "{A}/corpus.txt"),
        row("train-text", "output holds the corpus", "--corpus", "{A}/texts/food/0.txt", *base,
            "-o", "{A}/texts/food"),
        row("train-text", "weight-decay negative", *TEXT, "--weight-decay", "-1", *out),
        row("train-text", "seq-len a million", *TEXT, "--seq-len", "1000000", *out,
            usage=True),
    ]


def generate_text_rows() -> list[Row]:
    model = ("--model", "{A}/models/text")
    return [
        row("generate-text", "model missing", "--model", "{T}/nowhere"),
        row("generate-text", "model is a file", "--model", "{A}/random.bin"),
        row("generate-text", "folder without metadata.json", "--model", "{A}/nometa"),
        row("generate-text", "metadata.json corrupt", "--model", "{A}/badmeta"),
        row("generate-text", "train-mnist model", "--model", "{A}/models/mnist"),
        row("generate-text", "train-gan model", "--model", "{A}/models/gan"),
        row("generate-text", "model.keras corrupt", "--model", "{A}/broken/text"),
        row("generate-text", "length 0", *model, "--length", "0"),
        row("generate-text", "length negative", *model, "--length", "-5"),
        row("generate-text", "temperature 0", *model, "--temperature", "0"),
        row("generate-text", "temperature negative", *model, "--temperature", "-1"),
        row("generate-text", "temperature nan", *model, "--temperature", "nan"),
        row("generate-text", "top-k 0", *model, "--top-k", "0"),
        row("generate-text", "num-samples 0", *model, "--num-samples", "0"),
        row("generate-text", "prompt non-UTF-8 stdin", *model, "--prompt", "-",
            stdin=b"\xff\xfe\xfd bad"),
        row("generate-text", "length not a number", *model, "--length", "long", usage=True),
        row("generate-text", "length 10**8", *model, "--length", "100000000", usage=True),
        row("generate-text", "num-samples 10**6", *model, "--num-samples", "1000000",
            usage=True),
        row("generate-text", "seed negative", *model, "--seed", "-1", usage=True),
        row("generate-text", "metadata.json not an object", "--model", "{A}/listmeta"),
        row("generate-text", "vocabulary with a repeated character", "--model",
            "{A}/edited/text_repeat"),
        row("generate-text", "vocabulary of the wrong size", "--model",
            "{A}/edited/text_short"),
        row("generate-text", "vocabulary entry not one character", "--model",
            "{A}/edited/text_word"),
    ]


def pretrained_text_rows() -> list[Row]:
    """Issue 13: pretrained keras-hub language models in generate-text and train-text, and
    `dlkit models`."""
    gpt2 = ("--model", "{A}/presets/gpt2")
    offline = (("KAGGLEHUB_CACHE", "{T}/cache"), ("DLKIT_OFFLINE", "1"))
    tune = ("--corpus", "{A}/corpus.txt", "--seq-len", "16", "--batch-size", "8", "--epochs",
            "1", "-o", "{OUT}", "--quiet")
    return [
        row("generate-text", "preset name unknown", "--model", "gpt2_bse_en"),
        row("generate-text", "preset folder of an image classifier", "--model",
            "{A}/presets/resnet"),
        row("generate-text", "preset name of an image classifier", "--model",
            "resnet_50_imagenet"),
        row("generate-text", "preset not cached, offline", "--model", "gpt2_medium_en", code=1,
            env=offline),
        row("generate-text", "kaggle handle malformed", "--model", "kaggle://keras/gpt2"),
        row("generate-text", "hf handle malformed", "--model", "hf://gpt2"),
        row("generate-text", "preset folder damaged (no weights)", "--model",
            "{A}/presets/gpt2_noweights"),
        row("generate-text", "empty prompt, model without a start token", "--model",
            "{A}/presets/gpt2_nostart"),
        row("generate-text", "prompt plus length beyond the context", *gpt2, "--prompt", "the",
            "--length", "1000"),
        row("generate-text", "preset with --backend litert", *gpt2, "--backend", "litert"),
        row("generate-text", "preset with temperature nan", *gpt2, "--temperature", "nan"),
        row("generate-text", "top-p 0", *gpt2, "--top-p", "0"),
        row("generate-text", "top-p above 1", *gpt2, "--top-p", "1.5"),
        row("generate-text", "top-p nan", "--model", "{A}/models/text", "--top-p", "nan"),
        row("generate-text", "top-p negative", "--model", "{A}/models/text", "--top-p", "-0.5"),
        row("generate-text", "sampler unknown", *gpt2, "--sampler", "beam", usage=True),
        row("train-text", "from-preset unknown", "--from-preset", "gpt2_bse_en", *tune),
        row("train-text", "from-preset image classifier", "--from-preset",
            "{A}/presets/resnet", *tune),
        row("train-text", "from-preset missing folder", "--from-preset", "{T}/nowhere/gpt2",
            *tune),
        row("train-text", "from-preset not cached, offline", "--from-preset", "gpt2_medium_en",
            *tune, code=1, env=offline),
        row("train-text", "from-preset with an empty corpus", "--from-preset",
            "{A}/presets/gpt2", "--corpus", "{A}/empty.txt", "-o", "{OUT}"),
        row("train-text", "from-preset with a binary corpus", "--from-preset",
            "{A}/presets/gpt2", "--corpus", "{A}/random.bin", "-o", "{OUT}"),
        row("train-text", "from-preset seq-len beyond the context", "--from-preset",
            "{A}/presets/gpt2", *tune, "--seq-len", "4096"),
        row("train-text", "lora 0", "--from-preset", "{A}/presets/gpt2", *tune, "--lora", "0",
            usage=True),
        row("train-text", "lora without from-preset", *TEXT, "--lora", "4", "-o", "{OUT}"),
        row("train-text", "tensorboard inside the from-preset folder", "--from-preset",
            "{A}/presets/gpt2", *tune, "--tensorboard", "{A}/presets/gpt2/logs"),
        row("train-text", "from-preset with --strategy multi-worker, no TF_CONFIG", "--from-preset",
            "{A}/presets/gpt2", *tune, "--strategy", "multi-worker"),
        row("models", "kind unknown", "--kind", "audio", usage=True),
        row("models", "unknown option", "--all", usage=True),
        *config_rows("models", (), "wrong_kind.toml"),
    ]


def pretrained_image_rows() -> list[Row]:
    """Issue 14: keras-hub image presets in classify-image and train-cifar --backbone."""
    offline = (("KAGGLEHUB_CACHE", "{T}/cache"), ("DLKIT_OFFLINE", "1"))
    photo = "{A}/images/good.png"
    tune = ("--data-dir", "{A}/image_classes", "--epochs", "2", "--batch-size", "8", "-o",
            "{OUT}", "--quiet")
    resnet = ("--backbone", "{A}/presets/resnet")
    return [
        row("classify-image", "preset name unknown", photo, "--model", "resnet_5_imagenet"),
        row("classify-image", "preset folder of a language model", photo, "--model",
            "{A}/presets/gpt2"),
        row("classify-image", "preset name of a language model", photo, "--model",
            "gpt2_base_en"),
        row("classify-image", "preset with --backend litert", photo, "--model",
            "{A}/presets/resnet", "--backend", "litert"),
        row("classify-image", "preset not cached, offline", photo, "--model",
            "resnet_18_imagenet", code=1, env=offline),
        row("train-cifar", "backbone unknown", *tune, "--backbone", "resnet_5_imagenet"),
        row("train-cifar", "backbone is a language model folder", *tune, "--backbone",
            "{A}/presets/gpt2"),
        row("train-cifar", "backbone is a language model name", *tune, "--backbone",
            "gpt2_base_en"),
        row("train-cifar", "backbone missing folder", *tune, "--backbone", "{T}/nowhere/r"),
        row("train-cifar", "backbone with --arch", *tune, *resnet, "--arch", "seed"),
        row("train-cifar", "head-epochs without backbone", *tune, "--head-epochs", "1"),
        row("train-cifar", "head-epochs not below epochs", *tune, *resnet, "--head-epochs",
            "2"),
        row("train-cifar", "head-epochs negative", *tune, *resnet, "--head-epochs", "-1",
            usage=True),
        row("train-cifar", "backbone with an empty class folder", "--data-dir",
            "{A}/one_empty_class", "--epochs", "2", "-o", "{OUT}", *resnet),
        row("train-cifar", "backbone with a one-class folder", "--data-dir",
            "{A}/one_class_images", "--epochs", "2", "-o", "{OUT}", *resnet),
        row("train-cifar", "images too small for the backbone", *tune, "--backbone",
            "{A}/presets/resnet224", "--image-size", "16"),
        row("train-cifar", "backbone with --strategy multi-worker, no TF_CONFIG", *tune, *resnet,
            "--strategy", "multi-worker"),
        row("train-cifar", "backbone not cached, offline", *tune, "--backbone",
            "resnet_18_imagenet", code=1, env=offline),
        row("train-cifar", "tensorboard inside the backbone folder", *tune, *resnet,
            "--tensorboard", "{A}/presets/resnet/logs"),
    ]


def classify_image_rows() -> list[Row]:
    model = ("--model", "{A}/models/mnist")
    good = "{A}/images/good.png"
    return [
        row("classify-image", "no paths", *model, usage=True),
        row("classify-image", "image missing", "{T}/nowhere.png", *model),
        row("classify-image", "empty folder", "{A}/empty", *model),
        row("classify-image", "folder without images", "{A}/nometa", *model),
        row("classify-image", "random bytes as PNG", "{A}/images/bad/random.png", *model),
        row("classify-image", "truncated JPEG", "{A}/images/bad/cut.jpg", *model),
        row("classify-image", "empty PNG file", "{A}/images/bad/empty.png", *model),
        row("classify-image", "text file given as image", "{A}/corpus.txt", *model),
        row("classify-image", "folder of unreadable images", "{A}/images/bad", *model,
            errors=3),
        row("classify-image", "empty stdin list", "-", *model, stdin=""),
        row("classify-image", "model missing", good, "--model", "{T}/nowhere"),
        row("classify-image", "model is a file", good, "--model", "{A}/random.bin"),
        row("classify-image", "model folder without metadata", good, "--model", "{A}/nometa"),
        row("classify-image", "metadata.json corrupt", good, "--model", "{A}/badmeta"),
        row("classify-image", "model files corrupt", good, "--model", "{A}/broken/mnist"),
        row("classify-image", "random bytes as .keras", good, "--model", "{A}/random.keras"),
        row("classify-image", "train-text model", good, "--model", "{A}/models/text"),
        row("classify-image", "train-sequence model", good, "--model", "{A}/models/seq"),
        row("classify-image", "train-text-classifier model", good, "--model",
            "{A}/models/tcls"),
        row("classify-image", "train-vae model", good, "--model", "{A}/models/vae"),
        row("classify-image", "train-gan model", good, "--model", "{A}/models/gan"),
        row("classify-image", "top-k 0", good, *model, "--top-k", "0"),
        row("classify-image", "batch-size 0", good, *model, "--batch-size", "0"),
        row("classify-image", "invert unknown", good, *model, "--invert", "maybe"),
        row("classify-image", "scale unknown", good, *model, "--scale", "percent"),
        row("classify-image", "input-size 0 0", good, *model, "--input-size", "0", "0"),
        row("classify-image", "input-size not matching", good, *model, "--input-size", "32",
            "32"),
        row("classify-image", "labels missing", good, *model, "--labels", "{T}/nowhere.txt"),
        row("classify-image", "labels wrong count", good, *model, "--labels",
            "{A}/labels3.txt"),
        row("classify-image", "labels is a folder", good, *model, "--labels", "{A}/empty"),
        row("classify-image", "csv in a missing folder", good, *model, "--csv",
            "{T}/nowhere/p.csv"),
        row("classify-image", "csv parent is a file", good, *model, "--csv", "{F}/p.csv"),
        row("classify-image", "csv in a read-only folder", good, *model, "--csv", "{RO}/p.csv",
            as_user=True),
        row("classify-image", "csv inside the model folder", good, *model, "--csv",
            "{A}/models/mnist/p.csv"),
        row("classify-image", "show in a read-only folder", good, *model, "--show",
            "{RO}/grid.png", as_user=True),
        row("classify-image", "existing csv kept when nothing classifies",
            "{A}/images/bad/random.png", *model, "--csv", "{T}/p.csv", existing="{T}/p.csv"),
        row("classify-image", "a 20000x20000 PNG", "{A}/images/huge.png", *model),
        row("classify-image", "a FIFO given as image", "{A}/fifo", *model),
        row("classify-image", "labels is a FIFO", good, *model, "--labels", "{A}/fifo"),
        row("classify-image", "show not a .png", good, *model, "--show", "{T}/grid.jpg"),
        row("classify-image", "csv is a folder", good, *model, "--csv", "{A}/empty"),
        row("classify-image", "csv inside another model folder", good, *model, "--csv",
            "{A}/models/text/p.csv"),
        row("classify-image", "metadata.json not an object", good, "--model", "{A}/listmeta"),
        row("classify-image", "top-k 10**6", good, *model, "--top-k", "1000000", usage=True),
        # issue 24: an output is never one of the inputs nor inside an input folder
        row("classify-image", "show is the input image", good, *model, "--show", good),
        row("classify-image", "csv is the input image", good, *model, "--csv", good),
        row("classify-image", "csv is an input through a link", good, *model, "--csv",
            "{A}/images/../images/good.png"),
        row("classify-image", "show inside the input folder", "{A}/image_classes", *model,
            "--show", "{A}/image_classes/grid.png"),
        row("classify-image", "csv is an image listed on stdin", "-", *model, "--csv", good,
            stdin="{A}/images/good.png\n"),
        row("classify-image", "show inside a folder listed on stdin", "-", *model, "--show",
            "{A}/image_classes/0/grid.png", stdin="\n{A}/image_classes\n"),
        row("classify-image", "csv is the labels file", good, *model, "--labels",
            "{A}/labels10.txt", "--csv", "{A}/labels10.txt"),
    ]


def train_vae_rows() -> list[Row]:
    base = ("--arch", "dense", "--latent-dim", "3", "--epochs", "1", "--limit", "32", "--quiet")
    return [
        *train_option_rows("train-vae", VAE),
        *dataset_rows("train-vae", base, ("--dataset", "mnist")),
        row("train-vae", "arch unknown", *VAE, "--arch", "flow", "-o", "{OUT}"),
        row("train-vae", "latent-dim 0", *VAE, "--latent-dim", "0", "-o", "{OUT}"),
        row("train-vae", "latent-dim 100000", *VAE, "--latent-dim", "100000", "-o", "{OUT}"),
        row("train-vae", "cifar10 is not offered", *VAE, "--dataset", "cifar10", "-o", "{OUT}"),
    ]


def sample_vae_rows() -> list[Row]:
    model = ("--model", "{A}/models/vae")
    out = ("--out", "{T}/grid.png")
    return [
        row("sample-vae", "count 0", *model, "--count", "0", *out),
        row("sample-vae", "count negative", *model, "--count", "-4", *out),
        row("sample-vae", "columns negative", *model, "--columns", "-1", *out),
        row("sample-vae", "model missing", "--model", "{T}/nowhere", *out),
        row("sample-vae", "model is a file", "--model", "{A}/random.bin", *out),
        row("sample-vae", "folder without metadata.json", "--model", "{A}/nometa", *out),
        row("sample-vae", "train-mnist model", "--model", "{A}/models/mnist", *out),
        row("sample-vae", "train-gan model", "--model", "{A}/models/gan", *out),
        row("sample-vae", "model.keras corrupt", "--model", "{A}/broken/vae", *out),
        row("sample-vae", "out not a .png", *model, "--out", "{T}/grid.jpg"),
        row("sample-vae", "out in a missing folder", *model, "--out", "{T}/nowhere/grid.png"),
        row("sample-vae", "out parent is a file", *model, "--out", "{F}/grid.png"),
        row("sample-vae", "out is a folder", *model, "--out", "{A}/empty"),
        row("sample-vae", "out in a read-only folder", *model, "--out", "{RO}/grid.png",
            as_user=True),
        row("sample-vae", "existing grid kept on a bad model", "--model", "{A}/models/text",
            *out, existing="{T}/grid.png"),
        row("sample-vae", "count 100000", *model, "--count", "100000", *out, usage=True),
        row("sample-vae", "out inside the model folder", *model, "--out",
            "{A}/models/vae/grid.png"),
        row("sample-vae", "metadata.json not an object", "--model", "{A}/listmeta", *out),
        row("sample-vae", "seed negative", *model, "--seed", "-1", *out, usage=True),
    ]


def train_sequence_rows() -> list[Row]:
    opts = ("--window", "4", "--units", "4", "--epochs", "1", "--quiet", "-o", "{OUT}")
    col = ("--column", "value")
    return [
        *train_option_rows("train-sequence", SEQ),
        row("train-sequence", "csv missing", "--csv", "{T}/nowhere.csv", *col, *opts),
        row("train-sequence", "csv is a folder", "--csv", "{A}/empty", *col, *opts),
        row("train-sequence", "csv empty", "--csv", "{A}/empty.txt", *col, *opts),
        row("train-sequence", "csv header only", "--csv", "{A}/header.csv", *col, *opts),
        row("train-sequence", "csv without the column", "--csv", "{A}/series.csv", "--column",
            "price", *opts),
        row("train-sequence", "csv non-numeric value", "--csv", "{A}/nonnumeric.csv", *col,
            *opts),
        row("train-sequence", "csv missing value (nan)", "--csv", "{A}/nan.csv", *col, *opts),
        row("train-sequence", "csv not UTF-8", "--csv", "{A}/latin1.csv", *col, *opts),
        row("train-sequence", "csv random bytes", "--csv", "{A}/random.bin", *col, *opts),
        row("train-sequence", "series too short", "--csv", "{A}/short.csv", *col, *opts),
        row("train-sequence", "empty stdin", "--csv", "-", *col, *opts, stdin=""),
        row("train-sequence", "time-column missing", *SEQ, "--time-column", "when", "-o",
            "{OUT}"),
        row("train-sequence", "column missing option", "--csv", "{A}/series.csv", "-o", "{OUT}",
            usage=True),
        row("train-sequence", "arch unknown", *SEQ, "--arch", "tcn", "-o", "{OUT}"),
        row("train-sequence", "window 0", *SEQ, "--window", "0", "-o", "{OUT}"),
        row("train-sequence", "horizon 0", *SEQ, "--horizon", "0", "-o", "{OUT}"),
        row("train-sequence", "units 0", *SEQ, "--units", "0", "-o", "{OUT}"),
        row("train-sequence", "test-split 0", *SEQ, "--test-split", "0", "-o", "{OUT}"),
        row("train-sequence", "test-split 0.95", *SEQ, "--test-split", "0.95", "-o", "{OUT}"),
        row("train-sequence", "period 0", *SEQ, "--period", "0", "-o", "{OUT}"),
        row("train-sequence", "members 0", *SEQ, "--members", "0", "-o", "{OUT}"),
        row("train-sequence", "members 1000", *SEQ, "--members", "1000", "-o", "{OUT}"),
        row("train-sequence", "ar-order negative", *SEQ, "--ar-order", "-1", "-o", "{OUT}"),
        row("train-sequence", "ar-order not a number", *SEQ, "--ar-order", "nine", "-o",
            "{OUT}"),
        row("train-sequence", "ar-order longer than the window", *SEQ, "--ar-order", "5", "-o",
            "{OUT}"),
        row("train-sequence", "transform unknown", *SEQ, "--transform", "cube", "-o", "{OUT}"),
        row("train-sequence", "window longer than the series", *SEQ, "--window", "5000", "-o",
            "{OUT}"),
        row("train-sequence", "csv is a FIFO", "--csv", "{A}/fifo", *col, *opts),
        row("train-sequence", "output holds the csv", *SEQ, "-o", "{A}"),
    ]


def forecast_rows() -> list[Row]:
    model = ("--model", "{A}/models/seq")
    csv_ok = ("--csv", "{A}/series.csv")
    return [
        row("forecast", "model missing", "--model", "{T}/nowhere", *csv_ok),
        row("forecast", "model is a file", "--model", "{A}/random.bin", *csv_ok),
        row("forecast", "folder without metadata.json", "--model", "{A}/nometa", *csv_ok),
        row("forecast", "metadata.json corrupt", "--model", "{A}/badmeta", *csv_ok),
        row("forecast", "train-text model", "--model", "{A}/models/text", *csv_ok),
        row("forecast", "train-mnist model", "--model", "{A}/models/mnist", *csv_ok),
        row("forecast", "model.keras corrupt", "--model", "{A}/broken/seq", *csv_ok),
        row("forecast", "csv missing", *model, "--csv", "{T}/nowhere.csv"),
        row("forecast", "csv is a folder", *model, "--csv", "{A}/empty"),
        row("forecast", "csv empty", *model, "--csv", "{A}/empty.txt"),
        row("forecast", "csv without the column", *model, "--csv", "{A}/nocolumn.csv"),
        row("forecast", "csv non-numeric value", *model, "--csv", "{A}/nonnumeric.csv"),
        row("forecast", "csv not UTF-8", *model, "--csv", "{A}/latin1.csv"),
        row("forecast", "fewer values than the window", *model, "--csv", "{A}/tiny.csv"),
        row("forecast", "empty stdin", *model, "--csv", "-", stdin=""),
        row("forecast", "steps 0", *model, *csv_ok, "--steps", "0"),
        row("forecast", "steps negative", *model, *csv_ok, "--steps", "-2"),
        row("forecast", "csv option missing", *model, usage=True),
        row("forecast", "steps 10**6", *model, *csv_ok, "--steps", "1000000", usage=True),
        row("forecast", "csv is a FIFO", *model, "--csv", "{A}/fifo"),
        row("forecast", "metadata.json not an object", "--model", "{A}/listmeta", *csv_ok),
    ]


def train_text_classifier_rows() -> list[Row]:
    opts = ("--epochs", "1", "--seq-len", "8", "--vocab-size", "50", "--quiet", "-o", "{OUT}")
    cmd = "train-text-classifier"
    return [
        *train_option_rows(cmd, TCLS),
        row(cmd, "neither data-dir nor csv", *opts),
        row(cmd, "both data-dir and csv", *TCLS, "--csv", "{A}/labelled.csv", "-o", "{OUT}"),
        row(cmd, "data-dir missing", "--data-dir", "{T}/nowhere", *opts),
        row(cmd, "data-dir is a file", "--data-dir", "{F}", *opts),
        row(cmd, "data-dir empty", "--data-dir", "{A}/empty", *opts),
        row(cmd, "data-dir without class folders", "--data-dir", "{A}/texts_flat", *opts),
        row(cmd, "class folder without .txt", "--data-dir", "{A}/texts_notxt", *opts),
        row(cmd, "single class", "--data-dir", "{A}/texts_one", *opts),
        row(cmd, "text file not UTF-8", "--data-dir", "{A}/texts_latin1", *opts),
        row(cmd, "csv missing", "--csv", "{T}/nowhere.csv", *opts),
        row(cmd, "csv is a folder", "--csv", "{A}/empty", *opts),
        row(cmd, "csv empty", "--csv", "{A}/empty.txt", *opts),
        row(cmd, "csv without the text column", "--csv", "{A}/labelled.csv", "--text-column",
            "review", *opts),
        row(cmd, "csv without the label column", "--csv", "{A}/labelled.csv",
            "--label-column", "stars", *opts),
        row(cmd, "csv rows all empty", "--csv", "{A}/labelled_blank.csv", *opts),
        row(cmd, "csv not UTF-8", "--csv", "{A}/latin1.csv", *opts),
        row(cmd, "arch unknown", *TCLS, "--arch", "cnn", "-o", "{OUT}"),
        row(cmd, "vocab-size 2", *TCLS, "--vocab-size", "2", "-o", "{OUT}"),
        row(cmd, "seq-len 0", *TCLS, "--seq-len", "0", "-o", "{OUT}"),
        row(cmd, "output is the data-dir", *TCLS, "-o", "{A}/texts"),
        row(cmd, "text file is a FIFO", "--data-dir", "{A}/texts_fifo", *opts),
    ]


def classify_text_rows() -> list[Row]:
    model = ("--model", "{A}/models/tcls")
    return [
        row("classify-text", "no texts", *model, usage=True),
        row("classify-text", "empty stdin", "-", *model, stdin=""),
        row("classify-text", "non-UTF-8 stdin", "-", *model, stdin=b"caf\xe9 \xff\n"),
        row("classify-text", "model missing", "hello", "--model", "{T}/nowhere"),
        row("classify-text", "model is a file", "hello", "--model", "{A}/random.bin"),
        row("classify-text", "folder without metadata.json", "hello", "--model", "{A}/nometa"),
        row("classify-text", "metadata.json corrupt", "hello", "--model", "{A}/badmeta"),
        row("classify-text", "train-mnist model", "hello", "--model", "{A}/models/mnist"),
        row("classify-text", "train-text model", "hello", "--model", "{A}/models/text"),
        row("classify-text", "model.keras corrupt", "hello", "--model", "{A}/broken/tcls"),
        row("classify-text", "top-k 0", "hello", *model, "--top-k", "0"),
        row("classify-text", "top-k not a number", "hello", *model, "--top-k", "all",
            usage=True),
        row("classify-text", "metadata.json not an object", "hello", "--model",
            "{A}/listmeta"),
    ]


def train_gan_rows() -> list[Row]:
    base = ("--epochs", "1", "--limit", "32", "--latent-dim", "4", "--width", "4",
            "--batch-size", "16", "--quiet")
    out = ("-o", "{OUT}")
    return [
        *train_option_rows("train-gan", GAN),
        *dataset_rows("train-gan", base, ("--dataset", "mnist")),
        row("train-gan", "latent-dim 0", *GAN, "--latent-dim", "0", *out),
        row("train-gan", "width 2", *GAN, "--width", "2", *out),
        row("train-gan", "width 100000", *GAN, "--width", "100000", *out),
        row("train-gan", "random bytes as CIFAR batches", *base, "--dataset", "cifar10",
            "--data-dir", "{A}/bad_cifar", *out, code=1),
    ]


def sample_gan_rows() -> list[Row]:
    model = ("--model", "{A}/models/gan")
    out = ("--out", "{T}/grid.png")
    return [
        row("sample-gan", "count 0", *model, "--count", "0", *out),
        row("sample-gan", "count negative", *model, "--count", "-1", *out),
        row("sample-gan", "truncation 0", *model, "--truncation", "0", *out),
        row("sample-gan", "truncation 100", *model, "--truncation", "100", *out),
        row("sample-gan", "out not a .png", *model, "--out", "{T}/grid.jpg"),
        row("sample-gan", "label out of range", *model, "--label", "99", *out),
        row("sample-gan", "label negative", *model, "--label", "-1", *out),
        row("sample-gan", "model missing", "--model", "{T}/nowhere", *out),
        row("sample-gan", "model is a file", "--model", "{A}/random.bin", *out),
        row("sample-gan", "folder without metadata.json", "--model", "{A}/nometa", *out),
        row("sample-gan", "metadata.json corrupt", "--model", "{A}/badmeta", *out),
        row("sample-gan", "train-text model", "--model", "{A}/models/text", *out),
        row("sample-gan", "train-vae model", "--model", "{A}/models/vae", *out),
        row("sample-gan", "model.keras corrupt", "--model", "{A}/broken/gan", *out),
        row("sample-gan", "out parent is a file", *model, "--out", "{F}/grid.png"),
        row("sample-gan", "out is a folder", *model, "--out", "{T}/folder.png"),
        row("sample-gan", "out in a read-only folder", *model, "--out", "{RO}/grid.png",
            as_user=True),
        row("sample-gan", "out-dir is a file", *model, "--out-dir", "{F}"),
        row("sample-gan", "out-dir in a read-only folder", *model, "--out-dir", "{RO}/each",
            as_user=True),
        row("sample-gan", "grid not half-written when out-dir fails", *model, *out,
            "--out-dir", "{F}/each"),
        row("sample-gan", "existing grid kept on a bad label", *model, "--label", "99", *out,
            existing="{T}/grid.png"),
        row("sample-gan", "count 2 million", *model, "--count", "2000000", *out, usage=True),
        row("sample-gan", "grid of 20000 images", *model, "--count", "20000", *out),
        row("sample-gan", "seed negative", *model, "--seed", "-1", *out, usage=True),
        row("sample-gan", "out inside the model folder", *model, "--out",
            "{A}/models/gan/grid.png"),
        row("sample-gan", "out-dir is the model folder", *model, "--out-dir", "{A}/models/gan"),
        row("sample-gan", "metadata.json not an object", "--model", "{A}/listmeta", *out),
    ]


def evaluate_gan_rows() -> list[Row]:
    model = ("--model", "{A}/models/gan")
    cls = ("--classifier", "{A}/models/mnist")
    return [
        row("evaluate-gan", "count 0", *model, *cls, "--count", "0"),
        row("evaluate-gan", "threshold 0", *model, *cls, "--threshold", "0"),
        row("evaluate-gan", "threshold 1.5", *model, *cls, "--threshold", "1.5"),
        row("evaluate-gan", "truncation negative", *model, *cls, "--truncation", "-1"),
        row("evaluate-gan", "train-count 50", *model, *cls, "--recall", "--train-count", "50"),
        row("evaluate-gan", "train-count not a number", *model, *cls, "--train-count", "many"),
        row("evaluate-gan", "recall without the real data", *model, *cls, "--recall",
            "--data-dir", "{A}/empty", code=1),
        row("evaluate-gan", "model missing", "--model", "{T}/nowhere", *cls),
        row("evaluate-gan", "model is the classifier", "--model", "{A}/models/mnist", *cls),
        row("evaluate-gan", "model.keras corrupt", "--model", "{A}/broken/gan", *cls),
        row("evaluate-gan", "classifier missing", *model, "--classifier", "{T}/nowhere"),
        row("evaluate-gan", "classifier is a file", *model, "--classifier", "{A}/random.bin"),
        row("evaluate-gan", "classifier without metadata", *model, "--classifier",
            "{A}/nometa"),
        row("evaluate-gan", "classifier is the GAN", *model, "--classifier", "{A}/models/gan"),
        row("evaluate-gan", "classifier is a train-text model", *model, "--classifier",
            "{A}/models/text"),
        row("evaluate-gan", "classifier for other images", *model, "--classifier",
            "{A}/models/cifar_like"),
        row("evaluate-gan", "classifier model.keras corrupt", *model, "--classifier",
            "{A}/broken/mnist"),
        row("evaluate-gan", "count 2 million", *model, *cls, "--count", "2000000", usage=True),
        row("evaluate-gan", "bad option with --json", *model, *cls, "--count", "0", "--json"),
        row("evaluate-gan", "metadata.json not an object", "--model", "{A}/listmeta", *cls),
    ]


def train_flow_rows() -> list[Row]:
    base = ("--epochs", "1", "--limit", "32", "--width", "8", "--steps", "2", "--batch-size",
            "16", "--quiet")
    out = ("-o", "{OUT}")
    return [
        *train_option_rows("train-flow", FLOW),
        *dataset_rows("train-flow", base, ("--dataset", "mnist")),
        row("train-flow", "width 4", *FLOW, "--width", "4", *out, usage=True),
        row("train-flow", "width 100000", *FLOW, "--width", "100000", *out, usage=True),
        row("train-flow", "steps 0", *FLOW, "--steps", "0", *out, usage=True),
        row("train-flow", "steps negative", *FLOW, "--steps", "-5", *out, usage=True),
        row("train-flow", "steps 1001", *FLOW, "--steps", "1001", *out, usage=True),
        row("train-flow", "solver unknown", *FLOW, "--solver", "rk4", *out, usage=True),
        row("train-flow", "guidance negative", *FLOW, "--guidance", "-1", *out, usage=True),
        row("train-flow", "guidance nan", *FLOW, "--guidance", "nan", *out),
        row("train-flow", "guidance inf", *FLOW, "--guidance", "inf", *out),
        row("train-flow", "guidance 1000", *FLOW, "--guidance", "1000", *out, usage=True),
        row("train-flow", "random bytes as CIFAR batches", *base, "--dataset", "cifar10",
            "--data-dir", "{A}/bad_cifar", *out, code=1),
    ]


def sample_flow_rows() -> list[Row]:
    model = ("--model", "{A}/models/flow")
    plain = ("--model", "{A}/models/flowu")
    out = ("--out", "{T}/grid.png")
    return [
        row("sample-flow", "count 0", *model, "--count", "0", *out, usage=True),
        row("sample-flow", "count negative", *model, "--count", "-1", *out, usage=True),
        row("sample-flow", "count 2 million", *model, "--count", "2000000", *out, usage=True),
        row("sample-flow", "grid of 20000 images", *model, "--count", "20000", *out),
        row("sample-flow", "steps 0", *model, "--steps", "0", *out, usage=True),
        row("sample-flow", "steps negative", *model, "--steps", "-1", *out, usage=True),
        row("sample-flow", "steps 1001", *model, "--steps", "1001", *out, usage=True),
        row("sample-flow", "steps not a number", *model, "--steps", "many", *out, usage=True),
        row("sample-flow", "solver unknown", *model, "--solver", "rk4", *out, usage=True),
        row("sample-flow", "guidance negative", *model, "--guidance", "-0.5", *out,
            usage=True),
        row("sample-flow", "guidance nan", *model, "--guidance", "nan", *out),
        row("sample-flow", "guidance inf", *model, "--guidance", "inf", *out),
        row("sample-flow", "guidance 1000", *model, "--guidance", "1000", *out, usage=True),
        row("sample-flow", "guidance for an unconditional model", *plain, "--guidance", "2",
            *out),
        row("sample-flow", "label for an unconditional model", *plain, "--label", "1", *out),
        row("sample-flow", "label out of range", *model, "--label", "10", *out),
        row("sample-flow", "label negative", *model, "--label", "-1", *out, usage=True),
        row("sample-flow", "seed negative", *model, "--seed", "-1", *out, usage=True),
        row("sample-flow", "out not a .png", *model, "--out", "{T}/grid.jpg"),
        row("sample-flow", "model missing", "--model", "{T}/nowhere", *out),
        row("sample-flow", "model is a file", "--model", "{A}/random.bin", *out),
        row("sample-flow", "folder without metadata.json", "--model", "{A}/nometa", *out),
        row("sample-flow", "metadata.json corrupt", "--model", "{A}/badmeta", *out),
        row("sample-flow", "metadata.json not an object", "--model", "{A}/listmeta", *out),
        row("sample-flow", "metadata.json without the sampling settings", "--model",
            "{A}/edited/flow_nosampling", *out),
        row("sample-flow", "metadata.json with steps 0", "--model", "{A}/edited/flow_steps0",
            *out),
        row("sample-flow", "metadata.json with another image shape", "--model",
            "{A}/edited/flow_shape", *out),
        row("sample-flow", "a train-gan model", "--model", "{A}/models/gan", *out),
        row("sample-flow", "a train-vae model", "--model", "{A}/models/vae", *out),
        row("sample-flow", "a train-text model", "--model", "{A}/models/text", *out),
        row("sample-flow", "model.keras corrupt", "--model", "{A}/broken/flow", *out,
            "--backend", "tensorflow"),
        row("sample-flow", "model files corrupt", "--model", "{A}/broken/flow", *out),
        row("sample-flow", "out parent is a file", *model, "--out", "{F}/grid.png"),
        row("sample-flow", "out is a folder", *model, "--out", "{T}/folder.png"),
        row("sample-flow", "out in a read-only folder", *model, "--out", "{RO}/grid.png",
            as_user=True),
        row("sample-flow", "out-dir is a file", *model, "--out-dir", "{F}"),
        row("sample-flow", "out-dir in a read-only folder", *model, "--out-dir", "{RO}/each",
            as_user=True),
        row("sample-flow", "grid not half-written when out-dir fails", *model, *out,
            "--out-dir", "{F}/each"),
        row("sample-flow", "existing grid kept on a bad label", *model, "--label", "99", *out,
            existing="{T}/grid.png"),
        row("sample-flow", "out inside the model folder", *model, "--out",
            "{A}/models/flow/grid.png"),
        # the other generator commands refuse flow folders
        row("sample-gan", "a train-flow model", "--model", "{A}/models/flow", *out),
        row("sample-vae", "a train-flow model", "--model", "{A}/models/flow", *out),
        row("evaluate-gan", "truncation for a flow model", *model, "--classifier",
            "{A}/models/mnist", "--truncation", "1"),
        row("evaluate-gan", "classifier is a flow model", *model, "--classifier",
            "{A}/models/flow"),
        row("evaluate-gan", "flow model, classifier for other images", *model,
            "--classifier", "{A}/models/cifar_like"),
        row("export", "int8 for a flow model", "{A}/models/flow", "--quantize", "int8",
            "-o", "{T}/m.tflite"),
    ]


def config_rows(command: str, base: tuple[str, ...], wrong: str) -> list[Row]:
    """--config FILE.toml, which every command takes: missing, not TOML, a folder, a key the
    command does not have, a value of the wrong type (`wrong`: a file setting one of the
    command's keys to a bad type); a FIFO and /dev/zero, which were read forever (issue 24).
    Reading the file is the command's work: its failures are the command's `error:` line."""
    return [
        row(command, "config file missing", *base, "--config", "{T}/nowhere.toml"),
        row(command, "config file not TOML", *base, "--config", "{A}/bad.toml"),
        row(command, "config file is a folder", *base, "--config", "{A}/empty"),
        row(command, "config file with an unknown key", *base, "--config",
            "{A}/unknown_key.toml"),
        row(command, "config file with a wrong type", *base, "--config", f"{{A}}/{wrong}"),
        row(command, "config file is a FIFO", *base, "--config", "{A}/fifo"),
        row(command, "config file is /dev/zero", *base, "--config", "/dev/zero"),
    ]


def tools_rows() -> list[Row]:
    """Issue 16: --config on every command, --tensorboard and --class-weight on the train
    commands, and `evaluate`."""
    train = {"train-mnist": MNIST, "train-cifar": CIFAR, "train-text": TEXT, "train-vae": VAE,
             "train-sequence": SEQ, "train-text-classifier": TCLS, "train-gan": GAN,
             "train-flow": FLOW}
    rows: list[Row] = []
    for command, base in train.items():
        rows += config_rows(command, (*base, "-o", "{OUT}"), "wrong_epochs.toml")
        rows += [
            row(command, "tensorboard is a file", *base, "-o", "{OUT}", "--tensorboard", "{F}"),
            row(command, "tensorboard under a file", *base, "-o", "{OUT}",
                "--tensorboard", "{F}/logs"),
            row(command, "tensorboard inside the output", *base, "-o", "{OUT}",
                "--tensorboard", "{OUT}/logs"),
            row(command, "tensorboard inside a model folder", *base, "-o", "{OUT}",
                "--tensorboard", "{A}/models/mnist/logs"),
            # issue 24: the logs never go into, onto or around the training data
            row(command, "tensorboard holds the inputs", *base, "-o", "{OUT}",
                "--tensorboard", "{A}"),
        ]
        data_dir = base[base.index("--data-dir") + 1] if "--data-dir" in base else None
        if data_dir is not None:
            rows += [
                row(command, "tensorboard is the data-dir", *base, "-o", "{OUT}",
                    "--tensorboard", data_dir),
                row(command, "tensorboard inside the data-dir", *base, "-o", "{OUT}",
                    "--tensorboard", f"{data_dir}/logs"),
            ]
    for command in ("train-cifar", "train-text-classifier"):
        rows.append(row(command, "class-weight unknown", *train[command], "--class-weight",
                        "heavy", "-o", "{OUT}", usage=True))
    others = {"generate-text": ("--model", "{A}/models/text"),
              "classify-image": ("{A}/images/good.png", "--model", "{A}/models/mnist"),
              "sample-vae": ("--model", "{A}/models/vae", "--out", "{T}/g.png"),
              "forecast": ("--model", "{A}/models/seq", "--csv", "{A}/series.csv"),
              "classify-text": ("hello", "--model", "{A}/models/tcls"),
              "sample-gan": ("--model", "{A}/models/gan", "--out", "{T}/g.png"),
              "evaluate-gan": ("--model", "{A}/models/gan", "--classifier", "{A}/models/mnist"),
              "sample-flow": ("--model", "{A}/models/flow", "--out", "{T}/g.png"),
              "evaluate": ("{A}/image_classes", "--model", "{A}/models/mnist")}
    for command, base in others.items():
        rows += config_rows(command, base, "wrong_model.toml")
    rows += config_rows("datasets", (), "wrong_data_dir.toml")
    rows += [  # issue 24: bounded, and an empty path means nothing
        row("datasets", "config file over 1 MiB", "--config", "{A}/big.toml"),
        row("datasets", "config file nested too deeply", "--config", "{A}/deep.toml"),
        row("datasets", "config file with an empty path", "--config", "{A}/empty_path.toml"),
        row("datasets", "config file named by an empty path", "--config", "", usage=True),
        row("datasets", "data-dir empty", "--data-dir", "", usage=True),
        row("classify-image", "labels empty", "{A}/images/good.png", "--model",
            "{A}/models/mnist", "--labels", "", usage=True),
        row("export", "model folder named by an empty path", "", usage=True),
        row("export", "preset without --output", "{A}/presets/resnet"),
        row("export", "preset with a .tflite output", "{A}/presets/resnet", "-o",
            "{T}/m.tflite"),
        row("export", "preset with --quantize", "{A}/presets/resnet", "--quantize", "dynamic",
            "-o", "{OUT}"),
        row("export", "preset of a language model", "{A}/presets/gpt2", "-o", "{OUT}"),
        row("export", "preset name unknown", "resnet_18_imagenetx", "-o", "{OUT}"),
        row("export", "preset to a folder dlkit did not write", "{A}/presets/resnet", "-o",
            "{A}/nometa", existing="{A}/nometa"),
    ]
    model = ("--model", "{A}/models/mnist")
    rows += [
        row("evaluate", "no data", *model, usage=True),
        row("evaluate", "data missing", "{T}/nowhere", *model),
        row("evaluate", "data folder empty", "{A}/empty", *model),
        row("evaluate", "data folder without images", "{A}/empty_classes", *model),
        row("evaluate", "classes the model does not know", "{A}/one_class_images", *model),
        row("evaluate", "data folder with one empty class", "{A}/one_empty_class", *model),
        row("evaluate", "csv without the path column", "{A}/labelled.csv", *model),
        row("evaluate", "csv not UTF-8", "{A}/latin1.csv", *model),
        row("evaluate", "csv is a FIFO", "{A}/fifo", *model),
        row("evaluate", "only unreadable images", "{A}/broken_images", *model),
        row("evaluate", "model missing", "{A}/image_classes", "--model", "{T}/nowhere"),
        row("evaluate", "model is a file", "{A}/image_classes", "--model", "{A}/random.bin"),
        row("evaluate", "model without metadata", "{A}/image_classes", "--model",
            "{A}/nometa"),
        row("evaluate", "metadata.json not an object", "{A}/image_classes", "--model",
            "{A}/listmeta"),
        row("evaluate", "a GAN model", "{A}/image_classes", "--model", "{A}/models/gan"),
        row("evaluate", "model files corrupt", "{A}/image_classes", "--model",
            "{A}/broken/mnist"),
        row("evaluate", "top-k 0", "{A}/image_classes", *model, "--top-k", "0", usage=True),
        row("evaluate", "plots is a file", "{A}/image_classes", *model, "--plots", "{F}"),
        row("evaluate", "plots inside the model folder", "{A}/image_classes", *model,
            "--plots", "{A}/models/mnist/report"),
        row("evaluate", "plots is the data folder", "{A}/image_classes", *model, "--plots",
            "{A}/image_classes"),
        row("evaluate", "plots inside a class folder of the data", "{A}/image_classes", *model,
            "--plots", "{A}/image_classes/0"),
        row("evaluate", "texts of unknown classes", "{A}/texts_other", "--model",
            "{A}/models/tcls"),
        row("evaluate", "text csv without the text column", "{A}/labelled.csv", "--model",
            "{A}/models/tcls", "--text-column", "review"),
        row("evaluate", "series too short", "{A}/short.csv", "--model", "{A}/models/seq"),
        row("evaluate", "series without the column", "{A}/nocolumn.csv", "--model",
            "{A}/models/seq"),
    ]
    return rows


def litert_rows() -> list[Row]:
    """Issue 15: `--backend` on the serving commands, damaged or foreign .tflite files, and
    `dlkit export`."""
    serving = {"classify-image": ("{A}/images/good.png", "--model"),
               "generate-text": ("--model",), "sample-vae": ("--out", "{T}/g.png", "--model"),
               "forecast": ("--csv", "{A}/series.csv", "--model"),
               "sample-gan": ("--out", "{T}/g.png", "--model"),
               "sample-flow": ("--out", "{T}/g.png", "--model")}
    names = {"classify-image": "mnist", "generate-text": "text", "sample-vae": "vae",
             "forecast": "seq", "sample-gan": "gan", "sample-flow": "flow"}
    rows: list[Row] = []
    for command, base in serving.items():
        name = names[command]
        lite = "decoder" if name == "text" else "model"
        rows += [
            row(command, "backend unknown", *base, f"{{A}}/models/{name}", "--backend", "tpu",
                usage=True),
            row(command, "backend litert without a .tflite", *base,
                f"{{A}}/lite/no_{name}", "--backend", "litert"),
            row(command, f"{lite}.tflite truncated", *base, f"{{A}}/lite/truncated_{name}"),
            row(command, f"{lite}.tflite truncated, backend litert", *base,
                f"{{A}}/lite/truncated_{name}", "--backend", "litert"),
            row(command, f"{lite}.tflite not in metadata.json", *base,
                f"{{A}}/lite/unrecorded_{name}"),
            row(command, f"{lite}.tflite of another model", *base,
                f"{{A}}/lite/foreign_{name}"),
            row(command, f"{lite}.tflite garbage that metadata.json records", *base,
                f"{{A}}/lite/garbage_{name}"),
        ]
    rows += [
        row("classify-image", "a .tflite file that is garbage", "{A}/images/good.png",
            "--model", "{A}/random.tflite"),
        row("classify-image", "a .tflite that is a FIFO", "{A}/images/good.png", "--model",
            "{A}/pipe.tflite"),
        row("classify-image", "a GAN's model.tflite", "{A}/images/good.png", "--model",
            "{A}/models/gan/model.tflite"),
        row("classify-image", "a .tflite file with backend tensorflow", "{A}/images/good.png",
            "--model", "{A}/models/mnist/model.tflite", "--backend", "tensorflow"),
        row("classify-image", "backend litert on a .keras file", "{A}/images/good.png",
            "--model", "{A}/models/mnist/model.keras", "--backend", "litert"),
        row("evaluate", "backend unknown", "{A}/image_classes", "--model", "{A}/models/mnist",
            "--backend", "tpu", usage=True),
        row("evaluate", "backend litert without a .tflite", "{A}/image_classes", "--model",
            "{A}/lite/no_mnist", "--backend", "litert"),
        row("evaluate", "model.tflite of another model", "{A}/image_classes", "--model",
            "{A}/lite/foreign_mnist"),
    ]
    out = ("-o", "{T}/m.tflite")
    mnist = "{A}/models/mnist"
    rows += [
        row("export", "no model", usage=True),
        row("export", "model missing", "{T}/nowhere", *out),
        row("export", "model is a file", "{A}/random.bin", *out),
        row("export", "folder without metadata.json", "{A}/nometa", *out),
        row("export", "metadata.json not an object", "{A}/listmeta", *out),
        row("export", "model files corrupt", "{A}/broken/mnist", *out),
        row("export", "text classifier (reads strings)", "{A}/models/tcls", *out),
        row("export", "format unknown", mnist, "--format", "pb", *out, usage=True),
        row("export", "onnx with a .tflite output", mnist, "--format", "onnx", *out),
        row("export", "quantize unknown", mnist, "--quantize", "int4", *out, usage=True),
        row("export", "quantize without output", mnist, "--quantize", "dynamic"),
        row("export", "output not .tflite", mnist, "-o", "{T}/m.onnx"),
        row("export", "output is a folder", mnist, "-o", "{A}/empty.tflite"),
        row("export", "output folder missing", mnist, "-o", "{T}/nowhere/m.tflite"),
        row("export", "output inside the model folder", mnist, "-o",
            "{A}/models/mnist/q.tflite"),
        row("export", "output inside another model folder", mnist, "-o",
            "{A}/models/gan/q.tflite"),
        row("export", "output in a read-only folder", mnist, "-o", "{RO}/m.tflite",
            as_user=True),
        row("export", "int8 for a text model", "{A}/models/text", "--quantize", "int8", *out),
        row("export", "int8 when the training data is gone", "{A}/lite/moved_data_mnist",
            "--quantize", "int8", *out),
        row("export", "calibration-samples 0", mnist, "--calibration-samples", "0", *out,
            usage=True),
        row("export", "config file with an unknown key", mnist, "--config",
            "{A}/unknown_key.toml"),
        # issue 24: one writer per model folder; never into what it reads
        row("export", "model folder locked by another run", "{OUT}", code=1, existing="{OUT}",
            locked=True),
        row("export", "int8 output inside the calibration data", mnist, "--quantize", "int8",
            "-o", "{A}/data/m.tflite"),
    ]
    served = ("--model", "m={A}/models/mnist")
    rows += [  # every one refused before the port is bound
        row("serve", "no model", usage=True),
        row("serve", "model not NAME=FOLDER", "--model", "{A}/models/mnist"),
        row("serve", "model name with a slash", "--model", "a/b={A}/models/mnist"),
        row("serve", "one name twice", *served, *served),
        row("serve", "model missing", "--model", "m={T}/nowhere"),
        row("serve", "model is a file", "--model", "m={A}/random.bin"),
        row("serve", "folder without metadata.json", "--model", "m={A}/nometa"),
        row("serve", "metadata.json not an object", "--model", "m={A}/listmeta"),
        row("serve", "model files corrupt", "--model", "m={A}/broken/mnist"),
        row("serve", "backend litert without a .tflite", "--model", "m={A}/lite/no_mnist",
            "--backend", "litert"),
        row("serve", "backend unknown", *served, "--backend", "tpu", usage=True),
        row("serve", "port out of range", *served, "--port", "70000", usage=True),
        row("serve", "port negative", *served, "--port", "-1", usage=True),
        row("serve", "config file with an unknown key", *served, "--config",
            "{A}/unknown_key.toml"),
    ]
    return rows


def bounded_read_rows() -> list[Row]:
    """Issue 24: nothing is read without a bound. Endless stdin (each read stops at its
    documented limit), FIFOs and oversized files in a preset folder, a prompt longer than a
    pretrained model's context can hold, and sizes a model declares beyond what --input-size
    allows."""
    photo = "{A}/images/good.png"
    gpt2 = "{A}/presets/gpt2"
    tune = ("--corpus", "{A}/corpus.txt", "--seq-len", "16", "--batch-size", "8", "--epochs",
            "1", "-o", "{OUT}", "--quiet")
    images = ("--data-dir", "{A}/image_classes", "--epochs", "2", "--batch-size", "8", "-o",
              "{OUT}", "--quiet")
    return [
        row("generate-text", "prompt from an endless stdin", "--model", "{A}/models/text",
            "--prompt", "-", stdin=ENDLESS),
        row("generate-text", "preset prompt longer than its context can hold", "--model",
            gpt2, "--prompt", "-", stdin="the quick fox " * 20_000),
        row("generate-text", "preset weights file is a FIFO", "--model",
            "{A}/presets/gpt2_fifoweights"),
        row("generate-text", "preset vocabulary is a FIFO", "--model",
            "{A}/presets/gpt2_fifovocab"),
        row("generate-text", "preset vocabulary over 64 MiB", "--model",
            "{A}/presets/gpt2_bigvocab"),
        row("train-text", "corpus from an endless stdin", "--corpus", "-", "--epochs", "1",
            "-o", "{OUT}", stdin=ENDLESS),
        row("train-text", "from-preset weights file is a FIFO", "--from-preset",
            "{A}/presets/gpt2_fifoweights", *tune),
        row("classify-image", "paths from an endless stdin", "-", "--model",
            "{A}/models/mnist", stdin=ENDLESS),
        row("classify-image", "metadata declares 100000x100000 images", photo, "--model",
            "{A}/models/huge_input"),
        row("classify-image", "preset converter of 100000x100000", photo, "--model",
            "{A}/presets/resnet_huge"),
        row("classify-image", ".keras whose config.json is over 64 MiB", photo, "--model",
            "{A}/bigconfig.keras"),
        row("train-cifar", "backbone converter of 100000x100000", *images, "--backbone",
            "{A}/presets/resnet_huge"),
        row("export", "int8 with metadata declaring 100000x100000", "{A}/models/huge_input",
            "--quantize", "int8", "-o", "{T}/m.tflite"),
        row("train-sequence", "csv from an endless stdin", "--csv", "-", "--column", "value",
            "-o", "{OUT}", stdin=ENDLESS),
        row("forecast", "csv from an endless stdin", "--model", "{A}/models/seq", "--csv", "-",
            stdin=ENDLESS),
        row("classify-text", "texts from an endless stdin", "-", "--model", "{A}/models/tcls",
            stdin=ENDLESS),
    ]


def metadata_rows() -> list[Row]:
    """Issue 24: metadata.json fields in a form dlkit never writes ({A}/meta/KIND_BASE, see
    `_meta_variant`) are one line naming the field, exit 2, whichever command opens the
    folder (`class_names: []` was an IndexError in sample-gan)."""
    good = "{A}/images/good.png"
    return [
        row("sample-gan", "class_names empty", "--model", "{A}/meta/noclasses_gan", "--out",
            "{T}/g.png"),
        row("classify-image", "class_names empty", good, "--model", "{A}/meta/noclasses_mnist"),
        row("classify-image", "class_names repeated", good, "--model",
            "{A}/meta/dupclasses_mnist"),
        row("classify-image", "class_names not strings", good, "--model",
            "{A}/meta/numclasses_mnist"),
        row("classify-image", "input_shape not sizes", good, "--model",
            "{A}/meta/wordshape_mnist"),
        row("classify-image", "preprocessing not an object", good, "--model",
            "{A}/meta/listprep_mnist"),
        row("evaluate", "class_names empty", "{A}/image_classes", "--model",
            "{A}/meta/noclasses_mnist"),
        row("evaluate-gan", "classifier's class_names empty", "--model", "{A}/models/gan",
            "--classifier", "{A}/meta/noclasses_mnist"),
        row("classify-text", "class_names empty", "hello", "--model",
            "{A}/meta/noclasses_tcls"),
        row("sample-vae", "class_names empty", "--model", "{A}/meta/noclasses_vae", "--out",
            "{T}/g.png"),
        row("export", "class_names empty", "{A}/meta/noclasses_gan", "-o", "{T}/m.tflite"),
    ]


def untrusted_model_rows() -> list[Row]:
    """Issue 24: a model is untrusted input (a SavedModel whose graph writes a file, a .keras
    holding code), and metadata (metadata.json, or the entry a .tflite carries) that does not
    fit its model or is missing is one line before anything is predicted."""
    good = "{A}/images/good.png"
    tf = ("--backend", "tensorflow")
    return [
        row("classify-image", "SavedModel whose serving function writes a file", good,
            "--model", "{A}/hostile/folder_direct"),
        row("classify-image", "SavedModel writing a file in a tf.cond branch, backend "
            "tensorflow", good, "--model", "{A}/hostile/folder_cond", *tf),
        row("classify-image", "plain SavedModel writing a file while it loads", good,
            "--model", "{A}/hostile/sm_on_load", "--input-size", "28", "28"),
        row("evaluate", "SavedModel writing a file in a nested function", "{A}/image_classes",
            "--model", "{A}/hostile/folder_nested"),
        row("export", "SavedModel whose serving function writes a file",
            "{A}/hostile/folder_direct", "-o", "{T}/m.tflite"),
        row("classify-image", ".keras with a Lambda layer (Keras safe mode)", good, "--model",
            "{A}/lambda.keras"),
        row("classify-image", "metadata input_shape not the model's", good, "--model",
            "{A}/models/cifar_like"),
        row("classify-image", "metadata input_shape not the model's, backend tensorflow",
            good, "--model", "{A}/models/cifar_like", *tf),
        row("classify-image", "metadata with too few class names", good, "--model",
            "{A}/models/few_names"),
        row("classify-image", "metadata with too few class names, backend tensorflow", good,
            "--model", "{A}/models/few_names", *tf),
        row("evaluate", "metadata input_shape not the model's", "{A}/image_classes",
            "--model", "{A}/models/cifar_like"),
        row("classify-image", "a .tflite without dlkit metadata, invert auto", good,
            "--model", "{A}/tflite/bare.tflite"),
        row("classify-image", "a .tflite with damaged dlkit metadata", good, "--model",
            "{A}/tflite/damaged.tflite"),
        row("classify-image", "a .tflite whose metadata input_shape is not the model's", good,
            "--model", "{A}/tflite/cifar_like.tflite"),
        row("classify-image", "a .tflite whose metadata has too few class names", good,
            "--model", "{A}/tflite/few_names.tflite"),
        row("sample-gan", "metadata with more class names than the generator", "--model",
            "{A}/models/gan_more_names", "--out", "{T}/g.png"),
        row("sample-gan", "metadata with more class names than the generator, backend "
            "tensorflow", "--model", "{A}/models/gan_more_names", "--out", "{T}/g.png", *tf),
        row("sample-gan", "metadata image_shape not the generator's", "--model",
            "{A}/models/gan_colour", "--out", "{T}/g.png"),
    ]


ROWS: list[Row] = [
    *datasets_rows(), *train_mnist_rows(), *train_cifar_rows(), *train_text_rows(),
    *generate_text_rows(), *classify_image_rows(), *train_vae_rows(), *sample_vae_rows(),
    *train_sequence_rows(), *forecast_rows(), *train_text_classifier_rows(),
    *classify_text_rows(), *train_gan_rows(), *sample_gan_rows(), *evaluate_gan_rows(),
    *train_flow_rows(), *sample_flow_rows(),
    *tools_rows(), *litert_rows(), *pretrained_text_rows(), *pretrained_image_rows(),
    *metadata_rows(),
    *untrusted_model_rows(),
    *bounded_read_rows(),
]


def matrix_counts() -> dict[str, int]:
    """How many bad inputs the matrix tries per command (and in all, under "total")."""
    counts = dict(Counter(r.command for r in ROWS))
    counts["total"] = len(ROWS)
    return counts


# ---------------------------------------------------------------------------------------------
# Shared inputs: tiny data, broken files and model folders trained once per session



def _write_inputs(a: Path, tiny_root: Path) -> None:
    """Every data file and folder the rows point at, good and bad."""
    rng = np.random.default_rng(7)
    shutil.copytree(tiny_root, a / "data")
    for name in ("empty", "nometa", "badmeta", "ro", "private", "listmeta", "empty.tflite"):
        (a / name).mkdir()
    (a / "listmeta" / "metadata.json").write_text('["not", "an", "object"]\n')
    os.mkfifo(a / "fifo")
    os.mkfifo(a / "pipe.tflite")
    (a / "nometa" / "weights.bin").write_bytes(rng.bytes(256))
    (a / "badmeta" / "metadata.json").write_text('{"task": "train-mnist", ')
    (a / "random.bin").write_bytes(b"\x00" + rng.bytes(4095))
    (a / "random.keras").write_bytes(rng.bytes(2048))
    (a / "random.tflite").write_bytes(rng.bytes(2048))
    (a / "empty.txt").write_bytes(b"")
    (a / "corpus.txt").write_text(ENGLISH * 10, encoding="utf-8")
    (a / "corpus.txt.gz").write_bytes(gzip.compress((ENGLISH * 10).encode()))
    (a / "onechar.txt").write_text("a" * 500)
    (a / "latin1.txt").write_bytes("Crème brûlée, déjà vu, façade. ".encode("latin-1") * 20)
    (a / "labels3.txt").write_text("one\ntwo\nthree\n")
    (a / "labels10.txt").write_text("".join(f"digit {i}\n" for i in range(10)))
    (a / "bad.toml").write_text("epochs = [\n")
    (a / "unknown_key.toml").write_text("json = true\n")
    (a / "wrong_epochs.toml").write_text('epochs = "many"\n')
    (a / "wrong_model.toml").write_text("model = 3\n")
    (a / "wrong_data_dir.toml").write_text("data-dir = 3\n")
    (a / "wrong_kind.toml").write_text("kind = 3\n")
    (a / "big.toml").write_text("# padding\n" * 110_000)
    (a / "deep.toml").write_text("data-dir = " + "[" * 100_000 + "\n")
    (a / "empty_path.toml").write_text('data-dir = ""\n')
    with zipfile.ZipFile(a / "bigconfig.keras", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{" + " " * (65 << 20) + "}")  # 65 MiB, 65 KB zipped
        archive.writestr("metadata.json", "{}")
    _write_csvs(a, rng)
    _write_text_folders(a)
    _write_bad_datasets(a, tiny_root, rng)
    _write_images(a, rng)


def _write_csvs(a: Path, rng: np.random.Generator) -> None:
    t = np.arange(120)
    values = 10 + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.2, len(t))

    def table(path: Path, header: list[str], rows: list[list[object]]) -> None:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    table(a / "series.csv", ["t", "value"], [[i, f"{v:.3f}"] for i, v in enumerate(values)])
    table(a / "nocolumn.csv", ["t", "price"], [[i, f"{v:.3f}"] for i, v in enumerate(values)])
    table(a / "nonnumeric.csv", ["t", "value"],
          [[i, "n/a" if i == 50 else f"{v:.3f}"] for i, v in enumerate(values)])
    table(a / "nan.csv", ["t", "value"],
          [[i, "nan" if i == 60 else f"{v:.3f}"] for i, v in enumerate(values)])
    table(a / "short.csv", ["t", "value"], [[i, f"{values[i]:.3f}"] for i in range(6)])
    table(a / "tiny.csv", ["t", "value"], [[i, f"{values[i]:.3f}"] for i in range(2)])
    table(a / "header.csv", ["t", "value"], [])
    table(a / "labelled.csv", ["text", "label"],
          [[f"{words} {i}", topic] for i in range(10) for topic, words in TOPICS.items()])
    table(a / "labelled_blank.csv", ["text", "label"], [["", "space"], ["some text", ""]])
    (a / "latin1.csv").write_bytes("t,value,text,label\n1,2.5,caf\xe9,x\n".encode("latin-1"))


def _write_text_folders(a: Path) -> None:
    def texts(folder: Path, topics: dict[str, str], per_class: int = 8) -> None:
        for topic, words in topics.items():
            (folder / topic).mkdir(parents=True)
            for i in range(per_class):
                (folder / topic / f"{i}.txt").write_text(f"{words} {i}\n", encoding="utf-8")

    texts(a / "texts", TOPICS)
    texts(a / "texts_one", {"space": TOPICS["space"]})
    texts(a / "texts_other", {"sport": "ball goal match referee"})
    texts(a / "texts_notxt", TOPICS)
    (a / "texts_notxt" / "weather").mkdir()
    (a / "texts_notxt" / "weather" / "notes.md").write_text("rain\n")
    texts(a / "texts_latin1", TOPICS)
    texts(a / "texts_fifo", TOPICS)
    os.mkfifo(a / "texts_fifo" / "food" / "pipe.txt")
    (a / "texts_latin1" / "food" / "latin.txt").write_bytes("cr\xe8me br\xfbl\xe9e".encode(
        "latin-1"))
    (a / "texts_flat").mkdir()
    (a / "texts_flat" / "a.txt").write_text("no class folders here\n")


def _write_bad_datasets(a: Path, tiny_root: Path, rng: np.random.Generator) -> None:
    npz = (tiny_root / "mnist.npz").read_bytes()
    (a / "bad_npz").mkdir()
    (a / "bad_npz" / "mnist.npz").write_bytes(npz[: len(npz) // 2])
    (a / "random_npz").mkdir()
    (a / "random_npz" / "mnist.npz").write_bytes(rng.bytes(3000))
    for name, cut in (("bad_gz", True), ("plain_gz", False)):
        shutil.copytree(tiny_root / "fashion-mnist", a / name / "fashion-mnist")
        images = a / name / "fashion-mnist" / "train-images-idx3-ubyte.gz"
        raw = images.read_bytes()
        images.write_bytes(raw[: len(raw) // 3] if cut else gzip.decompress(raw)[:5000])
    shutil.copytree(tiny_root / "cifar-10-batches-py", a / "bad_cifar" / "cifar-10-batches-py")
    (a / "bad_cifar" / "cifar-10-batches-py" / "data_batch_1").write_bytes(rng.bytes(5000))
    shutil.copytree(tiny_root / "cifar-10-batches-py", a / "cut_cifar" / "cifar-10-batches-py")
    batch = a / "cut_cifar" / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(batch.read_bytes()[:1000])


def _write_images(a: Path, rng: np.random.Generator) -> None:
    import cv2

    images, _ = pattern_images(4, 28, 3, seed=3)
    (a / "images" / "bad").mkdir(parents=True)
    assert cv2.imwrite(str(a / "images" / "good.png"), images[0])
    ok, jpeg = cv2.imencode(".jpg", images[1])
    (a / "images" / "bad" / "cut.jpg").write_bytes(jpeg.tobytes()[:60])
    (a / "images" / "bad" / "random.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(500))
    (a / "images" / "bad" / "empty.png").write_bytes(b"")
    for k in ("cats", "dogs"):
        (a / "broken_images" / k).mkdir(parents=True)
        (a / "broken_images" / k / "x.png").write_bytes(rng.bytes(300))
        (a / "empty_classes" / k).mkdir(parents=True)
    for k in ("0", "1"):  # two classes the digit model knows, for evaluate's rows
        (a / "image_classes" / k).mkdir(parents=True)
        assert cv2.imwrite(str(a / "image_classes" / k / "x.png"), images[int(k)])
    for k in ("cats", "dogs"):  # two good classes, and a third that has no usable image
        for name in ("one_empty_class", "one_unreadable_class"):
            (a / name / k).mkdir(parents=True)
            assert cv2.imwrite(str(a / name / k / "x.png"), images[0 if k == "cats" else 1])
    (a / "one_empty_class" / "zebras").mkdir()
    (a / "one_unreadable_class" / "zebras").mkdir()
    (a / "one_unreadable_class" / "zebras" / "z.png").write_bytes(rng.bytes(300))
    (a / "one_class_images" / "cats").mkdir(parents=True)
    for i, image in enumerate(images):
        assert cv2.imwrite(str(a / "one_class_images" / "cats" / f"{i}.png"), image)
    from test_data_safety import _huge_png

    _huge_png(a / "images" / "huge.png")


# The tiny model each training command makes: the run's shared zoo models (conftest.ZOO_RECIPES,
# trained on first use, so a row that needs none of them never waits and a broken train command
# fails only its own rows), copied into {A}/models as if trained there on {A}'s own inputs.
_ZOO: list[Zoo] = []  # the session's zoo, set by the `assets` fixture


def ensure_models(a: Path, args: tuple[str, ...]) -> None:
    """Train the models `args` name ({A}/models/NAME, {A}/broken/NAME) that are not there yet.

    `broken/NAME` is a copy whose model.keras and saved_model.pb are random bytes; `cifar_like`
    and the other MISFITS are copies whose metadata does not fit their model (the mnist
    classifier's saying it takes 32x32 colour images, or 100000x100000 ones...);
    `hostile/...`, `tflite/NAME.tflite` and `lambda.keras` are built by `_hostile`,
    `_lone_tflite` and `hostile_models.lambda_keras`."""
    joined = " ".join(args)
    if re.search(r"\{A\}/(hostile|tflite)/", joined):
        ensure_models(a, ("{A}/models/mnist", "{A}/models/gan"))
    for name in set(re.findall(r"\{A\}/hostile/(\w+)", joined)):
        _hostile(a, name)
    for name in set(re.findall(r"\{A\}/tflite/(\w+)\.tflite", joined)):
        _lone_tflite(a, name)
    if "{A}/lambda.keras" in joined and not (a / "lambda.keras").exists():
        import hostile_models

        hostile_models.lambda_keras(a / "lambda.keras")
        (a / "lambda.keras").chmod(0o644)
    for variant in set(re.findall(r"\{A\}/edited/(text_\w+)", " ".join(args))):
        ensure_models(a, ("{A}/models/text",))
        _edited_text_model(a, variant)
    for variant in set(re.findall(r"\{A\}/edited/(flow_\w+)", " ".join(args))):
        ensure_models(a, ("{A}/models/flow",))
        _edited_flow_model(a, variant)
    for kind, base in set(re.findall(r"\{A\}/lite/([a-z]+(?:_data)?)_(\w+)", " ".join(args))):
        ensure_models(a, (f"{{A}}/models/{base}", "{A}/models/gan", "{A}/models/vae"))
        _lite_variant(a, kind, base)
    for kind, base in set(re.findall(r"\{A\}/meta/([a-z]+)_(\w+)", " ".join(args))):
        ensure_models(a, (f"{{A}}/models/{base}",))
        _meta_variant(a, kind, base)
    for name in set(re.findall(r"\{A\}/presets/(\w+)", " ".join(args))):
        _preset(a, name)
    names = set(re.findall(r"\{A\}/(?:models|broken)/(\w+)", " ".join(args)))
    if re.search(r"\{A\}/models(?:\s|$)", " ".join(args)):  # the models folder itself
        names.add("mnist")
    for name in sorted(names):
        base = MISFITS[name][0] if name in MISFITS else name
        model = a / "models" / base
        if not model.exists():
            _from_zoo(a, base, model)
        if name in MISFITS and not (a / "models" / name).exists():
            shutil.copytree(model, a / "models" / name)
            meta_path = a / "models" / name / "metadata.json"
            meta = json.loads(meta_path.read_text())
            meta_path.write_text(json.dumps({**meta, **MISFITS[name][1](meta)}))
        broken = a / "broken" / base
        if f"{{A}}/broken/{base}" in " ".join(args) and not broken.exists():
            shutil.copytree(model, broken)
            rng = np.random.default_rng(9)
            (broken / "model.keras").write_bytes(rng.bytes(1500))
            (broken / "saved_model" / "saved_model.pb").write_bytes(rng.bytes(700))
            for lite in broken.glob("*.tflite"):
                lite.write_bytes(rng.bytes(900))
    for path in [a / "models", a / "broken", *(a / "models").rglob("*"),
                 *(a / "broken").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the unprivileged rows


def _from_zoo(a: Path, name: str, model: Path) -> None:
    """Zoo model `name` copied to `model`; the inputs its metadata records (the zoo's data,
    corpus, series and texts, which {A} holds too) become {A}'s."""
    zoo = _ZOO[0]
    shutil.copytree(zoo(name), model)
    meta = model / "metadata.json"
    meta.write_text(meta.read_text().replace(json.dumps(str(zoo.inputs))[1:-1],
                                             json.dumps(str(a))[1:-1]))


# Model folders whose metadata.json does not fit their model: name -> (the model copied,
# what its metadata says instead).
MISFITS = {
    "cifar_like": ("mnist", lambda meta: {"input_shape": [32, 32, 3]}),
    "huge_input": ("mnist", lambda meta: {"input_shape": [100_000, 100_000, 1]}),
    "few_names": ("mnist", lambda meta: {"class_names": meta["class_names"][:7]}),
    "gan_more_names": ("gan", lambda meta: {"class_names": [*meta["class_names"], "x", "y"]}),
    "gan_colour": ("gan", lambda meta: {"image_shape": [32, 32, 3]}),
}


def _hostile(a: Path, name: str) -> None:
    """{A}/hostile/sm_WHERE: a SavedModel writing {A}/hostile/pwned from WHERE (see
    hostile_models.WRITERS); {A}/hostile/folder_WHERE: the mnist folder holding it."""
    import hostile_models

    kind, where = name.split("_", 1)
    saved = a / "hostile" / f"sm_{where}"
    if not saved.exists():
        saved.parent.mkdir(exist_ok=True)
        hostile_models.writing_saved_model(saved, a / "hostile" / "pwned", where)
    folder = a / "hostile" / f"folder_{where}"
    if kind == "folder" and not folder.exists():
        hostile_models.with_saved_model(a / "models" / "mnist", folder, saved)
    for path in [a / "hostile", *(a / "hostile").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _lone_tflite(a: Path, name: str) -> None:
    """{A}/tflite/NAME.tflite: the mnist classifier's model.tflite alone, without its dlkit
    metadata (bare), with it damaged (damaged), or with metadata that does not fit
    (a key of MISFITS)."""
    import hostile_models

    out = a / "tflite" / f"{name}.tflite"
    if out.exists():
        return
    out.parent.mkdir(exist_ok=True)
    source = a / "models" / "mnist" / "model.tflite"
    if name == "bare":
        hostile_models.without_metadata(source, out)
    elif name == "damaged":
        hostile_models.damaged_metadata(source, out)
    else:
        meta = json.loads((a / "models" / "mnist" / "metadata.json").read_text())
        hostile_models.with_metadata(source, out, **MISFITS[name][1](meta))
    for path in [a / "tflite", out]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _preset(a: Path, name: str) -> None:
    """{A}/presets/NAME: tiny keras-hub presets (gpt2, gpt2_nostart: no start token,
    gpt2_noweights: its weights file removed, gpt2_fifoweights and gpt2_fifovocab: its weights
    or vocabulary a FIFO, gpt2_bigvocab: its vocabulary 65 MiB (sparse), resnet and resnet224:
    image classifiers taking 32x32 and 224x224 images, resnet_huge: one whose converter says
    100000x100000)."""
    import hub_presets

    folder = a / "presets" / name
    if folder.exists():
        return
    folder.parent.mkdir(exist_ok=True)
    damaged = {"gpt2_noweights": "model.weights.h5", "gpt2_fifoweights": "model.weights.h5",
               "gpt2_fifovocab": "assets/tokenizer/vocabulary.json",
               "gpt2_bigvocab": "assets/tokenizer/vocabulary.json"}
    if name in damaged:
        _preset(a, "gpt2")
        shutil.copytree(a / "presets" / "gpt2", folder)
        file = folder / damaged[name]
        file.unlink()
        if "fifo" in name:
            os.mkfifo(file)
        elif name == "gpt2_bigvocab":
            with open(file, "wb") as f:
                f.truncate(65 << 20)
    elif name == "resnet_huge":
        _preset(a, "resnet")
        shutil.copytree(a / "presets" / "resnet", folder)
        for config in folder.glob("*.json"):
            text = re.sub(r'"image_size": \[\s*\d+,\s*\d+\s*\]',
                          '"image_size": [100000, 100000]', config.read_text())
            config.write_text(text)
    else:
        build = {"gpt2": hub_presets.save_gpt2_preset, "resnet": hub_presets.save_resnet_preset,
                 "resnet224": lambda f: hub_presets.save_resnet_preset(f, size=224),
                 "gpt2_nostart": hub_presets.gpt2_without_start_token}[name]
        build(folder)
    for path in [a / "presets", folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _lite_variant(a: Path, kind: str, base: str) -> None:
    """{A}/lite/KIND_BASE: a copy of models/BASE whose .tflite file is missing (no), cut in
    half (truncated), not recorded in metadata.json (unrecorded), another model's (foreign),
    random bytes that metadata.json records (garbage); or whose training data is gone
    (moved_data)."""
    import hashlib

    folder = a / "lite" / f"{kind}_{base}"
    if folder.exists():
        return
    shutil.copytree(a / "models" / base, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    lite = folder / ("decoder.tflite" if base == "text" else "model.tflite")
    if kind == "no":
        lite.unlink()
        meta.pop("litert")
        meta["files"].remove(lite.name)
    elif kind == "truncated":
        lite.write_bytes(lite.read_bytes()[: lite.stat().st_size // 2])
    elif kind == "unrecorded":
        meta.pop("litert")
    elif kind == "foreign":
        other = a / "models" / ("vae" if base == "gan" else "gan") / "model.tflite"
        shutil.copyfile(other, lite)
    elif kind == "garbage":
        lite.write_bytes(np.random.default_rng(4).bytes(2000))
        meta["litert"][lite.name]["sha256"] = hashlib.sha256(lite.read_bytes()).hexdigest()
    elif kind == "moved_data":
        meta["config"]["data-dir"] = str(a / "moved-away")
    (folder / "metadata.json").write_text(json.dumps(meta))
    for path in [a / "lite", folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _meta_variant(a: Path, kind: str, base: str) -> None:
    """{A}/meta/KIND_BASE: a copy of models/BASE whose metadata.json has a field dlkit never
    writes that way: no class names (noclasses), a name twice (dupclasses), numbers for names
    (numclasses), words for the input shape (wordshape), a list for preprocessing
    (listprep)."""
    folder = a / "meta" / f"{kind}_{base}"
    if folder.exists():
        return
    shutil.copytree(a / "models" / base, folder)
    meta = json.loads((folder / "metadata.json").read_text())
    names = meta.get("class_names") or ["a", "b"]
    meta.update({"noclasses": {"class_names": []},
                 "dupclasses": {"class_names": [names[0], *names[:-1]]},
                 "numclasses": {"class_names": list(range(len(names)))},
                 "wordshape": {"input_shape": ["big", "tall"]},
                 "listprep": {"preprocessing": ["scale"]}}[kind])
    (folder / "metadata.json").write_text(json.dumps(meta))
    for path in [a / "meta", folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _edited_text_model(a: Path, variant: str) -> None:
    """A copy of the text model whose metadata.json vocabulary was edited by hand."""
    folder = a / "edited" / variant
    if folder.exists():
        return
    shutil.copytree(a / "models" / "text", folder)
    meta = json.loads((folder / "metadata.json").read_text())
    vocab = meta["text"]["vocab"]
    vocab = {"text_repeat": [vocab[0], *vocab[:-1]], "text_short": vocab[:-1],
             "text_word": ["ab", *vocab[1:]]}[variant]
    meta["text"]["vocab"] = vocab
    (folder / "metadata.json").write_text(json.dumps(meta))
    for path in [a / "edited", folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _edited_flow_model(a: Path, variant: str) -> None:
    """A copy of the flow model whose metadata.json lost its sampling settings (nosampling),
    records 0 steps (steps0) or another image shape than its network's (shape)."""
    folder = a / "edited" / variant
    if folder.exists():
        return
    shutil.copytree(a / "models" / "flow", folder)
    meta = json.loads((folder / "metadata.json").read_text())
    if variant == "flow_nosampling":
        del meta["flow"]
    elif variant == "flow_steps0":
        meta["flow"]["steps"] = 0
    else:
        meta["image_shape"] = [32, 32, 3]
    (folder / "metadata.json").write_text(json.dumps(meta))
    for path in [a / "edited", folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(scope="session")
def assets(tiny_root: Path, zoo: Zoo) -> Iterator[Path]:
    """A world-readable folder of inputs (models are added by `ensure_models`)."""
    root = Path(tempfile.mkdtemp(prefix="dlkit-bad-input-"))
    _ZOO[:] = [zoo]
    try:
        _write_inputs(root, tiny_root)
        (root / "models").mkdir()
        (root / "broken").mkdir()
        (root / "edited").mkdir()
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / "ro").chmod(0o555)
        (root / "private").chmod(0o700)
        yield root
    finally:
        for path in (root / "ro", root / "private"):
            path.chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Running a row

def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `folder` with its mode, size and mtime (to prove nothing was written)."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        st = path.lstat()
        found[str(path.relative_to(folder))] = (stat.S_IFMT(st.st_mode), st.st_size,
                                                st.st_mtime_ns if not path.is_dir() else 0)
    return found


class _Zeros(io.RawIOBase):
    """Zero bytes without end."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        view[:] = bytes(len(view))
        return len(view)


def endless_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process runner's stdin becomes zero bytes without end (`< /dev/zero`): Typer's
    runner takes its input as str or bytes only, so its input-stream maker is swapped."""
    import typer.testing

    monkeypatch.setattr(typer.testing, "make_input_stream",
                        lambda input, charset: io.BufferedReader(_Zeros()))


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block as user `nobody` when running as root, so folder permissions count."""
    if os.geteuid() != 0:
        yield
        return
    os.setresgid(NOBODY, NOBODY, 0)
    os.setresuid(NOBODY, NOBODY, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)


def _prepare_existing(path: Path) -> None:
    if path.suffix:
        path.write_bytes(b"the previous output, which a failed run must not touch\n")
    else:
        (path / "saved_model").mkdir(parents=True)
        (path / "metadata.json").write_text('{"task": "previous run"}\n')


@contextlib.contextmanager
def held_lock(output: Path) -> Iterator[None]:
    """Hold the lock of `output` as another dlkit run writing it would."""
    fd = os.open(output.with_name(f".{output.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"4242", 0)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize("case", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(case: Row, cli, assets: Path, tmp_path: Path,
                   tmp_path_factory: pytest.TempPathFactory,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    places = {"A": str(assets), "T": str(tmp_path), "OUT": str(tmp_path / "out"),
              "F": str(tmp_path / "file.txt"), "RO": str(assets / "ro")}
    ensure_models(assets, case.args)
    (tmp_path / "file.txt").write_text("a plain file, not a folder\n")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".bashrc").write_text("# a home folder's file\n")
    if case.existing:
        _prepare_existing(Path(case.existing.format_map(places)))
    args = [a.format_map(places) for a in case.args]
    lock = held_lock(tmp_path / "out") if case.locked else contextlib.nullcontext()
    monkeypatch.chdir(tmp_path)  # relative default outputs land in the scratch folder
    # no dataset to be found; Keras writes its keras.json into KERAS_HOME when first imported
    env = {"DLKIT_DATA": "", "KERAS_HOME": str(tmp_path_factory.getbasetemp() / "keras-home"),
           **{key: value.format_map(places) for key, value in case.env}}

    stdin = case.stdin.format_map(places) if isinstance(case.stdin, str) else case.stdin
    with lock:
        before = (snapshot(tmp_path), snapshot(assets))
        with unprivileged() if case.as_user else contextlib.nullcontext():
            if case.stdin == ENDLESS:
                endless_stdin(monkeypatch)
            result = cli(*args, input=None if case.stdin == ENDLESS else stdin, env=env)
        after = (snapshot(tmp_path), snapshot(assets))

    assert result.exit_code == case.code, (args, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    if case.errors == 1:
        assert_one_error_line(result.stderr)
    else:
        lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(lines) == case.errors and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    assert after == before, "the failed run wrote files"


def test_matrix_covers_every_command() -> None:
    """Every command of the CLI has its rows (at least six), so a new command needs some."""
    from dlkit.cli import app

    commands = {command.name for command in app.registered_commands}
    counts = matrix_counts()
    assert commands <= counts.keys(), f"commands without bad-input rows: {commands - counts.keys()}"
    assert all(counts[name] >= 6 for name in commands), counts


def test_corrupt_images_leave_no_decoder_noise_on_stderr(assets: Path) -> None:
    """In a real process (OpenCV's C++ logging writes to file descriptor 2, which the in-process
    rows cannot see) a folder of corrupt images gives one `error:` line per file and the
    summary line: no "[ WARN:0@...]" or "[ERROR:0@...]" lines from the decoder."""
    ensure_models(assets, ("{A}/models/mnist",))
    result = run_dlkit("classify-image", assets / "images" / "bad", "--model",
                       assets / "models" / "mnist", env={"DLKIT_DATA": ""})
    assert result.returncode == 2 and result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert sum(line.startswith("error: ") for line in lines) == 3, result.stderr
    assert len(lines) == 4 and lines[-1].startswith("classified 0 images"), result.stderr
