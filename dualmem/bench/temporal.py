"""Facts that change over time, with a real model: `dualmem bench temporal`.

Runs the temporal-change corpus (`tests/data/temporal_changes.json`: a statement in March, a
change in June, a question about then and one about now) through the quickstart's default
ingestion (extraction and reconciliation into the mixed index) and the fast path, with the
configured model. The unit tests script the model's side; this measures what the model does.

Per case: whether a memory holds the old fact closed at the change (`valid_to`), whether
saying the change again added or deleted nothing, and whether the "now" and "then" answers
name the new and the old value. An answer names a value by the words of one fact that the
other lacks ("Porto" against "Lisbon"); an answer holding words of both is counted as mixed.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Config
from ..llm.base import BaseLLM
from ..memory import DualMemory
from ..types import Memory

__all__ = ["distinct_words", "judge", "run_case", "run_temporal", "temporal_command"]

MARCH, JUNE = "2023-03-10T09:00:00", "2023-06-12T18:30:00"
_WORD = re.compile(r"[a-z0-9]+")
_COMMON = frozenset(
    "the a an and or of in on at to for with from is are was were be has have had her his their "
    "now still as by who what where which".split()
)


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _COMMON}


def distinct_words(fact: str, other: str) -> set[str]:
    """The words of `fact` that `other` lacks: what tells the two values apart."""
    return _words(fact) - _words(other)


def judge(answer: str, wanted: str, unwanted: str) -> str:
    """"right" if the answer names `wanted`'s value and not `unwanted`'s, "mixed" if both,
    else "wrong"."""
    words = _words(answer)
    hit, miss = words & distinct_words(wanted, unwanted), words & distinct_words(unwanted, wanted)
    if hit and not miss:
        return "right"
    return "mixed" if hit else "wrong"


def run_case(case: dict[str, Any], config: Config, llm: BaseLLM | None, data_dir: Path) -> dict[str, Any]:
    (said_before, fact_before), (said_after, fact_after) = case["before"], case["after"]
    speaker = fact_before.split()[0]  # the corpus names its person first in every fact
    memory = DualMemory(config.model_copy(update={"data_dir": data_dir, "extract": True}), llm=llm)
    try:
        turn = {"role": "user", "speaker": speaker}
        scope = {"user_id": "u", "session_id": "s"}
        first = memory.add({**turn, "content": said_before, "id": "t1"}, timestamp=MARCH, **scope)
        change = memory.add({**turn, "content": said_after, "id": "t2"}, timestamp=JUNE, **scope)
        facts_before = {m.id for m in _facts(memory)}
        again = memory.add({**turn, "content": said_after, "id": "t3"}, timestamp=JUNE, **scope)
        facts = _facts(memory)
        now = memory.answer(case["now"], user_id="u", mode="fast").text
        then = memory.answer(case["then"], user_id="u", mode="fast").text
    finally:
        memory.close()
    errors = [r.error for r in (first, change, again) if r.error]
    return {
        "kind": case["kind"],
        "facts": [m.render() for m in facts],
        # the old value kept and closed at the change, not rewritten or deleted
        "closed": any(m.metadata.get("valid_to") for m in facts),
        # saying the change again neither adds a fact nor deletes one
        "repeat_noop": {m.id for m in facts} == facts_before,
        "now": now,
        "now_judged": judge(now, fact_after, fact_before),
        "then": then,
        "then_judged": judge(then, fact_before, fact_after),
        "calls": sum(r.usage.calls for r in (first, change, again)),
        "errors": errors,
    }


def _facts(memory: DualMemory) -> list[Memory]:
    return [m for m in memory.get_all(user_id="u") if not m.is_raw]


def run_temporal(cases: list[dict[str, Any]], config: Config, llm: BaseLLM | None = None) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases):
            rows.append(run_case(case, config, llm, Path(tmp) / str(i)))
            typer.echo(f"case {i} {case['kind']}: now {rows[-1]['now_judged']}, "
                       f"then {rows[-1]['then_judged']}",
                       err=True)
    n = len(rows)
    return {
        "cases": n,
        "closed": sum(r["closed"] for r in rows),
        "repeat_noop": sum(r["repeat_noop"] for r in rows),
        "now": dict(Counter(r["now_judged"] for r in rows)),
        "then": dict(Counter(r["then_judged"] for r in rows)),
        "extraction_errors": sum(len(r["errors"]) for r in rows),
        "calls_per_case": sum(r["calls"] for r in rows) / n if n else 0.0,
        "rows": rows,
    }


def temporal_command(
    data: Annotated[Path, typer.Option(help="the corpus (JSON list of cases)")] = Path(
        "tests/data/temporal_changes.json"),
    out: Annotated[Path, typer.Option(help="output directory")] = Path("bench-out/temporal"),
) -> None:
    """Facts that change over time: extraction, reconciliation and now/then answers, real model."""
    cases = json.loads(data.read_text())
    config = Config.from_env()
    report = run_temporal(cases, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "temporal.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    summary = {k: v for k, v in report.items() if k != "rows"}
    typer.echo(json.dumps(summary, indent=2))
