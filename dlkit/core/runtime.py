"""TensorFlow start-up: quiet logs, a lean import without Keras for inference, seeds, device
detection, mixed precision and tf.distribute.

Importing this module does not import TensorFlow; `start()` does, so commands call it first thing
in their body and `dlkit --help` stays instant.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dlkit.core.errors import UsageError


@dataclass
class Runtime:
    """What the run is using: devices, precision policy and distribution strategy."""

    device: str
    gpus: int
    mixed_precision: bool
    strategy: Any  # tf.distribute.Strategy
    strategy_name: str
    chief: bool = True  # False on the workers of a multi-worker run that write nothing

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    @property
    def jit_compile(self) -> bool | str:
        # XLA pays off on GPU; on CPU it was measured 2.6x slower than TensorFlow's own kernels
        # (the seed CIFAR CNN, batch 32), so it stays off there.
        return bool(self.gpus)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ and Python chatter off the terminal (must run before import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


# Packages Keras imports at start-up only to offer optional integrations dlkit does not use
# (its scikit-learn estimator wrappers, pandas DataFrames as `fit` input, matplotlib for
# `keras.visualization`): about 1.6 CPU-s of every training command's start on a 2-core
# machine, and 0.33 more for matplotlib (measured), which a run that draws nothing (an
# interrupted one, a worker that is not the chief, inference) never needs. They stay
# importable afterwards: dlkit's own scikit-learn calls and plots import them when they run.
UNUSED_BY_KERAS = ("sklearn", "pandas", "matplotlib")


def import_tensorflow() -> Any:
    """Import TensorFlow (and, through it, Keras) with its start-up chatter (oneDNN, CUDA
    probing) kept off stderr, and without the optional packages of `UNUSED_BY_KERAS`."""
    quiet_tensorflow()
    import logging

    blocker = _Skip(UNUSED_BY_KERAS)
    sys.meta_path.insert(0, blocker)
    try:
        with silenced_stderr(), _uncollected("tensorflow" not in sys.modules):
            import tensorflow as tf
    finally:
        sys.meta_path.remove(blocker)

    tf.get_logger().setLevel(logging.ERROR)
    return tf


@contextlib.contextmanager
def _uncollected(first: bool) -> Iterator[None]:
    """TensorFlow's first import, without the garbage collector, its objects then frozen.

    The import makes some 330,000 objects (modules, op registries, Keras) that live as long as
    the process, and about 2,800 objects of garbage (kept: frozen with the rest). The
    collector walked them about a thousand times while they were made (six full collections
    among them, 0.5 CPU-s of every start), then again in each full collection after (about
    0.12 CPU-s each; the LiteRT converter runs one per model). `gc.freeze` moves them to the
    permanent generation; objects made later are collected as usual."""
    import gc

    enabled = first and gc.isenabled()
    if enabled:
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


class _Skip(importlib.abc.MetaPathFinder):
    """Makes `import NAME` of the given top-level packages raise ImportError (what an optional
    import expects when the package is absent), while it is on `sys.meta_path`; a package
    already imported is left alone, its submodules included."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        top = name.partition(".")[0]
        if top in self.names and top not in sys.modules:
            raise ImportError(f"{name} is not imported while TensorFlow starts (dlkit)")
        return None


class _NoLoad(importlib.abc.Loader):
    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        raise ImportError("keras import deferred by dlkit.runtime.import_tensorflow_lean")


class _DeferKeras(importlib.abc.MetaPathFinder):
    """Lets `find_spec("keras")` succeed (TensorFlow asks where Keras lives) but makes the
    import itself fail, so `import tensorflow` skips its eager, optional Keras import."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "keras":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None:
            spec.loader = _NoLoad()
        return spec


def import_tensorflow_lean() -> Any:
    """Import TensorFlow without Keras (over a second of start-up; Keras imports scikit-learn
    and matplotlib). `import keras` still works afterwards, when a `.keras` file needs it."""
    if "tensorflow" in sys.modules:
        return import_tensorflow()
    blocker = _DeferKeras()
    sys.meta_path.insert(0, blocker)
    try:
        return import_tensorflow()
    finally:
        sys.meta_path.remove(blocker)


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for a moment (C++ logs bypass Python), unless
    debugging."""
    if os.environ.get("DLKIT_DEBUG", "") not in ("", "0"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def start(seed: int | None = None, strategy: str = "auto", deterministic: bool = False,
          mixed_precision: bool | None = None, precision: str = "auto",
          cpu_bfloat16: bool = False) -> Runtime:
    """Import TensorFlow, seed every RNG, pick devices, precision and distribution strategy
    (`strategy` is a `dlkit.core.config.Strategy` value; check `multi-worker` first with
    `check_multi_worker`). `precision` is `--precision` (see `dlkit.core.precision`);
    `mixed_precision=False` is a family that must compute in float32 whatever it says, and
    `cpu_bfloat16` a family whose training was measured to keep its accuracy in bfloat16."""
    from dlkit.core.precision import policy_name

    strategy = str(strategy)
    tf = import_tensorflow()
    import keras

    with silenced_stderr():  # CUDA probing logs straight to fd 2
        gpus = len(tf.config.list_physical_devices("GPU"))
    strat = _make_strategy(tf, strategy, gpus)  # multi-worker: formed before any op
    if seed is not None:
        keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if mixed_precision is False:
        precision = "float32"
    elif mixed_precision:
        precision = "mixed"
    policy = policy_name(precision, gpus, cpu_bfloat16)
    keras.mixed_precision.set_global_policy(policy)
    device = f"{gpus} GPU" if gpus else "CPU"
    return Runtime(device, gpus, policy != "float32", strat, strategy, is_chief(strategy))


_CLUSTER: list[Any] = []  # the process's one MultiWorkerMirroredStrategy, once formed


def form_cluster() -> Any:
    """The MultiWorkerMirroredStrategy of this process, created on the first call. It must
    exist before TensorFlow runs any op (collectives are configured at program startup), so
    a multi-worker `Run` calls this first, before a keras-hub preset or tokenizer loads. Every
    worker runs the same command; TF_CONFIG says where the others are. The constructor waits
    for all of them to connect."""
    if not _CLUSTER:
        tf = import_tensorflow()
        _CLUSTER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _CLUSTER[0]


def _make_strategy(tf: Any, name: str, gpus: int) -> Any:
    if name == "mirrored" or (name == "auto" and gpus > 1):
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return form_cluster()
    if name == "one-device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    return tf.distribute.get_strategy()  # the default: one device, no wrapping overhead


def peak_gpu_mib(runtime: Runtime) -> float | None:
    """The most memory TensorFlow held on the first GPU so far (None without a GPU)."""
    if not runtime.gpus:
        return None
    import tensorflow as tf

    try:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except (ValueError, RuntimeError):  # a device without memory statistics
        return None


def cluster_task() -> dict[str, Any] | None:
    """The parsed `TF_CONFIG` ({"cluster": {...}, "task": {"type", "index"}}), or None."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        if not isinstance(cluster, dict) or not isinstance(task, dict):
            raise TypeError
        return {"cluster": cluster, "type": str(task["type"]), "index": int(task["index"])}
    except (ValueError, KeyError, TypeError):
        raise UsageError("TF_CONFIG is not valid: it must be JSON like {\"cluster\": "
                         "{\"worker\": [\"host1:port\", \"host2:port\"]}, \"task\": "
                         "{\"type\": \"worker\", \"index\": 0}}") from None


def is_chief(strategy: str) -> bool:
    """Whether this process writes the artifacts: always, except on the non-chief workers of a
    multi-worker run (the chief is task type "chief", else worker 0)."""
    task = cluster_task() if strategy == "multi-worker" else None
    if task is None:
        return True
    if task["type"] == "chief":
        return True
    return task["type"] == "worker" and task["index"] == 0 and "chief" not in task["cluster"]


def check_multi_worker() -> None:
    """Exit 2 before any work when `--strategy multi-worker` cannot run: TF_CONFIG does not
    describe this worker's cluster."""
    task = cluster_task()
    if task is None:
        raise UsageError("--strategy multi-worker needs TF_CONFIG describing the cluster and "
                         "this worker's place in it (see "
                         "docs/scale.md#training-on-several-machines)")
    workers = task["cluster"].get(task["type"])
    if not isinstance(workers, list) or not 0 <= task["index"] < len(workers):
        raise UsageError(f"TF_CONFIG task {task['type']} {task['index']} is not in its "
                         "cluster; check the cluster list and the task index")
