"""The options of `train-text-classifier` and `classify-text` (see dlkit.core.config)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from dlkit.core.config import ClassWeight, Config, TrainConfig, common, opt
from dlkit.core.errors import UsageError
from dlkit.core.files import LINES_LIMIT, TEXT_LIMIT, size_text


class TextClassifierArch(enum.StrEnum):
    """bow: tf-idf bag of words + a linear layer; bilstm: the seed's; transformer: one small
    encoder block."""

    bow = "bow"
    bilstm = "bilstm"
    transformer = "transformer"


# (epochs, peak learning rate) when the options do not say: the linear bag of words takes many
# cheap epochs at a high rate (its inputs are unit-length tf-idf vectors).
ARCH_DEFAULTS = {"bow": (20, 2e-2), "bilstm": (5, 2e-3), "transformer": (5, 2e-3)}


@dataclass(kw_only=True)
class TextClassifierConfig(TrainConfig):
    """Train a text classifier whose saved model takes raw strings.

    Example: dlkit train-text-classifier --csv reviews.csv --text-column review --label-column stars
    """

    COMMAND = "train-text-classifier"

    data_dir: Path | None = common("data_dir", None, help="Folder with one subfolder of UTF-8 "
                                   ".txt files per class.")
    csv: str | None = opt(None, "CSV file with a text and a label column (at most "
                          f"{size_text(TEXT_LIMIT)}).", resume=False)
    text_column: str = opt("text", "CSV column with the texts.")
    label_column: str = opt("label", "CSV column with the labels.")
    arch: TextClassifierArch = opt(TextClassifierArch.bow, "bow (tf-idf of the words, "
                                   "linear), bilstm (the seed's) or transformer.")
    vocab_size: int = opt(20_000, "Largest vocabulary kept (most frequent words).", min=3,
                          max=1_000_000)
    seq_len: int = opt(200, "Words per text the bilstm and transformer read (longer texts "
                       "are cut; bow counts every word).", min=1, max=100_000)
    class_weight: ClassWeight = opt(ClassWeight.none, "balanced: weight each class by "
                                    "n / (classes x its count), for imbalanced data.")
    limit: int | None = common("limit", None, help="Use only the first N texts (classes taken "
                               "in turn from a folder; smoke runs).")
    val_split: float = common("val_split", 0.1)
    epochs: int | None = common("epochs", None, help="Passes over the training texts "
                                "[default: 20 for bow, 5 for bilstm and transformer].")
    batch_size: int = common("batch_size", 32)
    learning_rate: float | None = common("learning_rate", None, help="Peak learning rate "
                                         "[default: 0.02 for bow, 0.002 for bilstm and "
                                         "transformer].")
    output: Path = common("output", Path("models/text-classifier"))

    def check(self) -> None:
        epochs, rate = ARCH_DEFAULTS[self.arch.value]
        self.epochs = epochs if self.epochs is None else self.epochs
        self.learning_rate = rate if self.learning_rate is None else self.learning_rate
        if (self.data_dir is None) == (self.csv is None):
            raise UsageError("give the training texts with either --data-dir (one subfolder of "
                             ".txt files per class) or --csv FILE --text-column T "
                             "--label-column L")


@dataclass(kw_only=True)
class ClassifyTextConfig(Config):
    """Label texts: one line per text, label<TAB>confidence (K pairs with --top-k).

    Example: echo "a wonderful film" | dlkit classify-text --model models/reviews -
    """

    COMMAND = "classify-text"

    texts: list[str] = opt(help="Texts to classify, or - to read one text per line from stdin "
                           f"(at most {size_text(LINES_LIMIT)}).", argument=True,
                           metavar="TEXT...")
    model: Path = opt(Path("models/text-classifier"), "Model folder written by "
                      "train-text-classifier.", flags=("-m",))
    top_k: int = opt(1, "Print the K best labels per text.", flags=("-k",), min=1, max=1000)
    json: bool = opt(False, "Print one JSON array of the predictions on stdout.",
                     name="--json", group=3)
