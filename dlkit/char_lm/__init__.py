"""Character-level language models: train-text and generate-text."""
