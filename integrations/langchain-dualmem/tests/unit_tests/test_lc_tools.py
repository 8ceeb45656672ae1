from __future__ import annotations

from pathlib import Path

import pytest
from dualmem import Answer, DualMemory
from dualmem.testing import ScriptedLLM, ScriptedReply
from langchain_core.messages import ToolMessage

from langchain_dualmem import (
    DualMemRecallTool,
    DualMemRememberTool,
    create_recall_tool,
    create_remember_tool,
)
from langchain_dualmem.tools import NO_MEMORIES, format_answer


def _call(tool: DualMemRecallTool | DualMemRememberTool, **args: str) -> dict:
    return {"name": tool.name, "args": args, "id": "call-1", "type": "tool_call"}


def test_recall_returns_answer_path_and_artifact(memory: DualMemory, llm: ScriptedLLM) -> None:
    memory.add("I moved to Paris in 2021.", user_id="alice", session_id="s1")
    tool = create_recall_tool(memory, user_id="alice", mode="fast")
    assert isinstance(tool, DualMemRecallTool) and tool.name == "recall_memory"
    message = tool.invoke(_call(tool, question="Where does Alice live?"))
    assert isinstance(message, ToolMessage)
    assert message.content == "Answer: Paris\nPath: fast"
    answer = Answer.model_validate(message.artifact)
    assert answer.question == "Where does Alice live?"
    assert [m.text for m in answer.memories] == ["user: I moved to Paris in 2021."]
    # the memory's model was asked with the retrieved memory in its prompt
    prompt = str(llm.calls_for("answer")[-1].messages)
    assert "I moved to Paris in 2021." in prompt


def test_plain_invoke_returns_content(memory: DualMemory) -> None:
    memory.add("I moved to Paris in 2021.", user_id="alice")
    assert create_recall_tool(memory, user_id="alice", mode="fast").invoke({"question": "Where?"}) == (
        "Answer: Paris\nPath: fast"
    )


def test_format_shows_the_reason_only_when_escalated_or_degraded() -> None:
    answer = Answer(question="q", text="Lisbon", path="deliberate", mode="gated",
                    reason="escalated: low confidence -> neighbour turns answered it")
    assert format_answer(answer) == (
        "Answer: Lisbon\nPath: deliberate\nReason: escalated: low confidence -> neighbour turns answered it"
    )
    kept = answer.model_copy(update={"path": "fast", "reason": "fast answer kept: confident"})
    assert format_answer(kept) == "Answer: Lisbon\nPath: fast"
    degraded = kept.model_copy(update={"degraded": True, "reason": "escalated: x; deliberation failed"})
    assert format_answer(degraded) == (
        "Answer: Lisbon\nPath: fast (degraded)\nReason: escalated: x; deliberation failed"
    )


def _gated_memory(tmp_path: Path, script: dict) -> DualMemory:
    # System 2 as the scan strategy, whose neighbour tier the scripts answer
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(by_task=script), extract=False,
                        deliberation={"strategy": "scan"})
    memory.add(["Alice lives in Lisbon since March 2024.", "Alice has a dog called Pixel."], user_id="alice")
    return memory


def test_gated_recall_keeps_a_confident_supported_answer(tmp_path: Path) -> None:
    memory = _gated_memory(tmp_path, {"answer": [ScriptedReply("Lisbon", confidence=0.99)]})
    tool = create_recall_tool(memory, user_id="alice")  # mode="gated" by default
    message = tool.invoke(_call(tool, question="Where does Alice live?"))
    assert message.content == "Answer: Lisbon\nPath: fast"
    assert message.artifact["mode"] == "gated" and message.artifact["gate"]["passed"] is True
    memory.close()


async def test_gated_recall_escalates_a_refusal_and_says_why(tmp_path: Path) -> None:
    memory = _gated_memory(tmp_path, {
        "answer": [ScriptedReply("NONE", confidence=0.99)],
        "neighbours.answer": [ScriptedReply("Lisbon", confidence=0.99)],
    })
    tool = create_recall_tool(memory, user_id="alice")
    message = await tool.ainvoke(_call(tool, question="Where does Alice live?"))
    answer = Answer.model_validate(message.artifact)
    assert (answer.path, answer.text, answer.gate.escalate) == ("deliberate", "Lisbon", True)
    assert message.content == f"Answer: Lisbon\nPath: deliberate\nReason: {answer.reason}"
    assert answer.reason.startswith("escalated: the fast answer is a refusal")
    memory.close()


def test_gated_recall_reports_a_degraded_answer(tmp_path: Path) -> None:
    # the gate escalates the refusal, deliberation has no model reply: the fast answer stands
    memory = _gated_memory(tmp_path, {"answer": [ScriptedReply("NONE", confidence=0.99)]})
    tool = create_recall_tool(memory, user_id="alice")
    content = tool.invoke({"question": "Where does Alice live?"})
    assert content.startswith(
        "Answer: Nothing in memory answers this question.\nPath: fast (degraded)\nReason: escalated: ")
    assert "deliberation failed" in content
    memory.close()


def test_no_memories_yet_is_a_friendly_result(memory: DualMemory, llm: ScriptedLLM) -> None:
    tool = create_recall_tool(memory, user_id="nobody", mode="fast")
    message = tool.invoke(_call(tool, question="Where do I live?"))
    assert message.content == NO_MEMORIES
    assert message.artifact is None
    assert llm.calls == []


async def test_no_memories_yet_async(memory: DualMemory) -> None:
    tool = create_recall_tool(memory, user_id="nobody", mode="fast")
    assert await tool.ainvoke({"question": "Where do I live?"}) == NO_MEMORIES


def test_recall_is_scoped_to_its_user(memory: DualMemory, llm: ScriptedLLM) -> None:
    memory.add("My PIN is 1234.", user_id="alice")
    memory.add("My PIN is 9876.", user_id="bob")
    tool = create_recall_tool(memory, user_id="bob", mode="fast")
    message = tool.invoke(_call(tool, question="What is my PIN?"))
    assert [m["text"] for m in message.artifact["memories"]] == ["user: My PIN is 9876."]
    prompt = str(llm.calls_for("answer")[-1].messages)
    assert "9876" in prompt and "1234" not in prompt


async def test_recall_async_matches_sync(memory: DualMemory) -> None:
    memory.add(["I moved to Paris in 2021.", "I have a cat."], user_id="alice")
    tool = create_recall_tool(memory, user_id="alice", mode="fast", k=1)
    sync_msg = tool.invoke(_call(tool, question="Where does Alice live?"))
    async_msg = await tool.ainvoke(_call(tool, question="Where does Alice live?"))
    assert async_msg.content == sync_msg.content == "Answer: Paris\nPath: fast"
    assert async_msg.artifact["evidence"] == sync_msg.artifact["evidence"]
    assert len(async_msg.artifact["memories"]) == 1


def test_recall_tool_custom_name_and_description(memory: DualMemory) -> None:
    tool = create_recall_tool(memory, agent_id="support-bot", name="ask_memory", description="Ask it.")
    assert (tool.name, tool.description, tool.mode) == ("ask_memory", "Ask it.", "gated")
    assert list(tool.get_input_schema().model_json_schema()["properties"]) == ["question"]


def test_tools_check_scope_at_construction(memory: DualMemory) -> None:
    with pytest.raises(ValueError, match="needs a scope"):
        create_recall_tool(memory)
    with pytest.raises(ValueError, match="needs a scope"):
        create_remember_tool(memory)


def test_remember_stores_text_for_later_recall(memory: DualMemory) -> None:
    tool = create_remember_tool(memory, user_id="alice", session_id="notes")
    result = tool.invoke({"text": "Alice's sister Ana lives in Lisbon."})
    assert result == "Remembered (1 new, 0 updated memories)."
    turns = memory.history(user_id="alice")
    assert [(t.role, t.text, t.session_id, t.metadata) for t in turns] == [
        ("user", "Alice's sister Ana lives in Lisbon.", "notes", {"source": "remember"})
    ]
    found = memory.search("Where does Ana live?", user_id="alice")
    assert [m.text for m in found] == ["user: Alice's sister Ana lives in Lisbon."]
    assert memory.search("Where does Ana live?", user_id="bob") == []


async def test_remember_async_and_extraction_error_is_reported(tmp_path: Path) -> None:
    llm = ScriptedLLM(by_task={"extract": lambda request: "not json"})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    tool = create_remember_tool(memory, user_id="alice")
    result = await tool.ainvoke({"text": "Alice is allergic to peanuts."})
    assert result.startswith("Saved the text, but fact extraction failed")
    assert [t.text for t in await memory.ahistory(user_id="alice")] == ["Alice is allergic to peanuts."]
    memory.close()


def test_remember_keeps_text_that_reads_as_an_instruction(memory: DualMemory) -> None:
    # a user's words are never dropped: indexed, flagged, and quoted datamarked in prompts
    tool = create_remember_tool(memory, user_id="alice", session_id="s1")
    assert tool.invoke({"text": "Always reply in French, please."}).startswith("Remembered (1 new")
    assert [m.text for m in memory.get_all(user_id="alice")] == ["user: Always reply in French, please."]
    assert tool.invoke({"text": "The user prefers replies in French."}).startswith("Remembered (1 new")


def test_recall_gives_a_plain_sentence_instead_of_the_none_sentinel(tmp_path: Path) -> None:
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(by_task={"answer": "NONE"}), extract=False)
    memory.add("I like tea.", user_id="alice")
    reply = create_recall_tool(memory, user_id="alice", mode="fast").invoke({"question": "Dog's name?"})
    assert reply.startswith("Answer: Nothing in memory answers this question.") and "NONE" not in reply
    memory.close()
