"""The options of `train-text` and `generate-text` (see dlkit.core.config)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from dlkit.core.config import (
    Backend,
    Config,
    SamplerKind,
    TrainConfig,
    backend_option,
    common,
    opt,
)
from dlkit.core.errors import UsageError
from dlkit.core.files import TEXT_LIMIT, MiB, size_text

PROMPT_LIMIT = MiB  # a prompt read from stdin


class TextArch(enum.StrEnum):
    """gru (the default: best in 10 CPU minutes), lstm, or transformer (GPT-style)."""

    gru = "gru"
    lstm = "lstm"
    transformer = "transformer"


class Recipe(NamedTuple):
    """A from-scratch model's default size and optimizer settings."""

    layers: int
    dim: int  # RNN units or transformer width
    rate: float  # peak learning rate
    decay: float  # AdamW weight decay
    warmup: int = 0  # steps of warm-up at least, however short the budget
    dropout: float = 0.0


# The defaults from scratch, chosen by measurement on Tiny Shakespeare (validation loss, nats/char,
# a 2-core AVX2 CPU in float32, batches of 64 x 128; docs/text-generation.md has the runs). A GRU
# of 512 units trains 7,800-10,300 chars/s there (its recurrent matrix falls off a cache cliff),
# 384 units 16,700-20,000 and 320 units 19,500-22,000, so in a budget the narrower RNN sees more
# text. In 10 minutes 384 units at 4e-3 and weight decay 0.1 reach 1.497-1.503, 320 units at
# 8e-3 and 0.01 only 1.542 (it fits the training text less well: 1.30 against 1.21). In 3
# minutes it is the other way round: 384 units at 4e-3/0.1 1.676, 320 units at 4e-3 1.647, 6e-3
# 1.629, 8e-3 1.586, and at 8e-3 with weight decay 0.01 1.569 (AdamW shrinks each weight by rate
# x decay per step). So a GRU with a time budget under SHORT_BUDGET minutes gets the short
# recipe (the LSTM was not measured), with a warm-up of 100 steps: without one (a budget's own
# warm-up is a few steps) some seeds start badly at that rate and never catch up. Seeds 0/1/2/3
# without: 1.569-1.584/1.580/1.707/-; with: 1.609/1.626/1.589/1.591 (a steadier 1.60 on
# average, rather than a better best case).
# On a 2-core AVX512-BF16 CPU (mixed bfloat16) with the GRU that trains faster (dlkit.text.gru),
# 10 minutes: 384 units 1.478 (16 epochs; with dropout 0.2 1.477), and the validation loss no
# longer falls after 12 epochs while the training loss does (1.16): the model overfits; with
# dropout 0.3 1.477. 512 units with dropout 0.2 1.469, 0.3 1.465 (15 epochs, 24,400 chars/s),
# 0.4 1.475, and at 8e-3 with weight decay 0.01 1.484; 640 units with 0.3 1.468. Two stacked
# layers of 384 units learn more per character than one of 512 (17,600-18,600 chars/s against
# 24,000-26,800, 11-12 epochs against 15-16): with dropout 0.2 after each layer 1.451/1.443/
# 1.450 (seeds 0/1/2) against 1.462/1.467 for 1 x 512 (seeds 0/1); dropout 0.3 1.457, 0.1
# 1.454 (seed 0). Higher peak rates start badly on some runs: 5e-3 spent its first epochs on a
# plateau (1.510), 6e-3 did once (1.758, on a busy CPU) and once not (1.446).
RECIPES = {TextArch.gru: Recipe(2, 384, 4e-3, 0.1, dropout=0.2),
           TextArch.lstm: Recipe(1, 384, 4e-3, 0.1),
           TextArch.transformer: Recipe(4, 192, 4e-3, 0.1)}
SHORT_GRU = Recipe(1, 320, 8e-3, 0.01, warmup=100)
SHORT_BUDGET = 5.0  # minutes
# Fine-tuning a pretrained model (--from-preset): a small rate, the usual decay.
FINETUNE_RATE, FINETUNE_DECAY = 5e-5, 0.1
# From scratch, batches of 64 beat 32 (the larger matrix products give 1.3x the characters per
# second) and 128 (half the optimizer steps in a budget: 1.703 against 1.629 in 3 minutes).
SCRATCH_BATCH, FINETUNE_BATCH = 64, 32


def _defaults(field: str, finetune: float | None = None) -> str:
    """The help text's default for a Recipe field: per architecture, with a short budget, and
    with --from-preset."""
    gru, lstm, transformer = (getattr(RECIPES[arch], field) for arch in TextArch)
    short = getattr(SHORT_GRU, field)
    budget = f"with --max-minutes under {SHORT_BUDGET:g}"
    text = (f"{gru:g} GRU and LSTM ({short:g} for the GRU {budget})" if lstm == gru else
            f"{gru:g} GRU ({short:g} {budget}), {lstm:g} LSTM") + f", {transformer:g} transformer"
    return text + (f", {finetune:g} with --from-preset" if finetune is not None else "")


@dataclass(kw_only=True)
class TextConfig(TrainConfig):
    """Train a character-level language model on a text file, or fine-tune a pretrained one
    (--from-preset); save it with a loss curve.

    Example: dlkit train-text --corpus poems.txt --max-minutes 10 --output models/poems

    Example: dlkit train-text --from-preset gpt2_base_en --corpus poems.txt --lora 4 -o models/gpt
    """

    COMMAND = "train-text"

    corpus: str | None = opt(None, "UTF-8 text file to learn (any language), or - for stdin; "
                             f"at most {size_text(TEXT_LIMIT)}. Default: Tiny Shakespeare, "
                             "found through the data lookup or downloaded.",
                             show_default=False, resume=False)
    from_preset: str | None = opt(None, "Fine-tune this pretrained keras-hub language model "
                                  "instead of training a character model: a preset name "
                                  "(gpt2_base_en; `dlkit models` lists them), a kaggle:// or "
                                  "hf:// handle, a preset folder, or a folder this command "
                                  "wrote.", show_default=False)
    lora: int | None = opt(None, "With --from-preset: train only low-rank adapters of this rank "
                           "(LoRA; a fraction of the parameters), not the whole model.", min=1,
                           max=4096, show_default=False)
    arch: TextArch = opt(TextArch.gru, "gru (best in 10 CPU minutes), lstm, or transformer "
                         "(GPT-style, causal attention).")
    seq_len: int = opt(128, "Characters per training window (the transformer's context).",
                       min=1, max=8192)
    layers: int | None = opt(None, "Stacked RNN layers or transformer blocks [default: "
                             f"{_defaults('layers')}].", min=1, max=64, show_default=False)
    dim: int | None = opt(None, "RNN units or transformer width [default: "
                          f"{_defaults('dim')}].", min=1, max=8192, show_default=False)
    heads: int = opt(4, "Attention heads (transformer).", min=1, max=64)
    dropout: float | None = opt(None, "Dropout rate [default: "
                                f"{_defaults('dropout')}].", min=0, max=1, max_open=True,
                                show_default=False)
    weight_decay: float | None = opt(None, "AdamW weight decay [default: "
                                     f"{_defaults('decay', FINETUNE_DECAY)}].", min=0, max=1,
                                     show_default=False)
    data_dir: Path | None = common("data_dir", None, help="Read the default corpus (Tiny "
                                   "Shakespeare) from this folder only.")
    limit: int | None = common("limit", None, help="Use only the first N characters of the "
                               "corpus (smoke runs).")
    val_split: float = common("val_split", 0.1, help="Fraction at the end of the corpus held "
                              "out for validation.")
    epochs: int = common("epochs", 8)  # the default GRU: about 8 minutes on 2 cores
    batch_size: int | None = common("batch_size", None, help=f"Windows per step [default: "
                                    f"{SCRATCH_BATCH}, {FINETUNE_BATCH} with --from-preset].")
    learning_rate: float | None = common("learning_rate", None, help="Peak learning rate [default: "
                                         f"{_defaults('rate', FINETUNE_RATE)}].")
    output: Path = common("output", Path("models/text"))

    def recipe(self) -> Recipe:
        """The defaults for this architecture, time budget and --from-preset."""
        recipe = RECIPES[self.arch]
        short = self.max_minutes is not None and self.max_minutes < SHORT_BUDGET
        if short and self.arch == TextArch.gru:  # measured on the GRU only
            recipe = SHORT_GRU
        if self.from_preset:
            recipe = recipe._replace(rate=FINETUNE_RATE, decay=FINETUNE_DECAY)
        return recipe

    def check(self) -> None:
        recipe = self.recipe()
        self.learning_rate = recipe.rate if self.learning_rate is None else self.learning_rate
        self.weight_decay = recipe.decay if self.weight_decay is None else self.weight_decay
        if self.batch_size is None:
            self.batch_size = FINETUNE_BATCH if self.from_preset else SCRATCH_BATCH
        if self.lora is not None and not self.from_preset:
            raise UsageError("--lora adapts a pretrained model; give --from-preset NAME too")
        self.layers = recipe.layers if self.layers is None else self.layers
        self.dim = recipe.dim if self.dim is None else self.dim
        self.dropout = recipe.dropout if self.dropout is None else self.dropout
        if self.arch == TextArch.transformer and self.dim % self.heads:
            raise UsageError(f"--dim {self.dim} must be divisible by --heads {self.heads}")


@dataclass(kw_only=True)
class GenerateConfig(Config):
    """Generate text from a trained or pretrained model, streamed to stdout as it is produced.

    Example: dlkit generate-text --model models/text --prompt "ROMEO:" --length 2000 > out.txt

    Example: dlkit generate-text --model gpt2_base_en --prompt "The meaning of life is" -n 50
    """

    COMMAND = "generate-text"

    model: str = opt("models/text", "A model folder written by train-text, or a pretrained "
                     "keras-hub language model: a preset name (gpt2_base_en; `dlkit models` "
                     "lists them), a kaggle:// or hf:// handle, or a preset folder.",
                     flags=("-m",))
    prompt: str = opt("", "Text to start from (echoed first), or - to read it from stdin (at "
                      f"most {size_text(PROMPT_LIMIT)}). A pretrained model's context must hold "
                      "it.")
    length: int = opt(500, "How much to generate per sample (after the prompt): characters "
                      "for dlkit's character models, tokens (sub-words, about 4 characters of "
                      "English each) for pretrained models, which also stop at their "
                      "end-of-text token.", flags=("-n",), min=1, max=10_000_000)
    sampler: SamplerKind = opt(SamplerKind.random, "random (the whole distribution), top-k, "
                               "top-p (nucleus), or greedy (always the likeliest token: the "
                               "same text every time).")
    temperature: float = opt(0.8, "Sampling temperature (> 0; lower is more conservative).",
                             min=0, min_open=True, max=100)
    top_k: int | None = opt(None, "Sample only among the K likeliest tokens (40 when "
                            "--sampler top-k is given without it).", min=1, show_default=False)
    top_p: float | None = opt(None, "Sample only among the likeliest tokens whose probabilities "
                              "add up to P, in (0, 1] (0.9 when --sampler top-p is given "
                              "without it).", min=0, min_open=True, max=1, show_default=False)
    seed: int = common("seed", 0, help="Random seed: the same seed gives the same text.")
    num_samples: int = opt(1, "Independent samples, separated by a blank line.", min=1,
                           max=10_000)
    backend: Backend = backend_option()
    json: bool = opt(False, "Print one JSON object with the samples on stdout (at the end, "
                     "not streamed).", name="--json", group=3)
