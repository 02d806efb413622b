"""Benchmark for `dlkit train-gan`: do GANs trained for at most 10 minutes on Fashion-MNIST make
recognisable, varied images, and do they cover the real data?

Runs the real CLI in subprocesses (`--json`):
1. `dlkit train-mnist --dataset fashion-mnist --epochs 3`: the scoring classifier;
2. `dlkit train-gan --dataset fashion-mnist [--conditional] --max-minutes 10`: an
   unconditional and a conditional GAN (`BENCH_GAN_KINDS=conditional` for one);
3. `dlkit evaluate-gan --recall` on 1,000 samples (conditional: every class asked for 100
   times): recognisable share, label entropy, conditional accuracy, and the recall figures
   (GAN-train accuracy from 10,000 generated images, Frechet distance against the real test
   set next to the real-train-vs-real-test reference).

Prints a table and writes benchmarks/results/gan.json. `BENCH_GAN_CLASSIFIER=DIR` skips step 1
and scores with a classifier folder an earlier run trained.

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
KINDS = os.environ.get("BENCH_GAN_KINDS", "unconditional,conditional").split(",")
# issue 17's goals: recognisable >= 0.80 unconditional, >= 0.90 conditional; GAN-train
# >= 0.80 and a Frechet distance within 3x the real-vs-real one for both
TARGETS = {"unconditional": {"recognisable": 0.80}, "conditional": {"recognisable": 0.90,
                                                                    "conditional_accuracy": 0.85}}
RECALL_TARGETS = {"gan_train_accuracy": 0.80}
MAX_FRECHET_RATIO = 3.0


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
    classifier_dir = MODELS / "gan-classifier"
    reuse = os.environ.get("BENCH_GAN_CLASSIFIER")  # a folder from an earlier run of step 1
    if reuse:
        classifier_dir = Path(reuse).resolve()
        meta = json.loads((classifier_dir / "metadata.json").read_text())
        classifier = {"test_accuracy": meta["metrics"]["test_accuracy"], "reused": True}
    else:
        classifier = dlkit("train-mnist", "--dataset", "fashion-mnist", "--epochs", "3",
                           "--output", str(classifier_dir), "--json")
    summary: dict = {"dataset": "../shared/datasets/fashion-mnist (60,000 train images)",
                     "machine": f"{os.cpu_count()} CPU cores (shared)",
                     "classifier": str(classifier_dir), "classifier_reused": bool(reuse),
                     "classifier_test_accuracy": classifier["test_accuracy"], "runs": {}}
    print(f"{'figure':<44}{'value':>8}{'goal':>9}  ok")
    for kind in KINDS:
        summary["runs"][kind] = run_kind(kind, classifier_dir)
    print(f"{'classifier test accuracy':<44}{classifier['test_accuracy']:>8.3f}")
    print(f"load {os.getloadavg()[0]:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {RESULTS}")


def run_kind(kind: str, classifier_dir: Path) -> dict:
    """Train one GAN for the time budget, score it with --recall, print its rows."""
    gan_dir = MODELS / f"gan-fashion-{kind}"
    flags = ["--conditional"] if kind == "conditional" else []
    gan = dlkit("train-gan", "--dataset", "fashion-mnist", *flags, "--epochs", "100",
                "--max-minutes", str(GAN_MINUTES), "--output", str(gan_dir), "--json")
    scores = dlkit("evaluate-gan", "--model", str(gan_dir), "--classifier", str(classifier_dir),
                   "--count", "1000", "--recall", "--json")
    recall = scores["recall"]
    rows = [("recognisable (confidence >= 0.9)", scores["recognisable"],
             TARGETS[kind]["recognisable"]),
            ("label entropy / ln(10)", scores["label_entropy"], None)]
    if kind == "conditional":
        rows.append(("conditional accuracy", scores["conditional_accuracy"],
                     TARGETS[kind]["conditional_accuracy"]))
    rows += [("GAN-train accuracy (10,000 generated)", recall["gan_train_accuracy"],
              RECALL_TARGETS["gan_train_accuracy"]),
             ("Frechet distance", recall["frechet_distance"], None),
             ("  real train vs real test", recall["frechet_reference"], None)]
    print(f"{kind} GAN: {gan['epochs_completed']} epochs in {gan['train_seconds']:.0f} s "
          f"({gan['stopped']})")
    for name, value, goal in rows:
        ok = "" if goal is None else ("yes" if value >= goal else "NO")
        print(f"  {name:<42}{value:>8.3f}{'' if goal is None else f'{goal:>9.2f}':>9}  {ok}")
    ratio = recall["frechet_ratio"]
    print(f"  {'Frechet / reference':<42}{ratio:>8.2f}{MAX_FRECHET_RATIO:>9.2f}  "
          f"{'yes' if ratio <= MAX_FRECHET_RATIO else 'NO'} (at most)")
    return {"train_seconds": gan["train_seconds"], "epochs_completed": gan["epochs_completed"],
            "stopped": gan["stopped"], "images_per_second": gan["images_per_second"],
            "final_grid": gan["final_grid"], "evaluate_gan": scores}


if __name__ == "__main__":
    main()
