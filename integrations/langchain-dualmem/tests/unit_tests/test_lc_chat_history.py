from __future__ import annotations

from typing import Any

import pytest
from dualmem import DualMemory
from dualmem.testing import ScriptedLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from langchain_dualmem import DualMemChatMessageHistory


def _pairs(messages: list[BaseMessage]) -> list[tuple[str, str]]:
    return [(m.type, m.text) for m in messages]


def test_round_trip_keeps_order_roles_and_names(memory: DualMemory) -> None:
    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    assert history.messages == []
    history.add_messages([
        SystemMessage("Be brief."),
        HumanMessage("I moved to Lisbon.", name="Alice"),
        AIMessage("Nice! How do you like it?"),
        ChatMessage(role="narrator", content="Later that day."),
    ])
    history.add_user_message("I love it.")
    messages = history.messages
    assert _pairs(messages) == [
        ("system", "Be brief."), ("human", "I moved to Lisbon."), ("ai", "Nice! How do you like it?"),
        ("chat", "Later that day."), ("human", "I love it."),
    ]
    assert messages[1].name == "Alice"
    assert isinstance(messages[3], ChatMessage) and messages[3].role == "narrator"
    turns = memory.history(user_id="alice", session_id="s1")
    roles = [(t.role, t.speaker) for t in turns]
    assert roles[:3] == [("system", None), ("user", "Alice"), ("assistant", None)]
    assert [m.id for m in messages] == [t.metadata.get("message_id", t.id) for t in turns]
    history.add_messages(messages)  # re-adding what was read back stores nothing twice
    assert len(memory.history(user_id="alice", session_id="s1")) == 5


def test_messages_without_text_are_skipped_and_ids_dedupe(memory: DualMemory) -> None:
    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    call = AIMessage("", tool_calls=[{"name": "recall", "args": {}, "id": "c1", "type": "tool_call"}])
    said = HumanMessage("hello", id="m-1")
    history.add_messages([call, said])
    history.add_messages([said])  # same message id: stored once
    assert _pairs(history.messages) == [("human", "hello")]


def test_a_message_id_reused_in_another_session_is_stored(memory: DualMemory) -> None:
    s1 = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    s2 = DualMemChatMessageHistory(memory, user_id="alice", session_id="s2")
    s1.add_messages([HumanMessage("I have a cat.", id="msg-1")])
    s2.add_messages([HumanMessage("My cat is called Tom.", id="msg-1")])  # a client restarting ids
    assert _pairs(s2.messages) == [("human", "My cat is called Tom.")] and s2.messages[0].id == "msg-1"
    assert _pairs(s1.messages) == [("human", "I have a cat.")]


def test_two_messages_with_one_id_in_a_batch_are_both_stored(memory: DualMemory) -> None:
    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    history.add_messages([HumanMessage("First.", id="dup"), AIMessage("Second.", id="dup"),
                          HumanMessage("Third.", id="dup")])
    assert _pairs(history.messages) == [("human", "First."), ("ai", "Second."), ("human", "Third.")]


TOOL_EXCHANGE = [
    HumanMessage("Where do I live?", id="h1"),
    AIMessage("Let me check.", id="a1", tool_calls=[
        {"name": "recall_memory", "args": {"question": "home?"}, "id": "c1", "type": "tool_call"}]),
    ToolMessage("Answer: Lisbon", tool_call_id="c1", name="recall_memory", id="t1"),
    AIMessage("You live in Lisbon.", id="a2"),
]


def test_tool_traffic_is_left_out_by_default_so_no_tool_result_is_orphaned(memory: DualMemory) -> None:
    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    history.add_messages(TOOL_EXCHANGE)
    messages = history.messages
    assert _pairs(messages) == [
        ("human", "Where do I live?"), ("ai", "Let me check."), ("ai", "You live in Lisbon.")]
    assert not any(isinstance(m, ToolMessage) for m in messages) and not messages[1].tool_calls
    assert "Answer: Lisbon" not in [t.text for t in memory.history(user_id="alice")]  # not a new memory


def test_tool_traffic_round_trips_exactly_when_kept(memory: DualMemory) -> None:
    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1", tool_messages=True)
    history.add_messages(TOOL_EXCHANGE)
    history.add_messages([AIMessage("", id="a3", tool_calls=[
        {"name": "remember", "args": {"text": "x"}, "id": "c2", "type": "tool_call"}])])
    messages = history.messages
    assert messages[:4] == TOOL_EXCHANGE
    assert isinstance(messages[2], ToolMessage) and messages[2].tool_call_id == "c1"
    assert messages[4].tool_calls[0]["id"] == "c2"
    # what a chat model API is sent: every tool result follows the call that asked for it
    calls = {c["id"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}
    assert all(m.tool_call_id in calls for m in messages if isinstance(m, ToolMessage))


def test_added_messages_are_searchable_in_later_sessions(memory: DualMemory) -> None:
    DualMemChatMessageHistory(memory, user_id="alice", session_id="s1").add_user_message(
        "My dog is called Pixel."
    )
    found = memory.search("What is the dog's name?", user_id="alice")
    assert [m.text for m in found] == ["user: My dog is called Pixel."]


def test_add_feeds_extraction(tmp_path: Any) -> None:
    reply = '{"facts": [{"text": "Alice has a dog named Pixel", "date": null}]}'
    llm = ScriptedLLM(by_task={"extract": [reply]})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    history.add_messages([HumanMessage("My dog is called Pixel.")])
    # stored at once; extraction runs in the background worker
    assert [m.content for m in history.messages] == ["My dog is called Pixel."]
    assert memory.flush(timeout=60) and memory.pending() == []
    assert llm.calls_for("extract"), "adding messages should run fact extraction"
    facts = [m.text for m in memory.get_all(user_id="alice") if m.id != m.source_turn_ids[0]]
    assert facts == ["Alice has a dog named Pixel"]
    memory.close()


def test_add_can_wait_for_extraction(tmp_path: Any) -> None:
    reply = '{"facts": [{"text": "Alice has a dog named Pixel", "date": null}]}'
    llm = ScriptedLLM(by_task={"extract": [reply]})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1", background=False)
    history.add_messages([HumanMessage("My dog is called Pixel.")])
    assert llm.calls_for("extract") and memory.pending() == []
    memory.close()


def test_clear_deletes_only_this_session(memory: DualMemory) -> None:
    s1 = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    s2 = DualMemChatMessageHistory(memory, user_id="alice", session_id="s2")
    bob = DualMemChatMessageHistory(memory, user_id="bob", session_id="s1")
    s1.add_user_message("I live in Lisbon.")
    s2.add_user_message("I have a dog.")
    bob.add_user_message("I live in Oslo.")
    s1.clear()
    assert s1.messages == []
    assert _pairs(s2.messages) == [("human", "I have a dog.")]
    assert _pairs(bob.messages) == [("human", "I live in Oslo.")]
    assert [m.text for m in memory.get_all(user_id="alice")] == ["user: I have a dog."]
    assert [m.text for m in memory.get_all(user_id="bob")] == ["user: I live in Oslo."]


def test_users_and_sessions_are_isolated(memory: DualMemory) -> None:
    DualMemChatMessageHistory(memory, user_id="alice", session_id="s1").add_user_message("secret A")
    DualMemChatMessageHistory(memory, user_id="bob", session_id="s1").add_user_message("secret B")
    assert _pairs(DualMemChatMessageHistory(memory, user_id="bob", session_id="s1").messages) == [
        ("human", "secret B")
    ]
    assert DualMemChatMessageHistory(memory, user_id="alice", session_id="s2").messages == []


async def test_async_round_trip_and_clear(memory: DualMemory) -> None:
    history = DualMemChatMessageHistory(memory, user_id="alice", session_id="s1")
    other = DualMemChatMessageHistory(memory, user_id="alice", session_id="s2")
    await history.aadd_messages([HumanMessage("hi"), AIMessage("hello")])
    await other.aadd_messages([HumanMessage("other session")])
    assert _pairs(await history.aget_messages()) == [("human", "hi"), ("ai", "hello")]
    await history.aclear()
    assert await history.aget_messages() == []
    assert _pairs(await other.aget_messages()) == [("human", "other session")]


def _chain(
    memory: DualMemory, replies: list[str], seen: list[list[BaseMessage]]
) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{input}")])

    def record(value: Any) -> Any:
        seen.append(value.to_messages())
        return value

    chain = prompt | RunnableLambda(record) | FakeListChatModel(responses=replies)
    return RunnableWithMessageHistory(
        chain,
        lambda session_id: DualMemChatMessageHistory(memory, user_id="alice", session_id=session_id),
        input_messages_key="input",
        history_messages_key="history",
    )


# RunnableWithMessageHistory is deprecated in langchain-core 1.x (LangGraph persistence replaces
# it) but still shipped and used; the history must keep working with it
legacy = pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")


@legacy
def test_runnable_with_message_history(memory: DualMemory) -> None:
    seen: list[list[BaseMessage]] = []
    chain = _chain(memory, ["Hi Alice!", "You live in Lisbon."], seen)
    config = {"configurable": {"session_id": "chat-1"}}
    assert chain.invoke({"input": "I'm Alice and I live in Lisbon."}, config).content == "Hi Alice!"
    assert chain.invoke({"input": "Where do I live?"}, config).content == "You live in Lisbon."
    # the second model call saw the first exchange, read back from dualmem
    assert _pairs(seen[1]) == [
        ("human", "I'm Alice and I live in Lisbon."), ("ai", "Hi Alice!"), ("human", "Where do I live?")
    ]
    assert len(memory.history(user_id="alice", session_id="chat-1")) == 4
    assert memory.history(user_id="alice", session_id="chat-2") == []


@legacy
async def test_runnable_with_message_history_async(memory: DualMemory) -> None:
    seen: list[list[BaseMessage]] = []
    chain = _chain(memory, ["Noted.", "Pixel."], seen)
    config = {"configurable": {"session_id": "chat-1"}}
    await chain.ainvoke({"input": "My dog is Pixel."}, config)
    assert (await chain.ainvoke({"input": "My dog's name?"}, config)).content == "Pixel."
    assert _pairs(seen[1])[:2] == [("human", "My dog is Pixel."), ("ai", "Noted.")]
