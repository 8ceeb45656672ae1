"""Pytest plugin: real PostgreSQL and Chroma servers for tests marked `servers`.

The servers start once per session, on first use, and stop at the end of the session (also
when tests fail or the run is interrupted). Each test gets its own empty database on both,
so tests never see each other's data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from dualmem.bench.servers import ChromaServer, PostgresServer, start_chroma, start_postgres

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with start_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def chroma() -> Iterator[ChromaServer]:
    with start_chroma() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A URL of a new, empty PostgreSQL database, dropped after the test."""
    import psycopg

    name = f"test_{next(_names)}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres.database_url(name)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def chroma_url(chroma: ChromaServer) -> Iterator[str]:
    """A URL of a new, empty Chroma database on the server, deleted after the test."""
    import chromadb
    from chromadb.config import Settings

    admin = chromadb.AdminClient(Settings(
        chroma_api_impl="chromadb.api.fastapi.FastAPI", chroma_server_host="127.0.0.1",
        chroma_server_http_port=chroma.port, anonymized_telemetry=False,
    ))
    name = f"test_{next(_names)}"
    admin.create_database(name)
    yield f"{chroma.url}/?database={name}"
    admin.delete_database(name)
