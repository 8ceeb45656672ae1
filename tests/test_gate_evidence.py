"""The evidence signals (sufficiency, recency, aggregation) and the learned gate model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dualmem.answering.gate.evidence import aggregation, question_shape, recency, sufficiency
from dualmem.answering.gate.learned import FEATURES, GateModel, auroc, bootstrap_interval, fit, risk_coverage
from dualmem.answering.gate.signals import Passage
from dualmem.errors import ConfigError, InvalidInputError

MOVE = [
    Passage("Maya: I still live in Lisbon for now, thinking about moving north.", 0.62, "2025-03-03"),
    Passage("Maya: News: I moved to Porto last week! The flat has a balcony.", 0.55, "2025-06-02"),
    Passage("Maya: Biscuit loves the balcony.", 0.30, "2025-06-02"),
]
HOBBIES = [
    Passage("Maya: I signed up for a pottery class on Tuesday evenings.", 0.5, "2025-04-14"),
    Passage("Maya: I joined a running club that meets by the Douro on Sundays.", 0.5, "2025-09-15"),
    Passage("Maya: I quit the pottery class, the studio is too far.", 0.4, "2025-06-02"),
]


def test_recency_fails_a_now_question_answered_from_older_evidence():
    stale = recency("Which city does Maya live in now?", "Lisbon", MOVE, refusal=False)
    assert stale.available and stale.passed is False
    assert "newer" in stale.reason and "now" in stale.reason
    fresh = recency("Which city does Maya live in now?", "Porto", MOVE, refusal=False)
    assert fresh.passed is True and fresh.score == 1.0
    # the same gap weighs less when the question is not about the present
    past = recency("Which city did Maya live in?", "Lisbon", MOVE, refusal=False)
    assert past.score > stale.score


def test_recency_is_unavailable_rather_than_passing_when_it_cannot_judge():
    assert recency("Where does Maya live now?", "NONE", MOVE, refusal=True).available is False
    assert recency("Where does Maya live now?", "Madrid", MOVE, refusal=False).available is False
    undated = [Passage(p.text, p.score, None) for p in MOVE]
    r = recency("Where does Maya live now?", "Lisbon", undated, refusal=False)
    assert r.available is False and r.passed is None and "dates" in r.reason


def test_aggregation_fails_a_list_answered_with_one_item_or_from_one_session():
    q = "What hobbies has Maya taken up this year?"
    one = aggregation(q, "Running club", HOBBIES, refusal=False)
    assert one.passed is False and "1 item" in one.reason
    both = aggregation(q, "Pottery and a running club", HOBBIES, refusal=False)
    assert both.passed is True
    # two items, but drawn from one session's evidence
    same = [Passage("Maya: pottery on Tuesdays and running on Sundays", 0.5, "2025-04-14")]
    assert aggregation(q, "pottery, running", same, refusal=False).passed is False
    # a count question is judged by the sessions its evidence spans, not by items
    count = aggregation("How many classes has Maya quit?", "1", HOBBIES, refusal=False)
    assert count.details["list"] is True
    single = aggregation("What is Maya's dog called?", "Biscuit", HOBBIES, refusal=False)
    assert single.passed is True and single.reason == "not a list or count question"


def test_aggregation_fails_a_list_padded_with_an_item_no_passage_holds():
    q = "What hobbies has Maya taken up this year?"
    ride = [*HOBBIES, Passage("Maya: Ines taught me to ride a bike and I crashed.", 0.3, "2025-06-02")]
    padded = aggregation(q, "Running club, bicycle riding", ride, refusal=False)
    assert padded.passed is False and padded.details["held"] == 0.5
    assert "no passage holds 'bicycle riding'" in padded.reason
    # words of the question are not an item's evidence ("hobbies" alone holds nothing)
    assert aggregation(q, "running club, hobbies", ride, refusal=False).passed is False
    assert aggregation(q, "running club, pottery", ride, refusal=False).passed is True


def test_aggregation_fails_a_list_that_names_an_item_twice():
    q = "What hobbies has Maya taken up this year?"
    looped = aggregation(q, "Running club, pottery class, running club", HOBBIES, refusal=False)
    assert looped.passed is False and looped.details["repeated"] == 1.0
    assert looped.reason.endswith("it names 'running club' twice")
    # word order and case do not make an item new; different items pass
    assert aggregation(q, "club running, Pottery, Running Club", HOBBIES, refusal=False).passed is False
    assert aggregation(q, "running club, pottery class", HOBBIES, refusal=False).details["repeated"] == 0.0


def test_sufficiency_reads_whether_the_top_passages_hold_the_question():
    good = sufficiency("Which club did Maya join by the Douro?", HOBBIES)
    bad = sufficiency("What is the name of Maya's accountant in Madrid?", HOBBIES)
    assert good.score > bad.score and good.passed and not bad.passed
    assert "missing" in bad.reason
    empty = sufficiency("anything?", [])
    assert empty.available is False and empty.score is None


def test_question_shape_flags():
    assert question_shape("How many times did Maya move?")["count"] == 1.0
    assert question_shape("Does Maya still live in Lisbon?")["now"] == 1.0
    assert question_shape("Does Maya still live in Lisbon?")["polar"] == 1.0
    assert question_shape("When did Maya move?")["temporal"] == 1.0
    assert question_shape("Who is Ines?")["list"] == 0.0


def _synthetic(n=240, seed=0):
    rng = np.random.default_rng(seed)
    rows, wrong, groups = [], [], []
    for i in range(n):
        signal, noise = rng.normal(), rng.normal()
        rows.append({"a": signal, "b": noise, "c": None if i % 7 == 0 else 0.5})
        wrong.append(bool(signal + 0.5 * rng.normal() > 0.3))
        groups.append(f"conv-{i % 4}")
    return rows, wrong, groups


def test_fit_cross_validates_by_group_and_picks_an_operating_point(tmp_path):
    rows, wrong, groups = _synthetic()
    report = fit(rows, wrong, groups, names=["a", "b", "c"], max_escalation=0.5, max_right_escalated=0.2)
    assert report.groups == 4 and report.n == 240
    assert report.cv_auroc > 0.8 and report.interval[0] < report.cv_auroc < report.interval[1]
    assert report.per_feature["a"] > 0.8 and 0.35 < report.per_feature["b"] < 0.65
    chosen = report.chosen
    assert chosen is not None and chosen.escalation <= 0.5 and chosen.right_escalated <= 0.2
    model = report.model
    assert model.threshold == chosen.threshold
    assert model.probability({"a": 2.0, "b": 0.0}) > 0.9 > 0.1 > model.probability({"a": -2.0, "b": 0.0})
    # a missing feature sits at its training mean: it adds nothing to the log-odds
    assert model.contributions({"a": 0.0, "b": 0.0, "c": None})["c"] == 0.0
    path = tmp_path / "gate.json"
    model.save(path)
    assert GateModel.load(path, ["c", "b", "a"]).probability({"a": 1.0}) == model.probability({"a": 1.0})


def test_fit_chooses_a_small_feature_set_inside_each_fold_when_the_rest_is_noise():
    rng = np.random.default_rng(1)
    rows, wrong, groups = [], [], []
    for i in range(180):
        signal = rng.normal()
        row = {name: float(rng.normal()) for name in FEATURES}  # 40 features of noise...
        row["entropy.mean"] = signal  # ...and one that carries the label
        rows.append(row)
        wrong.append(bool(signal + 0.7 * rng.normal() > 0.0))
        groups.append(f"conv-{i % 6}")
    report = fit(rows, wrong, groups, names=list(FEATURES))
    assert report.feature_set != "all" and "entropy.mean" in report.model.features
    assert len(report.model.features) < 10 and len(report.fold_choices) == 6
    assert all(choice != "all" for choice, _ in report.fold_choices)
    assert report.cv_auroc > 0.75
    # the choice is made by cross-validation: all 40 features, fitted alone, rank worse
    alone = fit(rows, wrong, groups, names=list(FEATURES), sets={})
    assert alone.feature_set == "all" and alone.cv_auroc < report.cv_auroc


def test_a_model_for_other_features_refuses_to_load(tmp_path):
    rows, wrong, groups = _synthetic()
    path = tmp_path / "gate.json"
    fit(rows, wrong, groups, names=["a", "b"]).model.save(path)
    with pytest.raises(ConfigError, match=r"other features \(unknown here: \['b'\]\)"):
        GateModel.load(path, ["a", "c"])
    assert GateModel.load(path, ["a", "b", "c"]).features == ["a", "b"]  # a subset is fine
    raw = json.loads(path.read_text())
    path.write_text(json.dumps({**raw, "weights": [1.0]}))
    with pytest.raises(ConfigError, match="vectors of sizes"):
        GateModel.load(path)
    path.write_text(json.dumps({**raw, "format": "something/9"}))
    with pytest.raises(ConfigError, match="not a dualmem.gate-model/1 file"):
        GateModel.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read gate model"):
        GateModel.load(path)


def test_fit_rejects_one_class_and_ragged_input():
    with pytest.raises(InvalidInputError, match="both right and wrong"):
        fit([{"a": 1.0}] * 3, [True] * 3, ["x", "y", "z"], names=["a"])
    with pytest.raises(InvalidInputError, match="same length"):
        fit([{"a": 1.0}] * 3, [True, False], ["x", "y", "z"], names=["a"])


def test_auroc_interval_and_risk_coverage():
    assert auroc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([0.1], [True]) is None
    low, high = bootstrap_interval([0.9, 0.8, 0.7, 0.2, 0.1, 0.3], [True, True, False, False, False, True])
    assert 0.0 <= low <= high <= 1.0
    rows = risk_coverage([0.9, 0.8, 0.2, 0.1], [True, True, False, False], steps=4)
    half = next(r for r in rows if r.escalation == 0.5)
    assert half.caught == 1.0 and half.right_escalated == 0.0 and half.lift == 2.0


def test_a_yes_no_question_is_not_a_list_question():
    q = "Would Maya enjoy all of the running club's races?"
    assert question_shape(q)["list"] == 0.0
    assert aggregation(q, "Yes", HOBBIES, refusal=False).reason == "not a list or count question"
