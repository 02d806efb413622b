"""Issue 26's char-LM figures: `dlkit train-text`'s defaults on Tiny Shakespeare per CPU-minute,
beside the previous default, in one run; and `generate-text`'s speed.

For each training budget (1, 3 and 10 minutes by default: `--max-minutes`, whose learning-rate
schedule decays to the budget's end, so each figure is what a user asking for that budget gets)
it trains the default model on ../shared/datasets/tinyshakespeare/input.txt (the last 10% held
out for validation) and reads the validation loss (nats/char), the epochs, the training
characters per second and the precision it ran in. `--baseline DIR` runs the same budgets from a
checkout of the previous default (for example `git worktree add ../dlkit-e081903 e081903`)
right after each of this checkout's, so both see the same machine load. "val loss" is what
train-text reports (since this change, a GRU/LSTM on windows of 1,024 characters, as
generate-text reads text as one stream; before, windows of --seq-len); "in 128s" and "in 1024s"
score every saved model again on the same windows, the same measure for both checkouts. The
10-minute model of this checkout then generates 5,000 characters (one stream), for the
generation speed.

Goals (issue 26): <= 1.45 nats/char in 10 minutes, <= 1.60 in 3; generation speed kept
(2,641 chars/s before).

    DLKIT_DATA=../shared/datasets python benchmarks/bench_text.py [--baseline DIR]
        [--budgets 1,3,10]

Prints the load average before and after, a table, and writes benchmarks/results/text.json.
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

from common import RESULTS, ROOT  # noqa: E402 (benchmarks/ is on sys.path)

DATA = Path(os.environ.get("DLKIT_DATA") or ROOT.parent / "shared" / "datasets")
CORPUS = DATA / "tinyshakespeare" / "input.txt"
GEN_CHARS = 5000
GOALS = {10.0: 1.45, 3.0: 1.60}
WINDOWS = (128, 1024)


def dlkit(*args: str, checkout: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m dlkit ARGS` from `checkout` on the CPU; exits on failure."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "DLKIT_DATA": str(DATA),
           "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-m", "dlkit", *args], capture_output=True,
                          text=True, env=env, cwd=checkout, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} ({checkout}) failed:\n{done.stderr}")
    return done


def train(minutes: float, output: Path, checkout: Path) -> dict:
    """The default train-text within `minutes`; its --json report and wall seconds."""
    start = time.perf_counter()
    done = dlkit("train-text", "--corpus", str(CORPUS), "--epochs", "1000", "--max-minutes",
                 f"{minutes:g}", "--output", str(output), "--json", "--quiet", checkout=checkout)
    report = json.loads(done.stdout)
    report["wall_seconds"] = time.perf_counter() - start
    training = json.loads((output / "metadata.json").read_text()).get("training", {})
    report["precision_policy"] = training.get("precision_policy", "float32")
    return report


def rescored(model: Path) -> dict[int, float | None]:
    """The saved model's validation loss (nats/char) on the text it held out, read in
    consecutive windows of each of WINDOWS characters (each window starts with no context):
    one measure for every checkout, whatever windows its train-text reported on. None for a
    window longer than the model reads (a transformer's --seq-len)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up lines
    import keras
    import numpy as np

    from dlkit.data.text import eval_windows

    meta = json.loads((model / "metadata.json").read_text())
    index = {char: i for i, char in enumerate(meta["text"]["vocab"])}
    ids = np.array([index[char] for char in CORPUS.read_text(encoding="utf-8")], np.int32)
    val = ids[len(ids) - meta["training"]["val_chars"]:]  # as train-text split it
    network = keras.models.load_model(model / "model.keras", compile=False)
    network.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    scores: dict[int, float | None] = {}
    for window in WINDOWS:
        if meta["arch"] == "transformer" and window > meta["text"]["seq_len"]:
            scores[window] = None
            continue
        windows = eval_windows(val, window, max(1, 8192 // window))  # as train-text reads them
        scores[window] = float(network.evaluate(windows, verbose=0))
    return scores


def generation_speed(model: Path) -> float:
    """Characters per second that generate-text reports on stderr (start-up excluded)."""
    done = dlkit("generate-text", "--model", str(model), "--prompt", "ROMEO:\n", "--length",
                 str(GEN_CHARS), "--seed", "1")
    for line in done.stderr.splitlines():
        if line.startswith("generated ") and "/s" in line:  # "(2,641.0 characters/s, ..."
            return float(line.split("(")[1].split()[0].replace(",", ""))
    return float("nan")


def row(label: str, minutes: float, report: dict, model: Path) -> dict:
    goal = GOALS.get(minutes)
    again = rescored(model)
    return {"model": label, "budget (min)": f"{minutes:g}",
            "val loss": round(report["val_loss"], 4),
            **{f"in {w}s": "-" if v is None else round(v, 4) for w, v in again.items()},
            "goal": f"<= {goal}" if goal else "-",
            "met": ("yes" if report["val_loss"] <= goal else "no") if goal else "-",
            "epochs": report["epochs_run"], "train s": round(report["train_seconds"]),
            "chars/s": round(report["train_chars_per_second"]),
            "arch": report["arch"], "params": report["parameters"],
            "precision": report["precision_policy"]}


def print_table(rows: list[dict]) -> None:
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    print("  ".join(f"{k:<{widths[k]}}" for k in keys))
    for r in rows:
        print("  ".join(f"{str(r[k]):<{widths[k]}}" for k in keys))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of the previous default")
    parser.add_argument("--budgets", default="1,3,10",
                        help="training budgets in minutes, comma-separated")
    args = parser.parse_args()
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} not found; set DLKIT_DATA to the shared datasets folder")
    budgets = [float(b) for b in args.budgets.split(",")]
    load_before = os.getloadavg()
    rows, speed = [], float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in budgets:
            model = Path(tmp) / f"now-{minutes:g}"
            rows.append(row("this checkout", minutes, train(minutes, model, ROOT), model))
            if minutes == max(budgets):
                speed = generation_speed(model)
            if args.baseline:
                base = Path(tmp) / f"base-{minutes:g}"
                rows.append(row(f"baseline {args.baseline.name}", minutes,
                                train(minutes, base, args.baseline.resolve()), base))
    load_after = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}; after: {load_after[0]:.2f} {load_after[1]:.2f} "
          f"{load_after[2]:.2f}; {os.cpu_count()} CPUs")
    print_table(rows)
    print(f"generate-text, this checkout's {max(budgets):g}-minute model: {speed:,.0f} chars/s "
          f"({GEN_CHARS:,} characters, one stream, start-up excluded; before: 2,641)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "text.json").write_text(json.dumps(
        {"rows": rows, "generation_chars_per_second": speed, "load_before": load_before,
         "load_after": load_after, "cpu_count": os.cpu_count()}, indent=2) + "\n")
    print(f"wrote {RESULTS / 'text.json'}")


if __name__ == "__main__":
    main()
