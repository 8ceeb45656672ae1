"""`DualMemory`: the one object everything else (CLI, integrations, benchmarks) uses.

Async is the implementation; each sync method runs its `a*` twin (see `_sync.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from ._sync import run_sync
from .answering.gate import GateConfig, Policy
from .answering.pipeline import Mode, Pipeline
from .backends import make_history, make_index
from .config import Config
from .errors import ConfigError, InvalidInputError, LLMError, ScopeError, StorageError
from .history.base import HistoryStore, TurnQuery
from .index.base import MemoryIndex
from .ingest.extract import ExtractionResult, Extractor, raw_memories
from .ingest.queue import ExtractionQueue
from .inputs import check_id, check_limit, check_text, make_scope, make_turns, parse_timestamp
from .llm.base import BaseLLM
from .types import Answer, Memory, Scope, Turn, Usage

__all__ = ["AddResult", "DualMemory", "ReindexResult"]

log = logging.getLogger("dualmem")



@dataclass
class AddResult:
    """What `add` stored. `error` is set when extraction failed: the turns are kept anyway.

    `pending` lists the ids of turns stored but not yet extracted: queued by
    `background=True`, or left by a failed extraction (the next start retries them).
    Extraction never deletes: `updated` holds memories it superseded or cited again.
    """

    turns: list[Turn]
    added: list[Memory] = field(default_factory=list)
    updated: list[Memory] = field(default_factory=list)
    skipped_duplicates: int = 0
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    pending: list[str] = field(default_factory=list)


@dataclass
class ReindexResult:
    scopes: int = 0
    turns: int = 0
    memories: int = 0
    errors: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


class DualMemory:
    """Long-term memory with a fast path, a quality gate and deliberation over raw history.

    ```python
    from dualmem import DualMemory
    memory = DualMemory()                                  # local model, data in ~/.dualmem
    memory.add("I moved to Paris in 2021.", user_id="alice")
    answer = memory.answer("Where does Alice live?", user_id="alice")
    print(answer.text, answer.path, answer.reason)
    ```
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        path: str | Path | None = None,
        llm: BaseLLM | None = None,
        history: HistoryStore | None = None,
        index: MemoryIndex | None = None,
        **overrides: Any,
    ) -> None:
        if config is None:
            config = Config.from_env(**({"data_dir": Path(path)} if path else {}), **overrides)
        elif path is not None or overrides:
            config = config.model_copy(
                update={**({"data_dir": Path(path)} if path else {}), **overrides}
            )
        self.config = config
        try:
            self.gate_config = GateConfig(**config.gate)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"invalid gate settings {config.gate!r}: {e}") from e
        self._check_data_dir()
        self.history_store = history or make_history(config)
        self.index = index or make_index(config)
        self._llm = llm
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._queue = ExtractionQueue(self.history_store, self._extract_pending)
        if config.extract and self.history_store.pending(limit=1):
            self._queue.start()  # turns a crash or a failed model left unextracted

    def _check_data_dir(self) -> None:
        if self.config.history_url and self.config.index_url:
            return
        d = self.config.data_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as e:
            raise StorageError(
                f"data directory {d} is not writable ({e.strerror}): pass path=... or set "
                "DUALMEM_DATA_DIR to a writable directory"
            ) from e

    @property
    def llm(self) -> BaseLLM:
        """The model, created on first use (so history-only use never loads a model)."""
        if self._llm is None:
            from .llm import make_llm

            self._llm = make_llm(self.config)
        return self._llm

    @contextlib.asynccontextmanager
    async def _lock(self, scope: Scope):
        # extraction of one partition is serialised so reconciliation sees its own writes; a
        # thread lock (awaited off the loop) because sync calls run on dualmem's own loop while
        # async calls run on the caller's, and an asyncio.Lock belongs to one loop
        with self._locks_guard:
            lock = self._locks.setdefault(scope.partition, threading.Lock())
        await asyncio.to_thread(lock.acquire)
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------------ write

    async def aadd(
        self,
        messages: Any,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        timestamp: Any = None,
        extract: bool | None = None,
        background: bool = False,
    ) -> AddResult:
        """Store messages losslessly, then index them (extracted facts or raw turns).

        The turns are committed before any model is called: if extraction fails, the result
        carries the error, the turns stay in the history marked pending, and the next start
        (or `reindex`) retries. `background=True` returns once the turns are committed and
        extracts them in a worker thread (`flush()` waits for it, `pending()` lists what waits).
        """
        scope = make_scope(user_id, agent_id, session_id)
        turns = make_turns(messages, scope, timestamp)
        use_llm = self.config.extract if extract is None else extract
        inserted = await asyncio.to_thread(self.history_store.append, turns, pending=use_llm)
        result = AddResult(turns=inserted, skipped_duplicates=len(turns) - len(inserted))
        if use_llm and background:
            result.pending = [t.id for t in inserted]
            if inserted:
                self._queue.start()
            return result
        to_index = inserted
        if result.skipped_duplicates and not use_llm:
            # a retried add whose first try died after the history write: index what is missing
            new_ids = {t.id for t in inserted}
            skipped = [t.id for t in turns if t.id not in new_ids]
            indexed = {m.id for m in await asyncio.to_thread(self.index.get, skipped, scope)}
            missing = [i for i in skipped if i not in indexed]
            if missing:
                query = TurnQuery(scope=scope, turn_ids=missing)
                stored = await asyncio.to_thread(self.history_store.list, query)
                to_index = inserted + stored
        if not to_index:
            return result
        indexed, result.error = await self._index_turns(to_index, scope, extract)
        result.added, result.updated, result.usage = indexed.added, indexed.updated, indexed.usage
        if result.error and use_llm:
            result.pending = [t.id for t in to_index]
        return result

    async def _index_turns(
        self, turns: list[Turn], scope: Scope, extract: bool | None
    ) -> tuple[ExtractionResult, str | None]:
        """Index turns (raw, or LLM-extracted facts); an extraction failure is returned as an
        error message, with the tokens it spent, never raised: the turns are already stored."""
        use_llm = self.config.extract if extract is None else extract
        if not use_llm or self.config.index_turns:
            # raw turns: the whole index, or beside the facts so nothing extraction missed is lost
            memories = raw_memories(turns)
            await asyncio.to_thread(self.index.upsert, memories)
            if not use_llm:
                return ExtractionResult(added=memories), None
        async with self._lock(scope):
            first = turns[0]
            recent = await asyncio.to_thread(
                self.history_store.list,
                TurnQuery(scope=scope, until=first.timestamp, session_id=first.session_id,
                          limit=9 + len(turns), newest=True),
            )
            known = {t.id for t in turns}
            recent = [t for t in recent if t.id not in known][-9:]
            try:
                result = await Extractor(self.llm, self.index).run(turns, recent, scope)
            except LLMError as e:
                spent = getattr(e, "usage", None)  # a malformed reply still cost tokens
                message = f"extraction failed, {len(turns)} turn(s) kept in history: {e}"
                log.warning(message)
                return ExtractionResult(usage=spent if isinstance(spent, Usage) else Usage()), message
            await asyncio.to_thread(self.history_store.mark_extracted, turns)
            return result, None

    async def _extract_pending(self, turns: list[Turn], scope: Scope) -> str | None:
        """The background worker's job: extract turns the history marks pending."""
        _, error = await self._index_turns(turns, scope, True)
        return error

    async def apending(
        self, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> list[Turn]:
        """Turns stored but not extracted yet (of one scope, or of every scope when none given)."""
        unscoped = user_id is None and agent_id is None and session_id is None
        scope = None if unscoped else make_scope(user_id, agent_id, session_id)
        return await asyncio.to_thread(self.history_store.pending, scope)

    def pending(self, **kwargs: Any) -> list[Turn]:
        return run_sync(self.apending(**kwargs))

    async def aflush(self, timeout: float | None = None) -> bool:
        """Wait for background extraction; False if `timeout` (seconds) ran out first.
        Turns whose extraction failed stay pending (see `pending()`) until the next start."""
        return await asyncio.to_thread(self._queue.flush, timeout)

    def flush(self, timeout: float | None = None) -> bool:
        return self._queue.flush(timeout)

    def add(self, messages: Any, **kwargs: Any) -> AddResult:
        return run_sync(self.aadd(messages, **kwargs))

    # ------------------------------------------------------------------ read

    async def asearch(
        self,
        query: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        k: int | None = None,
    ) -> list[Memory]:
        """The k memories most relevant to the query (hybrid dense + BM25), best first."""
        scope = make_scope(user_id, agent_id, session_id)
        query = check_text(query, "query")
        return await asyncio.to_thread(self.index.search, query, scope, self._check_k(k))

    def _check_k(self, k: int | None) -> int:
        k = self.config.top_k if k is None else k
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidInputError(f"k must be a positive integer, got {k!r}")
        return k

    def search(self, query: str, **kwargs: Any) -> list[Memory]:
        return run_sync(self.asearch(query, **kwargs))

    async def aanswer(
        self,
        question: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        k: int | None = None,
        mode: Mode = "gated",
        policy: Policy | None = None,
        tiered: bool | None = None,
        deliberate: bool = True,
    ) -> Answer:
        """Answer from memory, explaining the path taken.

        `mode="fast"`: top-k memories -> one LLM call. `"gated"` (default): the fast answer is
        judged by the quality gate (`policy`: audit, signals, cascade, majority, consensus) and
        replaced by deliberation over the raw history when it fails. `"full"`: always deliberate.
        `deliberate=False` (gated mode) runs the gate but keeps the fast answer; `answer.gate`
        says whether and why it would have escalated, so a caller can decide what to spend.
        """
        scope = make_scope(user_id, agent_id, session_id)
        question = check_text(question, "question")
        if mode not in get_args(Mode):
            raise InvalidInputError(f"mode must be 'fast', 'full' or 'gated', got {mode!r}")
        if policy is not None and policy not in get_args(Policy):
            raise InvalidInputError(f"policy must be one of {', '.join(get_args(Policy))}, got {policy!r}")
        k = self._check_k(k)
        await self._require_history(scope)
        pipeline = Pipeline(self.llm, self.history_store, self.index, self.gate_config)
        return await pipeline.answer(
            question, scope, k=k, mode=mode, policy=policy, tiered=tiered, deliberate=deliberate
        )

    def answer(self, question: str, **kwargs: Any) -> Answer:
        return run_sync(self.aanswer(question, **kwargs))

    async def _require_history(self, scope: Scope) -> None:
        found = await asyncio.to_thread(self.history_store.list, TurnQuery(scope=scope, limit=1))
        if not found:
            raise ScopeError(
                f"nothing is stored for {scope.model_dump(exclude_none=True)}: add messages "
                "for this scope first (or check the ids)"
            )

    async def ahistory(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        since: Any = None,
        until: Any = None,
        limit: int | None = None,
        last: int | None = None,
    ) -> list[Turn]:
        """Raw turns of a scope in the order they were added (`last=n`: only the newest n)."""
        if limit is not None and last is not None:
            raise InvalidInputError("give limit (oldest n) or last (newest n), not both")
        scope = make_scope(user_id, agent_id, session_id)
        query = TurnQuery(
            scope=scope,
            since=parse_timestamp(since) if since is not None else None,
            until=parse_timestamp(until) if until is not None else None,
            limit=check_limit(limit if last is None else last),
            newest=last is not None,
        )
        return await asyncio.to_thread(self.history_store.list, query)

    def history(self, **kwargs: Any) -> list[Turn]:
        return run_sync(self.ahistory(**kwargs))

    async def aget(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> Memory | None:
        scope = make_scope(user_id, agent_id, session_id)
        found = await asyncio.to_thread(self.index.get, [check_id(memory_id)], scope)
        return found[0] if found else None

    def get(self, memory_id: str, **kwargs: Any) -> Memory | None:
        return run_sync(self.aget(memory_id, **kwargs))

    async def aget_all(
        self, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, limit: int | None = None,
    ) -> list[Memory]:
        scope = make_scope(user_id, agent_id, session_id)
        return await asyncio.to_thread(self.index.list, scope, check_limit(limit))

    def get_all(self, **kwargs: Any) -> list[Memory]:
        return run_sync(self.aget_all(**kwargs))

    # ------------------------------------------------------------------ forget

    async def adelete(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> bool:
        """Delete one memory (the turns it came from stay in the history)."""
        scope = make_scope(user_id, agent_id, session_id)
        return await asyncio.to_thread(self.index.delete, [check_id(memory_id)], scope) > 0

    def delete(self, memory_id: str, **kwargs: Any) -> bool:
        return run_sync(self.adelete(memory_id, **kwargs))

    async def adelete_all(
        self, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, int]:
        """Forget a scope: its turns from the history and its memories from the index, with
        the memories of other sessions that extraction merged its turns into."""
        scope = make_scope(user_id, agent_id, session_id)
        memories = await asyncio.to_thread(self.index.delete_scope, scope)
        if session_id is not None and (user_id is not None or agent_id is not None):
            # reconciliation updates memories across the sessions of a user (or agent)
            wide = Scope(user_id=user_id, agent_id=agent_id)
            gone = {t.id for t in await asyncio.to_thread(self.history_store.list, TurnQuery(scope=scope))}
            merged = [m.id for m in await asyncio.to_thread(self.index.list, wide)
                      if gone & set(m.source_turn_ids)]
            if merged:
                memories += await asyncio.to_thread(self.index.delete, merged, wide)
        turns = await asyncio.to_thread(self.history_store.delete, scope)
        return {"turns": turns, "memories": memories}

    def delete_all(self, **kwargs: Any) -> dict[str, int]:
        return run_sync(self.adelete_all(**kwargs))

    async def areset(self) -> None:
        """Delete everything of every scope (history and index)."""
        for scope in await asyncio.to_thread(self.history_store.scopes):
            await asyncio.to_thread(self.history_store.delete, scope)
        # the index may hold memories whose turns are already gone (e.g. after a crash)
        await asyncio.to_thread(self.index.reset)

    def reset(self) -> None:
        run_sync(self.areset())

    async def areindex(
        self, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, extract: bool | None = None,
    ) -> ReindexResult:
        """Rebuild the index from the history (one scope, or every scope when none given)."""
        if user_id is None and agent_id is None and session_id is None:
            scopes = await asyncio.to_thread(self.history_store.scopes)
            partitions: dict[str, Scope] = {}
            for s in scopes:
                partitions.setdefault(s.partition, Scope(user_id=s.user_id) if s.user_id
                                      else Scope(agent_id=s.agent_id) if s.agent_id else s)
            targets = list(partitions.values())
        else:
            targets = [make_scope(user_id, agent_id, session_id)]
        result = ReindexResult()
        for scope in targets:
            await asyncio.to_thread(self.index.delete_scope, scope)
            turns = await asyncio.to_thread(self.history_store.list, TurnQuery(scope=scope))
            result.scopes += 1
            result.turns += len(turns)
            for sub in _by_scope(turns):
                first = sub[0]
                sub_scope = Scope(user_id=first.user_id, agent_id=first.agent_id,
                                  session_id=first.session_id)
                indexed, error = await self._index_turns(sub, sub_scope, extract)
                result.memories += len(indexed.added)
                result.usage = result.usage + indexed.usage
                result.errors += [error] if error else []
        return result

    def reindex(self, **kwargs: Any) -> ReindexResult:
        return run_sync(self.areindex(**kwargs))

    def close(self) -> None:
        self._queue.close()
        self.history_store.close()
        close = getattr(self.index, "close", None)
        if close is not None:
            close()


def _by_scope(turns: list[Turn]) -> list[list[Turn]]:
    """Consecutive runs of turns sharing one (user, agent, session), in order."""
    groups: list[list[Turn]] = []
    for t in turns:
        key = (t.user_id, t.agent_id, t.session_id)
        if groups and (groups[-1][0].user_id, groups[-1][0].agent_id,
                       groups[-1][0].session_id) == key:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups

