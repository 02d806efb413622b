"""Issue 6's text-classifier figure: who is speaking? Each speech of Tiny Shakespeare (a line
`NAME:` followed by lines until a blank line) is labelled by its speaker; the 5 most frequent
speakers are kept and each speaker's speeches are split by position (first 80% train, last 20%
test), so train and test lines differ. `train-text-classifier` (the default bow, bilstm, the
seed's, and transformer) is scored on the test speeches through `classify-text`, next to the
majority-class rate and a bag-of-words logistic regression (scikit-learn) trained on the same
speeches.

Issue 26's small-data figure comes second: 80 short, perfectly separable texts (40 per class,
4 words of the class's 8), `--epochs 3`, then two new sentences through `classify-text`: their
labels and confidences, and the validation accuracy.

With `--baseline DIR` (a checkout of an earlier commit, e.g. `git worktree add --detach DIR
COMMIT`), the default `bow` of that checkout runs on the same data in the same run, one row
beside each figure of this one.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_text_classifier.py [--quick]
        [--baseline DIR] [--seeds N]

The bow rows are the mean of `--seeds` seeds (3): the test set is 177 speeches, so one seed's
accuracy moves by a few of them. Prints two tables and writes
benchmarks/results/text_classifier.json.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEAKER = re.compile(r"[A-Z][A-Za-z' ]*:")
SENTIMENT = {"positive": "wonderful great lovely excellent delightful superb charming brilliant",
             "negative": "terrible awful horrid dreadful boring poor dismal ugly"}
SENTENCES = {"what a wonderful, lovely film": "positive", "a terrible and awful mess": "negative"}


def dlkit(*args: str, stdin: str | None = None, root: Path = ROOT) -> object:
    """Run the real CLI of the checkout `root` with --json and return its JSON value."""
    cmd = [sys.executable, "-m", "dlkit", *args, "--json", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, input=stdin, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def revision(root: Path) -> str:
    """The checkout's short commit id (with + when its tree has changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True).stdout.strip()
    return (git("rev-parse", "--short", "HEAD") or "?") + ("+" if git("status", "--short",
                                                                       "--", "dlkit") else "")


def corpus() -> Path:
    roots = [os.environ.get("DLKIT_DATA", ""), str(ROOT.parent / "shared" / "datasets")]
    for root in roots:
        path = Path(root) / "tinyshakespeare" / "input.txt"
        if root and path.is_file():
            return path
    raise SystemExit("tinyshakespeare/input.txt not found; set DLKIT_DATA=../shared/datasets")


def speeches(text: str) -> list[tuple[str, str]]:
    """(speaker, speech as one line) in corpus order."""
    found = []
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) >= 2 and SPEAKER.fullmatch(lines[0]):
            found.append((lines[0][:-1], " ".join(line.strip() for line in lines[1:])))
    return found


def split(items: list[tuple[str, str]], speakers: int = 5, train_fraction: float = 0.8):
    counts = collections.Counter(name for name, _ in items)
    top = [name for name, _ in counts.most_common(speakers)]
    train, test = [], []
    for name in top:
        own = [(name, s) for n, s in items if n == name]
        cut = int(len(own) * train_fraction)
        train += own[:cut]
        test += own[cut:]
    return top, train, test


def bag_of_words(train, test) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                          LogisticRegression(C=10.0, max_iter=2000))
    model.fit([s for _, s in train], [n for n, _ in train])
    predicted = model.predict([s for _, s in test])
    return sum(p == n for p, (n, _) in zip(predicted, test, strict=True)) / len(test)


def small_separable(folder: Path) -> Path:
    """The 80 texts of issue 26 (the same as tests/test_text_classifier.py writes)."""
    rng = random.Random(0)
    for label, words in SENTIMENT.items():
        (folder / label).mkdir(parents=True)
        for i in range(40):
            text = " ".join(rng.sample(words.split(), 4))
            (folder / label / f"{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
    return folder


def small_data_row(name: str, root: Path, folder: Path, out: Path) -> dict:
    """Train the default for 3 epochs on the 80 texts, classify the two new sentences."""
    report = dlkit("train-text-classifier", "--data-dir", str(folder), "--epochs", "3", "-o",
                   str(out), root=root)
    labelled = dlkit("classify-text", "--model", str(out), *SENTENCES, root=root)
    return {"classifier": name, "val_accuracy": report["val_accuracy"],
            "labels": [p["label"] for p in labelled],
            "confidences": [p["confidence"] for p in labelled],
            "right": sum(p["label"] == want for p, want in
                         zip(labelled, SENTENCES.values(), strict=True)),
            "train_seconds": report["train_seconds"]}


def speaker_row(name: str, root: Path, args: list[str], data: Path, out: Path,
                test: list[tuple[str, str]], seeds: int = 1) -> dict:
    """Train on the speeches CSV with seeds 0..seeds-1, score classify-text on the test
    speeches: the mean over the seeds (and each seed's accuracy)."""
    stdin = "\n".join(s for _, s in test) + "\n"
    runs = []
    for seed in range(seeds):
        report = dlkit("train-text-classifier", "--csv", str(data), "--text-column", "speech",
                       "--label-column", "speaker", *args, "--val-split", "0", "--seed",
                       str(seed), "-o", str(out / str(seed)), root=root)
        predictions = dlkit("classify-text", "--model", str(out / str(seed)), "-",
                            stdin=stdin, root=root)
        correct = sum(p["label"] == n for p, (n, _) in zip(predictions, test, strict=True))
        runs.append({"test_accuracy": correct / len(test), "epochs": report["epochs"],
                     "mean_confidence": sum(p["confidence"] for p in predictions) /
                     len(predictions), "train_seconds": report["train_seconds"]})

    def mean(key: str) -> float:
        return sum(r[key] for r in runs) / len(runs)

    return {"classifier": f"{name}, {runs[0]['epochs']} epochs",
            "test_accuracy": mean("test_accuracy"),
            "seed_accuracies": [r["test_accuracy"] for r in runs],
            "mean_confidence": mean("mean_confidence"), "train_seconds": mean("train_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one epoch per model (smoke run)")
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit whose "
                        "default bow runs beside this one's")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per bow row (the test "
                        "set is small: one seed's accuracy moves by a few speeches)")
    options = parser.parse_args()
    quick, baseline = options.quick, options.baseline
    if baseline is not None and not (baseline / "dlkit" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {baseline} holds no dlkit checkout")
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-textclf-"))
    top, train, test = split(speeches(corpus().read_text(encoding="utf-8")))
    data = tmp / "train.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["speech", "speaker"])
        writer.writerows((s, n) for n, s in train)
    t0 = time.time()
    majority = max(collections.Counter(n for n, _ in test).values()) / len(test)
    rows = [{"classifier": "majority class", "test_accuracy": majority}]
    started = time.time()
    rows.append({"classifier": "bag-of-words logistic regression (tf-idf 1-2 grams)",
                 "test_accuracy": bag_of_words(train, test),
                 "train_seconds": time.time() - started})
    one_epoch = ["--epochs", "1"] if quick else []
    variants = {"bow (default)": ["--arch", "bow"],
                "bilstm (seed)": ["--arch", "bilstm", "--epochs", "12", "--seq-len", "120"],
                "transformer": ["--arch", "transformer", "--epochs", "20", "--seq-len", "120"]}
    if baseline is not None:
        rows.append(speaker_row(f"previous default bow ({revision(baseline)})", baseline,
                                one_epoch, data, tmp / "baseline", test, options.seeds))
    for arch, extra in variants.items():
        rows.append(speaker_row(f"dlkit {arch} ({revision(ROOT)})", ROOT, [*extra, *one_epoch],
                                data, tmp / arch.split()[0], test,
                                options.seeds if arch.startswith("bow") else 1))
    small = []
    folder = small_separable(tmp / "separable")
    if baseline is not None:
        small.append(small_data_row(f"previous default bow ({revision(baseline)})", baseline,
                                    folder, tmp / "small-baseline"))
    small.append(small_data_row(f"dlkit bow (default) ({revision(ROOT)})", ROOT, folder,
                                tmp / "small"))
    load_after = os.getloadavg()[0]
    print_speakers(rows, top, train, test)
    print_small(small)
    print(f"\nload average (1 min) {load_before:.2f} at the start, {load_after:.2f} at the end; "
          f"{os.cpu_count()} CPU cores")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("text_classifier-quick.json" if quick else "text_classifier.json")
    out.write_text(json.dumps({"rows": rows, "small_data": small, "speakers": top,
                               "train": len(train), "test": len(test),
                               "seconds": time.time() - t0, "load": [load_before, load_after],
                               "machine": f"{os.cpu_count()} CPU cores"}, indent=2) + "\n")
    print(f"wrote {out} ({time.time() - t0:.0f}s)")


def print_speakers(rows: list[dict], top: list[str], train: list, test: list) -> None:
    print(f"Tiny Shakespeare speaker identification: {', '.join(top)}; {len(train)} train / "
          f"{len(test)} test speeches (each speaker's last 20% by position)")
    width = max(len(r["classifier"]) for r in rows)
    print(f"{'classifier':<{width}}  {'test acc':>8}  {'mean conf':>9}  {'train s':>7}  "
          "per seed")
    for r in rows:
        conf = f"{r['mean_confidence']:>9.3f}" if "mean_confidence" in r else " " * 9
        secs = f"{r['train_seconds']:>7.1f}" if "train_seconds" in r else " " * 7
        seeds = " ".join(f"{a:.3f}" for a in r.get("seed_accuracies", []))
        print(f"{r['classifier']:<{width}}  {r['test_accuracy']:>8.4f}  {conf}  {secs}  "
              f"{seeds if len(r.get('seed_accuracies', [])) > 1 else ''}".rstrip())
    print("(test acc of a dlkit row: the mean over its seeds; mean conf: the mean confidence "
          "of classify-text's label)")


def print_small(rows: list[dict]) -> None:
    print(f"\n80 short separable texts (40 per class), --epochs 3; new sentences: "
          f"{'; '.join(f'{t!r} ({want})' for t, want in SENTENCES.items())}")
    width = max(len(r["classifier"]) for r in rows)
    print(f"{'classifier':<{width}}  {'val acc':>7}  {'right':>5}  labels (confidence)")
    for r in rows:
        said = ", ".join(f"{label} ({conf:.3f})" for label, conf in
                         zip(r["labels"], r["confidences"], strict=True))
        print(f"{r['classifier']:<{width}}  {r['val_accuracy']:>7.3f}  {r['right']:>3}/2  "
              f"{said}")


if __name__ == "__main__":
    main()
