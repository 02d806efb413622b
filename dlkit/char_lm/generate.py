"""`dlkit generate-text`: sample characters from a trained character model, streamed to stdout.

The model runs from the folder's `decoder.tflite` through LiteRT (no TensorFlow import: output
starts in a fraction of a second) or from `model.keras` through TensorFlow, as `--backend` says;
both run the same decoding step, so greedy decoding (`--top-k 1`) gives the same text.

The output of each sample is the prompt followed by `--length` generated characters and a
newline; several samples (`--num-samples`) are separated by a blank line. Characters are written
and flushed as they are produced, so `| head -c 100` and `> out.txt` both work, and nothing but
the text goes to stdout. A closed pipe ends generation quietly (exit 0).

Prompt characters missing from the model's vocabulary are kept in the echoed prompt but left out
of what the model is fed (with a warning). An empty prompt (or one made only of unknown
characters) starts the model from a newline, or from the corpus's most common character when the
vocabulary has no newline.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.char_lm.config import GenerateConfig
from dlkit.char_lm.decoding import DECODER_FILE, Decoder, lite_decoder
from dlkit.core.config import Backend
from dlkit.core.console import emit_json, info, warn
from dlkit.core.errors import UsageError

TRAIN_HINT = "train one with `dlkit train-text --output {folder}`"


@dataclass
class GenerateResult:
    """What a generation run did (reported on stderr unless --quiet)."""

    characters: int
    seconds: float
    unknown_prompt_chars: list[str] = field(default_factory=list)

    @property
    def chars_per_second(self) -> float:
        return self.characters / self.seconds if self.seconds else 0.0


class Sampler:
    """Temperature / top-k sampling from next-character logits with a seeded generator."""

    def __init__(self, temperature: float, top_k: int | None, seed: int) -> None:
        self.temperature, self.top_k = temperature, top_k
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray) -> int:
        scaled = logits.astype(np.float64) / self.temperature
        if self.top_k is not None and self.top_k < len(scaled):
            cutoff = np.partition(scaled, -self.top_k)[-self.top_k]
            scaled = np.where(scaled < cutoff, -np.inf, scaled)
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        return int(self.rng.choice(len(probs), p=probs))


def generate(decoder: Decoder, vocab: list[str], start_ids: list[int], length: int,
             sampler: Sampler) -> Iterator[str]:
    """Yield `length` characters, one model step per character (incremental decoding)."""
    logits, state = decoder.start(start_ids)
    for i in range(length):
        token = sampler(logits)
        yield vocab[token]
        if i + 1 < length:
            logits, state = decoder.step(token, state)


def start_ids(prompt: str, vocab: list[str], fallback: str) -> tuple[list[int], list[str]]:
    """Ids of the prompt's known characters (or of `fallback` if none), and the unknown ones."""
    lookup = {ch: i for i, ch in enumerate(vocab)}
    ids = [lookup[ch] for ch in prompt if ch in lookup]
    unknown = sorted({ch for ch in prompt if ch not in lookup})
    return ids or [lookup[fallback]], unknown


def fallback_char(vocab: list[str], metadata: dict[str, Any]) -> str:
    """What an empty prompt starts from: a newline, else the corpus's most common character."""
    if "\n" in vocab:
        return "\n"
    common = metadata.get("text", {}).get("most_common_char")
    return common if common in vocab else vocab[0]


def text_metadata(folder: Path) -> dict[str, Any]:
    """The metadata of a `train-text` model folder, its vocabulary checked; exit 2 with a
    training hint otherwise. Needs no TensorFlow, so a missing model fails at once."""
    from dlkit.core import artifacts

    folder = Path(folder).expanduser()
    hint = TRAIN_HINT.format(folder=folder)
    metadata = artifacts.load_metadata(folder, train_hint=f"dlkit train-text --output {folder}")
    text = metadata.get("text")
    if metadata.get("task") != "train-text" or not isinstance(text, dict) \
            or not text.get("vocab"):
        raise UsageError(f"{folder} holds a {metadata.get('task', 'unknown')} model, not a "
                         f"text model; {hint}")
    vocab = text["vocab"]
    if (not isinstance(vocab, list) or not all(isinstance(c, str) and len(c) == 1
                                               for c in vocab) or len(set(vocab)) != len(vocab)):
        raise UsageError(f"the vocabulary in {folder / artifacts.METADATA} is damaged (it must "
                         "be a list of distinct single characters); retrain the model")
    return metadata


def load_text_model(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The Keras model and metadata of a `train-text` model folder; exit 2 when the
    vocabulary in the metadata does not fit the model."""
    from dlkit.core import artifacts

    metadata = text_metadata(folder)
    import dlkit.char_lm.models  # noqa: F401  (registers the custom layers for loading)

    model = artifacts.load_keras_model(Path(folder).expanduser())
    _check_vocabulary(folder, metadata, int(model.outputs[0].shape[-1]))
    return model, metadata


def load_decoder(folder: Path, backend: Backend) -> tuple[Decoder, dict[str, Any], str]:
    """(the decoder, the metadata, the backend's name): from the folder's `decoder.tflite`
    through LiteRT when `backend` allows (no TensorFlow import), else from `model.keras`."""
    from dlkit.core import litert

    metadata = text_metadata(folder)  # fails fast, before any model loads
    lite = litert.open_model(folder, metadata, backend, DECODER_FILE)
    if lite is None:
        from dlkit.core import runtime

        runtime.start(mixed_precision=False)  # quiets TensorFlow before models.py imports it
        from dlkit.char_lm.models import decoder

        model, metadata = load_text_model(folder)
        return decoder(metadata["arch"], model), metadata, "TensorFlow"
    lite_model = lite_decoder(lite)
    predicts = lite.outputs("step").get("logits", (0,))[-1]
    _check_vocabulary(folder, metadata, predicts)
    return lite_model, metadata, "LiteRT"


def _check_vocabulary(folder: Path, metadata: dict[str, Any], outputs: int) -> None:
    from dlkit.core import artifacts

    if outputs != len(metadata["text"]["vocab"]):
        raise UsageError(f"the vocabulary in {Path(folder) / artifacts.METADATA} has "
                         f"{len(metadata['text']['vocab'])} characters but the model predicts "
                         f"{outputs}; the metadata was edited or mixed up: retrain the model")


def read_prompt(prompt: str) -> str:
    """`-` reads the prompt from stdin (as UTF-8, kept exactly as given)."""
    if prompt != "-":
        return prompt
    stream = getattr(sys.stdin, "buffer", None)
    raw = stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("the prompt on stdin is not UTF-8 text; give a UTF-8 prompt") from None


def generate_text(config: GenerateConfig) -> None:
    """Load the model, then stream `num_samples` samples to stdout (with --json: print them
    as one JSON object at the end)."""
    decoder, metadata, engine = load_decoder(config.model, config.backend)
    vocab = list(metadata["text"]["vocab"])
    prompt = read_prompt(config.prompt)
    ids, unknown = start_ids(prompt, vocab, fallback_char(vocab, metadata))
    if unknown:
        shown = "".join(unknown[:20]).encode("unicode_escape").decode("ascii")
        warn(f"{len(unknown)} prompt character(s) not in the model's vocabulary ({shown}); "
             "they are echoed but not fed to the model")
    out = _Collected() if config.json else _Stdout()
    begin, produced = time.perf_counter(), 0
    try:
        for index in range(config.num_samples):
            out.begin_sample(prompt)
            sampler = Sampler(config.temperature, config.top_k, config.seed + index)
            for ch in generate(decoder, vocab, ids, config.length, sampler):
                out.write(ch)
                produced += 1
            out.end_sample()
    except BrokenPipeError:
        _Stdout.close_quietly()
    seconds = time.perf_counter() - begin
    result = GenerateResult(produced, seconds, unknown)
    if config.json:
        emit_json({"model": str(config.model), "prompt": prompt, "samples": out.samples,
                   "characters": produced, "seconds": seconds, "seed": config.seed,
                   "temperature": config.temperature, "top_k": config.top_k,
                   "unknown_prompt_chars": unknown})
    info(f"generated {produced:,} characters in {seconds:.2f}s "
         f"({result.chars_per_second:,.0f} chars/s, {metadata['arch']} on {engine})")


class _Collected:
    """Samples kept for the --json object (each is the prompt and what followed it)."""

    def __init__(self) -> None:
        self.samples: list[str] = []

    def begin_sample(self, prompt: str) -> None:
        self.samples.append(prompt)

    def write(self, text: str) -> None:
        self.samples[-1] += text

    def end_sample(self) -> None:
        pass


class _Stdout:
    """UTF-8 writes to stdout, flushed per character, whatever the locale."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self.buffer = getattr(sys.stdout, "buffer", None)
        self.samples = 0

    def begin_sample(self, prompt: str) -> None:
        """A sample starts with its prompt; samples are separated by a blank line."""
        self.write(("\n" if self.samples else "") + prompt)
        self.samples += 1

    def end_sample(self) -> None:
        self.write("\n")

    def write(self, text: str) -> None:
        if not text:
            return
        if self.buffer is not None:
            self.buffer.write(text.encode("utf-8"))
            self.buffer.flush()
        else:
            sys.stdout.write(text)
            sys.stdout.flush()

    @staticmethod
    def close_quietly() -> None:
        """The reader went away (`| head`): point stdout at /dev/null so exit stays quiet."""
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
