"""The neighbour tier: answer from the raw turns behind the top memories and their neighbours.

Cheaper than the full scan (one answer call over a few dozen turns); its answer stands only
when the gate's coverage and consistency signals find it supported by those turns.
"""

from __future__ import annotations

from ...config import DeliberationConfig, GateConfig
from ...llm.base import BaseLLM
from ...tasks import Task
from ...text import human_day
from ...types import Fact, Memory, Turn
from ..gate.signals import Passage, consistency, coverage, looks_like_refusal
from .base import Deliberation, Strategy, shown

__all__ = ["Neighbours"]


class Neighbours(Strategy):
    """Read the turns within `window` of each top memory's source turns, in its own session."""

    tier = "neighbours"
    answer_task = Task.NEIGHBOURS_ANSWER
    label = "Conversation excerpts"

    def __init__(
        self, llm: BaseLLM, gate: GateConfig | None = None, *,
        window: int = DeliberationConfig().neighbour_window,
    ) -> None:
        super().__init__(llm)
        self.gate = gate or GateConfig()
        self.window = window

    def note(self, result: Deliberation, turns: list[Turn], accepted: bool) -> str:
        if accepted:
            return "neighbour turns answered it"
        return f"neighbour turns gave {result.text!r}, not supported: full scan"

    async def run(self, question: str, turns: list[Turn], memories: list[Memory]) -> Deliberation:
        result = Deliberation(text="", tier=self.tier)
        position = {t.id: i for i, t in enumerate(turns)}
        picked: set[int] = set()
        for m in memories[:10]:
            for tid in m.source_turn_ids:
                if tid in position:
                    i = position[tid]
                    lo, hi = max(0, i - self.window), min(len(turns), i + self.window + 1)
                    picked.update(j for j in range(lo, hi) if turns[j].session_id == turns[i].session_id)
        facts = [
            Fact(
                text=shown(turns[j], dated=False),
                score=10,
                turn_ids=[turns[j].id],
                timestamp=human_day(turns[j].timestamp),
                speaker=turns[j].speaker,
            )
            for j in sorted(picked)
        ]
        # chronological order for the reader (all scores equal, the sort in _answer is stable)
        await self._answer(question, facts, result)
        return result

    def accepts(self, question: str, result: Deliberation, memories: list[Memory]) -> bool:
        """The answer is no refusal, and the turns it was read from cover the question and
        agree with it."""
        if looks_like_refusal(result.text):
            return False
        # a turn carries the similarity of the retrieved memory it was read next to: coverage
        # then weighs it as the search did, not as a perfect match
        similarity = {t: m.score or 0.0 for m in memories for t in m.source_turn_ids}
        floor = min((m.score or 0.0 for m in memories), default=0.0)
        # no date, as in the first version of this check: dating them would change which
        # neighbour answers stand (coverage's time check), a decision for the gate's rework
        passages = [
            Passage(f.text, max((similarity[t] for t in f.turn_ids if t in similarity), default=floor))
            for f in result.facts
        ]
        cov = coverage(question, passages, self.gate.coverage_threshold)
        con = consistency(result.text, passages, cov.score or 0.0, self.gate.consistency_threshold)
        # the excerpts must contain something the question asks about, not just the answer's words
        return bool(con.passed and cov.passed and cov.details.get("terms", 0.0) > 0)
