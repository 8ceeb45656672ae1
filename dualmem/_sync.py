"""Run the async implementation from sync code: one background event loop, one code path.

Every public sync method is `run_sync(self.a<method>(...))`, so sync and async share the same
implementation. The loop lives in a daemon thread, which also makes the sync API usable from
inside a running event loop (Jupyter, async frameworks calling sync tools).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="dualmem-loop", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on the background loop and return its result."""
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("a sync dualmem method was called from dualmem's own loop; await the a* twin")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()
