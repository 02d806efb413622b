"""Benchmark `dlkit train-text` and `dlkit generate-text` on Tiny Shakespeare (CPU).

Trains the default model on ../shared/datasets/tinyshakespeare/input.txt (last 10% held out for
validation) within a 10-minute training budget, then measures generation speed of one stream on
the CPU and keeps a 500-character sample. Targets (issue 4): validation loss <= 1.60 nats/char,
generation >= 500 characters/s.

    DLKIT_DATA=/work/shared/datasets .venv/bin/python benchmarks/bench_text.py

Prints a plain-text table and writes benchmarks/results/text.json.
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
DATA = Path(os.environ.get("DLKIT_DATA") or ROOT.parent / "shared" / "datasets")
CORPUS = DATA / "tinyshakespeare" / "input.txt"
RESULTS = ROOT / "benchmarks" / "results" / "text.json"
TRAIN_MINUTES = float(os.environ.get("BENCH_TEXT_MINUTES", "9.5"))
GEN_CHARS = 5000
TARGET_LOSS, TARGET_SPEED = 1.60, 500.0


def dlkit(*args: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "DLKIT_DATA": str(DATA)}
    return subprocess.run([sys.executable, "-m", "dlkit", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, check=False)


def train(model_dir: Path) -> dict:
    start = time.perf_counter()
    done = dlkit("train-text", "--corpus", str(CORPUS), "--epochs", "100", "--max-minutes",
                 str(TRAIN_MINUTES), "--output", str(model_dir), "--json")
    if done.returncode != 0:
        sys.exit(f"train-text failed:\n{done.stderr}")
    report = json.loads(done.stdout)
    report["wall_seconds"] = time.perf_counter() - start
    print(done.stderr, file=sys.stderr)
    return report


def generate(model_dir: Path, length: int, seed: int) -> tuple[str, float, str]:
    start = time.perf_counter()
    done = dlkit("generate-text", "--model", str(model_dir), "--prompt", "ROMEO:\n",
                 "--length", str(length), "--seed", str(seed))
    if done.returncode != 0:
        sys.exit(f"generate-text failed:\n{done.stderr}")
    return done.stdout, time.perf_counter() - start, done.stderr


def chars_per_second(stderr: str) -> float:
    """The speed generate-text reports on stderr (model loading excluded)."""
    for line in stderr.splitlines():
        if line.startswith("generated ") and "chars/s" in line:
            return float(line.split("(")[1].split(" chars/s")[0].replace(",", ""))
    return float("nan")


def main() -> None:
    if not CORPUS.is_file():
        sys.exit(f"{CORPUS} not found; set DLKIT_DATA to the shared datasets folder")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "text"
        report = train(model_dir)
        text, gen_wall, gen_err = generate(model_dir, GEN_CHARS, 1)
        sample, _, _ = generate(model_dir, 500, 2)
    speed = chars_per_second(gen_err)
    rows = {
        "arch": report["arch"],
        "parameters": report["parameters"],
        "train chars / val chars": f"{report['train_chars']:,} / {report['val_chars']:,}",
        "epochs run": report["epochs_run"],
        "training time (s)": round(report["train_seconds"], 1),
        "train-text wall time (s)": round(report["wall_seconds"], 1),
        "training chars/s": round(report["train_chars_per_second"]),
        "val loss (nats/char)": round(report["val_loss"], 4),
        "val bits/char": round(report["val_bpc"], 4),
        f"val loss <= {TARGET_LOSS}": report["val_loss"] <= TARGET_LOSS,
        f"generation chars/s ({GEN_CHARS} chars, 1 stream)": round(speed),
        "generate-text wall time (s, incl. start-up)": round(gen_wall, 1),
        f"generation >= {TARGET_SPEED:.0f} chars/s": speed >= TARGET_SPEED,
        "device": report["device"],
    }
    width = max(map(len, rows))
    print(f"{'figure':<{width}}  value")
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    print("\n500-character sample (prompt 'ROMEO:\\n', temperature 0.8, seed 2):\n")
    print(sample)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**rows, "sample": sample, "history": report["history"],
                                   "cpu_count": os.cpu_count(),
                                   "note": "ran on a shared 2-core CPU beside other work"},
                                  indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
