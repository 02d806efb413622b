"""Image classifiers (train-mnist, train-cifar) and classify-image."""
