"""Ctrl-C and SIGTERM handled by a function for the length of a block.

`interrupts_handled_by(handler)` installs `handler` for SIGINT and SIGTERM and puts the previous
handlers back when the block ends. Python lets only the main thread install handlers, so off it
the block runs with the handlers as they are. Used where an interrupt must not cut the work
short: a checkpoint being written (`dlkit.core.checkpoint.deferred_interrupts`) and the HTTP
server's graceful shutdown (`dlkit.serve.server`). Standard library only: the server imports it
without TensorFlow.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_handled_by(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """`handler(signum, frame)` answers SIGINT and SIGTERM inside the block (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in INTERRUPTS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
