"""A TensorFlow cluster of worker processes on 127.0.0.1, for the multi-worker tests (and
benchmarks/bench_multi_worker.py, which imports it from here).

Each worker is a subprocess given its own TF_CONFIG (the same worker list, its own index) on
ports that were free a moment before; `finish` collects what each printed and kills any left.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(argvs: Sequence[Sequence[str]],
                  envs: Sequence[dict[str, str]] | None = None,
                  cwd: Path | None = None) -> list[subprocess.Popen]:
    """Start `argvs[i]` as worker i of one cluster (in `cwd`), with `envs[i]` added to its
    environment."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(len(argvs))]
    envs = envs or [{}] * len(argvs)
    return [subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**os.environ, **env, "TF_CONFIG": json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})})
        for i, (argv, env) in enumerate(zip(argvs, envs, strict=True))]


def finish(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str, str]]:
    """Wait for every worker: (exit code, stdout, stderr) each, in worker order."""
    results = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=timeout)
            results.append((proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            proc.kill()
    return results
