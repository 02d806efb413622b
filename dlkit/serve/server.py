"""`dlkit serve`: open the models, listen, answer requests until SIGTERM or Ctrl-C.

The HTTP stack is uvicorn (an ASGI server: HTTP/1.1 keep-alive, graceful shutdown) under
Starlette (routing, requests and JSON responses: `dlkit.serve.app`), both small, widely used
and maintained. Every model is opened before the socket is bound, so a bad `--model` is exit 2
and a client never meets a half-started server; the line `serving on http://HOST:PORT` on
stderr says it is ready (with `--port 0`, the port picked). SIGTERM stops accepting
connections, lets the requests in flight finish and exits 0; Ctrl-C does the same and exits
130 (a second Ctrl-C stops at once).
"""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
import threading
import time
from typing import Any

from dlkit.core.console import Report, info
from dlkit.core.errors import EXIT_INTERRUPTED, UsageError
from dlkit.core.signals import interrupts_handled_by
from dlkit.serve.config import ServeConfig
from dlkit.serve.models import Served, open_served

DRAIN_SECONDS = 30  # the longest a shutdown waits for requests in flight


def serve(config: ServeConfig) -> Report:
    """Serve the models until stopped; the report counts the requests answered."""
    import uvicorn

    from dlkit.serve.app import create_app, stderr_log

    start = time.perf_counter()
    models = {name: open_served(name, source, config.backend)
              for name, source in config.models().items()}
    for served in models.values():
        served.warm_up()
    # Everything alive now (modules, models) lives as long as the server: out of the garbage
    # collector's sight, a full collection no longer walks it in the middle of a request.
    gc.freeze()
    counter = _Counter()
    app = create_app(models, counter.wrap(None if config.quiet else stderr_log))
    sock = _bind(config.host, config.port)
    host, port = sock.getsockname()[:2]
    uv_config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                               timeout_graceful_shutdown=DRAIN_SECONDS, server_header=False)
    server = _Server(uv_config)
    for served in models.values():
        info(f"{served.name}: {served.description} ({served.backend}; "
             f"{' '.join(served.routes)})")
    shown = f"[{host}]" if ":" in host else host
    info(f"serving on http://{shown}:{port} (ready in {time.perf_counter() - start:.2f} s; "
         "SIGTERM or Ctrl-C stops)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    code = EXIT_INTERRUPTED if server.stopped_by == signal.SIGINT else 0
    return Report("dlkit serve", {"requests": counter.count, "models": ", ".join(models),
                                  "address": f"http://{shown}:{port}"}, None,
                  {"requests": counter.count, "models": _described(models),
                   "address": f"http://{shown}:{port}",
                   "seconds": round(time.perf_counter() - start, 3)}, code)


def _described(models: dict[str, Served]) -> list[dict[str, Any]]:
    return [{"name": m.name, "source": m.source, "backend": m.backend,
             "model": m.description, "routes": m.routes} for m in models.values()]


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); exit 2 when the address cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host}: not an address of this machine ({exc.strerror})") \
            from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick "
                         "another --port (0: any free one) or stop what holds it") from None
    sock.set_inheritable(True)
    return sock


class _Counter:
    """Counts the requests answered (through the per-request log hook)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def wrap(self, log: Any) -> Any:
        def counted(line: str) -> None:
            if not line.startswith("error:"):
                with self._lock:
                    self.count += 1
            if log is not None:
                log(line)

        return counted


class _Server:
    """uvicorn's Server with dlkit's signal handling: SIGTERM and SIGINT start a graceful
    shutdown (uvicorn's own would raise the signal again afterwards, and Python's default
    SIGTERM would kill the process mid-request); a second SIGINT forces it."""

    def __init__(self, config: Any) -> None:
        import uvicorn

        server = self

        class Server(uvicorn.Server):
            def capture_signals(self) -> contextlib.AbstractContextManager[None]:
                return interrupts_handled_by(server.handle)

        self.server = Server(config)
        self.stopped_by: int | None = None

    def handle(self, sig: int, frame: Any) -> None:
        if self.server.should_exit and sig == signal.SIGINT:
            self.server.force_exit = True
        self.stopped_by = self.stopped_by or sig
        self.server.should_exit = True

    def run(self, sockets: list[socket.socket]) -> None:
        self.server.run(sockets=sockets)
