"""The cost-quality frontier: F1 (categories 1-4) against tokens per question."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["frontier"]


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
    # systems at the same point (e.g. fast and rag on a raw-turn index) share one label
    labels: dict[tuple[float, float], list[tuple[str, float, float]]] = {}
    for name, tokens, f1 in points:
        labels.setdefault((round(math.log10(max(tokens, 1)), 2), round(f1, 2)), []).append((name, tokens, f1))
    for group in labels.values():
        _, tokens, f1 = group[0]
        ax.scatter([t for _, t, _ in group], [f for _, _, f in group], s=40, zorder=3)
        ax.annotate(
            " ~ ".join(n for n, _, _ in group),
            (tokens, f1),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=9,
        )
    ax.set_xscale("log")
    ax.set_xlabel("tokens per question (prompt + completion, log scale)")
    ax.set_ylabel("F1, categories 1-4 (LoCoMo official)")
    s = summary["settings"]
    ax.set_title(f"{s['dataset']}: cost vs quality ({s['model']})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if sweep:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
