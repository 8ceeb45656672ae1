"""Paired comparisons against the fast path: bootstrap intervals of F1 differences, the
evidence recall of the context that produced each final answer, and what each answer the
arbiter weighed would have scored on its own.

The systems answer the same questions, so differences are paired per question: a paired
bootstrap gives a much tighter interval than comparing two independent means.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .record import Record
from .score import recall_at_k

__all__ = ["BOOTSTRAP", "paired", "paired_lines"]

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
    baseline = by.get(base, {})  # a run without the base system has no differences
    for system, rs in by.items():
        if system == base:
            continue
        entry: dict[str, Any] = {}
        keys = [k for k in rs if k in baseline]
        if keys:
            diffs = [(rs[k].f1 or 0.0) - (baseline[k].f1 or 0.0) for k in keys]
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
