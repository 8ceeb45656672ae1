"""Fit the gate's thresholds on labelled questions, for a target escalation rate or quality.

A record is one question answered both ways: the signal scores of its fast answer, the fast
answer's F1 and (when known) full deliberation's F1. Escalating a question swaps its fast F1
for its full F1, so each threshold on the weighted signal score gives an escalation rate and
an expected F1; the table of those is the trade-off the user picks from. Records that name
their conversation are also scored cross-validated: each conversation's questions are judged
by the threshold chosen on the others, so the figure is for conversations the choice never saw.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ...config import GateConfig
from ...errors import InvalidInputError
from .signals import combined

__all__ = ["Calibration", "CalibrationRecord", "calibrate", "format_table", "load_records"]


@dataclass
class CalibrationRecord:
    """One labelled question: its fast answer's signal scores and F1s (see the module doc).

    `dualmem bench` writes these (as the "calibration" value of each line of
    `calibration.jsonl`); `load_records` reads them back.
    """

    signals: dict[str, float | None]
    fast_f1: float
    full_f1: float | None = None
    refusal: bool = False
    #: the conversation the question is from: the fold of the cross-validation
    group: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


_RECORD = TypeAdapter(CalibrationRecord)


@dataclass
class Row:
    threshold: float
    escalation: float
    f1: float
    caught: float  # share of wrong fast answers (F1 < 0.5) that escalate


@dataclass
class Calibration:
    config: GateConfig
    table: list[Row] = field(default_factory=list)
    chosen: Row | None = None
    fast_f1: float = 0.0
    full_f1: float | None = None
    #: the target met by thresholds chosen without each conversation, scored on it
    held_out: Row | None = None
    folds: int = 0


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def calibrate(
    records: Sequence[CalibrationRecord],
    *,
    base: GateConfig | None = None,
    target_escalation: float | None = None,
    target_quality: float | None = None,
    band_width: float = 0.2,
) -> Calibration:
    """Pick `score_threshold` (and the cascade band around it) from labelled records.

    `target_escalation`: escalate about this share of questions. `target_quality`: the
    smallest escalation whose expected F1 reaches this share of always-deliberate F1.
    """
    if not records:
        raise InvalidInputError("calibration needs at least one labelled record")
    if (target_escalation is None) == (target_quality is None):
        raise InvalidInputError(
            "give exactly one target: an escalation share (e.g. 0.3) or a quality share of "
            "always-deliberate F1 (e.g. 0.98)"
        )
    target = target_escalation if target_escalation is not None else target_quality
    if not 0.0 <= target <= 1.0:  # type: ignore[operator]
        raise InvalidInputError(f"a calibration target is a share between 0 and 1, got {target}")
    cfg = (base or GateConfig()).model_copy(deep=True)
    scores = [combined(r.signals, cfg.weights) for r in records]
    n = len(records)
    full = _full(records)
    table = _table(records, scores)
    chosen = _choose(table, full, target_escalation, target_quality)
    held_out, folds = _cross_validated(records, scores, target_escalation, target_quality)
    cfg.score_threshold = chosen.threshold
    rank = sum(s < chosen.threshold for s in scores) / n
    cfg.band_low = _quantile(scores, max(0.0, rank - band_width / 2))
    cfg.band_high = _quantile(scores, min(1.0, rank + band_width / 2))
    # each signal's own threshold: the same escalation share on that signal alone
    for name in ("entropy", "coverage", "consistency"):
        values = [v for r in records if (v := r.signals.get(name)) is not None]
        if values:
            setattr(cfg, f"{name}_threshold", _quantile(values, chosen.escalation))
    has_full = any(r.full_f1 is not None for r in records)
    return Calibration(
        config=cfg,
        table=table,
        chosen=chosen,
        fast_f1=sum(r.fast_f1 for r in records) / n,
        full_f1=sum(full) / n if has_full else None,
        held_out=held_out,
        folds=folds,
    )


def _full(records: Sequence[CalibrationRecord]) -> list[float]:
    """Each question's F1 when escalated (its fast F1 where no deliberate answer is known)."""
    return [r.full_f1 if r.full_f1 is not None else r.fast_f1 for r in records]


def _escalated(
    records: Sequence[CalibrationRecord], scores: Sequence[float], thresholds: Sequence[float]
) -> tuple[float, float, float]:
    """(escalation share, expected F1, share of wrong fast answers caught) when each record
    escalates below its threshold."""
    n = len(records)
    esc = [s < t or r.refusal for s, t, r in zip(scores, thresholds, records, strict=True)]
    wrong = [r.fast_f1 < 0.5 for r in records]
    f1 = sum(deep if e else r.fast_f1 for r, e, deep in zip(records, esc, _full(records), strict=True)) / n
    caught = sum(e and w for e, w in zip(esc, wrong, strict=True)) / max(1, sum(wrong))
    return sum(esc) / n, f1, caught


def _table(records: Sequence[CalibrationRecord], scores: Sequence[float]) -> list[Row]:
    table = [
        Row(t, *_escalated(records, scores, [t] * len(records)))
        for t in sorted(set(scores)) + [max(scores) + 1e-9]
    ]
    return sorted(table, key=lambda row: row.escalation)


def _choose(
    table: list[Row], full: Sequence[float], target_escalation: float | None, target_quality: float | None
) -> Row:
    if target_escalation is not None:
        return min(table, key=lambda row: abs(row.escalation - target_escalation))
    goal = target_quality * (sum(full) / len(full))  # type: ignore[operator]
    return next((row for row in table if row.f1 >= goal), table[-1])


def _cross_validated(
    records: Sequence[CalibrationRecord], scores: Sequence[float],
    target_escalation: float | None, target_quality: float | None,
) -> tuple[Row | None, int]:
    """Each conversation's questions under the threshold chosen on the other conversations,
    pooled. None without at least two named conversations."""
    groups = sorted({r.group for r in records if r.group is not None})
    if len(groups) < 2 or any(r.group is None for r in records):
        return None, 0
    order: list[int] = []
    thresholds: list[float] = []
    for group in groups:
        train = [i for i, r in enumerate(records) if r.group != group]
        fold = [records[i] for i in train]
        table = _table(fold, [scores[i] for i in train])
        row = _choose(table, _full(fold), target_escalation, target_quality)
        test = [i for i, r in enumerate(records) if r.group == group]
        order += test
        thresholds += [row.threshold] * len(test)
    pooled = _escalated([records[i] for i in order], [scores[i] for i in order], thresholds)
    # the row's threshold: the median of the folds' own
    return Row(statistics.median(thresholds), *pooled), len(groups)


def format_table(cal: Calibration, rows: int = 12) -> str:
    step = max(1, len(cal.table) // rows)
    shown = cal.table[::step]
    if cal.chosen and cal.chosen not in shown:
        shown = sorted([*shown, cal.chosen], key=lambda r: r.escalation)
    out = ["| threshold | escalation | expected F1 | wrong fast answers caught |", "|---|---|---|---|"]
    for r in shown:
        mark = " <- chosen" if r is cal.chosen else ""
        # without deliberate answers to swap in, an expected F1 would only repeat the fast one
        f1 = f"{r.f1:.3f}" if cal.full_f1 is not None else "-"
        out.append(f"| {r.threshold:.3f} | {r.escalation:.0%} | {f1} | {r.caught:.0%}{mark} |")
    full = f"{cal.full_f1:.3f}" if cal.full_f1 is not None else "n/a"
    out.append(f"\nfast-only F1 {cal.fast_f1:.3f}, always-deliberate F1 {full}")
    if cal.held_out is not None:
        h = cal.held_out
        f1 = f", expected F1 {h.f1:.3f}" if cal.full_f1 is not None else ""
        out.append(
            f"cross-validated by conversation ({cal.folds} folds, each judged by the threshold "
            f"chosen on the others; median {h.threshold:.3f}): {h.escalation:.0%} escalated{f1}, "
            f"{h.caught:.0%} of wrong fast answers caught"
        )
    return "\n".join(out)


def json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of each non-empty line of a labelled-questions file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InvalidInputError(f"cannot read labelled questions from {path}: {e}") from e
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise InvalidInputError(f"{path}:{n} is not a JSON line: {e}") from e


def load_records(path: str | Path) -> list[CalibrationRecord]:
    """Read JSONL lines holding `signals`, `fast_f1`, optional `full_f1` and `refusal`.

    A bench result line nests them under a "calibration" key; both shapes are accepted, and
    lines without labels (e.g. a fast-only run with no score) are skipped.
    """
    records = []
    for n, data in json_lines(path):
        label = _label(data)
        if label is None:
            continue
        try:
            records.append(_RECORD.validate_python(label))
        except ValidationError as e:
            raise InvalidInputError(f"{path}:{n} is not a labelled question: {e}") from e
    if not records:
        raise InvalidInputError(
            f"{path} holds no labelled records (need 'signals' and 'fast_f1' per line)"
        )
    return records


def _label(line: object) -> dict[str, Any] | None:
    """The labels of one JSON line (nested under "calibration" in bench output), or None for a
    line without them."""
    if isinstance(line, dict) and isinstance(line.get("calibration"), dict):
        label = line["calibration"]
        line = {**label, "group": label.get("group") or line.get("conversation")}
    if not isinstance(line, dict) or "signals" not in line or line.get("fast_f1") is None:
        return None
    return line
