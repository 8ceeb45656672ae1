"""`Scope` enforces its own rule and owns its operations; `memory.scoped(...)` binds one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dualmem import DualMemory, Memory, Scope, ScopeError, Turn
from dualmem.testing import ScriptedLLM

NOW = datetime(2023, 5, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ({}, "needs a scope"),
        ({"user_id": None, "session_id": None}, "needs a scope"),
        ({"user_id": ""}, "not a valid id"),
        ({"agent_id": "   "}, "not a valid id"),
        ({"session_id": "a\x00b"}, "not a valid id"),
        ({"user_id": "x" * 257}, "not a valid id"),
        ({"user_id": "\ud800"}, "not a valid id"),
        ({"user_id": 42}, "must be a string"),
    ],
)
def test_a_scope_without_a_valid_id_cannot_be_built(ids, message) -> None:
    with pytest.raises(ScopeError, match=message):
        Scope(**ids)


@pytest.mark.parametrize(
    ("scope", "partition", "widened", "whole"),
    [
        (Scope(user_id="u", agent_id="a", session_id="s"), "user:u", Scope(user_id="u", agent_id="a"),
         Scope(user_id="u")),
        (Scope(user_id="u", session_id="s"), "user:u", Scope(user_id="u"), Scope(user_id="u")),
        (Scope(agent_id="a", session_id="s"), "agent:a", Scope(agent_id="a"), Scope(agent_id="a")),
        (Scope(session_id="s"), "session:s", Scope(session_id="s"), Scope(session_id="s")),
        (Scope(user_id="u"), "user:u", Scope(user_id="u"), Scope(user_id="u")),
    ],
)
def test_partition_and_the_two_widenings(scope, partition, widened, whole) -> None:
    assert scope.partition == partition
    assert scope.widened() == widened and scope.widened().partition == partition
    assert scope.whole_partition() == whole and whole.partition == partition


def test_contains_checks_the_partition_and_every_id_the_scope_sets() -> None:
    turn = Turn(id="t", text="hi", timestamp=NOW, user_id="u", agent_id="a", session_id="s")
    memory = Memory(id="m", text="hi", created_at=NOW, updated_at=NOW, user_id="u", session_id="s2")
    assert turn.scope == Scope(user_id="u", agent_id="a", session_id="s")
    assert memory.scope == Scope(user_id="u", session_id="s2")
    assert Scope(user_id="u").contains(turn) and Scope(user_id="u").contains(memory)
    assert Scope(user_id="u", session_id="s").contains(turn)
    assert not Scope(user_id="u", session_id="s").contains(memory)
    assert not Scope(user_id="v").contains(turn)
    # the same agent id, but the turn lives in the user's partition, not the agent's
    assert not Scope(agent_id="a").contains(turn)
    assert not Scope(session_id="s").contains(turn)
    assert Scope(session_id="s").contains({"session_id": "s"})
    assert Scope(user_id="u", agent_id="a").contains({"user_id": "u", "agent_id": "a", "session_id": "x"})
    assert Scope(user_id="u").contains(Scope(user_id="u", agent_id="a"))


@pytest.fixture
def memory(tmp_path):
    m = DualMemory(path=tmp_path, llm=ScriptedLLM(default="Rex"), extract=False)
    yield m
    m.close()


def test_a_scoped_view_rejects_bad_ids_when_made(memory) -> None:
    with pytest.raises(ScopeError, match="needs a scope"):
        memory.scoped()
    with pytest.raises(ScopeError, match="not a valid id"):
        memory.scoped(user_id=" ")


async def test_a_scoped_view_is_the_memory_with_the_ids_filled_in(memory) -> None:
    s1 = memory.scoped(user_id="alice", session_id="s1")
    s2 = memory.scoped(user_id="alice", session_id="s2")
    added = s1.add({"id": "t1", "content": "I adopted a beagle named Rex."})
    await s2.aadd({"id": "t2", "content": "My favourite drink is green tea."})
    memory.add({"id": "t3", "content": "I adopted a cat."}, user_id="bob")

    assert [t.id for t in added.turns] == ["t1"]
    assert s1.history() == memory.history(user_id="alice", session_id="s1") == await s1.ahistory()
    assert [m.id for m in s1.search("dog")] == ["t1"]
    assert [m.id for m in await s1.widened().asearch("dog", k=5)] == ["t1", "t2"]
    assert s1.widened().scope == Scope(user_id="alice")
    assert [m.id for m in s1.get_all()] == ["t1"] and s1.get("t2") is None
    assert (await s2.aget("t2")).id == "t2"
    assert s1.answer("What is my dog called?", mode="fast").text == "Rex"
    assert s1.reindex().memories == 1
    assert s1.delete("t1") is True and await s1.aget_all() == []
    assert await s2.adelete_all() == {"turns": 1, "memories": 1}
    assert [t.id for t in memory.history(user_id="alice")] == ["t1"]
    assert [t.id for t in memory.history(user_id="bob")] == ["t3"]
