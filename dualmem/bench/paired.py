"""Paired comparisons against the fast path: bootstrap intervals of F1 differences, the
evidence recall of the context that produced each final answer, and what each answer the
arbiter weighed would have scored on its own; and between two runs (`dualmem bench compare`),
such as one system before and after a change.

The systems answer the same questions, so differences are paired per question: a paired
bootstrap gives a much tighter interval than comparing two independent means.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from .record import Record, read_records
from .score import recall_at_k

__all__ = ["BOOTSTRAP", "compare_command", "compare_runs", "paired", "paired_lines"]

BOOTSTRAP = 2000


def _interval(diffs: list[float], seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    values = np.array(diffs)
    means = values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _recall(turns: list[str], evidence: list[str]) -> float | None:
    return recall_at_k(turns, evidence, len(turns)) if turns else (0.0 if evidence else None)


def paired(records: list[Record], base: str = "fast") -> dict[str, Any]:
    """Per system: mean F1 difference to `base` over the questions both answered, with a 95%
    paired-bootstrap interval; for escalated questions, the evidence recall of the fast context
    and of the final answer's context; and the F1 of each arbitrated source alone."""
    by: dict[str, dict[tuple[str, int], Record]] = defaultdict(dict)
    for r in records:
        if r.f1 is not None:
            by[r.system][(r.conversation, r.q)] = r
    out: dict[str, Any] = {}
    reference = by.get(base, {})  # not by[base]: a run without the base system adds no key mid-loop
    for system, rs in by.items():
        if system == base:
            continue
        entry: dict[str, Any] = {}
        keys = [k for k in rs if k in reference]
        if keys:
            diffs = [(rs[k].f1 or 0.0) - (reference[k].f1 or 0.0) for k in keys]
            low, high = _interval(diffs)
            entry["vs_" + base] = {"n": len(keys), "diff": float(np.mean(diffs)), "ci95": [low, high]}
        escalated = [r for r in rs.values() if r.escalated and r.evidence and r.context is not None]
        if escalated:
            fast = [_recall(r.retrieved or [], r.evidence) for r in escalated]
            final = [_recall(r.context or [], r.evidence) for r in escalated]
            entry["escalated_recall"] = {
                "n": len(escalated),
                "fast_context": float(np.mean([x or 0.0 for x in fast])),
                "final_context": float(np.mean([x or 0.0 for x in final])),
            }
        sources: dict[str, list[float]] = defaultdict(list)
        wins: dict[str, int] = defaultdict(int)
        for r in rs.values():
            for c in r.candidates or []:
                if c.f1 is not None:
                    sources[c.source].append(c.f1)
                    wins[c.source] += c.won
        if sources:
            entry["sources"] = {
                s: {"n": len(v), "f1_alone": float(np.mean(v)), "won": wins[s]} for s, v in sources.items()
            }
        if entry:
            out[system] = entry
    return out


def _f(value: float) -> str:
    return f"{value:+.3f}"


def paired_lines(comparison: dict[str, Any], base: str = "fast") -> list[str]:
    if not comparison:
        return []
    lines = [
        "",
        f"## Against {base}: paired F1 differences, final-context evidence recall, arbitration",
        "",
        f"Differences are per question against `{base}` on the same questions, with a 95% paired "
        f"bootstrap interval ({BOOTSTRAP} resamples). Evidence recall is of the context that "
        "produced the final answer, for escalated questions only. `alone` is the F1 each answer "
        "the arbiter weighed would have scored had it always won.",
        "",
        "| system | n | F1 diff | 95% CI | escalated n | recall fast ctx | recall final ctx "
        "| alone (F1, wins) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for system, e in comparison.items():
        d = e.get("vs_" + base)
        rec = e.get("escalated_recall")
        alone = ", ".join(
            f"{s} {v['f1_alone']:.3f} ({v['won']}/{v['n']})" for s, v in (e.get("sources") or {}).items()
        )
        diff = ["-"] * 3
        if d:
            diff = [str(d["n"]), _f(d["diff"]), f"[{_f(d['ci95'][0])}, {_f(d['ci95'][1])}]"]
        recall = ["-"] * 3
        if rec:
            recall = [str(rec["n"]), f"{rec['fast_context']:.3f}", f"{rec['final_context']:.3f}"]
        lines.append("| " + " | ".join([system, *diff, *recall, alone or "-"]) + " |")
    return lines


# ------------------------------------------------------------------------- two runs compared


def _measures(k: int) -> dict[str, Callable[[Record], float | None]]:
    return {
        "F1": lambda r: r.f1,
        f"R@{k}": lambda r: recall_at_k(r.retrieved, r.evidence, k) if r.retrieved is not None else None,
    }


def _summary(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    diffs = [b - a for a, b in pairs]
    low, high = _interval(diffs)
    return {
        "n": len(pairs),
        "a": float(np.mean([a for a, _ in pairs])),
        "b": float(np.mean([b for _, b in pairs])),
        "diff": float(np.mean(diffs)), "ci95": [low, high],
        "better": sum(d > 0 for d in diffs), "worse": sum(d < 0 for d in diffs),
    }


def compare_runs(
    a: list[Record], b: list[Record], system_a: str, system_b: str, k: int = 30
) -> dict[str, Any]:
    """Run B's `system_b` against run A's `system_a` on the questions both answered without
    error: per measure (F1, evidence recall@k) that both runs hold, the paired difference B - A
    with a 95% bootstrap interval, overall, per conversation and per category."""
    first = {(r.conversation, r.q): r for r in a if r.system == system_a and r.error is None}
    second = {(r.conversation, r.q): r for r in b if r.system == system_b and r.error is None}
    keys = sorted(first.keys() & second.keys())
    out: dict[str, Any] = {"system_a": system_a, "system_b": system_b, "questions": len(keys), "measures": {}}
    for name, measure in _measures(k).items():
        rows = [(key, first[key], x, y) for key in keys
                if (x := measure(first[key])) is not None and (y := measure(second[key])) is not None]
        if not rows:
            continue
        groups: dict[str, dict[str, list]] = {by: defaultdict(list) for by in ("conversation", "category")}
        for (conversation, _), record, x, y in rows:
            groups["conversation"][conversation].append((x, y))
            groups["category"][record.category_name].append((x, y))
        out["measures"][name] = {
            "all": _summary([(x, y) for *_, x, y in rows]),
            **{by: {g: _summary(v) for g, v in sorted(found.items())} for by, found in groups.items()},
        }
    return out


def compare_lines(result: dict[str, Any], label_a: str, label_b: str) -> list[str]:
    lines = [f"# {label_b} ({result['system_b']}) against {label_a} ({result['system_a']})", "",
             f"{result['questions']} questions answered by both; differences are B - A per question, "
             f"with a 95% paired bootstrap interval ({BOOTSTRAP} resamples)."]
    if not result["measures"]:
        lines += ["", "No measure both runs hold (F1 or retrieved turns with evidence)."]
    for name, m in result["measures"].items():
        lines += ["", f"## {name}", "", "| questions | n | A | B | B - A | 95% CI | better | worse |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, s in [("all", m["all"]), *m["conversation"].items(), *m["category"].items()]:
            lines.append(f"| {label} | {s['n']} | {s['a']:.3f} | {s['b']:.3f} | {_f(s['diff'])} "
                         f"| [{_f(s['ci95'][0])}, {_f(s['ci95'][1])}] | {s['better']} | {s['worse']} |")
    return lines


def _records(run: Path) -> list[Record]:
    path = run / "questions.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise typer.BadParameter(f"{run} holds no questions.jsonl (a `dualmem bench` output dir)")
    return read_records(path)


def compare_command(
    run_a: Annotated[Path, typer.Argument(exists=True, help="the baseline run: its dir or questions.jsonl")],
    run_b: Annotated[Path, typer.Argument(exists=True, help="the run compared with it")],
    system_a: Annotated[str, typer.Option(help="run A's system (fast, full, gated, retrieval...)")] = "fast",
    system_b: Annotated[str | None, typer.Option(help="run B's system (default: --system-a)")] = None,
    k: Annotated[int, typer.Option(min=1, help="evidence recall at this depth")] = 30,
) -> None:
    """Compare two benchmark runs question by question: F1 and evidence recall@k, with paired
    bootstrap intervals, overall, per conversation and per category."""
    result = compare_runs(_records(run_a), _records(run_b), system_a, system_b or system_a, k)
    if not result["questions"]:
        typer.echo(f"error: no question answered by both {system_a} in {run_a} and "
                   f"{system_b or system_a} in {run_b}", err=True)
        raise typer.Exit(2)
    typer.echo("\n".join(compare_lines(result, str(run_a), str(run_b))))
