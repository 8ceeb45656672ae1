"""The README's Python snippets run, in order, against a scripted memory and fake models."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import dualmem
import pytest
from dualmem.testing import ScriptedLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage

README = Path(__file__).resolve().parents[2] / "README.md"


class ScriptedMemory(dualmem.DualMemory):
    """What `DualMemory(...)` in the README becomes here: no model download, no extraction."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, llm=ScriptedLLM(by_task={"answer": lambda r: "Lisbon"}), extract=False,
                         **kwargs)


@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
def test_readme_snippets_run(
    example: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 7
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dualmem, "DualMemory", ScriptedMemory)
    recall_call = {"name": "recall_memory", "args": {"question": "Where does Alice live?"}, "id": "c1"}
    namespace: dict[str, object] = {
        "chat_model": FakeListChatModel(responses=["Hi Alice!"]),
        "agent_model": example.ScriptedToolModel(messages=iter([AIMessage("In Lisbon.")])),
        "model": example.ScriptedToolModel(messages=iter([
            AIMessage("", tool_calls=[recall_call]), AIMessage("You live in Lisbon."),
        ])),
    }
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)

    memory = namespace["memory"]
    assert isinstance(memory, ScriptedMemory)
    assert (tmp_path / "memory-data").is_dir()
    assert "Lisbon" in namespace["docs"][0].page_content
    assert namespace["history"].messages == []            # s2 cleared ...
    assert len(memory.history(user_id="alice", session_id="s1")) == 3   # ... s1 kept
    assert len(memory.history(user_id="alice", session_id="s3")) == 2   # the chain's exchange
    assert namespace["items"][0].value == {"text": "Alice is vegetarian."}
    assert namespace["reply"]["messages"][-1].text == "In Lisbon."
    saved = memory.history(user_id="alice", session_id="s5")  # the middleware saved the exchange
    assert [t.text for t in saved] == ["Where do I live?", "In Lisbon."]
    tool_message = namespace["result"]["messages"][2]
    assert tool_message.content.startswith("Answer: Lisbon\nPath: ")
    assert capsys.readouterr().out.rstrip().endswith("You live in Lisbon.")
