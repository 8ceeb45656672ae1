"""Paired comparisons in the benchmark report: F1 differences with a paired bootstrap interval,
final-context evidence recall of escalated questions, and what each weighed answer scored."""

from __future__ import annotations

import pytest

from dualmem.bench.paired import paired, paired_lines
from dualmem.bench.record import Record, Weighed


def rec(system: str, q: int, f1: float, **extra) -> Record:
    return Record(system=system, conversation="c", q=q, category=1, category_name="multi-hop",
                  question=f"q{q}", f1=f1, **extra)


def test_differences_are_paired_per_question_with_an_interval() -> None:
    fast = [rec("fast", q, f) for q, f in enumerate([0.0, 0.5, 1.0, 0.0])]
    full = [rec("full", q, f) for q, f in enumerate([1.0, 0.5, 1.0, 0.0])]
    extra = rec("full", 9, 1.0)  # no fast answer to pair it with: left out
    entry = paired([*fast, *full, extra])["full"]["vs_fast"]
    assert entry["n"] == 4 and entry["diff"] == pytest.approx(0.25)
    low, high = entry["ci95"]
    assert 0.0 <= low <= 0.25 <= high <= 1.0


def test_escalated_questions_report_the_recall_of_the_final_context() -> None:
    records = [
        rec("fast", 0, 0.0),
        rec("gated", 0, 1.0, escalated=True, evidence=["D1:1", "D2:1"], retrieved=["D1:1", "D9:9"],
            context=["D1:1", "D2:1"],
            candidates=[Weighed(source="fast", text="a", f1=0.0), Weighed(source="evidence", text="b",
                                                                            won=True, f1=1.0)]),
        rec("fast", 1, 1.0),
        rec("gated", 1, 1.0, escalated=False, evidence=["D3:1"], retrieved=["D3:1"], context=["D3:1"]),
    ]
    entry = paired(records)["gated"]
    assert entry["escalated_recall"] == {"n": 1, "fast_context": 0.5, "final_context": 1.0}
    assert entry["sources"] == {"fast": {"n": 1, "f1_alone": 0.0, "won": 0},
                                "evidence": {"n": 1, "f1_alone": 1.0, "won": 1}}
    table = "\n".join(paired_lines(paired(records)))
    assert "| gated | 2 | +0.500 |" in table and "evidence 1.000 (1/1)" in table


def test_a_run_without_the_base_system_compares_nothing() -> None:
    # gate-only runs have no `fast` system: nothing to pair, and no error
    records = [rec("gate:signals", q, 0.5, escalated=True, evidence=["D1:1"], context=["D1:1"])
               for q in range(3)]
    entry = paired(records)["gate:signals"]
    assert "vs_fast" not in entry and entry["escalated_recall"]["n"] == 3
