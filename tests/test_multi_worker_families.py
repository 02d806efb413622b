"""`--strategy multi-worker` for the train commands beyond train-mnist (test_multi_worker.py):
two worker processes on 127.0.0.1 train one model, the chief alone writes it, both workers
report the same history, and the result is close to one process with the same global batch.

The GAN, the flow model and the VAE run their own `train_step`s in the same distributed loop
(`dlkit.core.distributed`), their losses divided by the number of replicas. The keras-hub
trainings (`train-text --from-preset`, `train-cifar --backbone`) load their presets after the
cluster has formed, inside its scope, on tiny presets the test saves.

One cluster of two worker processes runs every family's command in turn (the strategy is
formed once per process, as `dlkit.core.runtime.form_cluster` keeps it): the seconds each
worker spends starting TensorFlow and joining the cluster are paid once, not once per family.
test_multi_worker.py runs one command per process, as a user's shell does.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_in_process
from hub_presets import resnet_task, save_gpt2_preset
from local_cluster import finish, start_workers

TEXT = "To be, or not to be, that is the question. All that glitters is not gold.\n" * 40

# the command (and what sets the case apart), its tiny arguments ({D} the test's data folder),
# the figure compared with one process, and how far apart the two may be
CASES = {
    "train-text": (["--corpus", "{D}/corpus.txt", "--epochs", "2", "--seq-len", "16", "--dim",
                    "16", "--batch-size", "16"], "val_loss", 0.15),
    "train-sequence": (["--csv", "{D}/series.csv", "--column", "value", "--window", "6",
                        "--units", "4", "--members", "1", "--epochs", "4", "--batch-size",
                        "16"], "test_rmse", 0.25),
    "train-text-classifier": (["--data-dir", "{D}/texts", "--epochs", "3", "--seq-len", "8",
                               "--vocab-size", "50", "--batch-size", "8"], "val_accuracy",
                              0.25),
    "train-gan": (["--dataset", "mnist", "--data-dir", "{D}/data", "--epochs", "2", "--limit",
                   "64", "--batch-size", "16", "--latent-dim", "4", "--width", "4"],
                  "final_d_loss", 0.5),
    "train-flow": (["--dataset", "mnist", "--data-dir", "{D}/data", "--epochs", "2", "--limit",
                    "64", "--batch-size", "16", "--width", "8", "--steps", "2"], "final_loss",
                   0.25),
    "train-text --from-preset": (["--from-preset", "{D}/gpt2", "--corpus", "{D}/corpus.txt",
                                  "--epochs", "2", "--seq-len", "16", "--batch-size", "4"],
                                 "val_loss", 0.15),
    "train-cifar --backbone": (["--data-dir", "{D}/photos", "--backbone", "{D}/resnet",
                                "--epochs", "2", "--batch-size", "8", "--learning-rate", "1e-2"],
                               "test_accuracy", 0.35),
    "train-vae": (["--dataset", "mnist", "--data-dir", "{D}/data", "--arch", "dense",
                   "--latent-dim", "2", "--epochs", "2", "--limit", "64", "--batch-size", "16"],
                  "test_loss", 0.15),
}


@pytest.fixture(scope="module")
def data(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mw-data")
    shutil.copytree(tiny_root, root / "data")
    (root / "corpus.txt").write_text(TEXT)
    t = np.arange(160)
    (root / "series.csv").write_text("t,value\n" + "".join(
        f"{i},{10 + 5 * np.sin(i / 6):.4f}\n" for i in t))
    topics = {"space": "orbit rocket planet galaxy", "food": "oven flour butter"}
    for topic, words in topics.items():
        (root / "texts" / topic).mkdir(parents=True)
        for i in range(12):
            (root / "texts" / topic / f"{i}.txt").write_text(f"{words} {i}\n")
    save_gpt2_preset(root / "gpt2")
    resnet_task(2).save_to_preset(str(root / "resnet"))
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / "photos" / f"class{c}").mkdir(parents=True)
        for i in range(16):
            image = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            image[c * 16:c * 16 + 16] = 220
            cv2.imwrite(str(root / "photos" / f"class{c}" / f"{i}.png"), image)
    return root


# A worker of the cluster: runs each command line of argv[1] (JSON) through the CLI in this
# one process, as `dlkit ...` would, and prints the exit codes, stdouts and stderrs as JSON.
_WORKER = """
import json, sys
import keras
from typer.testing import CliRunner
from dlkit.cli import app
results = []
for args in json.loads(sys.argv[1]):
    done = CliRunner().invoke(app, args)
    results.append([done.exit_code, done.stdout, done.stderr])
    keras.mixed_precision.set_global_policy("float32")  # as a new process would start
print(json.dumps(results))
"""


def _args(case: str, data: Path) -> list[str]:
    return [case.split()[0], *(a.replace("{D}", str(data)) for a in CASES[case][0]), "--seed",
            "2", "--json", "--quiet"]


@pytest.fixture(scope="module")
def cluster(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every case trained by one cluster of two workers, each case into its own folder's
    `m`: {case: (that folder, the chief's result, the other worker's result)}."""
    root = tmp_path_factory.mktemp("mw-runs")
    folders = {case: root / f"case{i}" for i, case in enumerate(sorted(CASES))}
    commands = [[*_args(case, data), "--strategy", "multi-worker", "-o", str(folder / "m")]
                for case, folder in folders.items()]
    for folder in folders.values():
        folder.mkdir()
    finished = finish(start_workers([[sys.executable, "-c", _WORKER, json.dumps(commands)]] * 2,
                                    [{"DLKIT_DATA": ""}] * 2), timeout=600)
    for code, _, stderr in finished:
        assert code == 0, stderr[-3000:]
    runs = [json.loads(stdout) for _, stdout, _ in finished]
    return {case: (folder, *(worker[i] for worker in runs))
            for i, (case, folder) in enumerate(folders.items())}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_workers_train_one_model(case: str, cluster: dict, data: Path,
                                     tmp_path: Path) -> None:
    _, figure, tolerance = CASES[case]
    folder, *workers = cluster[case]
    for code, _, stderr in workers:
        assert code == 0, stderr
    chief, other = (json.loads(stdout) for _, stdout, _ in workers)
    assert sorted(p.name for p in folder.iterdir()) == ["m"]  # the chief's folder, nothing else
    assert (folder / "m" / "metadata.json").is_file()
    assert chief["history"] == other["history"] and chief[figure] == other[figure]

    args = _args(case, data)
    single = run_in_process(*args, "-o", tmp_path / "one", env={"DLKIT_DATA": ""})  # no cluster
    assert single.returncode == 0, single.stderr
    alone = json.loads(single.stdout)[figure]
    assert abs(chief[figure] - alone) <= tolerance * max(1.0, abs(alone)), (chief[figure], alone)
    # the chief alone draws the pictures, all of those one process draws (a chief that drew
    # through the strategy waited for the other workers until they left, and lost them)
    assert (sorted(p.name for p in (folder / "m" / "plots").iterdir())
            == sorted(p.name for p in (tmp_path / "one" / "plots").iterdir()))
