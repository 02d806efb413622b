"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s bench`."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
SHARED = Path(__file__).resolve().parent.parent / "shared" / "datasets"


def _data_env() -> dict[str, str]:
    if "DLKIT_DATA" not in os.environ and SHARED.is_dir():
        return {"DLKIT_DATA": str(SHARED)}
    return {}


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs, env=_data_env())


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package, tests and benchmarks."""
    session.install("ruff")
    session.run("ruff", "check", "dlkit", "tests", "benchmarks", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark script (needs the real datasets: DLKIT_DATA or ../shared/datasets)."""
    session.install("-e", ".[dev]")
    for script in sorted(Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs, env=_data_env())
