"""Issue 24: a model is untrusted input. Through the real CLI, on hostile models the tests build
(tests/hostile_models.py): a SavedModel whose graph writes a file (in its serving function, in a
function that calls, in a tf.cond branch, or in an initialiser that runs while loading) is
refused with one line naming the op, and writes nothing, by classify-image (a model folder, on
either backend, and a plain SavedModel folder), evaluate and export; checkpoint ops pass only in
the saver's own functions; Keras safe mode's refusal of code in a `.keras` file or a preset
says so. The exit codes are rows of tests/test_bad_input.py too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import assert_one_error_line, pattern_images
from conftest import train_in_process as train
from hostile_models import WRITERS, lambda_keras, with_saved_model, writing_saved_model


@pytest.fixture(scope="module")
def hostile(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny digit model folder, images (loose and in class folders), and for each place in
    WRITERS a file-writing SavedModel (`sm_WHERE`) and a copy of the folder holding it
    (`folder_WHERE`); each would write `pwned_WHERE`."""
    import cv2

    root = tmp_path_factory.mktemp("hostile")
    train("train-mnist", "--dataset", "mnist", "--data-dir", tiny_root, "--arch", "mlp",
          "--epochs", "1", "--limit", "48", "-o", root / "mnist", "--quiet")
    images, labels = pattern_images(4, 28, 1, seed=3)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (root / "labelled" / str(label)).mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "labelled" / str(label) / f"{i}.png"), image)
    for where in WRITERS:
        writing_saved_model(root / f"sm_{where}", root / f"pwned_{where}", where)
        with_saved_model(root / "mnist", root / f"folder_{where}", root / f"sm_{where}")
    return root


def refused(result: object, op: str = "WriteFile") -> None:
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert_one_error_line(result.stderr)
    assert f"holds a {op} op" in result.stderr, result.stderr


@pytest.mark.parametrize("where", WRITERS)
def test_the_hostile_saved_models_write_when_tensorflow_runs_them(hostile: Path,
                                                                  where: str) -> None:
    """What the refusals prevent: loaded (and called) by TensorFlow, each model writes."""
    import tensorflow as tf

    target = hostile / f"pwned_{where}"
    serve = tf.saved_model.load(str(hostile / f"sm_{where}")).signatures["serving_default"]
    serve(image=tf.zeros([1, 28, 28, 1]))
    assert target.read_text().startswith("written")
    target.unlink()


@pytest.mark.parametrize("where", WRITERS)
def test_classify_image_refuses_a_saved_model_that_writes_files(cli, hostile: Path,
                                                                 where: str) -> None:
    image = next((hostile / "labelled").rglob("*.png"))
    for model in (["--model", hostile / f"folder_{where}"],
                  ["--model", hostile / f"folder_{where}", "--backend", "tensorflow"],
                  ["--model", hostile / f"sm_{where}", "--input-size", "28", "28"]):
        refused(cli("classify-image", image, *model))
    assert not (hostile / f"pwned_{where}").exists()


@pytest.mark.parametrize("where", ["nested", "on_load"])
def test_evaluate_and_export_refuse_it_too(cli, hostile: Path, where: str,
                                           tmp_path: Path) -> None:
    folder = hostile / f"folder_{where}"
    refused(cli("evaluate", hostile / "labelled", "--model", folder))
    refused(cli("evaluate", hostile / "labelled", "--model", folder, "--backend",
                "tensorflow"))
    refused(cli("export", folder, "-o", tmp_path / "model.tflite"))
    refused(cli("export", folder))
    assert not (hostile / f"pwned_{where}").exists()
    assert not (tmp_path / "model.tflite").exists() and not (folder / "model.tflite").exists()


def _edited_graph(source: Path, out: Path, edit: object) -> Path:
    """A copy of the SavedModel `source` whose graph (protocol buffer) `edit` changed."""
    from tensorflow.core.protobuf import saved_model_pb2

    shutil.copytree(source, out)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((out / "saved_model.pb").read_bytes())
    edit(proto.meta_graphs[0].graph_def)  # type: ignore[operator]
    (out / "saved_model.pb").write_bytes(proto.SerializeToString())
    return out


def _function(graph: object, start: str) -> object:
    return next(f for f in graph.library.function if f.signature.name.startswith(start))


def test_checkpoint_ops_pass_only_in_the_saver_functions(cli, hostile: Path,
                                                         tmp_path: Path) -> None:
    """A dlkit SavedModel keeps RestoreV2/SaveV2 in the functions its saver names; the same
    ops in a serving function, a saver function that something else calls, or another op in
    the saver functions are refused."""
    from dlkit.core import saved_model
    from dlkit.core.errors import UsageError

    source = hostile / "mnist" / "saved_model"
    saved_model.scan(source)  # dlkit's own: passes

    def restore_in_serving(graph: object) -> None:
        _function(graph, "__inference___call__").node_def.add(name="r", op="RestoreV2")

    def serving_calls_restore(graph: object) -> None:
        restore = _function(graph, "__inference__traced_restore").signature.name
        node = _function(graph, "__inference___call__").node_def.add(
            name="c", op="StatefulPartitionedCall")
        node.attr["f"].func.name = restore

    def write_in_restore(graph: object) -> None:
        _function(graph, "__inference__traced_restore").node_def.add(name="w", op="WriteFile")

    def print_in_main_graph(graph: object) -> None:
        graph.node.add(name="p", op="PrintV2")

    cases = {"restore_in_serving": (restore_in_serving, "RestoreV2"),
             "serving_calls_restore": (serving_calls_restore, "RestoreV2"),
             "write_in_restore": (write_in_restore, "WriteFile"),
             "print_in_main_graph": (print_in_main_graph, "PrintV2")}
    for name, (edit, op) in cases.items():
        edited = _edited_graph(source, tmp_path / name, edit)
        with pytest.raises(UsageError, match=f"holds a {op} op"):
            saved_model.scan(edited)
    folder = with_saved_model(hostile / "mnist", tmp_path / "folder",
                              tmp_path / "serving_calls_restore")
    refused(cli("classify-image", next((hostile / "labelled").rglob("*.png")), "--model",
                folder), "RestoreV2")


def test_a_tensorflow_1_saved_model_is_refused(tmp_path: Path) -> None:
    """A TensorFlow 1 SavedModel restores its variables with checkpoint ops in its main graph,
    which its loader runs: refused, as docs/contract.md says."""
    import tensorflow as tf

    from dlkit.core import saved_model
    from dlkit.core.errors import UsageError

    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as session:
        image = v1.placeholder(tf.float32, [None, 28, 28, 1], name="image")
        weight = v1.get_variable("w", [], initializer=v1.ones_initializer())
        probs = tf.nn.softmax(tf.reduce_mean(image, axis=[1, 2, 3])[:, None] * weight
                              * tf.ones([1, 10]))
        session.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(str(tmp_path / "tf1"))
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={
            "serving_default": v1.saved_model.predict_signature_def({"image": image},
                                                                    {"output_0": probs})})
        builder.save()
    with pytest.raises(UsageError, match=r"holds a \w+ op \(reads or writes files\) in its "
                                         r"main graph"):
        saved_model.scan(tmp_path / "tf1")


def test_a_graph_file_tensorflow_would_read_instead_is_refused(cli, hostile: Path,
                                                               tmp_path: Path) -> None:
    folder = tmp_path / "sm"
    shutil.copytree(hostile / "mnist" / "saved_model", folder)
    (folder / "saved_model.pbtxt").write_text("meta_graphs {}\n")
    result = cli("classify-image", next((hostile / "labelled").rglob("*.png")), "--model",
                 folder, "--input-size", "28", "28")
    assert result.exit_code == 2 and "saved_model.pbtxt" in result.stderr
    assert_one_error_line(result.stderr)


def test_keras_safe_mode_refusal_says_it_is_safe_mode(cli, hostile: Path,
                                                       tmp_path: Path) -> None:
    """A `.keras` file with a Lambda layer (Python code): classify-image on the file, and
    export on a model folder holding it, say that Keras safe mode refused to run its code."""
    image = next((hostile / "labelled").rglob("*.png"))
    keras_file = lambda_keras(tmp_path / "lambda.keras")
    folder = tmp_path / "folder"
    shutil.copytree(hostile / "mnist", folder)
    shutil.copyfile(keras_file, folder / "model.keras")
    for result in (cli("classify-image", image, "--model", keras_file),
                   cli("export", folder, "-o", tmp_path / "m.tflite")):
        assert result.exit_code == 2, result.stderr
        assert_one_error_line(result.stderr)
        assert "Keras safe mode refused to run code from" in result.stderr
        assert "Lambda layer" in result.stderr
    assert not (tmp_path / "m.tflite").exists()



def test_a_model_keras_with_a_retired_dlkit_layer_says_which(cli, hostile: Path,
                                                            tmp_path: Path) -> None:
    """A `.keras` written by an older dlkit (its custom layers are gone: models are stock
    Keras) is one line naming the layer, exit 2; the folder is left as it was."""
    import zipfile

    folder = tmp_path / "folder"
    shutil.copytree(hostile / "mnist", folder)
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("config.json", '{"class_name": "Functional", "config": {"layers": '
                         '[{"class_name": "Block", "registered_name": "dlkit>Block"}]}}')
    before = (folder / "model.keras").read_bytes()
    result = cli("export", folder, "-o", tmp_path / "m.tflite")
    assert result.exit_code == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert "written by an older dlkit (its layer dlkit>Block is gone" in result.stderr
    assert (folder / "model.keras").read_bytes() == before
    assert not (tmp_path / "m.tflite").exists()


def test_a_preset_asking_to_run_code_is_refused_by_keras_safe_mode(cli, hostile: Path,
                                                                   tmp_path: Path) -> None:
    """A keras-hub preset whose task config holds a serialised Python lambda."""
    import json

    pytest.importorskip("keras_hub")
    from hub_presets import save_resnet_preset

    preset = save_resnet_preset(tmp_path / "preset")
    task = json.loads((preset / "task.json").read_text())
    task["config"]["activation"] = {"class_name": "__lambda__",
                                    "config": {"value": ["4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAH"
                                                         "MEAAAAfABTACkBTqkAKQHaAXg=",
                                                         None, None]}}
    (preset / "task.json").write_text(json.dumps(task))
    result = cli("classify-image", next((hostile / "labelled").rglob("*.png")), "--model",
                 preset)
    assert result.exit_code == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert "Keras safe mode refused to run code from" in result.stderr
