"""`dlkit generate-text --model PRESET`: stream text from a pretrained keras-hub CausalLM.

The model is a preset name, a `kaggle://`/`hf://` handle, a preset folder, or a model folder
written by `train-text --from-preset` (see `dlkit.core.hub`). Each sample is the prompt
followed by up to `--length` generated tokens (sub-words), ending early at the model's
end-of-text token; text is written as each token is produced, never splitting a character.
The prompt plus `--length` must fit the model's context (1,024 tokens for GPT-2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dlkit.core.errors import UsageError
from dlkit.core.sampling import Sampler


class PretrainedGenerator:
    """`prepare(prompt, length)` once, then `sample(sampler)` per sample: text pieces."""

    unit = "tokens"

    def __init__(self, task: Any, name: str) -> None:
        from dlkit.text.pretrained_decoding import CachedDecoder, context_length, stop_ids

        self.task, self.name = task, name
        self.arch = type(task).__name__
        self.engine = "TensorFlow"
        self.decoder = CachedDecoder(task)
        self.stops = stop_ids(task)
        self.context = context_length(task)
        self.ids: list[int] = []
        self.length = 0
        self.tokens = 0  # generated so far, over all samples
        self.unknown: list[str] = []  # a tokenizer has no unknown characters
        self.table: list[bytes] | None = None  # each token's bytes (byte-level BPE), made once

    def prepare(self, prompt: str, length: int) -> None:
        """Tokenize the prompt; exit 2 when it is empty and the model has no start token, or
        when prompt plus `length` overflow the context (before tokenizing, when the prompt
        has more characters than the context's tokens can stand for: a tokenizer handed
        hundreds of megabytes aborts the process)."""
        from dlkit.text.pretrained_decoding import longest_token, prompt_ids

        if self.context is not None:
            most = self.context * longest_token(self.task)
            if len(prompt) > most:
                raise UsageError(f"the prompt is {len(prompt):,} characters, more than "
                                 f"{self.name}'s context of {self.context} tokens can hold "
                                 f"(at most {most:,} characters); shorten the prompt")
        self.ids, self.length = prompt_ids(self.task, prompt), length
        if not self.ids:
            raise UsageError(f"{self.name} needs a prompt (it has no start token); give "
                             "--prompt TEXT")
        total = len(self.ids) + length
        if self.context is not None and total > self.context:
            raise UsageError(f"the prompt ({len(self.ids)} tokens) plus --length {length} is "
                             f"{total} tokens, more than {self.name}'s context of "
                             f"{self.context}; shorten the prompt or lower --length to at "
                             f"most {max(self.context - len(self.ids), 0)}")

    def sample(self, sampler: Sampler) -> Iterator[str]:
        """The generated text, one piece per token, until `length` tokens or end of text."""
        from dlkit.text.pretrained_decoding import TextPieces, token_bytes, tokenizer_of

        if self.table is None:
            self.table = token_bytes(tokenizer_of(self.task))
        pieces = TextPieces(tokenizer_of(self.task), self.table)
        for token in self.decoder.tokens(self.ids, self.length, sampler, self.stops):
            self.tokens += 1
            piece = pieces(token)
            if piece:
                yield piece
        tail = pieces.flush()
        if tail:
            yield tail


def open_pretrained(spec: str) -> PretrainedGenerator:
    """The generator of a preset (name, handle or folder), loaded with keras-hub."""
    from dlkit.core.console import info
    from dlkit.core.hub import load_task, resolve

    preset = resolve(spec, "CausalLM")
    task = load_task(preset, "CausalLM")
    info(f"loaded {spec} ({type(task).__name__}, {task.count_params():,} parameters) from "
         f"{preset.source}")
    return PretrainedGenerator(task, spec)
