"""The options of `train-text` and `generate-text` (see dlkit.core.config)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from dlkit.core.config import Backend, Config, TrainConfig, backend_option, common, opt
from dlkit.core.errors import UsageError


class TextArch(enum.StrEnum):
    """gru (the default: best in 10 CPU minutes), lstm, or transformer (GPT-style)."""

    gru = "gru"
    lstm = "lstm"
    transformer = "transformer"


# (layers, width) per architecture, chosen by measurement on Tiny Shakespeare.
DEFAULT_SIZES = {TextArch.gru: (1, 512), TextArch.lstm: (1, 512), TextArch.transformer: (4, 192)}


@dataclass(kw_only=True)
class TextConfig(TrainConfig):
    """Train a character-level language model on a text file; save it with a loss curve.

    Example: dlkit train-text --corpus poems.txt --max-minutes 10 --output models/poems
    """

    COMMAND = "train-text"

    corpus: str | None = opt(None, "UTF-8 text file to learn (any language), or - for stdin. "
                             "Default: Tiny Shakespeare, found through the data lookup or "
                             "downloaded.", show_default=False, resume=False)
    arch: TextArch = opt(TextArch.gru, "gru (best in 10 CPU minutes), lstm, or transformer "
                         "(GPT-style, causal attention).")
    seq_len: int = opt(128, "Characters per training window (the transformer's context).",
                       min=1, max=8192)
    layers: int | None = opt(None, "Stacked RNN layers or transformer blocks [default: 1 RNN, "
                             "4 blocks].", min=1, max=64, show_default=False)
    dim: int | None = opt(None, "RNN units or transformer width [default: 512 RNN, 192 "
                          "transformer].", min=1, max=8192, show_default=False)
    heads: int = opt(4, "Attention heads (transformer).", min=1, max=64)
    dropout: float = opt(0.0, "Dropout rate.", min=0, max=1, max_open=True)
    weight_decay: float = opt(0.1, "AdamW weight decay.", min=0, max=1)
    data_dir: Path | None = common("data_dir", None, help="Read the default corpus (Tiny "
                                   "Shakespeare) from this folder only.")
    limit: int | None = common("limit", None, help="Use only the first N characters of the "
                               "corpus (smoke runs).")
    val_split: float = common("val_split", 0.1, help="Fraction at the end of the corpus held "
                              "out for validation.")
    epochs: int = common("epochs", 10)
    batch_size: int = common("batch_size", 32)
    learning_rate: float = common("learning_rate", 3e-3)
    output: Path = common("output", Path("models/text"))

    def check(self) -> None:
        default_layers, default_dim = DEFAULT_SIZES[self.arch]
        self.layers = default_layers if self.layers is None else self.layers
        self.dim = default_dim if self.dim is None else self.dim
        if self.arch == TextArch.transformer and self.dim % self.heads:
            raise UsageError(f"--dim {self.dim} must be divisible by --heads {self.heads}")


@dataclass(kw_only=True)
class GenerateConfig(Config):
    """Generate text from a trained model, streamed to stdout as it is produced.

    Example: dlkit generate-text --model models/text --prompt "ROMEO:" --length 2000 > out.txt
    """

    COMMAND = "generate-text"

    model: Path = opt(Path("models/text"), "Model folder written by train-text.",
                      flags=("-m",))
    prompt: str = opt("", "Text to start from (echoed first), or - to read it from stdin.")
    length: int = opt(500, "Characters to generate per sample (after the prompt).",
                      flags=("-n",), min=1, max=10_000_000)
    temperature: float = opt(0.8, "Sampling temperature (> 0; lower is more conservative).",
                             min=0, min_open=True, max=100)
    top_k: int | None = opt(None, "Sample only among the K likeliest characters.", min=1)
    seed: int = common("seed", 0, help="Random seed: the same seed gives the same text.")
    num_samples: int = opt(1, "Independent samples, separated by a blank line.", min=1,
                           max=10_000)
    backend: Backend = backend_option()
    json: bool = opt(False, "Print one JSON object with the samples on stdout (at the end, "
                     "not streamed).", name="--json", group=3)
