"""Character-level text corpora: read a file or stdin, check it is UTF-8 text, build the
vocabulary, split off the validation tail and cut `tf.data` windows for next-character training.

Any Unicode text works: the vocabulary is the sorted set of characters (code points) of the
corpus, so Chinese, Cyrillic or emoji corpora train the same way as English.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.errors import UsageError
from dlkit.core.files import TEXT_LIMIT, read_bytes, read_stdin

STDIN = "-"
_SNIFF_BYTES = 8192


@dataclass
class Corpus:
    """A decoded corpus, where it came from, and its character vocabulary."""

    text: str
    source: str
    vocab: list[str]
    files: tuple[Path, ...] = ()  # the file it was read from (none for stdin)

    @property
    def char_to_id(self) -> dict[str, int]:
        return {ch: i for i, ch in enumerate(self.vocab)}

    def encode(self, text: str) -> np.ndarray:
        """Character ids (int32) of `text`; every character must be in the vocabulary."""
        lookup = self.char_to_id
        return np.fromiter((lookup[ch] for ch in text), dtype=np.int32, count=len(text))


def read_corpus(path: str | Path | None, data_dir: Path | None = None,
                limit: int | None = None) -> Corpus:
    """Read a corpus from `path` (`-` for stdin; None for Tiny Shakespeare via the data lookup)."""
    if path is None:
        from dlkit.data.locate import locate
        from dlkit.data.registry import get_spec

        found = locate(get_spec("tinyshakespeare"), data_dir)
        path = found.files[0]
    raw, source = _read_bytes(path)
    text = decode_text(raw, source)
    if limit is not None:
        text = text[:limit]
    corpus = make_corpus(text, source)
    if str(path) != STDIN:
        corpus.files = (Path(path).expanduser(),)
    return corpus


def make_corpus(text: str, source: str) -> Corpus:
    """Check the text is long and varied enough to learn from; build its vocabulary."""
    if len(text) < 2:
        what = "empty" if not text else "only one character long"
        raise UsageError(f"corpus {source} is {what}; give a text file with at least a few "
                         "hundred characters (--corpus FILE)")
    vocab = sorted(set(text))
    if len(vocab) < 2:
        raise UsageError(f"corpus {source} repeats a single character {vocab[0]!r}; there is "
                         "nothing to learn, give real text (--corpus FILE)")
    return Corpus(text, source, vocab)


def _read_bytes(path: str | Path) -> tuple[bytes, str]:
    """The corpus's bytes (at most TEXT_LIMIT) and where they came from."""
    if str(path) == STDIN:
        return read_stdin("the corpus", TEXT_LIMIT, "give a smaller corpus"), "<stdin>"
    from dlkit.core.console import info

    file = Path(path).expanduser()
    data = read_bytes(file, "corpus", "give a text file (--corpus FILE, or --corpus - to read "
                      "stdin)", limit=TEXT_LIMIT)
    info(f"reading the corpus from {file}")
    return data, str(file)


def decode_text(raw: bytes, source: str) -> str:
    """UTF-8 text (a leading BOM dropped, CRLF turned into LF); binary data is an error."""
    if b"\x00" in raw[:_SNIFF_BYTES]:
        raise UsageError(f"corpus {source} looks binary (it contains NUL bytes); give a UTF-8 "
                         "text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"corpus {source} is not UTF-8 text (invalid byte at offset "
                         f"{exc.start}); convert it with `iconv -t UTF-8` or give a text "
                         "file") from None
    return text.replace("\r\n", "\n")


def split_ids(ids: np.ndarray, val_split: float) -> tuple[np.ndarray, np.ndarray]:
    """The first (1 - val_split) of the ids for training, the last val_split for validation."""
    n_val = int(len(ids) * val_split)
    if val_split > 0 and n_val < 2:
        return ids, ids[:0]
    return ids[:len(ids) - n_val], ids[len(ids) - n_val:]


def train_windows(ids: np.ndarray, seq_len: int, batch_size: int, seed: int, steps: int,
                  epochs: int, first_epoch: int = 0) -> Any:
    """`steps` batches of (input, target) windows at random offsets per epoch, for epochs
    `first_epoch`..`epochs - 1`, as one seeded `tf.data` stream.

    Each window is `seq_len` characters and its target the same window shifted by one; offsets
    are drawn uniformly (nanoGPT's sampling), so every epoch sees different cuts of the text.
    Each epoch's offsets come from a stateless random op keyed by (seed, epoch): the same in
    every run with that seed, so a run resumed at epoch k sees exactly the windows an
    uninterrupted run saw from epoch k on. Fit it with `steps_per_epoch=steps`.
    """
    import tensorflow as tf

    data = tf.constant(ids, tf.int32)
    starts = len(ids) - seq_len  # windows need seq_len + 1 characters

    def one_epoch(epoch: Any) -> Any:
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        offsets = tf.random.stateless_uniform([steps, batch_size], seed=key, minval=0,
                                              maxval=starts, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices(offsets)

    ds = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    ds = ds.map(lambda s: _gather(data, s, seq_len), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_windows(ids: np.ndarray, seq_len: int, batch_size: int) -> Any:
    """Consecutive non-overlapping windows covering `ids` once (validation), batched."""
    import tensorflow as tf

    count = (len(ids) - 1) // seq_len
    data = tf.constant(ids, tf.int32)
    ds = tf.data.Dataset.range(count).map(lambda i: i * seq_len)
    ds = ds.batch(batch_size).map(lambda s: _gather(data, s, seq_len))
    return ds.cache().prefetch(tf.data.AUTOTUNE)


def _gather(data: Any, starts: Any, seq_len: int) -> tuple[Any, Any]:
    import tensorflow as tf

    index = tf.cast(starts, tf.int32)[:, None] + tf.range(seq_len + 1)[None, :]
    windows = tf.gather(data, index)
    return windows[:, :-1], windows[:, 1:]
