"""What trying the integration as a user found: a memory restorable from a saved agent
Context, a deterministic default session, and empty users answered alike everywhere."""

from __future__ import annotations

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.workflow import Context

from llama_index.memory.dualmem import DualMemMemory, DualMemQueryEngine, DualMemRetriever
from llama_index.memory.dualmem.query_engine import NO_MEMORIES


def test_memory_serialises_by_reference(store: DualMemory) -> None:
    memory = DualMemMemory.from_memory(store, user_id="alice", session_id="s1", k=3)
    data = memory.to_dict()
    assert data["data_dir"] == str(store.config.data_dir) and "memory" not in data
    again = DualMemMemory.from_dict(data)
    assert again.memory is store  # the open store of that directory, with its model
    assert (again.user_id, again.session_id, again.k) == ("alice", "s1", 3)


async def test_an_agent_run_restores_from_a_saved_context(store: DualMemory) -> None:
    llm = MockFunctionCallingLLM(response_generator=lambda messages, **kw: ChatMessage(
        role="assistant", content=f"seen {len(messages)} messages"), is_chat_model=True)
    agent = FunctionAgent(tools=[], llm=llm, system_prompt="Be brief.")
    memory = DualMemMemory.from_memory(store, user_id="alice", session_id="s1")
    handler = agent.run(user_msg="I moved to Paris.", memory=memory)
    await handler
    saved = handler.ctx.to_dict()  # what an app persists between requests

    restored = Context.from_dict(agent, saved)
    await agent.run(user_msg="Where do I live?", ctx=restored)
    turns = store.history(user_id="alice", session_id="s1")
    said = [t.text for t in turns]
    assert said[0] == "I moved to Paris." and "Where do I live?" in said


def test_the_default_session_is_deterministic(store: DualMemory) -> None:
    first = DualMemMemory.from_memory(store, user_id="alice")
    first.put(ChatMessage(role="user", content="I keep bees."))
    rebuilt = DualMemMemory.from_memory(store, user_id="alice")  # e.g. one per web request
    assert rebuilt.session_id == first.session_id == "chat"
    assert [m.content for m in rebuilt.get_all()] == ["I keep bees."]


async def test_a_user_with_nothing_stored_gets_no_memories_everywhere(store: DualMemory) -> None:
    assert DualMemRetriever(store, user_id="nobody").retrieve("anything?") == []
    assert DualMemMemory.from_memory(store, user_id="nobody").get(input="anything?") == []
    engine = DualMemQueryEngine(memory=store, user_id="nobody")
    for response in (engine.query("anything?"), await engine.aquery("anything?")):
        assert response.response == NO_MEMORIES and response.source_nodes == []
        assert response.metadata == {"path": None, "found": False}


def test_no_answer_is_a_plain_sentence(tmp_path) -> None:
    store = DualMemory(path=tmp_path, llm=ScriptedLLM(by_task={"answer": "NONE"}), extract=False)
    store.add("I like tea.", user_id="alice")
    response = DualMemQueryEngine(memory=store, user_id="alice", mode="fast").query("Dog's name?")
    assert response.response == "Nothing in memory answers this question."
    assert response.metadata["found"] is False
    memory = DualMemMemory.from_memory(store, user_id="alice", context="answer", mode="fast")
    assert memory.get(input="Dog's name?") == memory.get_all()  # the chat, and no "NONE" context
    store.close()
