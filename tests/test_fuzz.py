"""Property-based fuzzing: random bytes as image files, dataset files, text corpora and CSV files
never crash the readers (they either decode or raise the project's own error types), and a folder
of fuzzed image files never crashes `classify-image` (each file is classified or reported on its
own `error:` line; the exit code says which happened).

Fuzz examples per run: 150 each for the image, idx and CIFAR/npz readers, 300 corpora, 200 CSV
files, 300 mutated images through decoding and model preprocessing, and 4 `classify-image` runs
over folders of 50 fuzzed files (200 files): 1,450 in all (`FUZZ_EXAMPLES`)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dlkit.core.errors import DataError, DlkitError
from dlkit.data import readers
from dlkit.data.images import IMAGE_SUFFIXES, ImageError, read_image

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
PNG_HEADER = b"\x89PNG\r\n\x1a\n"
JPEG_HEADER = b"\xff\xd8\xff\xe0"


@FUZZ
@given(payload=st.binary(max_size=4096), header=st.sampled_from([b"", PNG_HEADER, JPEG_HEADER]))
def test_random_bytes_as_image(tmp_path: Path, payload: bytes, header: bytes) -> None:
    path = tmp_path / "fuzz.png"
    path.write_bytes(header + payload)
    try:
        image = read_image(path)
    except ImageError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@FUZZ
@given(payload=st.binary(max_size=2048), compress=st.booleans())
def test_random_bytes_as_idx(tmp_path: Path, payload: bytes, compress: bool) -> None:
    path = tmp_path / ("fuzz.gz" if compress else "fuzz.idx")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    try:
        readers.read_idx(path)
    except DataError:
        pass


@FUZZ
@given(payload=st.binary(max_size=2048))
def test_random_bytes_as_cifar_batch_and_npz(tmp_path: Path, payload: bytes) -> None:
    batch, npz = tmp_path / "data_batch_1", tmp_path / "mnist.npz"
    batch.write_bytes(payload)
    npz.write_bytes(payload)
    for read, path in ((readers.read_cifar_batch, batch), (readers.read_mnist_npz, npz)):
        try:
            read(path)
        except DataError:
            pass


# ---------------------------------------------------------------------------------------------
# Text corpora and CSV files

CORPUS_EXAMPLES, CSV_EXAMPLES, IMAGE_EXAMPLES = 300, 200, 300
CLI_RUNS, CLI_FILES = 4, 50
FUZZ_EXAMPLES = 3 * 150 + CORPUS_EXAMPLES + CSV_EXAMPLES + IMAGE_EXAMPLES + CLI_RUNS * CLI_FILES
SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
           HealthCheck.data_too_large]


def _mutate(data: bytes, edits: list[tuple[float, int, int]]) -> bytes:
    """Apply byte edits: (where as a fraction of the length, 0 replace / 1 insert / 2 delete /
    3 truncate, byte value)."""
    out = bytearray(data)
    for where, op, value in edits:
        i = min(int(where * len(out)), max(len(out) - 1, 0))
        if op == 0 and out:
            out[i] = value
        elif op == 1:
            out.insert(i, value)
        elif op == 2 and out:
            del out[i]
        elif op == 3:
            del out[i:]
    return bytes(out)


EDITS = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 3), st.integers(0, 255)), max_size=6)
TEXTS = st.text(st.characters(codec="utf-8"), max_size=400)


@st.composite
def corpus_bytes(draw: Any) -> bytes:
    """Random bytes, valid UTF-8 text (with a BOM and CRLF line ends at times), or mutated text."""
    kind = draw(st.sampled_from(["bytes", "text", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=2048))
    text = draw(TEXTS)
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    raw = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8")
    return _mutate(raw, draw(EDITS)) if kind == "mutated" else raw


@settings(max_examples=CORPUS_EXAMPLES, deadline=None, suppress_health_check=SLOW_OK)
@given(raw=corpus_bytes(), limit=st.none() | st.integers(1, 3000))
def test_random_bytes_as_corpus(tmp_path: Path, raw: bytes, limit: int | None) -> None:
    """A corpus file reads as text with a vocabulary that encodes it, or is a one-line exit-2
    error; never any other exception."""
    from dlkit.data.text import read_corpus

    path = tmp_path / "corpus.txt"
    path.write_bytes(raw)
    try:
        corpus = read_corpus(path, limit=limit)
    except DlkitError as exc:
        assert exc.code == 2 and "\n" not in exc.message, exc.message
        event("rejected")
        return
    event("read")
    assert len(corpus.vocab) >= 2 and corpus.vocab == sorted(set(corpus.text))
    assert limit is None or len(corpus.text) <= limit
    ids = corpus.encode(corpus.text)
    assert len(ids) == len(corpus.text) and 0 <= ids.min() and ids.max() < len(corpus.vocab)
    assert "".join(corpus.vocab[i] for i in ids) == corpus.text


@st.composite
def csv_bytes(draw: Any) -> bytes:
    """Random bytes, or a header and rows of random cells (quotes, commas, numbers, blanks)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=1024))
    cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), TEXTS,
                     st.sampled_from(["", '"', '""', ",", "\n", "1e400", "-0", "nan"]))
    header = draw(st.sampled_from(["t,value,text,label", "value", "text,label", "x,y"]))
    rows = draw(st.lists(st.lists(cell, max_size=5), max_size=12))
    text = header + "\n" + "\n".join(",".join(r) for r in rows)
    return _mutate(text.encode("utf-8"), draw(EDITS))


@settings(max_examples=CSV_EXAMPLES, deadline=None, suppress_health_check=SLOW_OK)
@given(raw=csv_bytes())
def test_random_bytes_as_csv(tmp_path: Path, raw: bytes) -> None:
    """The CSV readers of train-sequence/forecast and train-text-classifier give finite numbers
    or labelled texts, or a one-line exit-2 error."""
    from dlkit.data.tabular import read_labelled_text, read_series

    path = tmp_path / "data.csv"
    path.write_bytes(raw)
    try:
        series = read_series(path, "value")
        assert series.values.dtype == np.float64 and np.isfinite(series.values).all()
    except DlkitError as exc:
        assert exc.code == 2 and "\n" not in exc.message, exc.message
    try:
        texts, labels = read_labelled_text(path, "text", "label")
        assert len(texts) == len(labels) > 0 and all(t and k for t, k in zip(texts, labels,
                                                                              strict=True))
    except DlkitError as exc:
        assert exc.code == 2 and "\n" not in exc.message, exc.message


# ---------------------------------------------------------------------------------------------
# Mutated image files: decoding, model preprocessing and the whole classify-image command

@st.composite
def image_spec(draw: Any) -> tuple[str, int, tuple[Any, ...], list[tuple[float, int, int]]]:
    """What a fuzzed image file is made of: a kind, a seed, a shape/format and byte edits.

    Small to draw (hypothesis shrinks it well); `image_file_bytes` turns it into the file."""
    kind = draw(st.sampled_from(["random", "image", "mutated"]))
    shape = (draw(st.integers(1, 48)), draw(st.integers(1, 48)),
             draw(st.sampled_from([1, 3, 4])), draw(st.sampled_from([8, 16])),
             draw(st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".webp"])))
    return kind, draw(st.integers(0, 2**32 - 1)), shape, draw(EDITS) if kind == "mutated" else []


def image_file_bytes(spec: tuple[str, int, tuple[Any, ...], list]) -> tuple[str, bytes]:
    """The (suffix, bytes) of a fuzzed image file: random bytes or an encoded picture (valid or
    with its bytes edited)."""
    import cv2

    kind, seed, (height, width, channels, depth, suffix), edits = spec
    rng = np.random.default_rng(seed)
    if kind == "random":
        return suffix, rng.bytes(int(rng.integers(0, 3000)))
    if suffix in (".jpg", ".webp", ".bmp"):  # 8-bit only (and no alpha in JPEG)
        depth, channels = 8, min(channels, 3 if suffix == ".jpg" else channels)
    dtype = np.uint16 if depth == 16 else np.uint8
    image = rng.integers(0, np.iinfo(dtype).max, (height, width, channels), endpoint=True)
    image[height // 3: 2 * height // 3 + 1, width // 3: 2 * width // 3 + 1] = 0  # some structure
    ok, encoded = cv2.imencode(suffix, image.astype(dtype))
    assert ok
    return suffix, _mutate(encoded.tobytes(), edits)


@settings(max_examples=IMAGE_EXAMPLES, deadline=None, suppress_health_check=SLOW_OK)
@given(spec=image_spec(), channels=st.sampled_from([1, 3]),
       invert=st.sampled_from(["auto", "yes", "no"]), center=st.booleans(),
       size=st.sampled_from([(28, 28), (32, 32), (5, 40)]))
def test_mutated_image_decodes_and_prepares(tmp_path: Path, spec: Any, channels: int,
                                            invert: str, center: bool,
                                            size: tuple[int, int]) -> None:
    """Any file decodes to RGB uint8 or raises ImageError, and any decoded picture (1x1 pixel
    or 16-bit included) becomes exactly the model's input shape in every preprocessing mode."""
    from dlkit.data.image_batches import Preprocess, prepare

    suffix, data = image_file_bytes(spec)
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except ImageError:
        event(f"{spec[0]}: unreadable")
        return
    event(f"{spec[0]}: decoded")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    prep = Preprocess(size=size, channels=channels, invert=invert, center_digit=center)
    ready = prepare(image, prep)
    assert ready.dtype == np.uint8 and ready.shape == (*size, channels)


@pytest.fixture(scope="module")
def digit_model(zoo) -> Path:
    """A tiny digit classifier (its preprocessing inverts and centres dark-on-light photos)."""
    return zoo("mnist")


@settings(max_examples=CLI_RUNS, deadline=None, suppress_health_check=SLOW_OK)
@given(specs=st.lists(image_spec(), min_size=CLI_FILES, max_size=CLI_FILES))
def test_classify_image_survives_a_folder_of_fuzzed_files(
        cli, digit_model: Path, tmp_path_factory: pytest.TempPathFactory, specs: list) -> None:
    """One classify-image run over 50 fuzzed files: every file is classified (one stdout line)
    or reported (one `error:` line), no traceback, and the exit code is 0 (all classified), 1
    (some failed) or 2 (none could be read)."""
    folder = tmp_path_factory.mktemp("fuzz-images")
    for i, spec in enumerate(specs):
        suffix, data = image_file_bytes(spec)
        if suffix not in IMAGE_SUFFIXES:
            suffix = ".png"
        (folder / f"{i:02d}{suffix}").write_bytes(data)
    result = cli("classify-image", folder, "--model", digit_model, "--batch-size", "16")
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    predictions = result.stdout.splitlines()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(predictions) + len(errors) == CLI_FILES, result.stderr
    expected = 2 if not predictions else 1 if errors else 0
    event(f"{len(predictions)} classified, {len(errors)} reported")
    assert result.exit_code == expected, result.stderr
    for line in predictions:
        path, label, confidence = line.split("\t")
        assert Path(path).parent == folder and 0.0 <= float(confidence) <= 1.0
