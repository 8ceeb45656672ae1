"""DualMemMemory against llama-index-core's BaseMemory contract, with a real DualMemory."""

from __future__ import annotations

import pytest
from dualmem import DualMemory
from dualmem.testing import ScriptedLLM
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock
from llama_index.core.memory import BaseMemory

from llama_index.memory.dualmem import DualMemMemory
from llama_index.memory.dualmem.base import CONTEXT_HEADER


def texts(messages: list[ChatMessage]) -> list[tuple[str, str | None]]:
    return [(m.role.value, m.content) for m in messages]


def test_is_a_base_memory_with_a_deterministic_session(store: DualMemory) -> None:
    a = DualMemMemory.from_memory(store, user_id="alice")
    b = DualMemMemory.from_memory(store, user_id="alice")
    assert isinstance(a, BaseMemory)
    assert a.session_id == b.session_id == "chat"  # test_li_gaps.py: a rebuilt memory continues


def test_put_then_get_returns_the_session_in_order(store: DualMemory) -> None:
    memory = DualMemMemory.from_memory(store, user_id="bob", session_id="s1")
    memory.put(ChatMessage(role="user", content="Hi, I'm Bob."))
    memory.put(ChatMessage(role=MessageRole.ASSISTANT, content="Hello Bob!"))
    memory.put(ChatMessage(role=MessageRole.CHATBOT, content="(chatbot role)"))
    # no earlier memories of Bob outside this chat: no context message
    assert texts(memory.get()) == [
        ("user", "Hi, I'm Bob."),
        ("assistant", "Hello Bob!"),
        ("assistant", "(chatbot role)"),
    ]
    turns = store.history(user_id="bob", session_id="s1")
    assert [t.role for t in turns] == ["user", "assistant", "assistant"]


def test_get_puts_recalled_memories_first_as_a_system_message(alice: DualMemory) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="today")
    memory.put(ChatMessage(role="user", content="Any ideas for my weekend?"))
    messages = memory.get(input="Where did I move to?")
    assert messages[0].role == MessageRole.SYSTEM
    assert messages[0].content.startswith(CONTEXT_HEADER)
    # the earlier session is recalled, dated by its turn
    assert "[7 May 2023] user: I moved to Paris in 2021." in messages[0].content
    # the current chat is shown once, as messages, not again as memories
    assert "weekend" not in messages[0].content
    assert texts(messages[1:]) == [("user", "Any ideas for my weekend?")]


def test_get_without_input_recalls_for_the_latest_user_message(alice: DualMemory) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="today", k=1)
    memory.put(ChatMessage(role="user", content="What does my sister do for a living?"))
    context = memory.get()[0].content
    assert "Jane is a nurse" in context
    assert "Paris" not in context  # k=1: only the best memory


def test_context_answer_puts_dualmem_answer(alice: DualMemory, llm: ScriptedLLM) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", context="answer", mode="fast")
    first = memory.get(input="Where did I move to?")[0]
    assert first.role == MessageRole.SYSTEM
    assert "Answer from memory: Paris" in first.content
    assert [c.task for c in llm.calls] == ["answer"]


def test_context_answer_for_a_new_user_adds_nothing(store: DualMemory, llm: ScriptedLLM) -> None:
    memory = DualMemMemory.from_memory(store, user_id="nobody", context="answer")
    assert memory.get(input="Where do I live?") == []
    assert llm.calls == []


def test_recent_messages_window_never_starts_with_an_orphan_tool_result(store: DualMemory) -> None:
    memory = DualMemMemory.from_memory(store, user_id="bob", session_id="s", recent_messages=2,
                                       tool_messages=True)
    call = ChatMessage(
        role="assistant",
        blocks=[ToolCallBlock(tool_call_id="c1", tool_name="recall", tool_kwargs={"query": "city"})],
    )
    result = ChatMessage(role="tool", content="Paris", additional_kwargs={"tool_call_id": "c1"})
    memory.put_messages([ChatMessage(role="user", content="Where?"), call, result,
                         ChatMessage(role="assistant", content="In Paris.")])
    assert texts(memory.get()) == [("assistant", "In Paris.")]
    everything = memory.get_all()
    # tool calls and results come back exactly as they were put
    assert everything[1] == call
    assert everything[2] == result
    assert store.history(user_id="bob", session_id="s")[1].text == '[called tool recall({"query": "city"})]'


def test_tool_traffic_is_not_stored_by_default(store: DualMemory) -> None:
    memory = DualMemMemory.from_memory(store, user_id="bob", session_id="s")
    call = ChatMessage(
        role="assistant",
        blocks=[TextBlock(text="Let me check."),
                ToolCallBlock(tool_call_id="c1", tool_name="recall", tool_kwargs={"query": "city"})],
    )
    result = ChatMessage(role="tool", content="Paris", additional_kwargs={"tool_call_id": "c1"})
    memory.put_messages([ChatMessage(role="user", content="Where?"), call, result,
                         ChatMessage(role="assistant", content="In Paris.")])
    # the assistant's words stay, its call and the tool's output (recalled memory) do not
    assert texts(memory.get_all()) == [("user", "Where?"), ("assistant", "Let me check."),
                                       ("assistant", "In Paris.")]
    assert [m.text for m in store.get_all(user_id="bob")].count("tool: Paris") == 0


def test_empty_messages_are_not_stored(store: DualMemory) -> None:
    memory = DualMemMemory.from_memory(store, user_id="bob")
    memory.put(ChatMessage(role="assistant", content=""))
    assert memory.get_all() == []


def test_set_replaces_and_reset_forgets_only_this_session(alice: DualMemory) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="today")
    memory.put(ChatMessage(role="user", content="old message"))
    memory.set([ChatMessage(role="user", content="new message")])
    assert texts(memory.get_all()) == [("user", "new message")]
    memory.reset()
    assert memory.get_all() == []
    # the earlier session (and its memories) survive
    assert len(alice.history(user_id="alice", session_id="earlier")) == 3
    assert len(alice.get_all(user_id="alice")) == 3


def test_two_users_never_see_each_other(alice: DualMemory) -> None:
    bob = DualMemMemory.from_memory(alice, user_id="bob", session_id="earlier")
    bob.put(ChatMessage(role="user", content="Where did I move to?"))
    messages = bob.get(input="Where did I move to? Paris?")
    assert texts(messages) == [("user", "Where did I move to?")]
    bob.reset()
    assert len(alice.history(user_id="alice")) == 3


def test_a_scope_is_required_and_checked_on_construction(store: DualMemory) -> None:
    # dualmem's ScopeError, reported by pydantic as a ValidationError (both are ValueErrors)
    with pytest.raises(ValueError, match="not a valid id"):
        DualMemMemory(memory=store, user_id="", session_id="s")
    # session only is a valid scope
    assert DualMemMemory(memory=store, session_id="s").user_id is None


def test_serialises_without_the_store(store: DualMemory) -> None:
    memory = DualMemMemory.from_memory(store, user_id="alice", session_id="s", k=3)
    data = memory.to_dict()
    assert data["class_name"] == "DualMemMemory"
    assert "memory" not in data and data["k"] == 3 and data["session_id"] == "s"


def test_from_defaults_builds_its_own_store(tmp_path, llm: ScriptedLLM) -> None:
    memory = DualMemMemory.from_defaults(path=tmp_path, llm=llm, user_id="carol", recent_messages=5)
    memory.put(ChatMessage(role="user", content="I play the cello."))
    assert memory.memory.config.data_dir == tmp_path
    assert texts(memory.get_all()) == [("user", "I play the cello.")]


async def test_async_methods(alice: DualMemory) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="today")
    await memory.aput(ChatMessage(role="user", content="Where did I move to?"))
    await memory.aput_messages([ChatMessage(role="assistant", content="Let me check.")])
    messages = await memory.aget()
    assert "moved to Paris" in messages[0].content
    assert texts(messages[1:]) == [("user", "Where did I move to?"), ("assistant", "Let me check.")]
    await memory.aset([ChatMessage(role="user", content="replaced")])
    assert texts(await memory.aget_all()) == [("user", "replaced")]
    await memory.areset()
    assert await memory.aget_all() == []
