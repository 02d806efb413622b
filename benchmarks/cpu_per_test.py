"""CPU seconds per test: a pytest plugin, and a summary of what it recorded.

The suite is CPU-bound (two workers on two cores), so its wall time follows its CPU time. The
plugin records, around each test's setup, call and teardown, the CPU time of the test process
and of the processes it started and waited for (the `python -m dlkit` runs, the worker
clusters), one line per phase, in the file $CPU_LOG (cpu.tsv when unset, the file the
summary reads by default):

    CPU_LOG=cpu.tsv PYTHONPATH=benchmarks python -m pytest -p cpu_per_test
    python benchmarks/cpu_per_test.py cpu.tsv      # by file, then the 30 dearest phases
"""

from __future__ import annotations

import collections
import os
import resource
import sys
from collections.abc import Iterator
from typing import Any

import pytest


def _cpu() -> tuple[float, float]:
    """(this process, its waited-for children): user + system seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _recorded(item: Any, phase: str) -> Iterator[None]:
    before = _cpu()
    yield
    after = _cpu()
    with open(os.environ.get("CPU_LOG", "cpu.tsv"), "a", encoding="utf-8") as log:
        log.write(f"{item.nodeid}\t{phase}\t{after[0] - before[0]:.2f}\t"
                  f"{after[1] - before[1]:.2f}\n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: Any) -> Iterator[None]:
    yield from _recorded(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: Any) -> Iterator[None]:
    yield from _recorded(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: Any) -> Iterator[None]:
    yield from _recorded(item, "teardown")


def summary(path: str) -> None:
    """Print the CPU seconds by test file (own, children), then the dearest phases."""
    by_file: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    phases = []
    with open(path, encoding="utf-8") as log:
        for line in log:
            nodeid, phase, own, kids = line.rstrip("\n").split("\t")
            by_file[nodeid.split("::")[0]][0] += float(own)
            by_file[nodeid.split("::")[0]][1] += float(kids)
            phases.append((float(own) + float(kids), phase, nodeid))
    own_total = sum(v[0] for v in by_file.values())
    kids_total = sum(v[1] for v in by_file.values())
    print(f"{own_total + kids_total:.0f} CPU-s: {own_total:.0f} in the test processes, "
          f"{kids_total:.0f} in the processes they started")
    print(f"{'total':>8}{'own':>8}{'children':>10}  file")
    for name, (own, kids) in sorted(by_file.items(), key=lambda kv: -sum(kv[1])):
        print(f"{own + kids:8.1f}{own:8.1f}{kids:10.1f}  {name}")
    print()
    for seconds, phase, nodeid in sorted(phases, reverse=True)[:30]:
        print(f"{seconds:8.1f}  {phase:<8}  {nodeid}")


if __name__ == "__main__":
    summary(sys.argv[1] if len(sys.argv) > 1 else "cpu.tsv")
