"""Fixtures shared by the langchain-dualmem tests: a fast, deterministic DualMemory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dualmem import DualMemory
from dualmem.testing import ScriptedLLM


@pytest.fixture
def llm() -> ScriptedLLM:
    # every answer call replies "Paris"; extraction is off, so no other task is asked
    return ScriptedLLM(by_task={"answer": lambda request: "Paris"})


@pytest.fixture
def memory(tmp_path: Path, llm: ScriptedLLM) -> Iterator[DualMemory]:
    mem = DualMemory(path=tmp_path, llm=llm, extract=False)
    yield mem
    mem.close()
