"""A real DualMemory over a temporary directory, with a scripted model and raw-turn indexing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dualmem import ChatRequest, DualMemory
from dualmem.testing import ScriptedLLM, ScriptedReply

# question word -> (what the memories must say, the answer)
KNOWN = {"move": ("moved to Paris", "Paris"), "sister": ("Jane is a nurse", "a nurse"),
         "cat": ("cat named Miso", "Miso")}


def answer_from_prompt(request: ChatRequest) -> ScriptedReply:
    """A reader that answers only from the context it was given, else refuses."""
    prompt = request.messages[-1]["content"]
    context, _, question = prompt.rpartition("Question:")
    for word, (fact, answer) in KNOWN.items():
        if word in question.lower() and fact in context:
            return ScriptedReply(answer, confidence=0.97)
    return ScriptedReply("I don't know", confidence=0.3)


@pytest.fixture
def make_llm() -> Callable[..., ScriptedLLM]:
    """The scripted reader, plus replies for other tasks (e.g. `**{"gate.audit": [...]}`)."""

    def make(**by_task: Any) -> ScriptedLLM:
        reader = {"answer": answer_from_prompt, "neighbours": answer_from_prompt}
        return ScriptedLLM(by_task={**reader, **by_task})

    return make


@pytest.fixture
def llm(make_llm: Callable[..., ScriptedLLM]) -> ScriptedLLM:
    return make_llm()


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
