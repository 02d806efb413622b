"""Flow matching: a rectified-flow image generator (train-flow, sample-flow)."""
