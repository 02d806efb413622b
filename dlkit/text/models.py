"""Character-level language models and their incremental decoders.

Two families, both mapping a batch of character ids (B, T) to next-character logits (B, T, V):

- `build_rnn`: embedding, stacked LSTM or GRU layers, a dense head (char-rnn);
- `build_transformer`: a small GPT-style decoder (nanoGPT's model.py): token + learned position
  embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final LayerNorm.

Both are functional models of stock Keras layers and operations, so plain Keras loads their
`model.keras` without dlkit.

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

from dlkit.text.gru import TrainingGRU


def _init() -> keras.initializers.Initializer:
    """GPT-2's N(0, 0.02) initializer: a new one for each weight (an initializer without a
    seed picks one when made, from the seeded global state, so it must be made after seeding,
    and one instance shared by several weights would give them all the same values)."""
    return keras.initializers.RandomNormal(stddev=0.02)


def build_transformer(vocab_size: int, seq_len: int, n_layers: int = 4, dim: int = 128,
                      heads: int = 4, dropout: float = 0.0) -> keras.Model:
    """A GPT-style causal decoder: ids (B, T <= seq_len) -> logits (B, T, vocab_size).

    Stock Keras layers and operations only (the positions are a cumulative sum of ones), so
    plain Keras loads the saved `model.keras`. Block i's layers are named `block_{i}_ln1`,
    `_attention`, `_ln2`, `_fc`, `_out`: the incremental decoder runs them one position at a
    time."""
    ids = keras.Input(shape=(None,), dtype="int32", name="chars")
    positions = keras.ops.cumsum(keras.ops.ones_like(ids), axis=1) - 1
    x = layers.Add(name="embed")([
        layers.Embedding(vocab_size, dim, embeddings_initializer=_init(), name="tokens")(ids),
        layers.Embedding(seq_len, dim, embeddings_initializer=_init(),
                         name="positions")(positions)])
    x = layers.Dropout(dropout, name="embed_dropout")(x)
    for i in range(n_layers):
        x = _block(x, f"block_{i}", dim, heads, dropout)
    x = layers.LayerNormalization(epsilon=1e-5, name="ln_f")(x)
    logits = layers.Dense(vocab_size, dtype="float32", kernel_initializer=_init(), name="head")(x)
    return keras.Model(ids, logits, name="char_transformer")


def _block(x: Any, name: str, dim: int, heads: int, dropout: float) -> Any:
    """A pre-norm transformer block: x + attention(ln(x)), then x + mlp(ln(x))."""
    if dim % heads:
        raise ValueError(f"width {dim} is not divisible by {heads} heads")
    h = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_ln1")(x)
    h = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout,
                                  kernel_initializer=_init(), name=f"{name}_attention")(
        h, h, use_causal_mask=True)
    x = layers.Add(name=f"{name}_attended")([x, layers.Dropout(dropout)(h)])
    h = layers.LayerNormalization(epsilon=1e-5, name=f"{name}_ln2")(x)
    h = layers.Dense(4 * dim, activation="gelu", kernel_initializer=_init(), name=f"{name}_fc")(h)
    h = layers.Dense(dim, kernel_initializer=_init(), name=f"{name}_out")(h)
    return layers.Add(name=f"{name}_mlp")([x, layers.Dropout(dropout)(h)])


def build_rnn(kind: str, vocab_size: int, units: int = 512, n_layers: int = 1,
              embed_dim: int = 64, dropout: float = 0.0) -> keras.Model:
    """char-rnn: ids (B, T) -> embedding -> LSTM/GRU layers -> logits (B, T, vocab_size).

    The GRU layers are `TrainingGRU`s, which train faster; `gru.with_stock_layers` makes the
    model that is saved."""
    cell = {"lstm": layers.LSTM, "gru": TrainingGRU}[kind]
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
      `{"logits": (1, V), "cache": (2 x blocks, 1, T, heads, head size)}`, the keys and values
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


class _BlockRunner:
    """Block `name` of a trained transformer run outside the functional graph, with the same
    layers and weights: over a whole window (returning its keys and values), or one new
    position against a fixed-size key/value cache (batch, T, heads, head size)."""

    def __init__(self, model: keras.Model, name: str) -> None:
        self.ln1, self.attention, self.ln2, self.fc, self.out = (
            model.get_layer(f"{name}_{part}") for part in ("ln1", "attention", "ln2", "fc", "out"))
        self.scale = float(self.attention.key_dim) ** -0.5

    def forward(self, x: Any) -> tuple[Any, Any, Any]:
        q, k, v = self._qkv(x)
        length = tf.shape(x)[1]
        causal = tf.linalg.band_part(tf.ones((length, length), tf.bool), -1, 0)
        return self._attend_then_mlp(x, q, k, v, causal), k, v

    def step(self, x: Any, k_cache: Any, v_cache: Any, position: Any) -> tuple[Any, Any, Any]:
        """x (B, 1, D): the block at `position`, its keys and values written into the caches."""
        q, k, v = self._qkv(x)
        size = tf.shape(k_cache)[1]
        at = tf.cast(tf.equal(tf.range(size), position), k_cache.dtype)[None, :, None, None]
        k_cache = k_cache * (1 - at) + k * at
        v_cache = v_cache * (1 - at) + v * at
        visible = (tf.range(size) <= position)[None, :]
        return self._attend_then_mlp(x, q, k_cache, v_cache, visible), k_cache, v_cache

    def _qkv(self, x: Any) -> tuple[Any, Any, Any]:
        h = self.ln1(x)
        attention = self.attention
        return attention.query_dense(h), attention.key_dense(h), attention.value_dense(h)

    def _attend_then_mlp(self, x: Any, q: Any, k: Any, v: Any, visible: Any) -> Any:
        scores = tf.einsum("bqhd,bkhd->bhqk", q * tf.cast(self.scale, q.dtype), k)
        scores = tf.where(visible, tf.cast(scores, tf.float32), -1e9)
        weights = tf.cast(tf.nn.softmax(scores, axis=-1), v.dtype)
        x = x + self.attention.output_dense(tf.einsum("bhqk,bkhd->bqhd", weights, v))
        return x + self.out(self.fc(self.ln2(x)))


def _transformer_functions(model: keras.Model) -> dict[str, Any]:
    tokens, positions = model.get_layer("tokens"), model.get_layer("positions")
    ln_f, head = model.get_layer("ln_f"), model.get_layer("head")
    blocks = [_BlockRunner(model, layer.name.removesuffix("_attention"))  # in model order
              for layer in model.layers
              if layer.name.startswith("block_") and layer.name.endswith("_attention")]
    size = int(positions.input_dim)
    attention = blocks[0].attention
    cache_shape = (2 * len(blocks), 1, size, attention.num_heads, attention.key_dim)

    def logits(x: Any) -> Any:
        return tf.cast(head(ln_f(x)), tf.float32)[:, 0]

    @tf.function(input_signature=[tf.TensorSpec((1, size), tf.int32, name="ids"),
                                  tf.TensorSpec((), tf.int32, name="length")])
    def prefill(ids: Any, length: Any) -> dict[str, Any]:
        x = tokens(ids) + positions(tf.range(size))[None]
        caches: list[Any] = []
        for block in blocks:
            x, k, v = block.forward(x)
            caches += [tf.cast(k, tf.float32), tf.cast(v, tf.float32)]
        last = tf.gather(x, length - 1, axis=1)[:, None]
        return {"logits": logits(last), "cache": tf.stack(caches)}

    @tf.function(input_signature=[tf.TensorSpec((1, 1), tf.int32, name="token"),
                                  tf.TensorSpec((), tf.int32, name="position"),
                                  tf.TensorSpec(cache_shape, tf.float32, name="cache")])
    def step(token: Any, position: Any, cache: Any) -> dict[str, Any]:
        x = tokens(token) + positions(position)[None, None]
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
