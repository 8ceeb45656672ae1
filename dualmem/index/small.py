"""Small partitions of an embedded index, kept out of Chroma until they grow.

Chroma 1.5 gives every collection an HNSW index preallocated for 100 vectors (168 KB and 4
files), whatever it holds, so 100K users of a few memories each would take ~17 GB. A partition
with at most `limit` records lives instead in one SQLite file beside Chroma's, in rows keyed
by its collection name, and is searched exactly (a few hundred cosines cost less than an HNSW
lookup); past the limit it moves to its own Chroma collection. Chroma keeps all collections'
records in one SQLite file keyed by segment the same way: a handle reads and writes only its
own name's rows, so the partition stays as hard as a collection's.

`SmallCollection` implements the part of Chroma's `Collection` API the index uses.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SmallCollection", "SmallStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    document TEXT,
    metadata TEXT NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (collection, id)
)
"""


def _matches(meta: dict[str, Any], where: dict[str, Any] | None) -> bool:
    """Chroma's metadata filter, for the operators the index uses; any other is refused
    rather than read as a match."""
    if not where:
        return True
    (key, cond), *rest = where.items()
    if rest:
        raise ValueError(f"a where clause takes one key or operator, got {sorted(where)}")
    if key == "$and":
        return all(_matches(meta, c) for c in cond)
    if key == "$or":
        return any(_matches(meta, c) for c in cond)
    if not isinstance(cond, dict):
        return meta.get(key) == cond
    (op, value), = cond.items()
    if op == "$eq":
        return meta.get(key) == value
    if op == "$ne":
        return meta.get(key) != value
    if op == "$in":
        return meta.get(key) in value
    if op == "$nin":
        return meta.get(key) not in value
    raise ValueError(f"unsupported where operator {op!r}")


class SmallStore:
    """The SQLite file holding every small partition of one index directory."""

    def __init__(self, path: str | Path) -> None:
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()  # one connection, shared by the index's threads
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA secure_delete=ON")  # a forgotten memory's text is zeroed
            self._conn.execute(_SCHEMA)

    def collection(self, name: str, embedding_function: Any) -> SmallCollection:
        return SmallCollection(self, name, embedding_function)

    def names(self) -> list[str]:
        return [r[0] for r in self._execute("SELECT DISTINCT collection FROM records")]

    def drop(self, name: str) -> None:
        self._execute("DELETE FROM records WHERE collection = ?", (name,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _execute(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _write(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(sql, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")


class SmallCollection:
    """One small partition's records, with the Chroma `Collection` calls the index makes."""

    def __init__(self, store: SmallStore, name: str, embedding_function: Any) -> None:
        self._store = store
        self.name = name
        self._embed = embedding_function

    def count(self) -> int:
        return self._store._execute("SELECT COUNT(*) FROM records WHERE collection = ?", (self.name,))[0][0]

    def upsert(
        self,
        ids: list[str],
        embeddings: Any = None,
        metadatas: list[dict[str, Any]] | None = None,
        documents: list[str] | None = None,
    ) -> None:
        if embeddings is None:
            embeddings = self._embed(documents)
        rows = [
            (self.name, i, documents[n] if documents else None, json.dumps(metadatas[n] if metadatas else {}),
             np.asarray(e, dtype=np.float32).tobytes())
            for n, (i, e) in enumerate(zip(ids, embeddings, strict=True))
        ]
        self._store._write(
            "INSERT INTO records VALUES (?, ?, ?, ?, ?) ON CONFLICT (collection, id) DO UPDATE SET "
            "document = excluded.document, metadata = excluded.metadata, embedding = excluded.embedding",
            rows,
        )

    def _select(self, ids: list[str] | None) -> list[tuple[str, str | None, dict, np.ndarray]]:
        sql = "SELECT id, document, metadata, embedding FROM records WHERE collection = ?"
        args: tuple = (self.name,)
        if ids is not None:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
            args += tuple(ids)
        rows = self._store._execute(sql + " ORDER BY rowid", args)
        return [(i, d, json.loads(m), np.frombuffer(e, dtype=np.float32)) for i, d, m, e in rows]

    def get(
        self,
        ids: list[str] | None = None,
        where: dict[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        include: list[str] = ("documents", "metadatas"),
    ) -> dict[str, Any]:
        rows = [r for r in self._select(ids) if _matches(r[2], where)]
        rows = rows[offset : None if limit is None else offset + limit]
        return _result(rows, include)

    def query(
        self,
        query_embeddings: Any = None,
        query_texts: list[str] | None = None,
        n_results: int = 10,
        where: dict[str, Any] | None = None,
        include: list[str] = ("documents", "metadatas", "distances"),
    ) -> dict[str, Any]:
        if query_embeddings is None:
            query_embeddings = self._embed(query_texts)
        rows = [r for r in self._select(None) if _matches(r[2], where)]
        out: dict[str, list] = {"ids": [], **{key: [] for key in include}}
        matrix = _unit_rows(np.stack([r[3] for r in rows])) if rows else None
        for q in query_embeddings:
            if matrix is None:
                found, distances = [], []
            else:
                # cosine distance, as a collection created with hnsw:space=cosine returns it
                distances = 1.0 - matrix @ _unit_rows(np.asarray(q, dtype=np.float32)[None, :])[0]
                order = np.argsort(distances, kind="stable")[:n_results]
                found, distances = [rows[n] for n in order], [float(distances[n]) for n in order]
            one = _result(found, include)
            out["ids"].append(one["ids"])
            for key in include:
                out[key].append(distances if key == "distances" else one[key])
        return out

    def delete(self, ids: list[str] | None = None, where: dict[str, Any] | None = None) -> None:
        doomed = [r[0] for r in self._select(ids) if _matches(r[2], where)]
        self._store._write(
            "DELETE FROM records WHERE collection = ? AND id = ?", [(self.name, i) for i in doomed]
        )


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _result(rows: list[tuple], include: Any) -> dict[str, Any]:
    columns = {"documents": 1, "metadatas": 2, "embeddings": 3}
    return {"ids": [r[0] for r in rows],
            **{key: [r[columns[key]] for r in rows] for key in include if key in columns}}
