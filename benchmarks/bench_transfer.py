"""Issue 14's figures: transfer learning against training from scratch, on the same small folder,
with the same time budget, side by side; and one-image `classify-image` with a keras-hub preset.

Real ImageNet weights cannot be downloaded here, so the benchmark makes a real pretrained
backbone itself: a keras-hub ResNet (3 stages, 1.2 M parameters, its converter scaling the
photos up to `--pretrain-size`) trained with Keras on the shared CIFAR-10 subset's classes 0-4
(airplane, automobile, bird, cat, deer) for `--pretrain-minutes`, saved with `save_to_preset`.
Then a small folder of classes 5-9 (dog, frog, horse, ship, truck; at most 100 training images
per class, written as PNG files from the shared training batches) is
learnt twice through the CLI with the same `--epochs` and `--max-minutes`:

- `dlkit train-cifar --data-dir FOLDER --backbone PRESET` (a new head, then fine-tuning);
- `dlkit train-cifar --data-dir FOLDER` (the default model, from scratch);

(`--defaults`: with train-cifar's own epochs and batch instead, issue 25's small-folder row:
`--per-class 45 --defaults --seeds 0,1,2` is 225 photos, three fine-tuning seeds) and both are
measured with `dlkit evaluate` on the shared test batch's classes 5-9. Last, the
wall time of `dlkit classify-image photo.jpg --model PRESET` with a MobileNetV3-small-sized
preset (random weights, 224 x 224), median of `--rounds`.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_transfer.py [--minutes 3]

Prints a table and writes benchmarks/results/transfer.json.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS, dlkit  # noqa: E402

PRETRAIN, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"]


def cifar() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The shared CIFAR-10 subset through dlkit's own reader (train, test)."""
    from dlkit.data.readers import load_cifar10

    data = load_cifar10(None)
    return data.x_train, data.y_train, data.x_test, data.y_test


def pretrain(folder: Path, x: np.ndarray, y: np.ndarray, minutes: float, size: int,
             seed: int) -> dict:
    """A keras-hub ResNet ImageClassifier trained on (x, y) for `minutes`, its converter
    scaling the 32x32 photos up to `size` (the ResNet stem divides by 4 at once), saved as a
    preset."""
    import keras
    import tensorflow as tf
    from hub_presets import resnet_task

    task = resnet_task(len(PRETRAIN), size, (64, 128, 256), seed=seed)
    task.compile(optimizer=keras.optimizers.AdamW(2e-3, weight_decay=5e-4),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])

    def augment(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.image.random_flip_left_right(tf.cast(image, tf.float32))
        image = tf.image.random_crop(tf.pad(image, [[4, 4], [4, 4], [0, 0]], "REFLECT"),
                                     (32, 32, 3))
        return image, label

    data = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
            .map(augment).batch(64).repeat())

    class Budget(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = time.perf_counter() - self.start > minutes * 60

    start = time.perf_counter()
    history = task.fit(data, epochs=1000, steps_per_epoch=len(x) // 64, verbose=0,
                       callbacks=[Budget()])
    task.save_to_preset(str(folder))
    return {"epochs": len(history.history["loss"]), "seconds": time.perf_counter() - start,
            "train_accuracy": float(history.history["accuracy"][-1]),
            "parameters": task.count_params()}


def write_folder(root: Path, x: np.ndarray, y: np.ndarray, per_class: int | None) -> int:
    """PNG files in one subfolder per class name (classes 5-9 only)."""
    import cv2

    count = 0
    for label in TARGET:
        (root / NAMES[label]).mkdir(parents=True)
        picked = np.flatnonzero(y == label)[:per_class]
        for i in picked:
            cv2.imwrite(str(root / NAMES[label] / f"{i}.png"), x[i][..., ::-1])
        count += len(picked)
    return count


def classify_seconds(preset: Path, image: Path, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "dlkit", "classify-image", str(image),
                               "--model", str(preset), "-q"], capture_output=True, text=True,
                              cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"classify-image failed:\n{done.stderr}")
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-minutes", type=float, default=6.0)
    parser.add_argument("--pretrain-size", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=3.0, help="each fine-tuning run")
    parser.add_argument("--epochs", type=int, default=1000, help="enough for the time budget "
                        "to end both runs")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="pretraining seed")
    parser.add_argument("--seeds", default="0", help="fine-tuning seeds, comma-separated: "
                        "every run is repeated with each")
    parser.add_argument("--defaults", action="store_true", help="train-cifar's own epochs "
                        "and batch (no --epochs/--max-minutes): issue 25's small-folder row")
    parser.add_argument("--keep", type=Path, help="keep the pretrained preset in this folder "
                        "(and reuse it when it is there)")
    parser.add_argument("--variant", action="append", default=[],
                        help="extra train-cifar options for one more --backbone run (repeat)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    seeds = [int(seed) for seed in args.seeds.split(",")]
    load = os.getloadavg()
    x_train, y_train, x_test, y_test = cifar()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mask = np.isin(y_train, PRETRAIN)
        preset = args.keep or tmp / "pretrained"
        if (preset / "config.json").is_file():
            pre = json.loads((preset / "pretraining.json").read_text())
        else:
            pre = pretrain(preset, x_train[mask], y_train[mask], args.pretrain_minutes,
                           args.pretrain_size, args.seed)
            (preset / "pretraining.json").write_text(json.dumps(pre))
        n_train = write_folder(tmp / "photos", x_train, y_train, args.per_class)
        n_test = write_folder(tmp / "test", x_test, y_test, None)
        budget = [] if args.defaults else ["--epochs", str(args.epochs), "--max-minutes",
                                           str(args.minutes)]
        backbone = ["--backbone", str(preset)]
        plan = [("transfer (--backbone)", backbone),
                *[(f"transfer {v}", [*backbone, *v.split()]) for v in args.variant],
                ("from scratch", [])]
        runs: dict[str, dict] = {}
        for seed in seeds:
            for index, (name, extra) in enumerate(plan):
                out = tmp / f"run{index}-seed{seed}"
                trained = dlkit("train-cifar", "--data-dir", str(tmp / "photos"), *budget,
                                "--seed", str(seed), *extra, "-o", str(out))
                scored = dlkit("evaluate", str(tmp / "test"), "--model", str(out))
                runs[f"{name}, seed {seed}"] = {"name": name, "seed": seed, "train": trained,
                                                "test_accuracy": scored["accuracy"]}
        from hub_presets import save_mobilenet_preset

        mobilenet = save_mobilenet_preset(tmp / "mobilenet")
        photo = next((tmp / "test" / NAMES[TARGET[0]]).iterdir())
        seconds = classify_seconds(mobilenet, photo, args.rounds)
    load_after = os.getloadavg()

    print(f"CIFAR-10 subset: pretrained at {args.pretrain_size}x{args.pretrain_size} on "
          f"classes 0-4 ({int(mask.sum())} images, "
          f"{pre['epochs']} epochs in {pre['seconds']:.0f} s, train accuracy "
          f"{pre['train_accuracy']:.3f}, {pre['parameters']:,} parameters); fine-tuned on "
          f"{n_train} images of classes 5-9 (at most {args.per_class} per class), tested on "
          f"{n_test} test images of classes 5-9; each run "
          f"{'with the defaults' if args.defaults else ' '.join(budget)}; load "
          f"{load[0]:.2f} -> {load_after[0]:.2f}")
    print(f"{'run':<44}{'test accuracy':>14}{'epochs':>8}{'batch':>7}{'train s':>9}"
          f"{'images/s':>10}")
    for key, r in runs.items():
        t = r["train"]
        print(f"{key:<44}{r['test_accuracy']:>14.4f}{t['epochs_completed']:>8}"
              f"{t.get('batch_size', '-'):>7}{t['train_seconds']:>9.1f}"
              f"{t['images_per_second']:>10.0f}")
    gains = {seed: (runs[f"transfer (--backbone), seed {seed}"]["test_accuracy"]
                    - runs[f"from scratch, seed {seed}"]["test_accuracy"]) for seed in seeds}
    for seed, gain in gains.items():
        transfer = runs[f"transfer (--backbone), seed {seed}"]["test_accuracy"]
        met = gain >= 0.05 and transfer >= 0.60
        print(f"seed {seed}: transfer - scratch {gain * 100:+.1f} points, transfer "
              f"{transfer:.4f} (goal: >= +5 points and >= 0.60: {'met' if met else 'NOT met'})")
    print(f"classify-image, one photo, MobileNetV3-small-sized preset (random weights, 224x224):"
          f" median {statistics.median(seconds):.2f} s of {args.rounds} "
          f"({', '.join(f'{s:.2f}' for s in seconds)})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transfer.json").write_text(json.dumps({
        "pretrain": pre, "runs": runs,
        "gain_points": {str(seed): gain * 100 for seed, gain in gains.items()},
        "classify_image_seconds": seconds, "load_average": [load, load_after],
        "settings": vars(args)}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
