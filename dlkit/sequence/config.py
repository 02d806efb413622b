"""The options of `train-sequence` and `forecast` (see dlkit.core.config)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from dlkit.core.config import Backend, Config, TrainConfig, backend_option, common, opt
from dlkit.core.errors import UsageError
from dlkit.core.files import TEXT_LIMIT, size_text


class Cell(enum.StrEnum):
    """simplernn: the seed's; lstm; gru."""

    simplernn = "simplernn"
    lstm = "lstm"
    gru = "gru"


class Transform(enum.StrEnum):
    """auto: chosen on the validation part; none; sqrt; log (log1p)."""

    auto = "auto"
    none = "none"
    sqrt = "sqrt"
    log = "log"


@dataclass(kw_only=True)
class SequenceConfig(TrainConfig):
    """Learn a time series from a CSV column; score against naive and seasonal-naive forecasts.

    Example: dlkit train-sequence --csv sunspots.csv --column SUNACTIVITY --time-column YEAR
    """

    COMMAND = "train-sequence"

    csv: str = opt(help=f"CSV file with a header row (- reads stdin); at most "
                   f"{size_text(TEXT_LIMIT)}.", resume=False)
    column: str = opt(help="Numeric column to learn and forecast.")
    time_column: str | None = opt(None, "Column with the time stamps (for plots and forecast "
                                  "labels).", resume=False)
    arch: Cell = opt(Cell.gru, "gru, lstm or simplernn (the seed's).")
    window: int = opt(24, "Past values the model sees.", min=1, max=100_000)
    horizon: int = opt(1, "Future values it predicts at once.", min=1, max=100_000)
    units: int = opt(50, "Recurrent units.", min=1, max=4096)
    members: int = opt(5, "Recurrent networks trained side by side (each on its own loss) "
                       "whose forecasts are averaged.", min=1, max=64)
    ar_order: int | None = opt(None, "Order p of the linear AR(p) part the recurrent network "
                               "corrects (default: the best on the validation part; 0: no "
                               "linear part).", min=0, max=100_000)
    transform: Transform = opt(Transform.auto, "Transform applied before the model and undone "
                               "after it: sqrt or log stabilise the variance of counts (auto: "
                               "the best on the validation part; sqrt and log only for series "
                               "without negative values).")
    period: int | None = opt(None, "Season length for the seasonal-naive baseline (default: "
                             "inferred from the training part's autocorrelation).", min=1)
    test_split: float = opt(0.15, "Fraction at the end of the series held out for the test.",
                            min=0, max=1, min_open=True, max_open=True)
    val_split: float = common("val_split", 0.1, help="Fraction before the test part held out "
                              "for validation (the best epoch is kept).")
    epochs: int = common("epochs", 100)
    batch_size: int = common("batch_size", 32)
    learning_rate: float = common("learning_rate", 1e-3)
    output: Path = common("output", Path("models/sequence"))

    def check(self) -> None:
        if self.val_split + self.test_split >= 0.9:
            raise UsageError("--test-split and --val-split must leave at least 10% for "
                             f"training (got {self.test_split} and {self.val_split})")
        if self.ar_order is not None and self.ar_order > self.window:
            raise UsageError(f"--ar-order {self.ar_order} is longer than --window "
                             f"{self.window}: the AR part reads the last --ar-order values of "
                             "the window")
        if not self.column:
            raise UsageError("--column is required: the name of the CSV column to learn")


@dataclass(kw_only=True)
class ForecastConfig(Config):
    """Forecast the next values after the end of a series: CSV on stdout.

    Example: dlkit forecast --model models/sequence --csv sunspots.csv --steps 5 > next.csv
    """

    COMMAND = "forecast"

    csv: str = opt(help="CSV with the series up to now (- reads stdin; at most "
                   f"{size_text(TEXT_LIMIT)}); its last values are used.")
    model: Path = opt(Path("models/sequence"), "Model folder written by train-sequence.",
                      flags=("-m",))
    column: str | None = opt(None, "Column to read (default: the one the model was trained "
                             "on).")
    steps: int | None = opt(None, "Values to forecast (default: the model's horizon; more "
                            "feeds forecasts back in).", min=1, max=100_000)
    backend: Backend = backend_option()
    json: bool = opt(False, "Print one JSON object with the forecast on stdout instead of "
                     "CSV.", name="--json", group=3)
