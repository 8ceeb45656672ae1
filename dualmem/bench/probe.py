"""The identifier probe: exact-text lookups among near-duplicate notes.

150 notes of one user differ only in their ids and a unique 12-hex-digit code, and the exact
text of every fifth note is a query that must find that note at rank 1. Plain rank fusion
missed the top 3 for 5 of these 30 queries: the dense ranker's near-duplicates outweighed
BM25's unique match. Users search for order ids, codes and bib numbers the same way.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from ..types import Memory, Scope

__all__ = ["PROBES", "identifier_probe", "note", "probe_memories"]

NOTES = 150
PROBES = range(0, NOTES, 5)
_START = datetime(2024, 1, 2, tzinfo=UTC)


def note(i: int) -> str:
    tid = f"r{i // 6}-b{i % 6}-1of1"
    return f"Note {tid}: the weather code is {hashlib.sha256(tid.encode()).hexdigest()[:12]}."


def probe_memories(user_id: str) -> list[Memory]:
    times = [_START + timedelta(minutes=i) for i in range(NOTES)]
    return [
        Memory(id=f"n{i}", text=note(i), user_id=user_id, created_at=t, updated_at=t)
        for i, t in enumerate(times)
    ]


def identifier_probe(index: Any, user_id: str = "identifier-probe") -> dict[str, Any]:
    """Index the notes in `index` (a `MemoryIndex`) for `user_id`; how many probes rank first."""
    index.upsert(probe_memories(user_id))
    scope = Scope(user_id=user_id)
    first = sum([m.id for m in index.search(note(i), scope, 1)] == [f"n{i}"] for i in PROBES)
    return {"queries": len(PROBES), "rank1": first, "rate": first / len(PROBES)}
