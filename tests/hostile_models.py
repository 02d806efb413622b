"""Hostile model files the tests build themselves (issue 24): SavedModels whose graph writes a
file when it is called or merely loaded, a `.keras` file holding Python code (a Lambda layer),
and LiteRT files without or with damaged dlkit metadata.

Each builder writes only under the folder it is given (`target` is where a SavedModel would
write if it were run: a test asserts it never appears)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# Where the file-writing op hides: in the serving function itself, in a tf.function it calls, in
# a tf.cond branch (saved_model_cli scan misses that one), in a resource initialiser that
# tf.saved_model.load runs while loading.
WRITERS = ("direct", "nested", "cond", "on_load")


def writing_saved_model(folder: Path, target: Path, where: str,
                        shape: tuple[int, int, int] = (28, 28, 1), classes: int = 10) -> Path:
    """A SavedModel that looks like an image classifier (`serving_default`: images in,
    softmax out) and writes `target` with tf.io.write_file, from `where` (one of WRITERS)."""
    import tensorflow as tf

    @tf.function
    def helper(x: tf.Tensor) -> tf.Tensor:
        tf.io.write_file(str(target), "written by the model")
        return x

    class Planted(tf.saved_model.experimental.TrackableResource):
        def _create_resource(self) -> tf.Tensor:
            return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="")

        def _initialize(self) -> None:
            tf.io.write_file(str(target), "written while loading")
            tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)

    class Model(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.planted = Planted() if where == "on_load" else None

        @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.float32, name="image")])
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            logits = tf.reduce_mean(image, axis=[1, 2, 3])[:, None] * tf.ones([1, classes])
            if where == "direct":
                tf.io.write_file(str(target), "written by the model")
            elif where == "nested":
                logits = helper(logits)
            elif where == "cond":
                logits = tf.cond(tf.reduce_sum(image) >= 0, lambda: helper(logits),
                                 lambda: logits)
            return {"output_0": tf.nn.softmax(logits)}

    model = Model()
    tf.saved_model.save(model, str(folder), signatures={"serving_default": model.serve})
    return folder


def with_saved_model(model_folder: Path, out: Path, saved: Path) -> Path:
    """A copy of a dlkit model folder whose saved_model/ is `saved` (and whose model.tflite
    is gone, so that the default backend serves the SavedModel)."""
    shutil.copytree(model_folder, out)
    shutil.rmtree(out / "saved_model")
    shutil.copytree(saved, out / "saved_model")
    meta = json.loads((out / "metadata.json").read_text())
    if (out / "model.tflite").exists():
        (out / "model.tflite").unlink()
        meta["files"].remove("model.tflite")
        meta.pop("litert", None)
    (out / "metadata.json").write_text(json.dumps(meta))
    return out


def lambda_keras(path: Path) -> Path:
    """A small image classifier `.keras` file with a Lambda layer (Python code in the file)."""
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    keras.Model(inputs, outputs).save(path)
    return path


def _rewritten(tflite: Path, out: Path, change: object) -> Path:
    """A copy of a `.tflite` file with `change(model)` applied to its flatbuffer object."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(tflite.read_bytes(), 0))
    change(model)  # type: ignore[operator]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return out


def without_metadata(tflite: Path, out: Path) -> Path:
    """A copy of a dlkit `.tflite` file without its dlkit metadata entry (as another tool or an
    older dlkit writes it)."""

    def drop(model: object) -> None:
        model.metadata = [m for m in model.metadata or [] if m.name != b"dlkit"]  # type: ignore

    return _rewritten(tflite, out, drop)


def damaged_metadata(tflite: Path, out: Path) -> Path:
    """A copy of a dlkit `.tflite` file whose dlkit metadata entry is not JSON."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    def damage(model: object) -> None:
        (entry,) = [m for m in model.metadata if m.name == b"dlkit"]  # type: ignore
        model.buffers[entry.buffer] = schema.BufferT(  # type: ignore
            data=np.frombuffer(b"{not json", np.uint8))

    return _rewritten(tflite, out, damage)


def with_metadata(tflite: Path, out: Path, **changes: object) -> Path:
    """A copy of a dlkit `.tflite` file whose dlkit metadata has `changes` applied (a value
    of None removes the key)."""
    from dlkit.core import litert

    content = tflite.read_bytes()
    meta = {**(litert.read_metadata(content) or {}), **changes}
    out.write_bytes(litert.with_metadata(content, {k: v for k, v in meta.items()
                                                   if v is not None}))
    return out
