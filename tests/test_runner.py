"""Issue 12: the runner, the config as the one source of truth, `--data-dir`, short runs.

- Every option that shapes a training recipe is compared on `--resume`: for every train
  command and every such option (read off the config dataclass, so a new option is covered
  without touching this file), a resume with another value is refused (exit 2, naming the
  option) before any work, and the checkpoint is left as it was.
- The Typer commands are built from the configs: every config field is a parameter.
- `--data-dir` is authoritative; the dataset's own folder works; the data's origin is printed.
- A 2-epoch run of the default digit classifier is far above chance.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

import pytest
from conftest import assert_one_error_line
from test_data_safety import fingerprint

from dlkit.cli import COMMANDS
from dlkit.core.config import TrainConfig, base_type, cli_name, field_types, spec_of

TOPICS = {"space": "orbit rocket planet galaxy comet telescope lunar launch star moon",
          "food": "oven flour butter simmer recipe garlic onion bake sauce pepper"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runner-inputs")
    corpus = root / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    csv = root / "series.csv"
    csv.write_text("t,value\n" + "".join(f"{i},{10 + (i % 12) * 0.5:.2f}\n" for i in range(90)))
    texts = root / "texts"
    for topic, words in TOPICS.items():
        (texts / topic).mkdir(parents=True)
        for i in range(8):
            (texts / topic / f"{i}.txt").write_text(f"{words} {i}\n")
    return {"corpus": corpus, "csv": csv, "texts": texts}


# Tiny runs of every train command (2 epochs, so that a checkpoint exists after the first).
BASE = {
    "train-mnist": ("--dataset", "mnist", "--data-dir", "{root}", "--arch", "mlp", "--limit",
                    "48", "--batch-size", "16"),
    "train-cifar": ("--data-dir", "{root}", "--arch", "seed", "--limit", "40", "--batch-size",
                    "16"),
    "train-text": ("--corpus", "{corpus}", "--seq-len", "8", "--dim", "8", "--batch-size",
                   "8"),
    "train-gan": ("--dataset", "mnist", "--data-dir", "{root}", "--limit", "32", "--batch-size",
                  "16", "--latent-dim", "4", "--width", "4"),
    "train-flow": ("--dataset", "mnist", "--data-dir", "{root}", "--limit", "32",
                   "--batch-size", "16", "--width", "8", "--steps", "2"),
    "train-vae": ("--dataset", "mnist", "--data-dir", "{root}", "--arch", "dense",
                  "--latent-dim", "2", "--limit", "32", "--batch-size", "16"),
    "train-sequence": ("--csv", "{csv}", "--column", "value", "--window", "4", "--units", "4",
                       "--members", "1"),
    "train-text-classifier": ("--data-dir", "{texts}", "--seq-len", "8", "--vocab-size", "50",
                              "--batch-size", "8"),
}
# Values that need more than the generic rule below.
OTHER = {("train-sequence", "column"): "t", ("train-text", "heads"): "2",
         ("train-text", "layers"): "3",  # unset takes the GRU recipe's 2
         ("train-text", "learning_rate"): "1e-3",
         ("train-text-classifier", "learning_rate"): "1e-3",
         ("train-cifar", "learning_rate"): "1e-3", ("train-cifar", "label_smoothing"): "0.3",
         ("train-mnist", "learning_rate"): "1e-3", ("train-mnist", "label_smoothing"): "0.3",
         # unset takes the arch's recipe (seed: augmented; mlp: not)
         ("train-cifar", "augment"): None, ("train-mnist", "augment"): "on",
         # --members is airbench's: the small archs these runs train have one and no other
         # (test_recipes.py covers the ensemble)
         ("train-cifar", "members"): "", ("train-mnist", "members"): ""}
# Options that need a pretrained preset beside them (test_pretrained_*.py train with them);
# resume compares them like any other recipe option.
NEEDS_PRESET = {"backbone", "head_epochs", "from_preset", "lora"}
TRAIN_CONFIGS = {c.COMMAND: c for c, _, _ in COMMANDS if issubclass(c, TrainConfig)}


def _args(command: str, root: Path, inputs: dict[str, Path], out: Path) -> list[str]:
    places = {"root": str(root), **{k: str(v) for k, v in inputs.items()}}
    return [command, *(a.format(**places) for a in BASE[command]), "--epochs", "2", "-o",
            str(out), "--quiet"]


def _given(args: list[str], option: str) -> str | None:
    return args[args.index(option) + 1] if option in args else None


def _other_value(command: str, field: dataclasses.Field, args: list[str]) -> list[str]:
    """Command-line words that set `field` to a valid value other than this run's."""
    config_type = TRAIN_CONFIGS[command]
    kind = base_type(field_types(config_type)[field.name])
    name, spec = cli_name(field), spec_of(field)
    given = _given(args, name)
    current = given if given is not None else field.default
    if (command, field.name) in OTHER:
        value = OTHER[(command, field.name)]
        return {None: [f"--no-{name[2:]}"], "on": [name], "": []}.get(value, [name, value])
    if kind is bool:
        return [f"--no-{name[2:]}" if current else name]
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        others = [m.value for m in kind if m.value != str(getattr(current, "value", current))]
        return [name, others[0]] if others else []
    if kind is int:
        value = int(current) + 1 if current is not None else 2
        return [name, str(min(value, int(spec.max)) if spec.max else value)]
    if kind is float:
        value = float(current or 0.0)
        return [name, str(value * 0.5 if field.name == "learning_rate" else
                          round(value + 0.05, 4))]
    return [name, f"{current}-other"]


@pytest.mark.parametrize("command", sorted(BASE))
def test_resume_refuses_every_changed_recipe_option(command: str, cli, tiny_root: Path,
                                                    inputs: dict[str, Path],
                                                    tmp_path: Path) -> None:
    assert set(BASE) == set(TRAIN_CONFIGS)  # every train command is covered
    out = tmp_path / "run"
    args = _args(command, tiny_root, inputs, out)
    first = cli(*args, env={"DLKIT_FAULT": "after-fit:error"})  # fails with the checkpoint
    assert first.exit_code == 1 and "--resume" in first.stderr, first.stderr
    checkpoint = tmp_path / ".run.resume"
    saved = fingerprint(checkpoint)
    recipe = [f for f in dataclasses.fields(TRAIN_CONFIGS[command])
              if spec_of(f) is not None and spec_of(f).resume]
    tried = 0
    for field in recipe:
        if field.name in NEEDS_PRESET:
            continue
        other = _other_value(command, field, args)
        if not other:  # an Enum with one member: nothing to change
            continue
        changed = [a for i, a in enumerate(args)
                   if a != other[0] and (i == 0 or args[i - 1] != other[0])]
        result = cli(*changed, *other, "--resume")
        assert result.exit_code == 2, (field.name, other, result.stderr)
        assert_one_error_line(result.stderr)
        assert "other settings" in result.stderr and cli_name(field) in result.stderr, \
            (field.name, result.stderr)
        tried += 1
    assert tried >= 6
    assert fingerprint(checkpoint) == saved  # a refused resume never touches it
    resumed = cli(*args, "--resume", "--json")  # the same options: it saves the run
    assert resumed.exit_code == 0, resumed.stderr
    assert not checkpoint.exists()


def test_every_config_field_is_a_parameter_of_its_command() -> None:
    """The CLI is built from the configs: no option is declared twice, none is missing, and
    every command takes the contract's --json and --quiet."""
    from typer.main import get_command

    from dlkit.cli import app

    group = get_command(app)
    for config_type, _, _ in COMMANDS:
        command = group.commands[config_type.COMMAND]
        params = {p.name for p in command.params}
        fields = {f.name for f in dataclasses.fields(config_type) if spec_of(f) is not None}
        assert params == fields | {"config_file", "print_config"}, config_type.COMMAND
        assert {"json", "quiet"} <= params, config_type.COMMAND


def test_data_dir_is_authoritative(cli, tiny_root: Path, tmp_path: Path) -> None:
    """An explicit --data-dir without the dataset fails (even with DLKIT_DATA holding it) with
    one line naming what it expected, and writes nothing."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (("train-cifar", "--data-dir", empty), ("train-mnist", "--data-dir", empty),
                 ("train-vae", "--data-dir", empty)):
        result = cli(*args, "--epochs", "1", "-o", tmp_path / "out",
                     env={"DLKIT_DATA": str(tiny_root)})
        assert result.exit_code == 1, result.stderr
        assert_one_error_line(result.stderr)
        assert "--data-dir" in result.stderr and "expected" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_the_datasets_own_folder_works_and_its_origin_is_printed(cli, tiny_root: Path,
                                                                 tmp_path: Path) -> None:
    folder = tiny_root / "cifar-10-batches-py"
    result = cli("train-cifar", "--data-dir", folder, "--arch", "seed", "--epochs", "1",
                 "--limit", "32", "-o", tmp_path / "c", "--json", env={"DLKIT_DATA": ""})
    assert result.exit_code == 0, result.stderr
    assert f"reading cifar10 from {folder} (--data-dir)" in result.stderr
    assert json.loads(result.stdout)["dataset"] == "cifar10"


def test_two_epochs_of_the_default_digit_classifier_are_far_above_chance(cli,
                                                                         tmp_path: Path) -> None:
    result = cli("train-mnist", "--dataset", "digits", "--epochs", "2", "-o", tmp_path / "d",
                 "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == "airbench" and report["test_accuracy"] >= 0.85, \
        report["test_accuracy"]


def test_a_new_run_traces_its_train_step_once(cli, tiny_root: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimizer's variables exist before `fit` (`Run.restore` creates them, for a new
    run too), so Keras traces the train step once: a `tf.function` that creates variables
    in its first trace is traced a second time (which every run used to pay)."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    traces = []
    step = TensorFlowTrainer.train_step

    def counted(self, data):  # Python runs this body once per trace, not once per step
        traces.append(1)
        return step(self, data)

    monkeypatch.setattr(TensorFlowTrainer, "train_step", counted)
    result = cli("train-mnist", "--dataset", "mnist", "--data-dir", tiny_root, "--arch", "mlp",
                 "--limit", "48", "--epochs", "2", "-o", tmp_path / "m", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert len(traces) == 1


def test_tensorflow_is_imported_with_the_collector_back_on() -> None:
    """`import_tensorflow` turns the garbage collector off for TensorFlow's first import only
    (conftest imports it that way) and freezes what the import made."""
    import gc

    from dlkit.core.runtime import import_tensorflow

    import_tensorflow()
    assert gc.isenabled()
    assert gc.get_freeze_count() > 100_000


def test_an_event_file_from_a_clock_ahead_delays_a_run_at_most_a_second(tmp_path: Path) -> None:
    """A run waits for the next second after the newest TensorBoard event file in its log
    folder (so TensorBoard reads a resumed run after the run before it), never longer, even
    when a file's name says it was made far in the future."""
    import time

    from dlkit.core.runner import _after_earlier_event_files

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "events.out.tfevents.99999999999.host.1.0.v2").write_bytes(b"")
    (tmp_path / "train" / "events.out.tfevents.odd.name").write_bytes(b"")
    start = time.monotonic()
    _after_earlier_event_files(tmp_path)
    assert time.monotonic() - start < 1.5
