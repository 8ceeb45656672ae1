"""`DualMemory`: the one object everything else (CLI, integrations, benchmarks) uses.

Async is the implementation; each sync method runs its `a*` twin (see `_sync.py`).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from ._locks import KeyedLock
from ._sync import sync_twin
from .answering.pipeline import Pipeline
from .backends import make_history, make_index
from .config import Config
from .errors import InvalidInputError, LLMError, ScopeError, StorageError
from .history.base import HistoryStore, TurnQuery
from .index.base import MemoryIndex
from .ingest.extract import ExtractionResult, Extractor, raw_memories
from .ingest.queue import ExtractionQueue
from .inputs import check_id, check_limit, check_text, make_scope, make_turns, parse_timestamp
from .llm.base import BaseLLM
from .prompts import is_instruction
from .redact import install_log_filter, remember
from .scoped import ScopedMemory
from .types import Answer, Memory, Mode, Policy, Scope, StrategyName, Turn, Usage

__all__ = ["AddResult", "DualMemory", "ReindexResult"]

log = logging.getLogger("dualmem")



@dataclass
class AddResult:
    """What `add` stored. `error` is set when extraction failed: the turns are kept anyway.

    `pending` lists the ids of turns stored but not yet extracted: queued by
    `background=True`, or left by a failed extraction (the next start retries them).
    A turn re-added under a known id is a duplicate when its content is the same, and
    replaces the stored version (and the memories made from it) when it differs.
    Extraction never deletes: `updated` holds memories it superseded or cited again.
    """

    turns: list[Turn]
    added: list[Memory] = field(default_factory=list)
    updated: list[Memory] = field(default_factory=list)
    skipped_duplicates: int = 0
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    pending: list[str] = field(default_factory=list)
    #: ids of stored turns whose text (or speaker) reads as an order to an assistant: kept and
    #: indexed like any other, and quoted datamarked in every prompt (`prompts.spotlight`)
    flagged: list[str] = field(default_factory=list)
    #: turns re-added under a known id with new content: they replaced the stored version
    replaced: int = 0


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
        if path:
            overrides["data_dir"] = Path(path)
        if config is None:
            config = Config.from_env(**overrides)
        elif overrides:
            config = config.updated(**overrides)
        self.config = config
        # credentials are masked wherever text leaves dualmem: errors, HTTP logs, model replies
        remember(keys=(config.api_key.get_secret_value() if config.api_key else None,),
                 urls=(config.base_url, config.history_url, config.index_url))
        install_log_filter()
        self._check_data_dir()
        self.history_store = history or make_history(config)
        self.index = index or make_index(config)
        self._llm = llm
        # extraction of one partition is serialised so that reconciliation sees its own writes
        self._extracting = KeyedLock()
        self._queue = ExtractionQueue(self.history_store, self._extract_pending)
        if config.extract and self.history_store.pending(limit=1):
            self._queue.start()  # turns a crash or a failed model left unextracted

    def _check_data_dir(self) -> None:
        if self.config.history_url and self.config.index_url:
            return
        d = self.config.data_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
            # a file of its own, gone on close: processes opening one directory at once each
            # probe it (a shared name let one unlink another's probe mid-check)
            with tempfile.TemporaryFile(dir=d) as probe:
                probe.write(b"ok")
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

    def scoped(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None
    ) -> ScopedMemory:
        """This memory bound to one scope: the same methods, without the scope keywords.

        ```python
        alice = memory.scoped(user_id="alice", session_id="chat-1")
        alice.add("I moved to Paris in 2021.")
        alice.widened().search("Where does Alice live?")   # every session of alice
        ```
        A bad or missing id raises `ScopeError` here, not on first use.
        """
        return ScopedMemory(self, make_scope(user_id, agent_id, session_id))

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
        A message whose metadata says `"searchable": False` is kept (history, extraction,
        deliberation) but not indexed as a raw turn: e.g. a chat's own questions.
        """
        scope = make_scope(user_id, agent_id, session_id)
        turns = make_turns(messages, scope, timestamp)
        use_llm = self.config.extract if extract is None else extract
        inserted = await asyncio.to_thread(self.history_store.append, turns, pending=use_llm)
        changed = await self._changed(turns, inserted, scope)
        if changed:
            # a known id with new content overwrites: the old version and its memories go
            await self._drop_memories_of([t.id for t in changed], scope)
            inserted += await asyncio.to_thread(
                self.history_store.append, changed, pending=use_llm, replace=True
            )
        result = AddResult(turns=inserted, skipped_duplicates=len(turns) - len(inserted),
                           replaced=len(changed),
                           flagged=[t.id for t in inserted if is_instruction(t.render())])
        if result.flagged:
            log.info("%d stored turn(s) read as instructions: kept, quoted datamarked", len(result.flagged))
        if use_llm and background:
            result.pending = [t.id for t in inserted]
            if inserted:
                self._queue.start()
            return result
        to_index = inserted
        if result.skipped_duplicates:
            # a retried add whose first try died after the history write: finish its indexing
            new_ids = {t.id for t in inserted}
            to_index = inserted + await self._unfinished(
                [t.id for t in turns if t.id not in new_ids], scope, use_llm
            )
        if not to_index:
            return result
        indexed, result.error = await self._index_turns(to_index, scope, extract)
        result.added, result.updated, result.usage = indexed.added, indexed.updated, indexed.usage
        if result.error and use_llm:
            result.pending = [t.id for t in to_index]
        return result

    async def _unfinished(self, ids: list[str], scope: Scope, use_llm: bool) -> list[Turn]:
        """Of stored turns, those whose indexing never finished: still pending extraction, or
        (raw mode, which marks nothing pending) missing from the index."""
        if use_llm:
            wanted = set(ids)
            return [t for t in await asyncio.to_thread(self.history_store.pending, scope) if t.id in wanted]
        indexed = {m.id for m in await asyncio.to_thread(self.index.get, ids, scope)}
        missing = [i for i in ids if i not in indexed]
        if not missing:
            return []
        return await asyncio.to_thread(self.history_store.list, TurnQuery(scope=scope, turn_ids=missing))

    async def _changed(self, turns: list[Turn], inserted: list[Turn], scope: Scope) -> list[Turn]:
        """The turns skipped as duplicates whose stored version says something else."""
        new_ids = {t.id for t in inserted}
        skipped = [t for t in turns if t.id not in new_ids]
        if not skipped:
            return []
        query = TurnQuery(scope=scope, turn_ids=[t.id for t in skipped])
        stored = {t.id: t for t in await asyncio.to_thread(self.history_store.list, query)}
        return [t for t in skipped if t.id in stored and _content(t) != _content(stored[t.id])]

    async def _drop_memories_of(self, turn_ids: list[str], scope: Scope) -> int:
        """Delete the memories made from these turns: raw ones (same id) and extracted ones
        citing them, in every session of the user (reconciliation merges across sessions)."""
        gone = set(turn_ids)
        wide = scope.widened()
        memories = await asyncio.to_thread(self.index.list, wide)
        cited = [m.id for m in memories if gone & set(m.source_turn_ids)]
        return await asyncio.to_thread(self.index.delete, sorted(gone | set(cited)), wide)

    async def _index_turns(
        self, turns: list[Turn], scope: Scope, extract: bool | None, *, only_pending: bool = True
    ) -> tuple[ExtractionResult, str | None]:
        """Index turns (raw, or LLM-extracted facts); an extraction failure is returned as an
        error message, with the tokens it spent, never raised: the turns are already stored.

        Extraction of a partition runs under its lock, in this process and across processes
        (`HistoryStore.partition_lock`), and then takes only the turns still pending: an add,
        its retry, the background worker and another process may all hold the same pending
        turns, and each turn must be extracted once. `only_pending=False` (reindex) extracts
        turns already extracted."""
        use_llm = self.config.extract if extract is None else extract
        if not use_llm or self.config.index_turns:
            # raw turns: the whole index, or beside the facts so nothing extraction missed is lost
            before = await asyncio.to_thread(self._turn_before, turns, scope)
            memories = raw_memories(turns, before)
            await asyncio.to_thread(self.index.upsert, memories)
            if not use_llm:
                return ExtractionResult(added=memories), None
        async with self._extracting.hold(scope.partition), _held(self.history_store, scope.partition):
            if only_pending:
                waiting = {t.id for t in await asyncio.to_thread(self.history_store.pending, scope)}
                turns = [t for t in turns if t.id in waiting]
                if not turns:
                    return ExtractionResult(), None
            first = turns[0]
            settings = self.config.extraction
            recent = await asyncio.to_thread(
                self.history_store.list,
                TurnQuery(scope=scope, until=first.timestamp, session_id=first.session_id,
                          limit=settings.recent_messages + len(turns), newest=True),
            )
            known = {t.id for t in turns}
            recent = [t for t in recent if t.id not in known][-settings.recent_messages:]
            try:
                result = await Extractor(self.llm, self.index, settings).run(turns, recent, scope)
            except LLMError as e:
                spent = getattr(e, "usage", None)  # a malformed reply still cost tokens
                message = f"extraction failed, {len(turns)} turn(s) kept in history: {e}"
                log.warning(message)
                return ExtractionResult(usage=spent if isinstance(spent, Usage) else Usage()), message
            await asyncio.to_thread(self.history_store.mark_extracted, turns)
            return result, None

    def _turn_before(self, turns: list[Turn], scope: Scope) -> Turn | None:
        """The turn stored last before `turns` in the first one's session (the one it follows)."""
        first = turns[0]
        known = {t.id for t in turns}
        recent = self.history_store.list(TurnQuery(
            scope=scope, session_id=first.session_id, until=first.timestamp,
            limit=len(turns) + 1, newest=True,
        ))
        earlier = [t for t in recent if t.id not in known]
        return earlier[-1] if earlier else None

    add = sync_twin(aadd)

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

    pending = sync_twin(apending)

    async def aflush(self, timeout: float | None = None) -> bool:
        """Wait for background extraction; False if `timeout` (seconds) ran out first.
        Turns whose extraction failed stay pending (see `pending()`) until the next start."""
        return await asyncio.to_thread(self._queue.flush, timeout)

    flush = sync_twin(aflush)

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

    search = sync_twin(asearch)

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
        strategy: StrategyName | None = None,
    ) -> Answer:
        """Answer from memory, explaining the path taken.

        `mode="fast"`: top-k memories -> one LLM call. `"gated"` (default): the fast answer is
        judged by the quality gate (`policy`: audit, signals, cascade, majority, consensus) and
        replaced by deliberation over the raw history when it fails. `"full"`: always deliberate.
        `deliberate=False` (gated mode) runs the gate but keeps the fast answer; `answer.gate`
        says whether and why it would have escalated, so a caller can decide what to spend.
        `strategy` picks System 2 for this call (`evidence` or `scan`; default: the memory's
        `deliberation.strategy` setting). System 2's answer replaces the fast one only when the raw
        evidence supports it better; `answer.candidates` and `answer.arbitration` say which won.
        """
        scope = make_scope(user_id, agent_id, session_id)
        question = check_text(question, "question")
        if mode not in get_args(Mode):
            raise InvalidInputError(f"mode must be 'fast', 'full' or 'gated', got {mode!r}")
        if policy is not None and policy not in get_args(Policy):
            raise InvalidInputError(f"policy must be one of {', '.join(get_args(Policy))}, got {policy!r}")
        if strategy is not None and strategy not in get_args(StrategyName):
            raise InvalidInputError(
                f"strategy must be one of {', '.join(get_args(StrategyName))}, got {strategy!r}"
            )
        k = self._check_k(k)
        await self._require_history(scope)
        pipeline = Pipeline(
            self.llm, self.history_store, self.index, self.config.gate, self.config.deliberation
        )
        return await pipeline.answer(
            question, scope, k=k, mode=mode, policy=policy, tiered=tiered, deliberate=deliberate,
            strategy=strategy,
        )

    answer = sync_twin(aanswer)

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
        turn_ids: list[str] | None = None,
    ) -> list[Turn]:
        """Raw turns of a scope in the order they were added (`last=n`: only the newest n;
        `turn_ids`: only those turns)."""
        if limit is not None and last is not None:
            raise InvalidInputError("give limit (oldest n) or last (newest n), not both")
        scope = make_scope(user_id, agent_id, session_id)
        if turn_ids is not None:
            if isinstance(turn_ids, str) or not isinstance(turn_ids, list | tuple):
                raise InvalidInputError(f"turn_ids must be a list of turn ids, got {type(turn_ids).__name__}")
            turn_ids = [check_id(i, "turn id") for i in turn_ids]
        query = TurnQuery(
            scope=scope,
            turn_ids=turn_ids,
            since=parse_timestamp(since) if since is not None else None,
            until=parse_timestamp(until) if until is not None else None,
            limit=check_limit(limit if last is None else last),
            newest=last is not None,
        )
        return await asyncio.to_thread(self.history_store.list, query)

    history = sync_twin(ahistory)

    async def ascopes(self) -> list[Scope]:
        """Every (user, agent, session) combination that has stored turns."""
        return await asyncio.to_thread(self.history_store.scopes)

    scopes = sync_twin(ascopes)

    async def aget(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> Memory | None:
        """One memory by id, or None when the scope has no memory with that id."""
        scope = make_scope(user_id, agent_id, session_id)
        found = await asyncio.to_thread(self.index.get, [check_id(memory_id)], scope)
        return found[0] if found else None

    get = sync_twin(aget)

    async def aget_all(
        self, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, limit: int | None = None,
    ) -> list[Memory]:
        """Every memory of the scope (at most `limit`), oldest first."""
        scope = make_scope(user_id, agent_id, session_id)
        return await asyncio.to_thread(self.index.list, scope, check_limit(limit))

    get_all = sync_twin(aget_all)

    # ------------------------------------------------------------------ forget

    async def adelete(
        self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, purge: bool = True,
    ) -> bool:
        """Delete one memory (the turns it came from stay in the history); a memory it had
        superseded is current again. `purge`: see `delete_all`."""
        scope = make_scope(user_id, agent_id, session_id)
        deleted = await asyncio.to_thread(self.index.delete, [check_id(memory_id)], scope) > 0
        if deleted:
            wide = scope.widened()
            await self._reopen({memory_id}, await asyncio.to_thread(self.index.list, wide))
            if purge:
                await self._apurge(scope)
        return deleted

    delete = sync_twin(adelete)

    async def adelete_all(
        self, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, purge: bool = True,
    ) -> dict[str, int]:
        """Forget a scope: its turns from the history and its memories from the index.

        `purge` (default) also erases the deleted text from the files of an embedded index,
        which otherwise keeps it in free pages until vacuumed; it rewrites the index file, so
        a caller deleting many scopes may pass `purge=False` and purge with the last one. The
        SQLite history overwrites deleted rows always; a Chroma or PostgreSQL server is
        vacuumed by its operator.

        Forgetting one session leaves the user's other sessions as they were before it: the
        memories its facts had superseded are current again, and any memory citing one of its
        turns (only an index built before sessions kept their text apart has such) goes too.
        """
        scope = make_scope(user_id, agent_id, session_id)
        wide = scope.widened()
        doomed = {m.id for m in await asyncio.to_thread(self.index.list, scope)}
        others: list[Memory] = []
        memories = 0
        if wide != scope:
            gone = {t.id for t in await asyncio.to_thread(self.history_store.list, TurnQuery(scope=scope))}
            others = [m for m in await asyncio.to_thread(self.index.list, wide) if m.id not in doomed]
            merged = {m.id for m in others if gone & set(m.source_turn_ids)}
            if merged:
                memories += await asyncio.to_thread(self.index.delete, sorted(merged), wide)
                doomed |= merged
        memories += await asyncio.to_thread(self.index.delete_scope, scope)
        await self._reopen(doomed, [m for m in others if m.id not in doomed])
        turns = await asyncio.to_thread(self.history_store.delete, scope)
        if purge and (turns or memories):
            await self._apurge(scope)
        return {"turns": turns, "memories": memories}

    async def _apurge(self, scope: Scope) -> None:
        purge = getattr(self.index, "purge", None)  # an index with files of its own
        if purge is not None:
            await asyncio.to_thread(purge, scope)

    async def _reopen(self, deleted: set[str], memories: list[Memory]) -> None:
        """Memories closed by a deleted memory (UPDATE/DELETE supersede, extract.py) are
        current again: the fact that ended them is forgotten."""
        reopened = [
            m.model_copy(update={"score": None, "metadata": {
                k: v for k, v in m.metadata.items() if k not in ("valid_to", "superseded_by")}})
            for m in memories if m.metadata.get("superseded_by") in deleted
        ]
        if reopened:
            await asyncio.to_thread(self.index.upsert, reopened)

    delete_all = sync_twin(adelete_all)

    async def aforget(
        self, turn_ids: list[str], *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None,
    ) -> dict[str, int]:
        """Forget some turns: erase them from the history and drop every memory made from them,
        so that neither a re-add of the same id nor `reindex` brings them back."""
        scope = make_scope(user_id, agent_id, session_id)
        if isinstance(turn_ids, str) or not isinstance(turn_ids, list | tuple):
            raise InvalidInputError(f"turn_ids must be a list of turn ids, got {type(turn_ids).__name__}")
        ids = [check_id(i, "turn id") for i in turn_ids]
        # the index first: a crash in between leaves turns that a retry (or reindex) can see
        memories = await self._drop_memories_of(ids, scope)
        turns = await asyncio.to_thread(self.history_store.delete, scope, ids)
        return {"turns": turns, "memories": memories}

    forget = sync_twin(aforget)

    async def areset(self) -> None:
        """Delete everything of every scope (history and index)."""
        for scope in await asyncio.to_thread(self.history_store.scopes):
            await asyncio.to_thread(self.history_store.delete, scope)
        # the index may hold memories whose turns are already gone (e.g. after a crash)
        await asyncio.to_thread(self.index.reset)

    reset = sync_twin(areset)

    async def areindex(
        self, *, user_id: str | None = None, agent_id: str | None = None,
        session_id: str | None = None, extract: bool | None = None,
    ) -> ReindexResult:
        """Rebuild the index from the history (one scope, or every scope when none given)."""
        if user_id is None and agent_id is None and session_id is None:
            scopes = await asyncio.to_thread(self.history_store.scopes)
            targets = list({s.partition: s.whole_partition() for s in scopes}.values())
        else:
            targets = [make_scope(user_id, agent_id, session_id)]
        result = ReindexResult()
        for scope in targets:
            await asyncio.to_thread(self.index.delete_scope, scope)
            turns = await asyncio.to_thread(self.history_store.list, TurnQuery(scope=scope))
            result.scopes += 1
            result.turns += len(turns)
            for sub in _by_scope(turns):
                indexed, error = await self._index_turns(sub, sub[0].scope, extract, only_pending=False)
                result.memories += len(indexed.added)
                result.usage = result.usage + indexed.usage
                result.errors += [error] if error else []
        return result

    reindex = sync_twin(areindex)

    def close(self) -> None:
        self._queue.close()
        self.history_store.close()
        close = getattr(self.index, "close", None)
        if close is not None:
            close()


@asynccontextmanager
async def _held(history: HistoryStore, partition: str) -> AsyncIterator[None]:
    """The history's cross-process lock of a partition, taken off the event loop (a store
    without one relies on the in-process lock alone)."""
    make = getattr(history, "partition_lock", None)
    if make is None:
        yield
        return
    lock = make(partition)
    acquiring = asyncio.ensure_future(asyncio.to_thread(lock.__enter__))
    try:
        await asyncio.shield(acquiring)
    except asyncio.CancelledError:
        # the thread may still get the lock after this task is gone: release it then, or the
        # partition stays locked for good (a leaked flock blocked every later extraction)
        acquiring.add_done_callback(lambda done: done.exception() is None and lock.__exit__(None, None, None))
        raise
    try:
        yield
    finally:
        lock.__exit__(None, None, None)  # closing a file or a connection: quick, and never skipped


def _content(turn: Turn) -> tuple[Any, ...]:
    """What makes two versions of a turn differ (a retry gets a new timestamp, not new content)."""
    return turn.role, turn.speaker, turn.text, turn.metadata


def _by_scope(turns: list[Turn]) -> list[list[Turn]]:
    """Consecutive runs of turns sharing one (user, agent, session), in order."""
    groups: list[list[Turn]] = []
    for t in turns:
        if groups and groups[-1][0].scope == t.scope:
            groups[-1].append(t)
        else:
            groups.append([t])
    return groups

