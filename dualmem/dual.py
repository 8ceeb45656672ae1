"""The dual process: fast answer -> quality gate -> (maybe) deliberation, with a full trace."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC

from .config import DeliberationConfig
from .deliberate import Deliberation, Deliberator
from .errors import DualMemError
from .fast import FastResult, answer_from, context_lines
from .gate import GateConfig, Policy, run_gate
from .gate.signals import consistency, coverage, is_refusal
from .history.base import HistoryStore, TurnQuery
from .index.base import MemoryIndex
from .llm.base import BaseLLM
from .types import Answer, Evidence, Fact, Memory, Mode, Scope, Turn, Usage

__all__ = ["DualProcess", "Mode"]


class DualProcess:
    def __init__(
        self, llm: BaseLLM, history: HistoryStore, index: MemoryIndex, gate: GateConfig,
        deliberation: DeliberationConfig | None = None,
    ) -> None:
        self.llm = llm
        self.history = history
        self.index = index
        self.gate = gate
        self.deliberator = Deliberator(llm, **(deliberation or DeliberationConfig()).model_dump())

    async def answer(
        self,
        question: str,
        scope: Scope,
        *,
        k: int,
        mode: Mode = "gated",
        policy: Policy | None = None,
        tiered: bool | None = None,
        deliberate: bool = True,
    ) -> Answer:
        trace = Answer(question=question, text="", mode=mode)
        tiered = self.gate.tiered if tiered is None else tiered
        if mode == "full":
            # D-Mem's always-deliberate baseline: no retrieval, no fast answer
            try:
                return await self._deliberate(
                    trace, question, scope, [], tiered=False, reason="full mode: always deliberate"
                )
            except DualMemError as e:
                trace.reason = f"deliberation failed ({e}); fell back to the fast path"
                trace.degraded = True
                return await self._fast(trace, question, scope, k)
        await self._fast(trace, question, scope, k)
        if mode == "fast":
            trace.reason = "fast mode: no gate"
            return trace
        start = time.perf_counter()
        outcome = await run_gate(
            self.llm, self.gate, question, trace.text, trace.logprobs, trace.memories, policy
        )
        trace.latency["gate"] = time.perf_counter() - start
        if outcome.usage.calls:
            trace.usage["gate"] = outcome.usage
        trace.gate = outcome.report
        if not outcome.report.escalate:
            trace.text = outcome.answer or trace.text
            trace.reason = f"fast answer kept: {outcome.report.reason}"
            return trace
        if not deliberate:
            trace.reason = f"would escalate ({outcome.report.reason}); deliberation off: fast answer kept"
            return trace
        fast_text = trace.text
        try:
            return await self._deliberate(
                trace,
                question,
                scope,
                trace.memories,
                tiered=tiered,
                reason=f"escalated: {outcome.report.reason}",
            )
        except DualMemError as e:
            # never nothing: the fast answer stands, marked as degraded
            trace.text, trace.path, trace.tier, trace.degraded = fast_text, "fast", None, True
            trace.reason = f"escalated: {outcome.report.reason}; deliberation failed ({e}), fast answer kept"
            return trace

    async def _fast(self, trace: Answer, question: str, scope: Scope, k: int) -> Answer:
        start = time.perf_counter()
        memories = await asyncio.to_thread(self.index.search, question, scope, k)
        trace.latency["retrieve"] = time.perf_counter() - start
        fast: FastResult = await answer_from(self.llm, question, context_lines(memories))
        trace.text, trace.path, trace.memories, trace.logprobs = (
            fast.text,
            "fast",
            memories,
            fast.completion.logprobs,
        )
        trace.evidence = Evidence(
            memory_ids=[m.id for m in memories],
            turn_ids=sorted({t for m in memories for t in m.source_turn_ids}),
        )
        trace.usage["answer"] = fast.completion.usage
        trace.latency["answer"] = fast.seconds
        return trace

    async def _deliberate(
        self, trace: Answer, question: str, scope: Scope, memories: list[Memory], *, tiered: bool, reason: str
    ) -> Answer:
        start = time.perf_counter()
        turns: list[Turn] = await asyncio.to_thread(self.history.list, TurnQuery(scope=scope))
        trace.latency["history"] = time.perf_counter() - start
        result: Deliberation | None = None
        notes = []
        if tiered and memories:
            result = await self.deliberator.neighbours(question, turns, memories)
            self._merge(trace, result)
            if self._neighbours_suffice(question, result, memories):
                notes.append("neighbour turns answered it")
            else:
                notes.append(f"neighbour turns gave {result.text!r}, not supported: full scan")
                result = None
        if result is None:
            result = await self.deliberator.run(question, turns)
            self._merge(trace, result)
            notes.append(
                f"scanned {len(turns)} turns in {result.chunks} chunks, kept {len(result.facts)} facts"
            )
        if result.errors:
            notes.append(f"{len(result.errors)} chunk(s) unreadable and skipped")
            trace.degraded = True
        trace.text, trace.path, trace.tier, trace.logprobs = (
            result.text,
            "deliberate",
            result.tier,
            result.logprobs,
        )
        trace.evidence = Evidence(
            memory_ids=trace.evidence.memory_ids, turn_ids=result.turn_ids, facts=list(result.facts)
        )
        trace.reason = f"{reason} -> {'; '.join(notes)}"
        return trace

    def _merge(self, trace: Answer, result: Deliberation) -> None:
        for phase, usage in result.usage.items():
            trace.usage[phase] = trace.usage.get(phase, Usage()) + usage
        trace.latency.update(result.latency)

    def _neighbours_suffice(self, question: str, result: Deliberation, memories: list[Memory]) -> bool:
        if is_refusal(result.text):
            return False
        # a fact carries the similarity of the retrieved memory it was read next to: coverage
        # then weighs it as the search did, not as a perfect match
        similarity = {t: m.score or 0.0 for m in memories for t in m.source_turn_ids}
        floor = min((m.score or 0.0 for m in memories), default=0.0)
        pseudo = [
            _as_memory(f, max((similarity[t] for t in f.turn_ids if t in similarity), default=floor))
            for f in result.facts
        ]
        cov = coverage(question, pseudo, self.gate.coverage_threshold)
        con = consistency(result.text, pseudo, cov.score or 0.0, self.gate.consistency_threshold)
        # the excerpts must contain something the question asks about, not just the answer's words
        return bool(con.passed and cov.passed and cov.details.get("terms", 0.0) > 0)


def _as_memory(fact: Fact, score: float) -> Memory:
    from datetime import datetime

    now = datetime.now(UTC)
    return Memory(
        id=fact.turn_ids[0] if fact.turn_ids else "fact",
        text=fact.text,
        created_at=now,
        updated_at=now,
        event_date=None,
        score=score,
        source_turn_ids=fact.turn_ids,
    )
