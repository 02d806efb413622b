"""Sequence models: recurrent time-series forecasters (train-sequence) and forecast."""

from dlkit.core.registry import register

register("evaluator", "train-sequence", "dlkit.sequence.evaluate:evaluate_forecaster")
register("calibration", "train-sequence", "dlkit.sequence.export:calibration_windows")
