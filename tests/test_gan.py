"""End-to-end tests of `dlkit train-gan`, `sample-gan` and `evaluate-gan` on tiny data: artifacts,
grid PNGs, determinism under --seed, the JSON scores and one-line errors for bad input."""

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
    run_dlkit,
)


def _invoke(*args: object):
    from typer.testing import CliRunner

    from dlkit.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _recognisable_share(classifier: Path, root: Path, dataset: str) -> float:
    """The share of the real test images that `classifier` labels with confidence >= 0.9,
    its probabilities mapped back through its label smoothing."""
    import keras

    from dlkit.data.readers import load_mnist_family
    from dlkit.gan.evaluate import unsmooth

    smoothing = json.loads((classifier / "metadata.json").read_text())["training"][
        "label_smoothing"]
    images = load_mnist_family(dataset, root).x_test.astype(np.float32)
    probs = keras.saving.load_model(classifier / "model.keras").predict(images, verbose=0)
    return float((unsmooth(probs, smoothing).max(axis=1) >= 0.9).mean())


def _png(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


# The conditional GAN of the tests below, seeded: it is also the uninterrupted run that the
# SIGTERM test's interrupted and resumed run must end as.
COND = ("--dataset", "fashion-mnist", "--conditional", "--epochs", "3", "--batch-size", "32",
        "--limit", "64", "--latent-dim", "8", "--width", "8", "--seed", "2", "--deterministic")


@pytest.fixture(scope="module")
def cond_gan(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A conditional GAN trained for three tiny epochs on the tiny fashion-mnist."""
    out = tmp_path_factory.mktemp("gan") / "cond"
    result = _invoke("train-gan", *COND, "--data-dir", tiny_root, "--output", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def plain_gan(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An unconditional GAN on tiny mnist.npz, stopped by a (tiny) time budget."""
    out = tmp_path_factory.mktemp("gan") / "plain"
    result = _invoke("train-gan", "--dataset", "mnist", "--data-dir", tiny_root, "--epochs", 5,
                     "--batch-size", 16, "--limit", 48, "--latent-dim", 4, "--width", 8,
                     "--max-minutes", 0.0001, "--output", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout)


@pytest.fixture(scope="module")
def classifier(zoo) -> Path:
    """A tiny fashion-mnist classifier (mlp)."""
    return zoo("fashion")


def test_train_gan_writes_generator_plots_and_metadata(cond_gan: tuple[Path, dict]) -> None:
    folder, result = cond_gan
    assert result["conditional"] is True and result["epochs_completed"] == 3
    assert result["stopped"] == "completed"
    assert set(result["history"]) >= {"d_loss", "g_loss"}
    assert all(len(v) == 3 and all(np.isfinite(v)) for v in result["history"].values())
    for name in ("saved_model/saved_model.pb", "model.keras", "metadata.json",
                 "plots/epoch_001.png", "plots/epoch_002.png", "plots/epoch_003.png",
                 "plots/epochs.gif", "plots/loss_curves.png"):
        assert (folder / name).is_file(), name
    assert result["final_grid"] == str(folder / "plots" / "epoch_003.png")
    grid = _png(folder / "plots" / "epoch_003.png")
    assert grid.shape == (10 * 58 + 2, 10 * 58 + 2)  # 10x10 images of 28px, doubled, 2px gaps
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["task"] == "train-gan" and meta["dataset"] == "fashion-mnist"
    assert meta["latent_dim"] == 8 and meta["conditional"] is True
    assert meta["image_shape"] == [28, 28, 1] and len(meta["class_names"]) == 10
    assert meta["training"]["loss"] == "hinge" and meta["training"]["adam_betas"] == [0.0, 0.9]
    assert not list(folder.parent.glob(".cond.*")), "staging/progress folders left behind"


def test_hinge_losses_and_the_one_call_split() -> None:
    """The discriminator sees [real; fake] in one call: `_split` gives each half back per head,
    and the hinge losses are 0 for the discriminator once real scores >= 1 and fake <= -1."""
    from dlkit.gan import models

    gan = models.GAN.__new__(models.GAN)  # only the loss: no networks needed
    gan.num_classes = 0
    outputs = np.array([[2.0], [1.5], [-3.0], [0.5]], np.float32)
    real, fake = models._split(outputs, 2)
    np.testing.assert_array_equal(real, [[2.0], [1.5]])
    np.testing.assert_array_equal(fake, [[-3.0], [0.5]])
    d_loss, g_loss, _ = gan._gan_losses(real, fake, None)
    assert float(d_loss) == pytest.approx(0.75)  # only the fake scored 0.5 is inside the margin
    assert float(g_loss) == pytest.approx(1.25)  # -mean(fake)
    heads = [outputs, np.arange(8, dtype=np.float32).reshape(4, 2)]
    real, fake = models._split(heads, 2)
    assert [r.shape for r in real] == [(2, 1), (2, 2)] and fake[1][0, 0] == 4.0


def test_saved_model_serves_pixels(cond_gan: tuple[Path, dict]) -> None:
    import tensorflow as tf

    folder, _ = cond_gan
    serve = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]
    out = list(serve(noise=tf.zeros((3, 8)), label=tf.constant([0, 1, 2])).values())[0].numpy()
    assert out.shape == (3, 28, 28, 1)
    assert 0.0 <= out.min() and out.max() <= 255.0


def test_unconditional_time_budget(plain_gan: tuple[Path, dict]) -> None:
    folder, result = plain_gan
    assert result["conditional"] is False
    assert result["stopped"] == "time limit" and result["epochs_completed"] == 1
    assert (folder / "plots" / "epoch_001.png").is_file()
    assert not (folder / "plots" / "epoch_002.png").exists()
    assert not list(folder.parent.glob(".plain.*")), "checkpoint or staging left behind"


def test_sample_gan_is_deterministic_under_seed(cond_gan: tuple[Path, dict],
                                                 tmp_path: Path) -> None:
    folder, _ = cond_gan
    paths = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        result = _invoke("sample-gan", "--model", folder, "--count", 20, "--seed", seed,
                         "--out", path)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == str(path)
    first, again, other = (_png(p) for p in paths)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (2 * 58 + 2, 10 * 58 + 2)  # conditional: one column per class


def test_sample_gan_one_png_per_image_for_a_label(cond_gan: tuple[Path, dict],
                                                   tmp_path: Path) -> None:
    folder, _ = cond_gan
    result = _invoke("sample-gan", "--model", folder, "--count", 4, "--label", 1, "--seed", 0,
                     "--out-dir", tmp_path / "each")
    assert result.exit_code == 0, result.stderr
    files = sorted((tmp_path / "each").glob("*.png"))
    assert [f.name for f in files] == [f"sample_{i:04d}_trouser.png" for i in range(4)]
    assert result.stdout.split() == [str(f) for f in files]
    assert _png(files[0]).shape == (28, 28)


def test_sample_gan_json_keeps_stdout_clean(plain_gan: tuple[Path, dict],
                                            tmp_path: Path) -> None:
    folder, _ = plain_gan
    proc = run_dlkit("sample-gan", "--model", folder, "--count", 9, "--seed", 1,
                     "--out", tmp_path / "g.png", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # exactly one JSON object, nothing else
    assert result["grid"] == str(tmp_path / "g.png") and result["count"] == 9
    assert _png(tmp_path / "g.png").shape == (3 * 58 + 2, 3 * 58 + 2)


def test_evaluate_gan_scores_as_json(cond_gan: tuple[Path, dict], classifier: Path) -> None:
    folder, _ = cond_gan
    result = _invoke("evaluate-gan", "--model", folder, "--classifier", classifier,
                     "--count", 50, "--seed", 3, "--json")
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["count"] == 50 and scores["conditional"] is True
    for key in ("recognisable", "label_entropy", "mean_confidence", "conditional_accuracy"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert sum(scores["label_histogram"].values()) == 50
    assert len(scores["per_class_accuracy"]) == 10
    again = json.loads(_invoke("evaluate-gan", "--model", folder, "--classifier", classifier,
                               "--count", 50, "--seed", 3, "--json").stdout)
    assert again["label_histogram"] == scores["label_histogram"]
    plain = _invoke("evaluate-gan", "--model", folder, "--classifier", classifier,
                    "--count", 50, "--seed", 3)  # without --json: one result line
    assert plain.stdout.startswith(f"recognisable={scores['recognisable']:.4f} ")


def test_evaluate_gan_recall_adds_gan_train_and_frechet(cond_gan: tuple[Path, dict],
                                                        plain_gan: tuple[Path, dict],
                                                        classifier: Path,
                                                        tiny_root: Path) -> None:
    """--recall: a classifier trained on --train-count generated images, tested on the real
    test set, and the Frechet distance next to the real-vs-real one (conditional: labels as
    asked; unconditional: the scoring classifier's)."""
    for folder in (cond_gan[0], plain_gan[0]):
        result = _invoke("evaluate-gan", "--model", folder, "--classifier", classifier,
                         "--count", 40, "--recall", "--train-count", 120, "--data-dir",
                         tiny_root, "--json")
        assert result.exit_code == 0, result.stderr
        scores = json.loads(result.stdout)
        recall = scores["recall"]
        assert 0.0 <= recall["gan_train_accuracy"] <= 1.0
        assert recall["gan_train_images"] == 120
        # beside each figure its real-data ceiling: the same classifier trained on 120 real
        # training images, and the recognisable share of the real test images
        assert 0.0 <= recall["gan_train_reference"] <= 1.0
        assert recall["recognisable_reference"] == pytest.approx(
            _recognisable_share(classifier, tiny_root, scores["dataset"]))
        assert recall["frechet_distance"] > 0 and recall["frechet_reference"] >= 0
        assert recall["frechet_ratio"] == pytest.approx(
            recall["frechet_distance"] / recall["frechet_reference"])
    plain = _invoke("evaluate-gan", "--model", cond_gan[0], "--classifier", classifier,
                    "--count", 40, "--recall", "--train-count", 120, "--data-dir", tiny_root)
    assert plain.exit_code == 0 and " gan_train_accuracy=" in plain.stdout


def test_unsmooth_maps_a_smoothed_classifiers_sure_answer_to_one() -> None:
    """Label smoothing 0.2 over 10 classes: a sure answer is 0.82 (0.02 elsewhere); mapped
    back it is 1. Labels never change; smoothing 0 is the identity."""
    from dlkit.gan.evaluate import unsmooth

    sure = np.full((1, 10), 0.02)
    sure[0, 3] = 0.82
    np.testing.assert_allclose(unsmooth(sure, 0.2), np.eye(10)[[3]], atol=1e-12)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=50)
    mapped = unsmooth(probs, 0.2)
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0)
    assert (mapped.argmax(axis=1) == probs.argmax(axis=1)).all()
    assert (mapped.max(axis=1) >= probs.max(axis=1) - 1e-12).all()
    assert unsmooth(probs, 0.0) is probs


def test_evaluate_gan_reads_confidence_through_the_classifiers_smoothing(
        cond_gan: tuple[Path, dict], classifier: Path, tmp_path: Path) -> None:
    """The same classifier, once recorded as trained without smoothing and once with 0.2:
    the same labels, higher confidence for the smoothed reading; a nonsense value counts as
    no smoothing."""
    import shutil

    scores = {}
    for smoothing in (0.0, 0.2, "lots"):
        copy = tmp_path / f"classifier-{smoothing}"
        shutil.copytree(classifier, copy)
        meta = json.loads((copy / "metadata.json").read_text())
        meta.setdefault("training", {})["label_smoothing"] = smoothing
        (copy / "metadata.json").write_text(json.dumps(meta))
        result = _invoke("evaluate-gan", "--model", cond_gan[0], "--classifier", copy,
                         "--count", 40, "--seed", 5, "--json")
        assert result.exit_code == 0, result.stderr
        scores[smoothing] = json.loads(result.stdout)
    plain, smoothed, nonsense = scores[0.0], scores[0.2], scores["lots"]
    assert smoothed["label_histogram"] == plain["label_histogram"]
    assert smoothed["mean_confidence"] > plain["mean_confidence"]
    assert smoothed["recognisable"] >= plain["recognisable"]
    assert nonsense["mean_confidence"] == plain["mean_confidence"]


def test_frechet_distance_is_exact_for_shifted_and_scaled_sets() -> None:
    from dlkit.gan.recall import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    shift = np.arange(6.0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    centred = a - a.mean(axis=0)  # b = 3a: Tr(S)(3 - 1)^2
    trace = float(np.trace(np.cov(centred, rowvar=False)))
    assert frechet_distance(centred, 3 * centred) == pytest.approx(4 * trace, rel=1e-6)


def test_evaluate_unconditional_has_no_conditional_accuracy(plain_gan: tuple[Path, dict],
                                                            classifier: Path) -> None:
    folder, _ = plain_gan
    result = _invoke("evaluate-gan", "--model", folder, "--classifier", classifier,
                     "--count", 20, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["conditional_accuracy"] is None


@pytest.mark.parametrize("args, words", [
    (("train-gan", "--dataset", "svhn"), "'--dataset': 'svhn' is not one of"),
    (("train-gan", "--latent-dim", "0"), "--latent-dim"),
    (("sample-gan", "--model", "no/such/folder"), "does not exist"),
    (("evaluate-gan", "--model", "no/such/folder", "--classifier", "x"), "does not exist"),
    (("sample-gan", "--model", "no/such/folder", "--truncation", "0"), "--truncation"),
])
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...], words: str, tmp_path: Path) -> None:
    result = _invoke(*args, "--quiet") if args[0] != "train-gan" else _invoke(
        *args, "--output", tmp_path / "m")
    assert result.exit_code == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert words in result.stderr


def test_label_out_of_range_or_unconditional(cond_gan: tuple[Path, dict],
                                             plain_gan: tuple[Path, dict],
                                             tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    bad = _invoke("sample-gan", "--model", cond_gan[0], "--label", 10, "--out", out)
    assert bad.exit_code == 2 and "outside the classes" in bad.stderr
    assert_one_error_line(bad.stderr)
    plain = _invoke("sample-gan", "--model", plain_gan[0], "--label", 1, "--out", out)
    assert plain.exit_code == 2 and "--conditional" in plain.stderr
    assert_one_error_line(plain.stderr)
    assert not out.exists()


def test_evaluate_rejects_a_classifier_for_other_images(cond_gan: tuple[Path, dict],
                                                        tiny_root: Path,
                                                        tmp_path: Path) -> None:
    result = _invoke("evaluate-gan", "--model", cond_gan[0], "--classifier", cond_gan[0])
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)


def test_divergence_stops_with_a_clear_message(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "nan"
    result = _invoke("train-gan", "--dataset", "fashion-mnist", "--data-dir", tiny_root,
                     "--epochs", 2, "--batch-size", 16, "--limit", 32, "--latent-dim", 4,
                     "--width", 4, "--learning-rate", 1e30, "--output", out)
    assert result.exit_code == 1, result.stderr
    assert_one_error_line(result.stderr)
    assert "diverged" in result.stderr and "--learning-rate" in result.stderr


def _resumable(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dlkit", "train-gan", *COND, "--data-dir", str(root),
            "--output", str(out), "--json", *extra]


def test_sigterm_keeps_generator_and_checkpoint_then_resume_matches(
        cond_gan: tuple[Path, dict], tiny_root: Path, tmp_path: Path) -> None:
    """SIGTERM: the last good generator in the output folder, the checkpoint (with the grids
    so far) beside it, exit 130; --resume ends with the history, grids and GIF of an
    uninterrupted run (`cond_gan`, trained in-process with the same options: the same
    history as in a process of its own)."""
    straight, a = cond_gan
    out = tmp_path / "g"
    stopped = interrupt_after(_resumable(tiny_root, out), "epoch 1/", signal.SIGTERM)
    stdout, stderr = stopped.stdout, stopped.stderr
    assert stopped.returncode == 130, stderr
    assert_one_error_line(stderr)
    assert stdout == "" and str(out) in stderr and "--resume" in stderr
    resume_dir = tmp_path / ".g.resume"
    done = checkpoint_state(resume_dir)["epochs_done"]
    assert 1 <= done < 3 and f"{done} of 3 epochs" in stderr
    assert sorted(p.name for p in (resume_dir / "grids").glob("*.png"))[:done] == [
        f"epoch_{e:03d}.png" for e in range(1, done + 1)]
    kept = json.loads((out / "metadata.json").read_text())["training"]
    assert kept["stopped"] == "interrupted" and kept["epochs_completed"] >= done

    resumed = dlkit_in_process(_resumable(tiny_root, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {done}" in resumed.stderr
    b = json.loads(resumed.stdout)
    assert b["epochs_completed"] == 3 and b["stopped"] == "completed"
    assert b["history"] == a["history"]
    for epoch in range(1, 4):  # every epoch's grid, drawn by the same generator
        name = f"plots/epoch_{epoch:03d}.png"
        assert np.array_equal(_png(out / name), _png(straight / name)), name
    from PIL import Image

    assert Image.open(out / "plots" / "epochs.gif").n_frames == 3
    assert not resume_dir.exists()  # a finished run removes its checkpoint


def test_resume_without_checkpoint_is_usage_error(tiny_root: Path, tmp_path: Path) -> None:
    result = _invoke(*_resumable(tiny_root, tmp_path / "g", "--resume")[3:])
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
    assert_one_error_line(result.stderr)
    assert not list(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == [".g.lock"]
