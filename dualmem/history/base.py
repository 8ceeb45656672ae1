"""The `HistoryStore` protocol every history backend implements."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from ..types import Scope, Turn

__all__ = ["HistoryStore", "TurnQuery"]


class TurnQuery(BaseModel):
    """Which turns to list. The scope's partition is always applied; the rest narrows."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope
    session_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    turn_ids: list[str] | None = None
    limit: int | None = None
    #: with `limit`: the newest `limit` turns instead of the oldest (still returned oldest first)
    newest: bool = False


@runtime_checkable
class HistoryStore(Protocol):
    """Append-only store of raw turns. Sync methods; callers run them off the event loop.

    Contract: `append` is atomic (all turns or none) and idempotent by turn id within a
    partition (a retried add does not duplicate); `list` returns turns of exactly one
    scope, in insertion order; nothing is ever deleted except by `delete`, and nothing
    changed except by `append(..., replace=True)`.

    Optional: `partition_lock(partition)`, a context manager held while one partition's turns
    are extracted, that excludes other processes (SQLite: a file lock; PostgreSQL: an advisory
    lock). A store without it is serialised within its process only.
    """

    def append(self, turns: list[Turn], *, pending: bool = False, replace: bool = False) -> list[Turn]:
        """Store turns in one transaction; returns the turns actually inserted. `pending`
        marks them as waiting for extraction until `mark_extracted`. `replace=True` overwrites
        a turn of the same id in the partition (keeping its place in the order) instead of
        skipping it, and returns every turn."""
        ...

    def list(self, query: TurnQuery) -> list[Turn]: ...

    def pending(self, scope: Scope | None = None, limit: int | None = None) -> list[Turn]:
        """Turns still waiting for extraction (of one scope, or of all), oldest first."""
        ...

    def mark_extracted(self, turns: list[Turn]) -> None: ...

    def delete(self, scope: Scope, turn_ids: list[str] | None = None) -> int:
        """Delete every turn matching the scope (only those ids, when given); returns how many."""
        ...

    def scopes(self) -> list[Scope]:
        """Every (user, agent, session) combination with stored turns."""
        ...

    def close(self) -> None: ...
