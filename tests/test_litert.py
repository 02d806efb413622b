"""End-to-end tests of LiteRT serving (issue 15) through the real CLI (in-process, but for the
test that a LiteRT-served command never imports TensorFlow), on tiny models trained here.

Every serving command gives the same results on `--backend litert` and `--backend tensorflow`;
a LiteRT-served command never imports TensorFlow or Keras; `dlkit export` writes float32 and
quantised files that `classify-image` serves; int8 stays within a point of float32 on real data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    REAL_DATA,
    assert_one_error_line,
    assert_plain_keras_loads,
    needs_real_data,
    pattern_images,
    run_in_process,
)
from conftest import (
    train_in_process as train,
)

ENGLISH = ("It was the best of times, it was the worst of times, it was the age of wisdom, "
           "it was the age of foolishness.\n") * 30


@pytest.fixture(scope="module")
def models(zoo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny model folder per family that LiteRT serves (the zoo's, copied here), and the
    inputs they need."""
    root = tmp_path_factory.mktemp("litert")
    for name, zoo_name in (("mnist", "mnist"), ("gan", "gan"), ("vae", "vae"), ("flow", "flow"),
                           ("text_gru", "text")):
        zoo.copy(zoo_name, root / name)
    t = np.arange(150)
    (root / "series.csv").write_text("t,value\n" + "".join(
        f"{i},{10 + 5 * np.sin(i / 6):.4f}\n" for i in t))
    # its own forecaster: the int8 test feeds values of this series' range (5-15), wider than
    # the zoo's series
    train("train-sequence", "--csv", root / "series.csv", "--column", "value", "--window",
          "6", "--horizon", "2", "--units", "4", "--epochs", "2", "--members", "2", "-o",
          root / "seq", "--quiet")
    (root / "corpus.txt").write_text(ENGLISH)
    train("train-text", "--corpus", root / "corpus.txt", "--arch", "transformer", "--epochs",
          "1", "--seq-len", "16", "--dim", "16", "--layers", "2", "--batch-size", "8",
          "-o", root / "text_transformer", "--quiet")
    images = root / "images"
    images.mkdir()
    import cv2

    x, _ = pattern_images(12, 28, 1, seed=5)
    for i, image in enumerate(x):
        assert cv2.imwrite(str(images / f"{i:02d}.png"), image)
    return {"root": root, "images": images, "series": root / "series.csv",
            **{p.name: p for p in root.iterdir() if (p / "metadata.json").is_file()}}


def test_each_folder_holds_a_recorded_tflite(models: dict[str, Path]) -> None:
    for name in ("mnist", "gan", "vae", "flow", "seq", "text_transformer", "text_gru"):
        folder = models[name]
        file = "decoder.tflite" if name.startswith("text") else "model.tflite"
        meta = json.loads((folder / "metadata.json").read_text())
        assert file in meta["files"], name
        record = meta["litert"][file]
        assert record["sha256"] == hashlib.sha256((folder / file).read_bytes()).hexdigest()
        assert record["signatures"], name
    assert not (models["text_gru"] / "model.tflite").exists()  # variable-length input


def test_every_saved_model_and_tflite_dlkit_writes_passes_its_own_checks(
        models: dict[str, Path]) -> None:
    """dlkit's scan of untrusted SavedModels lets every family's own through, and each
    model.tflite carries its folder's serving metadata (class names, preprocessing)."""
    from dlkit.core import litert
    from dlkit.core.saved_model import scan

    for name in ("mnist", "gan", "vae", "seq", "text_transformer", "text_gru"):
        scan(models[name] / "saved_model")
        meta = json.loads((models[name] / "metadata.json").read_text())
        if (models[name] / "model.tflite").exists():
            carried = litert.read_metadata((models[name] / "model.tflite").read_bytes())
            assert carried == litert.serving_metadata(meta) and carried["task"], name
    assert litert.read_metadata((models["mnist"] / "model.tflite").read_bytes())[
        "outputs"] == "probabilities"


def test_every_model_keras_loads_with_plain_keras(models: dict[str, Path], zoo,
                                                  tmp_path: Path) -> None:
    """dlkit's models are stock Keras: each family's model.keras loads where dlkit cannot be
    imported (the forecaster's square-root and log transforms included) and computes what
    dlkit computes."""
    from dlkit.sequence import models as sequence

    core = sequence.build("gru", 6, 2, 4)
    for transform in ("sqrt", "log"):
        folder = tmp_path / f"forecaster_{transform}"
        folder.mkdir()
        sequence.with_scaling(core, 3.0, 2.0, transform).save(folder / "model.keras")
    folders = [models[name] for name in ("mnist", "gan", "vae", "flow", "seq",
                                         "text_transformer", "text_gru")]
    folders += [zoo("tcls"), tmp_path / "forecaster_sqrt", tmp_path / "forecaster_log"]
    assert_plain_keras_loads([folder / "model.keras" for folder in folders], tmp_path)


def _both(*args: object) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    lite = run_in_process(*args, "--backend", "litert")
    tf = run_in_process(*args, "--backend", "tensorflow")
    assert lite.returncode == 0 and tf.returncode == 0, (lite.stderr, tf.stderr)
    return lite, tf


def test_classify_image_same_labels_and_probabilities(models: dict[str, Path]) -> None:
    lite, tf = _both("classify-image", models["images"], "--model", models["mnist"],
                     "--top-k", "3", "--json")
    a, b = json.loads(lite.stdout), json.loads(tf.stdout)
    assert [p["label"] for p in a] == [p["label"] for p in b] and len(a) == 12
    for p, q in zip(a, b, strict=True):
        assert [t["label"] for t in p["top"]] == [t["label"] for t in q["top"]]
        np.testing.assert_allclose([t["confidence"] for t in p["top"]],
                                   [t["confidence"] for t in q["top"]], atol=1e-4)
    assert "LiteRT" in lite.stderr and "SavedModel" in tf.stderr


def test_sample_gan_vae_and_flow_same_images(models: dict[str, Path], tmp_path: Path) -> None:
    import cv2

    for command, name in (("sample-gan", "gan"), ("sample-vae", "vae"), ("sample-flow", "flow")):
        grids = []
        for backend in ("litert", "tensorflow"):
            out = tmp_path / f"{name}-{backend}.png"
            result = run_in_process(command, "--model", models[name], "--count", "20", "--seed",
                               "3", "--out", out, "--backend", backend)
            assert result.returncode == 0, result.stderr
            grids.append(cv2.imread(str(out), cv2.IMREAD_UNCHANGED).astype(int))
        assert grids[0].shape == grids[1].shape
        assert np.abs(grids[0] - grids[1]).max() <= 1, command  # rounding of 0-255 pixels


def test_forecast_same_values(models: dict[str, Path]) -> None:
    lite, tf = _both("forecast", "--model", models["seq"], "--csv", models["series"],
                     "--steps", "5", "--json")
    a, b = json.loads(lite.stdout)["rows"], json.loads(tf.stdout)["rows"]
    assert [r[0] for r in a] == [r[0] for r in b] and len(a) == 5
    np.testing.assert_allclose([float(r[1]) for r in a], [float(r[1]) for r in b], rtol=1e-4)


@pytest.mark.parametrize("arch", ["transformer", "gru"])
def test_generate_text_same_greedy_text(models: dict[str, Path], arch: str) -> None:
    # 60 characters run past the 16-character window: the transformer refills its cache
    lite, tf = _both("generate-text", "--model", models[f"text_{arch}"], "--prompt", "it was",
                     "--length", "60", "--top-k", "1")
    assert lite.stdout == tf.stdout and len(lite.stdout) == len("it was") + 60 + 1
    sampled = [run_in_process("generate-text", "--model", models[f"text_{arch}"], "--length", "40",
                         "--seed", "5", "--backend", b).stdout for b in ("litert", "auto")]
    assert sampled[0] == sampled[1]  # auto picks the folder's decoder.tflite


SERVED = {
    "classify-image": lambda m: ["classify-image", str(m["images"]), "--model", str(m["mnist"])],
    "sample-gan": lambda m: ["sample-gan", "--model", str(m["gan"]), "--count", "4", "--out",
                             str(m["root"] / "g.png")],
    "sample-vae": lambda m: ["sample-vae", "--model", str(m["vae"]), "--count", "4", "--out",
                             str(m["root"] / "v.png")],
    "sample-flow": lambda m: ["sample-flow", "--model", str(m["flow"]), "--count", "4", "--out",
                              str(m["root"] / "f.png")],
    "forecast": lambda m: ["forecast", "--model", str(m["seq"]), "--csv", str(m["series"])],
    "generate-text": lambda m: ["generate-text", "--model", str(m["text_transformer"]),
                                "--length", "20"],
}
PROBE = """
import sys
from dlkit.cli import main
sys.argv = ["dlkit", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules)
sys.stderr.write(f"\\nexit={code} loaded={','.join(loaded) or 'none'}\\n")
"""


@pytest.mark.parametrize("command", sorted(SERVED))
def test_litert_path_imports_neither_tensorflow_nor_keras(models: dict[str, Path],
                                                          command: str) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, *SERVED[command](models)],
                            capture_output=True, text=True, timeout=120)
    assert "exit=0 loaded=none" in result.stderr, result.stderr


def test_export_quantised_files_are_served(models: dict[str, Path], tmp_path: Path) -> None:
    sizes = {}
    for quantize in ("none", "dynamic", "int8"):
        out = tmp_path / f"mnist-{quantize}.tflite"
        result = run_in_process("export", models["mnist"], "--quantize", quantize, "-o", out,
                           "--json", env={"DLKIT_DATA": ""})
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["file"] == str(out) and report["bytes"] == out.stat().st_size
        sizes[quantize] = out.stat().st_size
        served = run_in_process("classify-image", models["images"], "--model", out,
                           "--labels", tmp_path / "labels.txt") if quantize != "none" else None
        if served is not None:
            assert served.returncode == 0, served.stderr
            assert len(served.stdout.splitlines()) == 12
    assert sizes["dynamic"] < sizes["none"] / 2 and sizes["int8"] < sizes["none"] / 2
    # the float32 export is the folder's own model.tflite, byte for byte
    assert (tmp_path / "mnist-none.tflite").read_bytes() == \
        (models["mnist"] / "model.tflite").read_bytes()


@pytest.fixture(autouse=True)
def _labels(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("".join(f"{i}\n" for i in range(10)))


def test_export_into_a_folder_saved_without_a_tflite(models: dict[str, Path],
                                                     tmp_path: Path) -> None:
    """A folder from an older dlkit (no .tflite) gets one, recorded, in one atomic rewrite."""
    for name, file in (("seq", "model.tflite"), ("text_gru", "decoder.tflite")):
        old = tmp_path / name
        shutil.copytree(models[name], old)
        meta = json.loads((old / "metadata.json").read_text())
        (old / file).unlink()
        meta.pop("litert")
        meta["files"].remove(file)
        (old / "metadata.json").write_text(json.dumps(meta))
        refused = run_in_process("forecast" if name == "seq" else "generate-text", "--model", old,
                            *(["--csv", str(models["series"])] if name == "seq" else []),
                            "--backend", "litert")
        assert refused.returncode == 2 and f"has no {file}" in refused.stderr
        result = run_in_process("export", old)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(old / file)
        meta = json.loads((old / "metadata.json").read_text())
        assert file in meta["files"] and meta["litert"][file]["sha256"] == \
            hashlib.sha256((old / file).read_bytes()).hexdigest()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
        served = run_in_process("forecast" if name == "seq" else "generate-text", "--model", old,
                           *(["--csv", str(models["series"])] if name == "seq" else []),
                           "--backend", "litert")
        assert served.returncode == 0, served.stderr


@needs_real_data
def test_int8_accuracy_within_a_point_of_float32(tmp_path: Path) -> None:
    """A small CNN on 3,000 real MNIST images: int8 (calibrated on its training data) loses
    less than one point of test accuracy against the float32 file."""
    from dlkit.core.litert import LiteModel
    from dlkit.data.readers import load_mnist_family

    folder = tmp_path / "mnist"
    train("train-mnist", "--dataset", "mnist", "--data-dir", REAL_DATA, "--arch", "cnn",
          "--epochs", "1", "--limit", "3000", "-o", folder, "--quiet")
    out = tmp_path / "int8.tflite"
    result = run_in_process("export", folder, "--quantize", "int8", "-o", out)
    assert result.returncode == 0, result.stderr
    test = load_mnist_family("mnist", REAL_DATA)
    x, y = test.x_test[:2000].astype(np.float32), test.y_test[:2000]
    x = x[..., None] if x.ndim == 3 else x
    accuracy = {}
    for name, path in (("float32", folder / "model.tflite"), ("int8", out)):
        model = LiteModel.from_bytes(path.read_bytes(), name)
        (key,) = model.signature_keys
        (input_name,) = model.inputs(key)
        (output,) = model.outputs(key)
        logits = np.concatenate([model(key, **{input_name: x[i:i + 250]})[output]
                                 for i in range(0, len(x), 250)])
        accuracy[name] = float((logits.argmax(1) == y).mean())
    assert accuracy["float32"] > 0.8, accuracy
    assert accuracy["float32"] - accuracy["int8"] < 0.01, accuracy


@pytest.mark.parametrize("name", ["gan", "vae", "seq"])
def test_int8_export_calibrates_every_numeric_family(models: dict[str, Path], tmp_path: Path,
                                                     name: str) -> None:
    """Generators calibrate on their latent noise (and labels), the forecaster on windows of
    its training series; the int8 file runs and stays close to the float32 one."""
    from dlkit.core.litert import LiteModel

    out = tmp_path / f"{name}-int8.tflite"
    result = run_in_process("export", models[name], "--quantize", "int8", "-o", out,
                       "--calibration-samples", "32")
    assert result.returncode == 0, result.stderr
    outputs = []
    for path in (models[name] / "model.tflite", out):
        model = LiteModel.from_bytes(path.read_bytes(), str(path))
        inputs = model.inputs("serving_default")
        rng = np.random.default_rng(0)
        feed = {n: (rng.integers(0, 2, (8, *shape[1:])) if np.dtype(dtype).kind == "i"
                    else rng.standard_normal((8, *shape[1:])) * (3 if name == "seq" else 1)
                    + (10 if name == "seq" else 0)).astype(dtype)
                for n, (shape, dtype) in inputs.items()}
        (output,) = model.outputs("serving_default")
        outputs.append(model("serving_default", **feed)[output])
    spread = float(np.ptp(outputs[0])) or 1.0
    assert np.abs(outputs[0] - outputs[1]).max() < 0.25 * spread, name


def test_int8_export_finds_a_relative_data_dir_from_anywhere(cli, tiny_root: Path,
                                                             tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """Issue 24: metadata.json records --data-dir (and train-sequence's --csv) resolved, so
    `export --quantize int8` finds the training data from another working directory; a folder
    whose metadata records its settings in the old spelling (`data_dir`) still exports."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    shutil.copytree(tiny_root, work / "data")
    monkeypatch.setenv("DLKIT_DATA", "")
    monkeypatch.chdir(work)
    trained = cli("train-mnist", "--dataset", "mnist", "--data-dir", "data", "--arch", "mlp",
                  "--limit", "48", "--epochs", "1", "-o", "model", "--quiet")
    assert trained.exit_code == 0, trained.stderr
    meta_path = work / "model" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    assert meta["config"]["data-dir"] == str(work / "data")
    monkeypatch.chdir(elsewhere)
    for spelling in ("current", "old"):
        if spelling == "old":  # as folders written before issue 24 record their settings
            meta["config"] = {key.replace("-", "_"): value
                              for key, value in meta["config"].items()}
            meta_path.write_text(json.dumps(meta))
        out = elsewhere / f"{spelling}.tflite"
        result = cli("export", work / "model", "--quantize", "int8", "-o", out,
                     "--calibration-samples", "16")
        assert result.exit_code == 0, (spelling, result.stderr)
        assert out.stat().st_size > 0

    # the forecaster calibrates on its --csv, recorded resolved too
    monkeypatch.chdir(work)
    (work / "series.csv").write_text("t,value\n" + "".join(
        f"{i},{10 + np.sin(i / 3):.3f}\n" for i in range(80)))
    trained = cli("train-sequence", "--csv", "series.csv", "--column", "value", "--window",
                  "4", "--units", "4", "--epochs", "1", "--members", "1", "-o", "seq", "--quiet")
    assert trained.exit_code == 0, trained.stderr
    monkeypatch.chdir(elsewhere)
    result = cli("export", work / "seq", "--quantize", "int8", "-o", elsewhere / "seq.tflite",
                 "--calibration-samples", "16")
    assert result.exit_code == 0, result.stderr
# ---------------------------------------------------------------------------------------------
# issue 24: right answers from every artifact, a .tflite file alone included

@pytest.fixture(scope="module")
def digits(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A digit model that has learnt the tiny training set (confident predictions), the
    training pictures as files (light on dark) and the same pictures as dark ink on paper
    (bigger, colour), for `--invert auto`."""
    import cv2

    root = tmp_path_factory.mktemp("digits")
    train("train-mnist", "--dataset", "mnist", "--data-dir", tiny_root, "--arch", "cnn",
          "--epochs", "4", "--limit", "240", "-o", root / "model", "--quiet")
    x, _ = pattern_images(240, 28, 1, seed=1)  # the tiny set's training pictures
    for folder in ("light", "paper"):
        (root / folder).mkdir()
    for i, image in enumerate(x[:10]):
        assert cv2.imwrite(str(root / "light" / f"{i}.png"), image)
        paper = np.full((140, 140), 250, np.uint8)  # a white sheet, the digit in its middle
        paper[28:112, 28:112] = cv2.resize(255 - image, (84, 84),
                                           interpolation=cv2.INTER_NEAREST)
        assert cv2.imwrite(str(root / "paper" / f"{i}.png"), np.dstack([paper] * 3))
    return {"root": root, "model": root / "model", "light": root / "light",
            "paper": root / "paper"}


def _classified(cli, *args: object) -> list[dict]:
    result = cli("classify-image", *args, "--json", "--top-k", "3")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _same(a: list[dict], b: list[dict], atol: float) -> None:
    assert [p["label"] for p in a] == [p["label"] for p in b]
    np.testing.assert_allclose([p["confidence"] for p in a], [p["confidence"] for p in b],
                               atol=atol)


def test_int8_file_confidences_are_the_float_models(cli, digits: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """The int8 file's probabilities (which sum to about 1, not exactly) are shown as they
    are, not softmaxed a second time (that gave about 0.23 for every image)."""
    out = tmp_path / "int8.tflite"
    result = cli("export", digits["model"], "--quantize", "int8", "-o", out)
    assert result.exit_code == 0, result.stderr
    float32 = _classified(cli, digits["light"], "--model", digits["model"])
    assert np.mean([p["confidence"] for p in float32]) > 0.5  # a confident model
    for model in ([out], [out, "--labels", tmp_path / "labels.txt"]):
        int8 = _classified(cli, digits["light"], "--model", *model)
        assert [p["label"] for p in int8] == [p["label"] for p in float32]
        np.testing.assert_allclose([p["confidence"] for p in int8],
                                   [p["confidence"] for p in float32], atol=0.05)


def test_a_tflite_file_alone_keeps_its_folders_preprocessing(cli, digits: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """The folder's model.tflite copied out, and `export -o FILE`, classify dark-on-paper
    digits as the folder does (inverted and centred by --invert auto), with its class
    names."""
    alone = tmp_path / "digits.tflite"
    shutil.copyfile(digits["model"] / "model.tflite", alone)
    exported = tmp_path / "exported.tflite"
    assert cli("export", digits["model"], "-o", exported).exit_code == 0
    folder = _classified(cli, digits["paper"], "--model", digits["model"])
    _same(folder, _classified(cli, digits["paper"], "--model", digits["model"], "--invert",
                              "yes"), 1e-6)  # the folder inverts these
    for file in (alone, exported):
        _same(_classified(cli, digits["paper"], "--model", file), folder, 1e-6)
    raw = _classified(cli, digits["paper"], "--model", alone, "--invert", "no")
    assert [p["confidence"] for p in raw] != [p["confidence"] for p in folder]


def test_a_tflite_file_without_dlkit_metadata_is_not_guessed(cli, digits: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """Without the metadata dlkit writes, --invert auto cannot know the model: one line
    saying what is missing; with --invert given it runs. Damaged metadata is one line too."""
    from hostile_models import damaged_metadata, with_metadata, without_metadata

    bare = without_metadata(digits["model"] / "model.tflite", tmp_path / "bare.tflite")
    result = cli("classify-image", digits["paper"], "--model", bare)
    assert result.exit_code == 2 and result.stdout == ""
    assert_one_error_line(result.stderr)
    assert "carries no dlkit metadata" in result.stderr and "--invert" in result.stderr
    folder = _classified(cli, digits["paper"], "--model", digits["model"], "--invert", "no")
    _same(_classified(cli, digits["paper"], "--model", bare, "--invert", "no"), folder, 1e-6)
    damaged = damaged_metadata(digits["model"] / "model.tflite", tmp_path / "damaged.tflite")
    result = cli("classify-image", digits["paper"], "--model", damaged)
    assert result.exit_code == 2 and "damaged dlkit metadata" in result.stderr
    assert_one_error_line(result.stderr)
    malformed = {"preprocessing": ["x"], "class_names": "0123456789", "input_shape": [28, 28],
                 "outputs": "percent", "task": "train-gan"}
    for key, value in malformed.items():
        odd = with_metadata(digits["model"] / "model.tflite", tmp_path / f"{key}.tflite",
                            **{key: value})
        result = cli("classify-image", digits["paper"], "--model", odd)
        assert result.exit_code == 2 and result.stdout == "", (key, result.stderr)
        assert_one_error_line(result.stderr)
