"""What the benchmark scripts share: where things are and how to run the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def dlkit(*args: str) -> dict:
    """Run `python -m dlkit ARGS --json --quiet` and return its JSON object (exit on failure)."""
    cmd = [sys.executable, "-m", "dlkit", *args, "--json", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)
