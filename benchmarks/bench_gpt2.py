"""Issue 13's figures: a GPT-2-base-sized model (124M parameters, random weights: real ones cannot
be downloaded here), streamed by dlkit against keras-hub's own `generate()`, side by side.

- `generate-text` streaming (dlkit's `CachedDecoder`, the code `generate-text --model PRESET`
  runs): time to first token, tokens/s after it, the same on a second sample (warm), peak memory;
- keras-hub's `generate()` with the greedy sampler for the same prompt and length: cold (its
  first call, compiling) and warm, peak memory;
- one fine-tuning step (AdamW, batch 4 x 128 tokens), the whole model and with `--lora 4`;
- the end-to-end CLI: `dlkit generate-text --model PRESET --length N` wall time.

Each figure comes from its own process (so peak memory is that process's), run one after
another on the same preset. Ends with the ratio dlkit/keras-hub of the warm tokens/s.

    python benchmarks/bench_gpt2.py [--tokens 50] [--rounds 2]

Prints a table and writes benchmarks/results/gpt2-TOKENS-tokens.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PROMPT = "The meaning of life is"
GPT2_BASE = {"layers": 12, "dim": 768, "heads": 12, "context": 1024}


def build_preset(folder: Path) -> None:
    """A random GPT-2 base: 12 layers, width 768, a 50,257-token vocabulary."""
    from hub_presets import bpe_vocabulary, save_gpt2_preset

    vocab, _ = bpe_vocabulary()
    save_gpt2_preset(folder, extra_tokens=50257 - len(vocab), **GPT2_BASE)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_stream(preset: str, tokens: int) -> dict:
    """dlkit's streaming decoder: time to first token and tokens/s after it, cold and warm."""
    from dlkit.causal_lm.generate import open_pretrained
    from dlkit.core.sampling import Sampler

    gen = open_pretrained(preset)
    gen.stops = set()  # random weights: never stop early, both sides make `tokens` tokens
    gen.prepare(PROMPT, tokens)
    runs = []
    for _ in range(2):
        stamps: list[float] = []
        greedy = Sampler(greedy=True)

        def timed(logits, greedy=greedy, stamps=stamps):
            stamps.append(time.perf_counter())
            return greedy(logits)

        start = time.perf_counter()
        text = "".join(gen.sample(timed))
        end = time.perf_counter()
        runs.append({"first_token_s": stamps[0] - start,
                     "tokens_per_s_after_first": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
                     "total_s": end - start, "tokens": len(stamps), "text": text})
    return {"cold": runs[0], "warm": runs[1], "peak_mib": peak_mib()}


def worker_keras(preset: str, tokens: int) -> dict:
    """keras-hub's own generate(), greedy, for the same prompt and length: cold, then warm."""
    from dlkit.causal_lm.decoding import prompt_ids
    from dlkit.pretrained.hub import Preset, load_task

    task = load_task(Preset(preset, Path(preset), "local folder"), "CausalLM")
    task.compile(sampler="greedy")
    length = len(prompt_ids(task, PROMPT)) + tokens
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        text = task.generate(PROMPT, max_length=length, stop_token_ids=None)
        seconds = time.perf_counter() - start
        runs.append({"total_s": seconds, "tokens_per_s": tokens / seconds, "text": text})
    return {"cold": runs[0], "warm": runs[1], "peak_mib": peak_mib()}


def worker_step(preset: str, lora: int) -> dict:
    """Seconds per AdamW step on batch 4 x 128 tokens (after one warm-up step)."""
    import keras
    import numpy as np

    from dlkit.pretrained.hub import Preset, load_task

    task = load_task(Preset(preset, Path(preset), "local folder"), "CausalLM")
    task.preprocessor = None
    if lora:
        task.backbone.enable_lora(lora)
    task.compile(optimizer=keras.optimizers.AdamW(5e-5),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 weighted_metrics=[])
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50257, (4, 129)).astype("int32")
    x = {"token_ids": ids[:, :-1], "padding_mask": np.ones((4, 128), bool)}
    task.train_on_batch(x, ids[:, 1:])
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        task.train_on_batch(x, ids[:, 1:])
        seconds.append(time.perf_counter() - start)
    trainable = sum(int(np.prod(w.shape)) for w in task.trainable_weights)
    return {"step_s": statistics.median(seconds), "trainable": trainable,
            "parameters": task.count_params(), "peak_mib": peak_mib()}


def run_worker(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *args], capture_output=True,
                         text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_seconds(preset: str, tokens: int) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dlkit", "generate-text", "-m", preset,
                          "--prompt", PROMPT, "-n", str(tokens), "--sampler", "greedy", "-q"],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"generate-text failed:\n{out.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worker", nargs="+")
    args = parser.parse_args()
    if args.worker:
        kind, preset, number = args.worker
        work = {"stream": worker_stream, "keras": worker_keras, "step": worker_step}[kind]
        print(json.dumps(work(preset, int(number)), default=str))
        return

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        preset = str(Path(tmp) / "gpt2_random_base")
        start = time.perf_counter()
        build_preset(Path(preset))
        built = time.perf_counter() - start
        rounds = []
        for _ in range(args.rounds):  # alternating, so both see the same machine load
            rounds.append({"dlkit": run_worker("stream", preset, str(args.tokens)),
                           "keras_hub": run_worker("keras", preset, str(args.tokens))})
        cli = cli_seconds(preset, args.tokens)
        full = run_worker("step", preset, "0")
        lora = run_worker("step", preset, "4")
    load_after = os.getloadavg()

    def med(side: str, phase: str, key: str) -> float:
        return statistics.median(r[side][phase][key] for r in rounds)

    same = all(r["dlkit"]["warm"]["text"] in r["keras_hub"]["warm"]["text"] for r in rounds)
    result = {
        "tokens": args.tokens, "rounds": args.rounds, "preset_build_s": built,
        "parameters": full["parameters"],
        "dlkit": {"first_token_s_cold": med("dlkit", "cold", "first_token_s"),
                  "tokens_per_s_cold": med("dlkit", "cold", "tokens_per_s_after_first"),
                  "first_token_s_warm": med("dlkit", "warm", "first_token_s"),
                  "tokens_per_s_warm": med("dlkit", "warm", "tokens_per_s_after_first"),
                  "total_s_cold": med("dlkit", "cold", "total_s"),
                  "total_s_warm": med("dlkit", "warm", "total_s"),
                  "peak_mib": statistics.median(r["dlkit"]["peak_mib"] for r in rounds)},
        "keras_hub": {"total_s_cold": med("keras_hub", "cold", "total_s"),
                      "total_s_warm": med("keras_hub", "warm", "total_s"),
                      "tokens_per_s_cold": med("keras_hub", "cold", "tokens_per_s"),
                      "tokens_per_s_warm": med("keras_hub", "warm", "tokens_per_s"),
                      "peak_mib": statistics.median(r["keras_hub"]["peak_mib"]
                                                    for r in rounds)},
        "same_greedy_text": same, "cli_wall_s": cli,
        "finetune_step_s": {"full": full["step_s"], "lora4": lora["step_s"]},
        "trainable": {"full": full["trainable"], "lora4": lora["trainable"]},
        "step_peak_mib": {"full": full["peak_mib"], "lora4": lora["peak_mib"]},
        "load_average": {"before": load, "after": load_after},
    }
    d, k = result["dlkit"], result["keras_hub"]
    result["ratio_warm_total"] = k["total_s_warm"] / d["total_s_warm"]
    print(f"GPT-2 base size ({result['parameters']:,} parameters, random weights), greedy, "
          f"{args.tokens} tokens after a {len(PROMPT)}-character prompt, median of "
          f"{args.rounds} rounds; load {load[0]:.2f} -> {load_after[0]:.2f}")
    print(f"{'':34}{'dlkit streaming':>18}{'keras-hub generate':>20}")
    print(f"{'first token, cold (s)':34}{d['first_token_s_cold']:>18.2f}{'-':>20}")
    print(f"{'first token, warm (s)':34}{d['first_token_s_warm']:>18.2f}{'-':>20}")
    print(f"{'tokens/s after the first, cold':34}{d['tokens_per_s_cold']:>18.1f}{'-':>20}")
    print(f"{'tokens/s after the first, warm':34}{d['tokens_per_s_warm']:>18.1f}{'-':>20}")
    print(f"{'all tokens, cold (s)':34}{d['total_s_cold']:>18.2f}{k['total_s_cold']:>20.2f}")
    print(f"{'all tokens, warm (s)':34}{d['total_s_warm']:>18.2f}{k['total_s_warm']:>20.2f}")
    print(f"{'tokens/s overall, warm':34}{args.tokens / d['total_s_warm']:>18.1f}"
          f"{k['tokens_per_s_warm']:>20.1f}")
    print(f"{'peak memory (MiB)':34}{d['peak_mib']:>18.0f}{k['peak_mib']:>20.0f}")
    print(f"dlkit warm speed / keras-hub warm speed: {result['ratio_warm_total']:.2f}x; same "
          f"greedy text: {same}; `dlkit generate-text -n {args.tokens}` wall time "
          f"{cli:.1f} s (process start, load, compile, generate)")
    print(f"fine-tuning step (batch 4 x 128 tokens): full {full['step_s']:.2f} s "
          f"({full['trainable']:,} trained, peak {full['peak_mib']:.0f} MiB); --lora 4 "
          f"{lora['step_s']:.2f} s ({lora['trainable']:,} trained, peak "
          f"{lora['peak_mib']:.0f} MiB)")
    out = ROOT / "benchmarks" / "results" / f"gpt2-{args.tokens}-tokens.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
