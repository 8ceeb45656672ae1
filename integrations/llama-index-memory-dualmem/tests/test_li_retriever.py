"""DualMemRetriever: dualmem memories as llama-index nodes."""

from __future__ import annotations

import pytest
from dualmem import DualMemory
from llama_index.core.schema import MetadataMode, NodeWithScore

from llama_index.memory.dualmem import DualMemRetriever


def test_nodes_carry_the_memory_id_score_and_provenance(alice: DualMemory) -> None:
    nodes = DualMemRetriever(alice, user_id="alice", k=2).retrieve("Where did Alice move to?")
    assert len(nodes) == 2 and all(isinstance(n, NodeWithScore) for n in nodes)
    best = nodes[0]
    memory = alice.get(best.node.node_id, user_id="alice")
    assert memory is not None and best.node.text == memory.text == "user: I moved to Paris in 2021."
    assert best.score is not None and best.score > (nodes[1].score or 0)
    turn = alice.history(user_id="alice", session_id="earlier")[0]
    assert best.node.metadata == {
        "kind": "memory",
        "memory_id": memory.id,
        "source_turn_ids": [turn.id],
        "event_date": "2023-05-07",
        "user_id": "alice",
        "session_id": "earlier",
        "created_at": memory.created_at.isoformat(),
        "updated_at": memory.updated_at.isoformat(),
    }
    # the LLM reads the date, not the bookkeeping
    shown = best.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "event_date: 2023-05-07" in shown and "source_turn_ids" not in shown


async def test_async_retrieve_matches_sync(alice: DualMemory) -> None:
    retriever = DualMemRetriever(alice, user_id="alice", k=3)
    sync_ids = [n.node.node_id for n in retriever.retrieve("sister nurse")]
    async_ids = [n.node.node_id for n in await retriever.aretrieve("sister nurse")]
    assert async_ids == sync_ids and len(sync_ids) == 3


def test_scopes_never_mix(alice: DualMemory) -> None:
    alice.add("I moved to Berlin in 2019.", user_id="bob")
    bob_nodes = DualMemRetriever(alice, user_id="bob").retrieve("Where did I move to?")
    assert [n.node.text for n in bob_nodes] == ["user: I moved to Berlin in 2019."]
    alice_texts = [n.node.text for n in DualMemRetriever(alice, user_id="alice").retrieve("Berlin")]
    assert alice_texts and not any("Berlin" in t for t in alice_texts)
    # a session narrows within the user
    assert DualMemRetriever(alice, user_id="alice", session_id="other").retrieve("Paris") == []


def test_a_scope_is_required(alice: DualMemory) -> None:
    with pytest.raises(ValueError, match="needs a scope"):
        DualMemRetriever(alice)
