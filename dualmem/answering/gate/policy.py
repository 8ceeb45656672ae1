"""Gate policies: decide whether the fast answer stands or the memory deliberates.

- `audit`: D-Mem's Quality Gating: one LLM call, escalate if any of three labels fails.
- `signals`: entropy + coverage + consistency, no extra call; `combine="any"` escalates when
  any available signal fails, `"weighted"` when the weighted score is below `score_threshold`.
- `cascade`: the weighted signal score settles the clear cases (above `band_high` pass, below
  `band_low` escalate); only the uncertain band between pays for the audit call.
- `majority` / `consensus`: D-Mem's comparison policies: 3 answers at temperature 0.7 and a
  judge; pass when >= 2 (majority) or all 3 (consensus) agree.
- `learned`: a logistic regression over every signal (the three above plus the evidence
  signals: sufficiency, recency, aggregation) and the question's shape gives P(wrong);
  escalate at or above the model's threshold. Fitted by `dualmem calibrate --fit`.
- `entropy`: L-RAG's gate, answer entropy alone.

Every policy reads and reports all six signals; only `learned` weighs the evidence signals,
but a failing veto signal (`GateConfig.vetoes`: recency and aggregation by default) escalates
under `signals`, `cascade` and `learned` alike, and so does a kind of question named in
`GateConfig.escalate_questions` (one asking when, for a list, about now).

Each policy is one handler in `POLICIES`; `run_gate` looks the policy up and runs it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from functools import partial

from ...config import GateConfig
from ...llm.base import BaseLLM
from ...types import AuditLabels, GateReport, Memory, Policy, SignalResult, TokenLogprob, Usage
from .checks import audit, audit_reason, judge, sample_answers
from .evidence import aggregation, question_shape, recency, sufficiency
from .learned import features, load_model
from .signals import Passage, combined, consistency, coverage, entropy, looks_like_refusal

__all__ = ["POLICIES", "GateCase", "GateOutcome", "run_gate"]


@dataclass(frozen=True)
class GateOutcome:
    """The gate's phase result: its report, the tokens it spent and how long it took."""

    report: GateReport
    usage: Usage
    answer: str | None = None  # majority/consensus may pick another candidate verbatim
    seconds: float = 0.0


@dataclass(frozen=True)
class GateCase:
    """What a policy judges: the fast answer, the memories it was read from, and the settings."""

    llm: BaseLLM
    cfg: GateConfig
    policy: Policy
    question: str
    answer: str
    logprobs: list[TokenLogprob] | None
    memories: list[Memory]


@dataclass(frozen=True)
class _Signals:
    """The three hand-set signals of one fast answer, their weighted score, the cost of
    sampling, and the evidence signals."""

    results: list[SignalResult]
    score: float
    usage: Usage = field(default_factory=Usage)
    evidence: list[SignalResult] = field(default_factory=list)  # reported; the learned policy weighs them

    @property
    def failed(self) -> list[SignalResult]:
        return [r for r in self.results if r.available and r.passed is False]

    @property
    def unavailable(self) -> str:
        """Why signals were unavailable ("" when all were)."""
        return "; ".join(f"{r.name} {r.reason}" for r in self.results if not r.available)

    def why(self) -> str:
        """The failing signals' reasons, or the weakest signal's when none failed outright."""
        weakest = self.failed or sorted(
            (r for r in self.results if r.score is not None), key=lambda r: r.score or 0
        )[:1]
        return "; ".join(f"{r.name}: {r.reason}" for r in weakest)

    def but_for_unavailable(self, reason: str) -> str:
        note = self.unavailable
        return f"{reason} ({note}; decided on the other signals)" if note else reason


async def _read_signals(case: GateCase, *, sampled: bool) -> _Signals:
    samples, usage = None, Usage()
    if sampled and case.cfg.samples:
        samples, usage = await sample_answers(
            case.llm, case.question, case.memories, case.cfg.samples, case.cfg.sample_temperature
        )
    cfg, passages = case.cfg, [Passage.of(m) for m in case.memories]
    e = entropy(case.logprobs, cfg.entropy_threshold)
    c = coverage(case.question, passages, cfg.coverage_threshold)
    k = consistency(case.answer, passages, c.score or 0.0, cfg.consistency_threshold, samples=samples)
    results = [e, c, k]
    score = combined({r.name: r.score for r in results if r.available and r.score is not None}, cfg.weights)
    refusal = looks_like_refusal(case.answer)
    evidence = [
        sufficiency(case.question, passages, cfg.sufficiency_threshold),
        recency(case.question, case.answer, passages, refusal, cfg.recency_threshold),
        aggregation(case.question, case.answer, passages, refusal, cfg.aggregation_threshold),
    ]
    return _Signals(results, score, usage, evidence)


def _decide(
    case: GateCase, signals: _Signals, *, passed: bool, reason: str, score: float | None = None,
    labels: AuditLabels | None = None, usage: Usage | None = None,
) -> GateOutcome:
    """The outcome of a signal-reading policy (`score`: the signals' score unless given)."""
    report = GateReport(
        policy=case.policy,
        passed=passed,
        escalate=not passed,
        score=signals.score if score is None else score,
        signals=signals.results + signals.evidence,
        audit=labels,
        reason=reason,
    )
    return GateOutcome(report, signals.usage + (usage or Usage()))


def _escalate_early(case: GateCase, signals: _Signals) -> GateOutcome | None:
    """The cases the signal policies escalate before weighing any score."""
    if signals.unavailable and case.cfg.on_unavailable == "escalate":
        return _decide(case, signals, passed=False, reason=f"escalated because {signals.unavailable}")
    if looks_like_refusal(case.answer):
        # D-Mem's auditor fails every "NONE"/"I don't know" answer: no need to pay for the call
        reason = "the fast answer is a refusal; deliberation may find the evidence"
        return _decide(case, signals, passed=False, reason=reason)
    shape = question_shape(case.question) if case.cfg.escalate_questions else {}
    if kinds := [k for k in case.cfg.escalate_questions if shape[k]]:
        reason = f"a {' and '.join(kinds)} question: System 2 answers these better (escalate_questions)"
        return _decide(case, signals, passed=False, reason=reason)
    most = case.cfg.escalate_long_answers
    if most is not None and (words := len(case.answer.split())) > most:
        reason = (
            f"the fast answer has {words} words, more than {most}: a sentence, "
            "not the short phrase asked for (escalate_long_answers)"
        )
        return _decide(case, signals, passed=False, reason=reason)
    vetoed = [r for r in signals.evidence if r.name in case.cfg.vetoes and r.passed is False]
    if vetoed:
        return _decide(case, signals, passed=False, reason="; ".join(f"{r.name}: {r.reason}" for r in vetoed))
    return None


async def _audit_policy(case: GateCase) -> GateOutcome:
    signals = await _read_signals(case, sampled=False)
    labels, usage = await audit(case.llm, case.question, case.answer, case.memories)
    return _decide(
        case, signals, passed=labels.passed, reason=audit_reason(labels), score=labels.share, labels=labels,
        usage=usage,
    )


async def _signals_policy(case: GateCase) -> GateOutcome:
    signals = await _read_signals(case, sampled=True)
    if early := _escalate_early(case, signals):
        return early
    if case.cfg.combine == "any":
        ok = not signals.failed
        reason = "all available signals passed" if ok else signals.why()
    else:
        score, threshold = signals.score, case.cfg.score_threshold
        ok = score >= threshold
        reason = (
            f"weighted signal score {score:.2f} >= {threshold}"
            if ok
            else f"weighted signal score {score:.2f} < {threshold}: " + signals.why()
        )
    return _decide(case, signals, passed=ok, reason=signals.but_for_unavailable(reason))


async def _cascade_policy(case: GateCase) -> GateOutcome:
    signals = await _read_signals(case, sampled=True)
    if early := _escalate_early(case, signals):
        return early
    cfg, score = case.cfg, signals.score
    cover = next(r for r in signals.results if r.name == "coverage")
    if cover.passed is False:
        # the clearest case: the evidence does not contain what the question asks for
        return _decide(case, signals, passed=False, reason=f"coverage: {cover.reason}")
    if cfg.band_low <= score < cfg.band_high:
        labels, usage = await audit(case.llm, case.question, case.answer, case.memories)
        band = f"signal score {score:.2f} in the uncertain band [{cfg.band_low}, {cfg.band_high}): "
        reason = band + audit_reason(labels)
        return _decide(case, signals, passed=labels.passed, reason=reason, labels=labels, usage=usage)
    ok = score >= cfg.band_high
    reason = (
        f"signal score {score:.2f} >= {cfg.band_high}: trusted without audit"
        if ok
        else f"signal score {score:.2f} < {cfg.band_low}: " + signals.why()
    )
    return _decide(case, signals, passed=ok, reason=signals.but_for_unavailable(reason))


async def _vote_policy(case: GateCase, *, need: int) -> GateOutcome:
    temperature = case.cfg.sample_temperature
    texts, usage = await sample_answers(case.llm, case.question, case.memories, 3, temperature)
    agree, pick, judged = await judge(case.llm, case.question, texts)
    passed = agree >= need
    chosen = pick if pick in texts else (texts[0] if passed else None)
    report = GateReport(
        policy=case.policy,
        passed=passed,
        escalate=not passed,
        score=agree / 3,
        reason=f"{agree} of 3 sampled answers agree (need {need})",
    )
    return GateOutcome(report, usage + judged, chosen if passed else None)


async def _learned_policy(case: GateCase) -> GateOutcome:
    signals = await _read_signals(case, sampled=False)
    if early := _escalate_early(case, signals):
        return early
    model = load_model(case.cfg.model)
    read = features(case.question, signals.results + signals.evidence)
    wrong = model.probability(read)
    threshold = model.threshold if case.cfg.learned_threshold is None else case.cfg.learned_threshold
    ok = wrong < threshold
    parts = sorted(model.contributions(read).items(), key=lambda kv: -kv[1])
    why = ", ".join(f"{name} {'+' if v >= 0 else ''}{v:.2f}" for name, v in parts[:3])
    reason = f"P(wrong) {wrong:.2f} {'<' if ok else '>='} {threshold:.2f} (largest log-odds shares: {why})"
    return _decide(case, signals, passed=ok, reason=reason, score=1.0 - wrong)


async def _entropy_policy(case: GateCase) -> GateOutcome:
    signals = await _read_signals(case, sampled=False)
    entropy_result = signals.results[0]
    if not entropy_result.available:
        escalate = case.cfg.on_unavailable == "escalate"
        reason = f"entropy {entropy_result.reason}: " + ("escalated" if escalate else "fast answer kept")
        return _decide(case, signals, passed=not escalate, reason=reason, score=None)
    return _decide(
        case, signals, passed=bool(entropy_result.passed), reason=f"entropy: {entropy_result.reason}",
        score=entropy_result.score,
    )


POLICIES: dict[Policy, Callable[[GateCase], Awaitable[GateOutcome]]] = {
    "learned": _learned_policy,
    "entropy": _entropy_policy,
    "audit": _audit_policy,
    "signals": _signals_policy,
    "cascade": _cascade_policy,
    "majority": partial(_vote_policy, need=2),
    "consensus": partial(_vote_policy, need=3),
}


async def run_gate(
    llm: BaseLLM,
    cfg: GateConfig,
    question: str,
    answer: str,
    logprobs: list[TokenLogprob] | None,
    memories: list[Memory],
    policy: Policy | None = None,
) -> GateOutcome:
    """Judge a fast answer with `policy` (default: the config's)."""
    case = GateCase(llm, cfg, policy or cfg.policy, question, answer, logprobs, memories)
    start = time.perf_counter()
    outcome = await POLICIES[case.policy](case)
    return replace(outcome, seconds=time.perf_counter() - start)
