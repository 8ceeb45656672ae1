"""`CachedLLM`: a SQLite response cache in front of any `BaseLLM`.

The key is a hash of the model's name and the full request (messages, task, sampling
parameters, seed, logprob settings), so a rerun of a benchmark costs nothing and gives the same
answers, and an identical call made by two modes (the fast answer inside a gated run) is paid
once. A cached completion keeps its original token usage, so token accounting stays true.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ..llm.base import BaseLLM, ChatRequest, Completion

__all__ = ["CachedLLM", "count_hits", "request_key"]

# per-task hit counter: each question runs in its own asyncio task (and the threads and
# sub-tasks it starts copy the context), so concurrent questions count their own hits
_HITS: ContextVar[list[int] | None] = ContextVar("dualmem_cache_hits", default=None)


@contextmanager
def count_hits() -> Iterator[list[int]]:
    """`with count_hits() as hits:` ... `hits[0]` is the cache hits made inside the block."""
    counter = [0]
    token = _HITS.set(counter)
    try:
        yield counter
    finally:
        _HITS.reset(token)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key        TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    task       TEXT NOT NULL,
    completion TEXT NOT NULL,
    created    REAL NOT NULL
)
"""


def request_key(model: str, request: ChatRequest) -> str:
    payload = json.dumps(
        {"model": model, "request": request.model_dump(mode="json")}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class CachedLLM(BaseLLM):
    """Wraps `inner`; misses go to `inner.acomplete` (its retries and timeout apply)."""

    def __init__(self, inner: BaseLLM, path: str | Path) -> None:
        # the inner model retries and times out on its own: no second layer here
        super().__init__(max_retries=0, timeout=inner.timeout * (inner.max_retries + 1) + 60)
        self.inner = inner
        self.name = inner.name
        self.context_tokens = inner.context_tokens
        self.supports_logprobs = inner.supports_logprobs
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:
        # anything backend-specific (e.g. LocalLLM.load) is the inner model's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def _acomplete(self, request: ChatRequest) -> Completion:
        key = request_key(self.inner.name, request)
        with self._lock:
            row = self._db.execute("SELECT completion FROM responses WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.hits += 1
            if (counter := _HITS.get()) is not None:
                counter[0] += 1
            return Completion.model_validate_json(row[0])
        completion = await self.inner.acomplete(request)
        self.misses += 1
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                (key, self.inner.name, request.task, completion.model_dump_json(), time.time()),
            )
            self._db.commit()
        return completion

    def close(self) -> None:
        with self._lock:
            self._db.close()
