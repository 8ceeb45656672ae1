"""Aggregate per-question records into the summary JSON and the markdown report.

Quality is the official F1 per category (number and name), the micro-average over categories
1-4 (the D-Mem / Mem0 convention), the Mem0-harness F1 beside it, and category 5 as a refusal
rate, counted twice: by the official phrases, and with our prompt's "NONE" accepted.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..answering.gate.calibrate import CalibrationRecord
from ..answering.gate.learned import auroc, bootstrap_interval, risk_coverage
from ..answering.gate.signals import looks_like_refusal
from .data import CATEGORY_NAMES
from .paired import paired, paired_lines
from .record import PEER, Record, System
from .score import recall_at_k

__all__ = ["summarise", "write_report"]

RECALL_KS = (5, 10, 30, 50)
INDEX_KIND = {True: "LLM-extracted memories", False: "raw turns (no extraction)"}
WRONG_BELOW = 0.5  # a fast answer with F1 < 0.5 counts as wrong for the gate's AUROC
MEM0_NOTE = (
    "mem0ai was not run as a peer, for cost: mem0ai 2.2.1 installs (it pins protobuf<7, which "
    "would downgrade ours; nothing here needs 7.x) and could use the same local model in-process "
    "(LlmFactory.register_provider), but every add(infer=True) sends its 7,671-token extraction "
    "system prompt, more than the local model's 4,096-token context. Raising the context, the "
    "Mem0 harness's message-pair adds make ~210 calls of ~8K prompt tokens for conv-26 alone "
    "(~1.7M tokens); at the ~75-97 prompt tokens/s measured here for full deliberation that is "
    "about 5 hours of ingestion. With infer=False it would only be another raw-turn RAG (the `rag` row)."
)
PEER_NOTE = (
    f"`{PEER}` is LlamaIndex's own Memory (llama-index-core): a VectorMemoryBlock over chunks of "
    "about 4 turns flushed from its short-term FIFO, read with this run's model, embedder and the "
    f"fast path's reader prompt; `{PEER}:facts` adds its FactExtractionMemoryBlock. Its recall "
    "counts the turns of the retrieved chunks in rank order; extracted facts carry no turn ids."
)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _pct(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def _system(records: list[Record], max_k: int) -> dict[str, Any]:
    retrieval = System.parse(records[0].system).kind == "retrieval" if records else False
    answered = [r for r in records if r.answered or retrieval and r.retrieved is not None]
    scored = [r for r in answered if r.f1 is not None]
    errors = [r.error for r in records if r.error is not None]
    out: dict[str, Any] = {
        "questions": len(records),
        "answered": len(answered),
        "errors": len(errors),
        "skipped": dict(Counter(r.skipped for r in records if r.skipped is not None)),
        "error_examples": sorted(set(errors))[:3],
        "categories": {str(c): _category(c, answered, max_k) for c in sorted({r.category for r in answered})},
        "overall_f1": _mean([_f1(r) for r in scored]),
        "overall_f1_mem0": _mean([r.f1_mem0 for r in scored if r.f1_mem0 is not None]),
        "overall_n": len(scored),
        "recall": _recall([r for r in answered if r.category != 5], max_k),
    }
    llm = [r for r in answered if r.answered]
    if not llm:
        out["latency"] = {"total": _pct([r.seconds for r in answered])}
        return out
    system = System.parse(records[0].system)
    if system.has_gate:
        out["escalation_rate"] = _mean([float(system.escalated(r)) for r in llm])
    out.update(_costs(llm))
    return out


def _category(cat: int, answered: list[Record], max_k: int) -> dict[str, Any]:
    rs = [r for r in answered if r.category == cat]
    entry: dict[str, Any] = {"name": CATEGORY_NAMES.get(cat, str(cat)), "n": len(rs)}
    if cat == 5:
        checked = [r for r in rs if r.refusal is not None]
        entry["refusal"] = _mean([float(bool(r.refusal)) for r in checked])
        entry["refusal_or_none"] = _mean([float(bool(r.refusal_or_none)) for r in checked])
    else:
        entry["f1"] = _mean([_f1(r) for r in rs if r.f1 is not None])
        entry["f1_mem0"] = _mean([r.f1_mem0 for r in rs if r.f1_mem0 is not None])
    entry["recall"] = _recall([r for r in rs if cat != 5], max_k)
    return entry


def _costs(llm: list[Record]) -> dict[str, Any]:
    """Mean tokens, calls and cache hits per question, per phase too, and latency percentiles."""
    phases: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    latency: dict[str, list[float]] = defaultdict(list)
    for r in llm:
        for phase, u in (r.usage or {}).items():
            for key in ("prompt_tokens", "completion_tokens", "calls"):
                phases[phase][key] += getattr(u, key) / len(llm)
        for phase, seconds in (r.latency or {}).items():
            latency[phase].append(seconds)
        latency["total"].append(r.seconds)
    return {
        "prompt_tokens": _mean([r.prompt_tokens or 0 for r in llm]),
        "completion_tokens": _mean([r.completion_tokens or 0 for r in llm]),
        "calls": _mean([r.calls or 0 for r in llm]),
        "cache_hits": _mean([r.cache_hits for r in llm]),
        "phases": {p: dict(v) for p, v in phases.items()},
        "latency": {p: _pct(v) for p, v in latency.items()},
    }


def _recall(records: list[Record], max_k: int) -> dict[str, Any] | None:
    """Evidence recall@k over records with evidence; k above the answer's top-k comes from the
    deeper search that retrieval-only runs also make."""
    # full deliberation and the full-context baseline read the history, not a search
    rs = [r for r in records if r.evidence and r.retrieved is not None and System.parse(r.system).searches]
    if not rs:
        return None
    out: dict[str, Any] = {"n": len(rs)}
    for k in RECALL_KS:
        key = "retrieved" if k <= max_k else "retrieved_deep"
        if getattr(rs[0], key) is not None:
            out[f"r@{k}"] = _mean([recall_at_k(getattr(r, key) or [], r.evidence, k) or 0.0 for r in rs])
    k30 = min(30, max_k)
    hits = [recall_at_k(r.retrieved or [], r.evidence, k30) == 1.0 for r in rs]
    out[f"all_in_top{k30}"] = _mean([float(h) for h in hits])
    if all(r.unasked is not None for r in rs):
        out["unasked"] = sum(bool(r.unasked) for r in rs)
    return out


# the records with an F1, by system and (conversation, question)
Scored = dict[str, dict[tuple[str, int], Record]]


def _scored(records: list[Record]) -> Scored:
    by: Scored = defaultdict(dict)
    for r in records:
        if r.f1 is not None:
            by[r.system][(r.conversation, r.q)] = r
    return by


def _f1(r: Record) -> float:
    assert r.f1 is not None  # a scored record (see `_scored`)
    return r.f1


def _gate(by: Scored, name: str) -> dict[str, Any] | None:
    """AUROC (with a bootstrap interval) of one gated system's gate score, and of each signal,
    for "fast answer wrong"; the risk-coverage trade-off; and a threshold sweep (`by`: the
    scored records of every system, from `_scored`)."""
    system = System.parse(name)
    gated = {key: r for key, r in by[name].items() if r.gate_score is not None}
    # a gate-only system's answer is the fast answer; a deliberating one's may be System 2's
    labels = by[name] if system.kind == "gate" else by["fast"]
    keys = [key for key in gated if key in labels]
    if not keys:
        return None
    scores = [gated[key].gate_score or 0.0 for key in keys]
    wrong = [_f1(labels[key]) < WRONG_BELOW for key in keys]
    escalated = [system.escalated(gated[key]) for key in keys]
    risk = [1 - s for s in scores]  # score: higher = more trustworthy
    interval = bootstrap_interval(risk, wrong)
    out: dict[str, Any] = {
        "n": len(keys),
        "fast_wrong": sum(wrong),
        "auroc": auroc(risk, wrong),
        "auroc_interval": list(interval) if interval else None,
        "escalation": _mean([float(e) for e in escalated]),
        "escalation_precision": _mean([float(w) for w, e in zip(wrong, escalated, strict=True) if e]),
        "escalation_recall": _mean([float(e) for w, e in zip(wrong, escalated, strict=True) if w]),
        "signals": _signal_aurocs([gated[key] for key in keys], wrong),
        "risk_coverage": [vars(row) for row in risk_coverage(risk, wrong)],
    }
    full = [key for key in keys if key in by["full"]]
    if full:
        out["sweep"] = _sweep(full, gated, by["fast"], by["full"])
    return out


def _signal_aurocs(records: list[Record], wrong: list[bool]) -> dict[str, dict[str, Any]]:
    """Each signal's own AUROC for "wrong" (1 - its score), over the questions it could judge."""
    names = sorted({n for r in records for n in (r.gate_signals or {})})
    out = {}
    for name in names:
        pairs = [(1 - v, w) for r, w in zip(records, wrong, strict=True)
                 if (v := (r.gate_signals or {}).get(name)) is not None]
        if pairs:
            risk, labels = [p[0] for p in pairs], [p[1] for p in pairs]
            interval = bootstrap_interval(risk, labels)
            out[name] = {"n": len(pairs), "auroc": auroc(risk, labels),
                         "auroc_interval": list(interval) if interval else None}
    return out


def _sweep(
    keys: list[tuple[str, int]], gated: dict[tuple[str, int], Record], fast: dict[tuple[str, int], Record],
    full: dict[tuple[str, int], Record],
) -> list[dict[str, float | None]]:
    """Escalate to the full-mode answer when the gate score is below t (a signals-only gate:
    no audit call, so the cost is the fast answer plus the deliberation of escalated ones)."""
    score = {k: gated[k].gate_score or 0.0 for k in keys}
    scores = sorted(set(score.values()))
    thresholds = (
        [scores[0]] + [(a + b) / 2 for a, b in zip(scores, scores[1:], strict=False)] + [scores[-1] + 1e-9]
    )
    if len(thresholds) > 60:
        thresholds = [thresholds[int(i)] for i in np.linspace(0, len(thresholds) - 1, 60)]
    points = []
    for t in thresholds:
        esc = [score[k] < t for k in keys]
        points.append(
            {
                "threshold": t,
                "escalation": _mean([float(e) for e in esc]),
                "f1": _mean([_f1((full if e else fast)[k]) for k, e in zip(keys, esc, strict=True)]),
                "tokens": _mean(
                    [fast[k].tokens + (full[k].tokens if e else 0) for k, e in zip(keys, esc, strict=True)]
                ),
            }
        )
    return points


def summarise(
    records: list[Record],
    *,
    systems: list[str],
    ingest: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    cache: Any = None,
) -> dict[str, Any]:
    by_system: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_system[r.system].append(r)
    scored = _scored(records)
    k = settings.get("k") or 30
    turns = sum(s["turns"] for s in ingest.values())
    seconds = sum(s["seconds"] for s in ingest.values())
    summary: dict[str, Any] = {
        "settings": settings,
        "systems": {s: _system(by_system[s], k) for s in systems if by_system[s]},
        "ingest": {
            "extract": settings.get("extract"),
            "conversations": ingest,
            "turns": turns,
            "seconds": seconds,
            "turns_per_second": turns / seconds if seconds else None,
            "prompt_tokens": sum(s["prompt_tokens"] for s in ingest.values()),
            "completion_tokens": sum(s["completion_tokens"] for s in ingest.values()),
            "calls": sum(s["calls"] for s in ingest.values()),
        },
        "peer_ingest": _peer_ingest(ingest),
        "gates": {s: g for s in systems if System.parse(s).has_gate and (g := _gate(scored, s))},
        "paired": paired(records),
        "notes": [MEM0_NOTE] + ([PEER_NOTE] if any(System.parse(s).peer for s in systems) else []),
    }
    summary["targets"] = _targets(summary)
    if cache is not None:
        summary["cache"] = {"hits": cache.hits, "misses": cache.misses}
    return summary


def _peer_ingest(ingest: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The LlamaIndex peer's ingestion, summed over the conversations it ingested this run."""
    peer = [s[PEER] for s in ingest.values() if PEER in s]
    if not peer:
        return None
    keys = ("turns", "nodes", "seconds", "prompt_tokens", "completion_tokens", "calls")
    out: dict[str, Any] = {k: sum(p[k] for p in peer) for k in keys}
    out["facts"] = sum(p["facts"] for p in peer) if all(p["facts"] is not None for p in peer) else None
    out["conversations"] = len(peer)
    return out


# the claims of issue #7, each printed next to the measured value
TARGET_F1_SHARE, TARGET_TOKEN_SHARE, TARGET_AUROC, TARGET_RECALL = 0.98, 0.25, 0.75, 0.80


def _targets(summary: dict[str, Any]) -> dict[str, Any]:
    """Each gated system against full deliberation (F1 share, token share), the best gate AUROC
    and the fast path's evidence recall@30, with the targets and whether each is met."""
    systems = summary["systems"]
    out: dict[str, Any] = {}
    full = systems.get("full") or {}
    full_f1, full_tokens = full.get("overall_f1"), _system_tokens(full)
    if full_f1 is not None and full_tokens:
        rows = {}
        for name, v in systems.items():
            if System.parse(name).deliberates and v.get("overall_f1") is not None and _system_tokens(v):
                # no share of a full F1 of 0, and any gated F1 is "at least 98%" of it
                f1_share = v["overall_f1"] / full_f1 if full_f1 else None
                token_share = _system_tokens(v) / full_tokens
                rows[name] = {
                    "f1_share": f1_share,
                    "token_share": token_share,
                    "met": (f1_share is None or f1_share >= TARGET_F1_SHARE)
                    and token_share <= TARGET_TOKEN_SHARE,
                }
        out["gated_vs_full"] = {"target": [TARGET_F1_SHARE, TARGET_TOKEN_SHARE], "systems": rows}
    aurocs = {s: g["auroc"] for s, g in summary.get("gates", {}).items() if g.get("auroc") is not None}
    if aurocs:
        best = max(aurocs, key=aurocs.__getitem__)
        out["auroc"] = {
            "target": TARGET_AUROC,
            "best": best,
            "value": aurocs[best],
            "met": aurocs[best] >= TARGET_AUROC,
        }
    recall = ((systems.get("fast") or systems.get("retrieval") or {}).get("recall") or {}).get("r@30")
    if recall is not None:
        out["recall@30"] = {"target": TARGET_RECALL, "value": recall, "met": recall >= TARGET_RECALL}
    return out


def _system_tokens(v: dict[str, Any]) -> float | None:
    if v.get("prompt_tokens") is None:
        return None
    return v["prompt_tokens"] + v["completion_tokens"]


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(summary: dict[str, Any]) -> str:
    s = summary["settings"]
    lines = [
        f"# {s['dataset']} benchmark",
        "",
        f"model `{s['model']}`, index: {INDEX_KIND[bool(s['extract'])]}, "
        f"top-k {s['k']}, conversations {', '.join(s['conversations'])}"
        + (f", categories {s['categories']}" if s["categories"] else "")
        + (f", {s['limit']} questions per conversation spread over the file order" if s["limit"] else "")
        + (f", each {s['offset']} place(s) further" if s.get("offset") else ""),
        "",
    ]
    systems = summary["systems"]
    cats = sorted({int(c) for v in systems.values() for c in v["categories"]})
    f1_cats = [c for c in cats if c != 5]
    head = (
        ["system", "n"]
        + [f"cat {c} {CATEGORY_NAMES.get(c, '')}" for c in f1_cats]
        + ["F1 cats 1-4", "Mem0 F1 1-4"]
        + (["cat 5 refusal (official)", "cat 5 refusal (NONE ok)"] if 5 in cats else [])
        + [
            "R@5",
            "R@10",
            "R@30",
            "escalation",
            "prompt tok/q",
            "compl tok/q",
            "calls/q",
            "cache hits/q",
            "p50 s",
            "p95 s",
        ]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, v in systems.items():
        c = v["categories"]
        rec = v.get("recall") or {}
        lat = (v.get("latency") or {}).get("total") or {}
        row = [name, str(v["answered"])]
        row += [_f(c.get(str(k), {}).get("f1")) for k in f1_cats]
        row += [_f(v["overall_f1"]), _f(v["overall_f1_mem0"])]
        if 5 in cats:
            row += [_f(c.get("5", {}).get("refusal")), _f(c.get("5", {}).get("refusal_or_none"))]
        row += [
            _f(rec.get("r@5")),
            _f(rec.get("r@10")),
            _f(rec.get("r@30")),
            _f(v.get("escalation_rate")),
            _f(v.get("prompt_tokens"), 0),
            _f(v.get("completion_tokens"), 1),
            _f(v.get("calls"), 2),
            _f(v.get("cache_hits"), 2),  # a cached call costs its tokens but ~0 s: read latency with it
            _f(lat.get("p50"), 2),
            _f(lat.get("p95"), 2),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "## Retrieval: evidence recall (categories 1-4; gated systems search as `fast` does)",
        "",
        "| system | category | n | R@5 | R@10 | R@30 | R@50 | all evidence in top 30 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in systems.items():
        if System.parse(name).has_gate and "fast" in systems:
            continue  # a gated system searches exactly as the fast path does
        rows = [("all", v.get("recall"))] + [
            (f"{c} {v['categories'][str(c)]['name']}", v["categories"][str(c)].get("recall"))
            for c in f1_cats
            if str(c) in v["categories"]
        ]
        for label, rec in rows:
            if rec:
                lines.append(
                    f"| {name} | {label} | {rec['n']} | "
                    + " | ".join(_f(rec.get(f"r@{k}")) for k in RECALL_KS)
                    + f" | {_f(rec.get('all_in_top30'))} |"
                )
    for name, v in summary["systems"].items():
        unasked = (v.get("recall") or {}).get("unasked")
        if unasked is not None:
            lines += [
                "",
                f"{name}: for {unasked} of {v['recall']['n']} questions no retrieved memory holds any "
                "of the question's words (the speakers' names aside): after an escalation the "
                "arbiter lets System 2's NONE replace a concrete answer to such a question.",
            ]
    probe = summary.get("identifier_probe")
    if probe:
        lines += [
            "",
            f"Identifier probe (exact-text queries among 150 near-duplicate notes, `dualmem.bench.probe`): "
            f"{probe['rank1']} of {probe['queries']} at rank 1 ({probe['rate']:.0%}).",
        ]
    lines += [
        "",
        "## Cost per question by phase (mean tokens and calls; latency p50 / p95 seconds)",
        "",
        "| system | phase | prompt tok | completion tok | calls | latency p50 | latency p95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in systems.items():
        for phase in sorted(set(v.get("phases", {})) | set(v.get("latency", {}))):
            u = v.get("phases", {}).get(phase, {})
            lat = v.get("latency", {}).get(phase) or {}
            if not u and not lat:
                continue
            lines.append(
                f"| {name} | {phase} | {_f(u.get('prompt_tokens'), 0)} | {_f(u.get('completion_tokens'), 1)}"
                f" | {_f(u.get('calls'), 2)} | {_f(lat.get('p50'), 2)} | {_f(lat.get('p95'), 2)} |"
            )
    ing = summary["ingest"]
    lines += [
        "",
        "## Ingestion",
        "",
        f"{ing['turns']} turns in {_f(ing['seconds'], 1)} s ({_f(ing['turns_per_second'], 1)} turns/s), "
        f"{'with' if ing['extract'] else 'without'} LLM extraction; {ing['calls']} LLM calls, "
        f"{ing['prompt_tokens']} prompt + {ing['completion_tokens']} completion tokens.",
    ]
    peer = summary.get("peer_ingest")
    if peer:
        facts = f", {peer['facts']} facts kept" if peer["facts"] is not None else ""
        lines += [
            "",
            f"LlamaIndex peer (`{PEER}`, ingested this run): {peer['turns']} turns into "
            f"{peer['nodes']} vector nodes{facts} in {_f(peer['seconds'], 1)} s; {peer['calls']} LLM calls, "
            f"{peer['prompt_tokens']} prompt + {peer['completion_tokens']} completion tokens.",
        ]
    gates = summary.get("gates") or {}
    if gates:
        lines += [
            "",
            "## Gate quality",
            "",
            f"AUROC of each gate's score for 'fast answer wrong' (F1 < {WRONG_BELOW}); precision: "
            "share of escalated questions whose fast answer was wrong; recall: share of wrong fast "
            "answers that were escalated. `gate:<policy>` systems never deliberate: their "
            "escalation is what the gate would have escalated.",
            "",
            "| system | n | fast wrong | AUROC [95% bootstrap] | escalation | escalation precision | "
            "escalation recall |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, g in gates.items():
            lines.append(
                f"| {name} | {g['n']} | {g['fast_wrong']} | {_auroc(g)} | {_share(g.get('escalation'))} | "
                f"{_f(g['escalation_precision'])} | {_f(g['escalation_recall'])} |"
            )
        lines += _signal_lines(gates)
        lines += ["", "`calibration.jsonl` holds these questions labelled for `dualmem calibrate`."]
        if any(g.get("sweep") for g in gates.values()):
            lines.append(
                "Threshold sweep (signal score only, System 2 = full mode): see `frontier.png` "
                "and `summary.json`."
            )
    lines += paired_lines(summary.get("paired") or {})
    lines += _target_lines(summary.get("targets") or {})
    notes = []
    for name, v in systems.items():
        notes += [f"- `{name}`: {n} question(s) skipped: {reason}" for reason, n in v["skipped"].items()]
        notes += [f"- `{name}`: {v['errors']} error(s), e.g. {e}" for e in v["error_examples"][:1]]
    notes += [f"- {n}" for n in summary.get("notes", [])]
    if summary.get("cache"):
        notes.append(
            f"- LLM response cache: {summary['cache']['hits']} hits, {summary['cache']['misses']} misses "
            "in this run (latencies of cache hits are not model latencies)."
        )
    machine = summary.get("machine")
    if machine:
        load = ", ".join(f"{x:.1f}" for x in machine["load_average_at_start"])
        notes.append(
            f"- Machine: {machine['cpus']} CPUs, load average {load} (1/5/15 min) at the start: "
            "latencies are wall-clock on a shared machine."
        )
    lines += ["", "## Notes", ""] + notes
    return "\n".join(lines) + "\n"


def _auroc(g: dict[str, Any]) -> str:
    low_high = g.get("auroc_interval")
    return _f(g.get("auroc")) + (f" [{low_high[0]:.2f}, {low_high[1]:.2f}]" if low_high else "")


def _signal_lines(gates: dict[str, Any]) -> list[str]:
    """Each signal's own AUROC, from the gate that read the most questions (all read the same)."""
    widest = max(gates.values(), key=lambda g: g["n"])
    if not widest.get("signals"):
        return []
    lines = ["", "Each signal on its own (AUROC of 1 - score for 'fast answer wrong'):", "",
             "| signal | n | AUROC [95% bootstrap] |", "|---|---|---|"]
    lines += [f"| {name} | {v['n']} | {_auroc(v)} |" for name, v in widest["signals"].items()]
    return lines + ["", "Risk-coverage (wrong answers caught against escalation): `risk-coverage.png`."]


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _target_lines(targets: dict[str, Any]) -> list[str]:
    if not targets:
        return []
    yes = {True: "met", False: "**not met**"}
    lines = ["", "## Targets", "", "| claim | target | measured | |", "|---|---|---|---|"]
    vs = targets.get("gated_vs_full")
    if vs:
        f1, tok = vs["target"]
        for name, row in vs["systems"].items():
            lines.append(
                f"| {name} vs full: F1 share at token share | >= {f1:.0%} at <= {tok:.0%} | "
                f"{_share(row['f1_share'])} at {_share(row['token_share'])} | {yes[row['met']]} |"
            )
    if "auroc" in targets:
        a = targets["auroc"]
        lines.append(
            f"| gate AUROC for 'fast answer wrong' (best: {a['best']}) | >= {a['target']} | "
            f"{a['value']:.3f} | {yes[a['met']]} |"
        )
    if "recall@30" in targets:
        r = targets["recall@30"]
        lines.append(
            f"| fast-path evidence recall@30 | >= {r['target']} | {r['value']:.3f} | {yes[r['met']]} |"
        )
    return lines


def _signal_system(by: Scored) -> str | None:
    """The gated system whose records carry signal scores (plain `gated` first)."""
    for name in sorted((n for n in by if System.parse(n).has_gate), key=lambda n: n != "gated"):
        if any(r.gate_signals for r in by[name].values()):
            return name
    return None


def calibration_lines(records: list[Record]) -> list[dict[str, Any]]:
    """Labelled questions for `dualmem calibrate`: a gated run's signal scores with the fast
    answer's F1 and, when the full mode ran, the deliberate answer's F1 (categories 1-4)."""
    by = _scored(records)
    system = _signal_system(by)
    if system is None:
        return []
    lines = []
    for key, g in by[system].items():
        fast = by["fast"].get(key)
        if not g.gate_signals or fast is None:
            continue
        full = by["full"].get(key)
        label = CalibrationRecord(
            signals=g.gate_signals,
            fast_f1=_f1(fast),
            full_f1=_f1(full) if full else None,
            refusal=looks_like_refusal(fast.prediction or ""),
        )
        context = {"conversation": key[0], "q": key[1], "category": g.category}
        lines.append({**context, "calibration": label.as_json()})
    return lines


def write_report(summary: dict[str, Any], records: list[Record], out: Path) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    calibration = calibration_lines(records)
    if calibration:
        text = "".join(json.dumps(line) + "\n" for line in calibration)
        (out / "calibration.jsonl").write_text(text)
    (out / "report.md").write_text(markdown(summary))
    if any(System.parse(name).kind != "retrieval" for name in summary["systems"]):
        from .plot import frontier, risk_coverage

        frontier(summary, out / "frontier.png")
        risk_coverage(summary, out / "risk-coverage.png")
