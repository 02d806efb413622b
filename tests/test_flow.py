"""End-to-end tests of `dlkit train-flow` and `sample-flow` (and `evaluate-gan` on flow folders)
on tiny data: artifacts, grids and GIFs, the velocity network's SavedModel, determinism under
--seed, the same images on LiteRT and TensorFlow, the sampling options, scores as JSON, and
an interrupted run resumed to the same history and grids as an uninterrupted one."""

from __future__ import annotations

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
    run_in_process,
)


def _invoke(*args: object):
    from typer.testing import CliRunner

    from dlkit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _png(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def _train(*args: object) -> dict:
    result = _invoke("train-flow", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# The conditional model of the tests below, seeded: it is also the uninterrupted run that the
# SIGTERM test's interrupted and resumed run must end as.
COND = ("--dataset", "fashion-mnist", "--conditional", "--epochs", "3", "--batch-size", "32",
        "--limit", "64", "--width", "8", "--steps", "3", "--guidance", "2", "--seed", "2",
        "--deterministic")


@pytest.fixture(scope="module")
def cond_flow(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A conditional flow model trained for three tiny epochs on the tiny fashion-mnist."""
    out = tmp_path_factory.mktemp("flow") / "cond"
    return out, _train(*COND, "--data-dir", tiny_root, "--output", out)


@pytest.fixture(scope="module")
def plain_flow(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An unconditional flow model on tiny mnist.npz, stopped by a (tiny) time budget."""
    out = tmp_path_factory.mktemp("flow") / "plain"
    return out, _train("--dataset", "mnist", "--data-dir", tiny_root, "--epochs", 5,
                       "--batch-size", 16, "--limit", 48, "--width", 8, "--steps", 2,
                       "--solver", "euler", "--max-minutes", 0.0001, "--output", out)


@pytest.fixture(scope="module")
def classifier(zoo) -> Path:
    """A tiny fashion-mnist classifier (mlp)."""
    return zoo("fashion")


def test_train_flow_writes_network_plots_and_metadata(cond_flow: tuple[Path, dict]) -> None:
    folder, result = cond_flow
    assert result["conditional"] is True and result["epochs_completed"] == 3
    assert result["stopped"] == "completed" and result["parameters"] > 0
    assert result["sampling"] == {"steps": 3, "solver": "heun", "guidance": 2.0}
    assert list(result["history"]) == ["loss"] and len(result["history"]["loss"]) == 3
    assert all(np.isfinite(result["history"]["loss"]))
    for name in ("saved_model/saved_model.pb", "model.keras", "model.tflite", "metadata.json",
                 "plots/epoch_001.png", "plots/epoch_002.png", "plots/epoch_003.png",
                 "plots/epochs.gif", "plots/trajectory.gif", "plots/loss_curves.png"):
        assert (folder / name).is_file(), name
    assert result["final_grid"] == str(folder / "plots" / "epoch_003.png")
    assert result["trajectory"] == str(folder / "plots" / "trajectory.gif")
    assert _png(folder / "plots" / "epoch_003.png").shape == (10 * 58 + 2, 10 * 58 + 2)
    from PIL import Image

    assert Image.open(folder / "plots" / "trajectory.gif").n_frames == 3 + 1  # noise + steps
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["task"] == "train-flow" and meta["dataset"] == "fashion-mnist"
    assert meta["conditional"] is True and meta["image_shape"] == [28, 28, 1]
    assert len(meta["class_names"]) == 10 and meta["flow"]["null_label"] == 10
    assert {k: meta["flow"][k] for k in ("steps", "solver", "guidance")} == result["sampling"]
    assert meta["litert"]["model.tflite"]["signatures"]["serving_default"]["inputs"] == {
        "x": [-1, 28, 28, 1], "t": [-1], "label": [-1]}
    assert not list(folder.parent.glob(".cond.*")), "staging/progress folders left behind"


def test_saved_model_serves_the_velocity(cond_flow: tuple[Path, dict]) -> None:
    import tensorflow as tf

    folder, _ = cond_flow
    serve = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
    out = list(serve(x=tf.zeros((3, 28, 28, 1)), t=tf.constant([0.0, 0.5, 1.0]),
                     label=tf.constant([0, 1, 10])).values())[0].numpy()
    assert out.shape == (3, 28, 28, 1) and np.isfinite(out).all()


def test_unconditional_time_budget(plain_flow: tuple[Path, dict]) -> None:
    folder, result = plain_flow
    assert result["conditional"] is False
    assert result["stopped"] == "time limit" and result["epochs_completed"] == 1
    assert (folder / "plots" / "epoch_001.png").is_file()
    assert not (folder / "plots" / "epoch_002.png").exists()
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["flow"]["null_label"] is None and "label" not in meta["inputs"]
    assert not list(folder.parent.glob(".plain.*")), "checkpoint or staging left behind"


def test_sample_flow_is_deterministic_under_seed(cond_flow: tuple[Path, dict],
                                                 tmp_path: Path) -> None:
    folder, _ = cond_flow
    paths = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        result = _invoke("sample-flow", "--model", folder, "--count", 20, "--seed", seed,
                         "--out", path)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == str(path)
    first, again, other = (_png(p) for p in paths)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (2 * 58 + 2, 10 * 58 + 2)  # conditional: one column per class


def test_litert_and_tensorflow_draw_the_same_images(cond_flow: tuple[Path, dict],
                                                    plain_flow: tuple[Path, dict],
                                                    tmp_path: Path) -> None:
    """The noise comes from NumPy and both backends run the same NumPy ODE loop: the images
    agree up to the rounding of 0-255 pixels (test_litert.py: LiteRT's run never imports
    TensorFlow, so here both run in-process)."""
    for folder in (cond_flow[0], plain_flow[0]):
        grids = []
        for backend in ("litert", "tensorflow"):
            out = tmp_path / f"{folder.name}-{backend}.png"
            result = run_in_process("sample-flow", "--model", folder, "--count", 12, "--seed",
                                    5, "--out", out, "--backend", backend, "--json")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["backend"] == backend
            grids.append(_png(out).astype(int))
        assert np.abs(grids[0] - grids[1]).max() <= 1, folder


def test_sampling_options_and_one_png_per_image(cond_flow: tuple[Path, dict],
                                                tmp_path: Path) -> None:
    folder, _ = cond_flow
    result = _invoke("sample-flow", "--model", folder, "--count", 4, "--label", 1, "--seed", 0,
                     "--steps", 2, "--solver", "euler", "--guidance", 0, "--out-dir",
                     tmp_path / "each", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["steps"], report["solver"], report["guidance"]) == (2, "euler", 0.0)
    files = sorted((tmp_path / "each").glob("*.png"))
    assert [f.name for f in files] == [f"sample_{i:04d}_trouser.png" for i in range(4)]
    assert report["images"] == [str(f) for f in files] and "grid" not in report
    assert _png(files[0]).shape == (28, 28)
    grids = {}
    for name, options in (("default", ()), ("euler", ("--solver", "euler"))):
        grids[name] = tmp_path / f"{name}.png"
        done = _invoke("sample-flow", "--model", folder, "--count", 10, "--out", grids[name],
                       *options)
        assert done.exit_code == 0, done.stderr
    assert not np.array_equal(_png(grids["default"]), _png(grids["euler"]))


def test_integrate_and_guidance_on_known_fields() -> None:
    """For v(x, t) = 2 t c the path is x0 + t^2 c: Heun (the trapezoid rule, exact here, on
    every step but the last, which is Euler's) lands short of x0 + c by c / steps^2, Euler by
    c / steps. Classifier-free guidance mixes the velocities as v_null + w (v_class - v_null),
    in one batched call."""
    from dlkit.flow.config import Solver
    from dlkit.flow.sample import guided, integrate

    noise = np.random.default_rng(0).standard_normal((5, 4, 4, 1)).astype(np.float32)
    c = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 4, 4, 1)

    def linear(x: np.ndarray, t: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        return 2 * t[:, None, None, None] * c + 0 * x

    for steps in (1, 3, 8):
        heun = integrate(linear, noise, None, steps, Solver.heun)  # exact but the last step
        np.testing.assert_allclose(heun, noise + c * (1 - 1 / steps ** 2), atol=1e-5)
        euler = integrate(linear, noise, None, steps, Solver.euler)
        np.testing.assert_allclose(euler, noise + c * (1 - 1 / steps), atol=1e-5)
    seen: list[np.ndarray] = []
    integrate(linear, noise, None, 4, Solver.euler, seen.append)
    assert len(seen) == 5 and np.array_equal(seen[0], noise)

    calls = []

    def two(x: np.ndarray, t: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        calls.append(len(x))  # class 3 moves at 1, the null class (9) at 5
        return np.where((labels == 3)[:, None], 1.0, 5.0).astype(np.float32) * np.ones_like(x)

    x, t, labels = np.zeros((2, 1), np.float32), np.zeros(2, np.float32), np.full(2, 3)
    for weight, expected in ((2.5, 5 + 2.5 * (1 - 5)), (1.0, 1.0), (0.0, 5.0)):
        np.testing.assert_allclose(guided(two, 9, weight)(x, t, labels), expected)
    assert calls == [4, 2, 2]  # guidance: one call of both halves; 1 and 0: one half only


def test_noise_is_paired_by_optimal_transport_within_each_class() -> None:
    """Each batch's noise is standard normal noise drawn for that batch (keyed by the batch's
    index, so a resumed run draws the same); for a conditional model it is reordered so that
    the summed squared distance to the images is the least of every order that keeps each
    noise in its image's class (checked against all of them on a small batch)."""
    import itertools

    import tensorflow as tf

    from dlkit.flow.models import paired_with_noise

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 4, 4, 1)).astype(np.float32)
    labels = np.array([0, 1, 0, 1, 0, 2], np.int32)
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat(2)

    def pairs(conditional: bool, first: int = 5) -> list:
        return [tuple(np.asarray(v) for v in b)
                for b in paired_with_noise(batches, 7, first, conditional)]

    (x1, y, x0), (_, _, other) = pairs(True)
    np.testing.assert_allclose(x1, images / 127.5 - 1.0)
    assert np.array_equal(y, labels) and not np.allclose(x0, other)  # new noise per batch
    drawn = np.asarray(tf.random.stateless_normal(x1.shape, tf.constant([7, 5], tf.int64)))
    np.testing.assert_array_equal(pairs(False)[0][2], drawn)  # unconditional: as drawn
    np.testing.assert_array_equal(pairs(True, 6)[0][2], other)  # resumed at batch 6

    def cost(noise: np.ndarray) -> float:
        return float(((noise - x1) ** 2).sum())

    assert cost(x0) < cost(drawn)
    for order in itertools.permutations(range(6)):
        if all(labels[order[i]] == labels[i] for i in range(6)):
            assert cost(x0) <= cost(drawn[list(order)]) + 1e-4
    for i in range(6):  # the noise paired with image i was drawn for an image of its class
        source = next(j for j in range(6) if np.array_equal(drawn[j], x0[i]))
        assert labels[source] == labels[i]


def test_evaluate_gan_scores_flow_folders(cond_flow: tuple[Path, dict],
                                          plain_flow: tuple[Path, dict], classifier: Path,
                                          tiny_root: Path) -> None:
    """evaluate-gan draws from flow folders through the generator registry, with the sampling
    settings the folder records; --recall adds the GAN-train and Frechet figures."""
    scores = json.loads(_invoke("evaluate-gan", "--model", cond_flow[0], "--classifier",
                                classifier, "--count", 30, "--seed", 3, "--json").stdout)
    assert scores["generator"] == "train-flow" and scores["conditional"] is True
    assert scores["sampling"]["steps"] == 3 and scores["sampling"]["guidance"] == 2.0
    for key in ("recognisable", "label_entropy", "mean_confidence", "conditional_accuracy"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert sum(scores["label_histogram"].values()) == 30
    result = _invoke("evaluate-gan", "--model", plain_flow[0], "--classifier", classifier,
                     "--count", 20, "--recall", "--train-count", 100, "--data-dir", tiny_root,
                     "--json")
    assert result.exit_code == 0, result.stderr
    recall = json.loads(result.stdout)["recall"]
    assert 0.0 <= recall["gan_train_accuracy"] <= 1.0 and recall["gan_train_images"] == 100
    assert 0.0 <= recall["gan_train_reference"] <= 1.0
    assert 0.0 <= recall["recognisable_reference"] <= 1.0
    assert recall["frechet_distance"] > 0 and recall["frechet_ratio"] > 0
    truncated = _invoke("evaluate-gan", "--model", cond_flow[0], "--classifier", classifier,
                        "--truncation", 1)
    assert truncated.exit_code == 2 and "--truncation does not apply" in truncated.stderr
    assert_one_error_line(truncated.stderr)


def _resumable(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dlkit", "train-flow", *COND, "--data-dir", str(root),
            "--output", str(out), "--json", *extra]


def test_sigterm_keeps_network_and_checkpoint_then_resume_matches(
        cond_flow: tuple[Path, dict], tiny_root: Path, tmp_path: Path) -> None:
    """SIGTERM: the network as trained so far in the output folder, the checkpoint (with the
    grids so far) beside it, exit 130; --resume ends with the history, grids and GIF of an
    uninterrupted run (`cond_flow`, trained in-process with the same options: the same
    history as in a process of its own)."""
    straight, a = cond_flow
    out = tmp_path / "f"
    stopped = interrupt_after(_resumable(tiny_root, out), "epoch 1/", signal.SIGTERM)
    assert stopped.returncode == 130, stopped.stderr
    assert_one_error_line(stopped.stderr)
    assert stopped.stdout == "" and "--resume" in stopped.stderr
    resume_dir = tmp_path / ".f.resume"
    done = checkpoint_state(resume_dir)["epochs_done"]
    assert 1 <= done < 3 and f"{done} of 3 epochs" in stopped.stderr
    kept = json.loads((out / "metadata.json").read_text())["training"]
    assert kept["stopped"] == "interrupted"

    resumed = dlkit_in_process(_resumable(tiny_root, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {done}" in resumed.stderr
    b = json.loads(resumed.stdout)
    assert b["epochs_completed"] == 3 and b["history"] == a["history"]
    for epoch in range(1, 4):
        name = f"plots/epoch_{epoch:03d}.png"
        assert np.array_equal(_png(out / name), _png(straight / name)), name
    from PIL import Image

    assert Image.open(out / "plots" / "epochs.gif").n_frames == 3
    assert not resume_dir.exists()


@pytest.mark.parametrize("args, words", [
    (("train-flow", "--dataset", "svhn"), "'--dataset': 'svhn' is not one of"),
    (("train-flow", "--steps", "0"), "--steps"),
    (("train-flow", "--guidance", "nan"), "--guidance"),
    (("sample-flow", "--model", "no/such/folder"), "does not exist"),
    (("sample-flow", "--guidance", "-1"), "--guidance"),
    (("sample-flow", "--solver", "rk4"), "'--solver': 'rk4' is not one of"),
])
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...], words: str, tmp_path: Path) -> None:
    result = _invoke(*args, "--quiet") if args[0] != "train-flow" else _invoke(
        *args, "--output", tmp_path / "m")
    assert result.exit_code == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert words in result.stderr


def test_wrong_model_kinds_and_options(cond_flow: tuple[Path, dict],
                                       plain_flow: tuple[Path, dict], tmp_path: Path) -> None:
    """A flow folder is not a GAN's; --label and --guidance need a conditional model;
    nothing is written (test_bad_input.py has the other refusals)."""
    out = tmp_path / "x.png"
    cases = [
        (("sample-gan", "--model", cond_flow[0], "--out", out), "was not written by train-gan"),
        (("sample-flow", "--model", plain_flow[0], "--label", 1, "--out", out),
         "--conditional"),
        (("sample-flow", "--model", plain_flow[0], "--guidance", 2, "--out", out),
         "--guidance needs a conditional model"),
        (("sample-flow", "--model", cond_flow[0], "--label", 10, "--out", out),
         "outside the classes"),
    ]
    for args, words in cases:
        result = _invoke(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert_one_error_line(result.stderr)
        assert words in result.stderr, (args, result.stderr)
    assert not out.exists()


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_saves_float32(policy: str) -> None:
    """Under float16 (a GPU) the step scales its loss (Keras's LossScaleOptimizer), under
    bfloat16 (a CPU that has it) it runs as is; the time embedding's phases stay float32,
    and the network the model folder saves computes in float32 with the trained weights."""
    import keras

    from dlkit.flow import models

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        net = models.velocity_net((8, 8, 1), 3, 8)
        flow = models.FlowMatcher(net, 3, seed=0)
        flow.compile(optimizer=keras.optimizers.AdamW(1e-3))
        import tensorflow as tf

        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (32, 8, 8, 1)).astype(np.float32)
        batches = tf.data.Dataset.from_tensor_slices(
            (images, rng.integers(0, 3, 32).astype(np.int32))).batch(16)
        history = flow.fit(models.paired_with_noise(batches, 0, 0, True), epochs=2,
                           verbose=0).history
        assert all(np.isfinite(history["loss"]))
        assert (type(flow.optimizer).__name__ == "LossScaleOptimizer") == (
            policy == "mixed_float16")
        assert net.get_layer("time_phase").compute_dtype == "float32"
    finally:
        keras.config.set_dtype_policy(previous)
    from dlkit.core.precision import as_float32

    saved = as_float32(flow.ema)
    assert {layer.compute_dtype for layer in saved.layers} == {"float32"}
    for a, b in zip(saved.get_weights(), flow.ema.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
