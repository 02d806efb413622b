"""The scale-out figures: `train-mnist` and `train-text` (Tiny Shakespeare, first 300,000
characters) with `--strategy multi-worker`, two worker processes on this machine (127.0.0.1,
TF_CONFIG, CPU only), against one process, same global batch and seed, side by side.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_multi_worker.py [--dataset D]
        [--epochs N] [--text-epochs N] [--commands mnist,text]

Two workers on one 2-core machine show that the cluster trains one model correctly (identical
metrics on both workers, close to one process); they cannot show a speed-up, since both share
the same cores. Prints a table and writes benchmarks/results/multi_worker.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, dlkit  # noqa: E402 (benchmarks/ is on sys.path)

sys.path.insert(0, str(ROOT / "tests"))
from local_cluster import finish, start_workers  # noqa: E402 (the tests' cluster helper)


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def two_workers(args: list[str]) -> tuple[list[dict], float]:
    """Run `dlkit ARGS --strategy multi-worker` as worker 0 and 1; their JSON and wall time."""
    argv = [sys.executable, "-m", "dlkit", *args, "--strategy", "multi-worker", "--json",
            "--quiet"]
    start = time.time()
    results = []
    for code, stdout, stderr in finish(start_workers([argv, argv], cwd=ROOT), timeout=1800):
        if code != 0:
            raise SystemExit(f"worker failed ({code}):\n{stderr}")
        results.append(json.loads(stdout))
    return results, time.time() - start


# Each job: its command line, and the figures of its --json result to print.
JOBS = {
    "mnist": (["train-mnist", "--dataset", "{dataset}", "--epochs", "{epochs}",
               "--batch-size", "64", "--seed", "7"],
              {"final loss": lambda r: r["history"]["loss"][-1],
               "val acc": lambda r: r["history"]["val_accuracy"][-1],
               "test acc": lambda r: r["test_accuracy"]}),
    "text": (["train-text", "--limit", "300000", "--epochs", "{epochs}", "--dim", "256",
              "--batch-size", "64", "--seed", "7"],
             {"final loss": lambda r: r["history"]["loss"][-1],
              "val loss": lambda r: r["val_loss"],
              "chars/s": lambda r: r["train_chars_per_second"]}),
}


def run_job(name: str, dataset: str, epochs: str, tmp: Path) -> dict:
    """One process, then two workers, with the same settings and global batch; a table."""
    template, figures = JOBS[name]
    args = [a.format(dataset=dataset, epochs=epochs) for a in template]
    start = time.time()
    single = dlkit(*args, "-o", str(tmp / f"{name}-single"))
    single_wall = time.time() - start
    (chief, other), multi_wall = two_workers([*args, "-o", str(tmp / f"{name}-multi")])
    print(f"\n{' '.join(args)} (global batch), CPU, {os.cpu_count()} cores shared by both "
          f"workers; load {os.getloadavg()[0]:.2f}")
    print(f"{'run':<22}" + "".join(f"{k:>12}" for k in figures) + f"{'wall s':>9}")
    for label, result, wall in [("one process", single, single_wall),
                                ("2 workers: chief", chief, multi_wall),
                                ("2 workers: worker 1", other, multi_wall)]:
        print(f"{label:<22}" + "".join(f"{get(result):>12.4f}" for get in figures.values())
              + f"{wall:>9.1f}")
    same = chief["history"] == other["history"]
    print(f"workers' histories identical: {'yes' if same else 'NO'}; folders written: "
          f"{', '.join(sorted(p.name for p in tmp.iterdir() if p.name.startswith(name)))}")
    return {"args": args, "single": single, "chief": chief, "worker1": other,
            "single_wall": single_wall, "multi_wall": multi_wall, "identical": same}


def main() -> None:
    dataset = option("--dataset", "digits")
    epochs = {"mnist": option("--epochs", "10"), "text": option("--text-epochs", "2")}
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-mw-"))
    results = {name: run_job(name, dataset, epochs[name], tmp)
               for name in option("--commands", "mnist,text").split(",")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "multi_worker.json"
    out.write_text(json.dumps({"dataset": dataset, **results}, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
