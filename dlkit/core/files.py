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

dlkit never writes through a symbolic link it did not make: a name it picks itself (a lock file,
a checkpoint folder) that is a link is refused (`refuse_link`, `open_lock_file`), and the atomic
writers replace a name rather than write into what it points at.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dlkit.core.errors import DISK_ERRNOS, UsageError, disk_error

MiB = 1 << 20
TEXT_LIMIT = 256 * MiB  # a corpus or a CSV, from a file or from stdin
LINES_LIMIT = 64 * MiB  # texts or image paths read from stdin, one per line


def offline() -> bool:
    """`DLKIT_OFFLINE=1` (any value but empty or 0): never download anything (datasets,
    pretrained models)."""
    return os.environ.get("DLKIT_OFFLINE", "") not in ("", "0")


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
    when it cannot be read or is larger. Opened without blocking and checked again once open,
    so a name swapped for a FIFO after the check is refused rather than waited on."""
    path = regular_file(path, what, hint)
    hint = f"; {hint}" if hint else ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # never blocks, even
        with os.fdopen(fd, "rb") as f:  # on a FIFO swapped in since the check
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise UsageError(f"{what} {path} is not a regular file; give a regular "
                                 f"file{hint}")
            if limit is not None and info.st_size > limit:
                raise UsageError(f"{what} {path} is larger than {size_text(limit)}, the most "
                                 f"dlkit reads{hint}")
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


def refuse_link(path: Path, what: str) -> None:
    """Exit 2 when `path` (a name dlkit picks itself) is a symbolic link: writing there would
    write wherever the link points."""
    if Path(path).is_symlink():
        raise _link_error(path, what)


def _link_error(path: Path, what: str) -> UsageError:
    return UsageError(f"{what} {path} is a symbolic link, which dlkit did not make; remove it "
                      "(dlkit never writes through a link)")


def open_lock_file(path: Path, what: str) -> int:
    """A read-write descriptor of the regular file `path`, created (0644) when missing. Never
    opened through a symbolic link (O_NOFOLLOW), and refused when it is not a regular file or
    has other names (a hard link to someone's file): exit 2 then, with `path` untouched. A disk
    that cannot take the file is exit 1."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link_error(path, what) from None
        if exc.errno in DISK_ERRNOS:
            raise disk_error(f"{what} {path}", exc) from None
        raise UsageError(f"cannot create {what} {path} ({exc.strerror}); choose a folder you "
                         "can write to") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        kind = "not a regular file" if not stat.S_ISREG(info.st_mode) else \
            "a file with other names (hard links)"
        raise UsageError(f"{what} {path} is {kind}, which dlkit did not make; remove it")
    return fd
