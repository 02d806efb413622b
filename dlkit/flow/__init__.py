"""Flow matching: a rectified-flow image generator (train-flow, sample-flow)."""

from dlkit.core.registry import register

register("generator", "train-flow", "dlkit.flow.sample:open_generator")
