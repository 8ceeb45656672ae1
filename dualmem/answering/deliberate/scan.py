"""The full scan: D-Mem's Full Deliberation over the whole raw history, token-aware.

Map: the scope's turns are cut into chunks of at most 60 messages, each with the 4 preceding
messages as read-only context, and each chunk also fits the model's context window (counted
with tiktoken), so a 2K-token model can scan a 200K-token history. Per chunk the LLM extracts
question-relevant facts scored 0-10 (keep >= 5). Reduce: keep facts scoring >= 6; when 6 or
more remain an LLM filter picks the useful ones; the reader then answers from them. Chunks
run concurrently, bounded by a semaphore.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from pydantic import BaseModel, Field, field_validator

from ...config import DeliberationConfig
from ...errors import ConfigError, LLMReplyError
from ...llm.base import FACTS_PER_REPLY, BaseLLM, ChatRequest, FactText, Numbers
from ...prompts import facts_messages, filter_messages
from ...tasks import Task
from ...text import human_day, tokenize
from ...tokens import count_tokens, truncate_tokens
from ...types import Fact, Memory, Turn, Usage
from .base import Deliberation, Strategy, fitting, shown

__all__ = ["Chunk", "Scan"]

_DEFAULTS = DeliberationConfig()


class _ChunkFact(BaseModel):
    fact: FactText
    score: float = 0
    turns: Numbers = Field(default_factory=list, json_schema_extra={"maxItems": 4})

    @field_validator("score", mode="before")
    @classmethod
    def _score(cls, v: object) -> float:
        try:
            return float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.0


class _FactsReply(BaseModel):
    # bounds constrained decoding only (a reply that fits max_tokens, as extraction's does);
    # validation stays lenient
    facts: list[_ChunkFact] = Field(json_schema_extra={"maxItems": FACTS_PER_REPLY})


class _FilterReply(BaseModel):
    indexes: list[int]


@dataclass
class Chunk:
    history: list[Turn]
    turns: list[Turn]
    truncated: bool = False

    def lines(self, budget: int) -> tuple[list[str], list[str]]:
        history = [shown(t) for t in self.history]
        room = budget - sum(count_tokens(h) + 4 for h in history) - 4
        return history, [truncate_tokens(shown(t), room) for t in self.turns]


class Scan(Strategy):
    """Read every turn of the history, chunk by chunk (D-Mem's Full Deliberation)."""

    tier = "full"
    answer_task = Task.DELIBERATE_ANSWER
    label = "Facts"

    def __init__(
        self,
        llm: BaseLLM,
        *,
        chunk_messages: int = _DEFAULTS.chunk_messages,
        history_messages: int = _DEFAULTS.history_messages,
        concurrency: int = _DEFAULTS.concurrency,
        extract_threshold: float = _DEFAULTS.extract_threshold,
        keep_threshold: float = _DEFAULTS.keep_threshold,
        filter_min_facts: int = _DEFAULTS.filter_min_facts,
    ) -> None:
        """The settings are `DeliberationConfig`'s (`Config.deliberation`), defaults included."""
        super().__init__(llm)
        self.chunk_messages = chunk_messages
        self.history_messages = history_messages
        self.concurrency = concurrency
        self.extract_threshold = extract_threshold
        self.keep_threshold = keep_threshold
        self.filter_min_facts = filter_min_facts

    def note(self, result: Deliberation, turns: list[Turn], accepted: bool) -> str:
        note = f"scanned {len(turns)} turns in {result.chunks} chunks, kept {len(result.facts)} facts"
        if result.errors:
            note += f"; {len(result.errors)} chunk(s) unreadable and skipped"
        return note

    # ---------------------------------------------------------------- chunking

    def chunks(self, turns: list[Turn], question: str) -> list[Chunk]:
        budget = self.budget(question)
        if budget < 64:
            raise ConfigError(
                f"a model context of {self.llm.context_tokens} tokens is too small to deliberate; "
                "use a model with at least 1K tokens of context"
            )
        cost = [count_tokens(shown(t)) + 4 for t in turns]  # +4: numbering and newline
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

    # ---------------------------------------------------------------- map, reduce, answer

    async def run(
        self, question: str, turns: list[Turn], memories: list[Memory] | None = None
    ) -> Deliberation:
        """Scan every turn; `memories` are not needed (the scan reads the whole history)."""
        result = Deliberation(text="", tier=self.tier)
        start = time.perf_counter()
        chunks = self.chunks(turns, question)
        result.chunks = len(chunks)
        budget = self.budget(question)
        gate = asyncio.Semaphore(self.concurrency)

        async def scan(chunk: Chunk) -> list[Fact]:
            async with gate:
                return await self._scan(question, chunk, budget, result)

        found = await asyncio.gather(*(scan(c) for c in chunks))
        result.latency[Task.DELIBERATE_EXTRACT] = time.perf_counter() - start
        facts = [f for group in found for f in group if f.score >= self.keep_threshold]
        if len(facts) >= self.filter_min_facts:
            facts = await self._filter(question, facts, result)
        await self._answer(question, facts, result)
        return result

    async def _scan(self, question: str, chunk: Chunk, budget: int, result: Deliberation) -> list[Fact]:
        history, body = chunk.lines(budget)
        request = ChatRequest(
            task=Task.DELIBERATE_EXTRACT,
            messages=facts_messages(question, history, body),
            max_tokens=self.output_tokens,
        )
        try:
            reply, usage = await self.llm.ajson(request, _FactsReply, retries=1)
        except LLMReplyError as e:
            # one unreadable chunk must not sink the whole scan: flag it and go on
            result.errors.append(f"chunk at turn {chunk.turns[0].id}: {e}")
            result.add_usage(Task.DELIBERATE_EXTRACT, e.usage or Usage())
            return []
        result.add_usage(Task.DELIBERATE_EXTRACT, usage)
        return [self._fact(f, chunk) for f in reply.facts if f.score >= self.extract_threshold]

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
            timestamp=human_day(first.timestamp),
            speaker=first.speaker or first.role,
        )

    async def _filter(self, question: str, facts: list[Fact], result: Deliberation) -> list[Fact]:
        start = time.perf_counter()
        # the best-scored facts that fit one filter prompt; the rest could not be answered from anyway
        best = sorted(facts, key=lambda f: -f.score)
        keep = {id(f) for f in best[: fitting([f.text for f in best], self.budget(question))]}
        facts = [f for f in facts if id(f) in keep]  # in conversation order, as found
        request = ChatRequest(
            task=Task.DELIBERATE_FILTER,
            messages=filter_messages(question, [f.text for f in facts]),
            max_tokens=128,
        )
        try:
            reply, usage = await self.llm.ajson(request, _FilterReply, retries=1)
        except LLMReplyError as e:
            result.errors.append(f"filter: {e}")
            result.add_usage(Task.DELIBERATE_FILTER, e.usage or Usage())
            return facts
        result.add_usage(Task.DELIBERATE_FILTER, usage)
        result.latency[Task.DELIBERATE_FILTER] = time.perf_counter() - start
        kept = [facts[i - 1] for i in dict.fromkeys(reply.indexes) if 1 <= i <= len(facts)]
        # an empty selection falls back to the score-filtered facts (recall over precision)
        return kept or facts
