"""What `dlkit export` needs from the image classifiers (registered in `dlkit.core.registry`):
for `--quantize int8` on a train-mnist or train-cifar folder, the training images it calibrates
on, found the way training found them ("calibration"); for `export PRESET -o FOLDER`, a model
folder made of a keras-hub image classifier preset ("preset-exporter")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.config import recorded_settings
from dlkit.core.errors import UsageError
from dlkit.image_classifier.config import model_image_size


def calibration_images(meta: dict[str, Any], count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` of the model's training images (at most all of them), at its input size, as
    float32 (N, H, W, C)."""
    from dlkit.data.images import read_image_folder, resize
    from dlkit.data.readers import load_cifar10, load_mnist_family
    from dlkit.image_classifier.train import is_image_folder

    data_dir = recorded_settings(meta).get("data-dir")
    data_dir = Path(data_dir) if isinstance(data_dir, str) and data_dir else None
    declared = meta.get("input_shape")
    height, width, channels = (list(declared if isinstance(declared, list) else [])
                               + [None, None, None])[:3]
    height, width = model_image_size(height, width, "the model's metadata.json")
    if meta.get("task") == "train-mnist":
        images = load_mnist_family(str(meta.get("dataset")), data_dir).x_train
    elif data_dir is not None and data_dir.is_dir() and is_image_folder(data_dir):
        images = read_image_folder(data_dir, (height, width)).images
    else:
        images = load_cifar10(data_dir).x_train
    images = images[rng.choice(len(images), min(count, len(images)), replace=False)]
    if images.shape[1:3] != (height, width):
        images = np.stack([resize(i, (height, width)) for i in images])
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] != channels:
        raise UsageError(f"the training images have {images.shape[-1]} channels but the model "
                         f"takes {channels}")
    return images.astype(np.float32)


def preset_folder(spec: str, output: Path) -> dict[str, Any]:
    """`dlkit export PRESET -o FOLDER`: a model folder for a keras-hub ImageClassifier preset,
    which classify-image and serve then run on LiteRT without TensorFlow. The folder's model
    takes raw 0-255 RGB pixels at the size the preset's image converter declares and holds the
    converter (its scaling and normalisation) and the classifier, probabilities out: what the
    preset's own `predict()` computes on an image of that size. Saved as a training saves
    (`model.keras`, the SavedModel, `model.tflite` carrying the class names: ImageNet's for a
    1,000-class preset). Returns the folder's artifact paths."""
    import keras

    from dlkit.core import artifacts, hub
    from dlkit.image_classifier.transfer import converter_size, freeze_batchnorm

    folder = artifacts.claim_output(output)
    preset = hub.resolve(spec, "ImageClassifier")
    task = hub.load_task(preset, "ImageClassifier")
    converter = getattr(task.preprocessor, "image_converter", None)
    height, width = converter_size(converter, spec, "become a fixed-size LiteRT model "
                                   "(classify-image runs the preset on TensorFlow as it is)")
    freeze_batchnorm(task)  # Keras's export traces the nested model in training mode otherwise
    inputs = keras.Input((height, width, 3), name="image")
    outputs = task(converter(inputs), training=False)
    if keras.activations.get(getattr(task, "activation", None)) != keras.activations.softmax:
        outputs = keras.layers.Softmax(dtype="float32", name="probabilities")(outputs)
    model = keras.Model(inputs, outputs, name=type(task).__name__)
    classes = int(outputs.shape[-1])
    metadata: dict[str, Any] = {
        "task": "export", "source": {"preset": spec, "class": type(task).__name__},
        "input_shape": [height, width, 3], "outputs": "probabilities",
        "preprocessing": {"input": "raw pixels 0-255, RGB channel order",
                          "scaling": "the preset's image converter (inside the model)",
                          "resize_to": [height, width], "color": "rgb"}}
    if classes == 1000:
        metadata["class_names"] = hub.imagenet_names()
    return artifacts.save_model_folder(folder, model, metadata)

