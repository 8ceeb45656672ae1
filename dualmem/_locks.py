"""Async locks by key (a partition) that every event loop of the process shares.

Sync methods run on dualmem's own loop and async methods on the caller's, so the extraction
of one partition may be awaited from two loops at once, and an `asyncio.Lock` belongs to one
loop. Here a waiter parks on a future of its own loop and the task that releases hands the
lock over with `call_soon_threadsafe`:
- waiting never occupies a thread (a thread lock awaited through `asyncio.to_thread` used up
  the default executor, and 7 concurrent adds of one user then hung the whole process);
- a waiter cancelled at any moment either leaves the queue or passes on the lock it was
  just handed, and a holder releases in `finally`, so cancellation never leaves it held.
The thread lock inside guards the bookkeeping only; it is never held across an await.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

__all__ = ["KeyedLock"]


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


class KeyedLock:
    """One async mutex per key, shared by tasks on any event loop, FIFO among waiters."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._holders: dict[str, asyncio.AbstractEventLoop] = {}
        self._waiters: dict[str, deque[_Waiter]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        await self._acquire(key)
        try:
            yield
        finally:
            self._release(key)

    def locked(self, key: str) -> bool:
        with self._guard:
            return key in self._holders

    async def _acquire(self, key: str) -> None:
        loop = asyncio.get_running_loop()
        with self._guard:
            holder = self._holders.get(key)
            if holder is None or holder.is_closed():  # a closed loop's task can never release
                self._holders[key] = loop
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.setdefault(key, deque()).append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._guard:
                granted = waiter.granted
                if not granted:
                    self._forget(key, waiter)
            if granted:  # handed the lock as we were cancelled: pass it on
                self._release(key)
            raise

    def _release(self, key: str) -> None:
        with self._guard:
            queue = self._waiters.get(key, deque())
            while queue:
                waiter = queue.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # the waiter's loop is closed
                    continue
                waiter.granted = True
                self._holders[key] = waiter.loop
                break
            else:
                del self._holders[key]
            if not queue:
                self._waiters.pop(key, None)

    def _forget(self, key: str, waiter: _Waiter) -> None:
        queue = self._waiters[key]
        queue.remove(waiter)
        if not queue:
            del self._waiters[key]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled waiter sees `granted` and passes the lock on
        future.set_result(None)
