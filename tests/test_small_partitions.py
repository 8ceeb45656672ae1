"""Small partitions: an embedded index keeps a partition of few records in small.sqlite3,
searched exactly, and moves it into its own Chroma collection once it outgrows the limit."""

from __future__ import annotations

import re

import chromadb
import numpy as np
import pytest

from dualmem.embed import MiniLMEmbedding
from dualmem.index import ChromaMemoryIndex
from dualmem.index.chroma import _collection_name, _put, _records
from dualmem.index.small import SmallCollection
from dualmem.types import Scope

from .test_index import mem

EMBED = MiniLMEmbedding()
ALICE, BOB = Scope(user_id="alice"), Scope(user_id="bob")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TEXTS = [
    "Alice drinks green tea every morning.",
    "Alice moved to Paris in 2021 for a job at the museum. She found a small flat near the "
    "river, with a balcony where she grows tomatoes and basil.",
    "Alice adopted a beagle named Rex.",
    "Alice works as a nurse at the city hospital.",
    "Order 7F3A-22 shipped on Tuesday.",
    "Bob plays the cello in a quartet.",
]


def memories(user: str = "alice", n: int = len(TEXTS), session: str | None = None):
    return [mem(f"{user}-{i}", TEXTS[i % len(TEXTS)] + (f" ({i})" if i >= len(TEXTS) else ""),
                user=user, session=session, minutes=i) for i in range(n)]


def collections(index: ChromaMemoryIndex) -> set[str]:
    return {c if isinstance(c, str) else c.name for c in index.client.list_collections()}


def segment_folders(path) -> list[str]:
    return [f.name for f in path.iterdir() if f.is_dir() and UUID.fullmatch(f.name)]


def test_a_small_partition_takes_no_chroma_collection_and_searches_like_one(tmp_path):
    small = ChromaMemoryIndex(tmp_path / "small", embedding_function=EMBED)
    big = ChromaMemoryIndex(tmp_path / "big", embedding_function=EMBED, small_limit=0)
    for index in (small, big):
        index.upsert(memories())
    assert collections(small) == set() and segment_folders(tmp_path / "small") == []
    assert _collection_name("user:alice") in collections(big)
    for query in ("What pet does Alice have?", "7F3A-22", "Where does she live?"):
        got, want = small.search(query, ALICE, 4), big.search(query, ALICE, 4)
        assert [m.id for m in got] == [m.id for m in want]
        assert [m.score for m in got] == pytest.approx([m.score for m in want], abs=1e-4)
    assert small.search("7F3A-22", ALICE, 1)[0].id == "alice-4"
    assert [[m.id for m in hits] for hits in small.nearest(["beagle"], ALICE, 2)] == \
        [[m.id for m in hits] for hits in big.nearest(["beagle"], ALICE, 2)]
    assert small.count(ALICE) == len(TEXTS) and small.search("tea", BOB, 3) == []


def test_a_partition_past_the_limit_moves_into_its_own_collection(tmp_path):
    index = ChromaMemoryIndex(tmp_path, embedding_function=EMBED, small_limit=5)
    index.upsert(memories(n=5))
    before = [m.id for m in index.search("Who plays music?", ALICE, 5)]
    assert collections(index) == set()
    index.upsert(memories(n=7)[5:])  # the sixth and seventh: past the limit
    assert _collection_name("user:alice") in collections(index)
    # nothing left behind; the sentence passages (2 of them) grow on their own and stay small
    assert index._small.names() == [_collection_name("user:alice") + "_s"]
    assert index.count(ALICE) == 7 and len(index.list(ALICE)) == 7
    reopened = ChromaMemoryIndex(tmp_path, embedding_function=EMBED, small_limit=5)
    assert set(before) < {m.id for m in reopened.search("Who plays music?", ALICE, 7)}


def test_a_move_cut_short_by_a_crash_is_finished_on_the_next_open(tmp_path):
    index = ChromaMemoryIndex(tmp_path, embedding_function=EMBED, small_limit=10)
    index.upsert(memories(n=4))
    small = index._collection(ALICE)
    assert isinstance(small, SmallCollection)
    # the copy reached Chroma, then the process died before the small rows were dropped
    _put(index._chroma(small.name, "user:alice", create=True), _records(small))
    index.close()
    reopened = ChromaMemoryIndex(tmp_path, embedding_function=EMBED, small_limit=10)
    assert not isinstance(reopened._collection(ALICE, create=False), SmallCollection)
    assert small.name not in reopened._small.names()
    assert sorted(m.id for m in reopened.list(ALICE)) == [f"alice-{i}" for i in range(4)]
    assert len(reopened.search("beagle", ALICE, 10)) == 4  # no duplicates


def test_narrowing_deleting_and_reset_in_a_small_partition(tmp_path):
    index = ChromaMemoryIndex(tmp_path, embedding_function=EMBED)
    index.upsert(memories(session="s1", n=3) + [mem("x", "Alice bought a red kayak.", session="s2")]
                 + memories(user="bob", n=2))
    s2 = Scope(user_id="alice", session_id="s2")
    assert [m.id for m in index.search("What did Alice buy?", s2, 5)] == ["x"]
    assert index.count(s2) == 1 and index.count(ALICE) == 4
    assert index.delete(["alice-0", "bob-0"], ALICE) == 1  # bob's id is not alice's to delete
    assert index.count(BOB) == 2
    assert index.delete_scope(s2) == 1 and index.count(ALICE) == 2
    assert index.delete_scope(ALICE) == 2 and index.search("tea", ALICE, 3) == []
    assert index.reset() == 2 and index.count(BOB) == 0  # bob's memories and sentence passages


def test_an_unknown_filter_is_refused_not_read_as_a_match(tmp_path):
    index = ChromaMemoryIndex(tmp_path, embedding_function=EMBED)
    index.upsert(memories(n=2))
    with pytest.raises(ValueError, match=r"\$gt"):
        index._collection(ALICE).get(where={"created_at": {"$gt": "2024"}})


def test_a_client_given_keeps_every_partition_in_chroma(tmp_path):
    client = chromadb.EphemeralClient()
    index = ChromaMemoryIndex(client=client, embedding_function=EMBED)
    index.upsert(memories(n=2))
    assert _collection_name("user:alice") in collections(index)
    assert index._small is None


def test_small_partition_vectors_are_the_stored_vectors(tmp_path):
    index = ChromaMemoryIndex(tmp_path, embedding_function=EMBED)
    index.upsert(memories(n=1))
    got = index._collection(ALICE).get(ids=["alice-0"], include=["embeddings"])
    want = np.asarray(EMBED([memories(n=1)[0].render()])[0], dtype=np.float32)
    assert np.allclose(got["embeddings"][0], want, atol=1e-6)


@pytest.mark.parametrize(("value", "in_chroma"), [("0", True), ("100", False)])
def test_the_limit_comes_from_the_environment(tmp_path, monkeypatch, value, in_chroma):
    from dualmem import DualMemory
    from dualmem.testing import ScriptedLLM

    monkeypatch.setenv("DUALMEM_SMALL_PARTITION_LIMIT", value)
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    memory.add([{"content": "I keep bees on the roof.", "id": "t1"}], user_id="alice")
    assert (_collection_name("user:alice") in collections(memory.index.inner)) is in_chroma
    assert [m.text for m in memory.search("bees", user_id="alice")] == ["user: I keep bees on the roof."]
    memory.close()


def test_a_bad_limit_is_a_config_error(monkeypatch):
    from dualmem import ConfigError
    from dualmem.config import Config

    monkeypatch.setenv("DUALMEM_SMALL_PARTITION_LIMIT", "-1")
    with pytest.raises(ConfigError, match="small_partition_limit"):
        Config.from_env()
