"""Typed, JSON-serialisable values that cross the public API."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ScopeError
from .text import dated, human_date, human_day, resolve_relative

__all__ = [
    "Answer",
    "AnswerPath",
    "AuditLabels",
    "Candidate",
    "Evidence",
    "Fact",
    "GateReport",
    "Memory",
    "Mode",
    "Policy",
    "Scope",
    "SignalResult",
    "TokenLogprob",
    "Turn",
    "StrategyName",
    "Usage",
]


#: how `answer` works: "fast" never escalates, "gated" asks the quality gate, "full" always deliberates
Mode = Literal["fast", "full", "gated"]
#: the quality gate's policy (see `dualmem.answering.gate.policy`)
Policy = Literal["audit", "signals", "cascade", "majority", "consensus", "learned", "entropy"]
#: System 2's strategy: "evidence" (search the raw turns, read the best lines; built for
#: small readers) or "scan" (D-Mem's chunked fact extraction, after the neighbour tier)
StrategyName = Literal["evidence", "scan"]
#: how the `evidence` strategy picks the lines it reads: by search rank, or the model selects them
SelectBy = Literal["rank", "model"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


ScopeKey = Literal["user_id", "agent_id", "session_id"]
SCOPE_KEYS: tuple[ScopeKey, ...] = ("user_id", "agent_id", "session_id")
MAX_ID_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_unicode(value: str) -> bool:
    """False for lone surrogates: storage layers cannot encode them (UnicodeEncodeError)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Scope(_Model):
    """Who a turn or memory belongs to: at least one valid id, checked on construction.

    The partition (user, else agent, else session) is a hard wall: stores keep partitions
    physically apart. `widened()` and `whole_partition()` are the two ways to look past the
    session; `contains` says whether a record lies inside this scope.

    ```python
    scope = Scope(user_id="alice", session_id="s1")
    scope.partition                      # "user:alice"
    scope.widened()                      # Scope(user_id="alice"): every session of alice
    Scope()                              # ScopeError: pass user_id=..., agent_id=... or session_id=...
    ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None

    def __init__(
        self, *, user_id: str | None = None, agent_id: str | None = None, session_id: str | None = None
    ) -> None:
        try:
            super().__init__(user_id=user_id, agent_id=agent_id, session_id=session_id)
        except ValidationError as e:
            # the rule raises ScopeError; pydantic wraps it (ScopeError is a ValueError):
            # direct construction gives the caller the typed error back
            for error in e.errors():
                cause = error.get("ctx", {}).get("error")
                if isinstance(cause, ScopeError):
                    raise cause from None
            raise

    @model_validator(mode="before")
    @classmethod
    def _check_ids(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        for key in SCOPE_KEYS:
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise ScopeError(f"{key} must be a string, got {type(value).__name__}")
            if (not value.strip() or len(value) > MAX_ID_LENGTH or _CONTROL.search(value)
                    or not is_unicode(value)):
                raise ScopeError(
                    f"{key}={value[:40]!r} is not a valid id: use 1-{MAX_ID_LENGTH} printable characters"
                )
        if all(data.get(key) is None for key in SCOPE_KEYS):
            raise ScopeError("every call needs a scope: pass user_id=..., agent_id=... or session_id=...")
        return data

    @property
    def partition_key(self) -> ScopeKey:
        """The id field that partitions this scope: the user when given, else the agent, else
        the session."""
        return _partition_key(_ids(self))

    @property
    def partition(self) -> str:
        """The hard partition, e.g. "user:maya".

        Stores keep partitions physically apart (own Chroma collection, own row key), so a
        wrong filter value can narrow a result but never reach into another partition.
        """
        return _partition(_ids(self))

    def widened(self) -> Scope:
        """Every session of this scope's user (or agent): the session id dropped.

        Where facts about a person are reconciled, where a forgotten session's merged memories
        are looked for, and what long-term recall searches. A bare session stays itself.
        """
        if self.user_id is None and self.agent_id is None:
            return self
        return Scope(user_id=self.user_id, agent_id=self.agent_id)

    def whole_partition(self) -> Scope:
        """Only the partitioning id: everything stored in this scope's partition."""
        key = self.partition_key
        return Scope(**{key: getattr(self, key)})

    def contains(self, record: Scope | Turn | Memory | Mapping[str, Any]) -> bool:
        """Whether a record (a turn, a memory, a scope, or a mapping of its ids, such as index
        metadata) lies in this scope: in its partition and matching every id it sets."""
        ids = _ids(record)
        # with every id of this scope matched, the partitions agree when the keys do
        return all(
            ids.get(key) == value for key in SCOPE_KEYS if (value := getattr(self, key)) is not None
        ) and _partition_key(ids) == self.partition_key


def _ids(record: Any) -> Mapping[str, Any]:
    if isinstance(record, Mapping):
        return record
    return {key: getattr(record, key) for key in SCOPE_KEYS}


def _partition_key(ids: Mapping[str, Any]) -> ScopeKey:
    if ids.get("user_id") is not None:
        return "user_id"
    return "agent_id" if ids.get("agent_id") is not None else "session_id"


def _partition(ids: Mapping[str, Any]) -> str:
    key = _partition_key(ids)
    return f"{key.removesuffix('_id')}:{ids.get(key)}"


class Turn(_Model):
    """One raw message, stored losslessly in the history."""

    id: str
    role: str = "user"
    speaker: str | None = None
    text: str
    timestamp: datetime
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    seq: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        """The scope this turn was stored under."""
        return Scope(user_id=self.user_id, agent_id=self.agent_id, session_id=self.session_id)

    def render(self) -> str:
        """The line a prompt shows for this turn."""
        who = self.speaker or self.role
        return f"[{human_day(self.timestamp)}] {who}: {self.text}"


class Memory(_Model):
    """One extracted (or raw-turn) memory in the index."""

    id: str
    text: str
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    source_turn_ids: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    event_date: str | None = None
    #: raw turns: the id of the turn before this one in its session (the one it often answers:
    #: "Yes, in May!" means little alone), which search lends part of its word matches
    follows: str | None = None
    #: cosine similarity to the query (search results only)
    score: float | None = None
    #: the ranking score search results are ordered by, best first (hybrid search: the fused
    #: reciprocal-rank score, plus one per rare identifier of the query the memory holds)
    relevance: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def scope(self) -> Scope:
        """The scope this memory was indexed under."""
        return Scope(user_id=self.user_id, agent_id=self.agent_id, session_id=self.session_id)

    @property
    def is_raw(self) -> bool:
        """A raw turn indexed as it is (its id is its turn's), as opposed to an extracted fact."""
        return self.source_turn_ids == [self.id]

    def split_speaker(self) -> tuple[str | None, str]:
        """(speaker, what they said) for a raw turn, whose text reads "speaker: text"
        (`ingest.extract.raw_memories`); (None, text) for anything else."""
        if self.is_raw:
            head, colon, rest = self.text.partition(": ")
            if colon:
                return head, rest
        return None, self.text

    def resolved_text(self) -> str:
        """The text, and for a raw turn each relative date in it ("yesterday") followed by the
        date it means, read against the day it was said: asked "when?", a 0.5B reader copies
        the line's date instead of working it out. (An extracted fact's date is the event's,
        not the day its words were said, so its text stays as it is.)"""
        if not self.event_date or not self.is_raw:
            return self.text
        try:
            said = date.fromisoformat(self.event_date[:10])
        except ValueError:
            return self.text
        return resolve_relative(self.text, said)

    def render(self, *, resolve_dates: bool = False) -> str:
        """The line a prompt shows for this memory (`resolve_dates`: with `resolved_text`)."""
        text = dated(self.resolved_text() if resolve_dates else self.text, self.event_date)
        # a superseded memory says when it stopped being true, so answers prefer the new one
        until = self.metadata.get("valid_to")
        return f"{text} (until {human_date(until)})" if isinstance(until, str) else text


class Usage(_Model):
    """Token and call counts of one or more LLM calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            calls=self.calls + other.calls,
        )


class TokenLogprob(_Model):
    """One generated token with its logprob and the top alternatives (token -> logprob)."""

    token: str
    logprob: float
    top_logprobs: dict[str, float] = Field(default_factory=dict)


class SignalResult(_Model):
    """One gate signal: a score in [0, 1] (1 = trustworthy), its threshold and verdict."""

    name: str
    score: float | None
    threshold: float | None = None
    passed: bool | None
    available: bool = True
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class AuditLabels(_Model):
    """D-Mem's Quality Gating verdicts (pass = True).

    `malformed`: no verdict could be read, and all three count as failed. Then `raw` holds the
    unreadable reply, or `error` says why the audit call itself failed.
    """

    relevance: bool
    faithfulness: bool
    completeness: bool
    malformed: bool = False
    raw: str | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        """All three dimensions passed: the only way an audit lets a fast answer stand."""
        return self.relevance and self.faithfulness and self.completeness

    @property
    def share(self) -> float:
        """The share of the three dimensions that passed."""
        return (self.relevance + self.faithfulness + self.completeness) / 3


class GateReport(_Model):
    """Why the fast answer stood or was escalated."""

    policy: str
    passed: bool
    escalate: bool
    score: float | None = None
    signals: list[SignalResult] = Field(default_factory=list)
    audit: AuditLabels | None = None
    reason: str = ""


class Fact(_Model):
    """A question-relevant fact found by deliberation, with the turns behind it."""

    text: str
    score: float
    turn_ids: list[str] = Field(default_factory=list)
    timestamp: str | None = None
    speaker: str | None = None


class Evidence(_Model):
    memory_ids: list[str] = Field(default_factory=list)
    turn_ids: list[str] = Field(default_factory=list)
    facts: list[Fact] = Field(default_factory=list)


#: what the reader replies when the memories do not hold the answer (`prompts.ANSWER_SYSTEM`)
NO_ANSWER = "NONE"
#: `Answer.reply` in its place
NO_ANSWER_SENTENCE = "Nothing in memory answers this question."

# which system produced the answer; not `Path`, which would shadow pathlib.Path for importers
AnswerPath = Literal["fast", "deliberate"]


class Candidate(_Model):
    """One answer the arbiter weighed after an escalation: which phase gave it, and how well
    System 2's raw evidence supports it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    text: str
    #: share of the answer's words found in System 2's evidence lines (None: a bare yes/no,
    #: which words cannot ground)
    support: float | None = None
    #: when the newest evidence line holding the answer was said (what "now" questions go by)
    newest: datetime | None = None
    #: the turns of the context the answer was read from
    turn_ids: list[str] = Field(default_factory=list)
    won: bool = False


class Answer(_Model):
    """The result of `DualMemory.answer`: the text plus the full trace of how it was made.

    A value: built once from the results of the phases that ran (`answering.pipeline`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str
    text: str
    path: AnswerPath = "fast"
    tier: str | None = None
    mode: str = "fast"
    #: the System 2 strategy that deliberated (None when System 2 did not run)
    strategy: str | None = None
    reason: str = ""
    degraded: bool = False
    gate: GateReport | None = None
    evidence: Evidence = Field(default_factory=Evidence)
    #: every answer weighed after an escalation, the winner marked; `arbitration` says why
    candidates: list[Candidate] = Field(default_factory=list)
    arbitration: str = ""
    memories: list[Memory] = Field(default_factory=list)
    #: ids of the memories read whose text looks like an instruction to an assistant: quoted
    #: datamarked in the prompts (`prompts.spotlight`), kept, and reported here
    flagged: list[str] = Field(default_factory=list)
    usage: dict[str, Usage] = Field(default_factory=dict)
    latency: dict[str, float] = Field(default_factory=dict)
    logprobs: list[TokenLogprob] | None = None

    @property
    def found(self) -> bool:
        """False when the memory held no answer: the reader's `NONE` sentinel (or nothing)."""
        return self.text.strip().rstrip(".").upper() not in (NO_ANSWER, "")

    @property
    def reply(self) -> str:
        """The answer as a person or an agent should read it: the text, or a plain sentence
        when the memory held no answer (instead of the `NONE` sentinel)."""
        return self.text if self.found else NO_ANSWER_SENTENCE

    @property
    def total_usage(self) -> Usage:
        total = Usage()
        for u in self.usage.values():
            total = total + u
        return total
