"""Issue 16's figure: what `--tensorboard` costs on `train-cifar`, side by side in one run.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_tensorboard.py [--epochs 5] [--rounds 2]

Trains the default train-cifar model on the shared CIFAR-10 subset with and without
`--tensorboard`, alternating (off, on, off, on, ...) so that the machine's load falls on both
alike, and prints the training images/s of each run and the ratio of the medians. Writes
benchmarks/results/tensorboard.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, dlkit


def _arg(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def main() -> None:
    epochs, rounds = _arg("--epochs", 5), _arg("--rounds", 2)
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-tb-"))
    runs: dict[str, list[float]] = {"off": [], "on": []}
    load = os.getloadavg()
    for r in range(rounds):
        for mode in ("off", "on"):
            extra = ["--tensorboard", str(tmp / f"logs{r}")] if mode == "on" else []
            result = dlkit("train-cifar", "--epochs", str(epochs), "-o", str(tmp / f"m{mode}"),
                           *extra)
            runs[mode].append(result["images_per_second"])
            print(f"round {r + 1} tensorboard {mode:>3}: {result['images_per_second']:8.1f} "
                  f"images/s ({result['train_seconds']:.1f} s)", flush=True)
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    print(f"\n{'figure':<42} {'value':>10}")
    print(f"{'train-cifar images/s, no --tensorboard':<42} {off:>10.1f}")
    print(f"{'train-cifar images/s, --tensorboard':<42} {on:>10.1f}")
    print(f"{'ratio on/off (medians)':<42} {on / off:>10.3f}")
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "tensorboard.json"
    out.write_text(json.dumps({"epochs": epochs, "runs": runs, "ratio": on / off,
                               "load_average": load, "time": time.time()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
