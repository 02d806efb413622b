"""Text classifiers on raw strings: train-text-classifier and classify-text."""

from dlkit.core.registry import register

for _layer in ("PositionEmbedding", "MaskedAverage"):
    register("layers", f"dlkit>{_layer}", "dlkit.text_classifier.models")
register("evaluator", "train-text-classifier",
         "dlkit.text_classifier.evaluate:evaluate_text_classifier")
