"""`ScopedMemory`: a `DualMemory` bound to one scope (`memory.scoped(user_id=...)`).

What an adapter holds (a retriever, a chat history, an agent tool): it validates the scope
once, and every call goes to the `DualMemory` method of the same name with the scope's ids,
so the view adds no behaviour of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._sync import sync_twin
from .types import Answer, Memory, Mode, Policy, Scope, StrategyName, Turn

if TYPE_CHECKING:
    from .memory import AddResult, DualMemory, ReindexResult

__all__ = ["ScopedMemory"]


class ScopedMemory:
    """The methods of `DualMemory` (sync and `a*` async) for one scope.

    ```python
    alice = memory.scoped(user_id="alice")
    alice.add("I adopted a beagle named Rex.")
    print(alice.answer("What is my dog called?").text)
    ```
    """

    def __init__(self, memory: DualMemory, scope: Scope) -> None:
        self.memory = memory
        self.scope = scope
        self._ids: dict[str, Any] = scope.model_dump()

    def __repr__(self) -> str:
        return f"ScopedMemory({self.scope!r})"

    def widened(self) -> ScopedMemory:
        """The view over every session of this user (or agent): `Scope.widened`."""
        return ScopedMemory(self.memory, self.scope.widened())

    async def aadd(
        self, messages: Any, *, timestamp: Any = None, extract: bool | None = None, background: bool = False
    ) -> AddResult:
        """Store messages in this scope (`DualMemory.add`)."""
        return await self.memory.aadd(
            messages, **self._ids, timestamp=timestamp, extract=extract, background=background
        )

    async def apending(self) -> list[Turn]:
        """This scope's turns still waiting for extraction (`DualMemory.pending`)."""
        return await self.memory.apending(**self._ids)

    async def asearch(self, query: str, *, k: int | None = None) -> list[Memory]:
        """The k memories of this scope most relevant to the query (`DualMemory.search`)."""
        return await self.memory.asearch(query, **self._ids, k=k)

    async def aanswer(
        self, question: str, *, k: int | None = None, mode: Mode = "gated", policy: Policy | None = None,
        tiered: bool | None = None, deliberate: bool = True, strategy: StrategyName | None = None,
    ) -> Answer:
        """Answer from this scope's memory, explaining the path taken (`DualMemory.answer`)."""
        return await self.memory.aanswer(
            question, **self._ids, k=k, mode=mode, policy=policy, tiered=tiered, deliberate=deliberate,
            strategy=strategy,
        )

    async def ahistory(
        self, *, since: Any = None, until: Any = None, limit: int | None = None, last: int | None = None,
        turn_ids: list[str] | None = None,
    ) -> list[Turn]:
        """This scope's raw turns in the order they were added (`DualMemory.history`)."""
        return await self.memory.ahistory(
            **self._ids, since=since, until=until, limit=limit, last=last, turn_ids=turn_ids
        )

    async def aget(self, memory_id: str) -> Memory | None:
        """One memory of this scope by id, or None (`DualMemory.get`)."""
        return await self.memory.aget(memory_id, **self._ids)

    async def aget_all(self, *, limit: int | None = None) -> list[Memory]:
        """Every memory of this scope, oldest first (`DualMemory.get_all`)."""
        return await self.memory.aget_all(**self._ids, limit=limit)

    async def adelete(self, memory_id: str) -> bool:
        """Delete one memory of this scope (`DualMemory.delete`)."""
        return await self.memory.adelete(memory_id, **self._ids)

    async def adelete_all(self) -> dict[str, int]:
        """Forget this scope's turns and memories (`DualMemory.delete_all`)."""
        return await self.memory.adelete_all(**self._ids)

    async def aforget(self, turn_ids: list[str]) -> dict[str, int]:
        """Erase some turns of this scope and the memories made from them (`DualMemory.forget`)."""
        return await self.memory.aforget(turn_ids, **self._ids)

    async def areindex(self, *, extract: bool | None = None) -> ReindexResult:
        """Rebuild this scope's memories from its history (`DualMemory.reindex`)."""
        return await self.memory.areindex(**self._ids, extract=extract)

    add = sync_twin(aadd)
    pending = sync_twin(apending)
    search = sync_twin(asearch)
    answer = sync_twin(aanswer)
    history = sync_twin(ahistory)
    get = sync_twin(aget)
    get_all = sync_twin(aget_all)
    delete = sync_twin(adelete)
    delete_all = sync_twin(adelete_all)
    forget = sync_twin(aforget)
    reindex = sync_twin(areindex)
