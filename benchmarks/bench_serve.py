"""`dlkit serve` under load: requests/s and latency for 1 and 16 concurrent clients (issue 28).

    DLKIT_DATA=../shared/datasets .venv/bin/python benchmarks/bench_serve.py [--seconds 10]

Trains the digits classifier (`train-mnist --dataset digits`, bundled with scikit-learn) once,
then serves it twice, from its `model.tflite` (`--backend litert`) and from TensorFlow
(`--backend tensorflow`), each in its own `dlkit serve` process on 127.0.0.1. Against each,
for 1 and for 16 concurrent clients (keep-alive connections from one asyncio load generator in
this process), it sends one real test digit per request for `--seconds`, first as
TensorFlow Serving's `:predict` (a JSON instance of 28x28 pixels), then as `:classify` (the PNG
file's bytes), and prints requests/s and the p50/p99 latency, plus how long each server took
from its start to its first answer. Goal (digits, this 2-core machine): >= 300 requests/s and
p99 <= 50 ms with 16 clients, ready within 1 s on LiteRT. Results:
`benchmarks/results/serve.json`. Loopback only; every loop is bounded by `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import RESULTS, dlkit

CLIENTS = (1, 16)
GOAL_RPS, GOAL_P99_MS, GOAL_READY_S = 300.0, 50.0, 1.0


def request_bytes(port: int, path: str, body: bytes, content_type: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}"
            f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def client(port: int, payloads: list[bytes], stop: float, latencies: list[float],
                 errors: list[str]) -> None:
    """One keep-alive connection sending requests back to back until `stop`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < stop:
            start = time.perf_counter()
            writer.write(payloads[i % len(payloads)])
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(body.decode()[:200])
            i += 1
    finally:
        writer.close()


async def load(port: int, payloads: list[bytes], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    stop = start + seconds
    await asyncio.gather(*(client(port, payloads[c::clients] or payloads, stop, latencies,
                                  errors) for c in range(clients)))
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "requests_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99))}


def start_server(model: Path, backend: str, log: Path) -> tuple[subprocess.Popen, int, float]:
    """`dlkit serve` on a free port, its stderr in `log`; (process, port, seconds from the
    start to the first answer)."""
    import urllib.request

    start = time.perf_counter()
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "dlkit", "serve", "--model",
                                 f"digits={model}", "--port", "0", "--backend", backend],
                                stderr=stderr, text=True)
    deadline = start + 120
    while (found := re.search(r"serving on http://127\.0\.0\.1:(\d+)", log.read_text())) is None:
        if proc.poll() is not None or time.perf_counter() > deadline:
            raise SystemExit(f"dlkit serve --backend {backend} did not start:\n"
                             f"{log.read_text()}")
        time.sleep(0.01)
    port = int(found.group(1))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/digits") as answer:
        answer.read()
    return proc, port, time.perf_counter() - start


def payloads(port: int, count: int = 64) -> dict[str, list[bytes]]:
    """One real digit per request: a :predict JSON instance and a :classify PNG."""
    import cv2
    from sklearn.datasets import load_digits

    digits = load_digits()
    out: dict[str, list[bytes]] = {"predict": [], "classify": []}
    for image in digits.images[-count:]:
        pixels = (image * 16).clip(0, 255).astype(np.uint8)
        big = cv2.resize(pixels, (28, 28), interpolation=cv2.INTER_CUBIC)
        instance = {"instances": [big[..., None].astype(int).tolist()]}
        out["predict"].append(request_bytes(port, "/v1/models/digits:predict",
                                            json.dumps(instance).encode(), "application/json"))
        png = cv2.imencode(".png", pixels)[1].tobytes()
        out["classify"].append(request_bytes(port, "/v1/models/digits:classify", png,
                                             "image/png"))
    return out


def row(figure: str, value: float, goal: str = "", ok: bool | None = None,
        note: str = "") -> dict:
    return {"figure": figure, "value": round(value, 2), "goal": goal,
            "ok": "" if ok is None else ("yes" if ok else "NO"), "note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per measured row")
    args = parser.parse_args()
    model = Path(tempfile.mkdtemp(prefix="bench-serve-")) / "digits"
    dlkit("train-mnist", "--dataset", "digits", "--epochs", "3", "-o", str(model))
    load_before = os.getloadavg()[0]
    rows, results = [], {}
    for backend in ("litert", "tensorflow"):
        proc, port, ready = start_server(model, backend, model.parent / f"{backend}.log")
        results[backend] = {"ready_seconds": ready, "runs": []}
        lite = backend == "litert"
        rows.append(row(f"{backend}: seconds from start to the first answer", ready,
                        f"<= {GOAL_READY_S:g}" if lite else "",
                        ready <= GOAL_READY_S if lite else None))
        try:
            bodies = payloads(port)
            for route in ("predict", "classify"):
                for clients in CLIENTS:
                    asyncio.run(load(port, bodies[route], clients, 1.0))  # warm-up
                    run = asyncio.run(load(port, bodies[route], clients, args.seconds))
                    results[backend]["runs"].append({"route": route, **run})
                    goal = lite and clients == max(CLIENTS)
                    met = (run["requests_per_s"] >= GOAL_RPS and run["p99_ms"] <= GOAL_P99_MS
                           and not run["errors"])
                    note = f"p50 {run['p50_ms']:.1f} ms, p99 {run['p99_ms']:.1f} ms"
                    if run["errors"]:
                        note += f", {run['errors']} errors: {run['first_error']}"
                    rows.append(row(f"{backend} :{route}, {clients} client(s): requests/s",
                                    run["requests_per_s"],
                                    f">= {GOAL_RPS:g}, p99 <= {GOAL_P99_MS:g} ms" if goal else "",
                                    met if goal else None, note))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    width = max(len(r["figure"]) for r in rows)
    print(f"{'figure':<{width}}  {'value':>8}  {'goal':>24}  {'ok':>3}  note")
    for r in rows:
        print(f"{r['figure']:<{width}}  {r['value']:>8.2f}  {r['goal']:>24}  {r['ok']:>3}  "
              f"{r['note']}")
    print(f"load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
          f"{os.cpu_count()} CPU cores; {args.seconds:g} s per row; one image per request")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve.json").write_text(json.dumps({"rows": rows, **results}, indent=2))


if __name__ == "__main__":
    main()
