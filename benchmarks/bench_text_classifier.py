"""Issue 6's text-classifier figure: who is speaking? Each speech of Tiny Shakespeare (a line
`NAME:` followed by lines until a blank line) is labelled by its speaker; the 5 most frequent
speakers are kept and each speaker's speeches are split by position (first 80% train, last 20%
test), so train and test lines differ. `train-text-classifier` (the default bow, bilstm, the
seed's, and transformer) is scored on the test speeches through `classify-text`, next to the
majority-class rate and a bag-of-words logistic regression (scikit-learn) trained on the same
speeches.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_text_classifier.py [--quick]

Prints a table and writes benchmarks/results/text_classifier.json.
"""

from __future__ import annotations

import collections
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEAKER = re.compile(r"[A-Z][A-Za-z' ]*:")


def dlkit(*args: str, stdin: str | None = None) -> object:
    """Run the real CLI with --json and return its JSON value."""
    cmd = [sys.executable, "-m", "dlkit", *args, "--json", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, input=stdin)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


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


def main() -> None:
    quick = "--quick" in sys.argv
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
    stdin = "\n".join(s for _, s in test) + "\n"
    variants = {"bow": ["--arch", "bow"],  # the default
                "bilstm": ["--arch", "bilstm", "--epochs", "12", "--seq-len", "120"],
                "transformer": ["--arch", "transformer", "--epochs", "20", "--seq-len", "120"]}
    for arch, extra in variants.items():
        report = dlkit("train-text-classifier", "--csv", str(data), "--text-column", "speech",
                       "--label-column", "speaker", *extra, *(["--epochs", "1"] if quick else []),
                       "--val-split", "0", "-o", str(tmp / arch))
        predictions = dlkit("classify-text", "--model", str(tmp / arch), "-", stdin=stdin)
        correct = sum(p["label"] == n for p, (n, _) in zip(predictions, test, strict=True))
        rows.append({"classifier": f"dlkit {arch}" + {"bilstm": " (seed)", "bow": " (default)"}
                     .get(arch, "") +
                     f", {report['epochs']} epochs", "test_accuracy": correct / len(test),
                     "train_seconds": report["train_seconds"]})
    print(f"Tiny Shakespeare speaker identification: {', '.join(top)}; {len(train)} train / "
          f"{len(test)} test speeches (each speaker's last 20% by position); "
          f"{os.cpu_count()} CPU cores")
    width = max(len(r["classifier"]) for r in rows)
    print(f"{'classifier':<{width}}  {'test acc':>8}  {'train s':>7}")
    for r in rows:
        secs = f"{r['train_seconds']:>7.1f}" if "train_seconds" in r else ""
        print(f"{r['classifier']:<{width}}  {r['test_accuracy']:>8.4f}  {secs}")
    print(f"load {os.getloadavg()[0]:.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("text_classifier-quick.json" if quick else "text_classifier.json")
    out.write_text(json.dumps({"rows": rows, "speakers": top, "train": len(train),
                               "test": len(test), "seconds": time.time() - t0,
                               "machine": f"{os.cpu_count()} CPU cores"}, indent=2) + "\n")
    print(f"\nwrote {out} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
