"""Typed, JSON-serialisable values that cross the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .text import dated, human_date, human_day

__all__ = [
    "Answer",
    "AnswerPath",
    "AuditLabels",
    "Evidence",
    "Fact",
    "GateReport",
    "Memory",
    "Scope",
    "SignalResult",
    "TokenLogprob",
    "Turn",
    "Usage",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scope(_Model):
    """Who a turn or memory belongs to. At least one id must be set on every call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None

    @property
    def partition_key(self) -> str:
        """The id field that partitions this scope: the user when given, else the agent, else
        the session."""
        if self.user_id is not None:
            return "user_id"
        return "agent_id" if self.agent_id is not None else "session_id"

    @property
    def partition(self) -> str:
        """The hard partition, e.g. "user:maya".

        Stores keep partitions physically apart (own Chroma collection, own row key), so a
        wrong filter value can narrow a result but never reach into another partition.
        """
        key = self.partition_key
        return f"{key.removesuffix('_id')}:{getattr(self, key)}"


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
    score: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def render(self) -> str:
        text = dated(self.text, self.event_date)
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


# which system produced the answer; not `Path`, which would shadow pathlib.Path for importers
AnswerPath = Literal["fast", "deliberate"]


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
    reason: str = ""
    degraded: bool = False
    gate: GateReport | None = None
    evidence: Evidence = Field(default_factory=Evidence)
    memories: list[Memory] = Field(default_factory=list)
    usage: dict[str, Usage] = Field(default_factory=dict)
    latency: dict[str, float] = Field(default_factory=dict)
    logprobs: list[TokenLogprob] | None = None

    @property
    def total_usage(self) -> Usage:
        total = Usage()
        for u in self.usage.values():
            total = total + u
        return total
