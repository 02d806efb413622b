"""Issue 11's table: what dlkit does in each data-loss case, run against a checkout.

    DLKIT_DATA=../shared/datasets python benchmarks/data_safety_table.py [--repo PATH]

Runs every case of issue 11 through `python -m dlkit` of the checkout at PATH (default: this
one) in a scratch folder, and prints one row per case: the exit code and what happened to the
user's files. Run it once on an older checkout (`git worktree add /tmp/old <rev>`) and once on
this one for the before/after table. Needs root for the full-disk cases (a small tmpfs).
Writes benchmarks/results/data_safety[-<name>].json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from common import RESULTS, ROOT

TIMEOUT = 120


class Probe:
    """Runs `python -m dlkit` of one checkout."""

    def __init__(self, repo: Path, scratch: Path) -> None:
        self.repo, self.scratch = repo, scratch
        data = os.environ.get("DLKIT_DATA") or str(ROOT.parent / "shared" / "datasets")
        self.env = {**os.environ, "PYTHONPATH": str(repo), "DLKIT_DATA": data,
                    "DLKIT_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}

    def run(self, *args: object, cwd: Path | None = None, shell: str = "",
            env: dict | None = None, stdin: bytes | None = None,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        words = [sys.executable, "-m", "dlkit", *map(str, args)]
        command = (["bash", "-c", " ".join(_quote(w) for w in words) + " " + shell]
                   if shell else words)
        try:
            return subprocess.run(command, cwd=cwd or self.scratch, capture_output=True,
                                  env={**self.env, **(env or {})}, timeout=timeout,
                                  input=stdin)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(command, "timeout", b"", b"")


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def errors(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.decode(errors="replace").splitlines()
             if line.startswith("error:") or "Traceback" in line or "Fatal" in line]
    return (lines[0][:90] if lines else "no error line")


def mnist(out: Path, *extra: str) -> list[str]:
    return ["train-mnist", "--dataset", "digits", "--arch", "mlp", "--epochs", "1", "-o",
            str(out), "--quiet", *extra]


@contextlib.contextmanager
def full_disk(where: Path) -> Iterator[Path]:
    where.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)]
                      ).returncode != 0:
        raise SystemExit("the full-disk cases need root (mount -t tmpfs)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)])


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)


def huge_png(path: Path, side: int = 20000) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(b"\0" * (side + 1)) for _ in range(side)) + packer.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                       8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------------
# The cases: each returns (exit code, what happened)

def case_output_dot(p: Probe, t: Path) -> tuple[object, str]:
    project = t / "project"
    project.mkdir()
    (project / "main.py").write_text("code\n")
    r = p.run(*mnist(Path(".")), cwd=project)
    return r.returncode, "main.py kept" if (project / "main.py").exists() else "main.py DELETED"


def case_output_home(p: Probe, t: Path) -> tuple[object, str]:
    home = t / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# mine\n")
    r = p.run(*mnist(Path("~")), env={"HOME": str(home)})
    return r.returncode, ".bashrc kept" if (home / ".bashrc").exists() else ".bashrc DELETED"


def case_output_is_data(p: Probe, t: Path) -> tuple[object, str]:
    import cv2
    import numpy as np

    photos = t / "photos"
    for k in ("a", "b"):
        (photos / k).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(photos / k / f"{i}.png"), np.full((16, 16, 3), 30 * i, np.uint8))
    r = p.run("train-cifar", "--data-dir", photos, "--arch", "seed", "--epochs", "1",
              "-o", photos, "--quiet")
    kept = len(list(photos.rglob("*.png")))
    return r.returncode, f"{kept} of 16 images kept" if kept else "all 16 images DELETED"


def case_output_inside_model(p: Probe, t: Path) -> tuple[object, str]:
    p.run(*mnist(t / "m"))
    r = p.run(*mnist(t / "m" / "saved_model"))
    ok = (t / "m" / "saved_model" / "saved_model.pb").is_file()
    return r.returncode, "model m intact" if ok else "model m BROKEN (saved_model replaced)"


def case_diverged(p: Probe, t: Path) -> tuple[object, str]:
    out = t / "m"
    p.run(*mnist(out))
    before = (out / "metadata.json").read_bytes()
    r = p.run("train-mnist", "--dataset", "digits", "--arch", "mlp", "--epochs", "2",
              "--batch-size", "2048", "--learning-rate", "1e30", "-o", out, "--json")
    same = (out / "metadata.json").read_bytes() == before
    try:
        json.loads(r.stdout or b"{}", parse_constant=lambda c: (_ for _ in ()).throw(
            ValueError(c)))
        valid = "valid"
    except ValueError:
        valid = "NOT JSON (NaN)"
    return r.returncode, (f"good model {'kept' if same else 'REPLACED'}; --json "
                          f"{valid if r.stdout.strip() else 'empty'}")


def case_full_disk_png(p: Probe, t: Path) -> tuple[object, str]:
    gan = t / "g"
    p.run("train-gan", "--dataset", "digits", "--epochs", "1", "--limit", "64", "--width", "4",
          "--latent-dim", "4", "-o", gan, "--quiet")
    with full_disk(t / "disk") as disk:
        (disk / "grid.png").write_bytes(b"previous")
        fill(disk)
        r = p.run("sample-gan", "--model", gan, "--count", "64", "--out", disk / "grid.png")
        kept = (disk / "grid.png").is_file() and (disk / "grid.png").read_bytes() == b"previous"
        left = sorted(x.name for x in disk.iterdir() if x.name not in ("filler", "grid.png"))
    return r.returncode, (f"previous PNG {'kept' if kept else 'LOST'}; "
                          f"{'temp files: ' + ', '.join(left) if left else 'no temp files'}; "
                          f"{errors(r)}")


def case_full_disk_train(p: Probe, t: Path) -> tuple[object, str]:
    with full_disk(t / "disk") as disk:
        out = disk / "m"
        p.run(*mnist(out, "--epochs", "2"))
        before = (out / "metadata.json").read_bytes()
        fill(disk)
        r = p.run(*mnist(out, "--epochs", "2"))
        same = out.is_dir() and (out / "metadata.json").read_bytes() == before
        left = sorted(x.name for x in disk.iterdir() if x.name not in ("filler", "m"))
    return r.returncode, (f"model {'kept' if same else 'LOST'}; left: {left or 'nothing'}; "
                          f"{errors(r)}")


def case_resume_other_data(p: Probe, t: Path) -> tuple[object, str]:
    import numpy as np

    data = t / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (256, 28, 28), np.uint8)
    y = rng.integers(0, 10, 256, np.uint8)
    np.savez(data / "mnist.npz", x_train=x, y_train=y, x_test=x[:64], y_test=y[:64])
    args = ["train-mnist", "--dataset", "mnist", "--data-dir", data, "--arch", "mlp",
            "--epochs", "300", "--batch-size", "32", "-o", t / "m"]
    stopper = subprocess.Popen([sys.executable, "-m", "dlkit", *map(str, args)],
                               stderr=subprocess.PIPE, env=p.env, cwd=t)
    for line in stopper.stderr:
        if b"epoch 1/" in line:
            stopper.send_signal(2)
            break
    stopper.communicate()
    np.savez(data / "mnist.npz", x_train=255 - x, y_train=y, x_test=x[:64], y_test=y[:64])
    r = p.run(*args, "--resume", "--quiet")
    return r.returncode, ("refused: " + errors(r)[7:60]) if r.returncode == 2 else \
        "resumed on OTHER data"


def case_after_training_crash(p: Probe, t: Path) -> tuple[object, str]:
    corpus = t / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    r = p.run("train-text", "--corpus", corpus, "--arch", "transformer", "--seq-len", "1",
              "--dim", "8", "--heads", "2", "--layers", "1", "--epochs", "1", "-o", t / "t",
              "--quiet")
    return r.returncode, "model saved" if (t / "t").is_dir() else f"NOTHING saved; {errors(r)}"


def case_huge_png(p: Probe, t: Path) -> tuple[object, str]:
    p.run(*mnist(t / "m"))
    huge_png(t / "huge.png")
    # the peak memory of this one command: a fresh parent that reports its child's
    watcher = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('peak', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "file=sys.stderr); sys.exit(r.returncode)")
    command = [sys.executable, "-c", watcher, sys.executable, "-m", "dlkit", "classify-image",
               str(t / "huge.png"), "--model", str(t / "m")]
    r = subprocess.run(command, capture_output=True, env=p.env, timeout=TIMEOUT, cwd=t)
    peak = int(r.stderr.decode().rsplit("peak ", 1)[1].split()[0]) / 1024
    return r.returncode, f"peak {peak:,.0f} MiB; {errors(r)[:60]}"


def case_fifo(p: Probe, t: Path) -> tuple[object, str]:
    os.mkfifo(t / "pipe")
    r = p.run("train-text", "--corpus", t / "pipe", "-o", t / "t", timeout=20)
    return r.returncode, "blocked (killed after 20 s)" if r.returncode == "timeout" else \
        errors(r)[:70]


def case_stderr_closed(p: Probe, t: Path) -> tuple[object, str]:
    p.run(*mnist(t / "m"))
    image = next((t / "m" / "plots").glob("*.png"))
    r = p.run("classify-image", image, "--model", t / "m", shell="2>&-")
    return r.returncode, "result printed" if r.stdout.strip() else "NO result"


def case_csv_head(p: Probe, t: Path) -> tuple[object, str]:
    import cv2
    import numpy as np

    p.run(*mnist(t / "m"))
    folder = t / "imgs"
    folder.mkdir()
    for i in range(400):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((28, 28), i % 250, np.uint8))
    r = p.run("classify-image", folder, "--model", t / "m", "--csv", t / "all.csv",
              "--batch-size", "16", shell="| head -1")
    rows = len((t / "all.csv").read_text().splitlines()) - 1 if (t / "all.csv").exists() else 0
    return r.returncode, f"CSV has {rows} of 400 rows" if rows else "NO CSV written"


def case_tsv_names(p: Probe, t: Path) -> tuple[object, str]:
    import cv2
    import numpy as np

    p.run(*mnist(t / "m"))
    folder = t / "odd"
    folder.mkdir()
    ok, data = cv2.imencode(".png", np.zeros((28, 28), np.uint8))
    for name in (b"new\nline.png", b"tab\there.png", b"caf\xe9.png"):
        (folder / os.fsdecode(name)).write_bytes(data.tobytes())
    r = p.run("classify-image", folder, "--model", t / "m")
    lines = r.stdout.decode(errors="replace").splitlines()
    return r.returncode, f"{len(lines)} lines for 3 images; {errors(r)[:50]}"


def case_seed_range(p: Probe, t: Path) -> tuple[object, str]:
    r = p.run(*mnist(t / "m", "--seed", "-1"))
    return r.returncode, errors(r)[:80]


def case_metadata_list(p: Probe, t: Path) -> tuple[object, str]:
    (t / "m").mkdir()
    (t / "m" / "metadata.json").write_text("[]")
    r = p.run("generate-text", "--model", t / "m")
    return r.returncode, errors(r)[:80]


def case_edited_vocabulary(p: Probe, t: Path) -> tuple[object, str]:
    corpus = t / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    p.run("train-text", "--corpus", corpus, "--epochs", "1", "--dim", "8", "--seq-len", "8",
          "-o", t / "t", "--quiet")
    meta = json.loads((t / "t" / "metadata.json").read_text())
    meta["text"]["vocab"] = meta["text"]["vocab"][:-1]
    (t / "t" / "metadata.json").write_text(json.dumps(meta))
    r = p.run("generate-text", "--model", t / "t", "--length", "50")
    return r.returncode, errors(r)[:80]


CASES: list[tuple[str, Callable[[Probe, Path], tuple[object, str]]]] = [
    ("-o . in a project folder", case_output_dot),
    ("-o ~", case_output_home),
    ("-o the --data-dir of images", case_output_is_data),
    ("-o m/saved_model", case_output_inside_model),
    ("--learning-rate 1e30 onto a good model", case_diverged),
    ("full disk: sample-gan --out over a PNG", case_full_disk_png),
    ("full disk while training", case_full_disk_train),
    ("--resume on other data, same count", case_resume_other_data),
    ("crash after training (transformer, seq-len 1)", case_after_training_crash),
    ("20000x20000 PNG of 400 KB", case_huge_png),
    ("--corpus a FIFO", case_fifo),
    ("stderr closed (2>&-)", case_stderr_closed),
    ("--csv out.csv | head -1", case_csv_head),
    ("file names with newline, tab, non-UTF-8", case_tsv_names),
    ("--seed -1", case_seed_range),
    ("metadata.json that is a list", case_metadata_list),
    ("edited vocabulary", case_edited_vocabulary),
]


def main() -> None:
    repo = Path(sys.argv[sys.argv.index("--repo") + 1]) if "--repo" in sys.argv else ROOT
    rows = []
    for title, case in CASES:
        scratch = Path(tempfile.mkdtemp(prefix="dlkit-safety-"))
        try:
            code, what = case(Probe(repo.resolve(), scratch), scratch)
        except Exception as exc:  # a case that cannot even be set up is a row too
            code, what = "n/a", f"{type(exc).__name__}: {exc}"[:90]
        finally:
            subprocess.run(["umount", "-l", str(scratch / "disk")], capture_output=True)
            shutil.rmtree(scratch, ignore_errors=True)
        rows.append({"case": title, "exit": code, "what": what})
        print(f"{title:<46} {str(code):>7}  {what}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "data_safety.json" if repo.resolve() == ROOT else f"data_safety-{repo.name}.json"
    (RESULTS / name).write_text(json.dumps({"repo": str(repo), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
