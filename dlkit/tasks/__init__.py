"""One module per command: a config dataclass in, a result dataclass out."""
