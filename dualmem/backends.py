"""Pick the history store and memory index a config names.

- history: None or `sqlite:///path` -> SQLite (default: `data_dir/history.sqlite3`);
  `postgresql://user:pw@host:5432/db` (or `postgres://`, or a libpq `host=... dbname=...`
  DSN) -> PostgreSQL.
- index: None -> embedded Chroma in `data_dir/chroma`, behind a lock file so that several
  processes can share it (one index call at a time); `http(s)://host:port` -> a Chroma
  server, optionally `?tenant=..&database=..`. A token (env `DUALMEM_CHROMA_TOKEN`, else the
  URL's password) is sent as `Authorization: Bearer ...`, or in the header named by
  `?token_header=X-Chroma-Token`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sqlite3
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from .config import Config
from .errors import ConfigError, StorageError
from .history.base import HistoryStore, TurnQuery
from .index.base import MemoryIndex
from .redact import redact_url, scrub, secrets_in
from .types import Memory, Scope

__all__ = [
    "ProcessLockedIndex", "chroma_http_client", "copy_history", "make_history", "make_index",
    "vacuum_chroma",
]

T = TypeVar("T")

_INDEX_OPTIONS = {"tenant", "database", "token_header"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def make_history(config: Config) -> HistoryStore:
    url = config.history_url
    if url is None or url.startswith("sqlite:"):
        from .history.sqlite import SQLiteHistoryStore

        path = url.removeprefix("sqlite:///").removeprefix("sqlite:") if url else None
        return SQLiteHistoryStore(path or config.data_dir / "history.sqlite3")
    if url.startswith(("postgresql://", "postgres://")) or ("://" not in url and "=" in url):
        try:
            from .history.postgres import PostgresHistoryStore
        except ImportError as e:
            raise ConfigError(
                f"history_url=postgresql://... needs psycopg 3 ({e}): pip install 'dualmem[postgres]'"
            ) from e  # a libpq URL or a key=value DSN
        return PostgresHistoryStore(url)
    raise ConfigError(
        f"unsupported history_url {redact_url(url)!r}: use sqlite:///path/to/file or "
        "postgresql://user:password@host:5432/dbname"
    )


def copy_history(source: HistoryStore, target: HistoryStore) -> int:
    """Copy every turn into another store (e.g. SQLite -> PostgreSQL); returns how many were new.

    Partition by partition, in insertion order, so `history()` reads the same afterwards.
    Idempotent: turns the target already has are skipped, so an interrupted copy can rerun.
    Then rebuild the index on the new backends with `DualMemory(...).reindex()`.
    """
    partitions = {s.partition: s.whole_partition() for s in source.scopes()}
    return sum(len(target.append(source.list(TurnQuery(scope=p)))) for p in partitions.values())


def make_index(config: Config) -> MemoryIndex:
    from .embed import make_embedding
    from .index.chroma import ChromaMemoryIndex

    url = config.index_url
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"unsupported index_url {redact_url(url)!r}: use http://host:8000 (a Chroma server), "
            "or leave it unset for the embedded index in data_dir"
        )
    embedding = make_embedding(config.embedder, config.embedding_model, config.base_url)
    if url is None:
        return ProcessLockedIndex(
            lambda: ChromaMemoryIndex(config.data_dir / "chroma", embedding_function=embedding,
                                      small_limit=config.small_partition_limit),
            config.data_dir / "chroma.lock",
            vacuum=lambda: vacuum_chroma(config.data_dir / "chroma"),
        )
    return ChromaMemoryIndex(client=chroma_http_client(url), embedding_function=embedding)


def chroma_http_client(url: str) -> Any:
    """A `chromadb.HttpClient` for `http(s)://[user:token@]host[:port][?tenant=&database=]`."""
    import chromadb
    from chromadb.config import Settings

    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(options) - _INDEX_OPTIONS
    if unknown or not parts.hostname:
        raise ConfigError(
            f"bad index_url {redact_url(url)!r}: expected http(s)://host:port with optional "
            f"?tenant=, &database=, &token_header= (unknown: {sorted(unknown)})"
        )
    ssl = parts.scheme == "https"
    headers = {}
    token = os.environ.get("DUALMEM_CHROMA_TOKEN") or parts.password
    if token:
        header = options.get("token_header", "Authorization")
        headers[header] = f"Bearer {token}" if header.lower() == "authorization" else token
    try:
        return chromadb.HttpClient(
            host=parts.hostname,
            port=parts.port or (443 if ssl else 8000),
            ssl=ssl,
            headers=headers,
            tenant=options.get("tenant", chromadb.DEFAULT_TENANT),
            database=options.get("database", chromadb.DEFAULT_DATABASE),
            settings=Settings(anonymized_telemetry=False),
        )
    except Exception as e:  # connection refused, auth failure, unknown tenant/database
        reason = scrub(str(e), *secrets_in(url), token or "")
        raise StorageError(
            f"cannot reach the Chroma server at {redact_url(url)}: {reason}. "
            "Check that it is running (chroma run --host ... --port ...) and the tenant, database "
            "and token are right."
        ) from None


class ProcessLockedIndex:
    """A `MemoryIndex` shared safely by the threads and processes using one data directory.

    Embedded Chroma is not multi-process safe: concurrent calls (reads too) fail with "Error
    finding id", first opens race on its schema, and a process keeps serving its in-memory
    view of a collection after another process wrote to it. So every call runs under an
    exclusive `flock`; each write leaves a new token in the lock file, and a process that
    finds a token it did not write reopens the index before its call (~0.1 s). One process
    pays nothing; many processes are correct but serialised: use a Chroma server for speed.

    Every method of the protocol is declared here as a read or a write, so a method added to
    `MemoryIndex` is missing (an AttributeError) until it is declared, never silently wrapped
    as one or the other; the wrapped index itself is `inner`.
    """

    def __init__(
        self, open_index: Callable[[], MemoryIndex], lock_path: str | Path,
        *, vacuum: Callable[[], None] | None = None,
    ) -> None:
        lock_path = Path(lock_path)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        self._open = open_index
        self._vacuum = vacuum
        self._file = lock_path.open("a+")
        self._thread_lock = threading.Lock()  # flock does not exclude threads sharing the file
        with self._locked():
            self.inner = open_index()
            self._token = self._read_token()

    # reads

    def search(self, query: str, scope: Scope, k: int) -> list[Memory]:
        return self._call(False, lambda index: index.search(query, scope, k))

    def nearest(self, texts: list[str], scope: Scope, k: int) -> list[list[Memory]]:
        return self._call(False, lambda index: index.nearest(texts, scope, k))

    def get(self, ids: list[str], scope: Scope) -> list[Memory]:
        return self._call(False, lambda index: index.get(ids, scope))

    def count(self, scope: Scope) -> int:
        return self._call(False, lambda index: index.count(scope))

    # writes

    def upsert(self, memories: list[Memory]) -> None:
        return self._call(True, lambda index: index.upsert(memories))

    def delete(self, ids: list[str], scope: Scope) -> int:
        return self._call(True, lambda index: index.delete(ids, scope))

    def delete_scope(self, scope: Scope) -> int:
        return self._call(True, lambda index: index.delete_scope(scope))

    def reset(self) -> int:
        return self._call(True, lambda index: index.reset())

    # a read, declared last: below it, `list[...]` in an annotation would name this method
    def list(self, scope: Scope, limit: int | None = None) -> list[Memory]:
        return self._call(False, lambda index: index.list(scope, limit))

    def purge(self, scope: Scope) -> None:
        """Erase deleted records of a partition from the index files: rebuild its collection
        (`ChromaMemoryIndex.compact`), then rewrite the file (`vacuum_chroma`), with every
        other process kept out."""
        if self._vacuum is None:
            return
        with self._locked():
            compact = getattr(self.inner, "compact", None)
            if compact is not None:
                compact(scope)
            _release(self.inner)
            try:
                self._vacuum()
            finally:
                self.inner = self._open()
                self._wrote()  # other processes reopen: the file is new

    def close(self) -> None:
        if self._file.closed:  # closing twice is harmless
            return
        with self._locked():
            _release(self.inner)
        self._file.close()

    def _read_token(self) -> str:
        self._file.seek(0)
        return self._file.read()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)

    def _call(self, write: bool, call: Callable[[MemoryIndex], T]) -> T:
        with self._locked():
            token = self._read_token()
            if token != self._token:  # another process wrote: drop our stale view
                _release(self.inner)
                self.inner = self._open()
                self._token = token
            result = call(self.inner)
            if write:
                self._wrote()
            return result

    def _wrote(self) -> None:
        self._token = uuid.uuid4().hex
        self._file.seek(0)
        self._file.truncate()
        self._file.write(self._token)
        self._file.flush()


def vacuum_chroma(path: Path) -> None:
    """Erase deleted text from an embedded Chroma directory. Chroma deletes rows but leaves
    their text in free pages of chroma.sqlite3 and in its full-text index segments (74 hits of
    a forgotten marker in one test): rebuild the full-text index from the rows left, then
    rewrite the file. The caller must have closed every client of the directory."""
    _vacuum_small(path / "small.sqlite3")
    db = path / "chroma.sqlite3"
    if not db.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None, timeout=30)) as conn:
            fts = "embedding_fulltext_search"
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (fts,)).fetchone():
                # not 'optimize': under Python's SQLite here (3.40), each one
                # after a write adds an index level, and past 2,000 levels every reader and
                # writer of the file, Chroma included, fails ("Failed to apply logs to the
                # metadata segment"): a deep isolation run got there after ~1,500 purges
                conn.execute(f"INSERT INTO {fts}({fts}) VALUES('rebuild')")
            conn.execute("VACUUM")
            live = {row[0] for row in conn.execute("SELECT id FROM segments")}
    except sqlite3.Error as e:
        raise StorageError(f"cannot vacuum the Chroma index at {db}: {e}") from e
    # vector segment folders of dropped collections (Chroma leaves some behind) hold copies
    # of process memory in their unused slots: removed with the rest
    for folder in path.iterdir():
        if folder.is_dir() and _UUID.fullmatch(folder.name):
            if folder.name in live:
                _zero_unused_slots(folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)


def _vacuum_small(db: Path) -> None:
    """The small partitions' file (`index/small.py`) zeroes deleted rows itself; its WAL may
    still hold their text until a checkpoint."""
    if not db.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None, timeout=30)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
    except sqlite3.Error as e:
        raise StorageError(f"cannot vacuum the index at {db}: {e}") from e


def _zero_unused_slots(folder: Path) -> None:
    """hnswlib writes its whole preallocated level-0 array, and the slots past the element
    count are uninitialised memory: text the process handled (a forgotten marker, in our
    tests) ends up in them. Zeroed here, only when the header matches the file exactly."""
    header, data = folder / "header.bin", folder / "data_level0.bin"
    if not header.exists() or not data.exists():
        return
    raw = header.read_bytes()
    if len(raw) < 36:
        return
    # header: format version (u32), then offsetLevel0, max_elements, cur_element_count,
    # size_data_per_element (u64 each)
    version, offset, capacity, used, size = struct.unpack("<I4Q", raw[:36])
    if version != 1 or offset != 0 or used > capacity or capacity * size != data.stat().st_size:
        return
    with data.open("r+b") as f:
        f.seek(used * size)
        f.write(bytes((capacity - used) * size))


def _release(index: Any) -> None:
    """Close an index (or its Chroma client), so that a reopen reads the files again."""
    close = getattr(index, "close", None) or getattr(getattr(index, "client", None), "close", None)
    if close is not None:
        close()
