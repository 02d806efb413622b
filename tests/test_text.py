"""End-to-end tests of `dlkit train-text` and `dlkit generate-text` on tiny corpora the tests
write (English and Chinese), through the real CLI (in-process and as a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    REAL_DATA,
    assert_one_error_line,
    checkpoint_state,
    dlkit_in_process,
    interrupt_after,
    run_in_process,
)

ENGLISH = ("The quick brown fox jumps over the lazy dog. A stitch in time saves nine.\n"
           "To be, or not to be, that is the question. All that glitters is not gold.\n")
CHINESE = ("床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
           "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n")
TINY = ["--epochs", "1", "--seq-len", "32", "--layers", "1", "--dim", "32", "--heads", "2",
        "--batch-size", "8"]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpora")
    files = {"english": root / "english.txt", "chinese": root / "chinese.txt"}
    files["english"].write_text(ENGLISH * 20, encoding="utf-8")
    files["chinese"].write_text(CHINESE * 30, encoding="utf-8")
    return files


# The English model of the tests below, seeded: it is also the uninterrupted run that the
# Ctrl-C test's interrupted and resumed run must end as (3 epochs: Ctrl-C after the first).
ENGLISH_RECIPE = [*TINY, "--arch", "transformer", "--dropout", "0.1", "--epochs", "3",
                  "--seed", "3", "--deterministic"]


@pytest.fixture(scope="module")
def english_run(corpora: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The English model's folder and its `--json` report."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    out = tmp_path_factory.mktemp("models") / "english"
    result = CliRunner().invoke(app, ["train-text", "--corpus", str(corpora["english"]),
                                      *ENGLISH_RECIPE, "--output", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == "transformer" and np.isfinite(report["val_loss"])
    assert report["val_bpc"] == pytest.approx(report["val_loss"] / np.log(2))
    assert "val_loss" in result.stderr and "sample:" in result.stderr  # per-epoch report
    return out, report


@pytest.fixture(scope="module")
def english_model(english_run: tuple[Path, dict]) -> Path:
    return english_run[0]


def test_training_writes_model_folder(english_model: Path) -> None:
    meta = json.loads((english_model / "metadata.json").read_text())
    assert meta["task"] == "train-text"
    assert "".join(meta["text"]["vocab"]) == "".join(sorted(set(ENGLISH)))
    assert meta["text"]["seq_len"] == 32
    assert meta["training"]["val_window"] == 32  # a transformer reads --seq-len at most
    assert (english_model / "model.keras").is_file()
    assert (english_model / "saved_model" / "saved_model.pb").is_file()
    assert (english_model / "plots" / "loss_curve.png").stat().st_size > 1000
    assert len(meta["history"]["val_loss"]) == 3


def test_generate_is_deterministic_and_starts_with_prompt(cli, english_model: Path) -> None:
    args = ["generate-text", "--model", english_model, "--prompt", "To be", "--length", "60"]
    first = cli(*args, "--seed", "3")
    again = cli(*args, "--seed", "3")
    other = cli(*args, "--seed", "4")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == again.stdout != other.stdout
    text = first.stdout
    assert text.startswith("To be") and text.endswith("\n")
    assert len(text) == len("To be") + 60 + 1
    assert set(text[5:-1]) <= set(ENGLISH)


def test_num_samples_and_top_k(cli, english_model: Path) -> None:
    result = cli("generate-text", "--model", english_model, "--prompt", "A", "--length", "20",
                 "--num-samples", "2", "--top-k", "3", "--temperature", "0.5")
    assert result.exit_code == 0, result.stderr
    first, second = result.stdout[:22], result.stdout[22:]
    assert first.startswith("A") and first.endswith("\n")
    assert second.startswith("\nA") and len(second) == 23


def test_unknown_prompt_characters_warn_and_fall_back(cli, english_model: Path) -> None:
    result = cli("generate-text", "--model", english_model, "--prompt", "Zé€", "--length", "10")
    assert result.exit_code == 0, result.stderr
    assert "warning:" in result.stderr and "not in the model's vocabulary" in result.stderr
    assert result.stdout.startswith("Zé€") and len(result.stdout) == 3 + 10 + 1


def test_prompt_from_stdin(cli, english_model: Path) -> None:
    result = cli("generate-text", "--model", english_model, "--prompt", "-", "--length", "5",
                 input="All that")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("All that") and len(result.stdout) == 8 + 5 + 1


def test_stdout_holds_only_text_and_streams(english_model: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with open(target, "w") as out:
        done = subprocess.run([sys.executable, "-m", "dlkit", "generate-text", "--model",
                               str(english_model), "--prompt", "The", "--length", "40"],
                              stdout=out, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = target.read_text(encoding="utf-8")
    assert text.startswith("The") and len(text) == 3 + 40 + 1
    assert set(text) <= set(ENGLISH)
    # `| head -c 16`: read a few bytes of a very long generation, then close the pipe.
    proc = subprocess.Popen([sys.executable, "-m", "dlkit", "generate-text", "--model",
                             str(english_model), "--length", "1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start = time.monotonic()
    head = proc.stdout.read(16)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert len(head) == 16 and time.monotonic() - start < 60
    assert code == 0 and "Traceback" not in stderr


def test_incremental_decoding_matches_full_forward(english_model: Path) -> None:
    from dlkit.text.generate import load_text_model

    model, meta = load_text_model(english_model)
    from dlkit.text.models import decoder

    ids = [int(i) for i in np.random.default_rng(0).integers(0, len(meta["text"]["vocab"]), 40)]
    full = model(np.array([ids[:32]], np.int32)).numpy()[0]
    dec = decoder(meta["arch"], model)
    logits, state = dec.start(ids[:1])
    np.testing.assert_allclose(logits, full[0], atol=1e-4)
    for t in range(1, 32):
        logits, state = dec.step(ids[t], state)
        np.testing.assert_allclose(logits, full[t], atol=1e-4)
    logits, state = dec.step(ids[32], state)  # cache full: refilled from the last half window
    window = model(np.array([ids[17:33]], np.int32)).numpy()[0]
    np.testing.assert_allclose(logits, window[-1], atol=1e-4)


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_chinese_corpus_from_stdin_with_rnn(cli, corpora: dict[str, Path], tmp_path: Path,
                                            arch: str) -> None:
    out = tmp_path / arch
    text = corpora["chinese"].read_text(encoding="utf-8")
    trained = cli("train-text", "--corpus", "-", "--arch", arch, *TINY, "--output", out,
                  "--quiet", input=text)
    assert trained.exit_code == 0, trained.stderr
    assert trained.stdout.startswith("val_loss=")
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["dataset"] == "<stdin>" and "月" in meta["text"]["vocab"]
    # a recurrent model is scored on windows of 1,024 characters (or the whole validation
    # text when it is shorter), not on windows of --seq-len
    assert meta["training"]["val_window"] == min(1024, meta["training"]["val_chars"] - 1) > 32
    gen = [cli("generate-text", "--model", out, "--prompt", "明月", "--length", "30",
               "--seed", "7") for _ in range(2)]
    assert gen[0].exit_code == 0, gen[0].stderr
    assert gen[0].stdout == gen[1].stdout
    assert gen[0].stdout.startswith("明月") and len(gen[0].stdout) == 2 + 30 + 1
    assert set(gen[0].stdout[2:-1]) <= set(CHINESE)
    with zipfile.ZipFile(out / "model.keras") as saved:  # stock layers: plain Keras loads it
        assert "TrainingGRU" not in saved.read("config.json").decode()

    from dlkit.text.generate import load_text_model
    from dlkit.text.models import decoder

    model, _ = load_text_model(out)
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    full = model(np.array([ids], np.int32)).numpy()[0]
    dec = decoder(arch, model)
    logits, state = dec.start(ids[:1])
    for t in range(1, len(ids)):
        logits, state = dec.step(ids[t], state)
    np.testing.assert_allclose(logits, full[-1], atol=1e-4)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_training_gru_computes_the_stock_gru(policy: str) -> None:
    """TrainingGRU: the stock GRU's outputs and gradients from the same weights, and
    with_stock_layers the stock layer back with them."""
    import keras
    import tensorflow as tf

    from dlkit.text.gru import TrainingGRU, with_stock_layers

    keras.mixed_precision.set_global_policy(policy)
    try:
        ids = keras.Input((None,), dtype="int32")
        hidden = TrainingGRU(12, return_sequences=True, name="rnn")(
            keras.layers.Embedding(7, 5)(ids))
        model = keras.Model(ids, keras.layers.Dense(7, dtype="float32")(hidden))
        assert model.get_layer("rnn")._fast_path_applies(None, None)  # not the stock code
        stock = with_stock_layers(model)
        assert type(stock.get_layer("rnn")) is keras.layers.GRU
        x = tf.constant(np.random.default_rng(0).integers(0, 7, (3, 9)), tf.int32)
        grads = []
        for net in (model, stock):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.sin(net(x, training=True)))
            grads.append([tf.convert_to_tensor(g)  # the embedding's are IndexedSlices
                          for g in tape.gradient(loss, net.trainable_weights)])
        tolerance = 1e-5 if policy == "float32" else 0.05
        np.testing.assert_allclose(model(x), stock(x), atol=tolerance)
        for ours, theirs in zip(*grads, strict=True):
            scale = float(tf.reduce_max(tf.abs(theirs)))
            np.testing.assert_allclose(ours, theirs, atol=tolerance * max(1.0, scale))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_time_budget_stops_training(cli, corpora: dict[str, Path], tmp_path: Path) -> None:
    result = cli("train-text", "--corpus", corpora["english"], *TINY, "--epochs", "500",
                 "--max-minutes", "0.05", "--output", tmp_path / "m", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["stopped_by_time"] and report["epochs_run"] < 500
    assert not (tmp_path / ".m.resume").exists()  # a run stopped by time is finished


def test_a_short_budget_gets_the_short_gru_recipe() -> None:
    """--max-minutes under 5 trains one narrower GRU layer at a higher rate with less weight
    decay and no dropout (what learns most in a few CPU-minutes); a longer budget or none, the
    LSTM and the transformer, options given and fine-tuning keep their own."""
    from dlkit.text.config import TextArch, TextConfig

    def resolved(**options: object) -> tuple:
        config = TextConfig(**options)
        config.check()
        return (config.layers, config.dim, config.learning_rate, config.weight_decay,
                config.dropout)

    assert resolved() == resolved(max_minutes=5) == resolved(max_minutes=10) == \
        (2, 384, 4e-3, 0.1, 0.2)
    assert resolved(max_minutes=3) == resolved(max_minutes=0.5) == (1, 320, 8e-3, 0.01, 0)
    assert resolved(max_minutes=3, arch=TextArch.lstm) == (1, 384, 4e-3, 0.1, 0)
    assert resolved(max_minutes=3, arch=TextArch.transformer) == (4, 192, 4e-3, 0.1, 0)
    assert resolved(max_minutes=3, layers=3, dim=512, learning_rate=1e-3, weight_decay=0.2,
                    dropout=0.1) == (3, 512, 1e-3, 0.2, 0.1)
    assert resolved(max_minutes=3, from_preset="gpt2_base_en")[2:4] == (5e-5, 0.1)


def test_a_recurrent_model_is_scored_on_long_validation_windows() -> None:
    """generate-text carries a GRU's state through all it writes, so validation reads 1,024
    characters at a time (or all there are); a transformer reads --seq-len at most."""
    from dlkit.text.config import TextArch
    from dlkit.text.train import _val_window

    assert _val_window(TextArch.gru, 128, 111_539) == _val_window(TextArch.lstm, 128, 5000) \
        == 1024
    assert _val_window(TextArch.gru, 2048, 111_539) == 2048
    assert _val_window(TextArch.gru, 128, 300) == 299
    assert _val_window(TextArch.transformer, 128, 111_539) == 128
    assert _val_window(TextArch.transformer, 128, 50) == 49


def _resumable(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dlkit", "train-text", "--corpus", str(corpus),
            *ENGLISH_RECIPE, "--output", str(out), "--json", *extra]


def test_ctrl_c_saves_model_and_checkpoint_then_resume_matches(
        cli, corpora: dict[str, Path], english_run: tuple[Path, dict], tmp_path: Path) -> None:
    """Ctrl-C: the model so far in the output folder plus the checkpoint, exit 130; --resume
    ends with the history an uninterrupted run has (windows, dropout, schedule all match): the
    English model's, trained in-process with the same options (the same history as in a
    process of its own)."""
    _, a = english_run
    out = tmp_path / "m"
    stopped = interrupt_after(_resumable(corpora["english"], out), "epoch 1/", signal.SIGINT)
    stdout, stderr = stopped.stdout, stopped.stderr
    assert stopped.returncode == 130, stderr
    assert_one_error_line(stderr)
    assert stdout == "" and str(out) in stderr and "--resume" in stderr
    meta = json.loads((out / "metadata.json").read_text())  # the model as trained so far
    state = checkpoint_state(tmp_path / ".m.resume")
    assert 1 <= state["epochs_done"] < 3 and f"{state['epochs_done']} of 3 epochs" in stderr
    assert meta["training"]["stopped"] == "interrupted"
    assert meta["training"]["epochs_completed"] == state["epochs_done"]

    other = cli(*_resumable(corpora["english"], out, "--resume", "--seed", "4")[3:])
    assert other.exit_code == 2 and "other settings (--seed)" in other.stderr

    resumed = dlkit_in_process(_resumable(corpora["english"], out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {state['epochs_done']}" in resumed.stderr
    b = json.loads(resumed.stdout)
    assert len(b["history"]["loss"]) == b["epochs_run"] == 3
    assert b["history"] == a["history"] and b["sample"] == a["sample"]
    assert not (tmp_path / ".m.resume").exists()  # a finished run removes its checkpoint
    assert json.loads((out / "metadata.json").read_text())["training"]["stopped"] == "completed"


def test_resume_needs_a_checkpoint_of_the_same_settings(corpora: dict[str, Path],
                                                        tmp_path: Path, cli) -> None:
    missing = cli("train-text", "--corpus", corpora["english"], *TINY, "--output",
                  tmp_path / "m", "--resume")
    assert missing.exit_code == 2 and "nothing to resume" in missing.stderr
    assert_one_error_line(missing.stderr)


@pytest.mark.parametrize("content", [b"", b"x", b"aaaaaaaa", b"\x89PNG\r\n\x1a\n\x00\x00",
                                     "caf\u00e9".encode("latin-1") * 50])
def test_bad_corpus_is_one_line_exit_2(cli, tmp_path: Path, content: bytes) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    result = cli("train-text", "--corpus", corpus, *TINY, "--output", tmp_path / "m")
    assert result.exit_code == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args, words", [
    (["--length", "0"], "--length"),
    (["--temperature", "0"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--top-k", "0"], "--top-k"),
])
def test_bad_generate_options_exit_2(cli, english_model: Path, args: list[str],
                                     words: str) -> None:
    result = cli("generate-text", "--model", english_model, *args)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)
    assert words in result.stderr and result.stdout == ""


def test_missing_model_says_how_to_train(cli, tmp_path: Path) -> None:
    result = cli("generate-text", "--model", tmp_path / "nope", "--prompt", "hi")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)
    assert "dlkit train-text" in result.stderr and result.stdout == ""
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metadata.json").write_text('{"task": "train-mnist"}')
    wrong = cli("generate-text", "--model", tmp_path / "other")
    assert wrong.exit_code == 2 and "not a dlkit character model" in wrong.stderr


SHAKESPEARE = REAL_DATA / "tinyshakespeare" / "input.txt"


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason=f"{SHAKESPEARE} not found")
def test_default_corpus_is_tiny_shakespeare(tmp_path: Path) -> None:
    done = run_in_process("train-text", *TINY, "--limit", "3000", "--output", tmp_path / "m",
                          "--json", "--quiet", env={"DLKIT_DATA": str(REAL_DATA)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["corpus"].endswith("tinyshakespeare/input.txt")
    assert report["train_chars"] + report["val_chars"] == 3000
    assert os.path.isdir(report["artifacts"]["model_dir"])
