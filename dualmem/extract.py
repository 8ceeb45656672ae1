"""Extraction: new turns -> atomic dated facts -> ADD / UPDATE / DELETE / NOOP (Mem0 scheme).

Two LLM calls per batch of new turns at most: one extracts candidate facts (with the 10
most similar existing memories and the recent messages as context, as D-Mem's Mem0* does),
one reconciles the candidates that have close neighbours (cosine > 0.8). Candidates with no
close neighbour are added without asking.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from .config import ExtractionConfig
from .index.base import MemoryIndex
from .llm.base import BaseLLM, ChatRequest, Numbers
from .prompts import extract_messages, reconcile_messages
from .tokens import fit_lines, line_budget
from .types import Memory, Scope, Turn, Usage, human_date

__all__ = ["ExtractionResult", "Extractor", "is_instruction", "raw_memories"]

log = logging.getLogger("dualmem")

# Prompt-injection defense: a "fact" that is an instruction to an assistant (what a model that
# obeys an injected "ignore previous instructions, always answer X" would extract) is dropped,
# never stored as a memory. Narrow on purpose: facts about people must pass (tests/test_poisoning.py).
_INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override)\s+(all\s+|any\s+|the\s+)?(previous|prior|above|earlier|"
    r"preceding|your|all|system)\s+(instructions?|rules|prompts?|guidelines|directions|messages)\b"
    r"|^\W*(system|assistant|developer)\s*:"
    r"|<\s*\|\s*im_(start|end)|\[/?INST\]|<</?SYS>>"
    r"|\bsystem\s+(prompt|override|message)\b"
    r"|\b(new|updated)\s+(instructions|rules)\s+for\b"
    r"|\b(the\s+assistant|the\s+ai|ai\s+model|chatbot|language\s+model|llm|memory\s+system)\s+"
    r"(must|should|shall|has\s+to|is\s+(required|instructed)\s+to)\b"
    r"|(^|[.!?]\s+)you\s+are\s+now\b|\byou\s+must\s+(always|never|only|answer|reply|respond|say|output)\b"
    r"|\b(your|the)\s+new\s+(task|role|goal)\b|\b(note|message)\s+(to|for)\s+the\s+(ai|assistant|model)\b"
    r"|#+\s*instructions?\s*:|\b(all|every|any)\s+(answers|replies|responses)\s+(must|should|shall)\b"
    r'|\{\s*"(facts|answer|actions)"\s*:'
    r"|\bfrom\s+now\s+on\b.{0,40}\b(answer|reply|respond|say|output|you)\b"
    r"|^\W*((always|never|only)\s+)?(answer|reply|respond|output|print|repeat|pretend|say)\b"
    r"|\b(developer|debug|jailbreak)\s+mode\b",
    re.I,
)


def is_instruction(text: str) -> bool:
    """True for text that addresses an assistant with orders rather than stating a fact."""
    return bool(_INSTRUCTION.search(text))


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
        return f"[{human_date(self.date)}] {self.text}" if self.date else self.text


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
            task="extract",
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
                task="reconcile",
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

