"""The pieces of the fast training recipes, checked on their own: precision (mixed bfloat16 on a
CPU that has it, the float32 copy that is saved), batch augmentation (stateless, alternating
flips), the whitening initialisation and test-time augmentation built from plain Keras layers."""

from __future__ import annotations

import numpy as np
import pytest

from dlkit.core import precision


def test_policy_follows_precision_device_and_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "native_bfloat16", lambda: True)
    assert precision.policy_name("auto", gpus=0) == "mixed_bfloat16"
    assert precision.policy_name("auto", gpus=0, cpu_bfloat16=False) == "float32"
    assert precision.policy_name("auto", gpus=1) == "mixed_float16"
    assert precision.policy_name("float32", gpus=1) == "float32"
    monkeypatch.setattr(precision, "native_bfloat16", lambda: False)
    assert precision.policy_name("auto", gpus=0) == "float32"
    assert precision.policy_name("mixed", gpus=0) == "mixed_bfloat16"


def test_float32_copy_has_the_weights_and_computes_in_float32() -> None:
    import keras

    from dlkit.image_classifier.models import airbench

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(1)
        mixed = airbench((16, 16, 3), 4)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    copy = precision.as_float32(mixed)
    assert copy is not mixed
    assert all(layer.dtype_policy.name == "float32" for layer in copy._flatten_layers())
    for a, b in zip(mixed.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(mixed(images), copy(images), atol=0.02)
    assert precision.as_float32(copy) is copy  # already float32: nothing to do


def test_batch_augmentation_is_stateless_and_alternates_flips() -> None:
    import tensorflow as tf

    from dlkit.data.pipelines import translate_flip

    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (64, 8, 8, 3)).astype(np.uint8))
    index = tf.range(64, dtype=tf.int64)
    key = tf.constant([3, 4], tf.int64)
    plain = translate_flip(0, "alternate", seed=7)
    even = plain(images, index, tf.constant(0, tf.int64), key).numpy()
    odd = plain(images, index, tf.constant(1, tf.int64), key).numpy()
    again = plain(images, index, tf.constant(2, tf.int64), tf.constant([9, 9], tf.int64))
    np.testing.assert_array_equal(even, again.numpy())  # the same flips every other epoch
    flipped = (even == images.numpy()[:, :, ::-1]).all(axis=(1, 2, 3))
    kept = (even == images.numpy()).all(axis=(1, 2, 3))
    assert flipped.any() and kept.any() and (flipped | kept).all()
    odd_flipped = (odd == images.numpy()[:, :, ::-1]).all(axis=(1, 2, 3))
    np.testing.assert_array_equal(odd_flipped, ~flipped)  # both views over two epochs
    moved = translate_flip(2, "random", seed=7, cutout=3)
    a = moved(images, index, tf.constant(0, tf.int64), key).numpy()
    b = moved(images, index, tf.constant(0, tf.int64), key).numpy()
    np.testing.assert_array_equal(a, b)
    assert a.shape == (64, 8, 8, 3) and a.dtype == np.float32
    assert not np.array_equal(a, even)


def test_whitening_kernel_whitens_patches() -> None:
    from dlkit.image_classifier.models import whitening_kernel

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (200, 12, 12, 1)).astype(np.float32)
    images = np.clip(np.concatenate([base, base, base], -1) + rng.normal(0, 20, (200, 12, 12, 3)),
                     0, 255).astype(np.uint8)  # strongly correlated channels
    kernel = whitening_kernel(images, patch=2, eps=0.0)
    assert kernel.shape == (2, 2, 3, 24)
    windows = np.lib.stride_tricks.sliding_window_view(images / 255, (2, 2), axis=(1, 2))
    rows = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
    out = (rows - rows.mean(0)) @ kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.eye(12), atol=0.05)


def test_test_time_augmentation_averages_mirror_and_shifts() -> None:
    import keras

    from dlkit.image_classifier.models import with_test_time_augmentation

    inputs = keras.Input((6, 5, 2))
    flat = keras.layers.Flatten()(inputs)
    base = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))
    x = np.random.default_rng(0).uniform(0, 255, (4, 6, 5, 2)).astype(np.float32)

    def shift(v: np.ndarray, step: int) -> np.ndarray:  # reflect-padded one-pixel move
        padded = np.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        return padded[:, :6, :5] if step > 0 else padded[:, 2:, 2:]

    mirror = x[:, :, ::-1]
    views = [x, x, mirror, mirror, shift(x, 1), shift(x, -1), shift(mirror, 1),
             shift(mirror, -1)]
    expected = np.mean([base.predict(v, verbose=0) for v in views], axis=0)
    tta = with_test_time_augmentation(base)
    np.testing.assert_allclose(tta.predict(x, verbose=0), expected, atol=1e-6)
    only_mirror = with_test_time_augmentation(base, shifts=False)
    np.testing.assert_allclose(only_mirror.predict(x, verbose=0),
                               np.mean([base.predict(v, verbose=0) for v in (x, mirror)], 0),
                               atol=1e-6)


def test_an_ensemble_member_steps_exactly_as_it_would_alone() -> None:
    """train-cifar's ensemble (`--members`): the members' mean loss with the rate times
    `members` and the decay divided by it moves each member as its own SGD step would."""
    import keras

    from dlkit.image_classifier.config import CifarConfig
    from dlkit.image_classifier.models import airbench, ensemble_mean
    from dlkit.image_classifier.train import Scratch

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 16, 16, 3)).astype(np.float32)
    labels = keras.utils.to_categorical(rng.integers(0, 4, 16), 4)
    config = CifarConfig(members=2)
    config.check()
    keras.utils.set_random_seed(2)
    pair = airbench((16, 16, 3), 4, members=2)
    alone = airbench((16, 16, 3), 4)
    first = [layer for layer in pair.layers if layer.name.startswith("m1_") and layer.weights]
    for layer in first:
        alone.get_layer(layer.name[3:]).set_weights(layer.get_weights())
    assert pair.output.shape == (None, 2, 4)
    mean = ensemble_mean(pair)(images)
    np.testing.assert_allclose(mean, pair(images).numpy().mean(axis=1), atol=1e-6)

    def step(model: keras.Model, members: int, target: np.ndarray) -> None:
        recipe = Scratch(config, 4, 5e-4, images.astype(np.uint8), mirrored=True, total_steps=1)
        recipe.members = members
        optimizer = recipe.optimizer()
        optimizer.learning_rate = recipe.schedule().peak
        model.compile(optimizer, keras.losses.CategoricalCrossentropy(label_smoothing=0.2))
        model.train_on_batch(images, target)

    step(pair, 2, np.repeat(labels[:, None], 2, axis=1))
    step(alone, 1, labels)
    for layer in first:
        for a, b in zip(layer.get_weights(), alone.get_layer(layer.name[3:]).get_weights(),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_the_default_cifar_model_is_an_ensemble_saved_as_one(cli, tiny_root, tmp_path) -> None:
    import json

    import keras

    from dlkit.data.readers import load_cifar10

    out = tmp_path / "c"
    result = cli("train-cifar", "--data-dir", tiny_root, "--epochs", "2", "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    meta = json.loads((out / "metadata.json").read_text())
    assert report["arch"] == "airbench" and meta["ensemble_members"] == 2
    model = keras.saving.load_model(out / "model.keras")  # plain Keras, safe mode
    data = load_cifar10(tiny_root)
    probs = model.predict(data.x_test.astype(np.float32), verbose=0)
    assert probs.shape == (len(data.x_test), 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert (probs.argmax(axis=1) == data.y_test).mean() == pytest.approx(
        report["test_accuracy"])  # what is saved is what was measured


def test_airbench_convolutions_start_by_passing_their_input_on() -> None:
    """Each block's convolutions start as identities on their first channels (a Dirac kernel),
    the filters beyond the input's channels left random."""
    import keras

    from dlkit.image_classifier import models

    keras.utils.set_random_seed(0)
    model = models.build("airbench", (16, 16, 3), 10)
    first = model.get_layer("block1_conv1").kernel.numpy()  # 24 whitened channels in, 32 out
    identity = np.zeros((3, 3, 24, 24), np.float32)
    identity[1, 1, np.arange(24), np.arange(24)] = 1
    np.testing.assert_array_equal(first[..., :24], identity)
    assert np.abs(first[..., 24:]).sum() > 0
    second = model.get_layer("block2_conv2").kernel.numpy()  # 64 in, 64 out: all identity
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 64)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.conv(x, second, padding="same"), x, atol=1e-6)


def test_airbench_takes_its_recipes_nonlinearity() -> None:
    """28x28 images train airbench with ReLU (exact GELU is slow in bfloat16 on CPUs), photos
    keep GELU; the layers say which."""
    from dlkit.image_classifier import models
    from dlkit.image_classifier.config import CifarConfig, MnistConfig

    mnist, cifar = MnistConfig().recipe(), CifarConfig().recipe()
    assert (mnist.activation, mnist.epochs, mnist.batch_size) == ("relu", 7, 128)
    assert cifar.activation == "gelu"
    for activation in ("relu", "gelu"):
        model = models.build("airbench", (28, 28, 1), 10, activation=activation)
        used = {layer.get_config()["activation"] for layer in model.layers
                if layer.__class__.__name__ == "Activation"} - {"softmax"}
        assert used == {activation}


def test_grey_airbench_keeps_its_whitening_and_saves_a_weight_average() -> None:
    """train-mnist's airbench leaves its whitening convolution untrained and has the optimizer
    keep a moving average of the weights over the last thirtieth of the steps (what `fit` puts
    in place at its end); train-cifar's trains both and keeps the last weights."""
    from dlkit.image_classifier.config import CifarConfig, MnistConfig
    from dlkit.image_classifier.train import Scratch

    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28, 1)).astype(np.uint8)
    for config, fixed, average in ((MnistConfig(), True, 1 - 1 / 100), (CifarConfig(), False,
                                                                       None)):
        config.check()
        recipe = Scratch(config, 10, 5e-4, images, mirrored=True, total_steps=3000)
        assert recipe.ema == average and recipe.metadata()["ema_momentum"] == average
        optimizer = recipe.optimizer()
        assert optimizer.use_ema == (average is not None)
        if average is not None:
            assert optimizer.ema_momentum == pytest.approx(average)
        whitening = [layer for layer in recipe.build((28, 28, 1)).layers
                     if layer.name.endswith("whiten")]  # one per member of an ensemble
        assert whitening and all(layer.trainable == (not fixed) for layer in whitening)
        assert recipe.metadata()["fixed_whitening"] == fixed
    assert Scratch(MnistConfig(), 10, 5e-4, images, True, total_steps=20).ema == 0.0  # tiny runs


@pytest.mark.parametrize("args,phrase", [
    (["--members", "2", "--arch", "resnet"], "--members 2 needs --arch airbench"),
    (["--members", "3", "--backbone", "no/such/preset"], "--members 3 needs --arch airbench"),
])
def test_members_out_of_place_are_refused(cli, tmp_path, args, phrase) -> None:
    from conftest import assert_one_error_line

    result = cli("train-cifar", *args, "-o", tmp_path / "m")
    assert result.exit_code == 2, result.stderr
    assert_one_error_line(result.stderr)
    assert phrase in result.stderr
    assert not (tmp_path / "m").exists()
