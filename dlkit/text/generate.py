"""`dlkit generate-text`: sample text from a language model, streamed to stdout.

The model is a dlkit character model folder (this module) or a pretrained keras-hub CausalLM:
a preset name, handle, preset folder or fine-tuned folder (`dlkit.text.pretrained`). Both
are a generator with the same interface, fed by the same samplers (`dlkit.core.sampling`) and
written by the same output code here.

A character model runs from the folder's `decoder.tflite` through LiteRT (no TensorFlow import:
output starts in a fraction of a second) or from `model.keras` through TensorFlow, as
`--backend` says; both run the same decoding step, so greedy decoding gives the same text.

The output of each sample is the prompt followed by `--length` generated characters (tokens for
pretrained models) and a newline; several samples (`--num-samples`) are separated by a blank
line. Text is written and flushed as it is produced, so `| head -c 100` and `> out.txt` both
work, and nothing but the text goes to stdout. A closed pipe ends generation quietly (exit 0).

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
from pathlib import Path
from typing import Any

from dlkit.core.config import Backend
from dlkit.core.console import emit_json, info, warn
from dlkit.core.errors import UsageError
from dlkit.core.sampling import Sampler
from dlkit.text.config import GenerateConfig
from dlkit.text.decoding import DECODER_FILE, Decoder, lite_decoder

TRAIN_HINT = "train one with `dlkit train-text --output {folder}`"


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
        what = ("a keras-hub language model fine-tuned by train-text --from-preset"
                if isinstance(metadata.get("pretrained"), dict)
                else f"a {metadata.get('task', 'unknown')} model")
        raise UsageError(f"{folder} holds {what}, not a dlkit character model; {hint}")
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
    model = artifacts.load_keras_model(Path(folder).expanduser())
    _check_vocabulary(folder, metadata, int(model.outputs[0].shape[-1]))
    return model, metadata


def load_decoder(folder: Path, backend: Backend) -> tuple[Decoder, dict[str, Any], str]:
    """(the decoder, the metadata, the backend's name): from the folder's `decoder.tflite`
    through LiteRT when `backend` allows (no TensorFlow import), else from `model.keras`."""
    from dlkit.core import litert

    metadata = text_metadata(folder)  # fails fast, before any model loads
    lite = litert.open_recorded(folder, metadata, backend, DECODER_FILE)
    if lite is None:
        from dlkit.core import runtime

        runtime.start(mixed_precision=False)  # quiets TensorFlow before models.py imports it
        from dlkit.text.models import decoder

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
    """`-` reads the prompt from stdin (as UTF-8, kept exactly as given; at most PROMPT_LIMIT
    bytes)."""
    if prompt != "-":
        return prompt
    from dlkit.core.files import read_stdin
    from dlkit.text.config import PROMPT_LIMIT

    raw = read_stdin("the prompt", PROMPT_LIMIT, "give a shorter prompt")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("the prompt on stdin is not UTF-8 text; give a UTF-8 prompt") from None


class CharGenerator:
    """A dlkit character model: `prepare(prompt, length)`, then `sample(sampler)` per sample."""

    unit = "characters"

    def __init__(self, decoder: Decoder, metadata: dict[str, Any], engine: str) -> None:
        self.decoder, self.metadata, self.engine = decoder, metadata, engine
        self.arch = metadata["arch"]
        self.vocab = list(metadata["text"]["vocab"])
        self.ids: list[int] = []
        self.length = 0
        self.tokens = 0
        self.unknown: list[str] = []

    def prepare(self, prompt: str, length: int) -> None:
        self.ids, self.unknown = start_ids(prompt, self.vocab,
                                           fallback_char(self.vocab, self.metadata))
        self.length = length
        if self.unknown:
            shown = "".join(self.unknown[:20]).encode("unicode_escape").decode("ascii")
            warn(f"{len(self.unknown)} prompt character(s) not in the model's vocabulary "
                 f"({shown}); they are echoed but not fed to the model")

    def sample(self, sampler: Sampler) -> Iterator[str]:
        for ch in generate(self.decoder, self.vocab, self.ids, self.length, sampler):
            self.tokens += 1
            yield ch


def is_char_model(spec: str) -> bool:
    """Whether `--model` names a dlkit model folder (or a path that should be one) rather
    than a pretrained model: a preset folder, a fine-tuned one, a name or a handle."""
    from dlkit.core.hub import CONFIG_FILE, HF, KAGGLE, PRESET_DIR

    if spec.startswith((KAGGLE, HF)):
        return False
    path = Path(spec).expanduser()
    if not path.exists():
        return os.sep in spec  # a name without a slash is a preset name
    return not ((path / CONFIG_FILE).is_file() or (path / PRESET_DIR / CONFIG_FILE).is_file())


def open_generator(config: GenerateConfig) -> Any:
    """A character model's generator or a pretrained model's (dlkit.text.pretrained)."""
    if is_char_model(config.model):
        return CharGenerator(*load_decoder(Path(config.model), config.backend))
    from dlkit.core.hub import refuse_litert
    from dlkit.text.pretrained import open_pretrained

    refuse_litert(config.model, config.backend)
    return open_pretrained(config.model)


class ServedGenerator:
    """generate-text for `dlkit serve`'s `:generate`: the model opened once, then one text per
    request, streamed piece by piece. A request is a JSON object of generate-text's options
    (`prompt`, `length`, `sampler`, `temperature`, `top_k`, `top_p`, `seed`), checked against
    the same bounds and choices."""

    FIELDS = {"prompt": str, "length": int, "sampler": str, "temperature": (int, float),
              "top_k": int, "top_p": (int, float), "seed": int}

    def __init__(self, model: str, backend: Backend) -> None:
        self.model, self.backend = model, backend
        self.generator = open_generator(GenerateConfig(model=model, backend=backend))
        self.engine, self.unit = self.generator.engine, self.generator.unit

    def settings(self, request: Any) -> GenerateConfig:
        """The request as generate-text's options; UsageError naming what is wrong."""
        from dlkit.core.config import SamplerKind

        if not isinstance(request, dict):
            raise UsageError("the body must be a JSON object of generate-text's options")
        unknown = sorted(set(request) - set(self.FIELDS))
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}; :generate takes "
                             f"{', '.join(self.FIELDS)}")
        for key, kind in self.FIELDS.items():
            value = request.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise UsageError(f"{key} must be a {'text' if kind is str else 'number'}")
        values = {k: v for k, v in request.items() if v is not None}
        if "sampler" in values:
            try:
                values["sampler"] = SamplerKind(values["sampler"])
            except ValueError:
                raise UsageError(f"sampler {values['sampler']!r} is not one of "
                                 f"{', '.join(k.value for k in SamplerKind)}") from None
        return GenerateConfig(model=self.model, backend=self.backend, **values)

    def pieces(self, config: GenerateConfig) -> Iterator[str]:
        """The prompt, then the generated text as it comes (one model call per piece)."""
        self.generator.prepare(config.prompt, config.length)
        sampler = Sampler.choose(config.sampler, config.temperature, config.top_k,
                                 config.top_p, config.seed)
        yield config.prompt
        yield from self.generator.sample(sampler)


def generate_text(config: GenerateConfig) -> None:
    """Load the model, then stream `num_samples` samples to stdout (with --json: print them
    as one JSON object at the end)."""
    generator = open_generator(config)
    prompt = read_prompt(config.prompt)
    generator.prepare(prompt, config.length)
    out = _Collected() if config.json else _Stdout()
    begin, characters = time.perf_counter(), 0
    try:
        for index in range(config.num_samples):
            out.begin_sample(prompt)
            sampler = Sampler.choose(config.sampler, config.temperature, config.top_k,
                                     config.top_p, config.seed + index)
            for piece in generator.sample(sampler):
                out.write(piece)
                characters += len(piece)
            out.end_sample()
    except BrokenPipeError:
        _Stdout.close_quietly()
    seconds = time.perf_counter() - begin
    tokens = generator.tokens
    if config.json:
        emit_json({"model": str(config.model), "prompt": prompt, "samples": out.samples,
                   "characters": characters, "tokens": tokens, "unit": generator.unit,
                   "seconds": seconds, "seed": config.seed, "sampler": config.sampler.value,
                   "temperature": config.temperature, "top_k": config.top_k,
                   "top_p": config.top_p,
                   "unknown_prompt_chars": generator.unknown})
    rate = tokens / seconds if seconds else 0.0
    info(f"generated {tokens:,} {generator.unit} in {seconds:.2f}s ({rate:,.1f} "
         f"{generator.unit}/s, {generator.arch} on {generator.engine})")


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
