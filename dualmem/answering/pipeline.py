"""The answering pipeline: System 1 (retrieve, read) -> gate -> System 2 (deliberation tiers)
-> arbitration.

Each phase returns its own result (`FastAnswer`, `GateOutcome`, `Deliberated`, `Verdict`),
and `build_answer` is the one place where an `Answer` is made from them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..config import DeliberationConfig
from ..errors import DualMemError
from ..history.base import HistoryStore, TurnQuery
from ..index.base import MemoryIndex
from ..llm.base import BaseLLM
from ..prompts import is_instruction
from ..tasks import Task
from ..types import (
    Answer,
    Candidate,
    Evidence,
    Memory,
    Mode,
    Scope,
    StrategyName,
    TokenLogprob,
    Turn,
    Usage,
)
from .deliberate import Deliberation, EvidenceFirst, Neighbours, Scan, Strategy, arbitrate
from .gate import GateConfig, GateOutcome, Policy, run_gate
from .gate.signals import Passage
from .reader import answer_from, context_lines

__all__ = [
    "Deliberated", "FastAnswer", "Mode", "Pipeline", "StrategyName", "Verdict", "build_answer", "weigh",
]


@dataclass(frozen=True)
class FastAnswer:
    """System 1's result: the answer read from the top-k memories."""

    text: str
    memories: list[Memory]
    logprobs: list[TokenLogprob] | None
    usage: dict[str, Usage]
    latency: dict[str, float]


@dataclass(frozen=True)
class Deliberated:
    """System 2's result: the answer of every tier that ran, in order, or the error that
    stopped it, and the raw turns the tiers judged relevant (what the arbiter weighs against).

    `usage` and `latency` count every tier that ran, the rejected and the failed ones too.
    """

    strategy: StrategyName
    results: list[Deliberation] = field(default_factory=list)
    evidence: list[Turn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The arbiter's decision: every answer weighed, why the winner won, and the System 2
    result that stood (None: the fast answer did)."""

    candidates: list[Candidate]
    why: str
    stood: Deliberation | None


class Pipeline:
    """Runs the phases for one question and builds its `Answer`."""

    def __init__(
        self, llm: BaseLLM, history: HistoryStore, index: MemoryIndex, gate: GateConfig,
        deliberation: DeliberationConfig | None = None,
    ) -> None:
        self.llm = llm
        self.history = history
        self.index = index
        self.gate = gate
        self.deliberation = deliberation or DeliberationConfig()

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
        strategy: StrategyName | None = None,
    ) -> Answer:
        strategy = strategy or self.deliberation.strategy
        fast = await self.read(question, scope, k)
        if mode == "fast":
            return build_answer(question, mode, fast=fast)
        gate = None
        if mode == "full":
            # always deliberate; the fast answer is still made, so that the arbiter can keep
            # it when System 2 finds less
            tiered = False
        else:
            gate = await run_gate(
                self.llm, self.gate, question, fast.text, fast.logprobs, fast.memories, policy
            )
            if not (gate.report.escalate and deliberate):
                return build_answer(question, mode, fast=fast, gate=gate)
            tiered = self.gate.tiered if tiered is None else tiered
        system2 = await self.deliberate(question, scope, fast.memories, tiered=tiered, strategy=strategy)
        verdict = weigh(question, fast, system2) if system2.error is None else None
        return build_answer(question, mode, fast=fast, gate=gate, system2=system2, verdict=verdict)

    async def read(self, question: str, scope: Scope, k: int) -> FastAnswer:
        """System 1: the top-k memories, and one answer call over them."""
        start = time.perf_counter()
        memories = await asyncio.to_thread(self.index.search, question, scope, k)
        retrieve = time.perf_counter() - start
        reading = await answer_from(self.llm, question, context_lines(memories))
        return FastAnswer(
            text=reading.text,
            memories=memories,
            logprobs=reading.completion.logprobs,
            usage={Task.ANSWER: reading.completion.usage},
            latency={"retrieve": retrieve, Task.ANSWER: reading.seconds},
        )

    def tiers(self, scope: Scope, strategy: StrategyName) -> list[Strategy]:
        """A strategy's tiers, cheapest first; the last one always stands."""
        d = self.deliberation
        if strategy == "evidence":
            return [EvidenceFirst(self.llm, search=self._turn_search(scope), select=d.select_lines,
                                  rank_lines=d.rank_lines)]
        return [
            Neighbours(self.llm, self.gate, window=d.neighbour_window),
            Scan(self.llm, **d.model_dump(exclude={"neighbour_window", "strategy", "select_lines",
                                                   "rank_lines"})),
        ]

    def _turn_search(self, scope: Scope):
        async def search(query: str, k: int) -> list[str]:
            memories = await asyncio.to_thread(self.index.search, query, scope, k)
            return [t for m in memories for t in m.source_turn_ids]

        return search

    async def deliberate(
        self, question: str, scope: Scope, memories: list[Memory], *, tiered: bool,
        strategy: StrategyName = "evidence",
    ) -> Deliberated:
        """System 2: the strategy's tiers in order over the scope's raw history, until one's
        answer is accepted. A dualmem error ends it with what was spent so far, never raises."""
        usage: dict[str, Usage] = {}
        latency: dict[str, float] = {}
        notes: list[str] = []
        results: list[Deliberation] = []
        tiers = self.tiers(scope, strategy)
        tiers = tiers if tiered and memories else tiers[-1:]
        try:
            start = time.perf_counter()
            turns = await asyncio.to_thread(self.history.list, TurnQuery(scope=scope))
            latency["history"] = time.perf_counter() - start
            for tier in tiers:
                result = await tier.run(question, turns, memories)
                results.append(result)
                _add(usage, latency, result.usage, result.latency)
                accepted = tier is tiers[-1] or tier.accepts(question, result, memories)
                notes.append(tier.note(result, turns, accepted))
                if accepted:
                    break
        except DualMemError as e:
            return Deliberated(strategy, [], [], notes, usage, latency, error=str(e))
        by_id = {t.id: t for t in turns}
        # the lines each answer was read from, and those selected beyond them: a 0.5B selector
        # misses lines the reader then answers from (the best search hits are read as
        # insurance), and an answer held by a line it read is grounded, not made up
        relevant = dict.fromkeys(t for r in results for t in (*r.support_turn_ids, *r.turn_ids))
        evidence = [by_id[t] for t in relevant if t in by_id]
        return Deliberated(strategy, results, evidence, notes, usage, latency)


def weigh(question: str, fast: FastAnswer, system2: Deliberated) -> Verdict:
    """Arbitration: the fast answer and each tier's, weighed against System 2's evidence."""
    answers = [("fast", fast.text, _turns_of(fast.memories))]
    answers += [(r.tier, r.text, r.turn_ids) for r in system2.results]
    candidates, why = arbitrate(
        question, answers, system2.evidence, [Passage.of(m) for m in fast.memories]
    )
    won = next(i for i, c in enumerate(candidates) if c.won)
    return Verdict(candidates, why, system2.results[won - 1] if won else None)


def _turns_of(memories: list[Memory]) -> list[str]:
    return sorted({t for m in memories for t in m.source_turn_ids})


def _add(usage: dict[str, Usage], latency: dict[str, float], more_usage: dict[str, Usage],
         more_latency: dict[str, float]) -> None:
    for phase, u in more_usage.items():
        usage[phase] = usage.get(phase, Usage()) + u
    latency.update(more_latency)


def build_answer(
    question: str,
    mode: Mode,
    *,
    fast: FastAnswer,
    gate: GateOutcome | None = None,
    system2: Deliberated | None = None,
    verdict: Verdict | None = None,
) -> Answer:
    """The `Answer` of the phases that ran: the arbiter's winner after an escalation, else
    System 1's. Costs are listed in the order the phases ran."""
    usage: dict[str, Usage] = {}
    latency: dict[str, float] = {}
    _add(usage, latency, fast.usage, fast.latency)
    if gate:
        _add(usage, latency, {"gate": gate.usage} if gate.usage.calls else {}, {"gate": gate.seconds})
    if system2:
        _add(usage, latency, system2.usage, system2.latency)
    memory_ids = [m.id for m in fast.memories]
    common = dict(
        question=question, mode=mode, reason=_reason(mode, gate, system2, verdict),
        gate=gate and gate.report, memories=fast.memories, usage=usage, latency=latency,
        strategy=system2 and system2.strategy,
        flagged=[m.id for m in fast.memories if is_instruction(m.render())],
    )
    if verdict is not None:
        assert system2 is not None
        stood = verdict.stood
        # the escalation's answer, even when the fast one won: path says System 2 ran
        degraded = any(r.errors for r in system2.results)
        weighed = dict(candidates=verdict.candidates, arbitration=verdict.why, path="deliberate",
                       tier=stood.tier if stood else "fast", degraded=degraded)
        if stood is not None:
            evidence = Evidence(memory_ids=memory_ids, turn_ids=stood.turn_ids, facts=list(stood.facts))
            return Answer(text=stood.text, evidence=evidence, logprobs=stood.logprobs, **weighed, **common)
        evidence = Evidence(memory_ids=memory_ids, turn_ids=_turns_of(fast.memories))
        return Answer(text=fast.text, evidence=evidence, logprobs=fast.logprobs, **weighed, **common)
    evidence = Evidence(memory_ids=memory_ids, turn_ids=_turns_of(fast.memories))
    failed = system2 is not None and system2.error is not None
    return Answer(
        text=(gate and gate.answer) or fast.text, path="fast", degraded=failed, evidence=evidence,
        logprobs=fast.logprobs, **common,
    )


def _reason(
    mode: Mode, gate: GateOutcome | None, system2: Deliberated | None, verdict: Verdict | None
) -> str:
    """Why the answer took its path, in one line."""
    if mode == "fast":
        return "fast mode: no gate"
    if mode == "full":
        why = "full mode: always deliberate"
    else:
        assert gate is not None
        if not gate.report.escalate:
            return f"fast answer kept: {gate.report.reason}"
        if system2 is None:
            return f"would escalate ({gate.report.reason}); deliberation off: fast answer kept"
        why = f"escalated: {gate.report.reason}"
    assert system2 is not None
    if system2.error is not None:
        return f"{why}; deliberation failed ({system2.error}), fast answer kept"
    assert verdict is not None
    winner = next(c.source for c in verdict.candidates if c.won)
    return f"{why} -> {'; '.join(n for n in system2.notes if n)}; {verdict.why}: {winner} answer kept"
