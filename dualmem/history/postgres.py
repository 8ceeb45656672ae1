"""PostgreSQL history store: psycopg 3 with a connection pool, for many processes or machines.

The library creates and migrates its own tables (prefixed `dualmem_`, so it can share a
database). Migrations are numbered; each process applies the missing ones in one transaction
under an advisory lock, so processes starting together neither race nor apply one twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ..errors import StorageError
from ..redact import redact_url, scrub, secrets_in
from ..types import Scope, Turn
from .base import TurnQuery

__all__ = ["PostgresHistoryStore"]

# Append only: a released migration is never edited, a change is a new entry.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE dualmem_turns (
        seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        partition  TEXT NOT NULL,
        id         TEXT NOT NULL,
        role       TEXT NOT NULL,
        speaker    TEXT,
        text       TEXT NOT NULL,
        ts         TIMESTAMPTZ NOT NULL,
        user_id    TEXT,
        agent_id   TEXT,
        session_id TEXT,
        metadata   JSONB NOT NULL DEFAULT '{}',
        UNIQUE (partition, id)
    );
    CREATE INDEX dualmem_turns_scope ON dualmem_turns (partition, session_id, seq);
    """,
    # turns waiting for extraction; existing ones were indexed when added
    """
    ALTER TABLE dualmem_turns ADD COLUMN pending BOOLEAN NOT NULL DEFAULT FALSE;
    CREATE INDEX dualmem_turns_pending ON dualmem_turns (seq) WHERE pending;
    """,
]

_LOCK_KEY = 0x64756D656D  # "dumem": the advisory lock that serialises migrations
_COLUMNS = "seq, id, role, speaker, text, ts AS timestamp, user_id, agent_id, session_id, metadata"
# Static statements: a filter that is NULL is off. The partition is always matched, so the
# (partition, session_id, seq) index serves every query.
# a replaced turn keeps its seq (its place in the history) and takes everything else
_REPLACE = (
    " ON CONFLICT (partition, id) DO UPDATE SET role = excluded.role, speaker = excluded.speaker,"
    " text = excluded.text, ts = excluded.ts, user_id = excluded.user_id,"
    " agent_id = excluded.agent_id, session_id = excluded.session_id,"
    " metadata = excluded.metadata, pending = excluded.pending"
)
_SCOPE = (
    "partition = %(partition)s"
    " AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s)"
    " AND (%(agent_id)s::text IS NULL OR agent_id = %(agent_id)s)"
    " AND (%(session_id)s::text IS NULL OR session_id = %(session_id)s)"
)
_LIST = (
    f"SELECT {_COLUMNS} FROM dualmem_turns WHERE {_SCOPE}"
    " AND (%(session)s::text IS NULL OR session_id = %(session)s)"
    " AND (%(since)s::timestamptz IS NULL OR ts >= %(since)s)"
    " AND (%(until)s::timestamptz IS NULL OR ts <= %(until)s)"
    " AND (%(turn_ids)s::text[] IS NULL OR id = ANY(%(turn_ids)s))"
    " ORDER BY seq LIMIT %(limit)s"
)


class PostgresHistoryStore:
    """History in PostgreSQL. `url` is a libpq URL or DSN (`postgresql://user:pw@host/db`)."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0) -> None:
        self.display_url = redact_url(url)
        self._url = url
        try:
            # one direct connection first: it fails at once with libpq's own reason
            # (refused, bad password), where a pool would retry until its timeout
            with psycopg.connect(url, autocommit=True, connect_timeout=int(timeout)) as conn:
                self._migrate(conn)
        except StorageError:
            raise
        except Exception as e:
            # libpq echoes parts of the URL it could not parse (a bad percent-escape in the
            # password): the cause is masked and not chained, so no traceback prints it
            raise StorageError(
                f"cannot open the PostgreSQL history at {self.display_url}: "
                f"{scrub(str(e), *secrets_in(url))}. "
                "Check that the server is running and the URL, user and password are right."
            ) from None
        self._pool = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout,
            kwargs={"autocommit": True},  # single statements commit; append opens a transaction
            configure=_utc, name="dualmem-history", open=True,
        )

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, OSError) as e:
            raise StorageError(f"history database error at {self.display_url}: {e}") from e

    def _migrate(self, conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS dualmem_schema_version ("
                " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            row = conn.execute("SELECT max(version) FROM dualmem_schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise StorageError(
                    f"the history at {self.display_url} has schema version {current}, newer than "
                    f"this dualmem ({len(MIGRATIONS)}): upgrade dualmem"
                )
            for version, ddl in enumerate(MIGRATIONS[current:], start=current + 1):
                conn.execute(ddl)
                conn.execute("INSERT INTO dualmem_schema_version (version) VALUES (%s)", (version,))

    def schema_version(self) -> int:
        with self._conn() as conn:
            return conn.execute("SELECT max(version) FROM dualmem_schema_version").fetchone()[0]

    def append(self, turns: list[Turn], *, pending: bool = False, replace: bool = False) -> list[Turn]:
        if not turns:
            return []
        rows = [
            (
                t.scope.partition,
                t.id, t.role, t.speaker, t.text, t.timestamp, t.user_id, t.agent_id,
                t.session_id, Jsonb(t.metadata), pending,
            )
            for t in turns
        ]
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            # one pipelined round of inserts; a row that already exists returns nothing
            cur.executemany(
                "INSERT INTO dualmem_turns (partition, id, role, speaker, text, ts, user_id,"
                " agent_id, session_id, metadata, pending)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                + (_REPLACE if replace else " ON CONFLICT (partition, id) DO NOTHING") + " RETURNING seq",
                rows, returning=True,
            )
            seqs = [result.fetchone() for result in cur.results()]
        return [t.model_copy(update={"seq": s[0]}) for t, s in zip(turns, seqs, strict=True) if s]

    def list(self, query: TurnQuery) -> list[Turn]:
        params = {
            **_scope_params(query.scope), "session": query.session_id, "since": query.since,
            "until": query.until, "turn_ids": query.turn_ids, "limit": query.limit,
        }
        sql = _LIST.replace("ORDER BY seq", "ORDER BY seq DESC") if query.newest else _LIST
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            turns = [Turn(**row) for row in cur.execute(sql, params)]  # session time zone: UTC
        return turns[::-1] if query.newest else turns

    def pending(self, scope: Scope | None = None, limit: int | None = None) -> list[Turn]:
        where = _SCOPE if scope is not None else "TRUE"
        params = {**(_scope_params(scope) if scope is not None else {}), "limit": limit}
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            return [Turn(**row) for row in cur.execute(
                f"SELECT {_COLUMNS} FROM dualmem_turns WHERE {where} AND pending"
                " ORDER BY seq LIMIT %(limit)s", params)]

    def mark_extracted(self, turns: list[Turn]) -> None:
        with self._conn() as conn, conn.cursor() as cur:
            cur.executemany(
                "UPDATE dualmem_turns SET pending = FALSE WHERE partition = %s AND id = %s",
                [(t.scope.partition, t.id) for t in turns],
            )

    @contextmanager
    def partition_lock(self, partition: str) -> Iterator[None]:
        """A session advisory lock per partition, on a connection of its own (one from the
        pool could be the one the extraction it guards is waiting for)."""
        key = int.from_bytes(hashlib.sha256(partition.encode()).digest()[:8], "big", signed=True)
        try:
            conn = psycopg.connect(self._url, autocommit=True)
        except psycopg.Error as e:
            raise StorageError(f"history database error at {self.display_url}: {e}") from None
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            yield
        finally:
            conn.close()  # ending the session releases its advisory locks

    def delete(self, scope: Scope, turn_ids: list[str] | None = None) -> int:
        where = _SCOPE if turn_ids is None else _SCOPE + " AND id = ANY(%(turn_ids)s)"
        with self._conn() as conn:
            return conn.execute(
                f"DELETE FROM dualmem_turns WHERE {where}", {**_scope_params(scope), "turn_ids": turn_ids}
            ).rowcount

    def scopes(self) -> list[Scope]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT DISTINCT user_id, agent_id, session_id FROM dualmem_turns"
            ).fetchall()
        return [Scope(user_id=u, agent_id=a, session_id=s) for u, a, s in rows]

    def close(self) -> None:
        self._pool.close()


def _utc(conn: Any) -> None:
    conn.execute("SET TIME ZONE 'UTC'")


def _scope_params(scope: Scope) -> dict[str, str | None]:
    return {"partition": scope.partition, "user_id": scope.user_id, "agent_id": scope.agent_id,
            "session_id": scope.session_id}
