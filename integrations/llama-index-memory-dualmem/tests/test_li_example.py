"""examples/llamaindex_agent.py runs offline and tells its story."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "llamaindex_agent.py"


def test_example_runs_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    spec = importlib.util.spec_from_file_location("llamaindex_agent_example", EXAMPLE)
    assert spec and spec.loader
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    reply = example.main(["--data-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert reply == "You live in Lisbon."
    # session 2 starts with no chat, yet the model is shown session 1 and the tool recalls it
    session_2 = out.split("session 2")[1]
    assert "I moved to Lisbon in March 2024" in session_2.split("agent calls")[0]
    assert "agent calls recall({'input': 'Where does Alice live?'}) -> Lisbon" in session_2
    assert "answer: 'Pixel'  path=fast" in out
