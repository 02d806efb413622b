"""`dlkit sample-flow`: draw images from a trained flow model, as a grid PNG or one PNG each.

Sampling integrates the ODE dx/dt = v(x, t) from t = 0 (noise) to t = 1 (an image) in `steps`
equal steps, with Euler's method or Heun's (second order: one more network call per step but the
last).
Conditional models follow classifier-free guidance: v = v(x, t, null) + w (v(x, t, class) -
v(x, t, null)), the two calls made as one batch. The noise comes from NumPy's generator seeded
with `--seed`, and the loop is NumPy calling the velocity network, which runs from the folder's
`model.tflite` through LiteRT (no TensorFlow import) or from `model.keras`, as `--backend` says:
the same loop on both, so the same seed gives the same images.

`open_generator` is what `dlkit.core.generators` opens train-flow folders with (evaluate-gan
draws through it too); train-flow draws its grids with `integrate` on the Keras network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlkit.core.config import Backend
from dlkit.core.console import Report
from dlkit.core.errors import UsageError
from dlkit.core.generators import BATCH, Generator, refuse_settings, sample_lines, write_samples
from dlkit.core.plots import pixels_to_uint8
from dlkit.flow.config import GUIDANCE_MAX, STEPS_MAX, SampleFlowConfig, Solver

TASK = "train-flow"

# The velocity network as a NumPy function: (x, t, labels or None) -> v, all batch-first.
Network = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


@dataclass(frozen=True)
class Sampling:
    """How a flow model is sampled (train-flow records its defaults in metadata.json)."""

    steps: int
    solver: Solver
    guidance: float

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "solver": self.solver.value, "guidance": self.guidance}


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Images in [-1, 1] -> uint8 pixels."""
    return pixels_to_uint8((np.asarray(x, np.float32) + 1.0) * 127.5)


def guided(network: Network, null_label: int, guidance: float) -> Network:
    """The velocity to integrate: the network's own for unconditional models (labels None) and
    for guidance 1; otherwise the classifier-free guided mix of the conditional and the
    null-class velocity, both from one batched call (guidance 0: the null class only)."""
    def velocity(x: np.ndarray, t: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        if labels is None or guidance == 1.0:
            return network(x, t, labels)
        null = np.full_like(labels, null_label)
        if guidance == 0.0:
            return network(x, t, null)
        both = network(np.concatenate([x, x]), np.concatenate([t, t]),
                       np.concatenate([labels, null]))
        cond, free = both[:len(x)], both[len(x):]
        return free + np.float32(guidance) * (cond - free)

    return velocity


def integrate(velocity: Network, noise: np.ndarray, labels: np.ndarray | None, steps: int,
              solver: Solver, visit: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """x at t = 1 from x = `noise` at t = 0, in `steps` equal steps (float32 throughout);
    `visit(x)` sees the start and every step's result (a trajectory).

    Heun's correction is left out of the last step, as in EDM's sampler (Karras et al. 2022):
    it would call the network at t = 1, where the input is the finished image and the
    velocity's target x1 - x0 is all unpredictable noise; measured on Fashion-MNIST, that one
    call put grain on every image (Frechet distance 54 with it, 40 without, 10 steps)."""
    times = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    x = np.asarray(noise, np.float32)
    if visit is not None:
        visit(x)
    for i in range(steps):
        h = times[i + 1] - times[i]
        t = np.full(len(x), times[i], np.float32)
        v = velocity(x, t, labels)
        if solver == Solver.heun and i < steps - 1:
            ahead = np.full(len(x), times[i + 1], np.float32)
            v = 0.5 * (v + velocity(x + h * v, ahead, labels))
        x = (x + h * v).astype(np.float32)
        if visit is not None:
            visit(x)
    return x


def noise_for(rng: np.random.Generator, count: int, image_shape: list[int]) -> np.ndarray:
    """The next `count` noise images from `rng` (drawn in order, so batches of any size give
    the same stream)."""
    return rng.standard_normal((count, *image_shape), dtype=np.float32)


def draw_batches(velocity: Network, image_shape: list[int], sampling: Sampling, count: int,
                 seed: int | None, labels: np.ndarray | None) -> Iterator[np.ndarray]:
    """`count` uint8 images in batches of at most `BATCH`; the same seed gives the same
    images."""
    rng = np.random.default_rng(seed)
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        chunk = None if labels is None else labels[start:start + n]
        x = integrate(velocity, noise_for(rng, n, image_shape), chunk, sampling.steps,
                      sampling.solver)
        yield to_uint8(x)


def recorded_sampling(folder: Path, meta: dict[str, Any]) -> Sampling:
    """The sampling defaults metadata.json records (untrusted: checked like the options)."""
    try:
        record = meta["flow"]
        steps, solver = int(record["steps"]), Solver(record["solver"])
        guidance = float(record["guidance"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{folder}/metadata.json lacks the flow's sampling settings; retrain "
                         "the model") from None
    if not 1 <= steps <= STEPS_MAX or not 0 <= guidance <= GUIDANCE_MAX:
        raise UsageError(f"{folder}/metadata.json has sampling settings out of range (steps "
                         f"{steps}, guidance {guidance}); retrain the model")
    return Sampling(steps, solver, guidance)


def open_generator(folder: Path, meta: dict[str, Any], backend: Backend,
                   settings: dict[str, Any]) -> Generator:
    """A train-flow folder as a `Generator`; `settings` (steps, solver, guidance) override the
    recorded defaults. Exit 2 when its metadata does not fit its network."""
    from dlkit.core.serving import open_model

    refuse_settings(folder, TASK, settings, allowed=("steps", "solver", "guidance"))
    try:
        conditional = bool(meta["conditional"])
        names, shape = [str(n) for n in meta["class_names"]], [int(d) for d in
                                                                meta["image_shape"]]
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{folder}/metadata.json lacks the flow's classes or image shape; "
                         "retrain the model") from None
    recorded = recorded_sampling(folder, meta)
    if "guidance" in settings and not conditional:
        raise UsageError(f"--guidance needs a conditional model; {folder} was trained without "
                         "--conditional")
    sampling = Sampling(settings.get("steps", recorded.steps),
                        Solver(settings.get("solver", recorded.solver)),
                        float(settings.get("guidance", recorded.guidance)))
    model = open_model(folder, backend, meta=meta)
    expected = [tuple(shape), ()] + ([()] if conditional else [])
    if model.input_shapes != expected or model.output_shape != tuple(shape):
        raise UsageError(f"{folder}/metadata.json does not match its velocity network (image "
                         f"shape {shape}, conditional {conditional}); retrain the model")

    def network(x: np.ndarray, t: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
        return model(x, t) if labels is None else model(x, t, labels)

    velocity = guided(network, len(names), sampling.guidance)

    def draw(count: int, seed: int | None, labels: np.ndarray | None) -> Iterator[np.ndarray]:
        return draw_batches(velocity, shape, sampling, count, seed, labels)

    return Generator(Path(folder), TASK, conditional, names, shape, str(meta.get("dataset", "")),
                     model.backend, draw, sampling.as_dict())


def load_flow(folder: Path, backend: Backend, **settings: Any) -> Generator:
    """A train-flow model folder; exit 2 when it is missing or another command wrote it."""
    from dlkit.core.artifacts import load_metadata

    meta = load_metadata(folder, TASK)
    given = {key: value for key, value in settings.items() if value is not None}
    return open_generator(Path(folder), meta, backend, given)


def sample_flow(config: SampleFlowConfig) -> Report:
    """Write a grid PNG and/or one PNG per image; the report lists what was written."""
    from dlkit.core.artifacts import check_output_file

    if config.out is not None:  # checked before any work, so a failure writes nothing
        check_output_file("--out", config.out, inputs=[config.model])
    if config.out_dir is not None:
        check_output_file("--out-dir", config.out_dir, folder=True, inputs=[config.model])
    gen = load_flow(config.model, config.backend, steps=config.steps, solver=config.solver,
                    guidance=config.guidance)
    written = write_samples(gen, config.count, config.seed, config.label, config.out,
                            config.out_dir)
    return Report("sample-flow", {}, sample_lines(written), written)
