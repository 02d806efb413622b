"""The GPU check in one command: each `train-*` command briefly, with its defaults, on the GPU.

For every command: examples (images, characters, texts) per second, the precision policy, whether
Keras compiled the step with XLA, the peak GPU memory, the device; then the same with
`--strategy mirrored` (every GPU of the machine). Each run is the real CLI with `--max-minutes`
(default 1) on the shared datasets (`DLKIT_DATA`), its figures read from its `--json` result and
its `metadata.json`.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_gpu.py [--minutes 1] [--cpu]

On a machine without a GPU it says so and exits 0; `--cpu` runs the same table on the CPU
anyway (with small `--limit`s, to try the script). Prints the table and writes
benchmarks/results/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT  # noqa: E402 (benchmarks/ is on sys.path)

from dlkit.core.config import recorded_settings  # noqa: E402 (either spelling of the keys)

# command, its data options ({T}: the files written by `inputs`), the --json field holding
# its throughput, the unit
COMMANDS = [
    ("train-mnist", ["--dataset", "fashion-mnist"], "images_per_second", "images"),
    ("train-cifar", [], "images_per_second", "images"),
    ("train-text", [], "train_chars_per_second", "chars"),
    ("train-gan", ["--dataset", "fashion-mnist"], "images_per_second", "images"),
    ("train-vae", ["--dataset", "fashion-mnist"], "images_per_second", "images"),
    ("train-sequence", ["--csv", "{T}/sunspots.csv", "--column", "SUNACTIVITY"], None,
     "windows"),
    ("train-text-classifier", ["--csv", "{T}/speeches.csv", "--text-column", "speech",
                               "--label-column", "speaker"], "texts_per_second", "texts"),
]
CPU_LIMITS = {"train-mnist": "2000", "train-cifar": "1000", "train-text": "50000",
              "train-gan": "1000", "train-vae": "1000", "train-text-classifier": "500"}


def gpus() -> int:
    """GPUs TensorFlow sees (asked in a child process: this one stays free of TensorFlow)."""
    code = ("import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import tensorflow as tf; "
            "print(len(tf.config.list_physical_devices('GPU')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return int(out.stdout.strip() or 0) if out.returncode == 0 else 0


def inputs(folder: Path) -> None:
    """The CSV files of the two commands that have no default dataset: the benchmarks' own
    (yearly sunspots; Tiny Shakespeare's speeches of its five main speakers)."""
    import csv

    from bench_sequence import sunspots_csv
    from bench_text_classifier import corpus, speeches, split

    sunspots_csv(folder / "sunspots.csv")
    _, train, _ = split(speeches(corpus().read_text(encoding="utf-8")))
    with open(folder / "speeches.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["speech", "speaker"])
        writer.writerows((speech, name) for name, speech in train)


def run(command: str, data: list[str], strategy: str, minutes: float, cpu: bool,
        out: Path) -> dict:
    args = [sys.executable, "-m", "dlkit", command, *data, "--max-minutes", str(minutes),
            "--strategy", strategy, "-o", str(out), "--json", "--quiet"]
    if cpu and command in CPU_LIMITS:
        args += ["--limit", CPU_LIMITS[command]]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no output)"]
        return {"error": lines[-1][:160]}
    meta = json.loads((out / "metadata.json").read_text())
    return {"result": json.loads(done.stdout), "training": meta["training"],
            "config": recorded_settings(meta)}


def row(command: str, strategy: str, unit: str, key: str | None, got: dict) -> dict:
    if "error" in got:
        return {"command": command, "strategy": strategy, "error": got["error"]}
    training, result = got["training"], got["result"]
    rate = result.get(key) if key else None
    if rate is None and training.get("seconds"):  # from the steps and the batch size
        rate = training["steps"] * got["config"]["batch-size"] / training["seconds"]
    return {"command": command, "strategy": strategy, "per_second": rate, "unit": unit,
            "precision": training.get("precision_policy"), "xla": training.get("xla"),
            "peak_gpu_mib": training.get("peak_gpu_mib"), "device": training.get("device"),
            "replicas": training.get("replicas"), "epochs": training.get("epochs_completed")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU anyway (a dry run)")
    args = parser.parse_args()
    found = gpus()
    if not found and not args.cpu:
        print("no GPU found by TensorFlow on this machine: nothing to measure (run this on a "
              "machine with an NVIDIA GPU and CUDA, or pass --cpu for a dry run on the CPU)")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs(Path(tmp))
        for command, data, key, unit in COMMANDS:
            for strategy in ("auto", "mirrored"):
                out = Path(tmp) / f"{command}-{strategy}"
                got = run(command, [a.replace("{T}", tmp) for a in data], strategy,
                          args.minutes, args.cpu, out)
                rows.append(row(command, strategy, unit, key, got))
    print(f"{found} GPU(s); each run --max-minutes {args.minutes:g}; load "
          f"{os.getloadavg()[0]:.2f}")
    print(f"{'command':<22}{'strategy':<10}{'per second':>14} {'unit':<8}{'precision':<15}"
          f"{'XLA':<6}{'peak GPU MiB':>13}  device")
    for r in rows:
        if "error" in r:
            print(f"{r['command']:<22}{r['strategy']:<10}failed: {r['error']}")
            continue
        rate = f"{r['per_second']:,.0f}" if r["per_second"] else "-"
        peak = f"{r['peak_gpu_mib']:,.0f}" if r["peak_gpu_mib"] else "-"
        print(f"{r['command']:<22}{r['strategy']:<10}{rate:>14} {r['unit']:<8}"
              f"{r['precision'] or '-':<15}{'yes' if r['xla'] else 'no':<6}{peak:>13}  "
              f"{r['device']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu.json").write_text(json.dumps({"gpus": found, "cpu_dry_run": args.cpu,
                                                  "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
