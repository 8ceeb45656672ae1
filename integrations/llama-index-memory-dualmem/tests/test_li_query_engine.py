"""DualMemQueryEngine: dualmem's answer as a llama-index Response, with its trace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from dualmem import Answer, DualMemory, Evidence, Fact, GateReport, Memory, Usage
from dualmem.testing import ScriptedLLM
from llama_index.core.base.response.schema import Response

from llama_index.memory.dualmem import DualMemQueryEngine
from llama_index.memory.dualmem.query_engine import answer_response


def test_fast_answer_with_memories_as_sources(alice: DualMemory, llm: ScriptedLLM) -> None:
    engine = DualMemQueryEngine(memory=alice, user_id="alice", mode="fast", k=2)
    response = engine.query("Where did Alice move to?")
    assert isinstance(response, Response)
    assert response.response == "Paris"
    assert [n.node.text for n in response.source_nodes][0] == "user: I moved to Paris in 2021."
    assert len(response.source_nodes) == 2
    meta = response.metadata
    assert meta["path"] == "fast" and meta["reason"] == "fast mode: no gate" and meta["gate"] is None
    assert meta["usage"]["answer"]["calls"] == 1 and meta["usage"]["answer"]["prompt_tokens"] > 0
    assert set(meta["latency"]) >= {"retrieve", "answer"}
    assert [c.task for c in llm.calls] == ["answer"]


def test_gated_keeps_a_grounded_confident_answer(alice: DualMemory) -> None:
    response = DualMemQueryEngine(memory=alice, user_id="alice").query("Where did I move in 2021?")
    meta = response.metadata
    assert response.response == "Paris"
    assert meta["path"] == "fast" and meta["reason"].startswith("fast answer kept")
    gate = GateReport.model_validate(meta["gate"])  # a plain dict, round-trips to the report
    assert gate.passed and not gate.escalate
    assert {s.name for s in gate.signals} >= {"entropy", "coverage", "consistency"}


FAILED_AUDIT = (
    '{"relevance": {"status": "pass"}, "faithfulness": {"status": "pass"}, '
    '"completeness_relevance": {"status": "fail"}}'
)


async def test_gated_escalation_cites_the_raw_turns(
    tmp_path: Path, make_llm: Callable[..., ScriptedLLM]
) -> None:
    # the audit policy with a scripted failing audit: the gate escalates, and deliberation
    # (its neighbour tier) reads the raw turns behind the top memory
    # the fast answer refuses, so that the neighbour tier's supported answer wins the arbitration
    llm = make_llm(**{"gate.audit": [FAILED_AUDIT], "answer": ["NONE"]})
    store = DualMemory(path=tmp_path, llm=llm, extract=False, gate={"policy": "audit"},
                       deliberation={"strategy": "scan"})
    store.add([{"role": "user", "content": "I moved to Paris in 2021."},
               {"role": "assistant", "content": "Nice, Paris is lovely."}], user_id="alice")
    response = await DualMemQueryEngine(memory=store, user_id="alice", k=1).aquery("Where did I move to?")
    meta = response.metadata
    assert [c.task for c in llm.calls] == ["answer", "gate.audit", "neighbours.answer"]
    assert meta["path"] == "deliberate" and meta["tier"] == "neighbours"
    assert meta["reason"].startswith("escalated: audit failed: completeness")
    assert meta["gate"]["escalate"] is True and meta["gate"]["audit"]["completeness"] is False
    assert response.response == "Paris"
    turns = store.history(user_id="alice")
    # the sources are the raw turns deliberation read, each pointing at its turn
    sources = [(n.node.text, n.node.metadata["kind"], n.node.metadata["turn_ids"])
               for n in response.source_nodes]
    assert sources == [
        ("user: I moved to Paris in 2021.", "fact", [turns[0].id]),
        ("assistant: Nice, Paris is lovely.", "fact", [turns[1].id]),
    ]


def test_answer_response_maps_a_deliberated_answer() -> None:
    now = datetime.now(UTC)
    answer = Answer(
        question="q", text="Paris", path="deliberate", tier="full", mode="full", reason="full mode",
        evidence=Evidence(facts=[Fact(text="Alice moved to Paris", score=9, turn_ids=["t1"],
                                      timestamp="7 May 2023", speaker="Alice")]),
        memories=[Memory(id="m1", text="unrelated", created_at=now, updated_at=now, score=0.1)],
        usage={"deliberate.extract": Usage(prompt_tokens=10, completion_tokens=5, calls=1)},
        latency={"history": 0.01},
    )
    response = answer_response(answer)
    assert response.response == "Paris"
    [node] = response.source_nodes
    assert node.score == 9 and node.node.text == "Alice moved to Paris"
    assert node.node.metadata == {"kind": "fact", "turn_ids": ["t1"], "timestamp": "7 May 2023",
                                  "speaker": "Alice"}
    assert response.metadata["tier"] == "full"
    assert response.metadata["usage"] == {
        "deliberate.extract": {"prompt_tokens": 10, "completion_tokens": 5, "calls": 1}
    }


async def test_async_query_and_scoping(alice: DualMemory) -> None:
    alice.add("I moved to Berlin in 2019.", user_id="bob")
    bob = DualMemQueryEngine(memory=alice, user_id="bob", mode="fast")
    response = await bob.aquery("Where did I move to?")
    assert [n.node.text for n in response.source_nodes] == ["user: I moved to Berlin in 2019."]
    assert response.response == "I don't know"  # the scripted model only knows Alice's Paris memory
