"""Numeric precision: which Keras dtype policy a run computes in, and the float32 copy of a model
that is saved and served.

Mixed precision keeps the weights in float32 and computes in a 16-bit type: float16 on a GPU,
bfloat16 on a CPU that computes it natively (x86 AVX512-BF16 or AMX, Arm BF16). On such a CPU
convolutions and matrix products run about twice as fast as in float32 (measured on this
project's 2-core AMD EPYC: a small CIFAR ConvNet 2.0-2.5x, a 512-unit GRU 2.0-2.3x), with the same
accuracy. Elsewhere bfloat16 is emulated and slower, so `auto` keeps float32 there.

Whatever a run computed in, what it saves computes in float32 (`as_float32`): the SavedModel,
`model.keras` and `model.tflite` give the same answers on every machine, and LiteRT takes them.

Imports Keras only inside functions.
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path
from typing import Any

X86_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@functools.cache
def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (Linux's /proc/cpuinfo flags)."""
    try:
        with open(Path("/proc/cpuinfo"), "rb") as f:
            text = f.read(4 << 20).decode("ascii", "replace")
    except OSError:
        return False
    words = set(text.split())
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in words
    return bool(X86_BF16_FLAGS & words)


def policy_name(precision: str, gpus: int, cpu_bfloat16: bool = True) -> str:
    """The Keras dtype policy for `--precision` (auto, float32 or mixed) on this machine.

    auto: mixed float16 on a GPU; mixed bfloat16 on a CPU that computes it natively, when the
    model family trains well in it (`cpu_bfloat16`); float32 otherwise. mixed: the 16-bit type
    of the device whatever it is (emulated bfloat16 is slow)."""
    if precision == "float32":
        return "float32"
    if gpus:
        return "mixed_float16"
    if precision == "mixed" or (cpu_bfloat16 and native_bfloat16()):
        return "mixed_bfloat16"
    return "float32"


def as_float32(model: Any) -> Any:
    """`model` computing in float32: the model itself when it already does, else a copy built
    from its config with every layer's dtype policy float32, holding the same (float32) weights.
    Layers pinned to float32 (the softmax of a mixed-precision model) stay as they are; a model
    whose config does not rebuild it is returned as it is."""
    import keras

    if all(_policy(layer) in (None, "float32") for layer in model._flatten_layers()):
        return model
    config = _float32_config(model.get_config())
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")  # sublayers made in __init__ too
    try:
        copy = model.__class__.from_config(config)
        copy.set_weights(model.get_weights())
    except (TypeError, ValueError):
        # A model its config does not rebuild whole (a LoRA-enabled keras-hub model grows its
        # low-rank weights after construction): it is saved computing as it trained.
        return model
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return copy


def _policy(layer: Any) -> str | None:
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", None)


def _float32_config(config: Any) -> Any:
    """`config` with every serialized dtype policy that is not float32 made float32."""
    if isinstance(config, list):
        return [_float32_config(c) for c in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
        return {**config, "config": {**config["config"], "name": "float32"}}
    return {key: ("float32" if key == "dtype" and isinstance(value, str)
                  and value.startswith("mixed") else _float32_config(value))
            for key, value in config.items()}
