from __future__ import annotations

from datetime import datetime

import pytest
from dualmem import DualMemory
from langchain_core.documents import Document

from langchain_dualmem import DualMemRetriever


def _add(memory: DualMemory, user: str, text: str, session: str = "s1") -> str:
    return memory.add(text, user_id=user, session_id=session, timestamp="2024-03-05T10:00:00").turns[0].id


def test_documents_carry_memory_metadata(memory: DualMemory) -> None:
    turn_id = _add(memory, "alice", "I moved to Lisbon in March 2024.")
    _add(memory, "alice", "My favourite food is ramen.")
    docs = DualMemRetriever(memory=memory, user_id="alice", k=1).invoke("Where does she live?")
    assert len(docs) == 1
    doc = docs[0]
    assert isinstance(doc, Document)
    assert doc.page_content == "user: I moved to Lisbon in March 2024."  # extract=False: raw turn
    meta = doc.metadata
    assert doc.id == meta["id"] == turn_id
    assert meta["source_turn_ids"] == [turn_id]
    assert meta["event_date"] == "2024-03-05"
    assert isinstance(meta["score"], float)
    assert datetime.fromisoformat(meta["created_at"]) <= datetime.fromisoformat(meta["updated_at"])
    assert (meta["user_id"], meta["agent_id"], meta["session_id"]) == ("alice", None, "s1")


def test_k_in_constructor_and_invoke(memory: DualMemory) -> None:
    for text in ("I live in Lisbon.", "I have a dog.", "I play chess.", "I like tea."):
        _add(memory, "alice", text)
    retriever = DualMemRetriever(memory=memory, user_id="alice", k=2)
    assert len(retriever.invoke("hobbies")) == 2
    assert len(retriever.invoke("hobbies", k=4)) == 4
    assert retriever.invoke("where do I live?", k=1)[0].page_content == "user: I live in Lisbon."


def test_users_never_see_each_other(memory: DualMemory) -> None:
    _add(memory, "alice", "My PIN is 1234.")
    _add(memory, "bob", "My PIN is 9876.")
    alice = DualMemRetriever(memory=memory, user_id="alice").invoke("What is my PIN?")
    bob = DualMemRetriever(memory=memory, user_id="bob").invoke("What is my PIN?")
    assert [d.page_content for d in alice] == ["user: My PIN is 1234."]
    assert [d.page_content for d in bob] == ["user: My PIN is 9876."]
    assert DualMemRetriever(memory=memory, user_id="carol").invoke("What is my PIN?") == []


def test_session_filter(memory: DualMemory) -> None:
    _add(memory, "alice", "I live in Lisbon.", session="s1")
    _add(memory, "alice", "I live in Porto now.", session="s2")
    docs = DualMemRetriever(memory=memory, user_id="alice", session_id="s2").invoke("where do I live")
    assert [d.metadata["session_id"] for d in docs] == ["s2"]


async def test_async_matches_sync(memory: DualMemory) -> None:
    for text in ("I live in Lisbon.", "I have a dog called Pixel.", "I play chess."):
        _add(memory, "alice", text)
    retriever = DualMemRetriever(memory=memory, user_id="alice")
    sync_docs = retriever.invoke("What is my dog called?", k=2)
    async_docs = await retriever.ainvoke("What is my dog called?", k=2)
    assert [d.id for d in async_docs] == [d.id for d in sync_docs]
    assert async_docs[0].page_content == "user: I have a dog called Pixel."


def test_scope_is_checked_at_construction(memory: DualMemory) -> None:
    # pydantic wraps the ScopeError in a ValidationError; both are ValueErrors
    with pytest.raises(ValueError, match="needs a scope"):
        DualMemRetriever(memory=memory)
    with pytest.raises(ValueError, match="not a valid id"):
        DualMemRetriever(memory=memory, user_id="  ")


def test_search_kwargs_k_is_honoured_and_unknown_keys_refused(memory: DualMemory) -> None:
    memory.add([f"Fact number {i} about my garden." for i in range(12)], user_id="alice")
    two = DualMemRetriever(memory=memory, user_id="alice", search_kwargs={"k": 2})
    assert len(two.invoke("garden")) == 2
    assert len(DualMemRetriever(memory=memory, user_id="alice").invoke("garden")) == 10
    with pytest.raises(ValueError, match="only 'k'"):
        DualMemRetriever(memory=memory, user_id="alice", search_kwargs={"k": 2, "score_threshold": 0.5})
    with pytest.raises(ValueError, match="positive integer"):
        DualMemRetriever(memory=memory, user_id="alice", search_kwargs={"k": 0})


def test_scores_descend_with_the_cosine_under_its_own_name(memory: DualMemory) -> None:
    memory.add(["My bib number is 4417.", "I ran the Lisbon marathon in 2023.", "Marathons are long.",
                "I like running in the rain."], user_id="alice")
    retriever = DualMemRetriever(memory=memory, user_id="alice")
    docs = retriever.invoke("what was my bib number 4417 in the marathon")
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(d.metadata["cosine"], float) for d in docs)
    assert docs[0].page_content.endswith("4417.")
