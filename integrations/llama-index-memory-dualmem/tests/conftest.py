"""A real DualMemory over a temporary directory, with a scripted model and raw-turn indexing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dualmem import DualMemory
from dualmem.llm.base import ChatRequest
from dualmem.testing import ScriptedLLM, ScriptedReply


def answer_from_prompt(request: ChatRequest) -> ScriptedReply:
    """Answers "Paris" only when the prompt it was given contains the Paris memory."""
    prompt = "\n".join(m["content"] for m in request.messages)
    if "moved to Paris" in prompt:
        return ScriptedReply("Paris", confidence=0.97)
    return ScriptedReply("I don't know", confidence=0.3)


@pytest.fixture
def llm() -> ScriptedLLM:
    return ScriptedLLM(by_task={"answer": answer_from_prompt, "neighbours": answer_from_prompt})


@pytest.fixture
def store(tmp_path: Path, llm: ScriptedLLM) -> Iterator[DualMemory]:
    memory = DualMemory(path=tmp_path, llm=llm, extract=False)
    yield memory
    memory.close()


@pytest.fixture
def alice(store: DualMemory) -> DualMemory:
    """Alice told the assistant where she moved, in an earlier session."""
    store.add(
        [
            {"role": "user", "content": "I moved to Paris in 2021.", "timestamp": "2023-05-07"},
            {"role": "assistant", "content": "Nice, Paris is lovely.", "timestamp": "2023-05-07"},
            {"role": "user", "content": "My sister Jane is a nurse.", "timestamp": "2023-05-07"},
        ],
        user_id="alice",
        session_id="earlier",
    )
    return store
