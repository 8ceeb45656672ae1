"""The langchain-tests standard suites for the retriever and the recall tool.

The "integration" suites run here with the unit tests: the memory is local (SQLite, Chroma
and MiniLM in a temp dir) and the model is a `ScriptedLLM`, so nothing leaves the machine.
The suites read constructor params from properties, not fixtures, hence one module-level
memory (created on first use, deleted at exit).
"""

from __future__ import annotations

import functools
import tempfile
from typing import Any

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM, ScriptedReply
from langchain_tests.integration_tests import RetrieversIntegrationTests, ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from langchain_dualmem import DualMemRecallTool, DualMemRetriever

TURNS = [
    {"role": "user", "content": "I moved to Paris in 2021."},
    {"role": "assistant", "content": "How do you like Paris?"},
    {"role": "user", "content": "I love it, and my sister Ana visits every summer."},
    {"role": "user", "content": "I work as a nurse at a children's hospital."},
]

CONFIDENT_PARIS = ScriptedReply("Paris", confidence=0.99)  # supported by TURNS: the gate keeps it
_TMP = tempfile.TemporaryDirectory(prefix="lc-dualmem-std-")  # removed at interpreter exit


@functools.cache
def shared_memory() -> DualMemory:
    memory = DualMemory(path=_TMP.name, llm=ScriptedLLM(by_task={"answer": lambda r: CONFIDENT_PARIS}),
                        extract=False)
    memory.add(TURNS, user_id="alice", session_id="s1")
    return memory


class TestDualMemRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[DualMemRetriever]:
        return DualMemRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"memory": shared_memory(), "user_id": "alice"}

    @property
    def retriever_query_example(self) -> str:
        return "Where does the user live?"


class _RecallToolParams:
    @property
    def tool_constructor(self) -> type[DualMemRecallTool]:
        return DualMemRecallTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"memory": shared_memory(), "user_id": "alice"}  # the default mode: gated

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"question": "Where does the user live?"}


class TestDualMemRecallToolUnit(_RecallToolParams, ToolsUnitTests):
    pass


class TestDualMemRecallToolIntegration(_RecallToolParams, ToolsIntegrationTests):
    pass
