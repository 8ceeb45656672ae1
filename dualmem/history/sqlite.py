"""SQLite history store: stdlib sqlite3, WAL, one transaction per append."""

from __future__ import annotations

import fcntl
import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..errors import StorageError
from ..types import Scope, Turn
from .base import TurnQuery

__all__ = ["SQLiteHistoryStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    partition  TEXT NOT NULL,
    id         TEXT NOT NULL,
    role       TEXT NOT NULL,
    speaker    TEXT,
    text       TEXT NOT NULL,
    ts         TEXT NOT NULL,
    user_id    TEXT,
    agent_id   TEXT,
    session_id TEXT,
    metadata   TEXT NOT NULL DEFAULT '{}',
    pending    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (partition, id)
);
CREATE INDEX IF NOT EXISTS turns_scope ON turns (partition, session_id, seq);
"""
# Files made before `pending` existed: their turns were indexed when added, hence DEFAULT 0.
_MIGRATE = "ALTER TABLE turns ADD COLUMN pending INTEGER NOT NULL DEFAULT 0"
_PENDING_INDEX = "CREATE INDEX IF NOT EXISTS turns_pending ON turns (seq) WHERE pending = 1"
# a replaced turn keeps its seq (its place in the history) and takes everything else
_REPLACE = (
    " ON CONFLICT (partition, id) DO UPDATE SET role = excluded.role, speaker = excluded.speaker,"
    " text = excluded.text, ts = excluded.ts, user_id = excluded.user_id,"
    " agent_id = excluded.agent_id, session_id = excluded.session_id,"
    " metadata = excluded.metadata, pending = excluded.pending"
)
_COLUMNS = "seq, id, role, speaker, text, ts, user_id, agent_id, session_id, metadata"


class SQLiteHistoryStore:
    """History in one SQLite file. Safe across threads and processes (WAL + busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                if "pending" not in {r[1] for r in conn.execute("PRAGMA table_info(turns)")}:
                    conn.execute(_MIGRATE)
                conn.execute(_PENDING_INDEX)
        except (OSError, sqlite3.Error) as e:
            raise StorageError(
                f"cannot open the history database at {self.path}: {e}. "
                "Check that the data directory exists and is writable."
            ) from e
        self._local = threading.local()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        # forgotten turns are overwritten, not left readable in free pages of the file
        conn.execute("PRAGMA secure_delete=ON")
        return conn

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        # one connection per thread: sqlite3 connections must not be shared across threads
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        try:
            yield conn
        except sqlite3.Error as e:
            raise StorageError(f"history database error at {self.path}: {e}") from e

    def append(self, turns: list[Turn], *, pending: bool = False, replace: bool = False) -> list[Turn]:
        inserted: list[Turn] = []
        conflict = _REPLACE if replace else " ON CONFLICT (partition, id) DO NOTHING"
        with self._conn() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for t in turns:
                    cur = conn.execute(
                        "INSERT INTO turns (partition, id, role, speaker, text, ts,"
                        " user_id, agent_id, session_id, metadata, pending)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + conflict + " RETURNING seq",
                        (
                            t.scope.partition, t.id, t.role, t.speaker, t.text,
                            _utc(t.timestamp), t.user_id, t.agent_id, t.session_id,
                            json.dumps(t.metadata, ensure_ascii=False), int(pending),
                        ),
                    )
                    row = cur.fetchone()
                    if row:
                        inserted.append(t.model_copy(update={"seq": row[0]}))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return inserted

    def list(self, query: TurnQuery) -> list[Turn]:
        sql, args = _where(query.scope)
        if query.session_id is not None:
            sql += " AND session_id = ?"
            args.append(query.session_id)
        if query.since is not None:
            sql += " AND ts >= ?"
            args.append(_utc(query.since))
        if query.until is not None:
            sql += " AND ts <= ?"
            args.append(_utc(query.until))
        if query.turn_ids is not None:
            if not query.turn_ids:
                return []
            sql += f" AND id IN ({','.join('?' * len(query.turn_ids))})"
            args.extend(query.turn_ids)
        sql += " ORDER BY seq DESC" if query.newest else " ORDER BY seq"
        if query.limit is not None:
            sql += " LIMIT ?"
            args.append(query.limit)
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM turns WHERE {sql}", args).fetchall()
        if query.newest:
            rows.reverse()
        return [_turn(r) for r in rows]

    def pending(self, scope: Scope | None = None, limit: int | None = None) -> list[Turn]:
        sql, args = _where(scope) if scope is not None else ("1", [])
        sql += " AND pending = 1 ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM turns WHERE {sql}", args).fetchall()
        return [_turn(r) for r in rows]

    def mark_extracted(self, turns: list[Turn]) -> None:
        with self._conn() as conn:
            conn.executemany(
                "UPDATE turns SET pending = 0 WHERE partition = ? AND id = ?",
                [(t.scope.partition, t.id) for t in turns],
            )

    @contextmanager
    def partition_lock(self, partition: str) -> Iterator[None]:
        """An exclusive `flock` per partition, beside the database file: processes sharing
        the file extract one partition at a time."""
        folder = self.path.with_name(self.path.name + ".locks")
        folder.mkdir(exist_ok=True)
        name = hashlib.sha256(partition.encode()).hexdigest()[:32]
        with (folder / f"{name}.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            yield

    def delete(self, scope: Scope, turn_ids: list[str] | None = None) -> int:
        sql, args = _where(scope)
        if turn_ids is not None:
            if not turn_ids:
                return 0
            sql += f" AND id IN ({','.join('?' * len(turn_ids))})"
            args.extend(turn_ids)
        with self._conn() as conn:
            deleted = conn.execute(f"DELETE FROM turns WHERE {sql}", args).rowcount
            # the WAL still holds the old pages: fold it into the file and empty it (best
            # effort: a concurrent reader delays this to a later checkpoint)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return deleted

    def scopes(self) -> list[Scope]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT DISTINCT user_id, agent_id, session_id FROM turns"
            ).fetchall()
        return [Scope(user_id=u, agent_id=a, session_id=s) for u, a, s in rows]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _turn(r: tuple) -> Turn:
    return Turn(
        seq=r[0], id=r[1], role=r[2], speaker=r[3], text=r[4],
        timestamp=datetime.fromisoformat(r[5]), user_id=r[6], agent_id=r[7],
        session_id=r[8], metadata=json.loads(r[9]),
    )


def _utc(moment: datetime) -> str:
    # stored and compared as UTC ISO text, so that text order is time order (naive = UTC)
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _where(scope: Scope) -> tuple[str, list[object]]:
    """The partition always, then every id the scope sets (exact match, parameterised)."""
    sql = "partition = ?"
    args: list[object] = [scope.partition]
    for column in ("user_id", "agent_id", "session_id"):
        value = getattr(scope, column)
        if value is not None:
            sql += f" AND {column} = ?"
            args.append(value)
    return sql, args
