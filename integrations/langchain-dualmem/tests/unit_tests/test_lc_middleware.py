"""`DualMemMiddleware` in a real `create_agent` loop with a fake tool-calling model that
records what it was sent: recall before the model (fast path, token budget, scope from the
runtime config or context), save after the agent, and the gated recall tool to escalate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from dualmem import DualMemory, ScopeError
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from langchain_dualmem import DualMemMiddleware
from langchain_dualmem.middleware import MEMORY_HEADER


class RecordingModel(GenericFakeChatModel):
    """Replays scripted replies (tool calls too) and records the messages of every call."""

    seen: list[list[BaseMessage]] = []

    def bind_tools(self, tools: Sequence[Any], **kw: Any) -> RecordingModel:
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kw):  # type: ignore[override]
        self.seen.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kw)


def model(*replies: AIMessage) -> RecordingModel:
    return RecordingModel(messages=iter(replies), seen=[])


def system_of(call: list[BaseMessage]) -> str:
    return next((m.text for m in call if isinstance(m, SystemMessage)), "")


@pytest.fixture
def alice(memory: DualMemory) -> DualMemory:
    memory.add(["I moved to Lisbon in March 2024.", "My dog Pixel loves the beach.",
                "I work as a nurse."], user_id="alice", session_id="old")
    memory.add("I live in Oslo.", user_id="bob")
    return memory


ALICE = {"configurable": {"user_id": "alice", "thread_id": "t1"}}


def test_recalls_into_the_system_message_and_saves_the_exchange(alice: DualMemory) -> None:
    fake = model(AIMessage("You live in Lisbon."))
    agent = create_agent(fake, tools=[], system_prompt="Be brief.",
                         middleware=[DualMemMiddleware(alice, recall_tool=False)])
    result = agent.invoke({"messages": [HumanMessage("Where do I live?")]}, ALICE)
    assert result["messages"][-1].text == "You live in Lisbon."
    system = system_of(fake.seen[0])
    assert system.startswith("Be brief.\n\n" + MEMORY_HEADER)
    assert "Lisbon" in system and "Oslo" not in system  # alice's memories only
    alice.flush()
    saved = alice.history(user_id="alice", session_id="t1")  # the thread is the session
    assert [(t.role, t.text) for t in saved] == [
        ("user", "Where do I live?"), ("assistant", "You live in Lisbon.")]


async def test_async_run_with_scope_from_the_context(alice: DualMemory) -> None:
    @dataclass
    class Context:
        user_id: str

    fake = model(AIMessage("Pixel."))
    agent = create_agent(fake, tools=[], context_schema=Context,
                         middleware=[DualMemMiddleware(alice, recall_tool=False, session_id="web")])
    await agent.ainvoke({"messages": [HumanMessage("What is my dog called?")]}, context=Context("alice"))
    assert "Pixel" in system_of(fake.seen[0])
    await alice.aflush()
    assert [t.text for t in await alice.ahistory(user_id="alice", session_id="web")] == [
        "What is my dog called?", "Pixel."]


def test_the_token_budget_bounds_the_recalled_lines(alice: DualMemory) -> None:
    fake = model(AIMessage("ok"))
    middleware = DualMemMiddleware(alice, recall_tool=False, max_tokens=20, save=False)
    create_agent(fake, tools=[], middleware=[middleware]).invoke(
        {"messages": [HumanMessage("Tell me about my life")]}, ALICE)
    lines = [line for line in system_of(fake.seen[0]).splitlines() if line.startswith("- ")]
    assert len(lines) == 1  # one dated memory line is ~15 tokens
    assert alice.history(user_id="alice", session_id="t1") == []  # save=False


def test_recall_tool_escalates_through_the_gated_answer(memory: DualMemory) -> None:
    memory.add("I moved to Lisbon in March 2024.", user_id="alice", session_id="old")
    call = {"name": "recall_memory", "args": {"question": "Where does Alice live?"}, "id": "c1",
            "type": "tool_call"}
    fake = model(AIMessage("", tool_calls=[call]), AIMessage("Lisbon."))
    agent = create_agent(fake, tools=[], middleware=[DualMemMiddleware(memory, mode="fast")])
    messages = agent.invoke({"messages": [HumanMessage("Where do I live?")]}, ALICE)["messages"]
    tool = next(m for m in messages if isinstance(m, ToolMessage))
    assert tool.content == "Answer: Paris\nPath: fast"  # the scripted memory model's answer
    # the exchange is saved without the tool traffic
    memory.flush()
    saved = memory.history(user_id="alice", session_id="t1")
    assert [t.text for t in saved] == ["Where do I live?", "Lisbon."]


def test_a_missing_scope_is_a_clear_error(memory: DualMemory) -> None:
    agent = create_agent(model(AIMessage("hi")), tools=[], middleware=[DualMemMiddleware(memory)])
    with pytest.raises(ScopeError, match=r"configurable.*user_id"):
        agent.invoke({"messages": [HumanMessage("hello")]})
    assert memory.scopes() == []


def test_a_checkpointed_thread_saves_each_exchange_once(alice: DualMemory) -> None:
    fake = model(AIMessage("Hi!"), AIMessage("Lisbon."))
    agent = create_agent(fake, tools=[], checkpointer=InMemorySaver(),
                         middleware=[DualMemMiddleware(alice, recall_tool=False)])
    agent.invoke({"messages": [HumanMessage("Hello")]}, ALICE)
    agent.invoke({"messages": [HumanMessage("Where do I live?")]}, ALICE)
    alice.flush()
    assert [t.text for t in alice.history(user_id="alice", session_id="t1")] == [
        "Hello", "Hi!", "Where do I live?", "Lisbon."]


def test_bad_ids_fail_at_construction(memory: DualMemory) -> None:
    with pytest.raises(ScopeError):
        DualMemMiddleware(memory, user_id=" ")
