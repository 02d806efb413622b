"""Text classifiers on raw strings: train-text-classifier and classify-text."""
