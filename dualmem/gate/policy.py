"""Gate policies: decide whether the fast answer stands or the memory deliberates.

- `audit`: D-Mem's Quality Gating: one LLM call, escalate if any of three labels fails.
- `signals`: entropy + coverage + consistency, no extra call; `combine="any"` escalates when
  any available signal fails, `"weighted"` when the weighted score is below `score_threshold`.
- `cascade`: the weighted signal score settles the clear cases (above `band_high` pass, below
  `band_low` escalate); only the uncertain band between pays for the audit call.
- `majority` / `consensus`: D-Mem's comparison policies: 3 answers at temperature 0.7 and a
  judge; pass when >= 2 (majority) or all 3 (consensus) agree.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import LLMError, LLMReplyError
from ..fast import answer_from, context_lines
from ..llm.base import BaseLLM, ChatRequest
from ..prompts import audit_messages, judge_messages
from ..tokens import fit_lines, line_budget
from ..types import AuditLabels, GateReport, Memory, SignalResult, TokenLogprob, Usage
from . import signals as sig

__all__ = ["GateConfig", "GateOutcome", "Policy", "run_gate"]

Policy = Literal["audit", "signals", "cascade", "majority", "consensus"]


class GateConfig(BaseModel):
    """Thresholds and weights; `dualmem calibrate` fits them on labelled questions."""

    model_config = ConfigDict(extra="forbid")

    policy: Policy = "cascade"
    combine: Literal["any", "weighted"] = "weighted"
    entropy_threshold: float = 0.5
    coverage_threshold: float = 0.5
    consistency_threshold: float = 0.5
    weights: dict[str, float] = Field(
        default_factory=lambda: {"entropy": 0.15, "coverage": 0.6, "consistency": 0.25}
    )
    score_threshold: float = 0.55
    band_low: float = 0.5
    band_high: float = 0.7
    samples: int = 0
    sample_temperature: float = 0.7
    on_unavailable: Literal["ignore", "escalate"] = "ignore"
    tiered: bool = True


class _Status(BaseModel):
    # the enum bounds constrained decoding only; any spelling still validates
    status: str = Field(json_schema_extra={"enum": ["pass", "fail"]})


class _AuditReply(BaseModel):
    relevance: _Status
    faithfulness: _Status
    completeness_relevance: _Status


class _JudgeReply(BaseModel):
    agree: int
    answer: str = ""


@dataclass
class GateOutcome:
    report: GateReport
    usage: Usage
    answer: str | None = None  # majority/consensus may pick another candidate verbatim


def _signals(
    cfg: GateConfig, question, answer, logprobs, memories, samples
) -> tuple[list[SignalResult], float]:
    e = sig.entropy(logprobs, cfg.entropy_threshold)
    c = sig.coverage(question, memories, cfg.coverage_threshold)
    k = sig.consistency(answer, memories, c.score or 0.0, cfg.consistency_threshold, samples=samples)
    results = [e, c, k]
    available = [r for r in results if r.available and r.score is not None]
    score = sig.combined({r.name: r.score for r in available}, cfg.weights)
    return results, score


async def _audit(
    llm: BaseLLM, question: str, answer: str, memories: list[Memory]
) -> tuple[AuditLabels, Usage]:
    budget = line_budget(llm.context_tokens, 96, audit_messages(question, answer, []))
    lines = fit_lines(context_lines(memories), budget)
    request = ChatRequest(task="gate.audit", messages=audit_messages(question, answer, lines), max_tokens=96)
    try:
        reply, usage = await llm.ajson(request, _AuditReply, retries=0)
    except LLMReplyError as e:
        # an unreadable audit counts as a fail, flagged, never as a pass
        return AuditLabels(
            relevance=False, faithfulness=False, completeness=False, malformed=True, raw=e.raw
        ), e.usage or Usage(calls=1)
    return AuditLabels(
        relevance=reply.relevance.status.strip().lower() == "pass",
        faithfulness=reply.faithfulness.status.strip().lower() == "pass",
        completeness=reply.completeness_relevance.status.strip().lower() == "pass",
    ), usage


def _audit_reason(labels: AuditLabels) -> str:
    if labels.malformed:
        if (labels.raw or "").startswith("audit call failed"):
            return f"{labels.raw}: counted as fail"
        return "audit reply was not valid JSON: counted as fail"
    failed = [n for n in ("relevance", "faithfulness", "completeness") if not getattr(labels, n)]
    return f"audit failed: {', '.join(failed)}" if failed else "audit passed all three dimensions"


async def _vote(
    llm: BaseLLM, cfg: GateConfig, question: str, memories: list[Memory], need: int, policy: str
) -> GateOutcome:
    lines = context_lines(memories)
    answers = await asyncio.gather(
        *(
            answer_from(
                llm, question, lines, task="gate.sample", temperature=cfg.sample_temperature, seed=i + 1
            )
            for i in range(3)
        )
    )
    usage = Usage()
    for a in answers:
        usage = usage + a.completion.usage
    texts = [a.text for a in answers]
    try:
        reply, u = await llm.ajson(
            ChatRequest(task="gate.judge", messages=judge_messages(question, texts), max_tokens=64),
            _JudgeReply,
            retries=1,
        )
        usage = usage + u
        agree, pick = max(1, min(3, reply.agree)), reply.answer.strip()
    except LLMReplyError as e:
        usage = usage + (e.usage or Usage())
        agree, pick = 1, ""
    passed = agree >= need
    chosen = pick if pick in texts else (texts[0] if passed else None)
    report = GateReport(
        policy=policy,
        passed=passed,
        escalate=not passed,
        score=agree / 3,
        reason=f"{agree} of 3 sampled answers agree (need {need})",
    )
    return GateOutcome(report, usage, chosen if passed else None)


async def run_gate(
    llm: BaseLLM,
    cfg: GateConfig,
    question: str,
    answer: str,
    logprobs: list[TokenLogprob] | None,
    memories: list[Memory],
    policy: Policy | None = None,
) -> GateOutcome:
    policy = policy or cfg.policy
    if policy in ("majority", "consensus"):
        return await _vote(llm, cfg, question, memories, 2 if policy == "majority" else 3, policy)
    usage = Usage()
    samples = None
    if cfg.samples and policy in ("signals", "cascade"):
        drawn = await asyncio.gather(
            *(
                answer_from(
                    llm,
                    question,
                    context_lines(memories),
                    task="gate.sample",
                    temperature=cfg.sample_temperature,
                    seed=i + 1,
                )
                for i in range(cfg.samples)
            )
        )
        samples = [d.text for d in drawn]
        for d in drawn:
            usage = usage + d.completion.usage
    results, score = _signals(cfg, question, answer, logprobs, memories, samples)
    if policy == "audit":
        labels, u = await _audit_or_fail(llm, question, answer, memories)
        ok = labels.relevance and labels.faithfulness and labels.completeness
        return GateOutcome(
            GateReport(
                policy=policy,
                passed=ok,
                escalate=not ok,
                score=(labels.relevance + labels.faithfulness + labels.completeness) / 3,
                signals=results,
                audit=labels,
                reason=_audit_reason(labels),
            ),
            usage + u,
        )
    unavailable = [r for r in results if not r.available]
    failed = [r for r in results if r.available and r.passed is False]
    note = "; ".join(f"{r.name} {r.reason}" for r in unavailable)
    if unavailable and cfg.on_unavailable == "escalate":
        return _escalate(policy, score, results, f"escalated because {note}", usage)
    if sig.is_refusal(answer):
        # D-Mem's auditor fails every "NONE"/"I don't know" answer: no need to pay for the call
        return _escalate(
            policy, score, results, "the fast answer is a refusal; deliberation may find the evidence", usage
        )
    coverage = next(r for r in results if r.name == "coverage")
    if policy == "cascade" and coverage.passed is False:
        # the clearest case: the evidence does not contain what the question asks for
        return _escalate(policy, score, results, f"coverage: {coverage.reason}", usage)
    if policy == "cascade":
        if cfg.band_low <= score < cfg.band_high:
            labels, u = await _audit_or_fail(llm, question, answer, memories)
            ok = labels.relevance and labels.faithfulness and labels.completeness
            reason = f"signal score {score:.2f} in the uncertain band [{cfg.band_low}, {cfg.band_high}): "
            return GateOutcome(
                GateReport(
                    policy=policy,
                    passed=ok,
                    escalate=not ok,
                    score=score,
                    signals=results,
                    audit=labels,
                    reason=reason + _audit_reason(labels),
                ),
                usage + u,
            )
        ok = score >= cfg.band_high
        reason = (
            f"signal score {score:.2f} >= {cfg.band_high}: trusted without audit"
            if ok
            else f"signal score {score:.2f} < {cfg.band_low}: " + _why(failed, results)
        )
    elif cfg.combine == "any":
        ok = not failed
        reason = "all available signals passed" if ok else _why(failed, results)
    else:
        ok = score >= cfg.score_threshold
        reason = (
            f"weighted signal score {score:.2f} >= {cfg.score_threshold}"
            if ok
            else f"weighted signal score {score:.2f} < {cfg.score_threshold}: " + _why(failed, results)
        )
    if note:
        reason += f" ({note}; decided on the other signals)"
    return GateOutcome(
        GateReport(policy=policy, passed=ok, escalate=not ok, score=score, signals=results, reason=reason),
        usage,
    )


async def _audit_or_fail(llm, question, answer, memories) -> tuple[AuditLabels, Usage]:
    try:
        return await _audit(llm, question, answer, memories)
    except LLMError as e:
        return AuditLabels(
            relevance=False,
            faithfulness=False,
            completeness=False,
            malformed=True,
            raw=f"audit call failed: {e}",
        ), Usage()


def _escalate(
    policy: str, score: float, results: list[SignalResult], reason: str, usage: Usage
) -> GateOutcome:
    report = GateReport(
        policy=policy, passed=False, escalate=True, score=score, signals=results, reason=reason
    )
    return GateOutcome(report, usage)


def _why(failed: list[SignalResult], results: list[SignalResult]) -> str:
    weakest = failed or sorted((r for r in results if r.score is not None), key=lambda r: r.score or 0)[:1]
    return "; ".join(f"{r.name}: {r.reason}" for r in weakest)
