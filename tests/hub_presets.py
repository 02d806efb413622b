"""Tiny keras-hub presets the tests (and benchmarks) build themselves: real weights cannot be
downloaded here. A GPT-2 CausalLM with a byte-level BPE vocabulary learnt from a few sentences,
ResNet and MobileNet ImageClassifiers, each saved with `save_to_preset` in about a second, and a
kagglehub-style cache to plant them in."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TEXT = ("the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs on. "
        "héllo wörld, ünïcode — ça va? 東京 and naïve café text. ") * 4
END = "<|endoftext|>"


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte value (its byte-level BPE alphabet)."""
    from dlkit.text.pretrained_decoding import byte_table

    symbols = {byte: symbol for symbol, byte in byte_table().items()}
    return [symbols[b] for b in range(256)]


def bpe_vocabulary(text: str = TEXT, merges: int = 60,
                   extra_tokens: int = 0) -> tuple[dict[str, int], list[str]]:
    """A byte-level BPE (vocabulary, merges) learnt from `text`; `extra_tokens` pads the
    vocabulary with unused entries (to reach a real model's vocabulary size)."""
    alphabet = byte_symbols()
    words = Counter()
    for i, word in enumerate(text.split(" ")):
        raw = ((" " if i else "") + word).encode("utf-8")
        words[tuple(alphabet[b] for b in raw)] += 1
    learnt: list[str] = []
    for _ in range(merges):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        (a, b), _ = pairs.most_common(1)[0]
        learnt.append(f"{a} {b}")
        merged = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    tokens = [*alphabet, *(m.replace(" ", "") for m in learnt)]
    tokens += [f"<unused{i}>" for i in range(extra_tokens)]
    vocab = {}
    for token in [*tokens, END]:
        vocab.setdefault(token, len(vocab))
    return vocab, learnt


def gpt2_task(layers: int = 2, dim: int = 32, heads: int = 2, context: int = 128,
              seed: int = 0, extra_tokens: int = 0, intermediate: int | None = None):
    """A randomly initialised GPT-2 CausalLM with its tokenizer and preprocessor."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    vocab, merges = bpe_vocabulary(extra_tokens=extra_tokens)
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocab, merges=merges)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=context)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=len(vocab), num_layers=layers, num_heads=heads, hidden_dim=dim,
        intermediate_dim=intermediate or 4 * dim, max_sequence_length=context)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def save_gpt2_preset(folder: Path, **kwargs) -> Path:
    """`gpt2_task(**kwargs)` saved with `save_to_preset` into `folder`."""
    gpt2_task(**kwargs).save_to_preset(str(folder))
    return folder


def plant_in_cache(preset: Path, cache: Path, handle: str) -> Path:
    """Copy a preset folder into a kagglehub cache as `kagglehub.model_download(handle)`
    leaves it (`models/OWNER/MODEL/FRAMEWORK/VARIATION/VERSION/` and its `.complete`
    markers); returns the version folder."""
    import shutil

    owner, model, framework, variation, version = handle.removeprefix("kaggle://").split("/")
    base = cache / "models" / owner / model / framework / variation
    target = base / version
    shutil.copytree(preset, target)
    for file in target.rglob("*"):
        if file.is_file():
            marker = base / ".complete" / version / f"{file.relative_to(target)}.complete"
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    return target


def gpt2_without_start_token(folder: Path) -> Path:
    """A tiny GPT-2 whose preprocessor adds no start token (an empty prompt gives it nothing
    to start from)."""
    task = gpt2_task()
    task.preprocessor.add_start_token = False
    task.save_to_preset(str(folder))
    return folder


def save_resnet_preset(folder: Path, classes: int = 3, size: int = 32) -> Path:
    """A tiny ResNet ImageClassifier preset (155k parameters, 0.7 MB)."""
    resnet_task(classes, size).save_to_preset(str(folder))
    return folder


def resnet_task(classes: int, size: int = 32, filters: tuple[int, ...] = (64, 64),
                seed: int = 0):
    """A randomly initialised ResNet ImageClassifier taking `size` x `size` images."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3],
        stackwise_num_filters=list(filters), stackwise_num_blocks=[1] * len(filters),
        stackwise_num_strides=[1] + [2] * (len(filters) - 1), block_type="basic_block",
        image_shape=(size, size, 3))
    converter = keras_hub.layers.ResNetImageConverter(image_size=(size, size), scale=1 / 255)
    preprocessor = keras_hub.models.ResNetImageClassifierPreprocessor(converter)
    return keras_hub.models.ResNetImageClassifier(backbone, classes, preprocessor=preprocessor)


def tiny_mobilenet_task(classes: int = 3, size: int = 32, seed: int = 0):
    """A randomly initialised two-stage MobileNetV3-style ImageClassifier (tens of thousands of
    parameters), for tests."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16], [24]], stackwise_num_blocks=[1, 1],
        stackwise_num_filters=[[8], [16]], stackwise_kernel_size=[[3], [3]],
        stackwise_num_strides=[[2], [2]], stackwise_se_ratio=[[None], [0.25]],
        stackwise_activation=[["relu"], ["hard_swish"]], stackwise_padding=[[1], [1]],
        output_num_filters=32, depthwise_filters=8, depthwise_stride=2,
        depthwise_residual=False, last_layer_filter=32, squeeze_and_excite=0.5,
        input_num_filters=8, image_shape=(size, size, 3))
    converter = keras_hub.layers.MobileNetImageConverter(image_size=(size, size), scale=1 / 255)
    preprocessor = keras_hub.models.MobileNetImageClassifierPreprocessor(converter)
    return keras_hub.models.MobileNetImageClassifier(backbone, classes,
                                                     preprocessor=preprocessor)


def save_mobilenet_preset(folder: Path, classes: int = 1000) -> Path:
    """A randomly initialised MobileNetV3-small-sized ImageClassifier (224 x 224 images, about
    a million parameters), saved with `save_to_preset`."""
    import keras_hub

    backbone = keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[40, 56], [64, 144, 144], [72, 72], [144, 288, 288]],
        stackwise_num_blocks=[2, 3, 2, 3],
        stackwise_num_filters=[[16, 16], [24, 24, 24], [24, 24], [48, 48, 48]],
        stackwise_kernel_size=[[3, 3], [5, 5, 5], [5, 5], [5, 5, 5]],
        stackwise_num_strides=[[2, 1], [2, 1, 1], [1, 1], [2, 1, 1]],
        stackwise_se_ratio=[[None, None], [0.25] * 3, [0.3, 0.3], [0.3, 0.25, 0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish"] * 3, ["hard_swish"] * 2,
                              ["hard_swish"] * 3],
        stackwise_padding=[[1, 1], [2, 2, 2], [2, 2], [2, 2, 2]],
        output_num_filters=288, depthwise_filters=8, depthwise_stride=2,
        depthwise_residual=False, last_layer_filter=288, squeeze_and_excite=0.5,
        input_num_filters=16, image_shape=(224, 224, 3))
    converter = keras_hub.layers.MobileNetImageConverter(
        image_size=(224, 224), scale=1 / 255)
    preprocessor = keras_hub.models.MobileNetImageClassifierPreprocessor(converter)
    task = keras_hub.models.MobileNetImageClassifier(backbone, classes,
                                                     preprocessor=preprocessor)
    task.save_to_preset(str(folder))
    return folder
