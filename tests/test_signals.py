"""Interrupts: SIGINT/SIGTERM during training exit 130 and leave no half-written model."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_leaves_no_partial_model(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "m"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlkit", "train-mnist", "--dataset", "digits", "--epochs", "200",
         "-o", str(out)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "epoch 1/" not in line:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "error: interrupted" in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # no model, no staging folder


def test_second_run_on_the_same_output_fails_clearly(tmp_path: Path) -> None:
    out = tmp_path / "m"
    first = subprocess.Popen(
        [sys.executable, "-m", "dlkit", "train-mnist", "--dataset", "digits", "--epochs", "200",
         "-o", str(out)], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while "epoch 1/" not in line:
            line = first.stderr.readline()
            assert line or first.poll() is None
        second = subprocess.run(
            [sys.executable, "-m", "dlkit", "train-mnist", "--dataset", "digits", "-o", str(out)],
            capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and "is writing" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert first.returncode == 130
    assert list(tmp_path.iterdir()) == []  # lock file removed with the run
