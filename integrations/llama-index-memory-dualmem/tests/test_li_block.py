"""DualMemBlock inside llama-index-core's Memory."""

from __future__ import annotations

import pytest
from dualmem import DualMemory
from dualmem.testing import ScriptedLLM
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.memory import Memory

from llama_index.memory.dualmem import DualMemBlock


def system_text(messages: list[ChatMessage]) -> str:
    return "\n".join(m.content or "" for m in messages if m.role.value == "system")


async def test_block_recalls_memories_for_the_latest_user_message(alice: DualMemory) -> None:
    memory = Memory.from_defaults(session_id="s", memory_blocks=[DualMemBlock(memory=alice, user_id="alice")])
    await memory.aput(ChatMessage(role="user", content="What does my sister do?"))
    messages = await memory.aget()
    block = system_text(messages)
    assert block.startswith("<memory>\n<dualmem>")
    assert "My sister Jane is a nurse." in block
    assert messages[-1].content == "What does my sister do?"


async def test_block_with_answer_context(alice: DualMemory, llm: ScriptedLLM) -> None:
    block = DualMemBlock(memory=alice, user_id="alice", context="answer", mode="fast")
    memory = Memory.from_defaults(session_id="s", memory_blocks=[block])
    messages = await memory.aget(input="Where did I move to?")
    assert "Question: Where did I move to?\nAnswer from memory: Paris" in system_text(messages)
    assert [c.task for c in llm.calls] == ["answer"]


async def test_flushed_messages_are_stored_in_dualmem(store: DualMemory) -> None:
    block = DualMemBlock(memory=store, user_id="dana")
    memory = Memory.from_defaults(session_id="chat-7", memory_blocks=[block], token_limit=15)
    for text in ["I work as a pilot.", "Great job!", "I fly for a cargo company.", "Cool."]:
        role = "assistant" if text in ("Great job!", "Cool.") else "user"
        await memory.aput(ChatMessage(role=role, content=text))
    stored = store.history(user_id="dana")
    assert [t.text for t in stored] == ["I work as a pilot.", "Great job!"]
    assert {t.session_id for t in stored} == {"chat-7"}  # the Memory's session
    # once flushed, the block recalls it while Memory keeps the recent turn itself
    messages = await memory.aget(input="What is my job?")
    assert "I work as a pilot." in system_text(messages)
    chat = [m.content for m in messages if m.role.value != "system"]
    assert chat == ["I fly for a cargo company.", "Cool."]


def test_block_sync_memory_api(alice: DualMemory) -> None:
    memory = Memory.from_defaults(session_id="s", memory_blocks=[DualMemBlock(memory=alice, user_id="alice")])
    memory.put(ChatMessage(role="user", content="Where did I move to?"))
    assert "I moved to Paris in 2021." in system_text(memory.get())


def test_block_needs_a_scope(store: DualMemory) -> None:
    with pytest.raises(ValueError, match="needs a scope"):
        DualMemBlock(memory=store)
