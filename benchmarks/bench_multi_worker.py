"""Issue 7's scale-out figure: `train-mnist --strategy multi-worker` with two worker processes on
this machine (127.0.0.1, TF_CONFIG, CPU only) against one process, same global batch and seed.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_multi_worker.py [--dataset D]

Two workers on one 2-core machine show that the cluster trains one model correctly (identical
metrics on both workers, close to one process); they cannot show a speed-up, since both share
the same cores. Prints a table and writes benchmarks/results/multi_worker.json.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, dlkit  # noqa: E402 (benchmarks/ is on sys.path)


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def two_workers(args: list[str]) -> tuple[list[dict], float]:
    """Run `dlkit ARGS --strategy multi-worker` as worker 0 and 1; their JSON and wall time."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    start = time.time()
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dlkit", *args, "--strategy", "multi-worker", "--json",
             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "TF_CONFIG": json.dumps(tf_config)}))
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"worker failed ({proc.returncode}):\n{stderr}")
        results.append(json.loads(stdout))
    return results, time.time() - start


def main() -> None:
    dataset = option("--dataset", "digits")
    epochs = option("--epochs", "10")
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-mw-"))
    args = ["train-mnist", "--dataset", dataset, "--epochs", epochs, "--batch-size", "64",
            "--seed", "7"]
    start = time.time()
    single = dlkit(*args, "-o", str(tmp / "single"))
    single_wall = time.time() - start
    (chief, other), multi_wall = two_workers([*args, "-o", str(tmp / "multi")])
    rows = [("one process", single, single_wall), ("2 workers: chief", chief, multi_wall),
            ("2 workers: worker 1", other, multi_wall)]
    print(f"train-mnist --dataset {dataset} --epochs {epochs} --batch-size 64 (global), "
          f"CPU, {os.cpu_count()} cores shared by both workers")
    print(f"{'run':<22} {'final loss':>10} {'val acc':>8} {'test acc':>8} {'wall s':>7}")
    for name, r, wall in rows:
        print(f"{name:<22} {r['history']['loss'][-1]:>10.4f} "
              f"{r['history']['val_accuracy'][-1]:>8.4f} {r['test_accuracy']:>8.4f} {wall:>7.1f}")
    same = chief["history"] == other["history"]
    written = sorted(p.name for p in tmp.iterdir())
    print(f"workers' histories identical: {'yes' if same else 'NO'}; "
          f"test accuracy multi - single: {chief['test_accuracy'] - single['test_accuracy']:+.4f}"
          f"; folders written: {', '.join(written)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "multi_worker.json"
    out.write_text(json.dumps({"dataset": dataset, "epochs": int(epochs), "single": single,
                               "chief": chief, "worker1": other, "single_wall": single_wall,
                               "multi_wall": multi_wall, "identical": same}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
