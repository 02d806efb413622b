"""Character-level language models and their incremental decoders.

Two families, both mapping a batch of character ids (B, T) to next-character logits (B, T, V):

- `build_rnn`: embedding, stacked LSTM or GRU layers, a dense head (char-rnn);
- `build_transformer`: a small GPT-style decoder (nanoGPT's model.py): token + learned position
  embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final LayerNorm.

Generation never re-runs the whole window per character: `decoding_functions` gives the
one-character step with fixed shapes (each LSTM/GRU layer's state carried through the trained
cells; a fixed-size key/value cache per transformer block with a position index), so it traces
once, and converts to `decoder.tflite` for LiteRT. `dlkit.text.decoding` drives it from
Python on either backend.

Imports Keras and TensorFlow at module level: import it inside command bodies only.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import layers


def _init() -> keras.initializers.Initializer:
    """GPT-2's N(0, 0.02) initializer: a new one for each weight (an initializer without a
    seed picks one when made, from the seeded global state, so it must be made after seeding,
    and one instance shared by several weights would give them all the same values)."""
    return keras.initializers.RandomNormal(stddev=0.02)


@keras.saving.register_keras_serializable(package="dlkit")
class TokenPositionEmbedding(layers.Layer):
    """Token embedding plus a learned embedding of the position in the window."""

    def __init__(self, vocab_size: int, max_len: int, dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocab_size, self.max_len, self.dim = vocab_size, max_len, dim

    def build(self, input_shape: Any = None) -> None:
        self.tokens = self.add_weight(shape=(self.vocab_size, self.dim), initializer=_init(),
                                      name="tokens")
        self.positions = self.add_weight(shape=(self.max_len, self.dim), initializer=_init(),
                                         name="positions")

    def call(self, ids: Any) -> Any:
        length = tf.shape(ids)[1]
        x = tf.gather(self.tokens, ids) + self.positions[None, :length]
        return tf.cast(x, self.compute_dtype)

    def embed_at(self, ids: Any, position: Any) -> Any:
        """Embeddings of ids (B, 1) at one window position (scalar)."""
        x = tf.gather(self.tokens, ids) + tf.gather(self.positions, position)[None, None]
        return tf.cast(x, self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "max_len": self.max_len, "dim": self.dim}


@keras.saving.register_keras_serializable(package="dlkit")
class Block(layers.Layer):
    """A pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.dim, self.heads, self.dropout = dim, heads, dropout
        self.head_dim = dim // heads
        self.ln1 = layers.LayerNormalization(epsilon=1e-5, name="ln1")
        self.qkv = layers.Dense(3 * dim, kernel_initializer=_init(), name="qkv")
        self.proj = layers.Dense(dim, kernel_initializer=_init(), name="proj")
        self.ln2 = layers.LayerNormalization(epsilon=1e-5, name="ln2")
        self.fc = layers.Dense(4 * dim, activation="gelu", kernel_initializer=_init(), name="fc")
        self.out = layers.Dense(dim, kernel_initializer=_init(), name="out")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape: Any) -> None:
        shape = (None, None, self.dim)
        self.ln1.build(shape)
        self.qkv.build(shape)
        self.proj.build(shape)
        self.ln2.build(shape)
        self.fc.build(shape)
        self.out.build((None, None, 4 * self.dim))

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.forward(x, training)[0]

    def forward(self, x: Any, training: bool | None = None) -> tuple[Any, Any, Any]:
        """The block over a whole window; also returns its keys and values (B, H, T, hd)."""
        q, k, v = self._qkv(self.ln1(x))
        length = tf.shape(x)[1]
        causal = tf.linalg.band_part(tf.ones((length, length), tf.bool), -1, 0)
        x = x + self.drop(self.proj(self._attend(q, k, v, causal, training)), training=training)
        x = x + self.drop(self.out(self.fc(self.ln2(x))), training=training)
        return x, k, v

    def step(self, x: Any, k_cache: Any, v_cache: Any, position: Any) -> tuple[Any, Any, Any]:
        """One new position: x (B, 1, D); caches (B, H, T_max, hd) updated at `position`."""
        q, k, v = self._qkv(self.ln1(x))
        size = tf.shape(k_cache)[2]
        at = tf.cast(tf.equal(tf.range(size), position), k_cache.dtype)[None, None, :, None]
        k_cache = k_cache * (1 - at) + k * at
        v_cache = v_cache * (1 - at) + v * at
        visible = (tf.range(size) <= position)[None, :]
        x = x + self.proj(self._attend(q, k_cache, v_cache, visible, False))
        x = x + self.out(self.fc(self.ln2(x)))
        return x, k_cache, v_cache

    def _qkv(self, h: Any) -> tuple[Any, Any, Any]:
        batch, length = tf.shape(h)[0], tf.shape(h)[1]
        qkv = tf.reshape(self.qkv(h), (batch, length, 3, self.heads, self.head_dim))
        qkv = tf.transpose(qkv, (2, 0, 3, 1, 4))  # (3, B, H, T, hd)
        return qkv[0], qkv[1], qkv[2]

    def _attend(self, q: Any, k: Any, v: Any, mask: Any, training: bool | None) -> Any:
        scores = tf.matmul(q, k, transpose_b=True) * (self.head_dim ** -0.5)
        scores = tf.where(mask, tf.cast(scores, tf.float32), -1e9)
        weights = tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype)
        weights = self.drop(weights, training=training)
        y = tf.transpose(tf.matmul(weights, v), (0, 2, 1, 3))  # (B, T, H, hd)
        return tf.reshape(y, (tf.shape(y)[0], tf.shape(y)[1], self.dim))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "dropout": self.dropout}


def build_transformer(vocab_size: int, seq_len: int, n_layers: int = 4, dim: int = 128,
                      heads: int = 4, dropout: float = 0.0) -> keras.Model:
    """A GPT-style causal decoder: ids (B, T <= seq_len) -> logits (B, T, vocab_size)."""
    ids = keras.Input(shape=(None,), dtype="int32", name="chars")
    x = TokenPositionEmbedding(vocab_size, seq_len, dim, name="embed")(ids)
    x = layers.Dropout(dropout, name="embed_dropout")(x)
    for i in range(n_layers):
        x = Block(dim, heads, dropout, name=f"block_{i}")(x)
    x = layers.LayerNormalization(epsilon=1e-5, name="ln_f")(x)
    logits = layers.Dense(vocab_size, dtype="float32", kernel_initializer=_init(), name="head")(x)
    return keras.Model(ids, logits, name="char_transformer")


def build_rnn(kind: str, vocab_size: int, units: int = 512, n_layers: int = 1,
              embed_dim: int = 64, dropout: float = 0.0) -> keras.Model:
    """char-rnn: ids (B, T) -> embedding -> LSTM/GRU layers -> logits (B, T, vocab_size)."""
    cell = {"lstm": layers.LSTM, "gru": layers.GRU}[kind]
    ids = keras.Input(shape=(None,), dtype="int32", name="chars")
    x = layers.Embedding(vocab_size, embed_dim, name="embed")(ids)
    for i in range(n_layers):
        x = cell(units, return_sequences=True, name=f"rnn_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    logits = layers.Dense(vocab_size, dtype="float32", name="head")(x)
    return keras.Model(ids, logits, name=f"char_{kind}")


def build(arch: str, vocab_size: int, seq_len: int, n_layers: int, dim: int, heads: int,
          dropout: float) -> keras.Model:
    """The model for `--arch` (a `TextArch` value); `dim` is the transformer width or the RNN
    units."""
    if arch == "transformer":
        return build_transformer(vocab_size, seq_len, n_layers, dim, heads, dropout)
    return build_rnn(arch, vocab_size, dim, n_layers, min(dim, 128), dropout)


def decoding_functions(arch: str, model: keras.Model) -> dict[str, Any]:
    """The one-character decoding step of a trained model as `tf.function`s with fixed shapes:
    what TensorFlow runs and what `decoder.tflite` holds (see `dlkit.text.decoding`).

    - LSTM/GRU: `step(token (1,), state (1, S))`, S the sizes of every layer's states
      concatenated, gives `{"logits": (1, V), "state": (1, S)}`.
    - Transformer: `prefill(ids (1, T), length ())` runs the window (padded to T, the training
      length) and `step(token (1, 1), position (), cache)` one new position; both give
      `{"logits": (1, V), "cache": (2 x blocks, 1, heads, T, head size)}`, the keys and values
      of every block stacked.
    """
    if arch == "transformer":
        return _transformer_functions(model)
    return _rnn_functions(model)


def _rnn_functions(model: keras.Model) -> dict[str, Any]:
    embed, head = model.get_layer("embed"), model.get_layer("head")
    cells = [layer.cell for layer in model.layers if layer.name.startswith("rnn_")]
    sizes = [[int(n) for n in _state_sizes(cell)] for cell in cells]
    total = sum(sum(s) for s in sizes)

    @tf.function(input_signature=[tf.TensorSpec((1,), tf.int32, name="token"),
                                  tf.TensorSpec((1, total), tf.float32, name="state")])
    def step(token: Any, state: Any) -> dict[str, Any]:
        x = tf.cast(embed(token), tf.float32)
        parts = tf.split(state, [n for cell in sizes for n in cell], axis=1)
        new_state: list[Any] = []
        for cell, cell_sizes in zip(cells, sizes, strict=True):
            states, parts = parts[:len(cell_sizes)], parts[len(cell_sizes):]
            x, updated = cell(x, states if len(states) > 1 else states[0], training=False)
            updated = updated if isinstance(updated, (list, tuple)) else [updated]
            new_state.extend(tf.cast(u, tf.float32) for u in updated)
        return {"logits": tf.cast(head(x), tf.float32), "state": tf.concat(new_state, axis=1)}

    return {"step": step}


def _state_sizes(cell: Any) -> list[int]:
    size = cell.state_size
    return list(size) if isinstance(size, (list, tuple)) else [size]


def _transformer_functions(model: keras.Model) -> dict[str, Any]:
    embed, ln_f, head = model.get_layer("embed"), model.get_layer("ln_f"), model.get_layer("head")
    blocks = [layer for layer in model.layers if layer.name.startswith("block_")]
    size = int(embed.max_len)
    first = blocks[0]
    cache_shape = (2 * len(blocks), 1, first.heads, size, first.head_dim)

    def logits(x: Any) -> Any:
        return tf.cast(head(ln_f(x)), tf.float32)[:, 0]

    @tf.function(input_signature=[tf.TensorSpec((1, size), tf.int32, name="ids"),
                                  tf.TensorSpec((), tf.int32, name="length")])
    def prefill(ids: Any, length: Any) -> dict[str, Any]:
        x = embed(ids)
        caches: list[Any] = []
        for block in blocks:
            x, k, v = block.forward(x, training=False)
            caches += [tf.cast(k, tf.float32), tf.cast(v, tf.float32)]
        last = tf.gather(x, length - 1, axis=1)[:, None]
        return {"logits": logits(last), "cache": tf.stack(caches)}

    @tf.function(input_signature=[tf.TensorSpec((1, 1), tf.int32, name="token"),
                                  tf.TensorSpec((), tf.int32, name="position"),
                                  tf.TensorSpec(cache_shape, tf.float32, name="cache")])
    def step(token: Any, position: Any, cache: Any) -> dict[str, Any]:
        x = embed.embed_at(token, position)
        new: list[Any] = []
        for i, block in enumerate(blocks):
            x, k, v = block.step(x, tf.cast(cache[2 * i], x.dtype),
                                 tf.cast(cache[2 * i + 1], x.dtype), position)
            new += [tf.cast(k, tf.float32), tf.cast(v, tf.float32)]
        return {"logits": logits(x), "cache": tf.stack(new)}

    return {"prefill": prefill, "step": step}


def decoder(arch: str, model: keras.Model) -> Any:
    """The incremental decoder of a trained model, run by TensorFlow."""
    from dlkit.text.decoding import Decoder

    functions = decoding_functions(arch, model)

    def run(key: str, **inputs: Any) -> dict[str, Any]:
        return functions[key](**inputs)

    return Decoder(run, _signature_shapes(functions))


def _signature_shapes(functions: dict[str, Any]) -> dict[str, dict[str, tuple[int, ...]]]:
    return {key: {spec.name: tuple(spec.shape) for spec in function.input_signature}
            for key, function in functions.items()}
