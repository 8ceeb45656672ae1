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


def _coverage(store: DualMemory, question: str) -> float:
    answer = store.answer(question, user_id="maya", deliberate=False)
    return next(s.score for s in answer.gate.signals if s.name == "coverage")


def test_what_a_chat_stores_for_search_measured(tmp_path) -> None:
    """The decision for chats on a raw-turn index (extract=False), measured retrieval-only with a
    scripted reader: the user's own questions are kept but not searchable, and with `user_name`
    user messages are stored as said by the user, so questions naming them are covered."""
    from dualmem.testing import ScriptedLLM
    from llama_index.core.base.llms.types import ChatMessage

    said = [ChatMessage(role="user", content="I adopted a beagle. My dog's name is Rex."),
            ChatMessage(role="assistant", content="Lovely! How old is he?")]
    asked = ChatMessage(role="user", content="What's my dog's name?")
    results = {}
    for setting, user_name in [("before", None), ("after", "Maya")]:
        llm = ScriptedLLM(by_task={"answer": "Rex"})
        store = DualMemory(path=tmp_path / setting, llm=llm, extract=False)
        monday = DualMemMemory.from_memory(store, user_id="maya", session_id="mon", user_name=user_name)
        monday.put_messages(said)
        if setting == "before":  # what the integration stored until now: the question, searchable
            store.add({"role": "user", "content": asked.content}, user_id="maya", session_id="tue")
        else:
            DualMemMemory.from_memory(store, user_id="maya", session_id="tue", user_name=user_name).put(asked)
        top = store.search("What's my dog's name?", user_id="maya", k=1)[0].text
        results[setting] = (top, _coverage(store, "What is Maya's dog called?"))
        store.close()
    assert results["before"][0] == "user: What's my dog's name?"  # the question outranked the fact
    assert results["after"][0] == "Maya: I adopted a beagle. My dog's name is Rex."
    # "Maya" is now in the evidence: coverage 0.37 -> 0.72, across the gate's 0.5 threshold
    assert results["before"][1] < 0.5 <= results["after"][1]
