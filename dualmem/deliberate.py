"""System 2: deliberation over the raw history (D-Mem's Full Deliberation, token-aware).

Map: the scope's turns are cut into chunks of at most 60 messages, each with the 4 preceding
messages as read-only context, and each chunk also fits the model's context window (counted
with tiktoken), so a 2K-token model can scan a 200K-token history. Per chunk the LLM extracts
question-relevant facts scored 0-10 (keep >= 5). Reduce: keep facts scoring >= 6; when 6 or
more remain an LLM filter picks the useful ones; the answer prompt of the fast path then
answers from them. Chunks run concurrently, bounded by a semaphore.

A cheaper middle tier (`neighbours`) first reads the raw turns behind the top memories and
their neighbours; the full scan runs only if that answer still looks unsupported.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, field_validator

from .errors import ConfigError, LLMReplyError
from .extract import is_instruction
from .fast import answer_from
from .index.lexical import tokenize
from .llm.base import BaseLLM, ChatRequest, Numbers
from .prompts import facts_messages, filter_messages
from .tokens import count_messages, count_tokens, truncate_tokens
from .types import Fact, Memory, Turn, Usage, human_date

__all__ = ["Chunk", "Deliberation", "Deliberator"]


_WITHHELD = "[message withheld: it gives orders to an assistant]"


def _shown(turn: Turn, *, dated: bool = True) -> str:
    """How a raw turn appears in a deliberation prompt. Instruction-like turns stay in the
    history but are not quoted: a small model obeys some injections even inside <data>."""
    if is_instruction(turn.text):
        turn = turn.model_copy(update={"text": _WITHHELD})
    return turn.render() if dated else f"{turn.speaker or turn.role}: {turn.text}"


class _ChunkFact(BaseModel):
    # json_schema_extra bounds shape constrained decoding only (a reply that fits max_tokens)
    fact: str = Field(min_length=1, json_schema_extra={"maxLength": 300})
    score: float = 0
    turns: Numbers = Field(default_factory=list)

    @field_validator("score", mode="before")
    @classmethod
    def _score(cls, v: object) -> float:
        try:
            return float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.0



class _FactsReply(BaseModel):
    facts: list[_ChunkFact] = Field(json_schema_extra={"maxItems": 12})


class _FilterReply(BaseModel):
    indexes: list[int]


@dataclass
class Chunk:
    history: list[Turn]
    turns: list[Turn]
    truncated: bool = False

    def lines(self, budget: int) -> tuple[list[str], list[str]]:
        history = [_shown(t) for t in self.history]
        room = budget - sum(count_tokens(h) + 4 for h in history) - 4
        return history, [truncate_tokens(_shown(t), room) for t in self.turns]


@dataclass
class Deliberation:
    text: str
    tier: str
    facts: list[Fact] = field(default_factory=list)
    turn_ids: list[str] = field(default_factory=list)
    usage: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    latency: dict[str, float] = field(default_factory=dict)
    chunks: int = 0
    errors: list[str] = field(default_factory=list)
    logprobs: list | None = None

    def add_usage(self, phase: str, usage: Usage) -> None:
        self.usage[phase] = self.usage[phase] + usage


class Deliberator:
    def __init__(
        self,
        llm: BaseLLM,
        *,
        chunk_messages: int = 60,
        history_messages: int = 4,
        concurrency: int = 4,
        extract_threshold: float = 5,
        keep_threshold: float = 6,
        filter_min_facts: int = 6,
        neighbour_window: int = 2,
    ) -> None:
        self.llm = llm
        self.chunk_messages = chunk_messages
        self.history_messages = history_messages
        self.concurrency = concurrency
        self.extract_threshold = extract_threshold
        self.keep_threshold = keep_threshold
        self.filter_min_facts = filter_min_facts
        self.neighbour_window = neighbour_window

    # ---------------------------------------------------------------- chunking

    @property
    def output_tokens(self) -> int:
        return max(128, min(512, self.llm.context_tokens // 4))

    def budget(self, question: str) -> int:
        """Tokens left for history + chunk lines in one extraction prompt."""
        overhead = count_messages(facts_messages(question, [], []))
        # 10% slack: local models' tokenizers are not cl100k
        return int((self.llm.context_tokens - self.output_tokens - overhead) * 0.9) - 16

    def chunks(self, turns: list[Turn], question: str) -> list[Chunk]:
        budget = self.budget(question)
        if budget < 64:
            raise ConfigError(
                f"a model context of {self.llm.context_tokens} tokens is too small to deliberate; "
                "use a model with at least 1K tokens of context"
            )
        cost = [count_tokens(_shown(t)) + 4 for t in turns]  # +4: numbering and newline
        out: list[Chunk] = []
        i = 0
        while i < len(turns):
            history: list[Turn] = []
            used = 0
            # read-only context: up to 4 preceding messages, at most a quarter of the budget
            for j in range(i - 1, max(-1, i - 1 - self.history_messages), -1):
                if used + cost[j] > budget // 4:
                    break
                history.insert(0, turns[j])
                used += cost[j]
            end = i
            while end < len(turns) and end - i < self.chunk_messages and used + cost[end] <= budget:
                used += cost[end]
                end += 1
            truncated = end == i  # one message larger than the whole budget: cut it
            if truncated:
                end = i + 1
            out.append(Chunk(history=history, turns=turns[i:end], truncated=truncated))
            i = end
        return out

    # ---------------------------------------------------------------- full scan

    async def run(self, question: str, turns: list[Turn]) -> Deliberation:
        result = Deliberation(text="", tier="full")
        start = time.perf_counter()
        chunks = self.chunks(turns, question)
        result.chunks = len(chunks)
        budget = self.budget(question)
        gate = asyncio.Semaphore(self.concurrency)

        async def scan(chunk: Chunk) -> list[Fact]:
            async with gate:
                history, body = chunk.lines(budget)
                request = ChatRequest(
                    task="deliberate.extract",
                    messages=facts_messages(question, history, body),
                    max_tokens=self.output_tokens,
                )
                try:
                    reply, usage = await self.llm.ajson(request, _FactsReply, retries=1)
                except LLMReplyError as e:
                    # one unreadable chunk must not sink the whole scan: flag it and go on
                    result.errors.append(f"chunk at turn {chunk.turns[0].id}: {e}")
                    result.add_usage("deliberate.extract", e.usage or Usage())
                    return []
                result.add_usage("deliberate.extract", usage)
                return [self._fact(f, chunk) for f in reply.facts if f.score >= self.extract_threshold]

        found = await asyncio.gather(*(scan(c) for c in chunks))
        result.latency["deliberate.extract"] = time.perf_counter() - start
        facts = [f for group in found for f in group if f.score >= self.keep_threshold]
        if len(facts) >= self.filter_min_facts:
            facts = await self._filter(question, facts, result)
        await self._answer(question, facts, result, "Facts")
        return result

    def _fact(self, raw: _ChunkFact, chunk: Chunk) -> Fact:
        cited = [chunk.turns[n - 1] for n in raw.turns if 1 <= n <= len(chunk.turns)]
        if not cited:  # the model gave no numbers: attribute to the turn sharing most words
            words = set(tokenize(raw.fact))
            cited = [max(chunk.turns, key=lambda t: len(words & set(tokenize(t.text))))]
        first = cited[0]
        return Fact(
            text=raw.fact.strip(),
            score=raw.score,
            turn_ids=[t.id for t in cited],
            timestamp=human_date(first.timestamp.date().isoformat()),
            speaker=first.speaker or first.role,
        )

    async def _filter(self, question: str, facts: list[Fact], result: Deliberation) -> list[Fact]:
        start = time.perf_counter()
        # the best-scored facts that fit one filter prompt; the rest could not be answered from anyway
        best = sorted(facts, key=lambda f: -f.score)
        keep = {id(f) for f in best[: _fitting([f.text for f in best], self.budget(question))]}
        facts = [f for f in facts if id(f) in keep]  # in conversation order, as found
        request = ChatRequest(
            task="deliberate.filter",
            messages=filter_messages(question, [f.text for f in facts]),
            max_tokens=128,
        )
        try:
            reply, usage = await self.llm.ajson(request, _FilterReply, retries=1)
        except LLMReplyError as e:
            result.errors.append(f"filter: {e}")
            result.add_usage("deliberate.filter", e.usage or Usage())
            return facts
        result.add_usage("deliberate.filter", usage)
        result.latency["deliberate.filter"] = time.perf_counter() - start
        kept = [facts[i - 1] for i in dict.fromkeys(reply.indexes) if 1 <= i <= len(facts)]
        # an empty selection falls back to the score-filtered facts (recall over precision)
        return kept or facts

    async def _answer(self, question: str, facts: list[Fact], result: Deliberation, label: str) -> None:
        facts = sorted(facts, key=lambda f: -f.score)
        lines = [f"[{f.timestamp}] {f.text}" if f.timestamp else f.text for f in facts]
        lines = lines[: _fitting(lines, self.budget(question))]
        result.facts = facts[: len(lines)]
        result.turn_ids = sorted({t for f in result.facts for t in f.turn_ids})
        phase = f"{'deliberate' if result.tier == 'full' else result.tier}.answer"
        answered = await answer_from(self.llm, question, lines, task=phase, label=label)
        result.text = answered.text
        result.logprobs = answered.completion.logprobs
        result.add_usage(phase, answered.completion.usage)
        result.latency[phase] = answered.seconds

    # ---------------------------------------------------------------- middle tier

    async def neighbours(self, question: str, turns: list[Turn], memories: list[Memory]) -> Deliberation:
        """Answer from the raw turns behind the top memories and their neighbours."""
        result = Deliberation(text="", tier="neighbours")
        position = {t.id: i for i, t in enumerate(turns)}
        picked: set[int] = set()
        for m in memories[:10]:
            for tid in m.source_turn_ids:
                if tid in position:
                    i = position[tid]
                    lo, hi = max(0, i - self.neighbour_window), min(len(turns), i + self.neighbour_window + 1)
                    picked.update(j for j in range(lo, hi) if turns[j].session_id == turns[i].session_id)
        facts = [
            Fact(
                text=_shown(turns[j], dated=False),
                score=10,
                turn_ids=[turns[j].id],
                timestamp=human_date(turns[j].timestamp.date().isoformat()),
                speaker=turns[j].speaker,
            )
            for j in sorted(picked)
        ]
        # chronological order for the reader (all scores equal, the sort in _answer is stable)
        await self._answer(question, facts, result, "Conversation excerpts")
        return result


def _fitting(lines: list[str], budget: int) -> int:
    """How many leading lines fit in `budget` tokens (+4 each for numbering and newline)."""
    used = 0
    for n, line in enumerate(lines):
        used += count_tokens(line) + 4
        if used > budget:
            return n
    return len(lines)
