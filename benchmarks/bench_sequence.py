"""Issue 6's sequence figure: `train-sequence` on the yearly sunspot numbers (1700-2008) that
statsmodels ships; test MAE/RMSE of each architecture against the naive and seasonal-naive
forecasts on the same (last 15%, chronological) test part. Needs statsmodels (the `dev` extra).

    python benchmarks/bench_sequence.py [--quick]

Prints a table and writes benchmarks/results/sequence.json.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, dlkit  # noqa: E402 (benchmarks/ is on sys.path)


def sunspots_csv(path: Path) -> Path:
    """statsmodels' yearly sunspot series as YEAR,SUNACTIVITY."""
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["YEAR", "SUNACTIVITY"])
        for year, value in zip(frame["YEAR"], frame["SUNACTIVITY"], strict=True):
            writer.writerow([int(year), value])
    return path


def main() -> None:
    quick = "--quick" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-seq-"))
    data = sunspots_csv(tmp / "sunspots.csv")
    t0 = time.time()
    variants = {"default": [], "simplernn": ["--arch", "simplernn"],
                "lstm": ["--arch", "lstm"],
                "gru, no AR part, no transform": ["--ar-order", "0", "--transform", "none"],
                "simplernn (the seed's), no AR, no transform":
                    ["--arch", "simplernn", "--ar-order", "0", "--transform", "none"]}
    epochs = [] if not quick else ["--epochs", "5"]
    runs = {name: dlkit("train-sequence", "--csv", str(data), "--column", "SUNACTIVITY",
                        "--time-column", "YEAR", *extra, *epochs, "-o", str(tmp / str(i)))
            for i, (name, extra) in enumerate(variants.items())}
    forecast = subprocess.run([sys.executable, "-m", "dlkit", "forecast", "--model",
                               str(tmp / "0"), "--csv", str(data), "--steps", "3"],
                              capture_output=True, text=True, cwd=ROOT)
    first = next(iter(runs.values()))
    rows = [{"forecaster": f"dlkit {name}: {r['transform']}, AR({r['ar_order']}) + {r['arch']}",
             "mae": r["test_mae"], "rmse": r["test_rmse"], "best_epoch": r["best_epoch"],
             "train_seconds": r["train_seconds"],
             "beats_all": r["test_rmse"] < min(r["naive_rmse"], r["seasonal_naive_rmse"],
                                               r["ar_rmse"])}
            for name, r in runs.items()]
    rows += [{"forecaster": "naive (last value)", "mae": first["naive_mae"],
              "rmse": first["naive_rmse"]},
             {"forecaster": f"seasonal naive (period {first['period']})",
              "mae": first["seasonal_naive_mae"], "rmse": first["seasonal_naive_rmse"]},
             {"forecaster": f"AR({first['ar_baseline_order']}) least squares (train+val)",
              "mae": first["ar_mae"], "rmse": first["ar_rmse"]}]
    print(f"sunspots 1700-2008 (statsmodels), window {first['window']}, horizon "
          f"{first['horizon']}, split train/val/test {first['points']}, test = "
          f"{first['points']['test']} last years; period from {first['period_source']}; "
          f"{first['device']} ({os.cpu_count()} cores)")
    print(f"{'forecaster':<58} {'test MAE':>9} {'test RMSE':>10} {'beats all':>10} "
          f"{'best ep':>7} {'train s':>7}")
    for r in rows:
        beats = "" if "beats_all" not in r else ("yes" if r["beats_all"] else "NO")
        extra = (f"{r['best_epoch']:>7} {r['train_seconds']:>7.1f}" if "best_epoch" in r
                 else "")
        print(f"{r['forecaster']:<58} {r['mae']:>9.2f} {r['rmse']:>10.2f} {beats:>10} {extra}")
    default = runs["default"]["test_rmse"] / first["ar_rmse"]
    print(f"default / AR baseline RMSE: {default:.3f} (goal: <= 0.90); load "
          f"{os.getloadavg()[0]:.2f}")
    print("\nforecast --steps 3 (default), stdout:\n" + forecast.stdout.strip())
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("sequence-quick.json" if quick else "sequence.json")
    out.write_text(json.dumps({"rows": rows, "period": first["period"],
                               "points": first["points"], "forecast_csv": forecast.stdout,
                               "seconds": time.time() - t0,
                               "machine": f"{os.cpu_count()} CPU cores"}, indent=2) + "\n")
    print(f"\nwrote {out} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
