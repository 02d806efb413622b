"""Text classifiers for `train-text-classifier`: raw strings in, class probabilities out.

A `keras.layers.TextVectorization` layer (adapted on the training texts) is the model's first
layer, so the saved model and the exported SavedModel take a batch of raw strings. Three bodies:
`bow` is a linear classifier of the text's tf-idf vector (unit length, dropout 0.5: on a few
hundred short texts it beats the sequence models, as tf-idf + logistic regression does; its
linear layer starts at that logistic regression, see `dlkit.text_classifier.linear`);
`bilstm` is the seed's (Embedding 128, bidirectional LSTM 64, average pooling, softmax);
`transformer` is one small encoder block over token + position embeddings.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def positions(tokens: Any) -> Any:
    """Each token's position, 0, 1, ... (batch, time), as Keras operations (nodes of the
    functional model: stock Keras, no custom layer)."""
    return keras.ops.cumsum(keras.ops.ones_like(tokens), axis=1) - 1


def padding_mask(tokens: Any) -> Any:
    """(batch, time, time): query and key both real tokens (not padding, id 0), for attention.
    Keras operations, as `positions` (the embedding's own mask does not survive adding the
    positions, which have none)."""
    real = keras.ops.not_equal(tokens, 0)
    return keras.ops.logical_and(keras.ops.expand_dims(real, 2), keras.ops.expand_dims(real, 1))


def masked_average(x: Any, tokens: Any) -> Any:
    """The average of x (batch, time, dim) over the steps whose token is not padding (id 0);
    zeros (not NaN) for a text with no known word. Keras operations, as `positions`."""
    weights = keras.ops.cast(keras.ops.expand_dims(keras.ops.not_equal(tokens, 0), -1),
                             x.dtype)
    total = keras.ops.sum(x * weights, axis=1)
    return total / keras.ops.maximum(keras.ops.sum(weights, axis=1), 1.0)


def vectorizer(texts: list[str], vocab_size: int, seq_len: int,
               bag: bool = False) -> keras.layers.Layer:
    """Lower-case, strip punctuation, split on whitespace; adapted on `texts`. Token ids cut or
    padded to `seq_len`, or with `bag` one tf-idf vector per text (every word of the
    vocabulary counts; words outside it do not, see `ignore_unknown_words`)."""
    layer = keras.layers.TextVectorization(
        max_tokens=vocab_size, name="vectorize",
        **({"output_mode": "tf_idf"} if bag else {"output_sequence_length": seq_len}))
    layer.adapt(texts, batch_size=1024)
    if bag:
        ignore_unknown_words(layer)
    return layer


def ignore_unknown_words(layer: keras.layers.TextVectorization) -> None:
    """Give the out-of-vocabulary slot of an adapted tf-idf vectorizer the weight 0.

    Keras gives it the average idf, so that in a new text every unknown word counts like a
    known one: "what a wonderful film" (three words unseen in training) becomes mostly
    "unknown" once the vector has unit length, and the one word that carries evidence is
    diluted. With weight 0 unknown words are left out, as scikit-learn's TfidfVectorizer
    leaves them out. The weights are the layer's own variables (saved with the model)."""
    store: dict[str, Any] = {}
    layer.save_own_variables(store)
    weights = np.array(store["idf_weights"], copy=True)
    weights[0] = 0.0  # index 0 is "[UNK]" (tf-idf mode has no padding token)
    layer.load_own_variables({"idf_weights": weights})


def build(arch: str, vectorize: keras.layers.Layer, num_classes: int,
          dropout: float = 0.2) -> keras.Model:
    """(batch,) strings -> (batch, num_classes) probabilities."""
    inputs = keras.Input(shape=(), dtype="string", name="text")
    tokens = vectorize(inputs)
    vocab = vectorize.vocabulary_size()
    seq_len = vectorize.get_config()["output_sequence_length"]
    if arch == "bow":
        x = keras.layers.UnitNormalization(name="unit_length")(tokens)
        dropout = 0.5
    elif arch == "bilstm":
        x = keras.layers.Embedding(vocab, 128, mask_zero=True, name="embedding")(tokens)
        x = keras.layers.Bidirectional(keras.layers.LSTM(64, return_sequences=True),
                                       name="bilstm")(x)
        x = masked_average(x, tokens)
    else:
        dim = 128
        x = keras.layers.Embedding(vocab, dim, mask_zero=True, name="embedding")(tokens)
        x = keras.layers.Add(name="with_positions")(
            [x, keras.layers.Embedding(seq_len, dim, name="positions")(positions(tokens))])
        attended = keras.layers.MultiHeadAttention(4, dim // 4, dropout=dropout)(
            x, x, attention_mask=padding_mask(tokens))
        x = keras.layers.LayerNormalization()(keras.layers.Add()([x, attended]))
        ff = keras.layers.Dense(2 * dim, activation="gelu")(x)
        ff = keras.layers.Dense(dim)(ff)
        ff = keras.layers.Dropout(dropout)(ff)
        x = keras.layers.LayerNormalization()(keras.layers.Add()([x, ff]))
        x = masked_average(x, tokens)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"text_{arch}")
