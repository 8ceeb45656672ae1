"""Gate policies: audit, signals (any/weighted), cascade, majority, consensus, unavailable logprobs."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from dualmem import DualMemory
from dualmem.answering.gate import GateConfig, GateOutcome, run_gate
from dualmem.answering.reader import answer_from, context_lines
from dualmem.errors import InvalidInputError, LLMError
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.types import Memory

NOW = datetime(2023, 5, 7, tzinfo=UTC)
QUESTION = "What instrument does Greta play in the orchestra?"
STRONG = [
    Memory(id="m1", text="Greta plays the violin in the city orchestra.", created_at=NOW,
           updated_at=NOW, event_date="2023-05-07", score=0.7, source_turn_ids=["t1"]),
]
WEAK = [
    Memory(id="m2", text="Hilde adopted a dog named Rex.", created_at=NOW, updated_at=NOW,
           event_date="2023-05-07", score=0.1, source_turn_ids=["t2"]),
]


def audit_json(relevance: str = "pass", faithfulness: str = "pass", completeness: str = "pass") -> str:
    return json.dumps({
        "relevance": {"status": relevance},
        "faithfulness": {"status": faithfulness},
        "completeness_relevance": {"status": completeness},
    })


AUDIT_PASS = audit_json()


async def gate(
    llm: ScriptedLLM, memories: list[Memory], *, policy: str | None = None, **cfg: object
) -> GateOutcome:
    """The fast answer (task "answer") with its logprobs, then the gate, as the dual process runs it."""
    fast = await answer_from(llm, QUESTION, context_lines(memories))
    return await run_gate(
        llm, GateConfig(**cfg), QUESTION, fast.text, fast.completion.logprobs, memories, policy
    )


def tasks(llm: ScriptedLLM) -> list[str]:
    return [c.task for c in llm.calls]


# the three canonical fast answers: clearly fine, clearly wrong, and in the uncertain band
def confident_right() -> ScriptedReply:
    return ScriptedReply("violin", confidence=0.99)


def guessing_wrong() -> ScriptedReply:
    return ScriptedReply("cello", confidence=0.2)


def confident_ungrounded() -> ScriptedReply:
    return ScriptedReply("cello", confidence=0.99)  # good evidence, answer not in it


# ---------------------------------------------------------------- audit (D-Mem Quality Gating)


async def test_audit_passes_when_all_three_dimensions_pass() -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()], "gate.audit": [AUDIT_PASS]})
    out = await gate(llm, STRONG, policy="audit")
    assert out.report.passed and not out.report.escalate
    assert out.report.policy == "audit"
    audit = out.report.audit
    assert audit is not None and audit.relevance and audit.faithfulness and audit.completeness
    assert not audit.malformed
    assert out.report.reason == "audit passed all three dimensions"
    assert tasks(llm) == ["answer", "gate.audit"]
    assert out.usage.calls == 1 and out.usage.prompt_tokens > 0
    # the audit sees the question, the answer and the memories
    prompt = llm.calls_for("gate.audit")[0].messages[-1]["content"]
    assert QUESTION in prompt and "violin" in prompt and STRONG[0].text in prompt


@pytest.mark.parametrize(
    ("labels", "failed"),
    [
        (("fail", "pass", "pass"), "relevance"),
        (("pass", "fail", "pass"), "faithfulness"),
        (("pass", "pass", "fail"), "completeness"),
    ],
)
async def test_audit_escalates_when_any_dimension_fails(labels: tuple[str, str, str], failed: str) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()], "gate.audit": [audit_json(*labels)]})
    out = await gate(llm, STRONG, policy="audit")
    assert out.report.escalate and not out.report.passed
    assert getattr(out.report.audit, failed) is False
    assert out.report.reason == f"audit failed: {failed}"
    assert out.report.score == pytest.approx(2 / 3)
    assert not out.report.audit.malformed


async def test_audit_labels_are_case_insensitive() -> None:
    audit = audit_json(" PASS", "Pass", "pass ")
    llm = ScriptedLLM(by_task={"answer": [confident_right()], "gate.audit": [audit]})
    assert (await gate(llm, STRONG, policy="audit")).report.passed


@pytest.mark.parametrize(
    "reply",
    [
        "The answer looks fine to me.",  # prose, no JSON
        '{"relevance": {"status": "pass"}}',  # JSON missing two dimensions
        '{"relevance": "pass", "faithfulness": "pass", "completeness_relevance": "pass"}',
    ],
)
async def test_malformed_audit_fails_and_is_flagged(reply: str) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()], "gate.audit": [reply]})
    out = await gate(llm, STRONG, policy="audit")
    assert out.report.escalate and not out.report.passed
    assert out.report.audit is not None and out.report.audit.malformed is True
    assert out.report.audit.raw == reply
    assert "not valid JSON" in out.report.reason
    assert len(llm.calls_for("gate.audit")) == 1  # no retry: an unreadable audit simply fails


async def test_audit_call_error_fails_and_is_flagged() -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()], "gate.audit": [LLMError("server down")]})
    out = await gate(llm, STRONG, policy="audit")
    assert out.report.escalate
    assert out.report.audit.malformed and "server down" in out.report.audit.error
    assert out.report.reason.startswith("audit call failed")


async def test_audit_report_still_carries_the_signals() -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()], "gate.audit": [AUDIT_PASS]})
    report = (await gate(llm, STRONG, policy="audit")).report
    assert [s.name for s in report.signals] == [
        "entropy", "coverage", "consistency", "sufficiency", "recency", "aggregation"
    ]


# ---------------------------------------------------------------- signals


async def test_signals_policy_makes_no_extra_call() -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()]})
    out = await gate(llm, STRONG, policy="signals")
    assert out.report.passed and tasks(llm) == ["answer"]
    assert out.usage.calls == 0
    assert out.report.audit is None


async def test_signals_any_vs_weighted() -> None:
    # good evidence and a grounded answer, but the model was unsure of it
    async def run(combine: str) -> GateOutcome:
        llm = ScriptedLLM(by_task={"answer": [ScriptedReply("violin", confidence=0.2)]})
        return await gate(llm, STRONG, policy="signals", combine=combine)

    any_, weighted = await run("any"), await run("weighted")
    entropy = next(s for s in any_.report.signals if s.name == "entropy")
    assert entropy.passed is False
    assert all(s.passed for s in any_.report.signals if s.name != "entropy")
    assert any_.report.escalate and any_.report.reason.startswith("entropy:")
    assert weighted.report.passed  # the failing signal carries only 0.2 of the weight
    assert weighted.report.score == pytest.approx(any_.report.score)
    assert weighted.report.reason.startswith("weighted signal score")


async def test_signals_weighted_score_is_the_weighted_geometric_mean() -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()]})
    weights = {"entropy": 1, "coverage": 3, "consistency": 0}
    report = (await gate(llm, STRONG, policy="signals", weights=weights)).report
    s = {r.name: r.score for r in report.signals}
    assert report.score == pytest.approx(math.exp((math.log(s["entropy"]) + 3 * math.log(s["coverage"])) / 4))


async def test_signals_weighted_below_threshold_escalates_and_names_the_weakest() -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()]})
    out = await gate(llm, STRONG, policy="signals", combine="weighted", score_threshold=0.99)
    assert out.report.escalate
    assert "< 0.99" in out.report.reason and "coverage" in out.report.reason  # the weakest signal
    assert all(s.passed for s in out.report.signals)


async def test_signals_all_pass_with_any() -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()]})
    out = await gate(llm, STRONG, policy="signals", combine="any")
    assert out.report.passed and out.report.reason == "all available signals passed"


@pytest.mark.parametrize("policy", ["signals", "cascade"])
async def test_refusal_escalates_without_an_audit(policy: str) -> None:
    llm = ScriptedLLM(by_task={"answer": [ScriptedReply("NONE", confidence=0.99)]})
    out = await gate(llm, STRONG, policy=policy)
    assert out.report.escalate and "refusal" in out.report.reason
    assert llm.calls_for("gate.audit") == []


async def test_signals_with_samples_use_agreement() -> None:
    llm = ScriptedLLM(
        by_task={"answer": [confident_right()], "gate.sample": ["cello", "piano", "drums"]}
    )
    out = await gate(llm, STRONG, policy="signals", samples=3, combine="any", consistency_threshold=0.6)
    samples = llm.calls_for("gate.sample")
    assert len(samples) == 3 and {c.temperature for c in samples} == {0.7}
    consistency = next(s for s in out.report.signals if s.name == "consistency")
    assert consistency.details["agreement"] == 0.0 and consistency.passed is False
    assert out.report.escalate
    assert out.usage.calls == 3


# ---------------------------------------------------------------- cascade


async def test_cascade_clear_pass_skips_the_audit() -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()], "gate.audit": [AUDIT_PASS]})
    out = await gate(llm, STRONG, policy="cascade")
    assert out.report.score >= 0.7 and out.report.passed
    assert llm.calls_for("gate.audit") == []
    assert out.report.audit is None and out.usage.calls == 0
    assert "trusted without audit" in out.report.reason


async def test_cascade_clear_escalation_skips_the_audit() -> None:
    llm = ScriptedLLM(by_task={"answer": [guessing_wrong()], "gate.audit": [AUDIT_PASS]})
    out = await gate(llm, WEAK, policy="cascade")
    assert out.report.score < 0.5 and out.report.escalate
    assert llm.calls_for("gate.audit") == []
    assert out.report.reason.startswith("coverage: evidence covers 0%")  # the clearest case, named


@pytest.mark.parametrize(
    ("audit", "escalate"), [(AUDIT_PASS, False), (audit_json(faithfulness="fail"), True)]
)
async def test_cascade_uncertain_band_asks_the_audit_once(audit: str, escalate: bool) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_ungrounded()], "gate.audit": [audit, AUDIT_PASS]})
    out = await gate(llm, STRONG, policy="cascade", band_low=0.0, band_high=0.99)
    assert 0.0 <= out.report.score < 0.99
    assert len(llm.calls_for("gate.audit")) == 1
    assert out.report.escalate is escalate
    assert out.report.audit is not None
    assert "uncertain band" in out.report.reason
    assert out.usage.calls == 1


async def test_cascade_band_edges_are_configurable() -> None:
    # the same uncertain answer is a clear pass with a low band, a clear escalation with a high one
    low = ScriptedLLM(by_task={"answer": [confident_ungrounded()]})
    assert (await gate(low, STRONG, policy="cascade", band_low=0.01, band_high=0.02)).report.passed
    high = ScriptedLLM(by_task={"answer": [confident_ungrounded()]})
    assert (await gate(high, STRONG, policy="cascade", band_low=0.9, band_high=0.95)).report.escalate
    assert low.calls_for("gate.audit") == [] and high.calls_for("gate.audit") == []


# ---------------------------------------------------------------- majority / consensus


def voting_llm(judge: str, samples: list[str] | None = None) -> ScriptedLLM:
    return ScriptedLLM(by_task={
        "answer": [confident_right()],
        "gate.sample": samples or ["violin", "the violin", "cello"],
        "gate.judge": [judge],
    })


@pytest.mark.parametrize("policy", ["majority", "consensus"])
async def test_voting_samples_three_answers_at_temperature_0_7(policy: str) -> None:
    llm = voting_llm('{"agree": 3, "answer": "violin"}')
    await gate(llm, STRONG, policy=policy)
    samples = llm.calls_for("gate.sample")
    assert len(samples) == 3
    assert [c.temperature for c in samples] == [0.7, 0.7, 0.7]
    assert len({c.seed for c in samples}) == 3  # three different draws
    assert all(STRONG[0].text in c.messages[-1]["content"] for c in samples)  # same context
    judge = llm.calls_for("gate.judge")
    assert len(judge) == 1
    prompt = judge[0].messages[-1]["content"]
    assert "1. violin" in prompt and "2. the violin" in prompt and "3. cello" in prompt


async def test_majority_passes_with_two_agreeing_and_picks_verbatim() -> None:
    out = await gate(voting_llm('{"agree": 2, "answer": "the violin"}'), STRONG, policy="majority")
    assert out.report.passed and out.report.policy == "majority"
    assert out.answer == "the violin"
    assert out.report.reason == "2 of 3 sampled answers agree (need 2)"
    assert out.usage.calls == 4


async def test_consensus_needs_all_three() -> None:
    two = await gate(voting_llm('{"agree": 2, "answer": "violin"}'), STRONG, policy="consensus")
    assert two.report.escalate and two.answer is None
    assert "need 3" in two.report.reason
    three = await gate(voting_llm('{"agree": 3, "answer": "violin"}'), STRONG, policy="consensus")
    assert three.report.passed and three.answer == "violin"


async def test_majority_fails_with_no_agreement() -> None:
    out = await gate(
        voting_llm('{"agree": 1, "answer": ""}', ["violin", "cello", "drums"]), STRONG, policy="majority"
    )
    assert out.report.escalate and out.answer is None


async def test_judge_pick_not_among_candidates_falls_back_to_a_candidate() -> None:
    out = await gate(voting_llm('{"agree": 2, "answer": "a violin, probably"}'), STRONG, policy="majority")
    assert out.report.passed and out.answer == "violin"


async def test_malformed_judge_escalates() -> None:
    llm = ScriptedLLM(by_task={
        "answer": [confident_right()],
        "gate.sample": ["violin"] * 3,
        "gate.judge": ["they agree", "still not json"],
    })
    out = await gate(llm, STRONG, policy="majority")
    assert out.report.escalate
    assert len(llm.calls_for("gate.judge")) == 2  # one retry, then counted as no agreement


# ---------------------------------------------------------------- unavailable logprobs


@pytest.mark.parametrize("policy", ["signals", "cascade"])
async def test_unavailable_logprobs_ignored_decides_on_other_signals(policy: str) -> None:
    llm = ScriptedLLM(by_task={"answer": ["violin"]}, logprobs=False)
    out = await gate(llm, STRONG, policy=policy, on_unavailable="ignore")
    entropy = out.report.signals[0]
    assert entropy.name == "entropy" and entropy.available is False and entropy.passed is None
    assert out.report.passed
    assert "entropy unavailable" in out.report.reason
    assert "decided on the other signals" in out.report.reason
    # the score is the weighted geometric mean of the two available signals only
    s = {r.name: r.score for r in out.report.signals}
    expected = math.exp((0.6 * math.log(s["coverage"]) + 0.25 * math.log(s["consistency"])) / 0.85)
    assert out.report.score == pytest.approx(expected)


async def test_unavailable_logprobs_ignored_still_escalates_a_bad_answer() -> None:
    llm = ScriptedLLM(by_task={"answer": ["cello"]}, logprobs=False)
    out = await gate(llm, WEAK, policy="signals", on_unavailable="ignore")
    assert out.report.escalate and "entropy unavailable" in out.report.reason


@pytest.mark.parametrize("policy", ["signals", "cascade"])
async def test_unavailable_logprobs_escalate(policy: str) -> None:
    llm = ScriptedLLM(by_task={"answer": ["violin"], "gate.audit": [AUDIT_PASS]}, logprobs=False)
    out = await gate(llm, STRONG, policy=policy, on_unavailable="escalate")
    assert out.report.escalate and not out.report.passed
    assert out.report.reason.startswith("escalated because entropy unavailable")
    assert llm.calls_for("gate.audit") == []


async def test_unavailable_logprobs_do_not_matter_to_the_audit() -> None:
    llm = ScriptedLLM(by_task={"answer": ["violin"], "gate.audit": [AUDIT_PASS]}, logprobs=False)
    out = await gate(llm, STRONG, policy="audit", on_unavailable="escalate")
    assert out.report.passed and out.report.signals[0].available is False


# ---------------------------------------------------------------- per-memory config vs per call


def test_per_call_policy_overrides_the_memory_config(tmp_path) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()] * 2, "gate.audit": [AUDIT_PASS]})
    memory = DualMemory(path=tmp_path, llm=llm, extract=False, gate={"policy": "audit"})
    memory.add({"role": "user", "speaker": "Greta", "content": STRONG[0].text.replace("Greta ", "I ")},
               user_id="mel", timestamp="2023-05-07T10:00:00Z")
    configured = memory.answer(QUESTION, user_id="mel")
    assert configured.gate.policy == "audit" and len(llm.calls_for("gate.audit")) == 1
    assert configured.path == "fast" and configured.text == "violin"
    overridden = memory.answer(QUESTION, user_id="mel", policy="signals")
    assert overridden.gate.policy == "signals"
    assert len(llm.calls_for("gate.audit")) == 1  # no second audit
    with pytest.raises(InvalidInputError, match="policy"):
        memory.answer(QUESTION, user_id="mel", policy="vote")


def test_memory_config_thresholds_reach_the_gate(tmp_path) -> None:
    llm = ScriptedLLM(by_task={"answer": [confident_right()]})
    memory = DualMemory(path=tmp_path, llm=llm, extract=False,
                        gate={"policy": "signals", "entropy_threshold": 0.123})
    memory.add("I play the violin in the orchestra.", user_id="mel")
    report = memory.answer(QUESTION, user_id="mel").gate
    assert report.policy == "signals"
    assert report.signals[0].threshold == 0.123


# ---------------------------------------------------------------- learned (fitted) and entropy (L-RAG)


def _model(tmp_path, weights: dict[str, float], threshold: float = 0.5) -> str:
    from dualmem.answering.gate.learned import GateModel

    names = sorted(weights)
    model = GateModel(features=names, mean=[0.0] * len(names), scale=[1.0] * len(names),
                      weights=[weights[n] for n in names], bias=0.0, threshold=threshold)
    path = tmp_path / "gate.json"
    model.save(path)
    return str(path)


async def test_learned_policy_escalates_on_the_fitted_probability(tmp_path) -> None:
    # P(wrong) rises as coverage falls: strong evidence passes, weak evidence escalates
    path = _model(tmp_path, {"coverage": -8.0}, threshold=0.02)
    for memories, escalate in ((STRONG, False), (WEAK, True)):
        llm = ScriptedLLM(by_task={"answer": [confident_right()]})
        out = await gate(llm, memories, policy="learned", model=path)
        assert out.report.escalate is escalate
        assert out.report.reason.startswith("P(wrong) ") and "coverage" in out.report.reason
        assert 0.0 <= out.report.score <= 1.0
        assert tasks(llm) == ["answer"]  # no extra call
        # every signal is in the trace, the evidence signals too
        assert [s.name for s in out.report.signals] == [
            "entropy", "coverage", "consistency", "sufficiency", "recency", "aggregation"
        ]
    # a threshold from the config overrides the model's
    llm = ScriptedLLM(by_task={"answer": [confident_right()]})
    assert (await gate(llm, WEAK, policy="learned", model=path, learned_threshold=0.999)).report.passed


async def test_learned_policy_still_escalates_a_refusal_and_refuses_a_foreign_model(tmp_path) -> None:
    path = _model(tmp_path, {"coverage": -1.0}, threshold=0.99)
    llm = ScriptedLLM(by_task={"answer": [ScriptedReply("NONE", confidence=0.99)]})
    out = await gate(llm, STRONG, policy="learned", model=path)
    assert out.report.escalate and "refusal" in out.report.reason
    from dualmem.errors import ConfigError

    foreign = _model(tmp_path, {"not-a-feature": 1.0})
    with pytest.raises(ConfigError, match="other features"):
        llm = ScriptedLLM(by_task={"answer": [confident_right()]})
        await gate(llm, STRONG, policy="learned", model=foreign)


async def test_entropy_policy_is_l_rag_gate() -> None:
    llm = ScriptedLLM(by_task={"answer": [guessing_wrong()]})
    out = await gate(llm, STRONG, policy="entropy")
    assert out.report.escalate and out.report.reason.startswith("entropy: ")
    llm = ScriptedLLM(by_task={"answer": [confident_ungrounded()]})
    assert (await gate(llm, STRONG, policy="entropy")).report.passed  # confident, so trusted
    # without logprobs it cannot judge: it says so, and follows on_unavailable
    for setting, escalate in (("ignore", False), ("escalate", True)):
        llm = ScriptedLLM(by_task={"answer": [ScriptedReply("violin", logprobs=False)]})
        out = await gate(llm, STRONG, policy="entropy", on_unavailable=setting)
        assert out.report.escalate is escalate and "unavailable" in out.report.reason


async def test_a_failing_veto_signal_escalates_under_the_signal_policies(tmp_path) -> None:
    # "now" question answered from older evidence while newer evidence on the subject exists
    question = "Which city does Maya live in now?"
    memories = [
        Memory(id="a", text="Maya: I still live in Lisbon.", created_at=NOW, updated_at=NOW,
               event_date="2025-03-03", score=0.6, source_turn_ids=["a"]),
        Memory(id="b", text="Maya: I moved to Porto last week!", created_at=NOW, updated_at=NOW,
               event_date="2025-06-02", score=0.5, source_turn_ids=["b"]),
    ]
    for policy in ("signals", "cascade", "learned"):
        out = await run_gate(ScriptedLLM(), GateConfig(), question, "Lisbon", None, memories, policy)
        assert out.report.escalate and out.report.reason.startswith("recency: "), policy
        off = GateConfig(vetoes=[])
        kept = await run_gate(ScriptedLLM(), off, question, "Lisbon", None, memories, policy)
        assert not kept.report.reason.startswith("recency: ")
    fresh = await run_gate(ScriptedLLM(), GateConfig(), question, "Porto", None, memories, "signals")
    assert not fresh.report.reason.startswith("recency")


async def test_a_kind_of_question_named_in_escalate_questions_escalates_whatever_the_signals() -> None:
    asks_when = "When did Maya move to Porto?"
    memories = [Memory(id="b", text="Maya: I moved to Porto on 2 June 2025!", created_at=NOW, updated_at=NOW,
                       event_date="2025-06-02", score=0.9, source_turn_ids=["b"])]
    cfg = GateConfig(escalate_questions=["temporal"])
    for policy in ("signals", "cascade", "learned"):
        llm = ScriptedLLM(by_task={"answer": [confident_right()]})
        trusted = await run_gate(llm, GateConfig(), asks_when, "2 June 2025", None, memories, policy)
        assert not trusted.report.escalate, policy  # grounded and covered: the signals pass
        out = await run_gate(llm, cfg, asks_when, "2 June 2025", None, memories, policy)
        assert out.report.escalate and out.report.reason.startswith("a temporal question: "), policy
        other = await run_gate(llm, cfg, "Where did Maya move?", "Porto", None, memories, policy)
        assert not other.report.reason.startswith("a temporal question"), policy


async def test_a_fast_answer_longer_than_escalate_long_answers_escalates_whatever_the_signals() -> None:
    question = "Where did Maya move?"
    memories = [Memory(id="b", text="Maya: I moved to Porto on 2 June 2025!", created_at=NOW, updated_at=NOW,
                       event_date="2025-06-02", score=0.9, source_turn_ids=["b"])]
    sentence = "Maya moved to Porto on 2 June 2025"  # 8 words, all grounded
    cfg = GateConfig(escalate_long_answers=6)
    for policy in ("signals", "cascade", "learned"):
        llm = ScriptedLLM(by_task={"answer": [confident_right()]})
        trusted = await run_gate(llm, GateConfig(), question, sentence, None, memories, policy)
        assert not trusted.report.escalate, policy  # off by default: the signals pass it
        out = await run_gate(llm, cfg, question, sentence, None, memories, policy)
        assert out.report.escalate, policy
        assert out.report.reason.startswith("the fast answer has 8 words, more than 6"), policy
        short = await run_gate(llm, cfg, question, "Porto on 2 June 2025", None, memories, policy)
        assert not short.report.escalate, policy
    with pytest.raises(ValueError):
        GateConfig(escalate_long_answers=0)
