"""Issue 13's figures: a GPT-2-base-sized model (124M parameters, random weights: real ones cannot
be downloaded here), streamed by dlkit against keras-hub's own `generate()`, side by side.

- `generate-text` streaming (dlkit's `CachedDecoder`, the code `generate-text --model PRESET`
  runs): time to the first text, tokens/s after it, the longest wait between two pieces of
  text (seconds and tokens), the same on a second sample (warm), process CPU seconds, peak
  memory;
- keras-hub's `generate()` with the greedy sampler for the same prompt and length: cold (its
  first call, compiling) and warm, process CPU seconds, peak memory;
- with `--baseline DIR` (a checkout of an earlier commit, e.g. a `git worktree`), that
  checkout's streaming too, in the same rounds;
- one fine-tuning step (AdamW, batch 4 x 128 tokens), the whole model and with `--lora 4`;
- the end-to-end CLI: `dlkit generate-text --model PRESET --length N` wall time.

Each figure comes from its own process (so peak memory is that process's), run one after
another on the same preset, the sides alternating round by round. Ends with the ratio
dlkit/keras-hub of the warm speed: by wall time, and by the process's CPU seconds, which a
busy machine disturbs far less (wall times on a shared 2-core machine vary by 2x from run to
run; CPU seconds by a few %).

    python benchmarks/bench_gpt2.py [--tokens 50] [--rounds 3] [--baseline DIR]

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


def cpu_seconds() -> float:
    """User plus system CPU seconds of this process (every thread) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def most_at_once(stamps: list[tuple[float, int]], together_s: float = 0.005) -> int:
    """The most tokens whose text arrived together: pieces less than `together_s` apart count
    as one arrival (a call that made several tokens hands them over at once)."""
    most, since, previous = 0, 0, None
    for when, count in stamps:
        if previous is not None and when - previous[0] >= together_s:
            since = previous[1]
        most, previous = max(most, count - since), (when, count)
    return most


def worker_stream(preset: str, tokens: int) -> dict:
    """dlkit's streaming decoder, as the user sees it: when each piece of text arrives (time
    to the first, tokens/s after it, the longest wait), cold and warm."""
    from dlkit.core.sampling import Sampler

    try:
        from dlkit.text.pretrained import open_pretrained
    except ImportError:  # a --baseline checkout from before dlkit/text/ (issue 29)
        from dlkit.causal_lm.generate import open_pretrained

    gen = open_pretrained(preset)
    gen.stops = set()  # random weights: never stop early, both sides make `tokens` tokens
    gen.prepare(PROMPT, tokens)
    runs = []
    for _ in range(2):
        stamps: list[tuple[float, int]] = []  # (when, tokens generated so far) per piece
        text, before = "", gen.tokens
        start, cpu = time.perf_counter(), cpu_seconds()
        for piece in gen.sample(Sampler(greedy=True)):
            stamps.append((time.perf_counter(), gen.tokens - before))
            text += piece
        end = time.perf_counter()
        (first, first_count), (last, last_count) = stamps[0], stamps[-1]
        waits = [b[0] - a[0] for a, b in zip(stamps, stamps[1:], strict=False)]
        runs.append({"first_token_s": first - start,
                     "tokens_per_s_after_first": (last_count - first_count) / max(last - first,
                                                                                  1e-9),
                     "longest_wait_s": max(waits, default=0.0),
                     "most_tokens_at_once": most_at_once(stamps),
                     "total_s": end - start, "cpu_s": cpu_seconds() - cpu,
                     "tokens": gen.tokens - before, "text": text})
    return {"cold": runs[0], "warm": runs[1], "peak_mib": peak_mib()}


def worker_keras(preset: str, tokens: int) -> dict:
    """keras-hub's own generate(), greedy, for the same prompt and length: cold, then warm."""
    from dlkit.core.hub import Preset, load_task
    from dlkit.text.pretrained_decoding import prompt_ids

    task = load_task(Preset(preset, Path(preset), "local folder"), "CausalLM")
    task.compile(sampler="greedy")
    length = len(prompt_ids(task, PROMPT)) + tokens
    runs = []
    for _ in range(2):
        start, cpu = time.perf_counter(), cpu_seconds()
        text = task.generate(PROMPT, max_length=length, stop_token_ids=None)
        seconds = time.perf_counter() - start
        runs.append({"total_s": seconds, "tokens_per_s": tokens / seconds, "text": text,
                     "cpu_s": cpu_seconds() - cpu})
    return {"cold": runs[0], "warm": runs[1], "peak_mib": peak_mib()}


def worker_step(preset: str, lora: int) -> dict:
    """Seconds per AdamW step on batch 4 x 128 tokens (after one warm-up step)."""
    import keras
    import numpy as np

    from dlkit.core.hub import Preset, load_task

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


def run_worker(*args: str, checkout: Path | None = None) -> dict:
    """A worker in its own process; `checkout`: import dlkit from that folder instead."""
    extra = ["--checkout", str(checkout)] if checkout is not None else []
    out = subprocess.run([sys.executable, __file__, "--worker", *args, *extra],
                         capture_output=True, text=True, cwd=ROOT)
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier commit whose "
                        "streaming runs beside this one's")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--checkout", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.checkout is not None:
        sys.path.insert(0, str(args.checkout.resolve()))
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
            one = {"dlkit": run_worker("stream", preset, str(args.tokens)),
                   "keras_hub": run_worker("keras", preset, str(args.tokens))}
            if args.baseline is not None:
                one["previous"] = run_worker("stream", preset, str(args.tokens),
                                             checkout=args.baseline)
            rounds.append(one)
        cli = cli_seconds(preset, args.tokens)
        full = run_worker("step", preset, "0")
        lora = run_worker("step", preset, "4")
    load_after = os.getloadavg()

    def med(side: str, phase: str, key: str) -> float:
        return statistics.median(r[side][phase][key] for r in rounds)

    def streaming(side: str) -> dict:
        figures = {f"{key}_{phase}": med(side, phase, key) for phase in ("cold", "warm")
                   for key in ("first_token_s", "tokens_per_s_after_first", "longest_wait_s",
                               "most_tokens_at_once", "total_s", "cpu_s")}
        return {**figures, "peak_mib": statistics.median(r[side]["peak_mib"] for r in rounds)}

    sides = ["dlkit", *(["previous"] if args.baseline is not None else [])]
    same = all(r[side]["warm"]["text"] in r["keras_hub"]["warm"]["text"] for r in rounds
               for side in sides)
    result = {
        "tokens": args.tokens, "rounds": args.rounds, "preset_build_s": built,
        "parameters": full["parameters"],
        **{side: streaming(side) for side in sides},
        "keras_hub": {"total_s_cold": med("keras_hub", "cold", "total_s"),
                      "total_s_warm": med("keras_hub", "warm", "total_s"),
                      "cpu_s_warm": med("keras_hub", "warm", "cpu_s"),
                      "tokens_per_s_cold": med("keras_hub", "cold", "tokens_per_s"),
                      "tokens_per_s_warm": med("keras_hub", "warm", "tokens_per_s"),
                      "peak_mib": statistics.median(r["keras_hub"]["peak_mib"]
                                                    for r in rounds)},
        "rounds_raw": [{side: {phase: {k: v for k, v in r[side][phase].items() if k != "text"}
                               for phase in ("cold", "warm")} for side in r} for r in rounds],
        "same_greedy_text": same, "cli_wall_s": cli,
        "finetune_step_s": {"full": full["step_s"], "lora4": lora["step_s"]},
        "trainable": {"full": full["trainable"], "lora4": lora["trainable"]},
        "step_peak_mib": {"full": full["peak_mib"], "lora4": lora["peak_mib"]},
        "load_average": {"before": load, "after": load_after},
        "baseline": str(args.baseline) if args.baseline is not None else None,
    }
    k = result["keras_hub"]
    for side in sides:
        result[side]["ratio_warm_wall"] = k["total_s_warm"] / result[side]["total_s_warm"]
        result[side]["ratio_warm_cpu"] = k["cpu_s_warm"] / result[side]["cpu_s_warm"]
    print_table(result, args.tokens, sides, load, load_after, args.baseline)
    print(f"same greedy text as keras-hub: {same}; `dlkit generate-text -n {args.tokens}` "
          f"wall time {cli:.1f} s (process start, load, compile, generate)")
    print(f"fine-tuning step (batch 4 x 128 tokens): full {full['step_s']:.2f} s "
          f"({full['trainable']:,} trained, peak {full['peak_mib']:.0f} MiB); --lora 4 "
          f"{lora['step_s']:.2f} s ({lora['trainable']:,} trained, peak "
          f"{lora['peak_mib']:.0f} MiB)")
    out = ROOT / "benchmarks" / "results" / f"gpt2-{args.tokens}-tokens.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")


def print_table(result: dict, tokens: int, sides: list[str], load: tuple, load_after: tuple,
                baseline: Path | None) -> None:
    """The streaming figures, one column per side, keras-hub's last."""
    names = {"dlkit": "dlkit streaming", "previous": "previous streaming"}
    print(f"GPT-2 base size ({result['parameters']:,} parameters, random weights), greedy, "
          f"{tokens} tokens after a {len(PROMPT)}-character prompt, median of "
          f"{result['rounds']} rounds; load average {load[0]:.2f} -> {load_after[0]:.2f}; "
          f"{os.cpu_count()} CPU cores" + (f"; previous: {baseline}" if baseline else ""))
    print(f"{'':36}" + "".join(f"{names[s]:>20}" for s in sides) + f"{'keras-hub generate':>20}")
    k = result["keras_hub"]
    rows = [("first text, cold (s)", "first_token_s_cold", ".2f", None),
            ("first text, warm (s)", "first_token_s_warm", ".2f", None),
            ("tokens/s after the first, warm", "tokens_per_s_after_first_warm", ".1f", None),
            ("longest wait between pieces (s)", "longest_wait_s_warm", ".2f", None),
            ("most tokens arriving at once", "most_tokens_at_once_warm", ".0f", None),
            ("all tokens, cold (s)", "total_s_cold", ".2f", "total_s_cold"),
            ("all tokens, warm (s)", "total_s_warm", ".2f", "total_s_warm"),
            ("CPU seconds, warm", "cpu_s_warm", ".2f", "cpu_s_warm"),
            ("peak memory (MiB)", "peak_mib", ".0f", "peak_mib"),
            ("speed / keras-hub's, warm wall", "ratio_warm_wall", ".3f", None),
            ("speed / keras-hub's, warm CPU s", "ratio_warm_cpu", ".3f", None)]
    for label, key, form, keras_key in rows:
        theirs = format(k[keras_key], form) if keras_key else "-"
        print(f"{label:36}" + "".join(f"{format(result[s][key], form):>20}" for s in sides) +
              f"{theirs:>20}")


if __name__ == "__main__":
    main()
