"""Issue 2's figures: train-mnist and train-cifar accuracy and time on the real datasets, and
train-cifar's throughput against the seed script, measured side by side in one run.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_classifiers.py [--quick]

Prints a table and writes benchmarks/results/classifiers.json. `--quick` runs a few epochs of
everything (a smoke test of the script, not figures).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT  # noqa: E402 (benchmarks/ is on sys.path)
from common import dlkit as run_dlkit


def dlkit(*args: str) -> dict:
    """`common.dlkit`, plus the peak memory so far (`peak_rss_mib`)."""
    result = run_dlkit(*args)
    result["peak_rss_mib"] = _peak_rss_mib()
    return result


def _peak_rss_mib() -> float:
    """Peak resident memory of the largest child so far (each run is measured right after it,
    and the fashion-mnist runs come before any bigger one)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def seed_script(name: str, *args: str) -> dict:
    """Run one of the seed documents' scripts (benchmarks/seed/) and return its JSON line."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seed" / name), *args],
                         capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"seed {name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    quick = "--quick" in sys.argv
    ep = (lambda full: 1) if quick else (lambda full: full)
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-"))
    rows: list[dict] = []

    def row(figure: str, value: float, target: str, ok: bool | None, note: str = "") -> None:
        rows.append({"figure": figure, "value": round(value, 4), "target": target,
                     "ok": ok, "note": note})

    t0 = time.time()
    seed_fm = seed_script("fashion_mlp.py", str(ep(5)))
    row("fashion-mnist seed script mlp 5 ep: test acc", seed_fm["test_accuracy"], "ref", None,
        f"{seed_fm['train_seconds']:.0f}s")
    mlp = dlkit("train-mnist", "--dataset", "fashion-mnist", "--arch", "mlp", "--epochs",
                str(ep(5)), "-o", str(tmp / "fm-mlp"))
    row("fashion-mnist dlkit --arch mlp 5 ep: test acc", mlp["test_accuracy"], ">= 0.86",
        mlp["test_accuracy"] >= 0.86, f"{mlp['train_seconds']:.0f}s")
    cnn = dlkit("train-mnist", "--dataset", "fashion-mnist", "--epochs", str(ep(6)),
                "-o", str(tmp / "fm-cnn"))
    row("fashion-mnist dlkit cnn (default) 6 ep: test acc", cnn["test_accuracy"], ">= 0.915",
        cnn["test_accuracy"] >= 0.915)
    row("fashion-mnist dlkit cnn: training seconds", cnn["train_seconds"], "<= 150",
        cnn["train_seconds"] <= 150)
    row("fashion-mnist dlkit: peak memory of the runs so far (MiB)", cnn["peak_rss_mib"],
        "< 3072", cnn["peak_rss_mib"] < 3072)
    mnist = dlkit("train-mnist", "--dataset", "mnist", "--epochs", str(ep(12)),
                  "-o", str(tmp / "mnist"))
    row("mnist (8k/1k subset) dlkit cnn 12 ep: test acc", mnist["test_accuracy"], ">= 0.975",
        mnist["test_accuracy"] >= 0.975, f"{mnist['train_seconds']:.0f}s")

    seed_cifar = seed_script("cifar_cnn.py", str(ep(10)), "32")
    row("cifar10 (4068/1017) seed script 10 ep: test acc", seed_cifar["test_accuracy"],
        "~0.50", None, f"{seed_cifar['train_seconds']:.0f}s")
    same = dlkit("train-cifar", "--arch", "seed", "--epochs", str(ep(10)), "--batch-size", "32",
                 "--val-split", "0", "--no-augment", "--label-smoothing", "0",
                 "-o", str(tmp / "cifar-seed"))
    ratio = same["images_per_second"] / seed_cifar["images_per_second"]
    row("cifar10 seed script: images/s (batch 32)", seed_cifar["images_per_second"], "ref",
        None)
    row("cifar10 dlkit --arch seed: images/s (batch 32, same work)", same["images_per_second"],
        "", None, f"acc {same['test_accuracy']:.3f}")
    row("cifar10 throughput ratio dlkit/seed", ratio, ">= 1.2", ratio >= 1.2)
    aug = dlkit("train-cifar", "--arch", "seed", "--epochs", str(ep(10)), "--batch-size", "32",
                "--val-split", "0", "-o", str(tmp / "cifar-seed-aug"))
    row("cifar10 dlkit --arch seed with augmentation: images/s", aug["images_per_second"],
        "", None, f"ratio {aug['images_per_second'] / seed_cifar['images_per_second']:.2f}, "
        f"acc {aug['test_accuracy']:.3f}")
    res = dlkit("train-cifar", "--epochs", str(ep(20)), "--val-split", "0.05",
                "-o", str(tmp / "cifar-resnet"))
    row("cifar10 dlkit resnet (default) 20 ep: test acc", res["test_accuracy"], ">= 0.62",
        res["test_accuracy"] >= 0.62)
    row("cifar10 dlkit resnet: training seconds", res["train_seconds"], "<= 300",
        res["train_seconds"] <= 300)

    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("classifiers-quick.json" if quick else "classifiers.json")
    out.write_text(json.dumps({"rows": rows, "seconds": time.time() - t0,
                               "machine": f"{os.cpu_count()} CPU cores"}, indent=2) + "\n")
    print(f"\nwrote {out} ({time.time() - t0:.0f}s)")


def print_table(rows: list[dict]) -> None:
    width = max(len(r["figure"]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>10}  {'target':>9}  {'ok':>4}  note")
    for r in rows:
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        print(f"{r['figure']:<{width}}  {r['value']:>10.4f}  {r['target']:>9}  {ok:>4}  "
              f"{r['note']}")


if __name__ == "__main__":
    main()
