"""Agents from llama_index.core.agent.workflow with dualmem as memory and as a recall tool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dualmem import DualMemory
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage, MessageRole, ToolCallBlock
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.memory import Memory
from llama_index.core.tools import QueryEngineTool

from llama_index.memory.dualmem import DualMemBlock, DualMemMemory, DualMemQueryEngine


class RecallingModel:
    """A scripted tool-calling model: first calls `recall` with the user's question, then
    answers with what the tool returned. Records every prompt it is given."""

    def __init__(self) -> None:
        self.prompts: list[list[ChatMessage]] = []

    def __call__(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        self.prompts.append(list(messages))
        last = messages[-1]
        if last.role == MessageRole.TOOL:
            return ChatMessage(role="assistant", content=f"From memory: {last.content}")
        return ChatMessage(
            role="assistant",
            blocks=[ToolCallBlock(tool_call_id="call-1", tool_name="recall",
                                  tool_kwargs={"input": last.content})],
        )


def make_agent(store: DualMemory, model: RecallingModel) -> FunctionAgent:
    engine = DualMemQueryEngine(memory=store, user_id="alice", mode="fast")
    recall = QueryEngineTool.from_defaults(
        engine, name="recall", description="Answer a question about the user from long-term memory."
    )
    llm = MockFunctionCallingLLM(response_generator=model, is_chat_model=True)
    return FunctionAgent(tools=[recall], llm=llm, system_prompt="You are a helpful assistant.")


async def test_function_agent_with_dualmem_memory_and_recall_tool(alice: DualMemory) -> None:
    model = RecallingModel()
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="agent-chat", tool_messages=True)
    output = await make_agent(alice, model).run(user_msg="Where did I move to?", memory=memory)

    assert str(output.response.content) == "From memory: Paris"
    assert [c.tool_name for c in output.tool_calls] == ["recall"]
    # the model's first prompt already carries the memory recalled for the user's message
    first = model.prompts[0]
    assert any(m.role == MessageRole.SYSTEM and "I moved to Paris in 2021." in (m.content or "")
               for m in first)
    # the whole exchange is in dualmem's history, tool call and result included
    turns = alice.history(user_id="alice", session_id="agent-chat")
    assert [t.role for t in turns] == ["user", "assistant", "tool", "assistant"]
    assert turns[2].text == "Paris"
    assert turns[3].text == "From memory: Paris"
    # and comes back intact: the tool result still follows its call
    again = await memory.aget_all()
    assert again[1].blocks[0].tool_name == "recall"
    assert again[2].additional_kwargs["tool_call_id"] == "call-1"


async def test_a_second_session_remembers_the_first(alice: DualMemory) -> None:
    model = RecallingModel()
    agent = make_agent(alice, model)
    first = DualMemMemory.from_memory(alice, user_id="alice", session_id="monday")
    await agent.run(user_msg="I adopted a cat named Miso.", memory=first)

    model.prompts.clear()
    second = DualMemMemory.from_memory(alice, user_id="alice", session_id="tuesday")
    await agent.run(user_msg="What is my cat called?", memory=second)
    context = model.prompts[0][1]  # after the agent's own system prompt
    assert context.role == MessageRole.SYSTEM
    assert "Miso" in context.content
    # the new session's chat holds only its own messages; tool traffic is not stored by default
    assert [(m.role.value, m.content) for m in await second.aget_all()] == [
        ("user", "What is my cat called?"),
        ("assistant", "From memory: Miso"),
    ]


async def test_function_agent_with_core_memory_and_dualmem_block(alice: DualMemory) -> None:
    model = RecallingModel()
    agent = make_agent(alice, model)
    block = DualMemBlock(memory=alice, user_id="alice")
    memory = Memory.from_defaults(session_id="core-chat", memory_blocks=[block], token_limit=40)
    output = await agent.run(user_msg="Where did I move to?", memory=memory)

    assert str(output.response.content) == "From memory: Paris"
    # core Memory puts the block's text in a system message after the agent's system prompt
    system = model.prompts[0][1]
    assert system.role == MessageRole.SYSTEM
    assert "<dualmem>" in system.content and "I moved to Paris in 2021." in system.content

    # past the token limit, Memory flushes the oldest complete turn into dualmem (its session),
    # without the tool call and result
    await agent.run(user_msg="And what does my sister do?", memory=memory)
    stored = alice.history(user_id="alice", session_id="core-chat")
    assert [(t.role, t.text) for t in stored] == [
        ("user", "Where did I move to?"),
        ("assistant", "From memory: Paris"),
    ]


async def test_react_agent_stores_its_reasoning_in_dualmem(alice: DualMemory) -> None:
    prompts: list[Sequence[ChatMessage]] = []

    def react_model(messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        prompts.append(messages)
        return ChatMessage(role="assistant", content="Thought: I can answer.\nAnswer: You live in Paris.")

    llm = MockFunctionCallingLLM(response_generator=react_model, is_chat_model=True)
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="react")
    # ReActAgent drops the first system message of its input (core 0.14.25 folds only its own
    # system_prompt into the ReAct header): with a system_prompt, dualmem's context comes second
    agent = ReActAgent(tools=[], llm=llm, system_prompt="You are a helpful assistant.")
    output = await agent.run(user_msg="Where did I move to?", memory=memory)

    assert str(output.response.content) == "You live in Paris."
    assert "I moved to Paris in 2021." in "\n".join(m.content or "" for m in prompts[0])
    turns = alice.history(user_id="alice", session_id="react")
    assert turns[0].text == "Where did I move to?"
    assert turns[-1].text.endswith("You live in Paris.")
