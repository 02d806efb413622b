"""End to end through the CLI: `train-text-classifier` and `classify-text` on texts the tests
write (a class folder layout and a CSV)."""

from __future__ import annotations

import csv
import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    assert_one_error_line,
    assert_plain_keras_loads,
    checkpoint_state,
    dlkit_in_process,
    interrupt_after,
    run_dlkit,
    run_in_process,
)

TOPICS = {
    "cooking": "oven flour butter simmer recipe garlic onion bake sauce pepper",
    "football": "goal striker referee penalty match keeper league pitch corner offside",
    "space": "orbit rocket planet galaxy astronaut comet telescope lunar launch star",
}
FILLER = "the a and of to in it was is on with that for this very some".split()


def sentence(rng: random.Random, topic: str) -> str:
    words = rng.sample(TOPICS[topic].split(), 3) + rng.sample(FILLER, 5)
    rng.shuffle(words)
    return " ".join(words).capitalize() + "."


def write_folder(root: Path, per_class: int = 30, seed: int = 0) -> Path:
    rng = random.Random(seed)
    for topic in TOPICS:
        (root / topic).mkdir(parents=True)
        for i in range(per_class):
            (root / topic / f"{i:03d}.txt").write_text(sentence(rng, topic) + "\n",
                                                       encoding="utf-8")
    return root


def write_csv(path: Path, rows: int = 90, seed: int = 1) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "body", "topic"])
        for i in range(rows):
            topic = list(TOPICS)[i % 3]
            writer.writerow([i, sentence(rng, topic), topic])
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A transformer classifier trained on the class-folder layout."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    root = tmp_path_factory.mktemp("texts")
    folder = write_folder(root / "corpus")
    out = root / "model"
    result = CliRunner().invoke(app, ["train-text-classifier", "--data-dir", str(folder),
                                      "--arch", "transformer", "--epochs", "12", "--batch-size",
                                      "16", "--seq-len", "16", "--val-split", "0.2", "-o",
                                      str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    return out, json.loads(result.stdout)


def test_train_text_classifier_folder(trained: tuple[Path, dict]) -> None:
    out, report = trained
    assert report["arch"] == "transformer"
    assert report["class_names"] == ["cooking", "football", "space"]
    assert report["train_examples"] == 72 and report["val_examples"] == 18
    assert report["majority_rate"] == pytest.approx(1 / 3)
    assert report["val_accuracy"] > 0.8  # keyword topics: it must learn them
    assert {Path(p).name for p in report["artifacts"]["plots"]} == {
        "training_curves.png", "confusion_matrix.png"}


def test_saved_model_takes_raw_strings(trained: tuple[Path, dict]) -> None:
    import tensorflow as tf

    from dlkit.core.saved_model import scan

    out, _ = trained
    scan(out / "saved_model")  # dlkit's scan of untrusted graphs lets its own through
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "train-text-classifier" and meta["class_names"][0] == "cooking"
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    (probs,) = serve(tf.constant(["the rocket reached orbit", "bake the flour", ""])).values()
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-4)
    assert probs.numpy()[0].argmax() == 2 and probs.numpy()[1].argmax() == 0


def test_classify_text_stdin_and_arguments(trained: tuple[Path, dict]) -> None:
    out, _ = trained
    lines = "the keeper saved a penalty\nsimmer the garlic sauce\n"
    result = run_dlkit("classify-text", "--model", out, "-", "a comet and a planet",
                       input=lines)
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [r[0] for r in rows] == ["football", "cooking", "space"]
    assert all(0 < float(r[1]) <= 1 for r in rows)
    assert "Traceback" not in result.stderr


def test_classify_text_json_top_k(cli, trained: tuple[Path, dict]) -> None:
    out, _ = trained
    result = cli("classify-text", "-m", out, "--top-k", "2", "--json", "the striker scored")
    assert result.exit_code == 0, result.stderr
    (item,) = json.loads(result.stdout)
    assert item["text"] == "the striker scored" and len(item["top"]) == 2
    assert item["label"] == item["top"][0]["label"]


def test_train_text_classifier_csv_bilstm(cli, tmp_path: Path,
                                          trained: tuple[Path, dict]) -> None:
    """A bilstm from a CSV; it and the transformer load with plain Keras (no dlkit)."""
    data = write_csv(tmp_path / "topics.csv")
    result = cli("train-text-classifier", "--csv", data, "--text-column", "body",
                 "--label-column", "topic", "--arch", "bilstm", "--epochs", "2", "--seq-len",
                 "12", "-o", tmp_path / "m", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == "bilstm" and report["train_examples"] + report["val_examples"] == 90
    assert report["epochs"] == 2
    assert (tmp_path / "m" / "saved_model" / "saved_model.pb").is_file()
    assert_plain_keras_loads([tmp_path / "m" / "model.keras", trained[0] / "model.keras"],
                             tmp_path)


@pytest.mark.parametrize("arch", ["transformer", "bilstm"])
def test_padding_changes_nothing(arch: str) -> None:
    """Padding (id 0) is masked out of the attention and the average: whatever its embedding
    holds, the probabilities stay the same."""
    import keras

    from dlkit.text_classifier import models

    texts = ["orbit rocket planet", "oven flour butter garlic onion bake", "moon", ""]
    keras.utils.set_random_seed(0)
    model = models.build(arch, models.vectorizer(texts, 50, 8), 2)
    x = np.array(texts, dtype=object)
    before = model.predict(x, verbose=0)
    embedding = model.get_layer("embedding")
    table = embedding.get_weights()[0]
    table[0] = np.random.default_rng(1).normal(0, 5, table.shape[1])
    embedding.set_weights([table])
    np.testing.assert_allclose(model.predict(x, verbose=0), before, atol=1e-6)


def test_the_default_bag_of_words_learns_and_serves_strings(cli, tmp_path: Path) -> None:
    """The default (bow: tf-idf, unit length, linear): 20 epochs at 0.02, every word counted;
    the SavedModel takes raw strings and agrees with classify-text."""
    import tensorflow as tf

    data = write_csv(tmp_path / "topics.csv")
    result = cli("train-text-classifier", "--csv", data, "--text-column", "body",
                 "--label-column", "topic", "-o", tmp_path / "m", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == "bow" and report["epochs"] == 20
    assert report["val_accuracy"] > report["majority_rate"]
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["training"]["learning_rate"] == 0.02
    assert meta["preprocessing"]["sequence_length"] is None
    texts = ["the striker scored a late goal", "the rocket reached orbit"]
    labelled = cli("classify-text", "-m", tmp_path / "m", "--json", *texts)
    assert labelled.exit_code == 0, labelled.stderr
    serve = tf.saved_model.load(str(tmp_path / "m" / "saved_model")).signatures[
        "serving_default"]
    (probs,) = serve(tf.constant(texts)).values()
    names = report["class_names"]
    assert [names[i] for i in probs.numpy().argmax(1)] == [
        item["label"] for item in json.loads(labelled.stdout)]


SENTIMENT = {"positive": "wonderful great lovely excellent delightful superb charming brilliant",
             "negative": "terrible awful horrid dreadful boring poor dismal ugly"}


def test_the_default_learns_small_separable_data_in_three_epochs(tmp_path: Path) -> None:
    """Issue 26: 80 short, perfectly separable texts (40 per class, 4 words of the class's 8),
    --epochs 3, through the real CLI: two new sentences (words never seen in training among
    them) get the right label with confidence >= 0.9. Adam from random weights had both
    wrong; the linear layer now starts at the logistic regression's solution."""
    rng = random.Random(0)
    for label, words in SENTIMENT.items():
        (tmp_path / "reviews" / label).mkdir(parents=True)
        for i in range(40):
            text = " ".join(rng.sample(words.split(), 4))
            (tmp_path / "reviews" / label / f"{i:02d}.txt").write_text(text + "\n")
    trained = run_in_process("train-text-classifier", "--data-dir", tmp_path / "reviews",
                             "--epochs", "3", "-o", tmp_path / "m", "--json", "--quiet")
    assert trained.returncode == 0, trained.stderr
    report = json.loads(trained.stdout)
    assert report["arch"] == "bow" and report["epochs"] == 3 and report["val_accuracy"] == 1.0
    start = json.loads((tmp_path / "m" / "metadata.json").read_text())["training"][
        "closed_form_start"]
    assert start["c"] > 0 and start["folds"] == 5, start
    labelled = run_dlkit("classify-text", "-m", tmp_path / "m", "what a wonderful, lovely film",
                         "a terrible and awful mess")
    assert labelled.returncode == 0, labelled.stderr
    rows = [line.split("\t") for line in labelled.stdout.splitlines()]
    assert [r[0] for r in rows] == ["positive", "negative"], rows
    assert all(float(r[1]) >= 0.9 for r in rows), rows


def test_the_closed_form_start_gives_scikit_learns_probabilities() -> None:
    """The Dense layer's kernel and bias reproduce the logistic regression's probabilities
    (multinomial, and binary where scikit-learn fits one logit); a class with no training
    text gets the lowest probability; sample weights (--class-weight) reach the fit."""
    import scipy.sparse as sp

    from dlkit.text_classifier.linear import fit_logistic, softmax_weights

    rng = np.random.default_rng(0)
    x = sp.csr_matrix(rng.random((60, 12)) * (rng.random((60, 12)) < 0.3))
    for classes in (3, 2):
        y = (np.asarray(x[:, :classes].argmax(axis=1)).ravel() + (rng.random(60) < 0.2)) % classes
        fitted, c, folds = fit_logistic(x, y)
        assert c > 0 and folds == min(5, np.bincount(y).min())
        kernel, bias = softmax_weights(fitted, classes + 1, len(y))  # the last class unseen
        logits = x @ kernel + bias
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        seen = probs[:, :classes] / probs[:, :classes].sum(1, keepdims=True)
        np.testing.assert_allclose(seen, fitted.predict_proba(x), atol=1e-5)
        assert (probs[:, classes] < probs[:, :classes].min(1)).all()
    weights = np.where(y == 0, 5.0, 1.0)
    weighted, _, _ = fit_logistic(x, y, weights)
    assert weighted.predict_proba(x)[:, 0].mean() > fitted.predict_proba(x)[:, 0].mean()


def test_a_killed_bow_run_resumes_exactly(tmp_path: Path) -> None:
    """The closed-form start is made once, before epoch 1: a default (bow) run killed once
    epoch 2's checkpoint is written ends, with --resume, as an uninterrupted run (history,
    weights, and the start it reports)."""
    folder = write_folder(tmp_path / "corpus")

    def train(out: Path, *extra: str, env: dict | None = None,
              run: Any = run_in_process) -> subprocess.CompletedProcess:
        return run("train-text-classifier", "--data-dir", folder, "--epochs", "3",
                   "--batch-size", "16", "--seed", "4", "--deterministic", "-o", out, *extra,
                   env=env)

    straight = train(tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    killed = train(tmp_path / "m", env={"DLKIT_FAULT": "checkpoint-after-publish@2:kill"},
                   run=run_dlkit)  # SIGKILL: its own process
    assert killed.returncode == -9, killed.stderr
    resumed = train(tmp_path / "m", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after 2" in resumed.stderr and "closed-form start" not in resumed.stderr
    a, b = (json.loads((tmp_path / d / "metadata.json").read_text()) for d in ("straight", "m"))
    assert b["history"] == a["history"] and len(a["history"]["loss"]) == 3
    starts = [{k: v for k, v in m["training"]["closed_form_start"].items() if k != "seconds"}
              for m in (a, b)]
    assert starts[0] == starts[1] and starts[0]["c"] > 0
    import keras

    from dlkit.text_classifier import models  # noqa: F401 (registers the custom layers)

    layers = [keras.saving.load_model(tmp_path / d / "model.keras").get_layer("probabilities")
              for d in ("straight", "m")]
    for x, y in zip(layers[0].get_weights(), layers[1].get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


def bad_folder(tmp_path: Path, case: str) -> Path:
    root = write_folder(tmp_path / "corpus", per_class=3)
    if case == "empty class":
        (root / "gardening").mkdir()
    elif case == "single class":
        for topic in ("football", "space"):
            for f in (root / topic).iterdir():
                f.unlink()
            (root / topic).rmdir()
    elif case == "not utf-8":
        (root / "space" / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    return root


@pytest.mark.parametrize("case,needle", [
    ("empty class", "gardening holds no .txt files"),
    ("single class", "single class ('cooking')"),
    ("not utf-8", "latin1.txt is not UTF-8"),
])
def test_bad_folders(cli, tmp_path: Path, case: str, needle: str) -> None:
    result = cli("train-text-classifier", "--data-dir", bad_folder(tmp_path, case), "-o",
                 tmp_path / "m")
    assert result.exit_code == 2, result.stderr
    assert needle in result.stderr
    assert_one_error_line(result.stderr)
    assert not (tmp_path / "m").exists()


def test_bad_csv_and_usage(cli, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", rows=9)
    cases = [(["--csv", data, "--text-column", "review", "--label-column", "topic"],
              "no column 'review'"),
             ([], "either --data-dir"),
             (["--csv", data, "--text-column", "body", "--label-column", "topic", "--arch",
               "cnn"], "'--arch': 'cnn' is not one of")]
    for args, needle in cases:
        result = cli("train-text-classifier", *args, "-o", tmp_path / "m")
        assert result.exit_code == 2 and needle in result.stderr, (args, result.stderr)
        assert_one_error_line(result.stderr)
    missing = cli("classify-text", "-m", tmp_path / "none", "hello")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def _resumable(folder: Path, out: Path, *extra: str) -> list[str]:
    """A transformer run (dropout in attention and after it) on the class-folder texts."""
    return [sys.executable, "-m", "dlkit", "train-text-classifier", "--data-dir", str(folder),
            "--arch", "transformer", "--epochs", "5", "--batch-size", "16", "--seq-len", "16",
            "--val-split", "0.2", "--seed", "4", "--deterministic", "-o", str(out), "--json",
            *extra]


def test_sigterm_then_resume_matches_an_uninterrupted_run(cli, tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "corpus")
    straight = cli(*_resumable(folder, tmp_path / "straight")[3:])  # in-process: the same
    assert straight.exit_code == 0, straight.stderr

    out = tmp_path / "resumed"
    stopped = interrupt_after(_resumable(folder, out), "epoch 1/5", signal.SIGTERM)
    assert stopped.returncode == 130, stopped.stderr
    assert_one_error_line(stopped.stderr)
    assert "error: interrupted" in stopped.stderr and "--resume" in stopped.stderr
    state = checkpoint_state(tmp_path / ".resumed.resume")
    assert 1 <= state["epochs_done"] < 5 and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".resumed.resume", "corpus",
                                                          "straight"]

    # other texts, other vocabulary: the checkpoint refuses them
    (folder / "space" / "extra.txt").write_text("nebula quasar pulsar", encoding="utf-8")
    changed = cli(*_resumable(folder, out, "--resume")[3:])
    assert changed.exit_code == 2 and "other settings" in changed.stderr
    assert "the training data" in changed.stderr
    assert_one_error_line(changed.stderr)
    (folder / "space" / "extra.txt").unlink()

    resumed = dlkit_in_process(_resumable(folder, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {state['epochs_done']}" in resumed.stderr
    a, b = json.loads(straight.stdout), json.loads(resumed.stdout)
    assert len(b["history"]["loss"]) == 5 and b["history"] == a["history"]
    assert b["val_accuracy"] == a["val_accuracy"] and b["val_loss"] == a["val_loss"]
    assert not (tmp_path / ".resumed.resume").exists()  # removed once the model is saved
    # the re-adapted vocabulary is the uninterrupted run's
    import keras

    from dlkit.text_classifier import models  # noqa: F401 (registers the custom layers)

    vocabularies = [keras.saving.load_model(d / "model.keras").get_layer("vectorize")
                    .get_vocabulary() for d in (tmp_path / "straight", out)]
    assert vocabularies[0] == vocabularies[1] and "rocket" in vocabularies[0]


def test_resume_without_checkpoint_is_usage_error(cli, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", rows=30)
    result = cli("train-text-classifier", "--csv", data, "--text-column", "body",
                 "--label-column", "topic", "--seq-len", "8", "-o", tmp_path / "m", "--resume")
    assert result.exit_code == 2 and "nothing to resume" in result.stderr
    assert_one_error_line(result.stderr)
    assert not (tmp_path / "m").exists()
