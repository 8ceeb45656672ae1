"""Background extraction: `add(..., background=True)` returns once the turns are committed.

The queue holds no state of its own that a crash could lose: the history marks each turn
`pending` until it is indexed, and the worker reads its work from there. So turns that were
never extracted (the process died, the model failed) are picked up again by the next
`ExtractionQueue.start` on the same store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable

from .._sync import run_sync
from ..history.base import HistoryStore
from ..types import Scope, Turn

__all__ = ["ExtractionQueue"]

log = logging.getLogger("dualmem")

#: turns taken per round (two extraction batches): `close` waits for at most one round
ROUND_TURNS = 20

#: extracts one scope's turns and marks them extracted; returns an error message or None
Extract = Callable[[list[Turn], Scope], Awaitable[str | None]]


class ExtractionQueue:
    """One worker thread that extracts the history's pending turns, oldest first."""

    def __init__(self, history: HistoryStore, extract: Extract) -> None:
        self._history = history
        self._extract = extract
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._wanted = False
        self._closed = False
        #: turn id -> error, for turns whose extraction failed in this process: not retried
        #: until the next start, so a model that keeps failing cannot spin the worker
        self.failed: dict[str, str] = {}

    def start(self) -> None:
        """Wake the worker (starting it if needed) to extract whatever is pending."""
        with self._cond:
            if self._closed:
                return
            self._wanted = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="dualmem-extract", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the worker has nothing left to try; False if `timeout` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._thread is not None and (self._busy or self._wanted):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Stop after the round in progress (its turns stay pending if it is cut short)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _next(self) -> tuple[list[Turn], Scope] | None:
        waiting = [t for t in self._history.pending(limit=ROUND_TURNS + len(self.failed))
                   if t.id not in self.failed]
        if not waiting:
            return None
        first = waiting[0]
        scope = Scope(user_id=first.user_id, agent_id=first.agent_id, session_id=first.session_id)
        same = [t for t in waiting if (t.user_id, t.agent_id, t.session_id) ==
                (first.user_id, first.agent_id, first.session_id)]
        return same[:ROUND_TURNS], scope

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._wanted and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._busy = self._wanted = False
                    self._cond.notify_all()
                    return
                self._busy, self._wanted = True, False
            try:
                while not self._closed and (job := self._next()) is not None:
                    turns, scope = job
                    error = run_sync(self._extract(turns, scope))
                    if error:
                        self.failed.update((t.id, error) for t in turns)
            except Exception as e:  # a storage fault: log it, keep the worker for the next add
                log.warning("background extraction stopped: %s", e)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
