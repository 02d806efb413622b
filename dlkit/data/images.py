"""Image files through OpenCV: decode any common format into RGB uint8, and image folders.

Handles grayscale, RGBA (composited on white), 16-bit and EXIF orientation; used by
`classify-image` and by `train-cifar --data-dir` (one subfolder of images per class).
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff")
IMAGE_KINDS = "JPEG, PNG, BMP, WebP, TIFF"
MAX_PIXELS = 50_000_000  # decoded RGB: 150 MB; a larger picture is refused, not decoded


class ImageError(ValueError):
    """A file that is not a readable image (the message says why)."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: Path) -> np.ndarray:
    """Decode `path` to an (H, W, 3) RGB uint8 array, honouring EXIF orientation.

    Only regular files are read (a FIFO or a device would block or never end), and a picture
    of more than MAX_PIXELS is refused from its header, before anything is decoded: a small
    file can declare an enormous image."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ImageError("not a regular file")
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(exc.strerror or str(exc)) from None
    return decode_image(raw)


def decode_image(raw: np.ndarray | bytes) -> np.ndarray:
    """An encoded picture (the bytes of a JPEG, PNG, ... file) to an (H, W, 3) RGB uint8
    array, as `read_image` reads a file: EXIF orientation honoured, transparency composited
    on white, more than MAX_PIXELS refused from the header."""
    import cv2

    if isinstance(raw, bytes):
        raw = np.frombuffer(raw, dtype=np.uint8)
    if raw.size == 0:
        raise ImageError("empty file")
    _check_size(raw)
    # IMREAD_ANYDEPTH keeps 16-bit data; IMREAD_COLOR applies EXIF orientation and gives BGR.
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise ImageError("not a readable image (corrupt, truncated or unsupported format)")
    alpha = _alpha(raw)
    image = _to_uint8(image)
    if alpha is not None and alpha.shape[:2] == image.shape[:2]:
        image = _composite_on_white(image, alpha)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_size(raw: np.ndarray) -> None:
    """Refuse a picture whose header declares more than MAX_PIXELS (read by Pillow, which
    parses the header without decoding); files Pillow cannot parse are left to OpenCV."""
    import io
    import warnings

    from PIL import Image

    too_big = f"larger than dlkit reads ({MAX_PIXELS // 1_000_000} megapixels at most)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw.tobytes())) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise ImageError(f"the picture is {too_big}") from None
    except Exception:  # not a format Pillow knows, or a broken header: OpenCV decides
        return
    if width * height > MAX_PIXELS:
        raise ImageError(f"{width}x{height} pixels is {too_big}")


def _alpha(raw: np.ndarray) -> np.ndarray | None:
    """The alpha channel of an RGBA image as float in [0, 1], or None."""
    import cv2

    full = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if full is None or full.ndim != 3 or full.shape[2] != 4:
        return None
    alpha = full[..., 3].astype(np.float32)
    alpha /= 65535.0 if full.dtype == np.uint16 else 255.0
    orientation_fixed = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if orientation_fixed is not None and orientation_fixed.shape[:2] != alpha.shape[:2]:
        alpha = np.ascontiguousarray(alpha.T)  # rotated by EXIF; a transpose keeps it aligned
    return alpha


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image / 257.0).round().astype(np.uint8)
    scaled = image.astype(np.float32)
    top = float(scaled.max()) or 1.0
    return np.clip(scaled * (255.0 / (top if top > 1.0 else 1.0)), 0, 255).astype(np.uint8)


def _composite_on_white(bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return (bgr.astype(np.float32) * a + 255.0 * (1.0 - a)).round().astype(np.uint8)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width) in two steps: area averaging down to at most twice the size
    (the anti-aliasing a large shrink needs), then bicubic interpolation to the size.

    Area averaging all the way would smear each output pixel over its whole footprint: a
    32x32 picture saved at 224x224 (bicubic) came back at 38.8 dB against the original and
    cost a CIFAR classifier 1.8 points; through twice the size, then bicubic, 48.2 dB (49.6 dB
    is what the JPEG encoding leaves). Training on image folders reads through this same
    function, so what a model is trained on and what it classifies are resized alike."""
    import cv2

    height, width = size
    if image.shape[:2] == (height, width):
        return image
    between = (min(image.shape[0], 2 * height), min(image.shape[1], 2 * width))
    if between != image.shape[:2]:
        image = cv2.resize(image, between[::-1], interpolation=cv2.INTER_AREA)
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    return out if out.ndim == 3 else out[..., None]


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


@dataclass
class ImageFolder:
    """Images read from a folder with one subfolder per class."""

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int32
    class_names: list[str]
    skipped: list[tuple[Path, str]]


def read_image_folder(folder: Path, size: tuple[int, int], workers: int = 8) -> ImageFolder:
    """Read every image under `folder/<class>/`, resized to `size`; unreadable files are
    returned in `skipped` with the reason. A class folder with no image, or none that can be
    read, is exit 2 naming it (`dlkit.data.classes`): it would be a class with no examples."""
    from dlkit.core.errors import UsageError
    from dlkit.data.classes import class_folders

    found = class_folders(folder, find_images, f"images ({IMAGE_KINDS})")
    classes = [class_folder.name for class_folder, _ in found]
    entries = [(path, index) for index, (_, paths) in enumerate(found) for path in paths]

    def load(entry: tuple[Path, int]) -> tuple[np.ndarray | None, str]:
        try:
            return resize(read_image(entry[0]), size), ""
        except ImageError as exc:
            return None, str(exc)

    with ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(load, entries))
    keep = [i for i, (img, _) in enumerate(decoded) if img is not None]
    skipped = [(entries[i][0], why) for i, (img, why) in enumerate(decoded) if img is None]
    images = (np.stack([decoded[i][0] for i in keep]) if keep
              else np.zeros((0, *size, 3), np.uint8))
    labels = np.array([entries[i][1] for i in keep], np.int32)
    unread = sorted(set(range(len(classes))) - set(labels.tolist()))
    if unread:  # every file of that class was skipped: say why for its first one
        first = next(i for i, (_, index) in enumerate(entries) if index == unread[0])
        raise UsageError(f"class folder {found[unread[0]][0]} holds no readable image "
                         f"({entries[first][0].name}: {decoded[first][1]}); add readable "
                         f"images of class {classes[unread[0]]!r} or remove the folder")
    return ImageFolder(images, labels, classes, skipped)
