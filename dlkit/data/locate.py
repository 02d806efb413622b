"""Find a dataset on disk in the order of docs/design.md#data-lookup, or download it.

`--data-dir`, when given, is authoritative: the dataset comes from that folder (which may be the
dataset's own folder, e.g. `cifar-10-batches-py/` itself) or the command fails saying what it
expected there. Without it the order is `$DLKIT_DATA`, `./data`, the Keras cache
(`$KERAS_HOME/datasets`, default `~/.keras/datasets`), `/usr/share/datasets`; then the canonical
URL (checksum-verified, written atomically, with a progress bar) into the Keras cache, unless
`DLKIT_OFFLINE=1`. Every dataset found is announced on stderr with where it came from.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dlkit.core.console import err, info, stderr_is_terminal
from dlkit.core.errors import DataError, UsageError, disk_error
from dlkit.core.files import offline
from dlkit.data.registry import DatasetSpec, Remote

SYSTEM_DIR = Path("/usr/share/datasets")


@dataclass(frozen=True)
class Found:
    """Where a dataset was found: the root folder and the files of the layout that matched."""

    root: Path
    files: tuple[Path, ...]
    origin: str  # which lookup place: "--data-dir", "$DLKIT_DATA", ...


def keras_cache() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def search_roots(data_dir: Path | None) -> list[tuple[str, Path]]:
    """The lookup places, in order, as (label, folder)."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise UsageError(f"--data-dir {data_dir} does not exist or is not a folder")
        if not os.access(data_dir, os.R_OK | os.X_OK):
            raise UsageError(f"--data-dir {data_dir} cannot be read (permission denied); "
                             "pass a folder you can read")
        return [("--data-dir", data_dir)]
    if os.environ.get("DLKIT_DATA"):
        roots.append(("$DLKIT_DATA", Path(os.environ["DLKIT_DATA"]).expanduser()))
    roots += [("./data", Path.cwd() / "data"), ("Keras cache", keras_cache()),
              ("system", SYSTEM_DIR)]
    return roots


def find(spec: DatasetSpec, data_dir: Path | None = None) -> Found | None:
    """The first lookup place holding a complete layout of `spec`, or None. An explicit
    `data_dir` may also be the layout's own folder (`cifar-10-batches-py/` itself)."""
    for label, root in search_roots(data_dir):
        for layout in _layouts(spec, own_folder=data_dir is not None):
            files = tuple(root / rel for rel in layout)
            if all(f.is_file() for f in files):
                return Found(root, files, label)
    return None


def _layouts(spec: DatasetSpec, own_folder: bool) -> list[tuple[str, ...]]:
    """The layouts of `spec`, and with `own_folder` each layout whose files share a first
    folder also without that folder (the user pointed at the folder itself)."""
    layouts = list(spec.layouts)
    if own_folder:
        for layout in spec.layouts:
            heads = {Path(rel).parts[0] for rel in layout}
            if len(heads) == 1 and all(len(Path(rel).parts) > 1 for rel in layout):
                layouts.append(tuple(str(Path(*Path(rel).parts[1:])) for rel in layout))
    return layouts


def expected(spec: DatasetSpec) -> str:
    """The files a layout of `spec` needs, for messages."""
    return " or ".join("+".join(layout) for layout in spec.layouts)


def locate(spec: DatasetSpec, data_dir: Path | None = None) -> Found:
    """Find `spec` on disk or download it; exit 1 naming every place tried when neither works."""
    found = find(spec, data_dir)
    if found is not None:
        return _announce(spec, found)
    if data_dir is not None:
        raise DataError(f"dataset {spec.name} not found in --data-dir {data_dir}: expected "
                        f"{expected(spec)} there (or the dataset's own folder); --data-dir is "
                        "the only place looked at when given")
    tried = ", ".join(f"{label} ({root})" for label, root in search_roots(data_dir))
    if offline() or not spec.remote:
        why = "DLKIT_OFFLINE=1 forbids downloading" if offline() else "it has no download source"
        raise DataError(f"dataset {spec.name} not found; tried {tried}; {why}. Put the files "
                        f"({expected(spec)}) in one of those folders or point --data-dir / "
                        "DLKIT_DATA at them")
    target = keras_cache()
    try:
        for remote in spec.remote:
            download(remote, target)
    except DataError as exc:
        raise DataError(f"dataset {spec.name} not found (tried {tried}) and the download "
                        f"failed: {exc.message}") from None
    found = find(spec, data_dir)
    if found is None:
        raise DataError(f"downloaded {spec.name} into {target} but its files are not where "
                        "expected; delete them and retry")
    return _announce(spec, found)


def _announce(spec: DatasetSpec, found: Found) -> Found:
    info(f"reading {spec.name} from {found.root} ({found.origin})")
    return found


def download(remote: Remote, root: Path) -> Path:
    """Fetch `remote.url` into `root/remote.dest`: verify its checksum, write atomically."""
    dest = root / remote.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    info(f"downloading {remote.url} -> {dest}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                _fetch(remote.url, out)
                out.flush()
                os.fsync(out.fileno())
            verify_checksum(tmp, remote.checksum, remote.url)
            os.replace(tmp, dest)
        except OSError as exc:  # a full disk while downloading
            raise disk_error(str(dest), exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if remote.extract:
        _extract(dest, dest.parent)
    return dest


def _fetch(url: str, out) -> None:
    try:
        response = urllib.request.urlopen(url, timeout=60)  # noqa: S310 (http(s)/file only)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot reach {url} ({getattr(exc, 'reason', exc)})") from None
    total = int(response.headers.get("Content-Length") or 0) or None
    with response:
        if stderr_is_terminal():
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            with Progress("{task.description}", BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), console=err, transient=True) as bar:
                task = bar.add_task(Path(url).name, total=total)
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.advance(task, len(chunk))
        else:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)


def verify_checksum(path: Path, checksum: str, what: str) -> None:
    """Raise DataError unless `path` hashes to `checksum` (`md5:...` or `sha256:...`)."""
    algo, expected = checksum.split(":", 1)
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise DataError(f"checksum mismatch for {what} ({algo} {digest.hexdigest()}, expected "
                        f"{expected}); the download is corrupt, retry later")


def _extract(archive: Path, into: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"cannot unpack {archive} ({exc}); delete it and retry") from None
