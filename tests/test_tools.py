"""Issue 16 end to end: TensorBoard event files, `dlkit evaluate`, config files, class weights.

- `--tensorboard DIR` writes per-epoch scalars (losses, metrics, learning rate) read back with
  tensorboard's own event reader, and sample images for the GAN and VAE; a resumed run continues
  the same curves with no step written twice.
- `evaluate` on a folder of images gives the accuracy computed from `classify-image --json` on
  the same files; text classifiers and forecasters are evaluated too; unknown classes fail.
- `--config run.toml` sets options by their long names, the command line wins,
  `--print-config` prints TOML that reads back to the same settings.
- `--class-weight balanced` changes the recipe (and is recorded).
"""

from __future__ import annotations

import json
import signal
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_error_line, interrupt_after, pattern_images
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag under a TensorBoard log folder (train/ and validation/), read with
    tensorboard's own event reader: {"train/epoch_loss": [(step, value), ...], ...}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for run in ("train", "validation"):
        if not (folder / run).is_dir():
            continue
        events = EventAccumulator(str(folder / run), size_guidance={"tensors": 0})
        events.Reload()
        for tag in events.Tags()["tensors"]:
            found[f"{run}/{tag}"] = [(e.step, float(np.asarray(
                _tensor(e.tensor_proto)))) for e in events.Tensors(tag)]
    return found


def _tensor(proto: object) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(proto)


def images(folder: Path) -> list[int]:
    """The steps of the sample images under `folder`/samples."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "samples"), size_guidance={"tensors": 0})
    events.Reload()
    return [e.step for e in events.Tensors("samples")]


MNIST = ("train-mnist", "--dataset", "mnist", "--arch", "mlp", "--limit", "96",
         "--batch-size", "32", "--quiet")


def test_tensorboard_scalars_and_a_resumed_run_continues_the_curves(tiny_root: Path,
                                                                   tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    args = [sys.executable, "-m", "dlkit", *MNIST, "--data-dir", str(tiny_root), "--epochs",
            "4", "--seed", "1", "-o", str(tmp_path / "m"), "--tensorboard", str(logs)]
    args.remove("--quiet")  # the epoch lines tell interrupt_after when to stop
    stopped = interrupt_after(args, "epoch 2/", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    from conftest import run_in_process

    resumed = run_in_process(*args[3:], "--resume", env={"DLKIT_DATA": ""})
    assert resumed.returncode == 0, resumed.stderr
    found = scalars(logs)
    for tag in ("train/epoch_loss", "train/epoch_accuracy", "train/epoch_learning_rate",
                "validation/epoch_loss"):
        steps = [step for step, _ in found[tag]]
        assert steps == [0, 1, 2, 3], (tag, steps)  # every epoch once, resumed or not
    history = json.loads((tmp_path / "m" / "metadata.json").read_text())["history"]
    assert np.allclose([v for _, v in found["train/epoch_loss"]], history["loss"], rtol=1e-5)


def test_tensorboard_images_for_the_generators(cli, tiny_root: Path, tmp_path: Path) -> None:
    for command, extra in (("train-gan", ("--latent-dim", "4", "--width", "4")),
                           ("train-vae", ("--arch", "dense", "--latent-dim", "2")),
                           ("train-flow", ("--width", "8", "--steps", "2"))):
        logs = tmp_path / command
        result = cli(command, "--dataset", "mnist", "--data-dir", tiny_root, "--epochs", "2",
                     "--limit", "32", "--batch-size", "16", *extra, "-o", tmp_path / f"{command}-m",
                     "--tensorboard", logs, "--quiet")
        assert result.exit_code == 0, result.stderr
        assert images(logs) == [0, 1], command
        assert scalars(logs), command


@pytest.fixture(scope="module")
def image_model(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    from dlkit.cli import app

    out = tmp_path_factory.mktemp("eval") / "m"
    result = CliRunner().invoke(app, [*MNIST, "--data-dir", str(tiny_root), "--epochs", "3",
                                      "-o", str(out)], env={"DLKIT_DATA": ""})
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def holdout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labelled digit images in class subfolders (as a user would hold out), one corrupt."""
    import cv2

    root = tmp_path_factory.mktemp("holdout")
    x, y = pattern_images(60, 28, 1, seed=30)
    for i, (image, label) in enumerate(zip(x, y, strict=True)):
        (root / str(label)).mkdir(exist_ok=True)
        assert cv2.imwrite(str(root / str(label) / f"{i}.png"), image)
    (root / "3" / "broken.png").write_bytes(b"not a png")
    return root


def test_evaluate_images_equals_classify_image(cli, image_model: Path, holdout: Path,
                                               tmp_path: Path) -> None:
    result = cli("evaluate", holdout, "--model", image_model, "--plots", tmp_path / "report",
                 "--top-k", "2", "--json")
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["examples"] == 60 and scores["skipped"] == 1 and "broken.png" in result.stderr
    predictions = json.loads(cli("classify-image", holdout, "--model", image_model,
                                 "--json").stdout)
    right = [p["label"] == Path(p["path"]).parent.name for p in predictions]
    assert scores["accuracy"] == pytest.approx(np.mean(right))
    top2 = [Path(p["path"]).parent.name in [t["label"] for t in p["top"][:2]]
            for p in json.loads(cli("classify-image", holdout, "--model", image_model,
                                    "--top-k", "2", "--json").stdout)]
    assert scores["top_k_accuracy"] == pytest.approx(np.mean(top2))
    assert sum(row["support"] for row in scores["per_class"].values()) == 60
    for name in ("confusion_matrix.png", "worst_mistakes.png"):
        assert (tmp_path / "report" / name).read_bytes()[:4] == b"\x89PNG"
    plain = cli("evaluate", holdout, "--model", image_model)
    assert plain.stdout.startswith(f"accuracy={scores['accuracy']:.4f} ")


def test_evaluate_from_a_csv_and_unknown_classes(cli, image_model: Path, holdout: Path,
                                                 tmp_path: Path) -> None:
    # the CSV's paths are relative to the CSV's own folder
    rows = [f"{p.relative_to(holdout.parent)},{p.parent.name}"
            for p in sorted(holdout.rglob("*.png")) if p.name != "broken.png"]
    labels = holdout.parent / "labels.csv"
    labels.write_text("path,label\n" + "\n".join(rows) + "\n")
    from_csv = cli("evaluate", labels, "--model", image_model, "--json")
    from_folder = cli("evaluate", holdout, "--model", image_model, "--json")
    assert from_csv.exit_code == 0, from_csv.stderr
    assert json.loads(from_csv.stdout)["accuracy"] == json.loads(from_folder.stdout)["accuracy"]
    odd = tmp_path / "odd"
    (odd / "giraffe").mkdir(parents=True)
    (odd / "giraffe" / "a.png").write_bytes((holdout / "3").glob("*.png").__next__()
                                            .read_bytes())
    unknown = cli("evaluate", odd, "--model", image_model)
    assert unknown.exit_code == 2 and "'giraffe'" in unknown.stderr
    assert_one_error_line(unknown.stderr)


def test_evaluate_text_classifier_and_forecaster(cli, tmp_path: Path) -> None:
    topics = {"space": "orbit rocket planet galaxy comet", "food": "oven flour butter bake"}
    for topic, words in topics.items():
        (tmp_path / "texts" / topic).mkdir(parents=True)
        for i in range(8):
            (tmp_path / "texts" / topic / f"{i}.txt").write_text(f"{words} {i}\n")
    model = tmp_path / "tcls"
    assert cli("train-text-classifier", "--data-dir", tmp_path / "texts", "--epochs", "3",
               "--seq-len", "8", "--vocab-size", "50", "-o", model, "--quiet").exit_code == 0
    texts = cli("evaluate", tmp_path / "texts", "--model", model, "--json")
    assert texts.exit_code == 0, texts.stderr
    assert json.loads(texts.stdout)["examples"] == 16

    series = tmp_path / "s.csv"
    series.write_text("t,value\n" + "".join(f"{i},{10 + np.sin(i / 2):.3f}\n" for i in range(80)))
    seq = tmp_path / "seq"
    assert cli("train-sequence", "--csv", series, "--column", "value", "--window", "4",
               "--units", "4", "--epochs", "2", "--members", "1", "-o", seq,
               "--quiet").exit_code == 0
    result = cli("evaluate", series, "--model", seq, "--plots", tmp_path / "plots", "--json")
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["windows"] > 50 and scores["naive_rmse"] > 0 and scores["rmse"] > 0
    assert (tmp_path / "plots" / "forecast_vs_actual.png").is_file()


def test_config_file_and_print_config(cli, tiny_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('arch = "mlp"\nepochs = 2\nbatch-size = 16\nlimit = 64\n'
                      f'data-dir = "{tiny_root}"\ndataset = "mnist"\n')
    printed = cli("train-mnist", "--config", config, "--epochs", "3", "--print-config")
    assert printed.exit_code == 0, printed.stderr

    settings = tomllib.loads(printed.stdout)
    assert settings["arch"] == "mlp" and settings["batch-size"] == 16
    assert settings["epochs"] == 3  # the command line wins over the file
    again = tmp_path / "again.toml"
    again.write_text(printed.stdout)  # what --print-config prints reads back the same
    assert cli("train-mnist", "--config", again, "--print-config").stdout == printed.stdout
    out = tmp_path / "m"
    trained = cli("train-mnist", "--config", config, "-o", out, "--json", "--quiet")
    assert trained.exit_code == 0, trained.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["config"]["arch"] == "mlp" and meta["config"]["epochs"] == 2
    assert meta["config"]["batch-size"] == 16  # the config file's spelling (issue 24)

    # A model's recorded settings, written as a config file, read back as the same settings.
    recorded = {key: value for key, value in meta["config"].items() if value is not None}
    assert recorded["data-dir"] == str(tiny_root) and recorded["output"] == str(out)
    fed = tmp_path / "fed.toml"
    fed.write_text("".join(f"{key} = {json.dumps(value)}\n" for key, value in recorded.items()))
    again = cli("train-mnist", "--config", fed, "--print-config")
    assert again.exit_code == 0, again.stderr
    assert tomllib.loads(again.stdout) == recorded


def test_metadata_records_paths_as_given_but_the_data_folder(
        cli, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """metadata.json keeps the output and TensorBoard folders as the user typed them (no
    absolute path of the training machine); --data-dir, which export reads back from any
    working directory, is made absolute."""
    import shutil

    shutil.copytree(tiny_root, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    trained = cli("train-mnist", "--data-dir", "data", "--arch", "mlp", "--epochs", "1",
                  "--limit", "64", "-o", "m", "--tensorboard", "logs", "--quiet")
    assert trained.exit_code == 0, trained.stderr
    recorded = json.loads((tmp_path / "m" / "metadata.json").read_text())["config"]
    assert recorded["output"] == "m" and recorded["tensorboard"] == "logs"
    assert recorded["data-dir"] == str((tmp_path / "data").resolve())


def test_config_file_failures_are_the_commands_error_line(cli, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading --config runs inside the CLI's one error mapping: an unexpected failure (here a
    MemoryError, as /dev/zero gave before reads were bounded) is one line, exit 1."""
    import dlkit.options

    def exhausted(*args: object) -> None:
        raise MemoryError

    config = tmp_path / "run.toml"
    config.write_text("epochs = 2\n")
    monkeypatch.setattr(dlkit.options, "read_config_file", exhausted)
    result = cli("datasets", "--config", config)
    assert result.exit_code == 1 and result.stdout == ""
    assert_one_error_line(result.stderr)
    assert "MemoryError" in result.stderr


def test_print_config_round_trips_any_path(tmp_path: Path) -> None:
    """Whatever bytes a path holds (not UTF-8, astral characters, quotes, backslashes, control
    characters), `--print-config > f.toml` then `--config f.toml` gives the same path; an empty
    path is refused on the command line and in a file alike (bad-input rows)."""
    import os
    import subprocess

    from dlkit.core.config import read_config_file
    from dlkit.image_classifier.config import MnistConfig

    odd = os.fsdecode(b"/tmp/caf\xe9/\xf0\x9f\x98\x80 \"q\" \\ \t\nend\x7f")
    command = [sys.executable, "-m", "dlkit", "train-mnist", "--data-dir", odd, "-o",
               os.fsdecode(b"out\xff\xfe"), "--print-config"]
    first = subprocess.run(command, capture_output=True, check=True).stdout
    (tmp_path / "f.toml").write_bytes(first)
    settings = read_config_file(tmp_path / "f.toml", MnistConfig)
    assert os.fsencode(settings["data_dir"]) == os.fsencode(odd)
    assert os.fsencode(settings["output"]) == b"out\xff\xfe"
    second = subprocess.run([*command[:4], "--config", str(tmp_path / "f.toml"),
                             "--print-config"], capture_output=True, check=True).stdout
    assert second == first


def test_class_weight_balanced_is_recorded_and_resumable(cli, image_folder: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "w"
    result = cli("train-cifar", "--data-dir", image_folder, "--arch", "seed", "--epochs", "1",
                 "--batch-size", "8", "--class-weight", "balanced", "-o", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["config"]["class-weight"] == "balanced"
    weights = meta["training"]["class_weights"]
    assert len(weights) == 2 and all(w > 0 for w in weights)


def test_names_and_paths_are_shown_as_typed_never_as_markup(cli, image_model: Path,
                                                            holdout: Path,
                                                            tmp_path: Path) -> None:
    """Issue 24: a class named `[/]` crashed `evaluate` (rich's MarkupError) and `[red]x`
    showed as `x`. Nothing dlkit prints through rich is read as markup."""
    import shutil

    model = tmp_path / "model [bold]v2[/bold]"
    shutil.copytree(image_model, model)
    meta = json.loads((model / "metadata.json").read_text())
    names = ["[/]", "[red]x", *meta["class_names"][2:]]
    (model / "metadata.json").write_text(json.dumps({**meta, "class_names": names}))
    rows = [f"{path},{names[int(path.parent.name)]}"
            for path in sorted(holdout.glob("*/*.png")) if path.parent.name in ("0", "1")]
    labelled = tmp_path / "labels.csv"
    labelled.write_text("path,label\n" + "\n".join(rows) + "\n")
    result = cli("evaluate", labelled, "--model", model)
    assert result.exit_code == 0, result.stderr
    assert "[/]" in result.stderr and "[red]x" in result.stderr  # the per-class table
    assert "[bold]v2[/bold]" in result.stderr  # the summary's title names the model


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(min_size=1, max_size=64).filter(lambda b: b"\0" not in b))
def test_any_path_the_shell_can_give_round_trips(tmp_path: Path, raw: bytes) -> None:
    """Property: a path of any bytes but NUL, as `--print-config` writes it (to_toml, then the
    surrogateescape stdout), reads back with --config as the same bytes."""
    import os

    from dlkit.core.config import read_config_file, to_toml
    from dlkit.image_classifier.config import MnistConfig

    written = to_toml(MnistConfig(data_dir=Path(os.fsdecode(raw))))
    (tmp_path / "f.toml").write_bytes(written.encode("utf-8", "surrogateescape"))
    settings_read = read_config_file(tmp_path / "f.toml", MnistConfig)
    assert os.fsencode(settings_read["data_dir"]) == os.fsencode(Path(os.fsdecode(raw)))
