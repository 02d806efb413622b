"""Pretrained language models (issue 13): `generate-text --model PRESET`, `dlkit models` and
`train-text --from-preset`, on tiny GPT-2 presets the tests build and save with
`save_to_preset` (real weights cannot be downloaded here), loaded by folder and by name from a
kagglehub cache the tests plant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_one_error_line,
    dlkit_in_process,
    interrupt_after,
    run_dlkit,
    run_in_process,
)
from hub_presets import plant_in_cache, save_gpt2_preset

pytest.importorskip("keras_hub")

PROMPTS = ["the quick", "héllo wörld 東", ""]
HANDLE = "kaggle://keras/gpt2/keras/gpt2_base_en/3"
CORPUS = ("the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs on.\n"
          "a lazy dog and a quick fox: the fox jumps, the dog sleeps.\n") * 40


@pytest.fixture(scope="module")
def preset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_gpt2_preset(tmp_path_factory.mktemp("hub") / "gpt2_tiny")


@pytest.fixture(scope="module")
def cache(preset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kagglehub")
    plant_in_cache(preset, root, HANDLE)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "fox.txt"
    path.write_text(CORPUS, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finetuned(preset: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ft") / "fox"
    done = run_in_process("train-text", "--from-preset", preset, "--corpus", corpus,
                          "--seq-len", "32", "--batch-size", "8", "--epochs", "3", "--lr",
                          "3e-3", "-o", out, "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    return {"out": out, "result": json.loads(done.stdout)}


def generate(cli, model: Path | str, *args: str, env: dict | None = None):
    result = cli("generate-text", "--model", str(model), *args, env=env)
    assert result.exit_code == 0, result.stderr
    return result


def test_streamed_greedy_text_equals_keras_hub_generate(cli, preset: Path) -> None:
    """The CLI's streamed greedy output is keras-hub's own generate() output (greedy sampler),
    character for character, including non-ASCII prompts and the empty prompt."""
    from dlkit.core.hub import Preset, load_task

    task = load_task(Preset("tiny", preset, "local folder"), "CausalLM")
    task.compile(sampler="greedy")
    from dlkit.text.pretrained_decoding import prompt_ids

    for prompt in PROMPTS:
        length = 40
        expected = task.generate(prompt, max_length=len(prompt_ids(task, prompt)) + length)
        got = generate(cli, preset, "--prompt", prompt, "-n", str(length), "--sampler",
                       "greedy", "-q").stdout
        assert got == expected + "\n", (prompt, got, expected)


def test_prompt_ids_match_keras_hub_preprocessing(preset: Path) -> None:
    from dlkit.core.hub import Preset, load_task
    from dlkit.text.pretrained_decoding import prompt_ids

    task = load_task(Preset("tiny", preset, "local folder"), "CausalLM")
    for prompt in PROMPTS:
        packed = task.preprocessor.generate_preprocess([prompt], sequence_length=64)
        n = int(np.asarray(packed["padding_mask"]).sum())
        assert prompt_ids(task, prompt) == list(np.asarray(packed["token_ids"])[0, :n])


def test_text_pieces_never_split_a_character(preset: Path) -> None:
    """Feeding the tokens of a text one by one gives the text back, each piece whole."""
    from dlkit.core.hub import Preset, load_task
    from dlkit.text.pretrained_decoding import TextPieces, prompt_ids

    task = load_task(Preset("tiny", preset, "local folder"), "CausalLM")
    text = "naïve café 東京 — ça va? ünïcode"
    pieces = TextPieces(task.preprocessor.tokenizer)
    out = [pieces(t) for t in prompt_ids(task, text)[1:]]  # without the start token
    out.append(pieces.flush())
    assert "".join(out) == text and "\ufffd" not in "".join(out)


@pytest.mark.parametrize("settings", [
    {"greedy": True}, {}, {"temperature": 0.7, "top_k": 40}, {"top_p": 0.9},
    {"temperature": 1.3, "top_k": 50, "top_p": 0.8}])
def test_the_graph_sampler_picks_what_the_numpy_sampler_picks(settings: dict) -> None:
    """Streamed generation picks tokens inside the TensorFlow loop from the Sampler's own
    uniform draws: on 200 random logit vectors (flat to peaked), every pick is NumPy's."""
    import tensorflow as tf

    from dlkit.core.sampling import Sampler
    from dlkit.text.pretrained_decoding import graph_pick

    pick = tf.function(graph_pick(Sampler(**settings)))
    numpy_side, graph_side = Sampler(**settings, seed=7), Sampler(**settings, seed=7)
    rng = np.random.default_rng(0)
    for i in range(200):
        logits = (rng.standard_normal(5000) * (1 + 2 * (i % 5))).astype(np.float32)
        (uniform,) = graph_side.uniforms(1)
        assert int(pick(tf.constant(logits), tf.constant(uniform))) == numpy_side(logits), i


def test_tokens_stream_the_first_alone_then_a_few_per_call(preset: Path) -> None:
    """The first token is out before any loop runs, then 2, 4 and 8 tokens per TensorFlow
    call; an end-of-text token inside a call ends the sample there (not yielded)."""
    from dlkit.core.sampling import Sampler
    from dlkit.text.pretrained import open_pretrained

    decoder = open_pretrained(str(preset)).decoder
    ids, calls, seen = [1, 2, 3], [], []
    run = decoder.run

    def counted(token: int, count: int, sampler: Sampler, stops: set[int]) -> list[int]:
        calls.append((len(seen), count))
        return run(token, count, sampler, stops)

    def stream(stops: set[int]) -> list[int]:
        seen.clear()
        calls.clear()
        for token in decoder.tokens(ids, 30, Sampler(greedy=True), stops):
            seen.append(token)
        return list(seen)

    decoder.run = counted
    whole = stream(set())
    assert len(whole) == 30 and calls == [(1, 2), (3, 4), (7, 8), (15, 8), (23, 7)]
    # a token first made inside the third call (the 8-token one) ends the sample there
    cut = next(i for i in range(7, 15) if whole[i] not in whole[:i])
    assert stream({whole[cut]}) == whole[:cut] and calls == [(1, 2), (3, 4), (7, 8)]


def test_load_by_name_from_the_planted_cache_offline(cli, preset: Path, cache: Path) -> None:
    """`--model gpt2_base_en` loads the cached copy with DLKIT_OFFLINE=1 (no network probe);
    the same seed gives the same text as the folder; the handle works too."""
    env = {"KAGGLEHUB_CACHE": str(cache), "DLKIT_OFFLINE": "1"}
    by_name = generate(cli, "gpt2_base_en", "--prompt", "the", "-n", "20", "--seed", "5",
                       env=env)
    assert "kagglehub cache" in by_name.stderr
    by_folder = generate(cli, preset, "--prompt", "the", "-n", "20", "--seed", "5", "-q")
    by_handle = generate(cli, HANDLE.rsplit("/", 1)[0], "--prompt", "the", "-n", "20",
                         "--seed", "5", "-q", env=env)
    assert by_name.stdout == by_folder.stdout == by_handle.stdout


def test_models_lists_presets_and_what_is_cached(cli, cache: Path) -> None:
    listed = cli("models", "--kind", "text", "--json", env={"KAGGLEHUB_CACHE": str(cache)})
    assert listed.exit_code == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)["models"]}
    assert rows["gpt2_base_en"]["cached"] and not rows["gpt2_medium_en"]["cached"]
    assert rows["gpt2_base_en"]["parameters"] > 100_000_000
    assert "bart_base_en" not in rows  # encoder-decoder models need an encoder input
    cached = cli("models", "--cached", env={"KAGGLEHUB_CACHE": str(cache)})
    assert cached.exit_code == 0 and "gpt2_base_en" in cached.stdout
    assert "gpt2_medium_en" not in cached.stdout


def test_seeded_sampling_is_repeatable_across_processes(preset: Path) -> None:
    args = ("generate-text", "-m", preset, "--prompt", "the fox", "-n", "30", "--sampler",
            "top-p", "--seed", "11", "--num-samples", "2")
    first, second = run_dlkit(*args), run_dlkit(*args)
    assert first.returncode == second.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    samples = first.stdout.split("\n\n")
    assert len(samples) == 2 and samples[0] != samples[1]  # seed + index per sample
    other = run_in_process(*args[:-4], "--seed", "12")  # another seed: no process needed
    assert other.stdout != first.stdout.split("\n\n")[0] + "\n"


def test_early_pipe_close_is_quiet(preset: Path) -> None:
    pipeline = (f"{sys.executable} -m dlkit generate-text -m {preset} --prompt the -n 120 "
                "| head -c 5")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], capture_output=True,
                          timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) == 5 and b"Traceback" not in done.stderr
    assert b"error" not in done.stderr


def test_download_goes_through_kagglehub_and_its_messages_to_stderr(
        preset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Not cached and online: kagglehub.model_download fetches the handle into the cache
    (replaced here by a copy from a local folder); what it prints goes to stderr."""
    import kagglehub

    from dlkit.core import hub

    calls = []

    def fake_download(handle: str) -> str:
        calls.append(handle)
        print("Downloading from https://www.kaggle.com/...")  # what kagglehub prints
        return str(plant_in_cache(preset, tmp_path, "kaggle://" + handle))

    monkeypatch.setattr(kagglehub, "model_download", fake_download)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    monkeypatch.delenv("DLKIT_OFFLINE")
    found = hub.resolve("gpt2_medium_en", "CausalLM")
    assert calls == ["keras/gpt2/keras/gpt2_medium_en/3"] and found.source.startswith("down")
    out, err = capsys.readouterr()
    assert out == "" and "Downloading" in err
    assert hub.resolve("gpt2_medium_en", "CausalLM").source.startswith("the kagglehub cache")

    def failing(handle: str) -> str:
        raise ConnectionError("Failed to resolve 'www.kaggle.com'")

    monkeypatch.setattr(kagglehub, "model_download", failing)
    with pytest.raises(hub.DataError, match="cannot download pretrained model gpt2_large_en "
                       r"\(ConnectionError.*check the network"):
        hub.resolve("gpt2_large_en", "CausalLM")


def test_offline_uncached_preset_is_one_line_exit_1(cli, cache: Path) -> None:
    result = cli("generate-text", "-m", "gpt2_medium_en",
                 env={"KAGGLEHUB_CACHE": str(cache), "DLKIT_OFFLINE": "1"})
    assert result.exit_code == 1 and result.stdout == ""
    assert_one_error_line(result.stderr)
    assert "DLKIT_OFFLINE=1 forbids downloading" in result.stderr


def test_finetuning_lowers_validation_loss_and_its_folder_generates(
        cli, finetuned: dict, preset: Path) -> None:
    result, out = finetuned["result"], finetuned["out"]
    history = result["history"]["val_loss"]
    vocab = 317  # the tiny preset's vocabulary: a uniform guess costs ln(317) = 5.76 nats
    assert history[-1] < history[0] and history[-1] < 0.8 * np.log(vocab), history
    assert result["val_loss_per_char"] < result["val_loss"]  # BPE tokens hold > 1 character
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "train-text" and meta["pretrained"]["from"] == str(preset)
    assert {"preset", "saved_model", "metadata.json", "plots"} <= set(meta["files"])
    assert (out / "plots" / "loss_curve.png").is_file()
    text = generate(cli, out, "--prompt", "the", "-n", "15", "--sampler", "greedy", "-q")
    assert text.stdout.startswith("the") and len(text.stdout) > 5
    from dlkit.core.hub import resolve

    assert resolve(str(out), "CausalLM").path == out / "preset"  # --from-preset FOLDER too


def test_export_of_a_finetuned_folder_says_what_export_converts(cli, finetuned: dict) -> None:
    """Issue 24: `dlkit export` said the folder "holds a train-text model, not a text model".
    It says why it cannot convert this folder, what it converts, and what serves it."""
    out = finetuned["out"]
    for args in (("export", out), ("export", out, "--quantize", "dynamic", "-o",
                                    out.parent / "x.tflite")):
        result = cli(*args)
        assert result.exit_code == 2 and result.stdout == ""
        assert_one_error_line(result.stderr)
        assert "not a text model" not in result.stderr
        assert "no fixed length" in result.stderr and "train-text without --from-preset" \
            in result.stderr
        assert f"dlkit generate-text --model {out}" in result.stderr
        assert not (out.parent / "x.tflite").exists()
    refused = cli("generate-text", "--model", out, "--backend", "litert")
    assert refused.exit_code == 2 and "export" not in refused.stderr


def test_saved_model_serves_the_same_logits(finetuned: dict) -> None:
    import tensorflow as tf

    from dlkit.core.hub import Preset, load_task
    from dlkit.core.saved_model import scan

    out = finetuned["out"]
    scan(out / "saved_model")  # dlkit's scan of untrusted graphs lets its own through
    task = load_task(Preset("ft", out / "preset", "local folder"), "CausalLM")
    ids = np.array([[316, 116, 257, 275, 261, 40]], np.int32)
    mask = np.ones_like(ids, bool)
    expected = np.asarray(task({"token_ids": ids, "padding_mask": mask}))
    served = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    got = next(iter(served(token_ids=tf.constant(ids), padding_mask=tf.constant(mask))
                    .values())).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_lora_trains_few_parameters_and_reloads(cli, preset: Path, corpus: Path,
                                                tmp_path: Path) -> None:
    out = tmp_path / "lora"
    done = cli("train-text", "--from-preset", str(preset), "--corpus", str(corpus),
               "--seq-len", "32", "--batch-size", "8", "--epochs", "1", "--lora", "2",
               "-o", str(out), "--json", "--quiet")
    assert done.exit_code == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["lora_rank"] == 2
    assert result["trainable_parameters"] < result["parameters"] / 10
    generate(cli, out, "--prompt", "the", "-n", "5", "-q")


def test_interrupted_finetuning_resumes_to_the_same_history(preset: Path, corpus: Path,
                                                             tmp_path: Path) -> None:
    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "dlkit", "train-text", "--from-preset", str(preset),
                "--corpus", str(corpus), "--seq-len", "32", "--batch-size", "8", "--epochs",
                "4", "--lr", "3e-3", "--deterministic", "-o", str(out), "--json", *extra]

    straight = dlkit_in_process(command(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    stopped = interrupt_after(command(tmp_path / "m"), "epoch 2/", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    assert (tmp_path / "m" / "preset" / "config.json").is_file()  # saved as trained so far
    resumed = dlkit_in_process(command(tmp_path / "m", "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after" in resumed.stderr
    a, b = json.loads(straight.stdout), json.loads(resumed.stdout)
    assert a["history"] == b["history"] and b["epochs_run"] == 4


def test_a_preset_that_cannot_be_written_is_one_line(preset: Path, corpus: Path,
                                                     tmp_path: Path) -> None:
    """keras-hub's `save_to_preset` writes the weights with HDF5, which crashed the process
    (SIGSEGV) when the write failed half-way; under a file size limit smaller than the weights
    (a full disk, runnable anywhere) it is one line, exit 1, the trained weights are kept, and
    --resume saves them once there is room."""
    out = tmp_path / "fox"
    args = ("train-text", "--from-preset", preset, "--corpus", corpus, "--seq-len", "32",
            "--batch-size", "8", "--epochs", "1", "-o", out, "--quiet")
    trained = run_in_process(*args, env={"DLKIT_FAULT": "after-fit:error"})
    assert trained.returncode == 1 and "--resume" in trained.stderr, trained.stderr
    weights = (preset / "model.weights.h5").stat().st_size
    limited = run_dlkit(*args, "--resume", file_size_limit=weights // 2)
    assert limited.returncode == 1, (limited.returncode, limited.stderr[-2000:])
    assert_one_error_line(limited.stderr)
    assert f"cannot write the model folder {out} (File too large)" in limited.stderr
    assert "--resume" in limited.stderr and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".fox.resume"]
    saved = run_in_process(*args, "--resume")
    assert saved.returncode == 0, saved.stderr
    assert (out / "preset" / "model.weights.h5").stat().st_size > weights // 2


def test_a_prompt_beyond_the_context_is_refused_before_it_is_tokenized(
        preset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt of more characters than the context's tokens can stand for is refused from
    its length (a tokenizer handed hundreds of megabytes aborted the process); one that fits
    is tokenized and checked in tokens as before."""
    from dlkit.core.errors import UsageError
    from dlkit.core.hub import Preset, load_task
    from dlkit.text import pretrained_decoding as decoding
    from dlkit.text.pretrained import PretrainedGenerator

    generator = PretrainedGenerator(load_task(Preset("tiny", preset, "local folder"),
                                              "CausalLM"), "tiny")
    tokenize = decoding.prompt_ids
    with monkeypatch.context() as patch:
        patch.setattr(decoding, "prompt_ids", lambda *a: pytest.fail("the prompt was tokenized"))
        with pytest.raises(UsageError, match="characters, more than tiny's context of 128"):
            generator.prepare("the fox " * 1_000_000, 10)
    monkeypatch.setattr(decoding, "prompt_ids", tokenize)
    generator.prepare("the fox", 10)
    assert generator.ids and generator.length == 10
