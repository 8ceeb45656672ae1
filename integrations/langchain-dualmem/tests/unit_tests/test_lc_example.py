"""examples/langchain_agent.py, run offline with its scripted tool-calling model."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from dualmem import DualMemory
from langchain_core.messages import AIMessage, ToolMessage


def test_agent_recalls_across_sessions(
    example: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = example.main(["--data-dir", str(tmp_path)], model_factory=example.scripted_model)

    recall = [m for m in messages if isinstance(m, ToolMessage)]
    assert [m.name for m in recall] == ["recall_memory"]
    assert recall[0].content.startswith("Answer: Lisbon\nPath: ")
    # the evidence is what session 1 stored (via the remember tool and the chat history)
    evidence = recall[0].artifact["memories"]
    assert {m["session_id"] for m in evidence[:2]} == {"session-1"}
    assert "Lisbon" in evidence[0]["text"]
    assert isinstance(messages[-1], AIMessage) and "Lisbon" in messages[-1].text

    memory = DualMemory(path=tmp_path)  # the data stays in --data-dir; no model is loaded to read it
    turns = memory.history(user_id="alice", session_id="session-1")
    assert [(t.role, t.metadata.get("source")) for t in turns] == [
        ("user", "remember"), ("user", None), ("assistant", None)
    ]
    memory.close()
    out = capsys.readouterr().out
    assert "agent calls recall_memory" in out and "tool -> Answer: Lisbon" in out
