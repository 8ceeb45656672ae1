"""The dual process: fast answer -> quality gate -> (maybe) deliberation, with a full trace."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC
from typing import Literal

from .arbiter import arbitrate
from .deliberate import Deliberation, Deliberator
from .errors import DualMemError
from .evidence import EvidenceSelector, TurnSearch
from .fast import FastResult, answer_from, context_lines
from .gate import GateConfig, Policy, run_gate
from .gate.signals import consistency, coverage, is_refusal
from .history.base import HistoryStore, TurnQuery
from .index.base import MemoryIndex
from .llm.base import BaseLLM
from .types import Answer, Candidate, Evidence, Fact, Memory, Scope, Turn, Usage

__all__ = ["DualProcess", "Mode", "Strategy"]

Mode = Literal["fast", "full", "gated"]
#: System 2: `evidence` (search, select lines, read them; built for small readers) or `scan`
#: (D-Mem's chunked fact extraction, after the neighbour tier)
Strategy = Literal["evidence", "scan"]


class DualProcess:
    def __init__(
        self, llm: BaseLLM, history: HistoryStore, index: MemoryIndex, gate: GateConfig,
        strategy: Strategy = "evidence",
    ) -> None:
        self.llm = llm
        self.history = history
        self.index = index
        self.gate = gate
        self.strategy = strategy
        self.deliberator = Deliberator(llm)
        self.evidence = EvidenceSelector(llm)

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
        strategy: Strategy | None = None,
    ) -> Answer:
        strategy = strategy or self.strategy
        trace = Answer(question=question, text="", mode=mode)
        tiered = self.gate.tiered if tiered is None else tiered
        await self._fast(trace, question, scope, k)
        if mode == "fast":
            trace.reason = "fast mode: no gate"
            return trace
        if mode == "full":
            # always deliberate; the fast answer is still computed, so that the arbiter can
            # keep it when System 2 finds less
            reason = "full mode: always deliberate"
            tiered = False
        else:
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
            reason = f"escalated: {outcome.report.reason}"
        fast_text, fast_turns = trace.text, list(trace.evidence.turn_ids)
        try:
            return await self._deliberate(
                trace, question, scope, strategy=strategy, tiered=tiered, reason=reason
            )
        except DualMemError as e:
            # never nothing: the fast answer stands, marked as degraded
            trace.text, trace.path, trace.tier, trace.degraded = fast_text, "fast", None, True
            trace.strategy = strategy
            trace.evidence = Evidence(memory_ids=trace.evidence.memory_ids, turn_ids=fast_turns)
            trace.candidates, trace.arbitration = [], ""
            trace.reason = f"{reason}; deliberation failed ({e}), fast answer kept"
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
        self, trace: Answer, question: str, scope: Scope, *, strategy: Strategy, tiered: bool, reason: str
    ) -> Answer:
        start = time.perf_counter()
        turns: list[Turn] = await asyncio.to_thread(self.history.list, TurnQuery(scope=scope))
        trace.latency["history"] = time.perf_counter() - start
        if strategy == "evidence":
            results = [await self.evidence.run(question, turns, self._turn_search(scope))]
        else:
            results = await self._scan(question, turns, trace.memories, tiered=tiered)
        notes: list[str] = []
        for result in results:
            self._merge(trace, result)
            notes += result.notes
            if result.errors:
                notes.append(f"{len(result.errors)} chunk(s) unreadable and skipped")
                trace.degraded = True
        # every answer is weighed against the raw turns System 2 judged relevant
        by_id = {t.id: t for t in turns}
        support = dict.fromkeys(t for r in results for t in (r.support_turn_ids or r.turn_ids))
        evidence = [by_id[t] for t in support if t in by_id]
        candidates = [Candidate(source="fast", text=trace.text, turn_ids=trace.evidence.turn_ids)]
        candidates += [Candidate(source=r.tier, text=r.text, turn_ids=r.turn_ids) for r in results]
        winner, why = arbitrate(question, candidates, evidence)
        chosen = None if winner.source == "fast" else results[candidates.index(winner) - 1]
        trace.path, trace.tier, trace.strategy = "deliberate", winner.source, strategy
        trace.candidates, trace.arbitration = candidates, why
        if chosen is not None:
            trace.text, trace.logprobs = chosen.text, chosen.logprobs
            trace.evidence = Evidence(
                memory_ids=trace.evidence.memory_ids, turn_ids=chosen.turn_ids, facts=list(chosen.facts)
            )
        trace.reason = f"{reason} -> {'; '.join(notes)}; {why}: {winner.source} answer kept"
        return trace

    def _turn_search(self, scope: Scope) -> TurnSearch:
        async def search(query: str) -> list[str]:
            memories = await asyncio.to_thread(self.index.search, query, scope, self.evidence.per_query)
            return [t for m in memories for t in m.source_turn_ids]

        return search

    async def _scan(
        self, question: str, turns: list[Turn], memories: list[Memory], *, tiered: bool
    ) -> list[Deliberation]:
        """D-Mem's chunk scan, after the neighbour tier when `tiered`; the scan runs only when
        the neighbours' answer looks unsupported."""
        results: list[Deliberation] = []
        if tiered and memories:
            near = await self.deliberator.neighbours(question, turns, memories)
            results.append(near)
            if self._neighbours_suffice(question, near, memories):
                near.notes.append("neighbour turns answered it")
                return results
            near.notes.append(f"neighbour turns gave {near.text!r}, not supported: full scan")
        full = await self.deliberator.run(question, turns)
        full.notes.append(f"scanned {len(turns)} turns in {full.chunks} chunks, kept {len(full.facts)} facts")
        return [*results, full]

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
