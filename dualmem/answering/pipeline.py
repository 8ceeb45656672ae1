"""The answering pipeline: System 1 (retrieve, read) -> gate -> System 2 (deliberation tiers).

Each phase returns its own result (`FastAnswer`, `GateOutcome`, `Deliberated`), and
`build_answer` is the one place where an `Answer` is made from them.
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
from ..tasks import Task
from ..types import Answer, Evidence, Memory, Mode, Scope, TokenLogprob, Usage
from .deliberate import Deliberation, Neighbours, Scan, Strategy
from .gate import GateConfig, GateOutcome, Policy, run_gate
from .reader import answer_from, context_lines

__all__ = ["Deliberated", "FastAnswer", "Mode", "Pipeline", "build_answer"]

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
    """System 2's result: the answer of the strategy that stood, or the error that stopped it.

    `usage` and `latency` count every strategy that ran, the rejected and the failed ones too.
    """

    result: Deliberation | None
    notes: list[str] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    error: str | None = None


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
        d = deliberation or DeliberationConfig()
        # tried in this order; the last one always stands
        self.strategies: list[Strategy] = [
            Neighbours(llm, gate, window=d.neighbour_window),
            Scan(llm, **d.model_dump(exclude={"neighbour_window"})),
        ]

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
        if mode == "full":
            # D-Mem's always-deliberate baseline: no retrieval, no fast answer, unless it fails
            system2 = await self.deliberate(question, scope, [], tiered=False)
            fallback = await self.read(question, scope, k) if system2.error else None
            return build_answer(question, mode, fast=fallback, system2=system2)
        fast = await self.read(question, scope, k)
        if mode == "fast":
            return build_answer(question, mode, fast=fast)
        gate = await run_gate(self.llm, self.gate, question, fast.text, fast.logprobs, fast.memories, policy)
        system2 = None
        if gate.report.escalate and deliberate:
            tiered = self.gate.tiered if tiered is None else tiered
            system2 = await self.deliberate(question, scope, fast.memories, tiered=tiered)
        return build_answer(question, mode, fast=fast, gate=gate, system2=system2)

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

    async def deliberate(
        self, question: str, scope: Scope, memories: list[Memory], *, tiered: bool
    ) -> Deliberated:
        """System 2: the strategies in order over the scope's raw history, until one's answer
        is accepted. A dualmem error ends it with what was spent so far, never raises."""
        usage: dict[str, Usage] = {}
        latency: dict[str, float] = {}
        notes: list[str] = []
        strategies = self.strategies if tiered and memories else self.strategies[-1:]
        try:
            start = time.perf_counter()
            turns = await asyncio.to_thread(self.history.list, TurnQuery(scope=scope))
            latency["history"] = time.perf_counter() - start
            for strategy in strategies:
                result = await strategy.run(question, turns, memories)
                _add(usage, latency, result.usage, result.latency)
                accepted = strategy is strategies[-1] or strategy.accepts(question, result, memories)
                notes.append(strategy.note(result, turns, accepted))
                if accepted:
                    break
        except DualMemError as e:
            return Deliberated(None, notes, usage, latency, error=str(e))
        return Deliberated(result, notes, usage, latency)


def _add(usage: dict[str, Usage], latency: dict[str, float], more_usage: dict[str, Usage],
         more_latency: dict[str, float]) -> None:
    for phase, u in more_usage.items():
        usage[phase] = usage.get(phase, Usage()) + u
    latency.update(more_latency)


def build_answer(
    question: str,
    mode: Mode,
    *,
    fast: FastAnswer | None = None,
    gate: GateOutcome | None = None,
    system2: Deliberated | None = None,
) -> Answer:
    """The `Answer` of the phases that ran: System 2's when it stood, else System 1's.

    Costs are listed in the order the phases ran (System 2 first in full mode).
    """
    usage: dict[str, Usage] = {}
    latency: dict[str, float] = {}
    if mode == "full" and system2:
        _add(usage, latency, system2.usage, system2.latency)
    if fast:
        _add(usage, latency, fast.usage, fast.latency)
    if gate:
        _add(usage, latency, {"gate": gate.usage} if gate.usage.calls else {}, {"gate": gate.seconds})
    if mode != "full" and system2:
        _add(usage, latency, system2.usage, system2.latency)
    memories = fast.memories if fast else []
    common = dict(
        question=question, mode=mode, reason=_reason(mode, gate, system2), gate=gate and gate.report,
        memories=memories, usage=usage, latency=latency,
    )
    stood = system2.result if system2 else None
    if stood is not None:
        evidence = Evidence(
            memory_ids=[m.id for m in memories], turn_ids=stood.turn_ids, facts=list(stood.facts)
        )
        return Answer(
            text=stood.text, path="deliberate", tier=stood.tier, degraded=bool(stood.errors),
            evidence=evidence, logprobs=stood.logprobs, **common,
        )
    assert fast is not None  # full mode reads System 1 when System 2 failed
    evidence = Evidence(
        memory_ids=[m.id for m in memories], turn_ids=sorted({t for m in memories for t in m.source_turn_ids})
    )
    failed = system2 is not None and system2.error is not None
    return Answer(
        text=(gate and gate.answer) or fast.text, path="fast", degraded=failed, evidence=evidence,
        logprobs=fast.logprobs, **common,
    )


def _reason(mode: Mode, gate: GateOutcome | None, system2: Deliberated | None) -> str:
    """Why the answer took its path, in one line."""
    done = "; ".join(system2.notes) if system2 else ""
    if mode == "fast":
        return "fast mode: no gate"
    if mode == "full":
        assert system2 is not None
        if system2.error is not None:
            return f"deliberation failed ({system2.error}); fell back to the fast path"
        return f"full mode: always deliberate -> {done}"
    assert gate is not None
    why = gate.report.reason
    if not gate.report.escalate:
        return f"fast answer kept: {why}"
    if system2 is None:
        return f"would escalate ({why}); deliberation off: fast answer kept"
    if system2.error is not None:
        return f"escalated: {why}; deliberation failed ({system2.error}), fast answer kept"
    return f"escalated: {why} -> {done}"
