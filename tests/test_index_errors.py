"""The index's error contract (Chroma failures are `StorageError`s, as the SQL stores'), and
the process-lock wrapper, which declares every `MemoryIndex` method as a read or a write."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest

from dualmem import MemoryIndex, Scope, StorageError
from dualmem.backends import ProcessLockedIndex
from dualmem.index.chroma import ChromaMemoryIndex
from dualmem.types import Memory

ALICE = Scope(user_id="alice")
NOW = datetime(2023, 5, 8, tzinfo=UTC)
MEMORY = Memory(id="m", text="Alice keeps bees.", user_id="alice", created_at=NOW, updated_at=NOW)
PROTOCOL = sorted(
    name for name, value in vars(MemoryIndex).items() if callable(value) and not name.startswith("_")
)
READS = {"search", "nearest", "get", "list", "count"}


class Broken(RuntimeError):
    pass


class FailingCollection:
    """A Chroma collection whose `fail` method raises, as chromadb's do (disk, Rust, HTTP)."""

    name = "dualmem_test"

    def __init__(self, fail: str) -> None:
        self.fail = fail

    def _maybe_fail(self, method: str) -> None:
        if method == self.fail:
            raise Broken(f"Error executing {method}")

    def count(self) -> int:
        return 1

    def upsert(self, **kwargs: Any) -> None:
        self._maybe_fail("upsert")

    def query(self, **kwargs: Any) -> dict[str, list]:
        self._maybe_fail("query")
        return {"ids": [[]], "documents": [[]], "metadatas": [[]], "distances": [[]]}

    def get(self, **kwargs: Any) -> dict[str, list]:
        self._maybe_fail("get")
        meta = {"user_id": "alice", "created_at": NOW.isoformat(), "updated_at": NOW.isoformat()}
        return {"ids": ["m"], "documents": ["Alice keeps bees."], "metadatas": [meta]}

    def delete(self, **kwargs: Any) -> None:
        self._maybe_fail("delete")


class FailingClient:
    def __init__(self, fail: str) -> None:
        self.collection = FailingCollection(fail)

    def get_or_create_collection(self, *args: Any, **kwargs: Any) -> FailingCollection:
        return self.collection

    def get_collection(self, *args: Any, **kwargs: Any) -> FailingCollection:
        return self.collection

    def list_collections(self) -> list[str]:
        self.collection._maybe_fail("list_collections")
        return []


def embed(texts: list[str]) -> list[list[float]]:
    return [[1.0, 0.0, 0.0] for _ in texts]


@pytest.mark.parametrize(
    ("fail", "call"),
    [
        ("upsert", lambda index: index.upsert([MEMORY])),
        ("query", lambda index: index.search("bees", ALICE, 5)),
        ("query", lambda index: index.nearest(["bees"], ALICE, 5)),
        ("get", lambda index: index.get(["m"], ALICE)),
        ("get", lambda index: index.list(ALICE)),
        ("delete", lambda index: index.delete(["m"], ALICE)),
        ("delete", lambda index: index.delete_scope(ALICE)),
        ("list_collections", lambda index: index.reset()),
    ],
)
def test_chroma_failures_are_storage_errors_with_the_cause_kept(fail, call) -> None:
    index = ChromaMemoryIndex(client=FailingClient(fail), embedding_function=embed, hybrid=False)
    with pytest.raises(StorageError, match="Chroma") as info:
        call(index)
    assert isinstance(info.value.__cause__, Broken)


def test_the_process_lock_declares_every_protocol_method_with_its_signature() -> None:
    declared = vars(ProcessLockedIndex)
    assert [name for name in PROTOCOL if name not in declared] == []
    for name in PROTOCOL:
        assert inspect.signature(declared[name]) == inspect.signature(getattr(MemoryIndex, name)), name
    assert not hasattr(ProcessLockedIndex, "__getattr__")  # nothing is wrapped by guesswork


class Recording:
    """An index that records the calls it gets."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append(name) or []


@pytest.mark.parametrize("name", PROTOCOL)
def test_only_writes_tell_other_processes_to_reopen(tmp_path, name: str) -> None:
    inner = Recording()
    index = ProcessLockedIndex(lambda: inner, tmp_path / "index.lock")
    token = index._token
    args = [a for a in inspect.signature(getattr(MemoryIndex, name)).parameters if a != "self"]
    getattr(index, name)(*([None] * len(args)))
    assert inner.calls == [name]
    assert (index._token == token) is (name in READS)
    assert (tmp_path / "index.lock").read_text() == index._token or name in READS
    index.close()


def test_a_method_that_is_not_declared_fails_loudly(tmp_path) -> None:
    index = ProcessLockedIndex(Recording, tmp_path / "index.lock")
    with pytest.raises(AttributeError):
        index.compact()  # type: ignore[attr-defined]
    index.close()
