"""Property-based fuzzing: random bytes as image files and as dataset files never crash the
readers; they either decode or raise the project's own error types."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlkit.data import readers
from dlkit.data.images import ImageError, read_image
from dlkit.errors import DataError

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
