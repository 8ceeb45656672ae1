"""The benchmark's two shared shapes: a system's name, and one answered question.

`System.parse` reads the system-name grammar (`fast`, `gated:audit`, `gate:signals`, ...) once;
`Record` is one line of `questions.jsonl`, written by `run.py` and read by `report.py`. A
field left `None` does not apply to that record (no F1 for category 5, no gate for `fast`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..answering.gate import Policy
from ..answering.pipeline import StrategyName
from ..errors import InvalidInputError
from ..types import Usage

__all__ = ["KINDS", "PEER", "POLICIES", "STRATEGIES", "Record", "System", "Weighed", "read_records"]

Kind = Literal["fast", "gated", "gate", "full", "rag", "fullctx", "retrieval", "llamaindex"]
KINDS: tuple[str, ...] = get_args(Kind)
PEER = "llamaindex"
POLICIES: tuple[str, ...] = get_args(Policy)
STRATEGIES: tuple[str, ...] = get_args(StrategyName)
_WITH_POLICY = ("gated", "gate")


@dataclass(frozen=True)
class System:
    """One benchmarked system.

    `<kind>` runs DualMemory's mode of that name or a baseline: `rag` (top-k raw turns, one
    call), `fullctx` (the whole history in one call), `retrieval` (no LLM: search recall).
    `gated:<policy>` is the gated mode with that policy (plain `gated` uses --policy or the
    config's); `gate:<policy>` runs the gate but never deliberates: its AUROC for the price of
    the fast path. `full:<strategy>` always deliberates with that System 2 strategy (plain
    `full` and `gated` use the config's `deliberation`). `llamaindex` is the peer, LlamaIndex's
    `Memory` with a vector block (`peers.py`); `llamaindex:facts` adds its fact-extraction
    block; `retrieval:llamaindex` is the peer's evidence recall, no LLM.
    """

    name: str
    kind: Kind
    policy: Policy | None = None
    strategy: StrategyName | None = None
    facts: bool = False
    peer: bool = False

    @classmethod
    def parse(cls, name: str) -> System:
        kind, colon, option = name.partition(":")
        plain = not colon and kind in KINDS and kind != "gate"
        with_policy = colon and kind in _WITH_POLICY and option in POLICIES
        with_strategy = colon and kind == "full" and option in STRATEGIES
        facts = bool(colon) and kind == PEER and option == "facts"
        peer_retrieval = bool(colon) and kind == "retrieval" and option == PEER
        if not (plain or with_policy or with_strategy or facts or peer_retrieval):
            raise InvalidInputError(
                f"unknown system {name!r}: use {', '.join(KINDS)}, gated:<policy> or gate:<policy> "
                f"with a policy among {', '.join(POLICIES)}, full:<strategy> with a strategy "
                f"among {', '.join(STRATEGIES)}, {PEER}:facts or retrieval:{PEER}"
            )
        policy = option if with_policy else None
        strategy = option if with_strategy else None
        peer = kind == PEER or peer_retrieval
        return cls(name, kind, policy, strategy, facts, peer)  # type: ignore[arg-type]

    @property
    def deliberates(self) -> bool:
        """A system that deliberates when its gate fails."""
        return self.kind == "gated"

    @property
    def has_gate(self) -> bool:
        """A gated system, or a `gate:<policy>` one that only records what its gate decided."""
        return self.kind in _WITH_POLICY

    @property
    def searches(self) -> bool:
        """Whether its answers come from a search (full and fullctx read the whole history)."""
        return self.kind not in ("full", "fullctx")

    def escalated(self, record: Record) -> bool:
        # a gate-only system never deliberates: its escalation is the gate's would-be decision
        return bool(record.gate_escalate if self.kind == "gate" else record.escalated)


class Weighed(BaseModel):
    """One answer the arbiter weighed for a record (see `dualmem.types.Candidate`), with the F1
    it would have scored had it won."""

    model_config = ConfigDict(extra="forbid")

    source: str
    text: str
    support: float | None = None
    newest: datetime | None = None
    won: bool = False
    f1: float | None = None


class Record(BaseModel):
    """One question answered by one system: one line of `questions.jsonl`."""

    model_config = ConfigDict(extra="forbid")

    system: str
    conversation: str
    q: int
    category: int
    category_name: str
    question: str
    gold: str | None = None
    evidence: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    cache_hits: int = 0
    error: str | None = None  # a dualmem or model error: retried on resume
    skipped: str | None = None  # why this system could not answer it (e.g. a context too small)
    # the answer, for systems that answer
    prediction: str | None = None
    path: str | None = None
    tier: str | None = None
    reason: str | None = None
    degraded: bool | None = None
    escalated: bool | None = None
    gate_score: float | None = None
    gate_passed: bool | None = None
    gate_escalate: bool | None = None
    gate_signals: dict[str, float | None] | None = None
    gate_features: dict[str, float | None] | None = None  # what the learned gate reads: `calibrate --fit`
    usage: dict[str, Usage] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    calls: int | None = None
    latency: dict[str, float] | None = None
    # evidence turn ids in rank order; `retrieved_deep` from a deeper search (retrieval only)
    retrieved: list[str] | None = None
    retrieved_deep: list[str] | None = None
    # the question's words when no retrieved memory holds any (`gate.signals.unasked`: the
    # arbiter's condition for a NONE to win); retrieval only
    unasked: list[str] | None = None
    # the turns of the context that produced the final answer (fast: the top-k memories')
    context: list[str] | None = None
    # System 2: its strategy, every answer the arbiter weighed, and why the winner won
    strategy: str | None = None
    candidates: list[Weighed] | None = None
    arbitration: str | None = None
    # scores: F1 for categories 1-4, refusal checks for category 5
    f1: float | None = None
    f1_mem0: float | None = None
    refusal: bool | None = None
    refusal_or_none: bool | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.system, self.conversation, self.q)

    @property
    def answered(self) -> bool:
        return self.prediction is not None

    @property
    def tokens(self) -> int:
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def line(self) -> str:
        return self.model_dump_json() + "\n"

    @classmethod
    def from_line(cls, line: str) -> Record:
        return cls.model_validate_json(line)


def read_records(path: Path) -> list[Record]:
    """The records of a `questions.jsonl`, but for a last line cut by a crash."""
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(Record.from_line(line))
        except ValidationError:
            continue
    return records
