"""Human-readable rendering of an `Answer` trace (CLI `ask --explain` and the demo)."""

from __future__ import annotations

from .types import Answer

__all__ = ["explain"]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _system2(answer: Answer) -> list[str]:
    """What System 2 changed, and why (empty when it did not run)."""
    if not answer.candidates:
        return []
    fast, winner = answer.candidates[0], next(c for c in answer.candidates if c.won)
    others = ", ".join(f"{c.source} {c.text!r}" for c in answer.candidates[1:])
    if winner is fast:
        head = f"System 2 ({answer.strategy}) kept the fast answer {fast.text!r} over {others}"
    else:
        head = f"System 2 ({answer.strategy}) changed {fast.text!r} -> {winner.text!r}"
    return [f"   {head}: {answer.arbitration}"]


def explain(answer: Answer, *, verbose: bool = True) -> str:
    tier = f" ({answer.tier})" if answer.tier else ""
    flag = "  [degraded]" if answer.degraded else ""
    total = answer.total_usage
    lines = [
        f"Q: {answer.question}",
        f"A: {answer.text}",
        f"   path: {answer.path}{tier}{flag}",
        f"   why:  {answer.reason}",
        f"   cost: {total.prompt_tokens} prompt + {total.completion_tokens} completion tokens, "
        f"{total.calls} LLM call(s), {sum(answer.latency.values()):.1f}s",
    ]
    lines += _system2(answer)
    if not verbose:
        return "\n".join(lines)
    if answer.gate:
        g = answer.gate
        lines.append(
            f"   gate: policy={g.policy} score={_fmt(g.score)} -> {'escalate' if g.escalate else 'pass'}"
        )
        for s in g.signals:
            verdict = "unavailable" if not s.available else ("pass" if s.passed else "FAIL")
            lines.append(
                f"     - {s.name:<11} {_fmt(s.score)} (threshold {_fmt(s.threshold)}) {verdict}: {s.reason}"
            )
        if g.audit:
            a = g.audit
            marks = ", ".join(
                f"{n}={'pass' if getattr(a, n) else 'fail'}"
                for n in ("relevance", "faithfulness", "completeness")
            )
            lines.append(f"     - audit       {marks}{' (malformed reply)' if a.malformed else ''}")
    for phase, usage in answer.usage.items():
        lines.append(
            f"   {phase:<20} {usage.prompt_tokens:>6} + {usage.completion_tokens:>4} tokens, "
            f"{usage.calls} call(s), {answer.latency.get(phase, 0.0):.2f}s"
        )
    if answer.evidence.facts:
        lines.append("   facts:")
        for f in answer.evidence.facts[:8]:
            lines.append(f"     [{f.score:g}] {f.text}  (turns {', '.join(f.turn_ids)})")
    elif answer.memories:
        lines.append("   top memories:")
        for m in answer.memories[:5]:
            lines.append(f"     ({_fmt(m.score)}) {m.render()}")
    return "\n".join(lines)
