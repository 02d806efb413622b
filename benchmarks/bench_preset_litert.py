"""Issue 28's figure for keras-hub image presets on LiteRT: `classify-image` on one photo with a
MobileNetV3-small-sized ImageClassifier (224x224, 1,000 classes, random weights: no download
here), run as the preset itself (TensorFlow and keras-hub) and as the folder `dlkit export
PRESET -o FOLDER` makes of it (LiteRT), each a fresh process, wall time of the whole command
(goal: <= 1 s on LiteRT), and how far apart their answers are. The photo is 224x224, the
preset's own size, so both see the same pixels (for other sizes the preset's converter crops
and resizes in its own way); with random weights the 1,000 probabilities are all near 0.001,
so the top-1 of two backends can differ on a near-tie: the table gives the largest difference
between the five best confidences instead.

    python benchmarks/bench_preset_litert.py [--runs 3]

Prints a table with the load average and writes benchmarks/results/preset_litert.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def classify(image: Path, model: Path) -> tuple[float, dict]:
    """Wall seconds of `dlkit classify-image IMAGE --model MODEL --json`, and its answer."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dlkit", "classify-image", str(image),
                          "--model", str(model), "--json", "--quiet", "--top-k", "5"],
                         capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"classify-image --model {model} failed:\n{out.stderr}")
    return seconds, json.loads(out.stdout)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import cv2
    from hub_presets import save_mobilenet_preset

    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-preset-"))
    preset = save_mobilenet_preset(tmp / "mobilenet")
    image = tmp / "photo.jpg"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(image), cv2.GaussianBlur(rng.integers(0, 255, (224, 224, 3))
                                             .astype(np.uint8), (0, 0), 5))
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    exported = subprocess.run([sys.executable, "-m", "dlkit", "export", str(preset), "-o",
                               str(tmp / "folder"), "--quiet"], capture_output=True, text=True,
                              cwd=ROOT)
    export_seconds = time.perf_counter() - start
    if exported.returncode != 0:
        raise SystemExit(f"export failed:\n{exported.stderr}")
    times: dict[str, list[float]] = {"preset (TensorFlow)": [], "exported folder (LiteRT)": []}
    answers = {}
    for _ in range(args.runs):  # interleaved, so both see the same machine
        for label, model in (("preset (TensorFlow)", preset),
                             ("exported folder (LiteRT)", tmp / "folder")):
            seconds, answers[label] = classify(image, model)
            times[label].append(seconds)
    load1 = os.getloadavg()[0]
    rows = [{"model": label, "median_s": statistics.median(t), "runs": t,
             "label": answers[label]["label"], "confidence": answers[label]["confidence"]}
            for label, t in times.items()]
    print(f"{'model':<26} {'one image (s)':>13}  top-1")
    for row in rows:
        print(f"{row['model']:<26} {row['median_s']:>13.2f}  {row['label']} "
              f"({row['confidence']:.4f})")
    lite = rows[1]["median_s"]
    confidences = [[t["confidence"] for t in answers[label]["top"]] for label in times]
    gap = float(np.max(np.abs(np.subtract(*confidences))))
    print(f"export took {export_seconds:.1f} s; LiteRT goal <= 1 s: "
          f"{'met' if lite <= 1.0 else 'NOT met'}; the five best confidences differ by at most "
          f"{gap:.1e}; load average {load0:.2f} at the start, {load1:.2f} at the end, "
          f"{os.cpu_count()} CPU cores")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "preset_litert.json"
    out.write_text(json.dumps({"rows": rows, "export_seconds": export_seconds,
                               "top5_confidence_gap": gap, "load": [load0, load1]},
                              indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
