"""llama-index chat engines running on DualMemMemory (MockLLM echoes the prompt it was given)."""

from __future__ import annotations

from dualmem import DualMemory
from llama_index.core.chat_engine import CondensePlusContextChatEngine, SimpleChatEngine
from llama_index.core.llms import MockLLM

from llama_index.memory.dualmem import DualMemMemory, DualMemRetriever


def test_simple_chat_engine_sees_memories_of_an_earlier_session(alice: DualMemory) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="today")
    engine = SimpleChatEngine.from_defaults(llm=MockLLM(), memory=memory)
    reply = engine.chat("Where did I move to?")
    # MockLLM's reply is its prompt: the recalled memory was in it, before the question
    prompt = reply.response
    assert prompt.index("I moved to Paris in 2021.") < prompt.index("user: Where did I move to?")
    # both sides of the exchange are stored in the session
    assert [m.role.value for m in engine.chat_history] == ["user", "assistant"]
    assert alice.history(user_id="alice", session_id="today")[0].text == "Where did I move to?"
    engine.reset()
    assert engine.chat_history == []
    assert len(alice.history(user_id="alice")) == 3


async def test_simple_chat_engine_async(alice: DualMemory) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="today")
    engine = SimpleChatEngine.from_defaults(llm=MockLLM(), memory=memory)
    reply = await engine.achat("What does my sister do?")
    assert "My sister Jane is a nurse." in reply.response
    second = await engine.achat("Thanks!")
    # the first exchange is now part of the recent chat the model sees
    assert "What does my sister do?" in second.response
    assert len(await memory.aget_all()) == 4


def test_condense_plus_context_with_dualmem_retriever_and_memory(alice: DualMemory) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="today")
    retriever = DualMemRetriever(alice, user_id="alice", k=2)
    engine = CondensePlusContextChatEngine.from_defaults(retriever=retriever, llm=MockLLM(), memory=memory)
    reply = engine.chat("Where did I move to?")
    # the memory context makes the engine condense (MockLLM echoes the condense prompt, which
    # holds the question); the retriever's memories are the engine's sources
    assert "user: I moved to Paris in 2021." in [n.node.text for n in reply.source_nodes]
    assert "I moved to Paris in 2021." in reply.response
    assert [m.content for m in memory.get_all()][0] == "Where did I move to?"


async def test_condense_plus_context_async(alice: DualMemory) -> None:
    memory = DualMemMemory.from_memory(alice, user_id="alice", session_id="today")
    retriever = DualMemRetriever(alice, user_id="alice", k=2)
    engine = CondensePlusContextChatEngine.from_defaults(retriever=retriever, llm=MockLLM(), memory=memory)
    reply = await engine.achat("What does my sister do?")
    assert "user: My sister Jane is a nurse." in [n.node.text for n in reply.source_nodes]
    assert len(await memory.aget_all()) == 2
