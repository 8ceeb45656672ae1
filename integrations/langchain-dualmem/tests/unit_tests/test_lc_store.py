"""`DualMemStore` against the behaviours LangGraph's own `InMemoryStore` is tested for
(langgraph libs/checkpoint/tests/test_store.py), ported to dualmem's search, plus the
namespace -> scope mapping, overwrite/delete semantics and bad input.

The ported tests use a store mapping every namespace's first label to a user
(`namespaces=[("{user_id}",)]`), so the namespaces of the original tests work as they are."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from dualmem import DualMemory, InvalidInputError, ScopeError
from langgraph.store.base import InvalidNamespaceError, Item, PutOp

from langchain_dualmem import DualMemStore


@pytest.fixture
def store(memory: DualMemory) -> DualMemStore:
    return DualMemStore(memory, namespaces=[("{user_id}",)])


# ---------------------------------------------------------------- ported: list_namespaces


def test_list_namespaces_basic(store: DualMemStore) -> None:
    namespaces = [
        ("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f"), ("a", "c", "f"),
        ("b", "a", "f"), ("users", "123"), ("users", "456", "settings"), ("admin", "users", "789"),
    ]
    for i, ns in enumerate(namespaces):
        store.put(namespace=ns, key=f"id_{i}", value={"data": f"value_{i:02d}"})

    ab = [("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f")]
    assert sorted(store.list_namespaces(prefix=("a", "b"))) == ab
    assert sorted(store.list_namespaces(suffix=("f",))) == [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert sorted(store.list_namespaces(prefix=("a",), suffix=("f",))) == [("a", "b", "f"), ("a", "c", "f")]
    assert sorted(store.list_namespaces(prefix=("a", "b"), max_depth=3)) == [
        ("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]
    assert store.list_namespaces(prefix=("a", "b"), limit=2) == ab[:2]
    assert store.list_namespaces(prefix=("a", "b"), offset=2) == ab[2:]
    assert sorted(store.list_namespaces(prefix=("a", "*", "f"))) == [("a", "b", "f"), ("a", "c", "f")]
    assert sorted(store.list_namespaces(suffix=("*", "f"))) == [
        ("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert store.list_namespaces(prefix=("nonexistent",)) == []
    assert store.list_namespaces(prefix=("users", "123")) == [("users", "123")]


def test_list_namespaces_with_wildcards(store: DualMemStore) -> None:
    namespaces = [("users", "123"), ("users", "456"), ("users", "789", "settings"), ("admin", "users", "789"),
                  ("guests", "123"), ("guests", "456", "preferences")]
    for i, ns in enumerate(namespaces):
        store.put(namespace=ns, key=f"id_{i}", value={"data": f"value_{i:02d}"})
    assert sorted(store.list_namespaces(prefix=("users", "*"))) == [
        ("users", "123"), ("users", "456"), ("users", "789", "settings")]
    assert store.list_namespaces(suffix=("*", "preferences")) == [("guests", "456", "preferences")]
    assert store.list_namespaces(prefix=("*", "users"), suffix=("*", "settings")) == []


def test_list_namespaces_pagination(store: DualMemStore) -> None:
    for i in range(20):
        store.put(("namespace", f"sub_{i:02d}"), f"id_{i:02d}", {"data": f"value_{i:02d}"})
    for offset in (0, 5, 15):
        assert store.list_namespaces(prefix=("namespace",), limit=5, offset=offset) == [
            ("namespace", f"sub_{i:02d}") for i in range(offset, offset + 5)]


def test_list_namespaces_max_depth(store: DualMemStore) -> None:
    for i, ns in enumerate([("a", "b", "c", "d"), ("a", "b", "c", "e"), ("a", "b", "f"), ("a", "g"),
                            ("h", "i", "j", "k")]):
        store.put(namespace=ns, key=f"id_{i}", value={"data": f"value_{i:02d}"})
    assert sorted(store.list_namespaces(max_depth=2)) == [("a", "b"), ("a", "g"), ("h", "i")]


def test_list_namespaces_no_conditions_and_empty_store(store: DualMemStore) -> None:
    assert store.list_namespaces() == []
    namespaces = [("a", "b"), ("c", "d"), ("e", "f", "g")]
    for i, ns in enumerate(namespaces):
        store.put(namespace=ns, key=f"id_{i}", value={"data": f"value_{i:02d}"})
    assert sorted(store.list_namespaces()) == namespaces


# ---------------------------------------------------------------- ported: namespaces


async def test_cannot_put_empty_namespace(store: DualMemStore) -> None:
    doc = {"foo": "bar"}
    for bad in [(), ("the", "thing.about"), ("some", "fun", ""), ("langgraph", "foo")]:
        with pytest.raises(InvalidNamespaceError):
            store.put(bad, "foo", doc)
        with pytest.raises(InvalidNamespaceError):
            await store.aput(bad, "foo", doc)

    ns = ("foo", "langgraph", "foo")
    await store.aput(ns, "bar", doc)
    assert (await store.aget(ns, "bar")).value == doc  # type: ignore[union-attr]
    assert (await store.asearch(ns, query="bar"))[0].value == doc
    await store.adelete(ns, "bar")
    assert await store.aget(ns, "bar") is None
    store.put(ns, "bar", doc)
    assert store.get(ns, "bar").value == doc  # type: ignore[union-attr]
    assert store.search(ns, query="bar")[0].value == doc
    store.delete(ns, "bar")
    assert store.get(ns, "bar") is None

    # past the public put api, as LangGraph's own store allows
    await store.abatch([PutOp(("langgraph", "foo"), "bar", doc)])
    assert (await store.aget(("langgraph", "foo"), "bar")).value == doc  # type: ignore[union-attr]
    assert (await store.asearch(("langgraph", "foo")))[0].value == doc
    await store.adelete(("langgraph", "foo"), "bar")
    assert await store.aget(("langgraph", "foo"), "bar") is None
    store.batch([PutOp(("langgraph", "foo"), "bar", doc)])
    assert store.get(("langgraph", "foo"), "bar").value == doc  # type: ignore[union-attr]
    store.delete(("langgraph", "foo"), "bar")
    assert store.get(("langgraph", "foo"), "bar") is None


# ---------------------------------------------------------------- ported: search


DOCS = [
    ("doc1", {"text": "short text"}),
    ("doc2", {"text": "longer text document"}),
    ("doc3", {"text": "longest text document here"}),
    ("doc4", {"description": "text in description field"}),
    ("doc5", {"content": "text in content field"}),
    ("doc6", {"body": "text in body field"}),
]


def test_insert_with_auto_indexing(store: DualMemStore) -> None:
    for key, value in DOCS:
        store.put(("test",), key, value)
    keys = [r.key for r in store.search(("test",), query="long text")]
    assert "doc2" in keys and "doc3" in keys


async def test_async_insert_with_auto_indexing(store: DualMemStore) -> None:
    for key, value in DOCS:
        await store.aput(("test",), key, value)
    keys = [r.key for r in await store.asearch(("test",), query="long text")]
    assert "doc2" in keys and "doc3" in keys


@pytest.mark.parametrize("use_async", [False, True])
async def test_update_reindexes(store: DualMemStore, use_async: bool) -> None:
    async def put(key, value, **kw):
        if use_async:
            return await store.aput(("test",), key, value, **kw)
        return store.put(("test",), key, value, **kw)

    async def search(query, **kw):
        return await store.asearch(("test",), query=query, **kw) if use_async else store.search(
            ("test",), query=query, **kw)

    await put("doc1", {"text": "zany zebra Xerxes"})
    await put("doc2", {"text": "something about dogs"})
    await put("doc3", {"text": "text about birds"})
    initial = await search("Zany Xerxes")
    assert initial[0].key == "doc1" and initial[0].score is not None

    await put("doc1", {"text": "new text about dogs"})
    after = next((r.score for r in await search("Zany Xerxes") if r.key == "doc1"), 0.0)
    assert after is not None and after < initial[0].score
    # scores are ranks fused (RRF), not cosines: on three documents the new text ranks doc1
    # first, which is the score the old text gave it only among the dense results
    new = await search("new text about dogs")
    assert new[0].key == "doc1" and new[0].score >= after

    await put("doc4", {"text": "new text about dogs"}, index=False)
    assert not any(r.key == "doc4" for r in await search("new text about dogs", limit=3))


def test_search_with_filters(store: DualMemStore) -> None:
    docs = [
        ("doc1", {"text": "red apple", "color": "red", "score": 4.5}),
        ("doc2", {"text": "red car", "color": "red", "score": 3.0}),
        ("doc3", {"text": "green apple", "color": "green", "score": 4.0}),
        ("doc4", {"text": "blue car", "color": "blue", "score": 3.5}),
    ]
    for key, value in docs:
        store.put(("test",), key, value)
    results = store.search(("test",), query="apple", filter={"color": "red"})
    assert [r.key for r in results][:1] == ["doc1"] and len(results) == 2
    results = store.search(("test",), query="car", filter={"color": "red"})
    assert [r.key for r in results][:1] == ["doc2"] and len(results) == 2
    results = store.search(("test",), query="bbbbluuu", filter={"score": {"$gt": 3.2}})
    assert {r.key for r in results} == {"doc1", "doc3", "doc4"}
    results = store.search(("test",), query="apple", filter={"score": {"$gte": 4.0}, "color": "green"})
    assert [r.key for r in results] == ["doc3"]
    # without a query: a filtered listing, oldest first
    assert [r.key for r in store.search(("test",), filter={"color": {"$ne": "red"}})] == ["doc3", "doc4"]


async def test_concurrent_puts_deletes_and_filtered_searches(store: DualMemStore) -> None:
    colors = ["red", "blue", "green", "yellow", "purple"]
    items = ["apple", "car", "house", "book", "phone"]
    docs = [(f"doc{i}", {"text": f"{colors[i % 5]} {items[i % 5]}", "color": colors[i % 5],
                         "score": [3.0, 3.5, 4.0, 4.5, 5.0][i % 5], "index": i}) for i in range(20)]
    await asyncio.gather(*[store.aput(("test",), k, v) for k, v in docs])
    await asyncio.gather(*[store.adelete(("test",), k) for k, _ in docs])
    await asyncio.gather(*[store.aput(("test",), k, v) for k, v in docs])
    queries = [("apple", {"color": "red"}), ("phone", {"score": {"$gt": 4.99}}),
               ("book", {"score": {"$lte": 3.5}}), ("house", {"index": {"$gt": 10}})]
    results = await asyncio.gather(*[store.asearch(("test",), query=q, filter=f) for q, f in queries])
    for found, (_, f) in zip(results, queries, strict=True):
        assert found
        for r in found:
            if "color" in f:
                assert r.value["color"] == f["color"]
            if "score" in f:
                op, bound = next(iter(f["score"].items()))
                assert r.value["score"] > bound if op == "$gt" else r.value["score"] <= bound
            if "index" in f:
                assert r.value["index"] > 10


def test_search_pagination(store: DualMemStore) -> None:
    for i in range(5):
        store.put(("test",), f"doc{i}", {"text": f"test document number {i}"})
    page1 = store.search(("test",), query="test", limit=2)
    page2 = store.search(("test",), query="test", limit=2, offset=2)
    assert len(page1) == len(page2) == 2 and page1[0].key != page2[0].key
    assert len(store.search(("test",), query="test", limit=10)) == 5
    scores = [r.score for r in store.search(("test",), query="document number 3")]
    assert scores == sorted(scores, reverse=True)


def test_index_fields(memory: DualMemory) -> None:
    store = DualMemStore(memory, namespaces=[("{user_id}",)], fields=["key0", "key1", "key3"])
    store.put(("test",), "doc1", {"key1": "xxx", "key2": "yyy", "key3": "zzz"})
    store.put(("test",), "doc2", {"key0": "uuu", "key1": "vvv", "key2": "www", "key3": "xxx"})
    assert {r.key for r in store.search(("test",), query="xxx")} == {"doc1", "doc2"}
    assert store.search(("test",), query="uuu")[0].key == "doc2"
    # key2 is not indexed: no lexical match for it, both still listed
    assert len(store.search(("test",), query="www")) == 2
    # per item: index=[...] picks the fields, index=False keeps it out of search (score None)
    store.put(("test",), "doc3", {"key0": "aaa", "key1": "bbb"}, index=["key0"])
    store.put(("test",), "doc5", {"key0": "hhh"}, index=False)
    results = store.search(("test",), query="aaa")
    assert results[0].key == "doc3"
    assert next(r for r in results if r.key == "doc5").score is None


def test_non_ascii(store: DualMemStore) -> None:
    texts = ["这是中文", "これは日本語です", "이건 한국어야", "Это русский", "यह रूसी है"]
    for i, text in enumerate(texts, 1):
        store.put(("user_123", "memories"), str(i), {"text": text})
    for i, text in enumerate(texts, 1):
        assert store.search(("user_123", "memories"), query=text)[0].key == str(i)


# ---------------------------------------------------------------- items, scopes, semantics


def test_items_carry_keys_values_and_timestamps(memory: DualMemory) -> None:
    store = DualMemStore(memory)  # ("memories", "{user_id}")
    store.put(("memories", "alice"), "diet", {"text": "Alice is vegetarian."})
    item = store.get(("memories", "alice"), "diet")
    assert isinstance(item, Item) and item.key == "diet" and item.namespace == ("memories", "alice")
    assert item.value == {"text": "Alice is vegetarian."}
    assert isinstance(item.created_at, datetime) and item.created_at == item.updated_at
    store.put(("memories", "alice"), "diet", {"text": "Alice is vegan."})
    again = store.get(("memories", "alice"), "diet")
    assert again.value == {"text": "Alice is vegan."}
    assert again.created_at == item.created_at and again.updated_at > item.updated_at
    # one item, one memory, in alice's scope: dualmem's own API sees it
    assert [m.text for m in memory.get_all(user_id="alice")] == ['memory: {"text": "Alice is vegan."}']
    assert store.get(("memories", "bob"), "diet") is None


def test_namespaces_map_onto_scopes_and_never_cross_them(memory: DualMemory) -> None:
    templates = [("memories", "{user_id}"), ("agents", "{agent_id}", "{session_id}")]
    store = DualMemStore(memory, namespaces=templates)
    store.put(("memories", "alice", "food"), "k", {"text": "likes figs"})
    store.put(("memories", "bob"), "k", {"text": "likes figs too"})
    store.put(("agents", "planner", "s1"), "k", {"text": "plan: book flights"})
    found = store.search(("memories", "alice"), query="figs")
    assert [r.namespace for r in found] == [("memories", "alice", "food")]
    assert memory.get_all(agent_id="planner", session_id="s1")[0].text.endswith('"plan: book flights"}')
    assert sorted(store.list_namespaces()) == [
        ("agents", "planner", "s1"), ("memories", "alice", "food"), ("memories", "bob")]


def test_a_namespace_mapping_to_no_scope_is_refused_and_writes_nothing(memory: DualMemory) -> None:
    store = DualMemStore(memory)
    for bad in [("users", "alice"), ("memories",)]:
        with pytest.raises(ScopeError, match=r"\('memories', user_id\)") as info:
            store.put(bad, "k", {"text": "x"})
        assert "namespaces=" in str(info.value)
    with pytest.raises(ScopeError):
        store.search(("memories",), query="x")  # a prefix wider than one user would cross scopes
    assert store.list_namespaces() == [] and memory.scopes() == []
    with pytest.raises(ScopeError, match="placeholder"):
        DualMemStore(memory, namespaces=[("memories",)])


def test_oversized_values_are_refused_with_adds_limits(memory: DualMemory) -> None:
    store = DualMemStore(memory)
    with pytest.raises(InvalidInputError, match="limit is 1000000"):
        store.put(("memories", "alice"), "big", {"text": "x" * 1_000_001})
    with pytest.raises(InvalidInputError, match="limit is 1000000"):
        store.put(("memories", "alice"), "big", {"text": "small", "blob": "y" * 1_000_001}, index=["text"])
    assert store.get(("memories", "alice"), "big") is None and memory.scopes() == []


def test_a_deleted_item_never_comes_back(memory: DualMemory) -> None:
    store = DualMemStore(memory)
    store.put(("memories", "alice"), "code", {"text": "The gate code is 4512."})
    store.delete(("memories", "alice"), "code")
    assert store.search(("memories", "alice"), query="gate code") == []
    memory.reindex(user_id="alice")
    assert store.get(("memories", "alice"), "code") is None
    assert memory.search("gate code", user_id="alice") == []
    store.put(("memories", "alice"), "code", {"text": "The gate code is 9930."})
    assert [r.value for r in store.search(("memories", "alice"), query="gate code")] == [
        {"text": "The gate code is 9930."}]
