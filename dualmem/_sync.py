"""Run the async implementation from sync code: one background event loop, one code path.

Every public sync method is `sync_twin(a<method>)`: it runs `run_sync(self.a<method>(...))`,
so sync and async share the same implementation, and its signature and docstring are the
async method's (ParamSpec), so IDEs and type checkers see them. The loop lives in a daemon
thread, which also makes the sync API usable from inside a running event loop (Jupyter,
async frameworks calling sync tools).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

__all__ = ["run_sync", "sync_twin"]

P = ParamSpec("P")
S = TypeVar("S")
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


def sync_twin(method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]]) -> Callable[Concatenate[S, P], T]:
    """The blocking twin of an async method `a<name>`: `<name> = sync_twin(a<name>)`.

    Same parameters, return type and docstring. The coroutine is created in the caller's
    thread, so a wrong argument raises `TypeError` there, before anything runs.
    """

    @functools.wraps(method)
    def blocking(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(method(self, *args, **kwargs))

    blocking.__name__ = method.__name__.removeprefix("a")
    blocking.__qualname__ = f"{method.__qualname__.rpartition('.')[0]}.{blocking.__name__}".lstrip(".")
    return blocking
