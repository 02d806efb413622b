"""Text classifiers on raw strings: train-text-classifier and classify-text."""

from dlkit.core.registry import register

register("evaluator", "train-text-classifier",
         "dlkit.text_classifier.evaluate:evaluate_text_classifier")
