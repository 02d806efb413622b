"""Image classifiers: raw 0-255 pixels in (rescaled inside the model), float32 probabilities out.

For 28x28 greyscale digits and clothes (`train-mnist`):
- `mlp`: the seed document's model: Flatten, Dense 128 relu, Dropout 0.2, Dense 10 softmax;
- `cnn`: three conv-BN-ReLU-max-pool blocks (32, 64, 128 filters) and a small dense head;
- `airbench` (the default), as for photos below, its whitening patch 3x3 on one channel and
  left untrained (see `image_classifier.config`).

For small colour photos (`train-cifar`):
- `seed`: the seed document's CNN: Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dense10;
- `resnet`: a narrow ResNet-9 (the DAWNBench design: conv-pool stages with residual blocks after
  the first and last, global max-pool);
- `airbench`: the default, after Keller Jordan's airbench (itself from hlb-CIFAR10 and David
  Page's "How to train your ResNet"): a first 2x2 convolution initialised to whiten the training
  images' patches (`whitening_kernel`), then three blocks of two 3x3 convolutions that start
  as identities on their first channels (the first followed by max-pooling) with
  BatchNormalization without a learnt scale and GELU (ReLU for 28x28 images: see
  `image_classifier.config`), a global max-pool and a linear layer whose logits are scaled
  down (1/9) for the softmax.

`with_test_time_augmentation` wraps a trained classifier so that it averages its probabilities
over the image, its mirror image and one-pixel shifts of both: built from plain Keras layers
(Permute and a fixed Dense for the mirror, Cropping2D and Concatenate for the shifts), so the
SavedModel, `model.keras` and `model.tflite` compute exactly what the benchmark measured.

`recalibrate_batchnorm` recomputes the BatchNormalization statistics of a trained model over the
training data, so a model trained for a few dozen steps (whose moving averages still remember
its first steps) is evaluated and exported with the statistics of its final weights;
`CalibrateBatchNorm` does it (on fewer images) before every validation during training, so the
per-epoch validation curves are those of the model as it would be saved at that epoch.

Imports Keras at module level: import it inside command bodies only.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from dlkit.image_classifier.config import CifarArch, MnistArch


def image_input(shape: tuple[int, int, int]) -> tuple[Any, Any]:
    """A float input of raw 0-255 pixels and its rescaled [0, 1] tensor."""
    inputs = keras.Input(shape=shape, name="image")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def classifier_head(x: Any, num_classes: int) -> Any:
    """Logits to float32 softmax probabilities (float32 even under mixed precision)."""
    x = layers.Dense(num_classes, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def conv_bn_relu(x: Any, filters: int, name: str) -> Any:
    """3x3 convolution without bias, batch normalisation, ReLU."""
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def mlp(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    inputs, x = image_input(input_shape)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="mnist_mlp")


def cnn(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    inputs, x = image_input(input_shape)
    for i, filters in enumerate((32, 64, 128)):
        x = conv_bn_relu(x, filters, f"block{i + 1}")
        x = layers.MaxPooling2D(name=f"block{i + 1}_pool")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="mnist_cnn")


def seed(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    inputs, x = image_input(input_shape)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cifar_seed")


def _residual(x: Any, filters: int, name: str) -> Any:
    shortcut = x
    x = conv_bn_relu(x, filters, f"{name}_1")
    x = conv_bn_relu(x, filters, f"{name}_2")
    return layers.Add(name=f"{name}_add")([shortcut, x])


def resnet(input_shape: tuple[int, int, int], num_classes: int, width: int = 32) -> keras.Model:
    inputs, x = image_input(input_shape)
    x = conv_bn_relu(x, width, "prep")
    for stage, (mult, residual) in enumerate(((2, True), (4, False), (8, True))):
        name = f"stage{stage + 1}"
        x = conv_bn_relu(x, width * mult, name)
        x = layers.MaxPooling2D(name=f"{name}_pool")(x)
        if residual:
            x = _residual(x, width * mult, f"{name}_res")
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cifar_resnet")


AIRBENCH_WIDTHS = (32, 64, 128)
LOGIT_SCALE = 1 / 9


def whitening_patch(channels: int) -> int:
    """The whitening convolution's kernel size: 2x2 for colour (12 directions), 3x3 for grey
    images (9 directions; 2x2 would leave only 4)."""
    return 2 if channels >= 3 else 3


def airbench(input_shape: tuple[int, int, int], num_classes: int,
             whitening: np.ndarray | None = None,
             widths: tuple[int, ...] = AIRBENCH_WIDTHS, members: int = 1,
             activation: str = "gelu", fixed_whitening: bool = False) -> keras.Model:
    """The airbench-style ConvNet (see the module doc), its nonlinearity `activation`. `whitening`
    is the first convolution's kernel from `whitening_kernel` (left random when None, as when a
    checkpoint's weights are about to be loaded); with `fixed_whitening` that convolution is not
    trained (kernel and bias stay as built), which spares the backward pass the gradient of the
    second convolution's input. With `members` > 1, that many such networks
    side by side on the same input (each its own weights, from its own random start), their
    probabilities stacked as (batch, members, classes): each is trained on its own loss, and
    `ensemble_mean` makes the model that averages them."""
    inputs, x = image_input(input_shape)
    outputs = [_airbench_member(x, num_classes, whitening, widths,
                                f"m{m + 1}_" if members > 1 else "", activation, fixed_whitening)
               for m in range(members)]
    if members == 1:
        return keras.Model(inputs, outputs[0], name="airbench")
    stacked = layers.Concatenate(axis=1, name="members", dtype="float32")(
        [layers.Reshape((1, num_classes), name=f"m{m + 1}_member", dtype="float32")(out)
         for m, out in enumerate(outputs)])
    return keras.Model(inputs, stacked, name="airbench_ensemble")


def _airbench_member(x: Any, num_classes: int, whitening: np.ndarray | None,
                     widths: tuple[int, ...], prefix: str, activation: str,
                     fixed_whitening: bool) -> Any:
    """One airbench network on the rescaled images `x`: its probabilities."""
    channels = x.shape[-1]
    patch = whitening_patch(channels)
    whiten = layers.Conv2D(2 * patch ** 2 * channels, patch, name=f"{prefix}whiten",
                           trainable=not fixed_whitening)
    x = layers.Activation(activation, name=f"{prefix}whiten_{activation}")(whiten(x))
    if whitening is not None:
        whiten.kernel.assign(whitening)
    for i, width in enumerate(widths):
        name = f"{prefix}block{i + 1}"
        x = _identity_start(layers.Conv2D(width, 3, padding="same", use_bias=False,
                                          name=f"{name}_conv1"), x)
        x = layers.MaxPooling2D(name=f"{name}_pool")(x)
        x = _bn_act(x, f"{name}_1", activation)
        x = _identity_start(layers.Conv2D(width, 3, padding="same", use_bias=False,
                                          name=f"{name}_conv2"), x)
        x = _bn_act(x, f"{name}_2", activation)
    x = layers.GlobalMaxPooling2D(name=f"{prefix}pool")(x)
    x = layers.Dense(num_classes, use_bias=False, name=f"{prefix}logits")(x)
    x = layers.Rescaling(LOGIT_SCALE, name=f"{prefix}logit_scale")(x)
    return layers.Activation("softmax", dtype="float32", name=f"{prefix}probabilities")(x)


def _identity_start(conv: layers.Conv2D, x: Any) -> Any:
    """`conv(x)`, the convolution's first filters (as many as `x` has channels) set to pass
    their channel through unchanged (a Dirac kernel: 1 at the centre tap of its own channel),
    the rest left random: each block starts close to passing its input on, which airbench
    measured to save a fifth of the epochs (train-cifar's default, one seed each: test 0.808
    against 0.799 in 36 epochs, 0.789 against 0.775 in 18)."""
    y = conv(x)
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    size, channels = kernel.shape[0], min(kernel.shape[2], kernel.shape[3])
    kernel[:, :, :, :channels] = 0.0
    kernel[size // 2, size // 2, np.arange(channels), np.arange(channels)] = 1.0
    conv.kernel.assign(kernel)
    return y


def ensemble_mean(model: keras.Model) -> keras.Model:
    """The ensemble's mean probabilities, (batch, classes) (the model itself when it is one
    network)."""
    if len(model.output.shape) == 2:
        return model
    mean = layers.GlobalAveragePooling1D(name="ensemble_mean", dtype="float32")(model.output)
    return keras.Model(model.input, mean, name="airbench")


def ensemble_accuracy(y_true: Any, y_pred: Any) -> Any:
    """Accuracy of the members' mean probabilities: (batch, members, classes) labels and
    predictions, as an ensemble's training sees them."""
    from keras import ops

    return ops.cast(ops.equal(ops.argmax(ops.mean(y_true, axis=1), axis=-1),
                              ops.argmax(ops.mean(y_pred, axis=1), axis=-1)), "float32")


def _bn_act(x: Any, name: str, activation: str) -> Any:
    x = layers.BatchNormalization(momentum=0.8, scale=False, name=f"{name}_bn")(x)
    return layers.Activation(activation, name=f"{name}_{activation}")(x)


def whitening_kernel(images: np.ndarray, patch: int = 2, eps: float = 5e-4,
                     most_patches: int = 2_000_000, seed: int = 0) -> np.ndarray:
    """A (patch, patch, C, 2 * patch * patch * C) convolution kernel that whitens the patches of
    `images` (uint8, N x H x W x C, scaled to [0, 1] as the model does): the eigenvectors of
    their covariance divided by the square roots of the eigenvalues, and their negatives (so
    that the GELU after it keeps both signs). Computed on a seeded sample of at most
    `most_patches` patches."""
    count, height, width, channels = images.shape
    per_image = (height - patch + 1) * (width - patch + 1)
    take = max(1, min(count, most_patches // per_image))
    chosen = np.random.default_rng(seed).choice(count, take, replace=False)
    windows = np.lib.stride_tricks.sliding_window_view(
        images[np.sort(chosen)].astype(np.float32) / 255, (patch, patch), axis=(1, 2))
    # (n, H', W', C, p, p) -> rows in the (p, p, C) order of a Conv2D kernel
    rows = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, patch * patch * channels)
    rows = rows.astype(np.float64) - rows.mean(axis=0)
    values, vectors = np.linalg.eigh(rows.T @ rows / len(rows))
    filters = (vectors / np.sqrt(np.clip(values, 0, None) + eps)).T
    filters = np.concatenate([filters, -filters])
    return filters.reshape(-1, patch, patch, channels).transpose(1, 2, 3, 0).astype(np.float32)


BUILDERS = {MnistArch.mlp: mlp, MnistArch.cnn: cnn, CifarArch.seed: seed,
            CifarArch.resnet: resnet}


def build(arch: MnistArch | CifarArch, input_shape: tuple[int, int, int],
          num_classes: int, images: np.ndarray | None = None, members: int = 1,
          activation: str = "gelu", fixed_whitening: bool = False) -> keras.Model:
    """The uncompiled classifier `arch` for images of `input_shape` (`images`: the training
    images, which initialise the whitening of the airbench model; `members`, `activation` and
    `fixed_whitening`: airbench's ensemble size, nonlinearity and untrained whitening)."""
    if arch == "airbench":
        patch = whitening_patch(input_shape[-1])
        kernel = whitening_kernel(images, patch) if images is not None and len(images) else None
        return airbench(input_shape, num_classes, kernel, members=members,
                        activation=activation, fixed_whitening=fixed_whitening)
    return BUILDERS[arch](input_shape, num_classes)


def with_test_time_augmentation(model: keras.Model, shifts: bool = True) -> keras.Model:
    """`model` averaging its probabilities over the image and its mirror image and, with
    `shifts`, one-pixel diagonal shifts of both (each shift weighs half as much as its
    unshifted view): the test-time augmentation of airbench, for models trained with flips and
    translations."""
    height, width = model.input_shape[1:3]
    inputs = keras.Input(shape=model.input_shape[1:], name="image")
    mirror = _mirror(inputs, width)
    views = [inputs, mirror]
    if shifts:
        views = [inputs, inputs, mirror, mirror]
        for view in (inputs, mirror):
            views += [_shift(view, height, width, 1), _shift(view, height, width, -1)]
    averaged = layers.Average(name="tta_average", dtype="float32")(
        [model(view) for view in views])
    return keras.Model(inputs, averaged, name=f"{model.name}_tta")


def _mirror(x: Any, width: int) -> Any:
    """The horizontal mirror image: the width axis last, multiplied by the reversal matrix."""
    x = layers.Permute((1, 3, 2), name="tta_width_last")(x)
    flip = layers.Dense(width, use_bias=False, trainable=False, name="tta_mirror")
    x = flip(x)
    flip.kernel.assign(np.eye(width, dtype=np.float32)[::-1])
    return layers.Permute((1, 3, 2), name="tta_width_back")(x)


def _shift(x: Any, height: int, width: int, step: int) -> Any:
    """`x` moved by one pixel down and right (`step` 1) or up and left (-1), the uncovered
    edge filled by reflection (as the training translations pad)."""
    x = _shift_axis(x, height, step, axis=1)
    return _shift_axis(x, width, step, axis=2)


def _shift_axis(x: Any, size: int, step: int, axis: int) -> Any:
    def crop(start: int, stop: int) -> Any:  # rows (or columns) start..stop-1
        cut = ((start, size - stop), (0, 0)) if axis == 1 else ((0, 0), (start, size - stop))
        return layers.Cropping2D(cut)(x)

    if step > 0:  # [x1, x0, x1, ..., x(size-2)]
        parts = [crop(1, 2), crop(0, size - 1)]
    else:  # [x1, ..., x(size-1), x(size-2)]
        parts = [crop(1, size), crop(size - 2, size - 1)]
    return layers.Concatenate(axis=axis)(parts)


def recalibrate_batchnorm(model: keras.Model, images: np.ndarray, batch_size: int,
                          max_batches: int = 40, forward: Any = None) -> int:
    """Set every BatchNormalization layer's moving mean and variance to the average of its
    batch statistics over (up to `max_batches` batches of) `images`, computed with the final
    weights. Returns the number of batches used (0: the model has no BatchNormalization).

    A layer's moving statistics are an exponential average over training, dominated after a
    short run by the early weights' activations; evaluating with them can put a well-trained
    model near chance (a 2-epoch run on the 1,437 bundled digits: 22 steps). Each batch runs in
    training mode with the layers' momentum at 0, so that their moving statistics become the
    batch's, which are summed here. `forward` is `training_forward(model)`, compiled once and
    reused across calls: run eagerly, 40 batches of 128 Fashion-MNIST images took 4.5 CPU-s, a
    few percent of the whole training budget."""
    norms = [layer for layer in model._flatten_layers()
             if isinstance(layer, layers.BatchNormalization)]
    if not norms or len(images) == 0:
        return 0
    forward = forward or training_forward(model)
    momenta = [layer.momentum for layer in norms]
    count = min(max_batches, max(1, len(images) // batch_size))
    sums = [[np.zeros(v.shape, np.float64) for v in (n.moving_mean, n.moving_variance)]
            for n in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0
        for k in range(count):
            forward(images[k * batch_size:(k + 1) * batch_size])
            for (mean, variance), layer in zip(sums, norms, strict=True):
                mean += keras.ops.convert_to_numpy(layer.moving_mean)
                variance += keras.ops.convert_to_numpy(layer.moving_variance)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
    for (mean, variance), layer in zip(sums, norms, strict=True):
        layer.moving_mean.assign(mean / count)
        layer.moving_variance.assign(variance / count)
    return count


def training_forward(model: keras.Model) -> Any:
    """`model` called in training mode (BatchNormalization on batch statistics) on a batch of
    0-255 images, compiled: traced at its first call, with the layers' momentum as it is
    then (`recalibrate_batchnorm` sets it to 0 around every call)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(images: Any) -> Any:
        return model(tf.cast(images, "float32"), training=True)

    return forward


class CalibrateBatchNorm(keras.callbacks.Callback):
    """Before each validation inside `fit`, recompute the BatchNormalization statistics with
    the current weights from `images` (the first ones, up to `most` of them: a cost of a few
    percent of an epoch). Without it a short run's validation accuracy is near chance while
    the saved model, recalibrated after training, is right (3 epochs on the 1,437 bundled
    digits: 0.14 against 0.93). Skipped under a distribution strategy (the statistics are
    mirrored variables there; the final recalibration still runs). `forward` is the compiled
    call it uses, for the final recalibration to reuse."""

    def __init__(self, images: np.ndarray, batch_size: int, most: int = 512) -> None:
        super().__init__()
        self.images = images[:most]
        self.batch_size = min(batch_size, max(1, len(self.images)))
        self.forward: Any = None

    def on_test_begin(self, logs: dict | None = None) -> None:
        strategy = getattr(self.model, "distribute_strategy", None)
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            return
        self.forward = self.forward or training_forward(self.model)
        recalibrate_batchnorm(self.model, self.images, self.batch_size, forward=self.forward)
