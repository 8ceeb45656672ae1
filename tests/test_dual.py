"""The dual process end to end through DualMemory: fast, gated (pass / neighbours / full), full mode."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dualmem import DualMemory
from dualmem.errors import LLMError
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.types import Answer

QUESTION = "What instrument does Greta play?"
TURNS = [
    ("t1", "Hilde", "Hey Mel, how was your weekend?"),
    ("t2", "Greta", "Great! I played the violin at the city orchestra concert."),
    ("t3", "Hilde", "Wow, how long have you played?"),
    ("t4", "Greta", "Since I was eight. My teacher was very strict."),
    ("t5", "Hilde", "I adopted a dog named Rex last week."),
    ("t6", "Greta", "Congrats! Rex sounds lovely."),
]
DIMENSIONS = ("relevance", "faithfulness", "completeness_relevance")
AUDIT_PASS = json.dumps({k: {"status": "pass"} for k in DIMENSIONS})
AUDIT_FAIL = json.dumps({k: {"status": "fail" if k == "faithfulness" else "pass"} for k in DIMENSIONS})
VIOLIN_FACT = json.dumps(
    {"facts": [{"fact": "Greta plays the violin in the city orchestra.", "score": 9, "turns": [2]}]}
)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """One data dir holding the conversation, shared by the module (opening it again is cheap)."""
    path = tmp_path_factory.mktemp("dual")
    DualMemory(path=path, llm=ScriptedLLM(), extract=False).add(
        [{"id": i, "role": "user", "speaker": who, "content": text, "timestamp": f"2023-05-07T10:0{n}:00Z"}
         for n, (i, who, text) in enumerate(TURNS)],
        user_id="mel", session_id="s1",
    )
    return path


@pytest.fixture
def make_memory(stored: Path) -> Callable[..., DualMemory]:
    def make(llm: ScriptedLLM, **kwargs: Any) -> DualMemory:
        # this module covers the `scan` strategy and its neighbour tier; test_evidence.py the other
        kwargs.setdefault("deliberation", {"strategy": "scan"})
        return DualMemory(path=stored, llm=llm, extract=False, **kwargs)

    return make


def tasks(llm: ScriptedLLM) -> list[str]:
    return [c.task for c in llm.calls]


def confident(text: str) -> ScriptedReply:
    return ScriptedReply(text, confidence=0.99)


# ---------------------------------------------------------------- fast mode


def test_fast_mode_never_gates(make_memory) -> None:
    # a refusal would escalate under every policy: fast mode must not even look
    llm = ScriptedLLM(by_task={"answer": [confident("NONE")]})
    a = make_memory(llm).answer(QUESTION, user_id="mel", mode="fast", policy="audit")
    assert a.text == "NONE" and a.path == "fast" and a.mode == "fast"
    assert a.gate is None and a.tier is None and not a.degraded
    assert a.reason == "fast mode: no gate"
    assert tasks(llm) == ["answer"]
    assert set(a.usage) == {"answer"}
    assert "t2" in a.evidence.turn_ids and a.memories


# ---------------------------------------------------------------- gated: pass


@pytest.mark.parametrize(("policy", "script"), [("cascade", {}), ("audit", {"gate.audit": [AUDIT_PASS]})])
def test_gated_pass_keeps_the_fast_answer(make_memory, policy: str, script: dict) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("violin")], **script})
    a = make_memory(llm).answer(QUESTION, user_id="mel", policy=policy)
    assert a.text == "violin" and a.path == "fast" and a.mode == "gated" and a.tier is None
    assert a.gate is not None and a.gate.passed and a.gate.policy == policy
    assert a.reason.startswith("fast answer kept")
    assert a.reason.endswith(a.gate.reason)
    assert not any(t.startswith(("deliberate", "neighbours")) for t in tasks(llm))
    assert "gate" in a.latency


def test_majority_pass_returns_the_judge_pick_verbatim(make_memory) -> None:
    llm = ScriptedLLM(by_task={
        "answer": [confident("violin")],
        "gate.sample": ["the violin", "violin", "a cello"],
        "gate.judge": ['{"agree": 2, "answer": "the violin"}'],
    })
    a = make_memory(llm).answer(QUESTION, user_id="mel", policy="majority")
    assert a.path == "fast" and a.text == "the violin"
    assert a.usage["gate"].calls == 4


# ---------------------------------------------------------------- gated: escalation


def test_escalation_answered_by_the_neighbour_tier(make_memory) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("NONE")], "neighbours.answer": [confident("violin")]})
    a = make_memory(llm).answer(QUESTION, user_id="mel")
    assert a.text == "violin" and a.path == "deliberate" and a.tier == "neighbours"
    assert a.gate.escalate and not a.degraded
    assert a.reason.startswith("escalated: the fast answer is a refusal")
    assert "neighbour turns answered it" in a.reason
    assert llm.calls_for("deliberate") == []  # no full scan
    assert "t2" in a.evidence.turn_ids
    assert all(len(f.turn_ids) == 1 for f in a.evidence.facts)
    # the neighbour prompt holds the raw turns, with speakers
    prompt = llm.calls_for("neighbours.answer")[0].messages[-1]["content"]
    assert "Greta: Great! I played the violin" in prompt


def test_gate_without_deliberation_keeps_the_fast_answer_and_says_it_would_escalate(make_memory) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("NONE")]})
    a = make_memory(llm).answer(QUESTION, user_id="mel", policy="signals", deliberate=False)
    assert a.text == "NONE" and a.path == "fast" and a.tier is None
    assert a.gate is not None and a.gate.escalate and a.gate.score is not None
    assert a.reason.startswith("would escalate (the fast answer is a refusal")
    assert tasks(llm) == ["answer"]  # neither tier ran


@pytest.mark.parametrize("neighbour_answer", ["NONE", "saxophone quartet"])
def test_escalation_unsupported_neighbours_runs_the_full_scan(make_memory, neighbour_answer: str) -> None:
    llm = ScriptedLLM(by_task={
        "answer": [confident("NONE")],
        "neighbours.answer": [confident(neighbour_answer)],
        "deliberate.extract": [VIOLIN_FACT],
        "deliberate.answer": [confident("violin")],
    })
    a = make_memory(llm).answer(QUESTION, user_id="mel")
    assert a.text == "violin" and a.path == "deliberate" and a.tier == "full"
    assert f"neighbour turns gave {neighbour_answer!r}, not supported: full scan" in a.reason
    assert "scanned 6 turns in 1 chunks, kept 1 facts" in a.reason
    assert tasks(llm) == ["answer", "neighbours.answer", "deliberate.extract", "deliberate.answer"]
    # evidence is the full scan's, usage keeps both tiers
    assert a.evidence.turn_ids == ["t2"]
    assert [f.text for f in a.evidence.facts] == ["Greta plays the violin in the city orchestra."]
    assert {"neighbours.answer", "deliberate.extract", "deliberate.answer"} <= set(a.usage)


@pytest.mark.parametrize("where", ["call", "config"])
def test_untiered_escalation_goes_straight_to_the_full_scan(make_memory, where: str) -> None:
    llm = ScriptedLLM(by_task={
        "answer": [confident("NONE")],
        "deliberate.extract": [VIOLIN_FACT],
        "deliberate.answer": [confident("violin")],
    })
    if where == "call":
        a = make_memory(llm).answer(QUESTION, user_id="mel", tiered=False)
    else:
        a = make_memory(llm, gate={"tiered": False}).answer(QUESTION, user_id="mel")
    assert a.tier == "full" and llm.calls_for("neighbours") == []


def test_full_scan_reads_only_the_scope(make_memory) -> None:
    llm = ScriptedLLM(by_task={
        "answer": ["NONE"], "deliberate.extract": [VIOLIN_FACT], "deliberate.answer": ["violin"]
    })
    memory = make_memory(llm)
    memory.add("Bob's PIN is BOBSECRET 1234.", user_id="bob", session_id="s1")
    memory.answer(QUESTION, user_id="mel", mode="full")
    (call,) = llm.calls_for("deliberate.extract")
    assert "BOBSECRET" not in call.messages[-1]["content"]
    assert "I played the violin" in call.messages[-1]["content"]


# ---------------------------------------------------------------- full mode


def test_full_mode_skips_the_gate_and_always_deliberates(make_memory) -> None:
    # the fast answer is still made, so that the arbiter can keep it if the scan finds less
    llm = ScriptedLLM(by_task={
        "answer": [confident("NONE")], "deliberate.extract": [VIOLIN_FACT], "deliberate.answer": ["violin"],
    })
    a = make_memory(llm).answer(QUESTION, user_id="mel", mode="full")
    assert a.text == "violin" and a.path == "deliberate" and a.tier == "full" and a.mode == "full"
    assert tasks(llm) == ["answer", "deliberate.extract", "deliberate.answer"]
    assert a.gate is None and a.strategy == "scan"
    assert [(c.source, c.text, c.won) for c in a.candidates] == [
        ("fast", "NONE", False), ("full", "violin", True)
    ]
    assert a.reason.startswith("full mode: always deliberate")


# ---------------------------------------------------------------- degraded, never nothing


@pytest.mark.parametrize(
    ("fail_task", "tiered"),
    [("neighbours.answer", True), ("deliberate.extract", False), ("deliberate.answer", False)],
)
def test_llm_error_in_deliberation_returns_the_fast_answer_degraded(make_memory, fail_task, tiered) -> None:
    script = {
        "answer": [confident("cello")],
        "gate.audit": [AUDIT_FAIL],
        "neighbours.answer": ["violin"],
        "deliberate.extract": [VIOLIN_FACT],
        "deliberate.answer": ["violin"],
    }
    script[fail_task] = [LLMError("model server went away")]
    llm = ScriptedLLM(by_task=script)
    a = make_memory(llm).answer(QUESTION, user_id="mel", policy="audit", tiered=tiered)
    assert llm.calls_for(fail_task)  # the fault was hit
    assert a.text == "cello" and a.path == "fast" and a.tier is None
    assert a.degraded is True
    assert a.gate.escalate
    assert a.reason.startswith("escalated: audit failed: faithfulness")
    assert "deliberation failed (model server went away), fast answer kept" in a.reason


def test_context_too_small_to_deliberate_degrades_to_the_fast_answer(make_memory) -> None:
    script = {"answer": [confident("cello")], "gate.audit": [AUDIT_FAIL]}
    llm = ScriptedLLM(by_task=script, context_tokens=300)
    a = make_memory(llm).answer(QUESTION, user_id="mel", policy="audit", tiered=False)
    assert a.text == "cello" and a.path == "fast" and a.degraded is True
    assert "too small to deliberate" in a.reason


def test_llm_error_in_full_mode_falls_back_to_the_fast_path(make_memory) -> None:
    llm = ScriptedLLM(by_task={"deliberate.extract": [LLMError("out of memory")], "answer": ["violin"]})
    a = make_memory(llm).answer(QUESTION, user_id="mel", mode="full")
    assert a.text == "violin" and a.path == "fast" and a.degraded is True
    assert a.reason == "full mode: always deliberate; deliberation failed (out of memory), fast answer kept"
    assert a.memories and a.candidates == []


def test_malformed_chunk_degrades_but_still_deliberates(make_memory) -> None:
    llm = ScriptedLLM(by_task={
        "answer": [confident("NONE")],
        "deliberate.extract": ["sorry, no json", "still no json"],
        "deliberate.answer": ["NONE"],
    })
    a = make_memory(llm).answer(QUESTION, user_id="mel", tiered=False)
    # both refused: nothing to replace the fast answer with
    assert a.path == "deliberate" and a.tier == "fast" and a.text == "NONE"
    assert a.arbitration == "full found no answer; fast's answer stands"
    assert a.degraded is True
    assert "1 chunk(s) unreadable and skipped" in a.reason


# ---------------------------------------------------------------- the trace


def test_trace_of_an_audited_escalation(make_memory) -> None:
    six = json.dumps({"facts": [
        {"fact": f"Greta fact {i} about the violin.", "score": 6 + i % 4, "turns": [i]} for i in range(1, 7)
    ]})
    llm = ScriptedLLM(by_task={
        "answer": [confident("cello")],
        "gate.audit": [AUDIT_FAIL],
        "deliberate.extract": [six],
        "deliberate.filter": ['{"indexes": [2, 4]}'],
        "deliberate.answer": [confident("violin")],
    })
    a = make_memory(llm).answer(QUESTION, user_id="mel", policy="audit", tiered=False)
    assert a.text == "violin" and a.tier == "full"
    # usage and latency per phase
    assert set(a.usage) == {"answer", "gate", "deliberate.extract", "deliberate.filter", "deliberate.answer"}
    assert all(u.calls == 1 and u.prompt_tokens > 0 for u in a.usage.values())
    assert a.total_usage.calls == 5
    assert set(a.latency) == {
        "retrieve", "answer", "gate", "history",
        "deliberate.extract", "deliberate.filter", "deliberate.answer",
    }
    assert all(v >= 0 for v in a.latency.values())
    # evidence: the filtered facts with the turns behind them (1-based 'turns' within the chunk)
    assert sorted(f.text for f in a.evidence.facts) == ["Greta fact 2 about the violin.",
                                                         "Greta fact 4 about the violin."]
    assert a.evidence.turn_ids == ["t2", "t4"]
    assert {f.speaker for f in a.evidence.facts} == {"Greta"}
    assert a.evidence.memory_ids == [m.id for m in a.memories]  # what the fast path retrieved
    # the gate: signals with score, threshold and verdict, and the audit labels
    signals = {s.name: s for s in a.gate.signals}
    assert set(signals) == {"entropy", "coverage", "consistency", "sufficiency", "recency", "aggregation"}
    for s in (signals[n] for n in ("entropy", "coverage", "consistency")):
        assert s.available and 0 <= s.score <= 1 and s.threshold == 0.5
        assert s.passed is (s.score >= s.threshold) and s.reason
    for s in (signals[n] for n in ("sufficiency", "recency", "aggregation")):
        # judged, or unavailable with the reason why: never a silent pass
        assert s.reason and (s.passed is (s.score >= s.threshold) if s.available else s.passed is None)
    assert a.gate.audit.model_dump() == {
        "relevance": True, "faithfulness": False, "completeness": True, "malformed": False, "raw": None,
        "error": None,
    }
    assert a.logprobs and a.logprobs[0].token == "violin"  # the final answer's logprobs


def test_answer_json_round_trip(make_memory) -> None:
    llm = ScriptedLLM(by_task={
        "answer": [confident("NONE")],
        "neighbours.answer": ["NONE"],
        "deliberate.extract": [VIOLIN_FACT],
        "deliberate.answer": [confident("violin")],
    })
    a = make_memory(llm).answer(QUESTION, user_id="mel")
    assert a.tier == "full" and a.gate and a.evidence.facts and a.logprobs
    dumped = a.model_dump_json()
    back = Answer.model_validate_json(dumped)
    assert back == a
    assert json.loads(dumped)["gate"]["signals"][0]["name"] == "entropy"
    assert back.total_usage == a.total_usage


async def test_async_and_sync_share_one_path(make_memory) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident("violin")]})
    memory = make_memory(llm)
    a = await memory.aanswer(QUESTION, user_id="mel", policy="signals")
    assert a.path == "fast" and a.gate.policy == "signals" and a.text == "violin"


def test_a_misspelt_gate_setting_fails_at_construction(tmp_path) -> None:
    from dualmem.errors import ConfigError

    with pytest.raises(ConfigError, match="polcy"):
        DualMemory(path=tmp_path, llm=ScriptedLLM(), gate={"polcy": "audit"})


@pytest.mark.parametrize(("similarity", "suffices"), [(0.9, True), (0.05, False)])
def test_neighbour_facts_keep_the_similarity_of_the_memory_they_were_read_next_to(
    similarity: float, suffices: bool
) -> None:
    from datetime import UTC, datetime

    from dualmem.answering.deliberate import Deliberation, Neighbours
    from dualmem.answering.gate import GateConfig
    from dualmem.types import Fact, Memory

    now = datetime.now(UTC)
    memory = Memory(id="t2", text="Greta: concert night", created_at=now, updated_at=now,
                    score=similarity, source_turn_ids=["t2"])
    # the fact names Greta but neither "instrument" nor "play": a third of the question's terms,
    # so whether the neighbour answer stands turns on how similar its source memory was
    fact = Fact(text="Greta performed with her violin at the concert.", score=8, turn_ids=["t2"])
    result = Deliberation(text="violin", tier="neighbours", facts=[fact])
    neighbours = Neighbours(ScriptedLLM(), GateConfig())
    assert neighbours.accepts(QUESTION, result, [memory]) is suffices
