"""Benchmark output folders (`dualmem bench ... --out DIR`) for the inspector.

Only folders named at start-up (`serve --runs DIR`) are read, and from them only
`questions.jsonl` and the two plots: the API takes a folder's name, never a path. Each record
is marked right or wrong (F1 at or above the report's `WRONG_BELOW`; for category 5, a
refusal) and, for systems with a gate, what its escalation did:

- `paid` / `no gain` / `hurt`: System 2 ran, and the final answer scored above / the same as /
  below the fast answer (the arbiter's fast candidate, or the run's `fast` system);
- `warranted` / `wasted`: a gate-only system (`gate:<policy>`) would have escalated a wrong /
  a right fast answer;
- `missed`: the gate let a wrong answer through; `kept`: it let a right one through.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from ..bench.record import Record, System
from ..bench.report import WRONG_BELOW
from ..errors import ConfigError

__all__ = ["Outcome", "find_runs", "outcome", "router"]

QUESTIONS = "questions.jsonl"
PLOTS = {"risk-coverage": "risk-coverage.png", "frontier": "frontier.png"}
Outcome = Literal["paid", "no gain", "hurt", "warranted", "wasted", "missed", "kept"]
# what a row carries: the fields the page filters and shows (not the per-feature dumps)
_HEAVY = {"gate_features", "retrieved", "retrieved_deep", "context", "evidence"}


def find_runs(paths: list[Path]) -> dict[str, Path]:
    """name -> folder, for each path holding `questions.jsonl` and each such child of a path."""
    runs: dict[str, Path] = {}
    for path in paths:
        found = [path] if (path / QUESTIONS).is_file() else sorted(
            child for child in (path.iterdir() if path.is_dir() else []) if (child / QUESTIONS).is_file()
        )
        if not found:
            raise ConfigError(f"{path} holds no {QUESTIONS} (nor do its sub-folders): pass a "
                              "`dualmem bench --out` folder, or a folder of them")
        for folder in found:
            name, n = folder.name, 2
            while name in runs:  # two folders of one name: the later one gets a suffix
                name, n = f"{folder.name}-{n}", n + 1
            runs[name] = folder
    return runs


def correct(record: Record) -> bool | None:
    """Right or wrong, as the report counts it; None when the record was not scored."""
    if record.f1 is not None:
        return record.f1 >= WRONG_BELOW
    return record.refusal_or_none


def outcome(record: Record, fast_f1: float | None) -> Outcome | None:
    """What the gate's decision did for this record (see the module doc); None without a gate.
    `fast_f1`: the fast answer's F1 on the same question, when the run knows it."""
    system = System.parse(record.system)
    right = correct(record)
    if not system.has_gate or right is None:
        return None
    if not system.escalated(record):
        return "kept" if right else "missed"
    if not system.deliberates:
        return "wasted" if right else "warranted"
    fast = next((c.f1 for c in record.candidates or [] if c.source == "fast"), fast_f1)
    if fast is None or record.f1 is None:
        return None
    return "paid" if record.f1 > fast else "hurt" if record.f1 < fast else "no gain"


class Row(BaseModel):
    """One record as the page lists it."""

    index: int = Field(description="the line of questions.jsonl")
    correct: bool | None
    outcome: Outcome | None
    record: dict[str, Any]


class RunView(BaseModel):
    name: str
    total: int
    unreadable: int = Field(description="lines of questions.jsonl that are not records")
    facets: dict[str, list[Any]] = Field(description="the values each filter can take")
    counts: dict[str, int] = Field(description="outcomes among the filtered records")
    shown: int
    rows: list[Row]
    plots: list[str]


_cache: dict[Path, tuple[tuple[int, int], list[Record], int]] = {}


def _records(folder: Path) -> tuple[list[Record], int]:
    """The folder's records, read again only when the file changed (a run still writing)."""
    path = folder / QUESTIONS
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1], cached[2]
    records, unreadable = [], 0
    with path.open(encoding="utf-8") as lines:
        for line in filter(str.strip, lines):
            try:
                records.append(Record.from_line(line))
            except ValueError:  # a line cut by a crash, or from an older record format
                unreadable += 1
    _cache[path] = (stamp, records, unreadable)
    return records, unreadable


def view(name: str, folder: Path, filters: dict[str, Any], limit: int) -> RunView:
    records, unreadable = _records(folder)
    fast_f1 = {(r.conversation, r.q): r.f1 for r in records if r.system == "fast"}
    rows = [Row(index=i, correct=correct(r), outcome=outcome(r, fast_f1.get((r.conversation, r.q))),
                record=r.model_dump(mode="json", exclude=_HEAVY)) for i, r in enumerate(records)]
    facets = {
        "system": sorted({r.system for r in records}),
        "path": sorted({r.path for r in records if r.path}),
        "category": sorted({(r.category, r.category_name) for r in records}),
        "outcome": [o for o in get_args(Outcome) if any(row.outcome == o for row in rows)],
    }
    kept = [row for row in rows if _matches(row, filters)]
    return RunView(
        name=name, total=len(records), unreadable=unreadable, facets=facets,
        counts=dict(Counter(row.outcome for row in kept if row.outcome)), shown=len(kept), rows=kept[:limit],
        plots=[p for p, file in PLOTS.items() if (folder / file).is_file()],
    )


def _matches(row: Row, filters: dict[str, Any]) -> bool:
    r = row.record
    return all((
        filters["system"] is None or r["system"] == filters["system"],
        filters["path"] is None or r["path"] == filters["path"],
        filters["category"] is None or r["category"] == filters["category"],
        filters["correct"] is None or row.correct == filters["correct"],
        filters["outcome"] is None or row.outcome == filters["outcome"],
    ))


router = APIRouter(prefix="/v1/runs", tags=["benchmark runs"])


def _folder(request: Request, name: str) -> Path:
    runs: dict[str, Path] = request.app.state.runs
    if name not in runs:
        raise HTTPException(404, f"no benchmark run {name!r}: GET /v1/info lists them ({', '.join(runs)})")
    return runs[name]


@router.get("")
async def list_runs(request: Request) -> list[str]:
    """The benchmark output folders given at start-up, by name."""
    return list(request.app.state.runs)


@router.get("/{name}")
async def run(
    request: Request, name: str,
    system: str | None = None,
    path: Annotated[Literal["fast", "deliberate"] | None, Query(description="the answer's path")] = None,
    category: int | None = None,
    correct: Annotated[bool | None, Query(description="true: right answers only; false: wrong ones")] = None,
    outcome: Annotated[Outcome | None, Query(description="what the escalation did")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 2000,
) -> RunView:
    """A run's records, filtered, with what each escalation did, and the plots it has."""
    folder = _folder(request, name)
    filters = dict(system=system, path=path, category=category, correct=correct, outcome=outcome)
    return await asyncio.to_thread(view, name, folder, filters, limit)


@router.get("/{name}/plots/{plot}", response_class=FileResponse)
async def plot(request: Request, name: str, plot: Literal["risk-coverage", "frontier"]) -> FileResponse:
    """One of the run's plots (PNG), by name."""
    file = _folder(request, name) / PLOTS[plot]
    if not file.is_file():
        raise HTTPException(
            404, f"run {name!r} has no {PLOTS[plot]}: `dualmem bench` draws it with the bench extra"
        )
    return FileResponse(file, media_type="image/png")
