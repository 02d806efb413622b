"""Issue 3's figures for `dlkit classify-image`, measured through the real CLI in subprocesses:

- one call on a single file, wall time, side by side with the seed's approach (a script that
  imports TensorFlow, loads the model, cv2.imread, resize, predict): ratio dlkit / seed <= 1.0;
- throughput on a folder of 2,000 PNG files (CPU), end to end and inside the pipeline;
- accuracy of a train-cifar model on the real CIFAR-10 test images written as PNG, JPEG and
  upscaled 224x224 PNG files, against its accuracy on the same images as arrays (within 2 points);
- the same for an MNIST model on the test digits drawn as dark ink on a light sheet of paper.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_classify.py [--rounds N]

Prints a table and writes benchmarks/results/classify.json.
"""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

# The seed document's way to classify one photo, as a script of its own.
SEED_SCRIPT = '''
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import cv2
import numpy as np
import tensorflow as tf

model_dir, path = sys.argv[1], sys.argv[2]
class_names = json.load(open(os.path.join(model_dir, "metadata.json")))["class_names"]
model = tf.keras.models.load_model(os.path.join(model_dir, "model.keras"))
image = cv2.imread(path)
image = cv2.cvtColor(cv2.resize(image, (32, 32)), cv2.COLOR_BGR2RGB)
prediction = model.predict(np.expand_dims(image.astype("float32"), 0), verbose=0)
print(path, class_names[int(np.argmax(prediction))], float(np.max(prediction)))
'''

SUMMARY = re.compile(r"classified (\d+) images? in ([\d.]+) s \(([\d.]+) images/s\)")


CPU_SECONDS: list[float] = []  # user + system CPU time of each finished `run`


def run(cmd: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command; returns it and its wall time (its CPU time goes to CPU_SECONDS)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU_SECONDS.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return proc, seconds


def dlkit(*args: str, ok_codes: tuple[int, ...] = (0,)) -> tuple[subprocess.CompletedProcess,
                                                                 float]:
    proc, seconds = run([sys.executable, "-m", "dlkit", *args])
    if proc.returncode not in ok_codes:
        raise SystemExit(f"dlkit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc, seconds


def write_images(folder: Path, images: Sequence[np.ndarray], ext: str,
                 size: int | None = None) -> None:
    import cv2

    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        bgr = np.ascontiguousarray(image[..., ::-1]) if image.shape[-1] == 3 else image
        if size is not None:
            bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_CUBIC)
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == "jpg" else []
        cv2.imwrite(str(folder / f"{i:05d}.{ext}"), bgr, params)


def ink_on_paper(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit as a photo of dark ink on a light, slightly uneven sheet of paper."""
    import cv2

    side = int(rng.integers(90, 160))
    ink = cv2.resize(digit, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    height, width = side + int(rng.integers(30, 90)), side + int(rng.integers(30, 90))
    top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
    canvas = np.zeros((height, width), np.float32)
    canvas[top: top + side, left: left + side] = ink
    paper = rng.uniform(190, 235) + rng.normal(0, 4, (height, width))
    shade = np.linspace(0, rng.uniform(-20, 20), width)[None, :]
    grey = paper + shade - canvas / 255.0 * (paper - 35)
    tint = np.array([rng.uniform(0.95, 1.0), 1.0, rng.uniform(0.95, 1.0)])
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


def file_accuracy(folder: Path, model: Path, truth: np.ndarray, names: list[str],
                  *extra: str) -> tuple[float, float]:
    """Accuracy of classify-image on a folder of images named in label order, and images/s."""
    proc, seconds = dlkit("classify-image", str(folder), "--model", str(model), "--json",
                          *extra)
    entries = json.loads(proc.stdout)
    assert len(entries) == len(truth), (len(entries), len(truth))
    predicted = np.array([names.index(e["label"]) for e in entries])
    return float((predicted == truth).mean()), pipeline_rate(proc.stderr)


def pipeline_rate(stderr: str) -> float:
    match = SUMMARY.search(stderr)
    return float(match.group(3)) if match else float("nan")


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 5
    if not os.environ.get("DLKIT_DATA"):
        os.environ["DLKIT_DATA"] = str(ROOT.parent / "shared" / "datasets")
    from dlkit.data.readers import load_cifar10, load_mnist_family

    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-classify-"))
    rows: list[dict] = []

    def row(figure: str, value: float, target: str, ok: bool | None, note: str = "") -> None:
        rows.append({"figure": figure, "value": round(value, 4), "target": target, "ok": ok,
                     "note": note})
        print(f"  {figure}: {value:.4f} {note}", file=sys.stderr, flush=True)

    t0 = time.time()
    cifar = load_cifar10(None)
    model = tmp / "cifar"
    proc, train_s = dlkit("train-cifar", "--arch", "seed", "--epochs", "3", "-o", str(model),
                          "--json", "--quiet")
    array_acc = json.loads(proc.stdout)["test_accuracy"]
    row("cifar seed CNN 3 ep: test acc on arrays", array_acc, "ref", None,
        f"{len(cifar.x_test)} test images, trained in {train_s:.0f}s")

    # 1. One file: seed script vs classify-image, alternating, median of the rounds.
    single = tmp / "single" / "photo.jpg"
    write_images(single.parent, cifar.x_test[:1], "jpg", size=224)
    single = next(single.parent.iterdir())
    seed_py = tmp / "seed_classify.py"
    seed_py.write_text(SEED_SCRIPT)
    times: dict[str, list[float]] = {"seed": [], "dlkit": [], "dlkit-keras": []}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    commands = {
        "seed": [sys.executable, str(seed_py), str(model), str(single)],
        "dlkit": [sys.executable, "-m", "dlkit", "classify-image", str(single), "--model",
                  str(model), "--quiet"],
        "dlkit-keras": [sys.executable, "-m", "dlkit", "classify-image", str(single),
                        "--model", str(model / "model.keras"), "--quiet"],
    }
    for _ in range(rounds + 1):  # the first round warms the file cache and is dropped
        for name, cmd in commands.items():
            proc, seconds = run(cmd)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed:\n{proc.stderr}")
            times[name].append(seconds)
            cpu[name].append(CPU_SECONDS[-1])
    seed_s = statistics.median(times["seed"][1:])
    dlkit_s = statistics.median(times["dlkit"][1:])
    keras_s = statistics.median(times["dlkit-keras"][1:])
    row("one file: seed script wall (s)", seed_s, "ref", None,
        f"median of {rounds}; import TF + load .keras + imread + predict")
    row("one file: dlkit classify-image wall (s)", dlkit_s, "ref", None,
        f"median of {rounds}; model folder (SavedModel)")
    row("one file: dlkit / seed ratio", dlkit_s / seed_s, "<= 1.0", dlkit_s / seed_s <= 1.0)
    seed_cpu, dlkit_cpu = (statistics.median(cpu[n][1:]) for n in ("seed", "dlkit"))
    row("one file: seed script CPU (s)", seed_cpu, "ref", None, "user + system, median")
    row("one file: dlkit classify-image CPU (s)", dlkit_cpu, "ref", None,
        "steadier than wall time on a busy machine")
    row("one file: dlkit / seed CPU-time ratio", dlkit_cpu / seed_cpu, "<= 1.0",
        dlkit_cpu / seed_cpu <= 1.0)
    row("one file: dlkit --model model.keras wall (s)", keras_s, "ref", None,
        "for comparison: Keras is imported to load a .keras file")

    # 2. Throughput on a folder of 2,000 PNG files.
    folder = tmp / "png2000"
    write_images(folder, cifar.x_train[:2000], "png")
    proc, seconds = dlkit("classify-image", str(folder), "--model", str(model), "--json")
    assert len(json.loads(proc.stdout)) == 2000
    row("2,000 PNG (32x32) folder: images/s end to end", 2000 / seconds, "ref", None,
        f"{seconds:.1f}s wall incl. start-up")
    row("2,000 PNG (32x32) folder: images/s in the pipeline", pipeline_rate(proc.stderr),
        "ref", None, "decode + batch + predict, after start-up")

    # 3. Real-data accuracy through files vs arrays.
    names, truth = cifar.class_names, cifar.y_test
    for kind, ext, size in (("PNG 32x32", "png", None), ("JPEG q95 32x32", "jpg", None),
                            ("PNG upscaled 224x224", "png", 224)):
        sub = tmp / f"test-{ext}-{size}"
        write_images(sub, cifar.x_test, ext, size)
        acc, rate = file_accuracy(sub, model, truth, names)
        row(f"cifar test as {kind}: acc via classify-image", acc,
            f"|diff| <= 0.02 ({array_acc:.4f})", abs(acc - array_acc) <= 0.02,
            f"{rate:.0f} images/s in the pipeline")

    # 4. MNIST: the test digits drawn as dark ink on paper, --invert auto.
    mnist_model = tmp / "mnist"
    proc, train_s = dlkit("train-mnist", "--dataset", "mnist", "--epochs", "3", "-o",
                          str(mnist_model), "--json", "--quiet")
    mnist_acc = json.loads(proc.stdout)["test_accuracy"]
    mnist = load_mnist_family("mnist", None)
    row("mnist cnn 3 ep: test acc on arrays", mnist_acc, "ref", None,
        f"{len(mnist.x_test)} test digits, trained in {train_s:.0f}s")
    rng = np.random.default_rng(0)
    paper = tmp / "mnist-paper"
    write_images(paper, [ink_on_paper(d, rng) for d in mnist.x_test], "jpg")
    acc, _ = file_accuracy(paper, mnist_model, mnist.y_test, mnist.class_names)
    row("mnist test as ink-on-paper JPEG photos: acc", acc, f"|diff| <= 0.02 ({mnist_acc:.4f})",
        abs(acc - mnist_acc) <= 0.02, "--invert auto (default)")
    acc_no, _ = file_accuracy(paper, mnist_model, mnist.y_test, mnist.class_names,
                              "--invert", "no")
    row("mnist ink-on-paper photos with --invert no: acc", acc_no, "ref", None,
        "what a plain resize gives")

    total = time.time() - t0
    print_table(rows, total)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "classify.json"
    out.write_text(json.dumps({"rows": rows, "single_file_seconds": times,
                               "single_file_cpu_seconds": cpu,
                               "total_seconds": round(total, 1),
                               "cpu_count": os.cpu_count()}, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(ROOT)}")


def print_table(rows: list[dict], total: float) -> None:
    width = max(len(r["figure"]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>10}  {'target':<22}  ok    note")
    print("-" * (width + 60))
    for r in rows:
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        print(f"{r['figure']:<{width}}  {r['value']:>10.4f}  {r['target']:<22}  {ok:<4}  "
              f"{r['note']}")
    print(f"total benchmark time: {total:.0f}s on CPU ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
