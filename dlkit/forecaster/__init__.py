"""Recurrent time-series forecasters: train-sequence and forecast."""
