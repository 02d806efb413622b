"""Choosing the next token from a language model's logits: greedy, or seeded sampling with a
temperature and optional top-k / top-p (nucleus) filters. NumPy only; shared by every generator
(dlkit's character models and keras-hub's pretrained ones), so the same options mean the same
thing everywhere and the same seed gives the same text in any process."""

from __future__ import annotations

import numpy as np

from dlkit.core.config import SamplerKind

DEFAULT_TOP_K = 40
DEFAULT_TOP_P = 0.9


class Sampler:
    """`sampler(logits) -> token id`. Filters apply in order: temperature, top-k, top-p."""

    def __init__(self, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, greedy: bool = False) -> None:
        self.temperature, self.top_k, self.top_p, self.greedy = temperature, top_k, top_p, greedy
        self.rng = np.random.default_rng(seed)

    @classmethod
    def choose(cls, kind: SamplerKind, temperature: float, top_k: int | None,
               top_p: float | None, seed: int) -> Sampler:
        """The sampler `--sampler` names: top-k and top-p use their option's value (default
        40 and 0.9); `--top-k` or `--top-p` given alone apply with any sampler but greedy."""
        if kind == SamplerKind.top_k and top_k is None:
            top_k = DEFAULT_TOP_K
        if kind == SamplerKind.top_p and top_p is None:
            top_p = DEFAULT_TOP_P
        return cls(temperature, top_k, top_p, seed, greedy=kind == SamplerKind.greedy)

    def uniforms(self, count: int) -> np.ndarray:
        """The uniform draws in [0, 1) that the next `count` calls would make, taken from the
        generator (zeros for greedy, which draws nothing). A call draws exactly one:
        `rng.choice(n, p=probs)` is `searchsorted(cumsum(probs) / total, rng.random(),
        side="right")`, so a sampler running elsewhere (dlkit.text.pretrained_decoding samples
        inside the TensorFlow graph) makes the same choices from these draws."""
        if self.greedy:
            return np.zeros(count, np.float64)
        return self.rng.random(count)

    def __call__(self, logits: np.ndarray) -> int:
        scores = np.asarray(logits, np.float64).reshape(-1)
        if self.greedy:
            return int(np.argmax(scores))
        scores = scores / self.temperature
        if self.top_k is not None and self.top_k < len(scores):
            cutoff = np.partition(scores, -self.top_k)[-self.top_k]
            scores = np.where(scores < cutoff, -np.inf, scores)
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        if self.top_p is not None and self.top_p < 1:
            order = np.argsort(-probs, kind="stable")
            before = np.cumsum(probs[order]) - probs[order]  # mass of the likelier tokens
            keep = order[before < self.top_p]  # the smallest set reaching top_p (never empty)
            kept = np.zeros_like(probs)
            kept[keep] = probs[keep]
            probs = kept / kept.sum()
        return int(self.rng.choice(len(probs), p=probs))
