"""Extraction: new turns -> atomic dated facts -> ADD / UPDATE / DELETE / NOOP (Mem0 scheme).

Two LLM calls per batch of new turns at most: one extracts candidate facts (with the 10
most similar existing memories and the recent messages as context, as D-Mem's Mem0* does),
one reconciles the candidates that have close neighbours (cosine > 0.8). Candidates with no
close neighbour are added without asking.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ..config import ExtractionConfig
from ..index.base import MemoryIndex
from ..llm.base import BaseLLM, ChatRequest, Numbers
from ..prompts import extract_messages, is_instruction, reconcile_messages
from ..tasks import Task
from ..text import dated
from ..tokens import fit_lines, line_budget
from ..types import Memory, Scope, Turn, Usage

__all__ = ["ExtractionResult", "Extractor", "raw_memories"]

log = logging.getLogger("dualmem")


class _Fact(BaseModel):
    text: str = Field(min_length=1)
    date: str | None = None
    turns: Numbers = Field(default_factory=list)

    @field_validator("date", mode="before")
    @classmethod
    def _date(cls, v: object) -> str | None:
        # a malformed date is dropped, the fact is kept
        if not isinstance(v, str):
            return None
        try:
            return datetime.strptime(v.strip()[:10], "%Y-%m-%d").date().isoformat()
        except ValueError:
            return None

    def render(self) -> str:
        # the form the index embeds memories in (`Memory.render`), so that cosines compare
        return dated(self.text, self.date)


class ExtractReply(BaseModel):
    facts: list[_Fact]


class _Action(BaseModel):
    fact: int
    event: Literal["ADD", "UPDATE", "DELETE", "NOOP"]
    id: str | None = None
    text: str | None = None

    @field_validator("event", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v


class ReconcileReply(BaseModel):
    actions: list[_Action]


@dataclass
class ExtractionResult:
    added: list[Memory] = field(default_factory=list)
    updated: list[Memory] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    noop: int = 0
    usage: Usage = field(default_factory=Usage)


def _now() -> datetime:
    return datetime.now(UTC)


def raw_memories(turns: list[Turn]) -> list[Memory]:
    """`extract=False`: every turn is indexed as it is, dated by its timestamp, except text
    addressed to an assistant (`is_instruction`): it stays in the history, out of the index."""
    now = _now()
    return [
        Memory(
            id=t.id,
            text=f"{t.speaker or t.role}: {t.text}",
            user_id=t.user_id,
            agent_id=t.agent_id,
            session_id=t.session_id,
            source_turn_ids=[t.id],
            created_at=now,
            updated_at=now,
            event_date=t.timestamp.date().isoformat(),
            metadata={k: v for k, v in t.metadata.items() if isinstance(v, str | int | float)},
        )
        for t in turns
        if t.text.strip() and not is_instruction(t.text)
    ]


class Extractor:
    def __init__(self, llm: BaseLLM, index: MemoryIndex, config: ExtractionConfig | None = None) -> None:
        self.llm = llm
        self.index = index
        self.config = config or ExtractionConfig()

    async def run(self, new: list[Turn], recent: list[Turn], scope: Scope) -> ExtractionResult:
        """Extract from `new` in batches; raises `LLMReplyError` if a reply stays malformed."""
        result = ExtractionResult()
        context = list(recent)
        step = self.config.batch_turns
        for start in range(0, len(new), step):
            batch = new[start : start + step]
            await self._batch(batch, context[-self.config.recent_messages:], scope, result)
            context.extend(batch)
        return result

    async def _batch(
        self, batch: list[Turn], recent: list[Turn], scope: Scope, result: ExtractionResult
    ) -> None:
        wide = scope.widened()
        known = await asyncio.to_thread(
            self.index.search, " ".join(t.text for t in batch), wide, self.config.known_memories
        )
        new, old = [t.render() for t in batch], [t.render() for t in recent]
        # cut over-long lines so the prompt fits the model (the history keeps the full text)
        lines = fit_lines(new + old + [m.render() for m in known],
                          line_budget(self.llm.context_tokens, 512, extract_messages([], [], [])))
        request = ChatRequest(
            task=Task.EXTRACT,
            messages=extract_messages(lines[: len(new)], lines[len(new) : len(new) + len(old)],
                                      lines[len(new) + len(old) :]),
            max_tokens=384,
        )
        reply, usage = await self.llm.ajson(request, ExtractReply, retries=self.config.reply_retries)
        result.usage = result.usage + usage
        stated = [f for f in reply.facts if f.text.strip()]
        facts = [f for f in stated if not is_instruction(f.text)]
        if len(facts) < len(stated):
            log.warning("extraction dropped %d instruction-like fact(s)", len(stated) - len(facts))
        if not facts:
            return
        neighbours = await asyncio.to_thread(
            self.index.nearest, [f.render() for f in facts], wide, self.config.neighbours
        )
        close = [[m for m in ns if (m.score or 0) > self.config.neighbour_similarity] for ns in neighbours]
        actions: dict[int, _Action] = {}
        contested = [i for i, ns in enumerate(close) if ns]
        if contested:
            request = ChatRequest(
                task=Task.RECONCILE,
                messages=reconcile_messages(
                    [(facts[i].text, [(m.id, m.text) for m in close[i]]) for i in contested]
                ),
                max_tokens=384,
            )
            reply_r, usage = await self.llm.ajson(request, ReconcileReply, retries=self.config.reply_retries)
            result.usage = result.usage + usage
            for a in reply_r.actions:
                if 1 <= a.fact <= len(contested):
                    actions[contested[a.fact - 1]] = a
        await self._apply(batch, facts, close, actions, scope, result)

    async def _apply(self, batch, facts, close, actions, scope: Scope, result) -> None:
        now = _now()
        added: list[Memory] = []
        updated: dict[str, Memory] = {}  # by id: two facts may update one memory
        deletes: list[str] = []
        for i, fact in enumerate(facts):
            sources = [batch[n - 1].id for n in fact.turns if 1 <= n <= len(batch)]
            sources = sources or [t.id for t in batch]
            action = actions.get(i)
            # an id the model invents (or copies from elsewhere) is never touched: only this
            # fact's own neighbours, all from this scope, may be updated or deleted
            target = next((m for m in close[i] if action and m.id == action.id), None)
            event = action.event if action else "ADD"
            if event in ("UPDATE", "DELETE") and target is None:
                event = "ADD"
            if event == "NOOP":
                result.noop += 1
            elif event == "DELETE":
                if target.id not in deletes:
                    deletes.append(target.id)
            elif event == "UPDATE":
                base = updated.get(target.id, target)
                updated[target.id] = base.model_copy(update={
                    "text": (action.text if action.text and not is_instruction(action.text)
                             else fact.text).strip(),
                    "source_turn_ids": sorted(set(base.source_turn_ids) | set(sources)),
                    "updated_at": now,
                    "event_date": fact.date or base.event_date,
                    "score": None,
                })
            else:
                added.append(Memory(
                    id=str(uuid.uuid4()), text=fact.text.strip(), user_id=scope.user_id,
                    agent_id=scope.agent_id, session_id=batch[0].session_id,
                    source_turn_ids=sources, created_at=now, updated_at=now,
                    event_date=fact.date,
                ))
        kept = [m for m in updated.values() if m.id not in deletes]
        if added or kept:
            await asyncio.to_thread(self.index.upsert, added + kept)
        if deletes:
            await asyncio.to_thread(self.index.delete, deletes, scope.widened())
        result.added.extend(added)
        result.updated.extend(kept)
        result.deleted.extend(deletes)

