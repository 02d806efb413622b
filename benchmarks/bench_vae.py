"""Issue 6's VAE figure: test negative ELBO (nats per image) of `train-vae`'s convolutional VAE
on the real Fashion-MNIST, next to the dense (fully-connected) VAE baseline trained for the same
time budget in the same run. The convolutional one must be lower.

    DLKIT_DATA=../shared/datasets python benchmarks/bench_vae.py [--minutes M] [--quick]

Both models run with train-vae's defaults (batch 128, learning rate 2e-3 with warm-up and a
cosine decay to zero over the budget); `--minutes` is the budget of each (default 15, so the
whole run takes about 31 minutes). On 2 CPU cores the dense VAE is lower at 4 and 8 minutes
each, and the convolutional one at 15: it is still improving when the dense one overfits.
Prints a table and writes benchmarks/results/vae.json. `--quick`
trains on 3,000 images for a few seconds each (a smoke test of the script, not figures).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, dlkit  # noqa: E402 (benchmarks/ is on sys.path)


def option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    quick = "--quick" in sys.argv
    minutes = float(option("--minutes", "0.1" if quick else "15"))
    latent = option("--latent-dim", "16")
    extra = ["--limit", "3000"] if quick else []
    tmp = Path(tempfile.mkdtemp(prefix="dlkit-bench-vae-"))
    t0 = time.time()
    runs = {}
    for arch in ("conv", "dense"):
        runs[arch] = dlkit("train-vae", "--dataset", "fashion-mnist", "--arch", arch,
                           "--latent-dim", latent, "--epochs", "1000", "--max-minutes",
                           str(minutes), *extra, "-o", str(tmp / arch))
    rows = []
    for arch, r in runs.items():
        rows.append({"model": f"{arch} VAE (latent {latent})", "test_neg_elbo": r["test_loss"],
                     "reconstruction": r["test_reconstruction"], "kl": r["test_kl"],
                     "epochs": r["epochs_completed"], "train_seconds": r["train_seconds"],
                     "images_per_second": r["images_per_second"]})
    ok = runs["conv"]["test_loss"] < runs["dense"]["test_loss"]
    print(f"train-vae on fashion-mnist ({runs['conv']['train_examples']:,} train / "
          f"{runs['conv']['test_examples']:,} test), {minutes:g} min budget "
          f"each, {runs['conv']['device']} ({os.cpu_count()} cores)")
    print(f"{'model':<22} {'test -ELBO':>10} {'recon':>8} {'KL':>6} {'epochs':>6} "
          f"{'train s':>8} {'img/s':>7}")
    for r in rows:
        print(f"{r['model']:<22} {r['test_neg_elbo']:>10.2f} {r['reconstruction']:>8.2f} "
              f"{r['kl']:>6.2f} {r['epochs']:>6} {r['train_seconds']:>8.1f} "
              f"{r['images_per_second']:>7.0f}")
    print(f"convolutional below dense at equal time: {'yes' if ok else 'NO'} "
          f"({runs['dense']['test_loss'] - runs['conv']['test_loss']:+.2f} nats per image)")
    print("both: train-vae's defaults (batch 128, learning rate 2e-3 with warm-up and a cosine "
          "decay to 0 over the budget); img/s vary with the machine's load")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("vae-quick.json" if quick else "vae.json")
    out.write_text(json.dumps({"rows": rows, "conv_below_dense": ok, "minutes_each": minutes,
                               "units": "nats per image", "seconds": time.time() - t0,
                               "machine": f"{os.cpu_count()} CPU cores"}, indent=2) + "\n")
    print(f"\nwrote {out} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
