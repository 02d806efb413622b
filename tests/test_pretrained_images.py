"""Pretrained image models (issue 14): `classify-image --model PRESET` and transfer learning with
`train-cifar --backbone PRESET`, on tiny ResNet presets the tests build with `save_to_preset`
(real ImageNet weights cannot be downloaded here), loaded by folder and from a planted cache."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_error_line, run_in_process
from hub_presets import plant_in_cache, resnet_task, tiny_mobilenet_task

pytest.importorskip("keras_hub")


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image-presets")
    made = {}
    for name, classes in (("resnet3", 3), ("resnet1000", 1000)):
        resnet_task(classes).save_to_preset(str(root / name))
        made[name] = root / name
    tiny_mobilenet_task(3).save_to_preset(str(root / "mobilenet3"))
    made["mobilenet3"] = root / "mobilenet3"
    return made


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three classes of 32x32 pictures (a bright band at a class-specific height), plus one
    larger photo and one corrupt file in `extra/`."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c in range(3):
        (root / "train" / f"class{c}").mkdir(parents=True)
        for i in range(24):
            image = rng.integers(0, 60, (32, 32, 3)).astype(np.uint8)
            image[c * 10:c * 10 + 10] = 220
            cv2.imwrite(str(root / "train" / f"class{c}" / f"{i}.png"), image)
    (root / "extra").mkdir()
    cv2.imwrite(str(root / "extra" / "big.jpg"), rng.integers(0, 255, (90, 70, 3))
                .astype(np.uint8))
    (root / "extra" / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def rgb(path: Path) -> np.ndarray:
    return cv2.imread(str(path))[..., ::-1].astype(np.float32)


@pytest.mark.parametrize("name", ["resnet3", "mobilenet3"])
def test_classify_image_top1_equals_the_presets_own_predict(cli, presets: dict, photos: Path,
                                                             name: str) -> None:
    from dlkit.core.hub import Preset, load_task

    files = sorted((photos / "train" / "class1").glob("*.png"))[:6]
    task = load_task(Preset("r", presets[name], "local folder"), "ImageClassifier")
    logits = task.predict(np.stack([rgb(f) for f in files]), verbose=0)
    if not np.allclose(logits.sum(axis=1), 1, atol=1e-4):  # logits, not probabilities
        logits = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected = logits / logits.sum(axis=1, keepdims=True)
    result = cli("classify-image", *map(str, files), "--model", str(presets[name]),
                 "--json", "--top-k", "3")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    for row, probs in zip(rows, expected, strict=True):
        got = {int(t["label"]): t["confidence"] for t in row["top"]}
        assert len(got) == 3 and all(abs(p - probs[k]) < 1e-4 for k, p in got.items())
        ranked = np.sort(probs)
        if ranked[-1] - ranked[-2] > 1e-3:  # a random tiny model can give near-ties
            assert row["label"] == str(int(probs.argmax()))


def test_images_of_any_size_get_the_presets_own_predictions(cli, presets: dict,
                                                            tmp_path: Path) -> None:
    """Issue 24: photos smaller and larger than the converter's 32x32, of several aspect
    ratios, are handed to the preset's image converter as they are (it resizes and crops
    them itself): classify-image gives what the preset's own `predict()` gives on each."""
    from dlkit.core.hub import Preset, load_task

    rng = np.random.default_rng(4)
    files = []
    for i, (h, w) in enumerate([(20, 20), (24, 40), (31, 30), (50, 50), (90, 70), (64, 33),
                                (20, 20), (45, 120)]):
        image = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
        image[: h // 3] = 240  # some structure: a bright band
        files.append(tmp_path / f"{i}_{h}x{w}.png")
        cv2.imwrite(str(files[-1]), image)
    task = load_task(Preset("r", presets["resnet3"], "local folder"), "ImageClassifier")
    expected = []
    for f in files:
        logits = task.predict(rgb(f)[None], verbose=0)[0]
        probs = np.exp(logits - logits.max())
        expected.append(probs / probs.sum())
    result = cli("classify-image", *map(str, files), "--model", str(presets["resnet3"]),
                 "--json", "--top-k", "3", "--batch-size", "4")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["path"] for r in rows] == [str(f) for f in files]
    for row, probs in zip(rows, expected, strict=True):
        got = {int(t["label"]): t["confidence"] for t in row["top"]}
        assert all(abs(p - probs[k]) < 1e-4 for k, p in got.items()), (row, probs)
        assert row["label"] == str(int(probs.argmax()))


def test_imagenet_names_bad_files_and_a_cached_name(cli, presets: dict, photos: Path,
                                                    tmp_path: Path) -> None:
    """A 1,000-class preset loaded by name from a planted cache shows ImageNet class names;
    an unreadable file is reported by name and the others are still classified (exit 1)."""
    from dlkit.core.hub import preset_table

    handle = preset_table("ImageClassifier")["resnet_18_imagenet"]["kaggle_handle"]
    plant_in_cache(presets["resnet1000"], tmp_path, handle)
    result = cli("classify-image", str(photos / "extra"), "--model", "resnet_18_imagenet",
                 env={"KAGGLEHUB_CACHE": str(tmp_path), "DLKIT_OFFLINE": "1"})
    assert result.exit_code == 1, result.stderr
    assert_one_error_line(result.stderr)
    assert "broken.png" in result.stderr and "kagglehub cache" in result.stderr
    (line,) = result.stdout.splitlines()
    path, label, confidence = line.split("\t")
    assert path.endswith("big.jpg") and not label.isdigit() and 0 < float(confidence) <= 1
    from dlkit.core.hub import imagenet_names

    names = imagenet_names()
    assert label in names and len(set(names)) == 1000  # "crane (134)" and "crane (517)"
    assert "crane (134)" in names and "tench" in names


def test_a_preset_exported_to_a_folder_answers_on_litert_as_on_tensorflow(
        cli, presets: dict, photos: Path, tmp_path: Path) -> None:
    """`dlkit export PRESET -o FOLDER` (issue 28): a model folder whose model.tflite holds the
    preset's image converter; classify-image serves it through LiteRT with what the preset
    itself gives on TensorFlow, ImageNet's class names included for a 1,000-class preset."""
    files = [str(f) for f in sorted((photos / "train").rglob("*.png"))[::12]]
    for name in ("resnet3", "resnet1000"):
        folder = tmp_path / name
        exported = cli("export", str(presets[name]), "-o", str(folder), "--json")
        assert exported.exit_code == 0, exported.stderr
        assert json.loads(exported.stdout)["input_shape"] == [32, 32, 3]
        meta = json.loads((folder / "metadata.json").read_text())
        assert meta["task"] == "export" and (folder / "model.tflite").is_file()
        answers = {}
        for model, backend in ((presets[name], "tensorflow"), (folder, "litert")):
            result = cli("classify-image", *files, "--model", str(model), "--backend",
                         backend, "--json", "--top-k", "2")
            assert result.exit_code == 0, result.stderr
            answers[backend] = json.loads(result.stdout)
        for lite, tf in zip(answers["litert"], answers["tensorflow"], strict=True):
            assert [t["label"] for t in lite["top"]] == [t["label"] for t in tf["top"]]
            assert all(abs(a["confidence"] - b["confidence"]) < 1e-4
                       for a, b in zip(lite["top"], tf["top"], strict=True))
        if name == "resnet1000":
            assert len((folder / "labels.txt").read_text().splitlines()) == 1000
            assert not answers["litert"][0]["label"].isdigit()
    refused = cli("export", str(presets["resnet3"]), "-o", str(tmp_path / "x.tflite"))
    assert refused.exit_code == 2 and "--output FOLDER" in refused.stderr


def test_the_gate_freezes_the_backbone_then_fine_tunes_it_and_bn_stays_frozen(
        presets: dict) -> None:
    """Phase one moves only the head; phase two moves the backbone too; the backbone's
    BatchNormalization statistics never move."""
    import keras

    from dlkit.image_classifier import transfer

    pretrained = transfer.open_backbone(str(presets["resnet3"]))
    pretrained.load()
    model = transfer.build(pretrained, 2)
    model.compile(optimizer=transfer.optimizer(pretrained, 1e-2, 5e-4),
                  loss="categorical_crossentropy")
    backbone = pretrained.backbone
    conv = next(w for w in backbone.weights if "kernel" in w.path)
    stats = [w for w in backbone.weights if "moving_mean" in w.path or "moving_var" in w.path]
    before = (conv.numpy().copy(), [w.numpy().copy() for w in stats])
    head = model.get_layer("logits").kernel.numpy().copy()
    x = np.random.default_rng(1).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 2, 2)
    for _ in range(2):
        model.train_on_batch(x, y)
    assert np.array_equal(conv.numpy(), before[0])
    assert not np.allclose(model.get_layer("logits").kernel.numpy(), head)
    model.get_layer("gate").open.assign(1.0)
    for _ in range(2):
        model.train_on_batch(x, y)
    assert not np.allclose(conv.numpy(), before[0])
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(stats, before[1], strict=True))


def test_transfer_learning_folder_is_served_by_classify_image(cli, presets: dict,
                                                              photos: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "tl"
    trained = run_in_process("train-cifar", "--data-dir", photos / "train", "--backbone",
                             presets["resnet3"], "--epochs", "3", "--batch-size", "16",
                             "--learning-rate", "1e-2", "-o", out, "--json", "--quiet")
    assert trained.returncode == 0, trained.stderr
    result = json.loads(trained.stdout)
    assert result["arch"].startswith("backbone ") and result["epochs_completed"] == 3
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["pretrained"]["head_epochs"] == 1 and meta["class_names"] == [
        "class0", "class1", "class2"]
    assert {"saved_model", "model.keras", "preset", "metadata.json"} <= set(meta["files"])

    # the SavedModel takes raw pixels of any size and equals the Keras model
    import keras
    import tensorflow as tf

    import dlkit.core.hub as hub
    from dlkit.core.saved_model import scan

    scan(out / "saved_model")  # dlkit's scan of untrusted graphs lets its own through
    hub.import_keras_hub()
    model = keras.models.load_model(out / "model.keras", compile=False)
    images = np.random.default_rng(2).uniform(0, 255, (3, 45, 37, 3)).astype("float32")
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    served = next(iter(serve(tf.constant(images)).values())).numpy()
    np.testing.assert_allclose(served, model(images, training=False).numpy(), atol=1e-5)

    files = sorted((photos / "train" / "class2").glob("*.png"))[:5]
    expected = model(np.stack([rgb(f) for f in files]), training=False).numpy()
    names = meta["class_names"]
    for model_path in (out, out / "preset"):
        got = cli("classify-image", *map(str, files), "--model", str(model_path), "--json")
        assert got.exit_code == 0, got.stderr
        rows = json.loads(got.stdout)
        assert [r["label"] for r in rows] == [names[i] for i in expected.argmax(axis=1)]
        np.testing.assert_allclose([r["confidence"] for r in rows], expected.max(axis=1),
                                   atol=1e-4)

    # issue 24: no LiteRT file, and the messages say why instead of suggesting `dlkit export`
    # (which refuses this folder)
    litert = cli("classify-image", str(files[0]), "--model", str(out), "--backend", "litert")
    assert litert.exit_code == 2 and litert.stdout == ""
    assert_one_error_line(litert.stderr)
    assert "dlkit export" not in litert.stderr and "fixed input shape" in litert.stderr
    exported = cli("export", str(out))
    assert exported.exit_code == 2
    assert_one_error_line(exported.stderr)
    assert "fixed input shape" in exported.stderr and "without --backbone" in exported.stderr
    assert f"dlkit classify-image IMAGE --model {out}" in exported.stderr
