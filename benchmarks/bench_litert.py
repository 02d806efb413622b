"""Issue 15's figures: LiteRT against the SavedModel path and the seed script, side by side.

- one-image `classify-image` wall time and peak memory (median of N alternating rounds):
  `--backend litert`, `--backend tensorflow` (the SavedModel) and the seed document's script;
- `generate-text --length 200` (time to the last character) on a character model, both backends;
- a folder of 2,000 PNG files on both backends (images/s end to end and in the pipeline);
- test accuracy of the float32, dynamic-range and int8 exports of the CIFAR model.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_litert.py [--rounds 7]

Prints a table and writes benchmarks/results/litert.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_classify import SEED_SCRIPT, pipeline_rate, write_images  # noqa: E402


def measured(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command; (the process, wall seconds, peak resident MiB of that process, from
    wait4). stderr goes to a file, so neither pipe can fill up and block the child."""
    with tempfile.TemporaryFile() as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, cwd=ROOT)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        err = err_file.read()
    done = subprocess.CompletedProcess(cmd, proc.returncode, out.decode(), err.decode())
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return done, seconds, usage.ru_maxrss / 1024


def dlkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "dlkit", *args]


def lite_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    from dlkit.core.litert import LiteModel

    model = LiteModel.from_bytes(path.read_bytes(), str(path))
    (key,) = model.signature_keys
    (name,) = model.inputs(key)
    (output,) = model.outputs(key)
    logits = np.concatenate([model(key, **{name: x[i:i + 200]})[output]
                             for i in range(0, len(x), 200)])
    return float((logits.argmax(1) == y).mean())


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 7
    os.environ.setdefault("DLKIT_DATA", str(ROOT.parent / "shared" / "datasets"))
    from dlkit.data.readers import load_cifar10

    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-litert-"))
    rows: list[dict] = []

    def row(figure: str, value: float, note: str = "") -> None:
        rows.append({"figure": figure, "value": round(value, 4), "note": note})
        print(f"  {figure}: {value:.4f} {note}", file=sys.stderr, flush=True)

    cifar = load_cifar10(None)
    model = tmp / "cifar"
    measured(dlkit("train-cifar", "--epochs", "2", "-o", str(model), "--quiet"))
    text = tmp / "text"
    measured(dlkit("train-text", "--epochs", "1", "--limit", "200000", "-o", str(text),
                   "--quiet"))

    single = tmp / "single"
    write_images(single, cifar.x_test[:1], "jpg", size=224)
    photo = str(next(single.iterdir()))
    seed_py = tmp / "seed_classify.py"
    seed_py.write_text(SEED_SCRIPT)
    commands = {
        "classify-image, LiteRT": dlkit("classify-image", photo, "--model", str(model),
                                        "--backend", "litert", "--quiet"),
        "classify-image, SavedModel": dlkit("classify-image", photo, "--model", str(model),
                                            "--backend", "tensorflow", "--quiet"),
        "seed script": [sys.executable, str(seed_py), str(model), photo],
        "generate-text 200, LiteRT": dlkit("generate-text", "--model", str(text), "--length",
                                           "200", "--backend", "litert", "--quiet"),
        "generate-text 200, TensorFlow": dlkit("generate-text", "--model", str(text),
                                               "--length", "200", "--backend", "tensorflow",
                                               "--quiet"),
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, list[float]] = {name: [] for name in commands}
    outputs: dict[str, list[str]] = {name: [] for name in commands}
    for _ in range(rounds + 1):  # alternating; the first round warms the file cache
        for name, cmd in commands.items():
            proc, seconds, peak = measured(cmd)
            walls[name].append(seconds)
            peaks[name].append(peak)
            outputs[name].append(proc.stdout)
    wall = {name: statistics.median(v[1:]) for name, v in walls.items()}
    peak = {name: statistics.median(v[1:]) for name, v in peaks.items()}
    for name in commands:
        row(f"{name}: wall s", wall[name], f"median of {rounds}; peak {peak[name]:.0f} MiB")
    row("classify-image: SavedModel / LiteRT wall", wall["classify-image, SavedModel"]
        / wall["classify-image, LiteRT"], "goal >= 5")
    row("classify-image: seed script / LiteRT wall", wall["seed script"]
        / wall["classify-image, LiteRT"])
    row("generate-text: TensorFlow / LiteRT wall", wall["generate-text 200, TensorFlow"]
        / wall["generate-text 200, LiteRT"], "goal >= 5")
    labels = {name: {line.split("\t")[1] for line in outputs[name][1:]}
              for name in ("classify-image, LiteRT", "classify-image, SavedModel")}
    row("classify-image: same label on both backends",
        float(labels["classify-image, LiteRT"] == labels["classify-image, SavedModel"]))

    folder = tmp / "png2000"
    write_images(folder, cifar.x_train[:2000], "png")
    for backend in ("litert", "tensorflow"):
        proc, seconds, mib = measured(dlkit("classify-image", str(folder), "--model",
                                            str(model), "--backend", backend))
        assert len(proc.stdout.splitlines()) == 2000
        row(f"2,000 PNG folder, {backend}: images/s end to end", 2000 / seconds,
            f"{seconds:.1f}s wall, peak {mib:.0f} MiB")
        row(f"2,000 PNG folder, {backend}: images/s in the pipeline", pipeline_rate(proc.stderr))

    x, y = cifar.x_test.astype(np.float32), cifar.y_test
    files = {"float32": model / "model.tflite"}
    for quantize in ("dynamic", "int8"):
        files[quantize] = tmp / f"cifar-{quantize}.tflite"
        measured(dlkit("export", str(model), "--quantize", quantize, "-o",
                       str(files[quantize]), "--quiet"))
    for name, path in files.items():
        row(f"CIFAR test accuracy, {name} .tflite", lite_accuracy(path, x, y),
            f"{path.stat().st_size / 1e6:.2f} MB, {len(y)} test images")

    load_end = os.getloadavg()
    print(f"\nbench_litert: one-image calls, median of {rounds} alternating rounds; load "
          f"average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; 2 CPU cores")
    width = max(len(r["figure"]) for r in rows)
    for r in rows:
        print(f"{r['figure']:<{width}}  {r['value']:>10.4f}  {r['note']}")
    out = ROOT / "benchmarks" / "results" / "litert.json"
    out.write_text(json.dumps({"rows": rows, "load": [load_start, load_end]}, indent=1) + "\n")


if __name__ == "__main__":
    main()
