"""The `MemoryIndex` protocol every index backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..types import Memory, Scope

__all__ = ["MemoryIndex"]


@runtime_checkable
class MemoryIndex(Protocol):
    """Memories of one partition never mix with another's: each call names a scope.

    `search` returns at most k memories ranked best first, each with `score` set to its
    cosine similarity to the query and `relevance` to the score of the ranking (descending).
    Sync methods; callers run them off the event loop.
    """

    def upsert(self, memories: list[Memory]) -> None: ...

    def search(self, query: str, scope: Scope, k: int) -> list[Memory]: ...

    def nearest(self, texts: list[str], scope: Scope, k: int) -> list[list[Memory]]:
        """Dense neighbours of each text (for reconciling new facts with old memories)."""
        ...

    def get(self, ids: list[str], scope: Scope) -> list[Memory]: ...

    def list(self, scope: Scope, limit: int | None = None) -> list[Memory]: ...

    def delete(self, ids: list[str], scope: Scope) -> int: ...

    def delete_scope(self, scope: Scope) -> int: ...

    def count(self, scope: Scope) -> int: ...

    def reset(self) -> int:
        """Delete every memory of every partition; returns how many partitions."""
        ...
