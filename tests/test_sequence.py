"""End to end through the CLI: `train-sequence` and `forecast` on a series the tests write."""

from __future__ import annotations

import csv
import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_one_error_line,
    checkpoint_state,
    dlkit_in_process,
    interrupt_after,
    run_dlkit,
)

PERIOD = 12


def write_series(path: Path, n: int = 180, seed: int = 0, bad_row: int | None = None) -> Path:
    """A noisy monthly seasonal series with a trend: dates in one column, values in another."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    values = 10 + 0.02 * t + 3 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0, 0.3, n)
    months = np.arange(np.datetime64("2000-01"), np.datetime64("2000-01") + n)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["month", "sales", "note"])
        for i in range(n):
            value = "n/a" if i == bad_row else f"{values[i]:.4f}"
            writer.writerow([str(months[i]), value, "x"])
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """One GRU trained on the series (shared by the tests that only read its folder)."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    root = tmp_path_factory.mktemp("seq")
    series = write_series(root / "sales.csv")
    out = root / "model"
    result = CliRunner().invoke(app, ["train-sequence", "--csv", str(series), "--column",
                                      "sales", "--time-column", "month", "--arch", "gru",
                                      "--window", "12", "--horizon", "3", "--epochs", "40",
                                      "--learning-rate", "3e-3", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    return series, out, json.loads(result.stdout)


def test_train_sequence_reports_and_beats_naive(trained: tuple[Path, Path, dict]) -> None:
    series, out, report = trained
    assert report["arch"] == "gru" and report["window"] == 12 and report["horizon"] == 3
    assert report["period"] == PERIOD  # inferred from the training part's autocorrelation
    assert report["points"] == {"train": 135, "validation": 18, "test": 27}
    assert report["transform"] in ("none", "sqrt", "log") and 1 <= report["ar_order"] <= 12
    for key in ("test_mae", "test_rmse", "naive_rmse", "seasonal_naive_rmse", "ar_rmse"):
        assert np.isfinite(report[key]) and report[key] > 0
    assert report["test_rmse"] < report["naive_rmse"]  # a seasonal series: it learned something
    assert report["artifacts"]["model_dir"] == str(out.resolve())
    assert {Path(p).name for p in report["artifacts"]["plots"]} == {
        "training_curves.png", "forecast_vs_actual.png"}


def test_model_folder_takes_raw_values(trained: tuple[Path, Path, dict]) -> None:
    import tensorflow as tf

    series, out, _ = trained
    meta = json.loads((out / "metadata.json").read_text())
    with open(series) as f:
        values = np.array([float(row["sales"]) for row in csv.DictReader(f)])
    from dlkit.sequence.models import forward

    norm = meta["preprocessing"]["normalisation"]
    assert norm["fitted_on"] == "training part only"
    train = forward(meta["preprocessing"]["transform"]["kind"], values[:135])
    assert norm["mean"] == pytest.approx(train.mean())  # train part only
    assert norm["std"] == pytest.approx(train.std())
    assert meta["training"]["members"] == 5
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    windows = np.stack([values[-12:], values[-24:-12]]).astype(np.float32)[..., None]
    (pred,) = serve(tf.constant(windows)).values()
    assert pred.shape == (2, 3)
    assert np.all(np.abs(pred.numpy() - values.mean()) < 10)  # raw units, not normalised


def test_the_transform_and_ar_order_come_from_the_parts_before_the_test() -> None:
    """sqrt/log only for series without negative values; the rolling-origin folds end with the
    validation part and never reach the test part; a negative input to a sqrt model is not
    NaN."""
    from dlkit.sequence.config import SequenceConfig
    from dlkit.sequence.models import transform_values
    from dlkit.sequence.train import choose, folds, split

    rng = np.random.default_rng(0)
    counts = np.square(5 + 4 * np.sin(np.arange(300) / 3) + rng.normal(0, 0.3, 300))
    config = SequenceConfig(csv="-", column="x", window=12)
    parts = split(counts, 0.1, 0.15, 12, 1)
    spans = folds(parts, 12, 1)
    assert spans[-1] == (parts.val_start, parts.test_start) and len(spans) == 5
    assert all(stop <= parts.test_start for _, stop in spans)
    assert choose(counts, parts, config).transform in ("none", "sqrt", "log")
    shifted = counts - counts.mean()  # negative values: no sqrt or log
    assert choose(shifted, parts, config).transform == "none"
    no_val = split(counts, 0, 0.15, 12, 1)
    assert folds(no_val, 12, 1) == [] and choose(counts, no_val, config).transform == "none"
    out = transform_values(np.array([[-4.0, 0.0, 9.0]], np.float32), "sqrt")
    assert np.allclose(np.asarray(out), [[0.0, 0.0, 3.0]])


def test_forecast_prints_csv_only(trained: tuple[Path, Path, dict]) -> None:
    series, out, _ = trained
    result = run_dlkit("forecast", "--model", out, "--csv", series, "--steps", "5")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(result.stdout.splitlines()))
    assert rows[0] == ["month", "sales"]
    assert [r[0] for r in rows[1:]] == ["2015-01", "2015-02", "2015-03", "2015-04", "2015-05"]
    assert all(abs(float(r[1]) - 13.6) < 5 for r in rows[1:])
    assert "Traceback" not in result.stderr


def test_forecast_from_stdin_without_time_column(cli, trained: tuple[Path, Path, dict]) -> None:
    series, out, _ = trained
    with open(series) as f:
        values = [row["sales"] for row in csv.DictReader(f)]
    text = "sales\n" + "\n".join(values) + "\n"
    result = cli("forecast", "--model", out, "--csv", "-", input=text)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "step,sales"
    assert [line.split(",")[0] for line in result.stdout.splitlines()[1:]] == ["1", "2", "3"]


@pytest.mark.parametrize("case,args,needle", [
    ("missing column", ["--column", "price"], "no column 'price'"),
    ("non-numeric", ["--column", "sales"], "row 12"),
    ("text column", ["--column", "note"], "not a number"),
    ("too short", ["--column", "sales", "--window", "400"], "fewer than --window"),
    ("bad arch", ["--column", "sales", "--arch", "tcn"], "'--arch': 'tcn' is not one of"),
])
def test_train_sequence_bad_input(cli, tmp_path: Path, case: str, args: list[str],
                                  needle: str) -> None:
    series = write_series(tmp_path / "s.csv", bad_row=10 if case == "non-numeric" else None)
    result = cli("train-sequence", "--csv", series, *args, "-o", tmp_path / "m")
    assert result.exit_code == 2, (case, result.stderr)
    assert needle in result.stderr
    assert_one_error_line(result.stderr)
    assert not (tmp_path / "m").exists()


def test_forecast_bad_input(cli, tmp_path: Path, trained: tuple[Path, Path, dict]) -> None:
    _, out, _ = trained
    missing = cli("forecast", "--model", tmp_path / "nothing", "--csv", tmp_path / "x.csv")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    short = tmp_path / "short.csv"
    short.write_text("sales\n1\n2\n3\n")
    result = cli("forecast", "--model", out, "--csv", short)
    assert result.exit_code == 2 and "needs the last 12" in result.stderr
    assert_one_error_line(result.stderr)
    assert result.stdout == ""


def _resumable(series: Path, out: Path, *extra: str) -> list[str]:
    """A run whose best validation epoch (11 of 20) comes before the interruption: the kept
    best weights matter."""
    return [sys.executable, "-m", "dlkit", "train-sequence", "--csv", str(series), "--column",
            "sales", "--window", "12", "--units", "8", "--epochs", "20", "--learning-rate",
            "0.03", "--seed", "3", "--members", "2", "--deterministic", "-o", str(out), "--json",
            *extra]


def test_interrupt_then_resume_matches_an_uninterrupted_run(cli, tmp_path: Path) -> None:
    series = write_series(tmp_path / "s.csv", n=120)
    straight = cli(*_resumable(series, tmp_path / "straight")[3:])  # in-process: the same
    assert straight.exit_code == 0, straight.stderr

    out = tmp_path / "resumed"
    stopped = interrupt_after(_resumable(series, out), "epoch 14/20", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert_one_error_line(stopped.stderr)
    assert "error: interrupted" in stopped.stderr and "--resume" in stopped.stderr
    assert stopped.stdout == ""
    state = checkpoint_state(tmp_path / ".resumed.resume")
    assert 13 <= state["epochs_done"] < 20 and not out.exists()  # the signal may land first

    changed = cli(*_resumable(series, out, "--resume")[3:], "--units", "16")
    assert changed.exit_code == 2 and "other settings (--units)" in changed.stderr
    assert_one_error_line(changed.stderr)

    resumed = dlkit_in_process(_resumable(series, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {state['epochs_done']}" in resumed.stderr
    a, b = json.loads(straight.stdout), json.loads(resumed.stdout)
    assert len(b["history"]["loss"]) == 20 and b["history"] == a["history"]
    # the best epoch came before the interruption: its weights were kept in the checkpoint
    assert a["best_epoch"] <= state["epochs_done"]
    for key in ("best_epoch", "test_mae", "test_rmse", "period", "points"):
        assert b[key] == a[key], key
    assert not (tmp_path / ".resumed.resume").exists()  # removed once the model is saved
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta["training"]["epoch_seconds"]) == 20


def test_resume_without_checkpoint_is_usage_error(cli, tmp_path: Path) -> None:
    series = write_series(tmp_path / "s.csv", n=120)
    result = cli(*_resumable(series, tmp_path / "m", "--resume")[3:])
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
    assert_one_error_line(result.stderr)
    assert not (tmp_path / "m").exists()
