"""dlkit: the classic Keras deep-learning examples as real command-line tools."""

__version__ = "0.1.0"
