"""`DualMemQueryEngine`: `DualMemory.answer` (gated by default) as a llama-index query engine."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.response.schema import Response
from llama_index.core.bridge.pydantic import Field
from llama_index.core.query_engine import CustomQueryEngine

from dualmem import Answer, Mode, ScopeError, run_sync

from .base import DualMemFields
from .utils import fact_node, memory_node

__all__ = ["NO_MEMORIES", "DualMemQueryEngine", "answer_response"]

NO_MEMORIES = "Nothing is stored in memory for this user yet."


def answer_response(answer: Answer) -> Response:
    """An `Answer` as a `Response`: its text, its evidence as nodes, and how it was made."""
    nodes = [memory_node(m) for m in answer.memories]
    if answer.path == "deliberate" and answer.evidence.facts:
        nodes = [fact_node(f) for f in answer.evidence.facts]
    metadata: dict[str, Any] = {
        "path": answer.path,
        "found": answer.found,
        "tier": answer.tier,
        "mode": answer.mode,
        "reason": answer.reason,
        "degraded": answer.degraded,
        "gate": answer.gate.model_dump(mode="json") if answer.gate else None,
        "usage": {phase: u.model_dump() for phase, u in answer.usage.items()},
        "latency": dict(answer.latency),
    }
    return Response(response=answer.reply, source_nodes=nodes, metadata=metadata)


class DualMemQueryEngine(DualMemFields, CustomQueryEngine):
    """Ask dualmem: the fast answer from memories, escalated to deliberation over the raw
    history when the quality gate fails (`mode="gated"`; "fast" never escalates, "full" always).

    `response.metadata` has `path` ("fast"/"deliberate"; None when nothing is stored for the
    scope yet, and the response says so), `found` (False when memory held no answer), `tier`,
    `reason`, `gate` (the GateReport as a dict), `usage` and `latency`; `source_nodes` are the
    memories used, or the facts deliberation found.

    ```python
    engine = DualMemQueryEngine(memory=memory, user_id="alice")
    response = engine.query("Where does Alice live?")
    print(response.response, response.metadata["path"], response.metadata["reason"])
    ```
    """

    mode: Mode = Field(default="gated", description="`DualMemory.answer` mode.")

    def custom_query(self, query_str: str) -> Response:
        return run_sync(self.acustom_query(query_str))

    async def acustom_query(self, query_str: str) -> Response:
        try:
            answer = await self.scoped_memory.aanswer(query_str, k=self.k, mode=self.mode)
        except ScopeError:  # the ids were checked at construction: nothing is stored yet
            # as the retriever and the memory do: no memories is an answer, not a failure
            return Response(response=NO_MEMORIES, source_nodes=[], metadata={"path": None, "found": False})
        return answer_response(answer)
