"""The cost-quality frontier: F1 (categories 1-4) against tokens per question."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["frontier", "risk_coverage"]


def frontier(summary: dict[str, Any], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    points = [
        (name, v["prompt_tokens"] + v["completion_tokens"], v["overall_f1"])
        for name, v in summary["systems"].items()
        if v.get("prompt_tokens") is not None and v.get("overall_f1") is not None
    ]
    # the sweep with the most distinct thresholds: a signal score, not the 3-valued vote or audit
    sweeps = {name: g["sweep"] for name, g in (summary.get("gates") or {}).items() if g.get("sweep")}
    swept = max(sweeps, key=lambda n: len(sweeps[n]), default=None)
    sweep = sweeps.get(swept, []) if swept else []
    if not points and not sweep:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    if sweep:
        ax.plot(
            [p["tokens"] for p in sweep],
            [p["f1"] for p in sweep],
            "-",
            color="0.6",
            lw=1.2,
            label=f"threshold sweep of the {swept} score",
        )
    # a legend, not annotations: systems often share a point (fast, rag, a gate that passed all);
    # shrinking markers keep every one of them visible
    markers = "osD^vPX*<>"
    for n, (name, tokens, f1) in enumerate(points):
        ax.scatter([tokens], [f1], s=110 - 8 * n, marker=markers[n % len(markers)], zorder=3 + n, label=name)
    ax.set_xscale("log")
    # readable 1-2-5 ticks ("2K", "10K") instead of overlapping 2x10^3 minor labels
    ticks = [m * 10**e for e in range(1, 8) for m in (1, 2, 5)]
    ax.set_xticks(ticks, [f"{t // 1000}K" if t >= 1000 else str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    xs = [t for _, t, _ in points] + [p["tokens"] for p in sweep]
    ax.set_xlim(min(xs) / 1.3, max(xs) * 1.3)
    ax.set_xlabel("tokens per question (prompt + completion, log scale)")
    ax.set_ylabel("F1, categories 1-4 (LoCoMo official)")
    s = summary["settings"]
    ax.set_title(f"{s['dataset']}: cost vs quality ({s['model']})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def risk_coverage(summary: dict[str, Any], path: Path) -> Path | None:
    """Share of wrong fast answers caught against the share of questions escalated, one line
    per gate (each escalating its least trusted questions first)."""
    gates = {n: g["risk_coverage"] for n, g in (summary.get("gates") or {}).items() if g.get("risk_coverage")}
    if not gates:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 4.4), dpi=120)
    ax.plot([0, 1], [0, 1], ":", color="0.6", lw=1, label="chance")
    for name, rows in gates.items():
        ax.plot(
            [0] + [r["escalation"] for r in rows], [0] + [r["caught"] for r in rows], "-o", ms=3, label=name
        )
    ax.set_xlabel("questions escalated")
    ax.set_ylabel("wrong fast answers caught")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{summary['settings']['dataset']}: risk-coverage of the gates", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
