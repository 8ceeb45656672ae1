"""Overwrite and forget by turn id: a known id with new content replaces the old version, a
retry with the same content stays a duplicate, and `forget` erases turns for good."""

from __future__ import annotations

import json

import pytest

from dualmem import DualMemory, InvalidInputError
from dualmem.testing import ScriptedLLM


@pytest.fixture
def memory(tmp_path) -> DualMemory:
    m = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    yield m
    m.close()


def texts(memories) -> list[str]:
    return [m.text for m in memories]


def test_a_deleted_memory_does_not_come_back_when_its_id_is_re_added(memory):
    memory.add({"id": "t1", "content": "My locker code is 4512."}, user_id="alice")
    assert memory.delete("t1", user_id="alice")
    result = memory.add({"id": "t1", "content": "My locker code is 9930."}, user_id="alice")
    assert result.replaced == 1 and result.skipped_duplicates == 0
    found = texts(memory.search("locker code", user_id="alice"))
    assert found == ["user: My locker code is 9930."]
    assert [t.text for t in memory.history(user_id="alice")] == ["My locker code is 9930."]


def test_a_new_version_replaces_the_old_one_in_place(memory):
    memory.add([{"id": "t1", "content": "I live in Lisbon."}, {"id": "t2", "content": "I have a cat."}],
               user_id="alice")
    memory.add({"id": "t1", "content": "I live in Porto.", "metadata": {"v": 2}}, user_id="alice")
    history = memory.history(user_id="alice")
    assert [(t.id, t.text) for t in history] == [("t1", "I live in Porto."), ("t2", "I have a cat.")]
    assert history[0].metadata == {"v": 2}
    assert "user: I live in Lisbon." not in texts(memory.get_all(user_id="alice"))
    assert memory.get("t1", user_id="alice").text == "user: I live in Porto."
    # the index is rebuilt from the history: the old version is gone for good
    memory.reindex(user_id="alice")
    assert sorted(texts(memory.get_all(user_id="alice"))) == ["user: I have a cat.", "user: I live in Porto."]


def test_a_retry_with_the_same_content_is_still_a_duplicate(memory):
    first = memory.add({"id": "t1", "content": "I keep bees."}, user_id="alice", timestamp="2024-01-01")
    again = memory.add({"id": "t1", "content": "I keep bees."}, user_id="alice", timestamp="2024-02-01")
    assert len(first.turns) == 1
    assert again.turns == [] and again.skipped_duplicates == 1 and again.replaced == 0
    assert memory.history(user_id="alice")[0].timestamp.month == 1


def test_extracted_memories_of_a_replaced_turn_are_dropped(tmp_path):
    llm = ScriptedLLM(by_task={"extract": [
        json.dumps({"facts": [{"text": "Alice lives in Lisbon.", "turns": [1]}]}),
        json.dumps({"facts": [{"text": "Alice lives in Porto.", "turns": [1]}]}),
    ]}, default="{}")
    memory = DualMemory(path=tmp_path, llm=llm, index_turns=False)
    memory.add({"id": "t1", "content": "I live in Lisbon."}, user_id="alice")
    memory.add({"id": "t1", "content": "I live in Porto."}, user_id="alice")
    assert texts(memory.get_all(user_id="alice")) == ["Alice lives in Porto."]
    memory.close()


def test_forget_erases_turns_and_their_memories(memory):
    memory.add([{"id": "t1", "content": "My PIN is 1234."}, {"id": "t2", "content": "I like tea."}],
               user_id="alice", session_id="s1")
    assert memory.forget(["t1"], user_id="alice") == {"turns": 1, "memories": 1}
    assert [t.id for t in memory.history(user_id="alice")] == ["t2"]
    memory.reindex(user_id="alice")
    assert texts(memory.get_all(user_id="alice")) == ["user: I like tea."]
    # the same id added again is a new turn, not a resurrection
    memory.add({"id": "t1", "content": "My PIN is 9876."}, user_id="alice", session_id="s1")
    assert "user: My PIN is 1234." not in texts(memory.search("PIN", user_id="alice"))


def test_forget_only_reaches_its_own_scope(memory):
    memory.add({"id": "t1", "content": "I like tea."}, user_id="alice")
    memory.add({"id": "t1", "content": "I like coffee."}, user_id="bob")
    assert memory.forget(["t1"], user_id="bob") == {"turns": 1, "memories": 1}
    assert texts(memory.get_all(user_id="alice")) == ["user: I like tea."]


def test_history_of_some_turns(memory):
    memory.add([{"id": "t1", "content": "I like tea."}, {"id": "t2", "content": "I like jazz."}],
               user_id="alice")
    assert [t.text for t in memory.history(user_id="alice", turn_ids=["t2", "nope"])] == ["I like jazz."]
    assert memory.scoped(user_id="alice").history(turn_ids=[]) == []


def test_forget_rejects_a_bare_string(memory):
    memory.add({"id": "t1", "content": "I like tea."}, user_id="alice")
    with pytest.raises(InvalidInputError, match="list of turn ids"):
        memory.forget("t1", user_id="alice")  # type: ignore[arg-type]
    assert len(memory.history(user_id="alice")) == 1
