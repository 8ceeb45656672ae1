"""Extraction: new turns -> atomic dated facts -> ADD / UPDATE / DELETE / NOOP (Mem0 scheme).

Two LLM calls per batch of new turns at most: one extracts candidate facts (with the 10
most similar existing memories and the recent messages as context, as D-Mem's Mem0* does),
one reconciles the candidates that have close neighbours (cosine > 0.8). Candidates with no
close neighbour are added without asking, and a candidate that restates a memory is a NOOP
without asking.

Nothing is destroyed over time: an UPDATE or DELETE supersedes the old memory, which stays
in the index with `valid_to` and `superseded_by` in its metadata (the new one gets
`valid_from` and `supersedes`), so "where did she live in March?" still finds it while "now"
questions see that it ended.

Sessions: facts are reconciled across every session of a user (or agent), but text never
moves between sessions. A memory belongs to the session of the turns it came from, and its
text and `source_turn_ids` come from that session only: an UPDATE from another session makes a
new memory from the new fact's own text (a merged text only when every memory the reconcile
prompt showed for it is of its session), a NOOP from
another session adds the fact to that session (its own copy, its own turns), and the old
memory only ever gets the `valid_to`/`superseded_by` link.
So a session-scoped read sees exactly its session's memories, and forgetting a session removes
its memories and reopens the ones they had closed (`DualMemory.delete_all`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ..config import ExtractionConfig
from ..index.base import MemoryIndex
from ..llm.base import (
    FACT_CHARS,
    FACTS_PER_REPLY,
    FACTS_REPLY_TOKENS,
    BaseLLM,
    ChatRequest,
    FactText,
    Numbers,
)
from ..prompts import extract_messages, is_instruction, reconcile_messages
from ..tasks import Task
from ..text import dated, tokenize
from ..tokens import fit_lines, line_budget
from ..types import Memory, Scope, Turn, Usage

__all__ = ["ExtractReply", "ExtractionResult", "Extractor", "raw_memories"]

# In a mixed index the raw turns nearest a batch or a fact (its own source turns first) come
# before the facts; this many extra results leave room for them, then they are dropped.
RAW_HEADROOM = 50

log = logging.getLogger("dualmem")


def _nullable(**bounds: object) -> dict[str, object]:
    """The schema of an optional string, its bounds inside the string's branch (llama.cpp's
    grammar ignores bounds written beside an anyOf); for constrained decoding only."""
    return {"anyOf": [{"type": "string", **bounds}, {"type": "null"}]}


class _Fact(BaseModel):
    text: FactText
    date: str | None = Field(None, json_schema_extra=_nullable(pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))
    turns: Numbers = Field(default_factory=list, json_schema_extra={"maxItems": 4})

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
    # bounded for constrained decoding (`llm.base.FACTS_PER_REPLY`); validation stays lenient
    facts: list[_Fact] = Field(json_schema_extra={"maxItems": FACTS_PER_REPLY})


class _Action(BaseModel):
    fact: int
    event: Literal["ADD", "UPDATE", "DELETE", "NOOP"]
    # a handle the prompt shows ("m2") and a merged text: bounded for constrained decoding only
    # (an empty text for an ADD stays valid)
    id: str | None = Field(None, json_schema_extra=_nullable(maxLength=8))
    text: str | None = Field(None, json_schema_extra=_nullable(maxLength=FACT_CHARS))

    @field_validator("event", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v


class ReconcileReply(BaseModel):
    # one action per new fact, bounded like the facts themselves, so the reply fits
    actions: list[_Action] = Field(json_schema_extra={"maxItems": FACTS_PER_REPLY})


@dataclass
class ExtractionResult:
    added: list[Memory] = field(default_factory=list)
    updated: list[Memory] = field(default_factory=list)
    noop: int = 0
    #: UPDATE/DELETE actions naming a memory that is not one of the fact's neighbours
    refused: int = 0
    usage: Usage = field(default_factory=Usage)


def _now() -> datetime:
    return datetime.now(UTC)


def raw_memories(turns: list[Turn], before: Turn | None = None) -> list[Memory]:
    """`extract=False`: every turn is indexed as it is, dated by its timestamp, except turns
    whose metadata says `"searchable": False` (a chat's own questions, say): they stay in the
    history, out of the index. Text that reads as an order to an assistant is indexed too (a
    user's data is never dropped): prompts quote it datamarked (`prompts.spotlight`).

    Each memory `follows` the turn before it in its session: `before` (the session's last
    stored turn, for the first of `turns`), then each of `turns` in order."""
    now = _now()
    previous = [before, *turns[:-1]]
    return [
        Memory(
            id=t.id,
            text=f"{t.speaker or t.role}: {t.text}",
            user_id=t.user_id,
            agent_id=t.agent_id,
            session_id=t.session_id,
            source_turn_ids=[t.id],
            # a microsecond apart in the batch's order: a context sorted by (day, created_at)
            # then reads one day's turns in the order they were said, not in rank order
            created_at=now + timedelta(microseconds=n),
            updated_at=now + timedelta(microseconds=n),
            event_date=t.timestamp.date().isoformat(),
            follows=p.id if p is not None and p.session_id == t.session_id else None,
            metadata={k: v for k, v in t.metadata.items() if isinstance(v, str | int | float)},
        )
        for n, (t, p) in enumerate(zip(turns, previous, strict=True))
        if t.text.strip() and t.metadata.get("searchable") is not False
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
        found = await asyncio.to_thread(
            self.index.search, " ".join(t.text for t in batch), wide,
            self.config.known_memories + RAW_HEADROOM,
        )
        # raw turns in a mixed index are context already (the recent messages), not facts
        known = [m for m in found if not m.is_raw][: self.config.known_memories]
        new, old = [t.render() for t in batch], [t.render() for t in recent]
        # cut over-long lines so the prompt fits the model (the history keeps the full text)
        budget = line_budget(self.llm.context_tokens, FACTS_REPLY_TOKENS, extract_messages([], [], []))
        lines = fit_lines(new + old + [m.render() for m in known], budget)
        request = ChatRequest(
            task=Task.EXTRACT,
            messages=extract_messages(lines[: len(new)], lines[len(new) : len(new) + len(old)],
                                      lines[len(new) + len(old) :]),
            max_tokens=FACTS_REPLY_TOKENS,
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
            self.index.nearest, [f.render() for f in facts], wide, self.config.neighbours + RAW_HEADROOM
        )
        close = [[m for m in ns if not m.is_raw and (m.score or 0) > self.config.neighbour_similarity]
                 [: self.config.neighbours] for ns in neighbours]
        actions: dict[int, _Action] = {}
        # a fact that restates a memory is a NOOP without asking: a small model asked about
        # an exact repeat may answer DELETE (mem0 #1674)
        for i, fact in enumerate(facts):
            restated = [m for m in close[i] if _restates(fact, m)]
            # this session's own copy first: one in another session only leads to an ADD here
            same = next((m for m in restated if m.scope == batch[0].scope), restated[0] if restated else None)
            if same is not None:
                actions[i] = _Action(fact=i + 1, event="NOOP", id=same.id)
        contested = [i for i, ns in enumerate(close) if ns and i not in actions]
        if contested:
            # the model names a memory by a short handle ("m2"), not by its id: a uuid costs ~37
            # tokens to copy, and a small model copies it wrong
            handles: dict[str, str] = {}  # memory id -> handle
            for i in contested:
                for m in close[i]:
                    handles.setdefault(m.id, f"m{len(handles) + 1}")
            request = ChatRequest(
                task=Task.RECONCILE,
                messages=reconcile_messages(
                    [(facts[i].text, [(handles[m.id], m.render()) for m in close[i]]) for i in contested]
                ),
                max_tokens=FACTS_REPLY_TOKENS,
            )
            reply_r, usage = await self.llm.ajson(request, ReconcileReply, retries=self.config.reply_retries)
            result.usage = result.usage + usage
            ids = {h: mid for mid, h in handles.items()}
            for a in reply_r.actions:
                if 1 <= a.fact <= len(contested):
                    # an unknown handle stays as written, matches no neighbour and is refused
                    actions[contested[a.fact - 1]] = a.model_copy(update={"id": ids.get(a.id, a.id)})
        await self._apply(batch, facts, close, actions, result)

    async def _apply(self, batch: list[Turn], facts: list[_Fact], close: list[list[Memory]],
                     actions: dict[int, _Action], result: ExtractionResult) -> None:
        now = _now()
        added: list[Memory] = []
        changed: dict[str, Memory] = {}  # old memories closed or re-cited, by id
        for i, fact in enumerate(facts):
            sources = _sources(fact, batch)
            action = actions.get(i)
            event = action.event if action else "ADD"
            # an id the model invents (or copies from elsewhere) is never touched: only this
            # fact's own neighbours, all from this scope, may be superseded
            target = next((m for m in close[i] if action and m.id == action.id), None)
            if event != "ADD" and target is None:
                if event != "NOOP":
                    result.refused += 1
                    log.warning("refused %s of memory id %r: not a neighbour of fact %r; added "
                                "the fact instead", event, action.id if action else None, fact.text)
                event = "ADD"
            text = fact.text
            # a merged text may repeat any memory its prompt showed: kept only when all of
            # them are of this session, and when it is not the replaced memory's own text (the
            # local 0.5B model "updated" "lives in Lisbon" to itself on hearing of a move)
            if (event == "UPDATE" and action.text and not is_instruction(action.text)
                    and all(m.scope == batch[0].scope for m in close[i])
                    and _norm(action.text) != _norm(target.text)):
                text = action.text
            if event in ("UPDATE", "DELETE") and _norm(text) == _norm(target.text):
                # what would replace the memory says what it says: a fact already known is a
                # NOOP, never a change (the 0.5B model re-extracts an earlier line shown as
                # context and then "updates" the memory to it, closing it at the wrong date)
                event = "NOOP"
            if event == "NOOP" and target.scope != batch[0].scope:
                # restated in another session: that session gets its own copy, so that its
                # reads see it, and the old memory does not become part of this session
                event, target = "ADD", None
            if event == "NOOP":
                result.noop += 1
                base = changed.get(target.id, target)
                if not set(sources) <= set(base.source_turn_ids):  # restated: cite it too
                    changed[target.id] = base.model_copy(update={
                        "source_turn_ids": sorted(set(base.source_turn_ids) | set(sources)),
                        "score": None,
                    })
                continue
            base = changed.get(target.id, target) if target is not None else None
            day = fact.date
            if base is not None and day and base.event_date and day < base.event_date[:10]:
                # a fact that supersedes another cannot predate it: the model copied an older
                # line's date (it closed a June fact "until 10 March"); the turn's date holds
                day = _turn_date(batch, sources)
            memory = Memory(
                id=str(uuid.uuid4()), text=text.strip(), user_id=batch[0].user_id,
                agent_id=batch[0].agent_id, session_id=batch[0].session_id,
                source_turn_ids=sources, created_at=now, updated_at=now, event_date=day,
            )
            if base is not None and "valid_to" not in base.metadata:
                # UPDATE and DELETE supersede: the old memory stays, closed at this fact's date
                when = day or _turn_date(batch, sources)
                changed[base.id] = base.model_copy(update={
                    "metadata": {**base.metadata, "valid_to": when, "superseded_by": memory.id},
                    "updated_at": now, "score": None,
                })
                memory.metadata.update(valid_from=when, supersedes=base.id)
            added.append(memory)
        if added or changed:
            await asyncio.to_thread(self.index.upsert, added + list(changed.values()))
        result.added.extend(added)
        result.updated.extend(changed.values())


def _restates(fact: _Fact, memory: Memory) -> bool:
    return (_norm(fact.text) == _norm(memory.text)
            and (fact.date is None or memory.event_date in (None, fact.date)))


def _norm(text: str) -> str:
    # every word counts here ("has" vs "had"), unlike `text.tokenize`, which drops stop words
    return " ".join(re.findall(r"\w+", text.lower()))


def _sources(fact: _Fact, batch: list[Turn]) -> list[str]:
    """The batch turns a fact cites; with no valid number, the turn sharing most words with
    it (not the whole batch, which would credit every turn with every fact)."""
    cited = [batch[n - 1].id for n in fact.turns if 1 <= n <= len(batch)]
    if cited:
        return list(dict.fromkeys(cited))
    words = set(tokenize(fact.text))
    return [max(batch, key=lambda t: len(words & set(tokenize(t.text)))).id]


def _turn_date(batch: list[Turn], ids: list[str]) -> str:
    return next(t for t in batch if t.id == ids[0]).timestamp.date().isoformat()

