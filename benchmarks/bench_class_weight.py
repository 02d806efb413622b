"""Issue 16's figure for `--class-weight balanced`: its effect on an imbalanced photo folder.

Writes a folder of real CIFAR-10 photos with one class rare (cat 400, dog 40, ship 400 training
images), trains `train-cifar --data-dir` on it with and without `--class-weight balanced`
(same seed, same recipe), and measures both with `dlkit evaluate` on a balanced held-out folder
(100 test photos per class): per-class recall, precision and F1, side by side.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_class_weight.py [--epochs 10]

Prints a table and writes benchmarks/results/class_weight.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLASSES = {"cat": 400, "dog": 40, "ship": 400}  # training photos per class: dog is rare
HOLDOUT = 100  # test photos per class


def write_folder(folder: Path, images: object, labels: object, names: list[str],
                 counts: dict[str, int]) -> None:
    import cv2
    import numpy as np

    for name, count in counts.items():
        (folder / name).mkdir(parents=True)
        picked = np.flatnonzero(np.asarray(labels) == names.index(name))[:count]
        for i in picked:
            cv2.imwrite(str(folder / name / f"{i}.png"), np.asarray(images)[i][..., ::-1])


def dlkit(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dlkit", *args], capture_output=True,
                          text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"dlkit {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def main() -> None:
    epochs = sys.argv[sys.argv.index("--epochs") + 1] if "--epochs" in sys.argv else "10"
    os.environ.setdefault("DLKIT_DATA", str(ROOT.parent / "shared" / "datasets"))
    from dlkit.data.readers import load_cifar10

    load = os.getloadavg()[0]
    cifar = load_cifar10(None)
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-weight-"))
    write_folder(tmp / "train", cifar.x_train, cifar.y_train, cifar.class_names, CLASSES)
    write_folder(tmp / "holdout", cifar.x_test, cifar.y_test, cifar.class_names,
                 dict.fromkeys(CLASSES, HOLDOUT))
    results = {}
    for weight in ("none", "balanced"):
        model = tmp / f"model-{weight}"
        start = time.perf_counter()
        dlkit("train-cifar", "--data-dir", str(tmp / "train"), "--class-weight", weight,
              "--epochs", epochs, "--test-split", "0.1", "-o", str(model), "--quiet")
        seconds = time.perf_counter() - start
        scores = json.loads(dlkit("evaluate", str(tmp / "holdout"), "--model", str(model),
                                  "--json", "--quiet"))
        results[weight] = {"accuracy": scores["accuracy"], "per_class": scores["per_class"],
                           "seconds": seconds}
    print(f"\nbench_class_weight: train-cifar --data-dir (cat {CLASSES['cat']}, dog "
          f"{CLASSES['dog']}, ship {CLASSES['ship']} photos), {epochs} epochs, evaluated on "
          f"{HOLDOUT} held-out photos per class; load average {load:.2f}")
    print(f"{'class-weight':<13}{'class':<7}{'recall':>8}{'precision':>11}{'f1':>8}")
    for weight, r in results.items():
        for name in CLASSES:
            c = r["per_class"][name]
            print(f"{weight:<13}{name:<7}{c['recall']:>8.3f}{c['precision']:>11.3f}"
                  f"{c['f1']:>8.3f}")
        print(f"{weight:<13}{'all':<7}{'accuracy':>8} {r['accuracy']:.3f}, trained in "
              f"{r['seconds']:.0f} s")
    out = ROOT / "benchmarks" / "results" / "class_weight.json"
    out.write_text(json.dumps({"epochs": int(epochs), "load": load, **results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
