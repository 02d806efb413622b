"""Image files to model-ready batches: which files to read, how to prepare each, a tf.data pipeline.

`collect_inputs` turns command-line arguments (files, folders searched recursively, `-` for paths
on stdin) into a list of image paths plus the arguments that could not be used. `prepare` turns a
decoded RGB image into what a model takes (grey or RGB, inverted and centred for digit models,
resized). `image_batches` decodes the files in parallel inside a `tf.data` pipeline, drops the
unreadable ones (reporting each through a callback), batches and prefetches; `numpy_batches`
does the same with a thread pool, for the LiteRT path that never imports TensorFlow, and for
models that resize images themselves (a keras-hub preset's image converter): with no size to
prepare to, each batch holds images of one size.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.data.images import (
    IMAGE_SUFFIXES,
    ImageError,
    decode_image,
    find_images,
    read_image,
    resize,
)

INVERT_CHOICES = ("auto", "yes", "no")
BATCH_VALUES = 1 << 25  # pixel values in one batch of images at their own size (128 MB)
# Model input scaling: pixel * factor + offset, applied in the graph after batching.
SCALES = {"raw": (1.0, 0.0), "unit": (1.0 / 255.0, 0.0), "signed": (1.0 / 127.5, -1.0)}


@dataclass(frozen=True)
class Preprocess:
    """How one decoded image becomes a model input."""

    size: tuple[int, int] | None  # (height, width); None: each image keeps its own size
    channels: int = 3  # 1: greyscale, 3: RGB
    invert: str = "no"  # "auto": invert dark-on-light images; "yes"/"no": always/never
    center_digit: bool = False  # MNIST's normalisation for inverted digit photos
    scale: str = "raw"  # a key of SCALES


@dataclass
class Inputs:
    """The image paths to classify (in order) and the arguments that gave nothing usable."""

    paths: list[str]
    errors: list[tuple[str, str]]


def collect_inputs(args: Iterable[str], read_stdin: Callable[[], Iterable[str]]) -> Inputs:
    """Expand files, folders (recursively) and `-` (one path per line on stdin)."""
    paths: list[str] = []
    errors: list[tuple[str, str]] = []
    for arg in args:
        if arg == "-":
            lines = (line.rstrip("\r\n") for line in read_stdin())
            for line in lines:
                if line.strip():
                    _add_path(line.strip(), paths, errors)
        else:
            _add_path(arg, paths, errors)
    return Inputs(paths, errors)


def stdin_paths() -> list[str]:
    """The paths on stdin, one per line, as file names (any bytes a name may hold); at most
    LINES_LIMIT bytes of them (exit 2 beyond: `find / | dlkit classify-image -` is a folder
    argument's job)."""
    from dlkit.core.files import LINES_LIMIT, read_stdin

    raw = read_stdin("the list of image paths", LINES_LIMIT,
                     "pass folders instead, or classify the list in parts")
    return [os.fsdecode(line) for line in raw.splitlines()]


def _add_path(arg: str, paths: list[str], errors: list[tuple[str, str]]) -> None:
    path = Path(arg).expanduser()
    if path.is_dir():
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            errors.append((arg, f"cannot read folder ({exc.strerror or exc})"))
            return
        found = find_images(path)
        if not found:
            kinds = ", ".join(s.lstrip(".") for s in IMAGE_SUFFIXES)
            errors.append((arg, f"no image files ({kinds}) in this folder"))
        paths.extend(str(p) for p in found)
    elif path.exists():
        paths.append(arg)  # any file given by name is tried, whatever its suffix
    else:
        errors.append((arg, "no such file or folder"))


def prepare(image: np.ndarray, prep: Preprocess) -> np.ndarray:
    """An (H, W, 3) RGB uint8 image to the model's (height, width, channels) uint8 input."""
    import cv2

    if prep.channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if _should_invert(image, prep.invert):
        if image.ndim == 3:
            image = 255 - image
        else:
            image = ink_to_light_on_dark(image, max(224, 2 * max(prep.size or image.shape[:2])))
            if prep.center_digit and prep.size is not None:
                return center_digit(image, prep.size)[..., None]
    out = image if prep.size is None else resize(image, prep.size)
    return out if out.ndim == 3 else out[..., None]


def _should_invert(image: np.ndarray, mode: str) -> bool:
    if mode == "yes":
        return True
    return mode == "auto" and border_is_brighter(image)


def border_is_brighter(image: np.ndarray) -> bool:
    """True for dark-on-light pictures (ink on paper): the border is brighter than the centre."""
    grey = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    h, w = grey.shape
    bh, bw = max(1, h // 10), max(1, w // 10)
    border = np.concatenate([grey[:bh].ravel(), grey[-bh:].ravel(),
                             grey[:, :bw].ravel(), grey[:, -bw:].ravel()])
    centre = grey[h // 4: h - h // 4 or h, w // 4: w - w // 4 or w]
    return float(np.median(border)) > float(centre.mean())


def ink_to_light_on_dark(grey: np.ndarray, work_side: int = 224) -> np.ndarray:
    """Dark ink on uneven paper to bright ink on black, as digit datasets have it.

    The paper (with its shading) is estimated by a morphological opening wider than the
    strokes and subtracted; the faint remainder is cut and the ink stretched to full range.
    """
    import cv2

    height, width = grey.shape
    if max(height, width) > work_side:  # the model input is small: work on a small copy
        factor = work_side / max(height, width)
        grey = cv2.resize(grey, (max(1, round(width * factor)), max(1, round(height * factor))),
                          interpolation=cv2.INTER_AREA)
    inverted = 255 - grey
    side = max(3, min(inverted.shape) // 3) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    ink = inverted.astype(np.float32) - cv2.morphologyEx(inverted, cv2.MORPH_OPEN, kernel)
    top = float(np.percentile(ink, 99.5))
    if top < 8:  # a flat picture: no ink to speak of
        return inverted
    floor = 0.2 * top
    return (np.clip((ink - floor) / (top - floor), 0, 1) * 255).astype(np.uint8)


def center_digit(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """MNIST's own normalisation: crop the ink, fit it in a 20/28 box, centre it by mass."""
    import cv2

    height, width = size
    ys, xs = np.nonzero(grey > 64)
    if len(ys) == 0:  # no ink: the picture as it is, (height, width) like the rest
        return resize(grey, size).reshape(height, width)
    crop = grey[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    box = max(1, round(min(height, width) * 20 / 28))
    factor = box / max(crop.shape)
    small = cv2.resize(crop, (max(1, round(crop.shape[1] * factor)),
                              max(1, round(crop.shape[0] * factor))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width), np.uint8)
    top, left = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    canvas[top: top + small.shape[0], left: left + small.shape[1]] = small
    moments = cv2.moments(canvas)
    if moments["m00"] == 0:
        return canvas
    dx = width / 2 - moments["m10"] / moments["m00"]
    dy = height / 2 - moments["m01"] / moments["m00"]
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(canvas, shift, (width, height), flags=cv2.INTER_LINEAR)


def load_prepared(path: str, prep: Preprocess) -> tuple[np.ndarray | None, str]:
    """(the prepared model input, "") for a readable image; (None, why) otherwise."""
    return _prepared(lambda: read_image(Path(path)), prep)


def decode_prepared(raw: bytes, prep: Preprocess) -> tuple[np.ndarray | None, str]:
    """`load_prepared` for the bytes of an image file (an upload)."""
    return _prepared(lambda: decode_image(raw), prep)


def _prepared(decode: Callable[[], np.ndarray], prep: Preprocess,
              ) -> tuple[np.ndarray | None, str]:
    try:
        return prepare(decode(), prep), ""
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # OpenCV raises cv2.error for images it cannot handle
        last = (str(exc).strip().splitlines() or [""])[-1]
        return None, f"cannot decode ({type(exc).__name__}: {last})"


def to_batch(images: list[np.ndarray], prep: Preprocess) -> np.ndarray:
    """Prepared images (of one size) as the float32 batch the model takes (`prep.scale`)."""
    factor, offset = SCALES[prep.scale]
    return np.stack(images).astype(np.float32) * factor + offset


def numpy_batches(paths: list[str], prep: Preprocess, batch_size: int,
                  on_error: Callable[[int, str], None]) -> Iterator[tuple[np.ndarray,
                                                                           np.ndarray]]:
    """What `image_batches` gives, without TensorFlow: (float32 images, indices) in order.

    A thread pool decodes ahead of the consumer (two batches at most in flight: OpenCV
    releases the GIL); an unreadable file is `on_error(index, why)`, in order, and left out.
    Images kept at their own size (`prep.size` None) are batched while their size stays the
    same, and up to `BATCH_VALUES` pixel values."""
    ahead = 2 * batch_size
    images: list[np.ndarray] = []
    indices: list[int] = []

    def batch() -> tuple[np.ndarray, np.ndarray]:
        out = to_batch(images, prep), np.array(indices, np.int64)
        images.clear()
        indices.clear()
        return out

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        pending: deque[tuple[int, Future]] = deque()
        queued = 0
        while pending or queued < len(paths):
            while queued < len(paths) and len(pending) < ahead:
                pending.append((queued, pool.submit(load_prepared, paths[queued], prep)))
                queued += 1
            index, future = pending.popleft()
            image, why = future.result()
            if image is None:
                on_error(index, why)
            else:
                if images and (image.shape != images[0].shape
                               or (len(images) + 1) * image.size > BATCH_VALUES):
                    yield batch()
                images.append(image)
                indices.append(index)
            if len(images) == batch_size or (images and not pending and queued == len(paths)):
                yield batch()


def image_batches(paths: list[str], prep: Preprocess, batch_size: int,
                  on_error: Callable[[int, str], None]) -> Any:
    """A `tf.data.Dataset` of (float32 images (B, H, W, C), int64 indices into `paths`).

    Files are decoded and prepared in parallel (OpenCV releases the GIL), in order; a file that
    cannot be read is reported as `on_error(index, why)` and left out of the batches.
    """
    import tensorflow as tf

    height, width = prep.size
    shape = (height, width, prep.channels)
    blank = np.zeros(shape, np.uint8)
    lock = threading.Lock()

    def load(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = int(index)
        image, why = load_prepared(paths[i], prep)
        if image is not None:
            return image, np.True_
        with lock:
            on_error(i, why)
        return blank, np.False_

    def decode(index: Any) -> tuple[Any, Any, Any]:
        image, ok = tf.numpy_function(load, [index], (tf.uint8, tf.bool), stateful=True)
        image.set_shape(shape)
        ok.set_shape(())
        return image, ok, index

    factor, offset = SCALES[prep.scale]
    plain = tf.autograph.experimental.do_not_convert  # no control flow: skip AutoGraph's cost
    ds = tf.data.Dataset.range(len(paths))
    ds = ds.map(plain(decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(plain(lambda image, ok, index: ok))
    ds = ds.map(plain(lambda image, ok, index: (image, index)))
    ds = ds.batch(batch_size)
    ds = ds.map(plain(lambda images, index: (tf.cast(images, tf.float32) * factor + offset,
                                             index)))
    return ds.prefetch(tf.data.AUTOTUNE)
