"""Fixtures shared by the langchain-dualmem tests: a fast, deterministic DualMemory."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

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


EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "langchain_agent.py"


@pytest.fixture(scope="session")
def example() -> ModuleType:
    """examples/langchain_agent.py of the repository, imported by path."""
    if not EXAMPLE.exists():
        pytest.skip("runs from a dualmem checkout only (needs examples/langchain_agent.py)")
    spec = importlib.util.spec_from_file_location("langchain_agent_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
