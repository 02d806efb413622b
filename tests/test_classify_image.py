"""End to end through the CLI: `classify-image` on image files the tests write, with models the
tests train on tiny data (once per module)."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    REAL_DATA,
    assert_one_error_line,
    needs_real_data,
    pattern_images,
    run_dlkit,
    run_in_process,
)

PNG_MAGIC = b"\x89PNG"


# ---------------------------------------------------------------------------------------------
# fixtures: models trained through the CLI, image files in every format

@pytest.fixture(scope="module")
def models(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny CIFAR model (seed CNN) and a tiny MNIST model, trained through the real CLI."""
    from typer.testing import CliRunner

    from dlkit.cli import app

    root = tmp_path_factory.mktemp("models")
    runner = CliRunner()
    commands = {
        "cifar": ["train-cifar", "--data-dir", tiny_root, "--arch", "seed", "--epochs", "1",
                  "--limit", "64", "-o", root / "cifar", "--quiet"],
        "mnist": ["train-mnist", "--dataset", "mnist", "--data-dir", tiny_root, "--epochs", "1",
                  "--limit", "64", "-o", root / "mnist", "--quiet"],
    }
    for args in commands.values():
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.stderr
    return {"cifar": root / "cifar", "mnist": root / "mnist"}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and mtime (to prove nothing was written)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert a minimal EXIF APP1 segment holding only the orientation tag into a JPEG."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + app1 + jpeg[2:]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 32x32 picture in every supported format and colour layout, plus EXIF."""
    import cv2

    folder = tmp_path_factory.mktemp("photos")
    images, _ = pattern_images(2, 32, 3, seed=5)
    rgb = images[0]
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    grey = np.full((32, 32), 0, np.uint8)
    grey[:] = rgb[..., 0]
    files: dict[str, Path] = {}

    def write(name: str, array: np.ndarray, params: list[int] | None = None) -> None:
        path = folder / name
        assert cv2.imwrite(str(path), array, params or [])
        files[name] = path

    for ext in ("png", "bmp", "tif"):
        write(f"photo.{ext}", bgr)
    write("photo.webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 101])  # > 100: lossless
    write("photo.jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    write("grey.png", grey)
    write("grey_as_rgb.png", np.repeat(grey[..., None], 3, axis=2))
    write("rgba.png", np.dstack([bgr, np.full((32, 32), 255, np.uint8)]))
    write("photo16.png", bgr.astype(np.uint16) * 257)
    write("photo16.tif", bgr.astype(np.uint16) * 257)
    write("big.png", cv2.resize(bgr, (480, 320), interpolation=cv2.INTER_CUBIC))
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): store the picture turned
    # the other way, so the displayed picture is the original one.
    turned = cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)
    ok, jpeg = cv2.imencode(".jpg", turned, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    files["exif.jpg"] = folder / "exif.jpg"
    files["exif.jpg"].write_bytes(with_exif_orientation(jpeg.tobytes(), 6))
    return files


def classify_json(cli, *args: object) -> tuple[list[dict], object]:
    result = cli("classify-image", *args, "--json", "--quiet")
    return (json.loads(result.stdout) if result.stdout.strip() else []), result


def by_name(entries: list[dict]) -> dict[str, dict]:
    return {Path(e["path"]).name: e for e in entries}


# ---------------------------------------------------------------------------------------------
# formats and colour layouts

def test_every_format_gives_the_same_prediction(cli, models: dict[str, Path],
                                                photos: dict[str, Path]) -> None:
    import keras

    entries, result = classify_json(cli, *photos.values(), "--model", models["cifar"],
                                    "--top-k", "3")
    assert result.exit_code == 0, result.stderr
    got = by_name(entries)
    assert set(got) == set(photos)
    names = json.loads((models["cifar"] / "metadata.json").read_text())["class_names"]
    for entry in entries:
        assert entry["label"] in names and 0.0 <= entry["confidence"] <= 1.0
        assert [t["label"] for t in entry["top"]][0] == entry["label"] and len(entry["top"]) == 3
        assert entry["top"][0]["confidence"] >= entry["top"][1]["confidence"]

    # The reference: the same pixels as an RGB array straight into the Keras model.
    import cv2

    rgb = cv2.cvtColor(cv2.imread(str(photos["photo.png"])), cv2.COLOR_BGR2RGB)
    model = keras.models.load_model(models["cifar"] / "model.keras", compile=False)
    probs = np.asarray(model.predict(rgb[None].astype("float32"), verbose=0))[0]
    reference = got["photo.png"]
    assert reference["label"] == names[int(probs.argmax())]
    assert reference["confidence"] == pytest.approx(float(probs.max()), abs=1e-4)

    # Lossless formats, alpha=255 and 16-bit data decode to the same pixels: same answer.
    for name in ("photo.bmp", "photo.tif", "photo.webp", "rgba.png", "photo16.png",
                 "photo16.tif"):
        assert got[name]["label"] == reference["label"], name
        assert got[name]["confidence"] == pytest.approx(reference["confidence"], abs=1e-4), name
    assert got["grey.png"]["confidence"] == pytest.approx(got["grey_as_rgb.png"]["confidence"],
                                                          abs=1e-4)
    # Lossy or resampled: close, not identical. EXIF orientation is applied before resizing.
    for name in ("photo.jpg", "exif.jpg", "big.png"):
        assert got[name]["confidence"] == pytest.approx(reference["confidence"], abs=0.05), name
    from dlkit.data.images import read_image

    assert read_image(photos["exif.jpg"]).shape == (32, 32, 3)


def test_tab_separated_lines_and_folders(cli, models: dict[str, Path],
                                         photos: dict[str, Path]) -> None:
    folder = photos["photo.png"].parent
    result = cli("classify-image", folder, "--model", models["cifar"], "-k", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(photos)  # the folder is searched; stdout holds only results
    rows = [line.split("\t") for line in lines]
    assert all(len(row) == 5 for row in rows)
    assert sorted(row[0] for row in rows) == sorted(str(p) for p in photos.values())
    assert all(0.0 <= float(row[2]) <= 1.0 and float(row[4]) <= float(row[2]) for row in rows)
    assert f"classified {len(photos)} images" in result.stderr


# ---------------------------------------------------------------------------------------------
# bad input

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Path]
              ) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    png = photos["photo.png"].read_bytes()
    files = {"corrupt.png": b"\x89PNG\r\n\x1a\n this is not a picture",
             "truncated.png": png[: len(png) // 2], "empty.jpg": b"",
             "notes.txt": b"just some text\n"}
    out = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        out[name] = folder / name
    return out


def test_bad_files_are_reported_and_the_others_classified(cli, models: dict[str, Path],
                                                          photos: dict[str, Path],
                                                          bad_files: dict[str, Path],
                                                          tmp_path: Path) -> None:
    before = snapshot(models["cifar"])
    missing = tmp_path / "missing.png"
    args = [photos["photo.png"], *bad_files.values(), missing, photos["photo.jpg"]]
    result = cli("classify-image", *args, "--model", models["cifar"])
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        str(photos["photo.png"]), str(photos["photo.jpg"])]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5, result.stderr
    for path in [*bad_files.values(), missing]:
        assert any(line.startswith(f"error: {path}: ") for line in errors), path
    assert any("empty file" in line for line in errors)
    assert any("no such file" in line for line in errors)
    assert snapshot(models["cifar"]) == before  # never writes into the model folder


def test_nothing_usable_exits_2(cli, models: dict[str, Path], bad_files: dict[str, Path],
                                tmp_path: Path) -> None:
    result = cli("classify-image", *bad_files.values(), "--model", models["cifar"])
    assert result.exit_code == 2 and result.stdout == ""
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    result = cli("classify-image", empty, "--model", models["cifar"])
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)
    assert "no image files" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder(cli, models: dict[str, Path], photos: dict[str, Path],
                           tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        result = cli("classify-image", locked, photos["photo.png"], "--model", models["cifar"])
    finally:
        locked.chmod(0o755)
    assert result.exit_code == 1 and f"error: {locked}: cannot read folder" in result.stderr


def test_bad_model_is_one_line_exit_2(cli, photos: dict[str, Path], tmp_path: Path) -> None:
    for model in (tmp_path / "nowhere", tmp_path):
        result = cli("classify-image", photos["photo.png"], "--model", model)
        assert result.exit_code == 2 and result.stdout == ""
        assert_one_error_line(result.stderr)
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(b"PK not a zip")
    result = cli("classify-image", photos["photo.png"], "--model", damaged)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)


def test_bad_options_exit_2(cli, models: dict[str, Path], photos: dict[str, Path],
                            tmp_path: Path) -> None:
    png = photos["photo.png"]
    for extra in (["--invert", "maybe"], ["--top-k", "0"], ["--input-size", "28", "28"],
                  ["--csv", tmp_path / "no" / "such" / "dir.csv"],
                  ["--csv", models["cifar"] / "predictions.csv"]):
        result = cli("classify-image", png, "--model", models["cifar"], *extra)
        assert result.exit_code == 2, (extra, result.stderr)
        assert_one_error_line(result.stderr)
    assert not (models["cifar"] / "predictions.csv").exists()


# ---------------------------------------------------------------------------------------------
# other model sources, stdin, outputs

def test_keras_file_and_plain_saved_model(cli, models: dict[str, Path],
                                          photos: dict[str, Path], tmp_path: Path) -> None:
    png = photos["photo.png"]
    folder, _ = classify_json(cli, png, "--model", models["cifar"])
    keras_file, result = classify_json(cli, png, "--model", models["cifar"] / "model.keras")
    assert result.exit_code == 0, result.stderr
    assert keras_file[0]["label"] == folder[0]["label"]
    assert keras_file[0]["confidence"] == pytest.approx(folder[0]["confidence"], abs=1e-4)

    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"thing {i}\n" for i in range(10)))
    plain, result = classify_json(cli, png, "--model", models["cifar"] / "saved_model",
                                  "--labels", labels, "--input-size", "32", "32")
    assert result.exit_code == 0, result.stderr
    class_names = json.loads((models["cifar"] / "metadata.json").read_text())["class_names"]
    assert plain[0]["label"] == f"thing {class_names.index(folder[0]['label'])}"
    labels.write_text("only\ntwo\n")
    _, result = classify_json(cli, png, "--model", models["cifar"] / "saved_model",
                              "--labels", labels)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr)


def test_paths_from_stdin(cli, models: dict[str, Path], photos: dict[str, Path]) -> None:
    names = ["photo.png", "grey.png", "photo.webp"]
    stdin = "".join(f"{photos[n]}\n" for n in names) + "\n"
    result = cli("classify-image", "-", "--model", models["cifar"], input=stdin)
    assert result.exit_code == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        str(photos[n]) for n in names]


def test_json_csv_and_show(cli, models: dict[str, Path], photos: dict[str, Path],
                           tmp_path: Path) -> None:
    import cv2

    files = [photos[n] for n in ("photo.png", "photo.jpg", "grey.png", "big.png")]
    out_csv, out_png = tmp_path / "predictions.csv", tmp_path / "grid.png"
    entries, result = classify_json(cli, *files, "--model", models["cifar"], "--top-k", "2",
                                    "--csv", out_csv, "--show", out_png)
    assert result.exit_code == 0, result.stderr
    assert [e["path"] for e in entries] == [str(f) for f in files]
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "confidence", "label_2", "confidence_2"]
    assert [r["path"] for r in rows] == [str(f) for f in files]
    for row, entry in zip(rows, entries, strict=True):
        assert row["label"] == entry["label"]
        assert float(row["confidence"]) == pytest.approx(entry["confidence"], abs=1e-5)
        assert row["label_2"] == entry["top"][1]["label"]
    assert out_png.read_bytes()[:4] == PNG_MAGIC
    picture = cv2.imread(str(out_png))
    assert picture is not None and picture.shape[0] > 100 and picture.shape[1] > 100


def test_stdout_is_only_results_in_a_subprocess(models: dict[str, Path],
                                                photos: dict[str, Path]) -> None:
    """A real process: stdout holds only the JSON array, and a model folder is served without
    importing Keras (over a second of start-up for a one-file call)."""
    args = ["classify-image", str(photos["photo.png"]), str(photos["rgba.png"]), "--model",
            str(models["cifar"]), "--json"]
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write(f'keras imported: {\"keras\" in "
            "sys.modules}\\n'))\n"
            f"sys.argv = ['dlkit', *{args!r}]\n"
            "from dlkit.cli import main\n"
            "main()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert [e["path"] for e in json.loads(proc.stdout)] == [str(photos["photo.png"]),
                                                            str(photos["rgba.png"])]
    assert "Traceback" not in proc.stderr
    assert "keras imported: False" in proc.stderr


# ---------------------------------------------------------------------------------------------
# digit models: dark ink on paper

def test_digit_model_inverts_ink_on_paper(cli, models: dict[str, Path],
                                          tmp_path: Path) -> None:
    import cv2

    digit = np.zeros((28, 28), np.uint8)
    cv2.putText(digit, "7", (7, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 255, 2)
    light = tmp_path / "light_on_dark.png"
    cv2.imwrite(str(light), digit)
    paper = np.full((200, 160, 3), (205, 210, 215), np.uint8)  # a grey-white sheet, dark ink
    cv2.putText(paper, "7", (40, 150), cv2.FONT_HERSHEY_SIMPLEX, 4.0, (40, 30, 35), 12)
    photo = tmp_path / "ink_on_paper.jpg"
    cv2.imwrite(str(photo), paper)

    def scores(path: Path, invert: str) -> float:
        entries, result = classify_json(cli, path, "--model", models["mnist"], "--invert",
                                        invert)
        assert result.exit_code == 0, result.stderr
        return entries[0]["confidence"], entries[0]["label"]

    assert scores(photo, "auto") == scores(photo, "yes")  # paper: auto inverts
    assert scores(light, "auto") == scores(light, "no")  # MNIST-like: auto leaves it


def test_prepare_makes_paper_digits_look_like_mnist() -> None:
    import cv2

    from dlkit.data.image_batches import Preprocess, border_is_brighter, prepare

    paper = np.full((300, 240, 3), 220, np.uint8)
    cv2.circle(paper, (60, 70), 30, (20, 20, 20), 8)  # an "0" written in a corner
    assert border_is_brighter(paper)
    out = prepare(paper, Preprocess((28, 28), 1, invert="auto", center_digit=True))
    assert out.shape == (28, 28, 1) and out.dtype == np.uint8
    grey = out[..., 0].astype(float)
    assert grey[0].max() < 10 and grey[:, 0].max() < 10  # black background, like MNIST
    assert grey.max() > 200  # bright ink
    ys, xs = np.nonzero(grey > 64)
    assert 3 <= ys.min() and ys.max() <= 24 and 3 <= xs.min() and xs.max() <= 24  # 20x20 box
    m = cv2.moments(grey)
    assert abs(m["m10"] / m["m00"] - 14) < 1.0 and abs(m["m01"] / m["m00"] - 14) < 1.0
    untouched = prepare(255 - paper, Preprocess((28, 28), 1, invert="auto", center_digit=True))
    assert untouched[0, 0, 0] < 60  # light on dark already: not inverted
    for blank in (np.full((1, 1, 3), 255, np.uint8), np.zeros((28, 28, 3), np.uint8)):
        flat = prepare(blank, Preprocess((28, 28), 1, invert="yes", center_digit=True))
        assert flat.shape == (28, 28, 1)  # no ink to centre: still one image (fuzz found it)


# ---------------------------------------------------------------------------------------------
# real data: the file path must not lose accuracy

@needs_real_data
def test_real_cifar_files_match_array_accuracy(tmp_path: Path) -> None:
    """A train-cifar model on real CIFAR-10 test images written as PNG, JPEG and upscaled PNG:
    accuracy through classify-image within 2 points of the model on the arrays."""
    import cv2
    import keras

    from dlkit.data.readers import load_cifar10

    model_dir = tmp_path / "cifar"
    proc = run_in_process("train-cifar", "--arch", "seed", "--epochs", "3", "--limit", "2000",
                          "-o", model_dir, "--quiet", env={"DLKIT_DATA": str(REAL_DATA)})
    assert proc.returncode == 0, proc.stderr
    data = load_cifar10(REAL_DATA)
    x, y = data.x_test[:400], data.y_test[:400]
    model = keras.models.load_model(model_dir / "model.keras", compile=False)
    array_acc = float((model.predict(x.astype("float32"), verbose=0).argmax(1) == y).mean())
    names = data.class_names
    for kind in ("png", "jpg", "png224"):
        folder = tmp_path / kind
        folder.mkdir()
        for i, image in enumerate(x):
            bgr = image[..., ::-1]
            if kind == "png224":
                bgr = cv2.resize(bgr, (224, 224), interpolation=cv2.INTER_CUBIC)
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if kind == "jpg" else []
            cv2.imwrite(str(folder / f"{i:05d}.{kind[:3]}"), bgr, params)
        proc = run_dlkit("classify-image", folder, "--model", model_dir, "--json")
        assert proc.returncode == 0, proc.stderr
        entries = json.loads(proc.stdout)
        assert len(entries) == len(x)
        labels = [names.index(e["label"]) for e in entries]  # paths sort like the indices
        file_acc = float((np.array(labels) == y).mean())
        assert abs(file_acc - array_acc) <= 0.02, (kind, file_acc, array_acc)
