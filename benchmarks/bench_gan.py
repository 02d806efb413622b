"""Benchmark for the image generators (issue 27): do a GAN and a flow-matching model trained for
at most 10 minutes on Fashion-MNIST make recognisable, varied images that cover the real data,
and how fast do they draw?

Runs the real CLI in subprocesses (`--json`):
1. `dlkit train-mnist --dataset fashion-mnist` with its defaults: the scoring classifier
   (label-smoothed; evaluate-gan reads its confidence back through the smoothing);
2. per row, `dlkit train-gan` or `dlkit train-flow --dataset fashion-mnist [--conditional]
   --max-minutes 10` with the command's defaults;
3. `dlkit evaluate-gan --recall` on 1,000 samples (conditional: every class asked for 100
   times): recognisable share, label entropy, conditional accuracy, and the recall figures
   (GAN-train accuracy from 10,000 generated images, Frechet distance against the real test
   set next to the real-train-vs-real-test reference);
4. `sample-gan`/`sample-flow` of 1,000 images on each backend (LiteRT, TensorFlow): images per
   second of the sampling itself (the process start and model load not counted), and a grid
   of 100 images written beside the results as `<row>.png`.

Prints one table (a column per row, the goals of issue 27 beside each figure) and writes
benchmarks/results/gan.json. `--rows` picks rows (default all four: gan-unconditional,
gan-conditional, flow-unconditional, flow-conditional; `gan` and `flow` name two each).
`BENCH_GAN_CLASSIFIER=DIR` skips step 1 and scores with a classifier folder an earlier run
trained; `BENCH_GAN_MINUTES` changes the budget.

    DLKIT_DATA=../shared/datasets .venv/bin/python benchmarks/bench_gan.py --rows flow
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

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models" / "bench"
RESULTS = ROOT / "benchmarks" / "results"
MINUTES = float(os.environ.get("BENCH_GAN_MINUTES", "10"))
ROWS = ["gan-unconditional", "gan-conditional", "flow-unconditional", "flow-conditional"]
SPEED_COUNT = 1000  # images drawn per backend for the sampling speed

# issue 27's goals: (figure, at least / at most, value) per family and kind
GOALS = {
    "gan": {"recognisable": (">=", 0.80), "label_entropy": (">=", 0.90),
            "gan_train_accuracy": (">=", 0.80), "frechet_ratio": ("<=", 10.0)},
    "flow": {"recognisable": (">=", 0.80), "label_entropy": (">=", 0.90),
             "gan_train_accuracy": (">=", 0.85), "frechet_ratio": ("<=", 10.0)},
}
CONDITIONAL_RECOGNISABLE = 0.90
FIGURES = [  # (key, label, format)
    ("epochs", "epochs in the budget", "{:.0f}"),
    ("train_images_per_second", "training images/s", "{:.0f}"),
    ("recognisable", "recognisable (conf >= 0.9)", "{:.3f}"),
    ("recognisable_reference", "  real test images", "{:.3f}"),
    ("label_entropy", "label entropy / ln 10", "{:.3f}"),
    ("conditional_accuracy", "conditional accuracy", "{:.3f}"),
    ("gan_train_accuracy", "GAN-train accuracy", "{:.3f}"),
    ("gan_train_reference", "  real images, as many", "{:.3f}"),
    ("frechet_distance", "Frechet distance", "{:.2f}"),
    ("frechet_reference", "  real train vs real test", "{:.2f}"),
    ("frechet_ratio", "Frechet / real-vs-real", "{:.1f}x"),
    ("sampling_litert", "sampling images/s, LiteRT", "{:.0f}"),
    ("sampling_tensorflow", "sampling images/s, TensorFlow", "{:.0f}"),
]


def dlkit(*args: str) -> dict:
    """Run `python -m dlkit ARGS` (a --json command); return the JSON object on stdout."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dlkit", *args], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=None)
    if proc.returncode != 0:
        sys.exit(f"dlkit {args[0]} failed with exit {proc.returncode}")
    result = json.loads(proc.stdout)
    result["_wall_seconds"] = time.perf_counter() - started
    return result


def parse_rows(text: str) -> list[str]:
    """`--rows`: names from ROWS, or a family (gan, flow) for both of its rows."""
    rows: list[str] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        picked = [r for r in ROWS if r == name or r.startswith(f"{name}-")]
        if not picked:
            raise argparse.ArgumentTypeError(f"unknown row {name!r} (rows: {', '.join(ROWS)}, "
                                             "gan, flow)")
        rows += [r for r in picked if r not in rows]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=parse_rows, default=ROWS,
                        help="comma-separated rows: " + ", ".join(ROWS) + ", gan, flow")
    rows = parser.parse_args().rows
    os.environ.setdefault("DLKIT_DATA", str(ROOT.parent / "shared" / "datasets"))
    classifier_dir, classifier = scoring_classifier()
    load_before = os.getloadavg()[0]
    summary: dict = {"dataset": "../shared/datasets/fashion-mnist (60,000 train images)",
                     "machine": f"{os.cpu_count()} CPU cores (shared)", "minutes": MINUTES,
                     "classifier": str(classifier_dir), **classifier, "runs": {},
                     "load_average_before": load_before}
    for row in rows:
        summary["runs"][row] = run_row(row, classifier_dir)
    summary["load_average_after"] = os.getloadavg()[0]
    print_table(summary)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gan.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results: {RESULTS / 'gan.json'}; grids: "
          + ", ".join(str(RESULTS / f"{row}.png") for row in rows))


def scoring_classifier() -> tuple[Path, dict]:
    """The Fashion-MNIST classifier that scores every row (trained here, or reused)."""
    reuse = os.environ.get("BENCH_GAN_CLASSIFIER")
    if reuse:
        folder = Path(reuse).resolve()
        meta = json.loads((folder / "metadata.json").read_text())
        return folder, {"classifier_test_accuracy": meta["metrics"]["test_accuracy"],
                        "classifier_reused": True}
    folder = MODELS / "gan-classifier"
    result = dlkit("train-mnist", "--dataset", "fashion-mnist", "--output", str(folder),
                   "--json")
    return folder, {"classifier_test_accuracy": result["test_accuracy"],
                    "classifier_reused": False}


def run_row(row: str, classifier_dir: Path) -> dict:
    """Train one generator for the time budget, score it with --recall, time its sampling."""
    family, kind = row.split("-")
    model_dir = MODELS / f"{family}-fashion-{kind}"
    flags = ["--conditional"] if kind == "conditional" else []
    trained = dlkit(f"train-{family}", "--dataset", "fashion-mnist", *flags, "--epochs", "100",
                    "--max-minutes", str(MINUTES), "--output", str(model_dir), "--json")
    scores = dlkit("evaluate-gan", "--model", str(model_dir), "--classifier",
                   str(classifier_dir), "--count", "1000", "--recall", "--json")
    speed = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("litert", "tensorflow"):
            drawn = dlkit(f"sample-{family}", "--model", str(model_dir), "--count",
                          str(SPEED_COUNT), "--seed", "1", "--backend", backend, "--out",
                          str(Path(tmp) / "speed.png"), "--json")
            speed[f"sampling_{backend}"] = drawn["images_per_second"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    dlkit(f"sample-{family}", "--model", str(model_dir), "--count", "100", "--seed", "0",
          "--out", str(RESULTS / f"{row}.png"), "--json")
    recall = scores["recall"]
    return {"family": family, "kind": kind, "epochs": trained["epochs_completed"],
            "stopped": trained["stopped"], "train_seconds": trained["train_seconds"],
            "train_images_per_second": trained["images_per_second"],
            "recognisable": scores["recognisable"], "label_entropy": scores["label_entropy"],
            "conditional_accuracy": scores["conditional_accuracy"],
            "gan_train_accuracy": recall["gan_train_accuracy"],
            "gan_train_reference": recall["gan_train_reference"],
            "recognisable_reference": recall["recognisable_reference"],
            "frechet_distance": recall["frechet_distance"],
            "frechet_reference": recall["frechet_reference"],
            "frechet_ratio": recall["frechet_ratio"], **speed,
            "sampling": scores.get("sampling", {}), "grid": str(RESULTS / f"{row}.png"),
            "final_grid": trained["final_grid"], "evaluate_gan": scores}


def goal(run: dict, key: str) -> tuple[str, float] | None:
    """The issue's goal for a figure of a run: (">=" or "<=", value), or None."""
    if key == "recognisable" and run["kind"] == "conditional":
        return ">=", CONDITIONAL_RECOGNISABLE
    return GOALS[run["family"]].get(key)


def print_table(summary: dict) -> None:
    """One column per row: the figure, its goal and whether it is met (* = missed)."""
    runs = summary["runs"]
    width = 26
    print(f"{'figure':<34}" + "".join(f"{row:>{width}}" for row in runs))
    for key, label, form in FIGURES:
        cells = []
        for run in runs.values():
            value = run.get(key)
            if value is None:
                cells.append(f"{'-':>{width}}")
                continue
            text = form.format(value)
            target = goal(run, key)
            if target is not None:
                sign, bound = target
                met = value >= bound if sign == ">=" else value <= bound
                text += f" ({sign}{bound:g}{'' if met else ' *'})"
            cells.append(f"{text:>{width}}")
        print(f"{label:<34}" + "".join(cells))
    print(f"classifier test accuracy {summary['classifier_test_accuracy']:.3f}; load average "
          f"{summary['load_average_before']:.2f} before, {summary['load_average_after']:.2f} "
          f"after; {summary['minutes']:g} minutes per model on {summary['machine']}")


if __name__ == "__main__":
    main()
