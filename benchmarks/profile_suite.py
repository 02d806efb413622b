"""Where the test suite's time goes: a table from a py-spy profile of the whole run.

Record the suite (every xdist worker and every `python -m dlkit` it starts), then read it:

    py-spy record --rate 20 --subprocesses --idle --threads --format raw -o suite.raw \\
        -- python -m pytest
    python benchmarks/profile_suite.py suite.raw

Only main threads count, and a sample whose innermost frame waits (on a subprocess, a lock, a
queue, a sleep) is left out, so a test that waits for the processes it started is not counted
twice. Each sample goes to the first phase whose frames it holds (TensorFlow's import, the
LiteRT conversion, the SavedModel export, plots, fit, evaluation; `fit` split into tracing and
running), and to the test that ran it: its own frames name it, and a subprocess is named by its
pytest temporary folder. Seconds are wall seconds of samples, so under a loaded machine they
add up to more than the CPU time.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

WAITS = {"communicate", "_communicate", "wait", "_wait", "_try_wait", "select", "poll", "sleep",
         "readline", "read", "readinto", "recv", "_recv", "accept", "acquire", "get", "join",
         "_wait_for_tstate_lock", "flock"}
PHASES = [
    ("TensorFlow import", ("(tensorflow/__init__.py", "import_tensorflow (")),
    ("LiteRT conversion", ("convert_model_folder", "convert_saved_model", "convert_module")),
    ("SavedModel export", ("export (keras/src/models/model.py", "export_saved_model")),
    ("plots and extras", ("write_extras", "savefig")),
    ("fit", ("Run.fit", "fit (keras", "train_step", "_run_epochs")),
    ("evaluate/predict", ("evaluate (keras", "predict (keras")),
]
TRACING = ("func_graph_from_py_func", "_create_concrete_function", "autograph")
TEST = re.compile(r";(test_\w+) \((test_\w+)\.py")
TMP = re.compile(r"popen-gw\d+/(test_[^/]+?)\d*/")


def phase_of(stack: str) -> str:
    for name, marks in PHASES:
        if any(mark in stack for mark in marks):
            if name == "fit":
                return "fit: tracing" if any(m in stack for m in TRACING) else "fit: running"
            return name
    return "other"


def owner_of(stack: str, frames: list[str]) -> str:
    tests = TEST.findall(stack)
    if tests:
        return f"{tests[-1][1]}::{tests[-1][0]}"
    processes = [f for f in frames if f.startswith("process ")]
    if len(processes) > 2:  # pytest > xdist worker > a process the test started
        folder = TMP.search(processes[-1])
        return "subprocess of " + (folder.group(1) if folder else "?")
    return "worker (fixtures, collection, imports)"


def read(path: Path, rate: float) -> tuple[Counter, dict[str, Counter], float]:
    phases: Counter = Counter()
    owners: dict[str, Counter] = defaultdict(Counter)
    waiting = 0.0
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit() or "MainThread" not in stack:
                continue
            seconds = int(count) / rate
            frames = stack.split(";")
            leaf = frames[-1].split(" (")[0].split(".")[-1]
            if frames[-1].startswith("thread (") or leaf in WAITS:
                waiting += seconds
                continue
            phase = phase_of(stack)
            phases[phase] += seconds
            owners[owner_of(stack, frames)][phase] += seconds
    return phases, owners, waiting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="py-spy --format raw output of the suite")
    parser.add_argument("--rate", type=float, default=20.0, help="the --rate it was recorded at")
    parser.add_argument("--top", type=int, default=30, help="how many tests to list")
    args = parser.parse_args()
    phases, owners, waiting = read(args.raw, args.rate)
    total = sum(phases.values())
    print(f"active main-thread seconds {total:,.0f} (waiting left out: {waiting:,.0f})")
    print(f"{'phase':24s} {'seconds':>8s} {'share':>6s}")
    for phase, seconds in phases.most_common():
        print(f"{phase:24s} {seconds:8.0f} {seconds / total:6.1%}")
    print(f"\n{'seconds':>8s}  test, or the subprocesses a test started (by its folder)")
    ranked = sorted(owners.items(), key=lambda item: -sum(item[1].values()))
    for owner, counts in ranked[:args.top]:
        parts = ", ".join(f"{k} {v:.0f}" for k, v in counts.most_common(3))
        print(f"{sum(counts.values()):8.0f}  {owner[:70]}  ({parts})")


if __name__ == "__main__":
    main()
