"""`dlkit export --format onnx`: the ONNX file computes what the model folder's model computes
(checked here with onnxruntime against LiteRT), models of several inputs convert, a model whose
operations ONNX lacks is one line naming them and writes nothing, and the option mistakes are
exit 2 before anything is loaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from conftest import assert_one_error_line, run_in_process


def _export(model: Path, out: Path, *more: str):
    return run_in_process("export", model, "--format", "onnx", "-o", out, "--json", *more)


def test_an_image_classifier_in_onnx_gives_its_probabilities(zoo, tmp_path: Path) -> None:
    from dlkit.core.config import Backend
    from dlkit.core.serving import open_model

    out = tmp_path / "mnist.onnx"
    result = _export(zoo("mnist"), out)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["file"] == str(out) and report["bytes"] == out.stat().st_size
    assert report["max_difference"] <= 1e-4 and report["inputs"] == {"image": [None, 28, 28, 1]}
    images = np.random.default_rng(0).uniform(0, 255, (5, 28, 28, 1)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": images})
    np.testing.assert_allclose(got, open_model(zoo("mnist"), Backend.litert)(images),
                               atol=1e-5)


def test_a_conditional_generator_converts_with_both_inputs(zoo, tmp_path: Path) -> None:
    out = tmp_path / "gan.onnx"
    result = _export(zoo("gan"), out)
    assert result.returncode == 0, result.stderr
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sorted(i.name for i in session.get_inputs()) == ["label", "noise"]
    (images,) = session.run(None, {"noise": np.zeros((3, 4), np.float32),
                                   "label": np.array([0, 1, 2], np.int32)})
    assert images.shape == (3, 28, 28, 1) and 0 <= images.min() <= images.max() <= 255


def test_string_operations_are_refused_by_name_and_nothing_is_written(zoo,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "texts.onnx"
    result = _export(zoo("tcls"), out)
    assert result.returncode == 2
    assert_one_error_line(result.stderr)
    assert "StringSplitV2" in result.stderr and "no ONNX equivalent" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,says", [
    ([], "needs --output FILE.onnx"),
    (["-o", "{T}/m.tflite"], "needs --output FILE.onnx"),
    (["-o", "{T}/m.onnx", "--quantize", "int8"], "--quantize applies to LiteRT"),
])
def test_onnx_option_mistakes_are_exit_2(zoo, tmp_path: Path, args: list[str],
                                         says: str) -> None:
    words = [a.replace("{T}", str(tmp_path)) for a in args]
    result = run_in_process("export", zoo("mnist"), "--format", "onnx", *words)
    assert result.returncode == 2 and says in result.stderr
    assert_one_error_line(result.stderr)
