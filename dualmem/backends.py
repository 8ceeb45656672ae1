"""Pick the history store and memory index a config names.

- history: None or `sqlite:///path` -> SQLite (default: `data_dir/history.sqlite3`);
  `postgresql://user:pw@host:5432/db` (or `postgres://`) -> PostgreSQL.
- index: None -> embedded Chroma in `data_dir/chroma`; `http(s)://host:port` -> a Chroma
  server, optionally `?tenant=..&database=..`. A token (env `DUALMEM_CHROMA_TOKEN`, else the
  URL's password) is sent as `Authorization: Bearer ...`, or in the header named by
  `?token_header=X-Chroma-Token`.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .config import Config
from .errors import ConfigError, StorageError
from .history.base import HistoryStore
from .index.base import MemoryIndex

__all__ = ["chroma_http_client", "make_history", "make_index", "redact"]

_INDEX_OPTIONS = {"tenant", "database", "token_header"}


def redact(url: str) -> str:
    """The URL with its password masked: the only form of a URL we put in messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def make_history(config: Config) -> HistoryStore:
    url = config.history_url
    if url is None or url.startswith("sqlite:"):
        from .history.sqlite import SQLiteHistoryStore

        path = url.removeprefix("sqlite:///").removeprefix("sqlite:") if url else None
        return SQLiteHistoryStore(path or config.data_dir / "history.sqlite3")
    if url.startswith(("postgresql://", "postgres://")):
        from .history.postgres import PostgresHistoryStore

        return PostgresHistoryStore(url)
    raise ConfigError(
        f"unsupported history_url {redact(url)!r}: use sqlite:///path/to/file or "
        "postgresql://user:password@host:5432/dbname"
    )


def make_index(config: Config) -> MemoryIndex:
    from .embed import make_embedding
    from .index.chroma import ChromaMemoryIndex

    url = config.index_url
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"unsupported index_url {redact(url)!r}: use http://host:8000 (a Chroma server), "
            "or leave it unset for the embedded index in data_dir"
        )
    embedding = make_embedding(config.embedder, config.embedding_model, config.base_url)
    if url is None:
        return ChromaMemoryIndex(config.data_dir / "chroma", embedding_function=embedding)
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
            f"bad index_url {redact(url)!r}: expected http(s)://host:port with optional "
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
        raise StorageError(
            f"cannot reach the Chroma server at {redact(url)}: {e}. Check that it is running "
            "(chroma run --host ... --port ...) and the tenant, database and token are right."
        ) from e
