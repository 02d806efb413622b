"""Benchmark for `dlkit train-gan`: does a GAN trained for at most 10 minutes on Fashion-MNIST make
recognisable, varied images of the class it is asked for?

Runs the real CLI in subprocesses (`--json`):
1. `dlkit train-mnist --dataset fashion-mnist --epochs 3`: the scoring classifier;
2. `dlkit train-gan --dataset fashion-mnist --conditional --max-minutes 10`: one conditional GAN;
3. `dlkit evaluate-gan` on 1,000 samples, every class asked for 100 times (the headline
   figures, plain normal noise), and once more with `--truncation 1.5` for comparison.

One conditional model gives all three figures: labels asked for uniformly make the unconditional
measures (recognisable share, label entropy) and the conditional accuracy. Prints a table and
writes benchmarks/results/gan.json. `BENCH_GAN_CLASSIFIER=DIR` skips step 1 and scores with a
classifier folder an earlier run trained.

    DLKIT_DATA=/work/shared/datasets .venv/bin/python benchmarks/bench_gan.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "bench"
RESULTS = ROOT / "benchmarks" / "results" / "gan.json"
GAN_MINUTES = float(os.environ.get("BENCH_GAN_MINUTES", "10"))
TARGETS = {"recognisable": 0.80, "label_entropy": 0.90, "conditional_accuracy": 0.85}


def dlkit(*args: str) -> dict:
    """Run `python -m dlkit ARGS --json`-style; return the JSON object on stdout."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dlkit", *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=None)
    if proc.returncode != 0:
        sys.exit(f"dlkit {args[0]} failed with exit {proc.returncode}")
    result = json.loads(proc.stdout)
    result["_wall_seconds"] = time.perf_counter() - started
    return result


def main() -> None:
    os.environ.setdefault("DLKIT_DATA", str(ROOT.parent / "shared" / "datasets"))
    classifier_dir, gan_dir = MODELS / "gan-classifier", MODELS / "gan-fashion"
    reuse = os.environ.get("BENCH_GAN_CLASSIFIER")  # a folder from an earlier run of step 1
    if reuse:
        classifier_dir = Path(reuse).resolve()
        meta = json.loads((classifier_dir / "metadata.json").read_text())
        classifier = {"test_accuracy": meta["metrics"]["test_accuracy"], "reused": True}
    else:
        classifier = dlkit("train-mnist", "--dataset", "fashion-mnist", "--epochs", "3",
                           "--output", str(classifier_dir), "--json")
    gan = dlkit("train-gan", "--dataset", "fashion-mnist", "--conditional", "--epochs", "100",
                "--max-minutes", str(GAN_MINUTES), "--output", str(gan_dir), "--json")
    scores = dlkit("evaluate-gan", "--model", str(gan_dir), "--classifier", str(classifier_dir),
                   "--count", "1000")
    truncated = dlkit("evaluate-gan", "--model", str(gan_dir), "--classifier",
                      str(classifier_dir), "--count", "1000", "--truncation", "1.5")
    rows = [
        ("recognisable (confidence >= 0.9)", scores["recognisable"], TARGETS["recognisable"]),
        ("label entropy / ln(10)", scores["label_entropy"], TARGETS["label_entropy"]),
        ("conditional accuracy", scores["conditional_accuracy"],
         TARGETS["conditional_accuracy"]),
    ]
    summary = {
        "dataset": "../shared/datasets/fashion-mnist (60,000 train images)",
        "machine": f"{os.cpu_count()} CPU cores (shared)",
        "classifier": str(classifier_dir),
        "classifier_reused": bool(reuse),
        "classifier_test_accuracy": classifier["test_accuracy"],
        "gan_train_seconds": gan["train_seconds"],
        "gan_epochs_completed": gan["epochs_completed"], "gan_stopped": gan["stopped"],
        "gan_images_per_second": gan["images_per_second"],
        "final_grid": gan["final_grid"], "gif": str(gan_dir / "plots" / "epochs.gif"),
        "scores": {name: value for name, value, _ in rows},
        "targets": TARGETS,
        "passed": all(value >= target for _, value, target in rows),
        "evaluate_gan": scores,
        "evaluate_gan_truncation_1.5": truncated,
    }
    print(f"{'figure':<36}{'value':>8}{'target':>9}  ok")
    for name, value, target in rows:
        print(f"{name:<36}{value:>8.3f}{target:>9.2f}  {'yes' if value >= target else 'NO'}")
    print(f"{'  with --truncation 1.5 (extra):':<36}")
    for key, label in (("recognisable", "recognisable"), ("label_entropy", "label entropy"),
                       ("conditional_accuracy", "conditional accuracy")):
        print(f"{'    ' + label:<36}{truncated[key]:>8.3f}")
    print(f"{'classifier test accuracy':<36}{classifier['test_accuracy']:>8.3f}")
    print(f"{'GAN training seconds':<36}{gan['train_seconds']:>8.0f}{GAN_MINUTES * 60:>9.0f}"
          f"  {'yes' if gan['train_seconds'] <= GAN_MINUTES * 60 + 5 else 'NO'}")
    print(f"{'GAN epochs completed':<36}{gan['epochs_completed']:>8d}   ({gan['stopped']})")
    print(f"final grid: {gan['final_grid']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
