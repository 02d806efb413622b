"""`dlkit sample-vae`: decode random latent vectors into new images, written as one grid PNG.

The latent vectors come from NumPy's seeded generator, so the same `--seed` gives the same
images in any process, on either `--backend` (LiteRT runs the folder's `model.tflite` without
importing TensorFlow). The grid is checked writable before the model loads and written
atomically.
"""

from __future__ import annotations

import time

import numpy as np

from dlkit.core.console import Report
from dlkit.vae.config import SampleVaeConfig


def sample_vae(config: SampleVaeConfig) -> Report:
    """Draw `count` latent vectors from N(0, I), decode them and write one grid PNG."""
    from dlkit.core import plots
    from dlkit.core.artifacts import check_output_file, load_metadata
    from dlkit.core.errors import UsageError
    from dlkit.core.serving import open_model

    meta = load_metadata(config.model, "train-vae")
    check_output_file("--out", config.out, inputs=[config.model])
    out = config.out.expanduser()
    decoder = open_model(config.model, config.backend, meta=meta)
    latent_dim = int(meta.get("latent_dim", 0) or 0)
    if latent_dim < 1 or decoder.input_shapes != [(latent_dim,)]:
        raise UsageError(f"{config.model}: metadata.json's latent_dim {meta.get('latent_dim')!r} "
                         "does not match the model; retrain it")
    rng = np.random.default_rng(config.seed)
    z = rng.standard_normal((config.count, latent_dim)).astype(np.float32)
    started = time.perf_counter()
    images = plots.pixels_to_uint8(decoder(z))
    plots.save_grid(images, out, config.columns, scale=1)
    result = {"grid": str(out), "count": config.count, "seed": config.seed,
              "latent_dim": latent_dim, "seconds": time.perf_counter() - started,
              "backend": decoder.backend}
    return Report("sample-vae", {}, str(out), result)
