"""Issue 25's figures: the image classifiers' defaults per CPU-minute, beside the previous default
and the seed scripts, measured in one run.

- Fashion-MNIST (full, 60k/10k), `train-mnist --dataset fashion-mnist` with the defaults: test
  accuracy and training seconds (goal >= 0.935 in <= 150 s);
- the CIFAR-10 subset (4,068/1,017), `train-cifar` with the defaults (goal >= 0.80 in <= 300 s),
  and the same model through `classify-image` on the test images written as PNG files and as
  224x224 JPEG files (goal: within 1 point of the reported figure);
- per-epoch validation: the last validation accuracy against the test accuracy of every run
  above and of a 3-epoch run on the bundled digits (goal: within 0.05);
- throughput against the seed document's CIFAR script at batch 32: `--arch seed` doing the same
  work (no augmentation, no label smoothing, no validation), and with the defaults (goal >= 1.3x
  both).

    DLKIT_DATA=../shared/datasets python benchmarks/bench_classifiers.py [--baseline DIR] [--quick]
        [--rows fashion,cifar,digits,files,seed]

`--baseline DIR` also runs the previous default from a checkout of it (for example
`git worktree add ../dlkit-e081903 e081903`), side by side. `--quick` runs one epoch of
everything (a smoke test of the script, not figures). Prints a table and writes
benchmarks/results/classifiers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT  # noqa: E402 (benchmarks/ is on sys.path)

sys.path.insert(0, str(ROOT))


def dlkit(*args: str, checkout: Path | None = None) -> dict:
    """`dlkit ARGS --json --quiet` from this checkout (or `checkout`); its JSON object."""
    env = {**os.environ, "PYTHONPATH": str(checkout or ROOT)}
    cmd = [sys.executable, "-m", "dlkit", *args, "--json", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=checkout or ROOT, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def seed_script(name: str, *args: str) -> dict:
    """Run one of the seed documents' scripts (benchmarks/seed/) and return its JSON line."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seed" / name), *args],
                         capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"seed {name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def file_accuracy(model: Path, folder: Path, truth: np.ndarray, names: list[str]) -> float:
    """classify-image's accuracy on a folder of images named in test-set order."""
    entries = dlkit("classify-image", str(folder), "--model", str(model))
    predicted = np.array([names.index(e["label"]) for e in entries])
    return float((predicted == truth).mean())


def write_test_images(folder: Path, ext: str, size: int | None = None) -> tuple[np.ndarray,
                                                                                 list[str]]:
    """The CIFAR-10 test images as files (`size`: upscaled to size x size); their labels."""
    import cv2

    from dlkit.data.readers import load_cifar10

    data = load_cifar10(None)
    folder.mkdir(parents=True)
    for i, image in enumerate(data.x_test):
        bgr = np.ascontiguousarray(image[..., ::-1])
        if size is not None:
            bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_CUBIC)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else []
        cv2.imwrite(str(folder / f"{i:05d}.{ext}"), bgr, params)
    return data.y_test, data.class_names


class Table:
    """The rows of the figures table."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, figure: str, value: float, goal: str = "", ok: bool | None = None,
            note: str = "") -> None:
        self.rows.append({"figure": figure, "value": round(float(value), 4), "goal": goal,
                          "ok": ok, "note": note})

    def print(self) -> None:
        width = max(len(r["figure"]) for r in self.rows)
        print(f"{'figure':<{width}}  {'value':>9}  {'goal':>8}  {'ok':>3}  note")
        for r in self.rows:
            ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
            print(f"{r['figure']:<{width}}  {r['value']:>9.4f}  {r['goal']:>8}  {ok:>3}  "
                  f"{r['note']}")


ROWS = ("fashion", "cifar", "digits", "files", "seed")


def last_val(result: dict) -> float:
    return result["history"]["val_accuracy"][-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, help="a checkout of the previous default")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"which rows to run, comma-separated (default all: {','.join(ROWS)})")
    args = parser.parse_args()
    rows = set(args.rows.split(","))
    if not rows <= set(ROWS) or "files" in rows and "cifar" not in rows:
        parser.error(f"--rows takes some of {','.join(ROWS)} ('files' needs 'cifar')")
    quick = ["--epochs", "1"] if args.quick else []
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-"))
    table = Table()
    t0, load0 = time.time(), os.getloadavg()[0]
    runs: dict[str, dict] = {}

    def both(key: str, *cli: str) -> None:
        runs[key] = dlkit(*cli, *quick, "-o", str(tmp / key))
        if args.baseline:
            runs[f"{key} (previous)"] = dlkit(*cli, *quick, "-o", str(tmp / f"{key}-base"),
                                              checkout=args.baseline.resolve())

    if "fashion" in rows:
        both("fashion-mnist", "train-mnist", "--dataset", "fashion-mnist")
    if "cifar" in rows:
        both("cifar10", "train-cifar")
    if "digits" in rows:
        both("digits, 3 epochs", "train-mnist", "--dataset", "digits",
             *([] if quick else ["--epochs", "3"]))
    goals = {"fashion-mnist": (0.935, 150), "cifar10": (0.80, 300)}
    for key, result in runs.items():
        goal = goals.get(key)
        acc, seconds = result["test_accuracy"], result["train_seconds"]
        note = f"{result['arch']}, {result['epochs_completed']} epochs"
        table.add(f"{key}: test accuracy", acc, f">= {goal[0]}" if goal else "",
                  acc >= goal[0] if goal else None, note)
        table.add(f"{key}: training seconds", seconds, f"<= {goal[1]}" if goal else "",
                  seconds <= goal[1] if goal else None)
        gap = abs(last_val(result) - acc)
        table.add(f"{key}: |last validation - test| accuracy", gap, "<= 0.05", gap <= 0.05,
                  f"validation {last_val(result):.4f}")

    if "files" in rows:
        files(runs["cifar10"], tmp, table)
    if "seed" in rows:
        seed_rows(tmp, table, args.quick)

    load1 = os.getloadavg()[0]
    table.print()
    print(f"load average {load0:.2f} at the start, {load1:.2f} at the end; "
          f"{os.cpu_count()} CPU cores; {time.time() - t0:.0f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("classifiers-quick.json" if args.quick else "classifiers.json")
    out.write_text(json.dumps({"rows": table.rows, "load": [load0, load1],
                               "seconds": time.time() - t0}, indent=2) + "\n")
    print(f"wrote {out}")


def files(cifar: dict, tmp: Path, table: Table) -> None:
    """The CIFAR model through classify-image on the test images as PNG and 224x224 JPEG."""
    model = Path(cifar["artifacts"]["model_dir"])
    for label, ext, size in (("PNG", "png", None), ("224x224 JPEG", "jpg", 224)):
        truth, names = write_test_images(tmp / f"test-{ext}", ext, size)
        acc = file_accuracy(model, tmp / f"test-{ext}", truth, names)
        diff = abs(acc - cifar["test_accuracy"])
        table.add(f"cifar10 via classify-image, {label} files", acc, "+-0.01", diff <= 0.01,
                  f"reported {cifar['test_accuracy']:.4f}")


def seed_rows(tmp: Path, table: Table, quick: bool) -> None:
    """Throughput of `--arch seed` against the seed document's CIFAR script, batch 32."""
    epochs = "1" if quick else "10"
    seed = seed_script("cifar_cnn.py", epochs, "32")
    same = dlkit("train-cifar", "--arch", "seed", "--epochs", epochs, "--batch-size", "32",
                 "--val-split", "0", "--no-augment", "--label-smoothing", "0",
                 "-o", str(tmp / "cifar-seed"))
    defaults = dlkit("train-cifar", "--arch", "seed", "--epochs", epochs, "--batch-size", "32",
                     "-o", str(tmp / "cifar-seed-defaults"))
    table.add("cifar10 seed script, batch 32: images/s", seed["images_per_second"], "", None,
              f"acc {seed['test_accuracy']:.3f}")
    for label, result in (("same work", same), ("defaults", defaults)):
        ratio = result["images_per_second"] / seed["images_per_second"]
        table.add(f"cifar10 --arch seed, batch 32, {label}: x seed script", ratio, ">= 1.3",
                  ratio >= 1.3, f"{result['images_per_second']:.0f} images/s, acc "
                  f"{result['test_accuracy']:.3f}")


if __name__ == "__main__":
    main()
