"""Files dlkit writes and reads: every write is atomic, every read is of a regular file.

`write_atomic(path, data)` writes bytes to a temporary file in the same folder, fsyncs it and
renames it over `path`, so a reader (or a kill, or a full disk) sees the old file or the new one,
never half of one, and no temporary file is left behind. Every PNG, CSV, JSON and GIF dlkit writes
goes through it (or through `atomic_file` for writers that want a file object). A disk that is
full or read-only is one `DlkitError` line (exit 1), never a traceback.

`regular_file(path, what)` refuses what is not a regular file (a FIFO or a device would be read
forever, a folder is the wrong thing) with one line (exit 2). Nothing is read without a bound:
`read_bytes(path, what, limit=...)` refuses a file larger than `limit` from its size, and
`read_stdin(what, limit)` reads at most `limit` bytes of stdin (`--prompt - </dev/zero` would
otherwise grow until the kernel kills the process); both say what the limit is (exit 2).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dlkit.core.errors import UsageError, disk_error

MiB = 1 << 20
TEXT_LIMIT = 256 * MiB  # a corpus or a CSV, from a file or from stdin
LINES_LIMIT = 64 * MiB  # texts or image paths read from stdin, one per line


def write_atomic(path: Path, data: bytes | memoryview | str, what: str | None = None) -> Path:
    """Replace `path` with `data` in one step (UTF-8 for text); returns `path`."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, "wb", what) as f:
        f.write(raw)
    return path


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", what: str | None = None,
                **open_kwargs: Any) -> Iterator[IO[Any]]:
    """A temporary file beside `path` that becomes `path` when the block ends without error;
    on any error it is removed and `path` is untouched."""
    path = Path(path)
    label = what or str(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise disk_error(label, exc) from None
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, mode, **open_kwargs) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp's file is private; ours are not
            os.replace(tmp, path)
        except OSError as exc:
            raise disk_error(label, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under `folder` to disk (before it is renamed into place)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def umask() -> int:
    """The process's umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def regular_file(path: Path | str, what: str, hint: str = "") -> Path:
    """`path` if it is a readable regular file; exit 2 saying what it is otherwise."""
    path = Path(path).expanduser()
    hint = f"; {hint}" if hint else ""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist{hint}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path} ({exc.strerror}){hint}") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{what} {path} is a folder, not a file{hint}")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise UsageError(f"{what} {path} is {kind}; give a regular file{hint}")
    return path


def read_bytes(path: Path | str, what: str, hint: str = "", limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (when given); exit 2 with one line
    when it cannot be read or is larger."""
    path = regular_file(path, what, hint)
    hint = f"; {hint}" if hint else ""
    try:
        if limit is not None and path.stat().st_size > limit:
            raise UsageError(f"{what} {path} is larger than {size_text(limit)}, the most dlkit "
                             f"reads{hint}")
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path} ({exc.strerror}); check its "
                         "permissions") from None
    if limit is not None and len(data) > limit:  # it grew while being read
        raise UsageError(f"{what} {path} is larger than {size_text(limit)}, the most dlkit "
                         f"reads{hint}")
    return data


def read_stdin(what: str, limit: int, hint: str = "") -> bytes:
    """Everything on stdin, at most `limit` bytes; exit 2 with one line when there is more
    (read only that far: an endless stream costs `limit` bytes, not all the memory)."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is not None:
        data = stream.read(limit + 1)
    else:  # a text-only stdin (an embedding program's)
        data = sys.stdin.read(limit + 1).encode("utf-8", "surrogateescape")
    if len(data) > limit:
        hint = f"; {hint}" if hint else ""
        raise UsageError(f"{what} on stdin: more than {size_text(limit)}, the most dlkit "
                         f"reads from stdin{hint}")
    return data


def size_text(size: int) -> str:
    """`size` bytes for a message: 512 MiB, 64 KiB, 100 bytes."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size:,} bytes"
