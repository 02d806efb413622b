"""Recurrent time-series forecasters: train-sequence and forecast."""

from dlkit.core.registry import register

register("layers", "dlkit>SeriesTransform", "dlkit.forecaster.models")
register("evaluator", "train-sequence", "dlkit.forecaster.evaluate:evaluate_forecaster")
register("calibration", "train-sequence", "dlkit.forecaster.export:calibration_windows")
