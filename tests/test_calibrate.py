"""Calibration: thresholds and cascade band from labelled questions."""

from __future__ import annotations

import pytest

from dualmem.answering.gate import GateConfig
from dualmem.answering.gate.calibrate import CalibrationRecord, calibrate, format_table
from dualmem.answering.gate.signals import combined


def records(n: int = 100) -> list[CalibrationRecord]:
    """Coverage predicts correctness: low coverage -> wrong fast answer, which full deliberation fixes."""
    out = []
    for i in range(n):
        cov = i / (n - 1)
        out.append(CalibrationRecord(signals={"coverage": cov, "consistency": 0.9, "entropy": 0.7},
                                     fast_f1=1.0 if cov >= 0.3 else 0.0, full_f1=0.9))
    return out


def test_target_escalation_picks_the_matching_threshold() -> None:
    cal = calibrate(records(), target_escalation=0.3)
    assert cal.chosen is not None and abs(cal.chosen.escalation - 0.3) <= 0.02
    scores = sorted(combined(r.signals, cal.config.weights) for r in records())
    escalated = sum(s < cal.config.score_threshold for s in scores) / len(scores)
    assert escalated == pytest.approx(cal.chosen.escalation)
    assert cal.config.band_low <= cal.config.score_threshold <= cal.config.band_high


def test_target_quality_escalates_just_enough() -> None:
    cal = calibrate(records(), target_quality=1.0)
    # 70 fast answers score 1.0 and 30 score 0; deliberation scores 0.9 everywhere. Matching
    # always-deliberate F1 (0.9) needs 23 of the 30 wrong ones escalated: the lowest-coverage 23
    assert cal.full_f1 == pytest.approx(0.9)
    assert cal.chosen is not None and cal.chosen.f1 >= 0.9
    assert cal.chosen.escalation == pytest.approx(0.23)
    assert cal.chosen.caught == pytest.approx(23 / 30)


def test_each_signal_gets_its_own_threshold_and_the_table_prints() -> None:
    cal = calibrate(records(), base=GateConfig(coverage_threshold=0.99), target_escalation=0.3)
    assert cal.config.coverage_threshold == pytest.approx(0.3, abs=0.02)
    text = format_table(cal)
    assert "<- chosen" in text and "expected F1" in text and "| 0.970 |" in text
    # no full-deliberation labels: escalation and catches are known, an expected F1 is not
    unlabelled = [CalibrationRecord(r.signals, r.fast_f1) for r in records()]
    text = format_table(calibrate(unlabelled, target_escalation=0.3))
    assert "| - |" in text and "always-deliberate F1 n/a" in text


def test_cross_validation_judges_each_conversation_by_the_others_threshold(tmp_path) -> None:
    same = [CalibrationRecord(**{**vars(r), "group": g}) for g in ("a", "b") for r in records(50)]
    cal = calibrate(same, target_quality=1.0)
    # two conversations alike: the threshold chosen on one serves the other as well
    assert cal.folds == 2 and cal.held_out is not None and cal.chosen is not None
    assert cal.held_out.escalation == pytest.approx(cal.chosen.escalation)
    assert cal.held_out.f1 == pytest.approx(cal.chosen.f1)
    # a conversation whose fast answers are all right teaches "never escalate": the other
    # conversation, judged by that, loses what in-sample calibration promised it
    right = [CalibrationRecord(signals=r.signals, fast_f1=1.0, full_f1=0.9, group="b") for r in records(50)]
    mixed = [CalibrationRecord(**{**vars(r), "group": "a"}) for r in records(50)] + right
    cal = calibrate(mixed, target_quality=1.0)
    assert cal.held_out is not None and cal.chosen is not None
    assert cal.held_out.f1 < cal.chosen.f1
    assert "cross-validated by conversation (2 folds" in format_table(cal)
    # without named conversations there is nothing to hold out
    assert calibrate(records(), target_quality=1.0).held_out is None
    # bench output names the conversation beside the labels
    from dualmem.answering.gate.calibrate import load_records

    path = tmp_path / "calibration.jsonl"
    path.write_text('{"conversation": "conv-x", "calibration": {"signals": {}, "fast_f1": 1}}\n')
    assert [r.group for r in load_records(path)] == ["conv-x"]


def test_bad_arguments(tmp_path) -> None:
    from dualmem.answering.gate.calibrate import load_records
    from dualmem.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="at least one"):
        calibrate([], target_escalation=0.3)
    for kwargs in ({"target_escalation": 0.3, "target_quality": 0.9}, {}):
        with pytest.raises(InvalidInputError, match="exactly one target"):
            calibrate(records(), **kwargs)
    with pytest.raises(InvalidInputError, match="between 0 and 1"):
        calibrate(records(), target_quality=98)
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_records(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"calibration": {"signals": {}, "fast_f1": 1}}\n{not json\n')
    with pytest.raises(InvalidInputError, match="bad.jsonl:2 is not a JSON line"):
        load_records(bad)
