"""What every System 2 strategy shares: its result, how raw turns are shown, the answer step.

A strategy reads the raw history (and the memories System 1 retrieved) and answers with the
reader, from the facts or turns it found. Each one sets its `tier` name and its answer task;
`accepts` says whether its answer may stand or the next, costlier strategy should run.
"""

from __future__ import annotations

import abc
from collections import defaultdict
from dataclasses import dataclass, field

from ...llm.base import BaseLLM
from ...prompts import facts_messages
from ...tasks import Task
from ...text import resolve_relative
from ...tokens import count_messages, count_tokens
from ...types import Fact, Memory, TokenLogprob, Turn, Usage
from ..reader import answer_from

__all__ = ["Deliberation", "Strategy", "evidence_line", "fitting", "shown"]

def shown(turn: Turn, *, dated: bool = True) -> str:
    """How a raw turn appears in a deliberation prompt (an instruction-like one is quoted
    datamarked by `data_block`, never withheld: the question may be about it)."""
    return turn.render() if dated else f"{turn.speaker or turn.role}: {turn.text}"


def evidence_line(turn: Turn) -> str:
    """A raw turn as System 2 shows it: session date, speaker, text with relative dates
    resolved against that date."""
    return resolve_relative(shown(turn), turn.timestamp.date())


def fitting(lines: list[str], budget: int) -> int:
    """How many leading lines fit in `budget` tokens (+4 each for numbering and newline)."""
    used = 0
    for n, line in enumerate(lines):
        used += count_tokens(line) + 4
        if used > budget:
            return n
    return len(lines)


@dataclass
class Deliberation:
    """One strategy's result: its answer, the facts it was read from and what it cost.

    Filled in by the strategy while it runs (chunks add their usage concurrently), then
    returned; the pipeline only reads it.
    """

    text: str
    tier: str
    facts: list[Fact] = field(default_factory=list)
    turn_ids: list[str] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    latency: dict[str, float] = field(default_factory=dict)
    chunks: int = 0
    errors: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None
    #: what the strategy has to say beyond its counts ("a selection reply was unreadable")
    notes: list[str] = field(default_factory=list)
    #: the raw turns the strategy judged relevant; the arbiter weighs every answer against
    #: these and the turns the answer was read from
    support_turn_ids: list[str] = field(default_factory=list)

    def add_usage(self, phase: str, usage: Usage) -> None:
        self.usage[phase] = self.usage[phase] + usage


class Strategy(abc.ABC):
    """One way of deliberating over the raw history."""

    tier: str
    answer_task: Task
    label: str  # what the answer prompt calls the lines it reads

    def __init__(self, llm: BaseLLM) -> None:
        self.llm = llm

    @abc.abstractmethod
    async def run(self, question: str, turns: list[Turn], memories: list[Memory]) -> Deliberation:
        """Deliberate over `turns` (the scope's whole history, in order)."""

    def accepts(self, question: str, result: Deliberation, memories: list[Memory]) -> bool:
        """Whether this answer stands (else the next strategy runs); the last one always stands."""
        return True

    @abc.abstractmethod
    def note(self, result: Deliberation, turns: list[Turn], accepted: bool) -> str:
        """One clause for `Answer.reason`: what this strategy did."""

    @property
    def output_tokens(self) -> int:
        return max(128, min(512, self.llm.context_tokens // 4))

    def budget(self, question: str) -> int:
        """Tokens left for the lines of one fact-extraction prompt (also the cap of the answer's)."""
        overhead = count_messages(facts_messages(question, [], []))
        # 10% slack: local models' tokenizers are not cl100k
        return int((self.llm.context_tokens - self.output_tokens - overhead) * 0.9) - 16

    async def _answer(self, question: str, facts: list[Fact], result: Deliberation) -> None:
        """Answer from the best facts that fit, and record them as the answer's evidence."""
        facts = sorted(facts, key=lambda f: -f.score)
        lines = [f"[{f.timestamp}] {f.text}" if f.timestamp else f.text for f in facts]
        lines = lines[: fitting(lines, self.budget(question))]
        result.facts = facts[: len(lines)]
        result.turn_ids = sorted({t for f in result.facts for t in f.turn_ids})
        answered = await answer_from(self.llm, question, lines, task=self.answer_task, label=self.label)
        result.text = answered.text
        result.logprobs = answered.completion.logprobs
        result.add_usage(self.answer_task, answered.completion.usage)
        result.latency[self.answer_task] = answered.seconds
