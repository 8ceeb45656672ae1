"""LoCoMo and RealTalk loaders: conversations as dated sessions of turns, plus their questions.

Both data sets are read from a path the user gives (never copied into the project). Turn ids
are the data sets' `dia_id`s ("D3:7"), so evidence references map straight onto stored turns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidInputError
from ..inputs import parse_timestamp

__all__ = [
    "CATEGORY_NAMES",
    "BenchTurn",
    "Conversation",
    "Dataset",
    "Question",
    "Session",
    "load_dataset",
    "load_locomo",
    "load_realtalk",
    "parse_evidence",
]

Dataset = Literal["locomo", "realtalk"]

# BENCHMARKS.md: the integers do not follow the paper's listing order (4 is single-hop)
CATEGORY_NAMES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}

_SESSION = re.compile(r"session_(\d+)$")
# lenient: "D3:7", "D 2:18", "D:11:26", "D17;39", "D20:6.", ranges "D12:3-D12:5" / "D12:3-5"
_EVIDENCE = re.compile(r"D\s*:?\s*(\d+)\s*[:;]\s*(\d+)(?:\s*-\s*(?:D\s*:?\s*(\d+)\s*[:;]\s*)?(\d+))?")
_MAX_RANGE = 50


@dataclass
class BenchTurn:
    id: str
    speaker: str
    text: str
    timestamp: datetime


@dataclass
class Session:
    id: str
    date: datetime
    turns: list[BenchTurn]

    def messages(self) -> list[dict[str, Any]]:
        """The session's turns as `DualMemory.add` takes them."""
        return [
            {"role": "user", "speaker": t.speaker, "content": t.text, "id": t.id, "timestamp": t.timestamp}
            for t in self.turns
        ]


@dataclass
class Question:
    index: int
    question: str
    answer: str | None
    category: int
    evidence: list[str]
    raw_evidence: list[str] = field(default_factory=list)
    adversarial_answer: str | None = None

    @property
    def category_name(self) -> str:
        return CATEGORY_NAMES.get(self.category, f"category {self.category}")


@dataclass
class Conversation:
    id: str
    speakers: list[str]
    sessions: list[Session]
    questions: list[Question]

    @property
    def turns(self) -> list[BenchTurn]:
        return [t for s in self.sessions for t in s.turns]


def parse_evidence(refs: list[Any], known: set[str] | None = None) -> list[str]:
    """Evidence references -> distinct turn ids, dropping unparseable or unknown ones."""
    out: list[str] = []
    for ref in refs:
        for m in _EVIDENCE.finditer(str(ref)):
            session, turn = int(m[1]), int(m[2])
            ids = [f"D{session}:{turn}"]
            if m[4] is not None:
                end_session = int(m[3]) if m[3] else session
                if end_session == session and 0 < int(m[4]) - turn <= _MAX_RANGE:
                    ids = [f"D{session}:{t}" for t in range(turn, int(m[4]) + 1)]
                else:
                    ids.append(f"D{end_session}:{int(m[4])}")
            out.extend(i for i in ids if i not in out and (known is None or i in known))
    return out


def _with_caption(text: str, caption: Any) -> str:
    # the images were never released: their BLIP caption is the only image content
    return f"{text} [shares a photo: {caption}]" if caption else text


def _sessions(obj: dict[str, Any]) -> list[int]:
    # loop over session keys, not date keys (conv-26 has dates for sessions that don't exist)
    return sorted(int(m[1]) for k in obj if (m := _SESSION.match(k)))


def _questions(qa: list[dict[str, Any]], known: set[str]) -> list[Question]:
    out = []
    for i, q in enumerate(qa):
        answer = q.get("answer")
        out.append(
            Question(
                index=i,
                question=q["question"],
                answer=None if answer is None else str(answer),  # 6 LoCoMo answers are ints
                category=int(q["category"]),
                evidence=parse_evidence(q.get("evidence") or [], known),
                raw_evidence=[str(e) for e in q.get("evidence") or []],
                adversarial_answer=q.get("adversarial_answer"),
            )
        )
    return out


def load_locomo(path: str | Path) -> list[Conversation]:
    """LoCoMo (`locomo10.json` layout): a list of samples."""
    data = _read(path)
    if not isinstance(data, list):
        raise InvalidInputError(f"{path}: expected a LoCoMo list of samples")
    conversations = []
    for sample in data:
        conv = sample["conversation"]
        sessions = []
        for n in _sessions(conv):
            date = parse_timestamp(conv[f"session_{n}_date_time"])
            turns = [
                BenchTurn(t["dia_id"], t["speaker"], _with_caption(t["text"], t.get("blip_caption")), date)
                for t in conv[f"session_{n}"]
            ]
            sessions.append(Session(f"session_{n}", date, turns))
        known = {t.id for s in sessions for t in s.turns}
        conversations.append(
            Conversation(
                sample["sample_id"],
                [conv["speaker_a"], conv["speaker_b"]],
                sessions,
                _questions(sample.get("qa", []), known),
            )
        )
    return conversations


def _realtalk_time(value: str) -> datetime:
    # day first: "17.11.2024, 21:37:05"
    return parse_timestamp(datetime.strptime(value.strip(), "%d.%m.%Y, %H:%M:%S"))


def load_realtalk(path: str | Path) -> list[Conversation]:
    """RealTalk: one `Chat_<k>_<A>_<B>.json` file, or a directory of them (id = file stem)."""
    path = Path(path)
    files = sorted(path.glob("Chat_*.json"), key=_chat_number) if path.is_dir() else [path]
    if not files:
        raise InvalidInputError(f"{path}: no RealTalk Chat_*.json files found")
    conversations = []
    for f in files:
        chat = _read(f)
        sessions = []
        for n in _sessions(chat):
            messages = chat[f"session_{n}"]
            turns = [
                BenchTurn(
                    m["dia_id"],
                    m["speaker"],
                    _with_caption(m["clean_text"], m.get("blip_caption")),
                    _realtalk_time(m["date_time"]),
                )
                for m in messages
            ]
            date = _realtalk_time(chat.get(f"session_{n}_date_time") or messages[0]["date_time"])
            sessions.append(Session(f"session_{n}", date, turns))
        known = {t.id for s in sessions for t in s.turns}
        names = chat.get("name", {})
        conversations.append(
            Conversation(
                f.stem,
                [names.get("speaker_1", ""), names.get("speaker_2", "")],
                sessions,
                _questions(chat.get("qa", []), known),
            )
        )
    return conversations


def _chat_number(f: Path) -> int:
    m = re.match(r"Chat_(\d+)", f.name)
    return int(m[1]) if m else 0


def load_dataset(dataset: Dataset, path: str | Path) -> list[Conversation]:
    if dataset == "locomo":
        return load_locomo(path)
    if dataset == "realtalk":
        return load_realtalk(path)
    raise InvalidInputError(f"unknown dataset {dataset!r}: use 'locomo' or 'realtalk'")


def _read(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"cannot read benchmark data {path}: {e}") from e
