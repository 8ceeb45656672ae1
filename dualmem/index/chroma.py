"""Chroma memory index: one collection per partition, hybrid (dense + BM25) search.

A partition (user, else agent, else session) gets its own collection, so a filter bug can
never return another user's memories. `agent_id`/`session_id` narrow within a partition.
Works with an embedded `PersistentClient` (default) or any Chroma client (`HttpClient`).
An embedded index keeps a partition of at most `small_limit` records out of Chroma, whose
collections cost 168 KB each however little they hold (`small.py`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..config import SMALL_PARTITION_LIMIT
from ..embed import embed_prefixed, unit
from ..errors import DualMemError, StorageError
from ..text import human_date
from ..types import Memory, Scope
from .focus import focus
from .lexical import LexicalCache, promote, rrf_scores
from .passages import Prefixed, embedded_texts, passage_ids
from .small import SmallCollection, SmallStore

__all__ = ["ChromaMemoryIndex"]

_PREFIX = "dualmem_"


_PAGE = 5000  # rows per get/delete: Chroma's SQLite refuses statements with too many variables


def _paged(col: Any, where: dict[str, Any] | None, limit: int | None) -> tuple[list, list, list]:
    ids: list[str] = []
    docs: list[str] = []
    metas: list[dict] = []
    while limit is None or len(ids) < limit:
        size = _PAGE if limit is None else min(_PAGE, limit - len(ids))
        got = col.get(where=where, limit=size, offset=len(ids), include=["documents", "metadatas"])
        ids += got["ids"]
        docs += got["documents"]
        metas += got["metadatas"]
        if len(got["ids"]) < size:
            break
    return ids, docs, metas


def _collection_name(partition: str) -> str:
    return _PREFIX + hashlib.sha256(partition.encode()).hexdigest()[:32]


def _sentences_key(partition: str) -> str:
    return partition + "\x00sentences"  # a partition's sentence collection, among the cached handles


def _narrowing(scope: Scope) -> dict[str, str]:
    """The ids that narrow a scope inside its partition's collection. The partition's own id
    is not one: its collection holds nothing else, and any Chroma `where` makes Chroma filter
    before the vector search (83 ms instead of 4 ms at 30K memories)."""
    return {
        key: value
        for key in ("user_id", "agent_id", "session_id")
        if key != scope.partition_key and (value := getattr(scope, key)) is not None
    }


def _scope_where(scope: Scope) -> dict[str, Any] | None:
    clauses = [{key: {"$eq": value}} for key, value in _narrowing(scope).items()]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _to_metadata(m: Memory) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source_turn_ids": json.dumps(m.source_turn_ids),
        "created_at": m.created_at.isoformat(),
        "updated_at": m.updated_at.isoformat(),
        "extra": json.dumps(m.metadata, ensure_ascii=False),
    }
    for key in ("user_id", "agent_id", "session_id", "event_date", "follows"):
        value = getattr(m, key)
        if value is not None:  # chroma metadata values cannot be None
            meta[key] = value
    if (speaker := m.split_speaker()[0]) is not None:
        meta["speaker"] = speaker  # for `focus`
    return meta


def _lexical_text(document: str, meta: dict[str, Any]) -> str:
    """What BM25 indexes: the text, after its event date in words, so that "in May 2023"
    finds it."""
    return f"{human_date(meta['event_date'])} {document}" if meta.get("event_date") else document


def _from_chroma(
    id_: str, doc: str, meta: dict[str, Any], score: float | None = None, relevance: float | None = None
) -> Memory:
    return Memory(
        id=id_,
        text=doc,
        user_id=meta.get("user_id"),
        agent_id=meta.get("agent_id"),
        session_id=meta.get("session_id"),
        source_turn_ids=json.loads(meta.get("source_turn_ids", "[]")),
        created_at=datetime.fromisoformat(meta["created_at"]),
        updated_at=datetime.fromisoformat(meta["updated_at"]),
        event_date=meta.get("event_date"),
        follows=meta.get("follows"),
        score=score,
        relevance=relevance,
        metadata=json.loads(meta.get("extra", "{}")),
    )


def _guarded(method):
    """Retry once with fresh handles when another client dropped a cached collection; any
    other failure is a `StorageError` with Chroma's exception as its cause, as the SQL stores
    do (chromadb raises many kinds: its own errors, ValueError, errors of its Rust bindings,
    and the HTTP client's)."""

    @functools.wraps(method)
    def wrapper(self: ChromaMemoryIndex, *args: Any, **kwargs: Any) -> Any:
        from chromadb.errors import NotFoundError

        try:
            try:
                return method(self, *args, **kwargs)
            except NotFoundError:
                self._collections.clear()
                return method(self, *args, **kwargs)
        except DualMemError:
            raise
        except Exception as e:
            message = f"the Chroma index failed in {method.__name__}: {type(e).__name__}: {e}"
            raise StorageError(message) from e

    return wrapper


# HNSW's default ef (100) made the top 60 of a few hundred turns differ between two ingestions
# of the same conversation (5 of 152 LoCoMo questions); 256 made them identical
SEARCH_EF = 256


class ChromaMemoryIndex:
    """The default `MemoryIndex`."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        client: Any = None,
        embedding_function: Any = None,
        hybrid: bool = True,
        small_limit: int = SMALL_PARTITION_LIMIT,
    ) -> None:
        import chromadb
        from chromadb.config import Settings

        from ..embed import MiniLMEmbedding

        self._owns_client = client is None
        if client is None:
            if path is None:
                raise StorageError("ChromaMemoryIndex needs a path or a client")
            try:
                Path(path).mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(
                    path=str(path), settings=Settings(anonymized_telemetry=False)
                )
            except Exception as e:  # chromadb raises many kinds for a bad directory
                raise StorageError(f"cannot open the Chroma index at {path}: {e}") from e
        self.client = client
        self._small = SmallStore(Path(path) / "small.sqlite3") if self._owns_client and small_limit else None
        self.small_limit = small_limit
        self.embedding_function = embedding_function or MiniLMEmbedding()
        self.hybrid = hybrid
        self._lexical = self._new_lexical()
        self._collections: dict[str, Any] = {}

    def _new_lexical(self) -> LexicalCache:
        # an embedded index sees other processes' writes only by being reopened (the lock file
        # wrapper does that), so no timed rebuild (~2 s at 100K memories); a server's may change
        return LexicalCache(ttl=None if self._owns_client else 300.0)

    def _collection(self, scope: Scope, create: bool = True, sentences: bool = False) -> Any | None:
        """The partition's collection of memories, or with `sentences` of their sentence
        passages (`passages.py`: vectors and the memory's id, no text): a Chroma collection,
        or a `SmallCollection` while the partition is small."""
        part = scope.partition
        key = _sentences_key(part) if sentences else part
        col = self._collections.get(key)
        if col is not None:
            return col
        name = _collection_name(part) + ("_s" if sentences else "")
        col = self._chroma(name, part, create=create and self._small is None)
        if self._small is not None:
            small = self._small.collection(name, self.embedding_function)
            if col is not None:
                if small.count():  # a move to Chroma cut short by a crash: finish it
                    self._move(small, col)
            elif create or small.count():
                col = small
        if col is not None:
            self._collections[key] = col
        return col

    def _chroma(self, name: str, part: str, create: bool) -> Any | None:
        from chromadb.errors import NotFoundError

        try:
            if create:
                return self.client.get_or_create_collection(
                    name,
                    embedding_function=self.embedding_function,
                    metadata={"hnsw:space": "cosine", "hnsw:search_ef": SEARCH_EF, "partition": part},
                )
            # not list_collections(): that costs O(partitions), ~1 s per 1000 users
            return self.client.get_collection(name, embedding_function=self.embedding_function)
        except NotFoundError:
            return None
        except Exception as e:
            raise StorageError(f"Chroma collection for {part!r} unavailable: {e}") from e

    def _grown(self, scope: Scope, sentences: bool = False) -> None:
        """Move a small partition that outgrew `small_limit` into its own Chroma collection."""
        key = _sentences_key(scope.partition) if sentences else scope.partition
        col = self._collections.get(key)
        if isinstance(col, SmallCollection) and col.count() > self.small_limit:
            big = self._chroma(col.name, scope.partition, create=True)
            self._move(col, big)
            self._collections[key] = big

    def _move(self, small: SmallCollection, big: Any) -> None:
        """Copy every record, then drop the small copy: a crash in between leaves both, and
        the next open finishes the move (the upserts are idempotent)."""
        _put(big, _records(small))
        self._small.drop(small.name)

    def _drop(self, col: Any) -> None:
        if isinstance(col, SmallCollection):
            self._small.drop(col.name)
        else:
            self.client.delete_collection(col.name)

    @_guarded
    def upsert(self, memories: list[Memory]) -> None:
        by_part: dict[str, list[Memory]] = {}
        for m in memories:
            by_part.setdefault(m.scope.partition, []).append(m)
        for group in by_part.values():
            scope = group[0].scope
            col = self._collection(scope)
            # the stored document is the plain text; the embedding also sees the event date
            metas = [_to_metadata(m) for m in group]
            # each text embedded once: a memory's sentences, or the memory itself when it is one sentence
            texts = [embedded_texts(m) for m in group]
            sentences = [ts if len(ts) > 1 else [] for ts in texts]
            vectors = np.asarray(
                embed_prefixed(self.embedding_function, [t for ts in texts for t in ts]), dtype=np.float32
            )
            ends = np.cumsum([len(ts) for ts in texts])
            spans = [vectors[end - len(ts) : end] for ts, end in zip(texts, ends, strict=True)]
            own = [span[0] if len(span) == 1 else unit(span.mean(axis=0)) for span in spans]
            col.upsert(
                ids=[m.id for m in group],
                documents=[m.text for m in group],
                embeddings=own,
                metadatas=metas,
            )
            by_sentence = [v for ts, span in zip(sentences, spans, strict=True) if ts for v in span]
            self._upsert_passages(scope, group, sentences, by_sentence)
            self._grown(scope)
            self._lexical.upsert(
                scope.partition,
                [(m.id, _lexical_text(m.text, meta), meta) for m, meta in zip(group, metas, strict=True)],
            )

    def _upsert_passages(
        self, scope: Scope, group: list[Memory], sentences: list[list[Prefixed]], vectors: Any
    ) -> None:
        self._delete_passages(scope, [m.id for m in group])  # a rewrite may have fewer sentences
        ids: list[str] = []
        metas: list[dict[str, Any]] = []
        for m, texts in zip(group, sentences, strict=True):
            ids += passage_ids(m.id, len(texts))
            scope_ids = {k: v for k in ("user_id", "agent_id", "session_id") if (v := getattr(m, k))}
            metas += [{"memory_id": m.id, **scope_ids}] * len(texts)
        if ids:
            self._collection(scope, sentences=True).upsert(ids=ids, embeddings=list(vectors), metadatas=metas)
            self._grown(scope, sentences=True)

    def _delete_passages(self, scope: Scope, memory_ids: list[str]) -> None:
        col = self._collection(scope, create=False, sentences=True)
        for start in range(0, len(memory_ids) if col is not None else 0, _PAGE):
            col.delete(where={"memory_id": {"$in": memory_ids[start : start + _PAGE]}})

    def _dense(
        self, col: Any, scope: Scope, q_emb: np.ndarray, n: int
    ) -> tuple[list[str], dict[str, float], dict[str, float]]:
        """The n memories nearest the query by their best vector (their own or a sentence's),
        best first, with that best cosine, and the cosine of the memories' own vectors found."""
        # ids and distances only: documents for 60 candidates cost more than the search itself
        # (6.6 vs 2.2 ms at 30K memories); the k kept are fetched below in one get
        res = col.query(query_embeddings=[q_emb], n_results=n, where=_scope_where(scope),
                        include=["distances"])
        cosine = {i: 1.0 - d for i, d in zip(res["ids"][0], res["distances"][0], strict=True)}
        best = dict(cosine)
        parts = self._collection(scope, create=False, sentences=True)
        if parts is not None:
            res = parts.query(query_embeddings=[q_emb], n_results=n, where=_scope_where(scope),
                              include=["metadatas", "distances"])
            for meta, d in zip(res["metadatas"][0], res["distances"][0], strict=True):
                i = meta["memory_id"]
                best[i] = max(best.get(i, -1.0), 1.0 - d)
        return sorted(best, key=lambda i: -best[i])[:n], best, cosine

    def _rows(self, col: Any, scope: Scope, ids: list[str] | None = None, limit: int | None = None):
        if ids is not None:
            got = col.get(ids=ids, where=_scope_where(scope), include=["documents", "metadatas"])
            return list(zip(got["ids"], got["documents"], got["metadatas"], strict=True))
        ids_, docs, metas = _paged(col, _scope_where(scope), limit)
        return list(zip(ids_, docs, metas, strict=True))

    @_guarded
    def search(self, query: str, scope: Scope, k: int) -> list[Memory]:
        col = self._collection(scope, create=False)
        if col is None or k <= 0:
            return []
        # a fixed candidate depth: the top 30 must not depend on how many results were asked for
        n = max(k, 60)
        q_emb = np.asarray(self.embedding_function([query])[0], dtype=np.float32)
        dense, relevance, cosine = self._dense(col, scope, q_emb, n)
        if not dense:
            return []
        ranked = dense
        if self.hybrid:
            # an embedded index learns of other processes' writes by being reopened, so it skips
            # Chroma's count (O(memories): 3 ms at 30K) and checks the dense ids it just got
            count = None if self._owns_client else col.count()
            lexical = self._lexical.search(
                scope.partition, lambda: self._load_all(col), query, scope.contains, n,
                count=count, seen=list(cosine),
            )
            fused = rrf_scores([dense, lexical.ranked])
            fused = focus(fused, self._lexical.metadata(scope.partition, list(fused)), query)
            ranked = promote(sorted(fused, key=lambda i: -fused[i]), lexical.exact)
            # the score the order follows: each rare identifier held outranks any fusion score (< 1)
            # (a holder promoted from outside both candidate lists has no fusion score)
            relevance = {i: lexical.exact.get(i, 0) + fused.get(i, 0.0) for i in ranked}
        top = ranked[:k]
        # a hit by BM25 or by a sentence alone: its own cosine comes from its stored vector
        uncosined = any(i not in cosine for i in top)
        got = col.get(ids=top, include=["documents", "metadatas", *(["embeddings"] if uncosined else [])])
        if len(got["ids"]) < len(top):  # a hit deleted by another process
            self._lexical.invalidate(scope.partition)
        rows = {}
        for n_, (i, d, m) in enumerate(zip(got["ids"], got["documents"], got["metadatas"], strict=True)):
            score = cosine.get(i)
            if score is None:
                score = float(np.dot(q_emb, np.asarray(got["embeddings"][n_], dtype=np.float32)))
            rows[i] = (d, m, score)
        return [_from_chroma(i, *rows[i], relevance=relevance[i]) for i in top if i in rows]

    def _load_all(self, col: Any) -> tuple[list[str], list[str], list[dict]]:
        ids, documents, metas = _paged(col, None, None)
        return ids, [_lexical_text(d, m) for d, m in zip(documents, metas, strict=True)], metas

    @_guarded
    def nearest(self, texts: list[str], scope: Scope, k: int) -> list[list[Memory]]:
        col = self._collection(scope, create=False)
        if col is None or not texts or col.count() == 0:
            return [[] for _ in texts]
        res = col.query(query_texts=texts, n_results=min(k, col.count()),
                        where=_scope_where(scope),
                        include=["documents", "metadatas", "distances"])
        return [
            [_from_chroma(i, d, m, 1.0 - dist) for i, d, m, dist in zip(*cols, strict=True)]
            for cols in zip(res["ids"], res["documents"], res["metadatas"], res["distances"],
                            strict=True)
        ]

    @_guarded
    def get(self, ids: list[str], scope: Scope) -> list[Memory]:
        col = self._collection(scope, create=False)
        if col is None or not ids:
            return []
        return [_from_chroma(*row) for row in self._rows(col, scope, ids=ids)]

    @_guarded
    def list(self, scope: Scope, limit: int | None = None) -> list[Memory]:
        col = self._collection(scope, create=False)
        if col is None:
            return []
        memories = [_from_chroma(*row) for row in self._rows(col, scope, limit=limit)]
        return sorted(memories, key=lambda m: m.created_at)

    @_guarded
    def delete(self, ids: list[str], scope: Scope) -> int:
        found = self.get(ids, scope)
        if found:
            col = self._collection(scope)
            col.delete(ids=[m.id for m in found])
            self._delete_passages(scope, [m.id for m in found])
            self._lexical.delete(scope.partition, [m.id for m in found])
        return len(found)

    @_guarded
    def delete_scope(self, scope: Scope) -> int:
        col = self._collection(scope, create=False)
        if col is None:
            return 0
        ids = [row[0] for row in self._rows(col, scope)]
        for start in range(0, len(ids), _PAGE):
            col.delete(ids=ids[start : start + _PAGE])
        if col.count() == 0:  # the whole partition: both collections go, no passage one by one
            self._drop(col)
            self._collections.pop(scope.partition, None)
            if (parts := self._collection(scope, create=False, sentences=True)) is not None:
                self._drop(parts)
                self._collections.pop(_sentences_key(scope.partition), None)
        else:
            self._delete_passages(scope, ids)
        self._lexical.invalidate(scope.partition)
        return len(ids)

    @_guarded
    def compact(self, scope: Scope) -> None:
        """Rebuild a partition's collection from the records it still holds. Chroma's write
        log keeps every upserted document (text included) until its vector segment persists,
        even after the record is deleted; dropping the collection drops its log. The index is
        derived data: if this is cut short, `reindex` rebuilds the partition from the history."""
        col = self._collection(scope, create=False)
        if col is None or isinstance(col, SmallCollection):  # SQLite erases deleted rows itself
            return
        rows = _records(col)
        self.client.delete_collection(col.name)
        self._collections.pop(scope.partition, None)
        if not rows:
            return
        if self._small is not None and len(rows) <= self.small_limit:
            _put(self._collection(scope), rows)
        else:
            _put(self._chroma(col.name, scope.partition, create=True), rows)

    @_guarded
    def reset(self) -> int:
        names = [c if isinstance(c, str) else c.name for c in self.client.list_collections()]
        ours = [n for n in names if n.startswith(_PREFIX)]
        for name in ours:
            self.client.delete_collection(name)
        for name in self._small.names() if self._small is not None else []:
            self._small.drop(name)
            ours.append(name)
        self._collections.clear()
        self._lexical = self._new_lexical()
        return len(ours)

    def close(self) -> None:
        """Release the embedded database (Chroma shares one per directory per process), so
        that the directory can be removed and recreated, e.g. to rebuild the index."""
        if self._owns_client:
            self.client.close()
        if self._small is not None:
            self._small.close()
        self._collections.clear()

    @_guarded
    def count(self, scope: Scope) -> int:
        col = self._collection(scope, create=False)
        if col is None:
            return 0
        if _scope_where(scope) is None:
            return col.count()
        return len(col.get(where=_scope_where(scope), include=[])["ids"])


def _records(col: Any) -> list[tuple]:
    """Every record of a collection with its vector, in pages."""
    rows: list[tuple] = []
    while True:
        got = col.get(limit=_PAGE, offset=len(rows), include=["documents", "metadatas", "embeddings"])
        rows += zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)
        if len(got["ids"]) < _PAGE:
            return rows


def _put(col: Any, rows: list[tuple]) -> None:
    for start in range(0, len(rows), _PAGE):
        ids, docs, metas, embeddings = zip(*rows[start : start + _PAGE], strict=True)
        texts = {"documents": list(docs)} if any(d is not None for d in docs) else {}  # passages have none
        col.upsert(ids=list(ids), metadatas=list(metas), embeddings=np.stack(embeddings), **texts)
