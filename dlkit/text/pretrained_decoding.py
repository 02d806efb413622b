"""Streamed decoding of a keras-hub CausalLM, so text is written as it is produced.

keras-hub's `generate()` runs its whole sampling loop inside one compiled function and returns
only at the end. `CachedDecoder` runs the same cached steps as `generate()` does inside: the
prompt fills the key/value cache in one pass (`_build_cache`), then each token is one
`call_with_cache` at the next position. The first token is picked as soon as the prompt is read;
after it, each TensorFlow call runs a few steps in one `tf.while_loop` (2, then 4, then 8
tokens) and picks each token inside the graph, from the same uniform draws and with the same
arithmetic as `dlkit.core.sampling.Sampler`. So greedy decoding gives the same tokens as
`generate()` with the greedy sampler, and a seed gives the text the NumPy sampler gives.

`TextPieces` turns token ids into text incrementally: byte-level BPE tokens (GPT-2, OPT, Llama 3,
Qwen) map to their bytes, fed to an incremental UTF-8 decoder, so a character split over two
tokens is printed once, whole; other tokenizers are detokenized as a growing sequence with any
incomplete character held back.

Imports TensorFlow: import this module inside command bodies only.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf

from dlkit.core.errors import UsageError
from dlkit.core.sampling import Sampler


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


# Tokens per TensorFlow call after the first token: the first comes alone as soon as the prompt
# is read, then calls grow to CHUNK tokens each, so text still arrives every few tokens. One
# call per token with the logits sampled in NumPy cost 3-4% more CPU than this on GPT-2 base
# (see benchmarks/bench_gpt2.py).
CHUNKS = (2, 4)
CHUNK = 8


class CachedDecoder:
    """`tokens(prompt ids, length, sampler, stops)`: the sampled token ids, streamed.

    The first token is chosen by `sampler` from the prompt's logits (NumPy), then each call
    runs up to CHUNK steps in one `tf.while_loop`: step at the next position, then the
    sampler's choice inside the graph (`graph_pick`, the same arithmetic on the same uniform
    draws), stopping early at an end-of-text token."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.jit = bool(getattr(task, "jit_compile", False))
        self._prefill = tf.function(self._prefill_graph, jit_compile=self.jit,
                                    reduce_retracing=True)
        # one concrete function per (sampler settings, stop tokens, cache shape), called
        # directly: cheaper than tf.function's argument dispatch
        self._runs: dict[tuple[Any, ...], Any] = {}
        self.chunks, self.chunk = CHUNKS, CHUNK
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
        """Fill the cache with the prompt (`total`: prompt plus the tokens to come); the
        logits of the token after it."""
        padded = np.zeros((1, total), np.int32)
        padded[0, :len(ids)] = ids
        logits, self.cache = self._prefill(tf.constant(padded), tf.constant(len(ids)))
        self.index, self.total = len(ids), total
        return logits.numpy()[0]

    def run(self, token: int, count: int, sampler: Sampler, stops: set[int]) -> list[int]:
        """Place `token` at the next position and sample up to `count` tokens after it, in
        one TensorFlow call; the list ends early with a token of `stops`."""
        if self.index + count > self.total or count > self.chunk:
            raise ValueError("the cache is full or the chunk too long")
        uniforms = np.zeros(self.chunk, np.float64)
        uniforms[:count] = sampler.uniforms(count)
        args = (tf.constant(token, tf.int32), self.cache, tf.constant(self.index, tf.int32),
                tf.constant(uniforms), tf.constant(count, tf.int32))
        key = (*settings(sampler), tuple(sorted(stops)), tuple(self.cache.shape), self.chunk)
        if key not in self._runs:
            graph = tf.function(functools.partial(self._run_graph, graph_pick(sampler),
                                                  sorted(stops)), jit_compile=self.jit)
            self._runs[key] = graph.get_concrete_function(*args)
        tokens, done, self.cache = self._runs[key](*args)
        self.index += int(done)
        return [int(t) for t in tokens.numpy()[:int(done)]]

    def _run_graph(self, pick: Callable[[Any, Any], Any], stops: list[int], token: Any,
                   cache: Any, index: Any, uniforms: Any, count: Any) -> tuple[Any, Any, Any]:
        stop_ids = tf.constant(stops, tf.int32, shape=(len(stops),))

        def going(i: Any, token: Any, cache: Any, tokens: Any) -> Any:
            return tf.logical_and(i < count, tf.logical_not(tf.reduce_any(token == stop_ids)))

        def step(i: Any, token: Any, cache: Any, tokens: Any) -> tuple[Any, ...]:
            logits, cache = self._step_graph(tf.reshape(token, (1, 1)), cache, index + i)
            token = pick(logits[0], uniforms[i])
            return i + 1, token, cache, tf.tensor_scatter_nd_update(tokens, [[i]], [token])

        done, _, cache, tokens = tf.while_loop(
            going, step, (tf.constant(0), token, cache, tf.zeros(self.chunk, tf.int32)))
        return tokens, done, cache

    def chunk_sizes(self) -> Iterator[int]:
        """The tokens each call after the first produces: `chunks`, then `chunk` for ever."""
        yield from self.chunks
        while True:
            yield self.chunk

    def tokens(self, ids: list[int], length: int, sampler: Sampler,
               stops: set[int]) -> Iterator[int]:
        """Up to `length` token ids after the prompt `ids`, each as soon as its call ends;
        the sample ends before a token of `stops`."""
        pending = [sampler(self.start(ids, len(ids) + length))]
        done, sizes = 0, self.chunk_sizes()
        while True:
            for token in pending:
                if token in stops:
                    return
                yield token
                done += 1
            if done >= length:
                return
            pending = self.run(pending[-1], min(next(sizes), length - done), sampler, stops)


def settings(sampler: Sampler) -> tuple[Any, ...]:
    """What shapes the sampler's graph (its seed does not)."""
    return sampler.greedy, sampler.temperature, sampler.top_k, sampler.top_p


def graph_pick(sampler: Sampler) -> Callable[[Any, Any], Any]:
    """`pick(logits (V,), uniform) -> token id` in TensorFlow: `Sampler.__call__`'s arithmetic
    (float64: temperature, top-k, softmax, top-p, then the cumulative distribution searched
    for the uniform draw, as NumPy's `choice` does). It picks the token NumPy picks from the
    same draw, unless the draw falls within rounding error (~1e-16) of the boundary between
    two tokens' cumulative probabilities (TensorFlow's exp and sums may round differently)."""
    if sampler.greedy:
        return lambda logits, uniform: tf.argmax(logits, output_type=tf.int32)
    temperature, top_k, top_p = sampler.temperature, sampler.top_k, sampler.top_p

    def pick(logits: Any, uniform: Any) -> Any:
        scores = tf.cast(logits, tf.float64) / temperature
        size = tf.shape(scores)[0]
        if top_k is not None:
            cutoff = tf.math.top_k(scores, tf.minimum(top_k, size)).values[-1]
            scores = tf.where(scores < cutoff, tf.constant(-np.inf, tf.float64), scores)
        probs = tf.exp(scores - tf.reduce_max(scores))
        probs = probs / tf.reduce_sum(probs)
        if top_p is not None and top_p < 1:
            order = tf.argsort(-probs, stable=True)
            ranked = tf.gather(probs, order)
            before = tf.cumsum(ranked) - ranked  # the mass of the likelier tokens
            kept = tf.scatter_nd(order[:, None], tf.where(before < top_p, ranked,
                                                          tf.zeros_like(ranked)), [size])
            probs = kept / tf.reduce_sum(kept)
        cdf = tf.cumsum(probs)
        cdf = cdf / cdf[-1]
        # searchsorted(cdf, uniform, side="right") of a non-decreasing cdf, in ops XLA has
        return tf.reduce_sum(tf.cast(cdf <= uniform, tf.int32))

    return pick


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


def token_bytes(tokenizer: Any) -> list[bytes] | None:
    """Each token id's bytes, for a byte-level BPE tokenizer (None for other tokenizers). Read
    from its vocabulary in one pass: asking `id_to_token` 50,257 times took 0.1-0.4 s, which
    every sample used to pay (a few % of 50 GPT-2 base tokens on a CPU)."""
    from keras_hub.tokenizers import BytePairTokenizer

    if not isinstance(tokenizer, BytePairTokenizer):
        return None
    table, size = byte_table(), tokenizer.vocabulary_size()
    vocabulary = getattr(tokenizer, "vocabulary", None)
    ids = {int(i): token for token, i in vocabulary.items()} if isinstance(vocabulary, dict) \
        else {}
    if sorted(ids) != list(range(size)):  # not a plain id map: ask the tokenizer
        ids = {i: tokenizer.id_to_token(i) for i in range(size)}
    return [_token_bytes(ids[i], table) for i in range(size)]


def _token_bytes(token: str, table: dict[str, int]) -> bytes:
    if all(ch in table for ch in token):
        return bytes(table[ch] for ch in token)
    return token.encode("utf-8")  # a special token such as <|endoftext|>


class TextPieces:
    """`pieces(token) -> str`: the text that token completes; `flush()` at the end. `table`:
    `token_bytes(tokenizer)`, when the caller keeps it from sample to sample."""

    def __init__(self, tokenizer: Any, table: list[bytes] | None = None) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = 0
        self.bytes = table if table is not None else token_bytes(tokenizer)
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

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
