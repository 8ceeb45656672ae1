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


def test_v1_agent_with_store_and_middleware(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[4] / "examples" / "langchain_v1_agent.py"
    if not path.exists():
        pytest.skip("runs from a dualmem checkout only")
    spec = importlib.util.spec_from_file_location("langchain_v1_agent_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    messages = module.main(str(tmp_path))
    tool = next(m for m in messages if isinstance(m, ToolMessage))
    assert tool.name == "find_preferences" and tool.content == "The user's diet preference: vegetarian."
    memory = DualMemory(path=tmp_path)
    texts = [m.text for m in memory.get_all(user_id="alice")]
    assert "memory: The user's diet preference: vegetarian." in texts  # the store's item
    # saved by the middleware: the exchange in the history, the answer searchable (a bare
    # question is kept out of search)
    tuesday = memory.history(user_id="alice", session_id="tuesday")
    assert [t.text for t in tuesday] == [
        "What should I cook tonight?", "How about a mushroom risotto? It's vegetarian."]
    assert "assistant: How about a mushroom risotto? It's vegetarian." in texts
    assert "user: What should I cook tonight?" not in texts
    memory.close()
    assert "[tuesday]" in capsys.readouterr().out
