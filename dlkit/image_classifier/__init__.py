"""Image classifiers (train-mnist, train-cifar) and classify-image."""

from dlkit.core.registry import register

for _task in ("train-mnist", "train-cifar"):
    register("evaluator", _task, "dlkit.image_classifier.evaluate:evaluate_image_classifier")
    register("calibration", _task, "dlkit.image_classifier.export:calibration_images")
    register("image-classifier", _task, "dlkit.image_classifier.classify:serving_classifier")
register("model", "mnist-cnn", "dlkit.image_classifier.models:cnn")
register("image-classifier", "keras-hub", "dlkit.image_classifier.classify:serving_classifier")
