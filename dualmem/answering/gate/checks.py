"""The gate's LLM calls: D-Mem's audit, sampled answers, and the judge that compares them.

Each returns what it found and the tokens it spent; a reply that cannot be read counts
against the fast answer (a fail, never a pass), and says so.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field

from ...errors import LLMError, LLMReplyError
from ...llm.base import BaseLLM, ChatRequest
from ...prompts import audit_messages, judge_messages
from ...tasks import Task
from ...tokens import fit_lines, line_budget
from ...types import AuditLabels, Memory, Usage
from ..reader import answer_from, context_lines

__all__ = ["audit", "audit_reason", "judge", "sample_answers"]

AUDIT_MAX_TOKENS = 96


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


def _passes(status: _Status) -> bool:
    return status.status.strip().lower() == "pass"


async def audit(
    llm: BaseLLM, question: str, answer: str, memories: list[Memory]
) -> tuple[AuditLabels, Usage]:
    """D-Mem's Quality Gating call: relevance, faithfulness and completeness, pass or fail."""
    budget = line_budget(llm.context_tokens, AUDIT_MAX_TOKENS, audit_messages(question, answer, []))
    lines = fit_lines(context_lines(memories), budget)
    request = ChatRequest(
        task=Task.GATE_AUDIT, messages=audit_messages(question, answer, lines), max_tokens=AUDIT_MAX_TOKENS
    )
    failed = AuditLabels(relevance=False, faithfulness=False, completeness=False, malformed=True)
    try:
        reply, usage = await llm.ajson(request, _AuditReply, retries=0)
    except LLMReplyError as e:
        # an unreadable audit counts as a fail, flagged, never as a pass
        return failed.model_copy(update={"raw": e.raw}), e.usage or Usage(calls=1)
    except LLMError as e:
        return failed.model_copy(update={"error": str(e)}), Usage()
    labels = AuditLabels(
        relevance=_passes(reply.relevance),
        faithfulness=_passes(reply.faithfulness),
        completeness=_passes(reply.completeness_relevance),
    )
    return labels, usage


def audit_reason(labels: AuditLabels) -> str:
    if labels.error is not None:
        return f"audit call failed: {labels.error}: counted as fail"
    if labels.malformed:
        return "audit reply was not valid JSON: counted as fail"
    failed = [n for n in ("relevance", "faithfulness", "completeness") if not getattr(labels, n)]
    return f"audit failed: {', '.join(failed)}" if failed else "audit passed all three dimensions"


async def sample_answers(
    llm: BaseLLM, question: str, memories: list[Memory], n: int, temperature: float
) -> tuple[list[str], Usage]:
    """`n` more answers from the same memories at `temperature` (seeds 1..n: reproducible)."""
    lines = context_lines(memories)
    drawn = await asyncio.gather(
        *(
            answer_from(llm, question, lines, task=Task.GATE_SAMPLE, temperature=temperature, seed=i + 1)
            for i in range(n)
        )
    )
    usage = Usage()
    for d in drawn:
        usage = usage + d.completion.usage
    return [d.text for d in drawn], usage


async def judge(llm: BaseLLM, question: str, answers: list[str]) -> tuple[int, str, Usage]:
    """How many of the answers agree (1-3) and the one the judge copied; an unreadable reply
    counts as no agreement."""
    request = ChatRequest(task=Task.GATE_JUDGE, messages=judge_messages(question, answers), max_tokens=64)
    try:
        reply, usage = await llm.ajson(request, _JudgeReply, retries=1)
    except LLMReplyError as e:
        return 1, "", e.usage or Usage()
    return max(1, min(3, reply.agree)), reply.answer.strip(), usage
