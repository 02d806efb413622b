"""Interrupts: SIGINT/SIGTERM during training exit 130 and leave no half-written model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import checkpoint_state, dlkit_in_process, interrupt_after, run_in_process


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_leaves_no_partial_model(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "m"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlkit", "train-mnist", "--dataset", "digits", "--arch", "mlp",
         "--epochs", "200", "-o", str(out)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
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
    # no model and no staging folder: only the resumable checkpoint is left
    assert [p.name for p in tmp_path.iterdir()] == [".m.resume"]


def test_second_run_on_the_same_output_fails_clearly(tmp_path: Path) -> None:
    out = tmp_path / "m"
    first = subprocess.Popen(
        [sys.executable, "-m", "dlkit", "train-mnist", "--dataset", "digits", "--arch", "mlp",
         "--epochs", "200", "-o", str(out)],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = ""
        while "epoch 1/" not in line:
            line = first.stderr.readline()
            assert line or first.poll() is None
        second = run_in_process("train-mnist", "--dataset", "digits", "-o", out)
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and "is writing" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    assert first.returncode == 130
    assert [p.name for p in tmp_path.iterdir()] == [".m.resume"]  # the lock went with the run


def _train(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dlkit", "train-mnist", "--dataset", "digits", "--epochs", "6",
            "--limit", "600", "--seed", "5", "--deterministic", "--batch-size", "32", "-o",
            str(out), "--json", *extra]


def test_interrupt_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = dlkit_in_process(_train(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "resumed"
    proc = subprocess.Popen(_train(out), stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    line = ""
    while "epoch 2/6" not in line:
        line = proc.stderr.readline()
        assert line or proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "--resume" in stderr and "Traceback" not in stderr
    assert checkpoint_state(tmp_path / ".resumed.resume") and not out.exists()

    resumed = dlkit_in_process(_train(out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    a, b = json.loads(straight.stdout), json.loads(resumed.stdout)
    assert len(b["history"]["loss"]) == 6
    assert b["history"] == a["history"] and b["test_loss"] == a["test_loss"]
    assert not (tmp_path / ".resumed.resume").exists()  # removed once the model is saved


def test_resume_without_checkpoint_is_usage_error(tmp_path: Path) -> None:
    result = dlkit_in_process(_train(tmp_path / "m", "--resume"))
    assert result.returncode == 2
    assert "nothing to resume" in result.stderr


def test_train_cifar_sigterm_then_resume_matches(tiny_root: Path, tmp_path: Path) -> None:
    """train-cifar (airbench, with augmentation, label smoothing and test-time augmentation in
    the saved model; one network rather than the default's two, which take the same path at
    twice the cost) through the same path."""
    def cifar(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "dlkit", "train-cifar", "--data-dir", str(tiny_root),
                "--members", "1", "--epochs", "3", "--batch-size", "32", "--seed", "2",
                "--deterministic", "-o", str(out), "--json", *extra]

    straight = dlkit_in_process(cifar(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "c"
    stopped = interrupt_after(cifar(out), "epoch 1/3", signal.SIGTERM)
    assert stopped.returncode == 130, stopped.stderr
    assert "1 of 3 epochs are saved" in stopped.stderr and not out.exists()
    resumed = dlkit_in_process(cifar(out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads(straight.stdout), json.loads(resumed.stdout)
    assert b["history"] == a["history"] and b["test_accuracy"] == a["test_accuracy"]
    assert not (tmp_path / ".c.resume").exists()
