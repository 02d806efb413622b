"""Image classifiers (train-mnist, train-cifar) and classify-image."""

from dlkit.core.registry import register

for _task in ("train-mnist", "train-cifar"):
    register("evaluator", _task, "dlkit.image_classifier.evaluate:evaluate_image_classifier")
    register("calibration", _task, "dlkit.image_classifier.export:calibration_images")
    register("image-classifier", _task, "dlkit.image_classifier.classify:serving_classifier")
register("model", "mnist-cnn", "dlkit.image_classifier.models:cnn")
# keras-hub image classifier presets, as they are and as `dlkit export PRESET -o FOLDER` writes them
for _task in ("keras-hub", "export"):
    register("image-classifier", _task, "dlkit.image_classifier.classify:serving_classifier")
register("preset-exporter", "ImageClassifier", "dlkit.image_classifier.export:preset_folder")
