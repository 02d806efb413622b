"""Token-by-token decoding of a keras-hub CausalLM, so text streams as it is produced.

keras-hub's `generate()` runs its whole sampling loop inside one compiled function and returns
only at the end. `CachedDecoder` drives the same cached step from Python instead, exactly as
`generate()` does inside: the prompt fills the key/value cache in one pass (`_build_cache`), then
each token is one `call_with_cache` at the next position. So greedy decoding gives the same
tokens as `generate()` with the greedy sampler, and any NumPy sampler can pick the next token.

`TextPieces` turns token ids into text incrementally: byte-level BPE tokens (GPT-2, OPT, Llama 3,
Qwen) map to their bytes, fed to an incremental UTF-8 decoder, so a character split over two
tokens is printed once, whole; other tokenizers are detokenized as a growing sequence with any
incomplete character held back.

Imports TensorFlow: import this module inside command bodies only.
"""

from __future__ import annotations

import codecs
from typing import Any

import numpy as np
import tensorflow as tf

from dlkit.core.errors import UsageError


def tokenizer_of(task: Any) -> Any:
    preprocessor = getattr(task, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None:
        raise UsageError("the preset has no tokenizer (no preprocessor was saved with it); "
                         "pass a preset saved with its preprocessor")
    return tokenizer


def context_length(task: Any) -> int | None:
    """The longest sequence the model was built for (None: no fixed limit, e.g. rotary)."""
    length = getattr(task.backbone, "max_sequence_length", None)
    return int(length) if length else None


TOKEN_CHARS_FALLBACK = 256  # characters per token when a tokenizer lists no vocabulary


def longest_token(task: Any) -> int:
    """The most characters one token of the task's tokenizer can stand for (its longest
    vocabulary entry: a byte-level BPE entry has one symbol per byte, so at least as many as
    characters), so that `len(text) > context * longest_token(task)` proves a text too long
    for the context without tokenizing it."""
    try:
        vocabulary = tokenizer_of(task).get_vocabulary()
    except Exception:  # a tokenizer without a listable vocabulary raises several types
        return TOKEN_CHARS_FALLBACK
    return max((len(str(token)) for token in vocabulary), default=0) or TOKEN_CHARS_FALLBACK


def prompt_ids(task: Any, prompt: str) -> list[int]:
    """The prompt's token ids as keras-hub's `generate_preprocess` makes them: the start token
    (when the preprocessor adds one), then the tokens, no end token."""
    tokenizer = tokenizer_of(task)
    ids = [int(i) for i in np.asarray(tokenizer(prompt)).reshape(-1)] if prompt else []
    start = getattr(tokenizer, "start_token_id", None)
    if getattr(task.preprocessor, "add_start_token", False) and start is not None:
        ids = [int(start), *ids]
    return ids


def stop_ids(task: Any) -> set[int]:
    """The end-of-text token(s) that end a sample (as `generate()`'s stop_token_ids="auto")."""
    tokenizer = tokenizer_of(task)
    ids = {getattr(tokenizer, "end_token_id", None), getattr(tokenizer, "end_token2_id", None)}
    return {int(i) for i in ids if i is not None}


class CachedDecoder:
    """`start(prompt ids, total length)` then `step(token)`: next-token logits (NumPy)."""

    def __init__(self, task: Any) -> None:
        self.task = task
        jit = bool(getattr(task, "jit_compile", False))
        self._prefill = tf.function(self._prefill_graph, jit_compile=jit, reduce_retracing=True)
        self._step = tf.function(self._step_graph, jit_compile=jit)
        # its concrete function per cache shape, called directly: a millisecond less per token
        # than tf.function's argument dispatch (3% of a GPT-2 base step on a CPU)
        self._concrete: dict[tuple[int, ...], Any] = {}
        self.cache: Any = None
        self.index = 0
        self.total = 0

    def _prefill_graph(self, ids: Any, last: Any) -> tuple[Any, Any]:
        try:
            _, cache = self.task._build_cache(ids)
        except TypeError:
            raise UsageError(f"streamed generation is not supported for "
                             f"{type(self.task).__name__} (its cache takes other inputs)"
                             ) from None
        return self._step_graph(ids[:, last - 1:last], cache, last - 1)

    def _step_graph(self, token: Any, cache: Any, index: Any) -> tuple[Any, Any]:
        logits, _, cache = self.task.call_with_cache(token, cache, index)
        return logits[:, -1, :], cache

    def start(self, ids: list[int], total: int) -> np.ndarray:
        """Fill the cache with the prompt (`total`: prompt plus the tokens to come)."""
        padded = np.zeros((1, total), np.int32)
        padded[0, :len(ids)] = ids
        logits, self.cache = self._prefill(tf.constant(padded), tf.constant(len(ids)))
        self.index, self.total = len(ids), total
        return logits.numpy()[0]

    def step(self, token: int) -> np.ndarray:
        """The logits after `token` (placed at the next position)."""
        if self.index >= self.total:
            raise ValueError("the cache is full")
        args = (tf.constant([[token]], tf.int32), self.cache, tf.constant(self.index, tf.int32))
        shape = tuple(self.cache.shape)
        if shape not in self._concrete:
            self._concrete[shape] = self._step.get_concrete_function(*args)
        logits, self.cache = self._concrete[shape](*args)
        self.index += 1
        return logits.numpy()[0]


def byte_table() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character standing for each byte."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in kept:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


class TextPieces:
    """`pieces(token) -> str`: the text that token completes; `flush()` at the end."""

    def __init__(self, tokenizer: Any) -> None:
        from keras_hub.tokenizers import BytePairTokenizer

        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = 0
        self.bytes: list[bytes] | None = None
        if isinstance(tokenizer, BytePairTokenizer):
            table = byte_table()
            self.bytes = [self._token_bytes(tokenizer.id_to_token(i), table)
                          for i in range(tokenizer.vocabulary_size())]
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @staticmethod
    def _token_bytes(token: str, table: dict[str, int]) -> bytes:
        if all(ch in table for ch in token):
            return bytes(table[ch] for ch in token)
        return token.encode("utf-8")  # a special token such as <|endoftext|>

    def __call__(self, token: int) -> str:
        if self.bytes is not None:
            return self.utf8.decode(self.bytes[token])
        self.ids.append(token)
        text = _as_text(self.tokenizer.detokenize(np.array(self.ids, np.int32)))
        if text.endswith("\ufffd"):  # an incomplete character: wait for the next token
            return ""
        piece, self.emitted = text[self.emitted:], len(text)
        return piece

    def flush(self) -> str:
        if self.bytes is not None:
            return self.utf8.decode(b"", final=True)
        text = _as_text(self.tokenizer.detokenize(np.array(self.ids, np.int32))) if self.ids \
            else ""
        return text[self.emitted:]


def _as_text(value: Any) -> str:
    value = value.numpy() if hasattr(value, "numpy") else value
    value = np.asarray(value).reshape(-1)[0] if not isinstance(value, (str, bytes)) else value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
