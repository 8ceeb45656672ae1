"""Paired comparisons in the benchmark report: F1 differences with a paired bootstrap interval,
final-context evidence recall of escalated questions, and what each weighed answer scored."""

from __future__ import annotations

import pytest

from dualmem.bench.paired import compare_runs, paired, paired_lines
from dualmem.bench.record import Record, Weighed


def rec(system: str, q: int, f1: float | None, conversation: str = "c", **extra) -> Record:
    return Record(system=system, conversation=conversation, q=q, category=1, category_name="multi-hop",
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


# ------------------------------------------------------------------------- two runs compared


def run_dir(tmp_path, name: str, records: list[Record]):
    path = tmp_path / name
    path.mkdir()
    (path / "questions.jsonl").write_text("".join(r.line() for r in records) + '{"system": "fa')  # a cut line
    return path


def test_two_runs_are_compared_question_by_question(tmp_path) -> None:
    from typer.testing import CliRunner

    from dualmem.cli import app

    before = [rec("retrieval", q, None, evidence=["D1:1", "D1:2"], retrieved=r, conversation=c)
              for q, (c, r) in enumerate([("a", ["D1:1", "D9:9"]), ("a", ["D1:1", "D1:2"]),
                                          ("b", ["D9:9", "D1:1"]), ("b", [])])]
    after = [rec("retrieval", q, None, evidence=["D1:1", "D1:2"], retrieved=r, conversation=c)
             for q, (c, r) in enumerate([("a", ["D1:1", "D1:2"]), ("a", ["D1:1", "D1:2"]),
                                         ("b", ["D1:1", "D9:9"]), ("b", ["D1:2"])])]
    result = compare_runs(before, after, "retrieval", "retrieval", k=1)
    recall = result["measures"]["R@1"]
    # R@1: 0.5 -> 0.5, 0.5 -> 0.5, 0 -> 0.5, 0 -> 0.5; nothing has an F1
    assert recall["all"]["n"] == 4 and recall["all"]["diff"] == pytest.approx(0.25)
    assert (recall["all"]["better"], recall["all"]["worse"]) == (2, 0)
    assert recall["conversation"]["a"]["diff"] == 0 and recall["conversation"]["b"]["diff"] == 0.5
    assert "F1" not in result["measures"]
    # an answer of another system, or one that failed, is not paired
    failed = rec("retrieval", 2, None, conversation="b", error="model crashed")
    mixed = [*after[:2], failed, rec("fast", 3, 1.0, conversation="b")]
    assert compare_runs(before, mixed, "retrieval", "retrieval", 1)["questions"] == 2

    out = CliRunner().invoke(app, ["bench", "compare", str(run_dir(tmp_path, "a", before)),
                                   str(run_dir(tmp_path, "b", after)), "--system-a", "retrieval", "--k", "1"])
    assert out.exit_code == 0, out.output
    assert "| all | 4 | 0.250 | 0.500 | +0.250 |" in out.output
    assert "| b | 2 | 0.000 | 0.500 | +0.500 |" in out.output
    # systems neither run answered: a clear error, not an empty table
    none = CliRunner().invoke(app, ["bench", "compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert none.exit_code == 2 and "no question answered by both fast" in none.output


def test_f1_is_compared_between_systems_of_two_runs() -> None:
    fast = [rec("fast", q, f) for q, f in enumerate([0.0, 0.5, 1.0])]
    full = [rec("full", q, f) for q, f in enumerate([1.0, 0.5, 0.0])]
    f1 = compare_runs(fast, full, "fast", "full")["measures"]["F1"]["all"]
    assert (f1["n"], f1["better"], f1["worse"]) == (3, 1, 1) and f1["diff"] == pytest.approx(0.0)
    assert f1["ci95"][0] < 0 < f1["ci95"][1]
