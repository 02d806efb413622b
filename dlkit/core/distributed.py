"""Training across machines: a `fit` for `MultiWorkerMirroredStrategy` (configured by TF_CONFIG).

Keras 3's own `fit()` cannot run under MultiWorkerMirroredStrategy (keras-team/keras#20585,
still so in Keras 3.15 with TensorFlow 2.21): it reduces the first input batch, and every scalar
metric on every step, with cross-worker collectives that reject them. This module runs the same
epochs with public tf.distribute APIs instead: each step is the model's own `train_step` under
`strategy.run` (so the compiled loss, its scaling by the number of replicas and the optimizer's
cross-worker gradient all-reduce are Keras's), metrics are read back synchronised across
workers, the callbacks get the same calls `fit()` makes (epoch and batch begin/end, logs
with `val_` metrics), and the optimizer's moving average of the weights (`use_ema`), if any,
replaces the weights at the end, as `fit()` does.

The global batch: the input pipeline yields batches of `--batch-size`; the strategy splits each
one across all replicas of all workers, so the gradient of each step averages over the whole
global batch, as on one machine.

Imports TensorFlow and Keras: import inside command bodies only.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from dlkit.core.errors import DlkitError


def is_multi_worker(model: keras.Model) -> bool:
    """Whether `model` was built under a MultiWorkerMirroredStrategy."""
    return isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)


def fit(model: keras.Model, dataset: Any, *, epochs: int, initial_epoch: int = 0,
        steps_per_epoch: int, validation_data: Any = None, callbacks: list[Any] | None = None,
        verbose: int = 0, shuffle: bool = False) -> None:
    """`model.fit` for a compiled model under MultiWorkerMirroredStrategy.

    `dataset` must yield at least `steps_per_epoch` batches per epoch for every epoch from
    `initial_epoch` (one iterator spans all epochs, as with `fit(steps_per_epoch=...)`);
    `validation_data` is iterated whole at every epoch's end. `verbose` and `shuffle` are
    accepted for signature compatibility: progress goes through callbacks, and datasets are
    shuffled by their pipeline."""
    strategy = model.distribute_strategy
    per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))
    train_steps, test_step = _step_functions(model, strategy)
    batches = iter(strategy.experimental_distribute_dataset(dataset))
    val = (strategy.experimental_distribute_dataset(validation_data)
           if validation_data is not None else None)
    hooks = keras.callbacks.CallbackList(list(callbacks or []), model=model, epochs=epochs,
                                         steps=steps_per_epoch, verbose=0)
    model.stop_training = False
    try:
        _run_epochs(model, hooks, train_steps, test_step, batches, val, epochs, initial_epoch,
                    steps_per_epoch, per_call)
    except (tf.errors.UnavailableError, tf.errors.CancelledError,
            tf.errors.DeadlineExceededError):
        raise DlkitError("another worker of the cluster stopped or cannot be reached; start "
                         "every worker again with --resume to continue from the last "
                         "checkpoint") from None


def _run_epochs(model: keras.Model, hooks: Any, train_steps: Any, test_step: Any,
                batches: Any, val: Any, epochs: int, initial_epoch: int, steps_per_epoch: int,
                per_call: int) -> None:
    logs: dict[str, float] = {}
    hooks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        hooks.on_epoch_begin(epoch)
        step = 0
        while step < steps_per_epoch and not model.stop_training:
            count = min(per_call, steps_per_epoch - step)
            hooks.on_train_batch_begin(step)
            train_steps(batches, tf.constant(count))
            step += count
            logs = _metric_results(model)
            hooks.on_train_batch_end(step - 1, logs)
        if val is not None:
            logs = {**logs, **_validate(model, test_step, val)}
        hooks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    optimizer = getattr(model, "optimizer", None)
    if isinstance(optimizer, keras.optimizers.Optimizer):  # as fit() does: an EMA put in place
        optimizer.finalize_variable_values(model.trainable_weights)
    hooks.on_train_end(logs)


def _step_functions(model: keras.Model, strategy: Any) -> tuple[Any, Any]:
    """Compiled functions: `count` training steps from a distributed iterator, and one test
    step on a distributed batch."""

    @tf.function
    def train_steps(iterator: Any, count: Any) -> None:
        for _ in tf.range(count):
            strategy.run(model.train_step, args=(next(iterator),))

    @tf.function
    def test_step(batch: Any) -> None:
        strategy.run(model.test_step, args=(batch,))

    return train_steps, test_step


def evaluate(model: keras.Model, dataset: Any) -> dict[str, float]:
    """`model.evaluate(dataset, return_dict=True)` under MultiWorkerMirroredStrategy (Keras's
    own fails there for the same reason as its `fit`)."""
    strategy = model.distribute_strategy
    _, test_step = _step_functions(model, strategy)
    return _evaluated(model, test_step, strategy.experimental_distribute_dataset(dataset))


def _validate(model: keras.Model, test_step: Any, batches: Any) -> dict[str, float]:
    """Validation metrics (`val_` names) over the whole distributed validation set."""
    return {f"val_{name}": value for name, value in _evaluated(model, test_step,
                                                               batches).items()}


def _evaluated(model: keras.Model, test_step: Any, batches: Any) -> dict[str, float]:
    model.reset_metrics()
    for batch in batches:
        test_step(batch)
    return _metric_results(model)


def _metric_results(model: keras.Model) -> dict[str, float]:
    """The model's metrics as floats; read outside the replicas, they are summed over all
    workers."""
    return {name: float(value) for name, value in model.get_metrics_result().items()}
