"""The benchmark scorers, pinned on BENCHMARKS.md's worked examples."""

from __future__ import annotations

import pytest

from dualmem.bench.data import parse_evidence
from dualmem.bench.score import (
    auroc,
    is_refusal,
    is_refusal_or_none,
    locomo_f1,
    mem0_f1,
    normalize_answer,
    recall_at_k,
    token_f1,
)


def test_long_answer_is_penalised_through_precision():
    f1 = locomo_f1("She went to the choir rehearsal downtown on 7 May 2023", "7 May 2023", 2)
    assert f1 == pytest.approx(6 / 13)  # P 3/10, R 1 -> 0.4615
    assert round(f1, 3) == 0.462


def test_porter_stems_make_inflections_match():
    assert token_f1("dogs running", "dog runs") == 1.0


def test_normalisation_order_and_quirks():
    assert normalize_answer("Self-care, at 10:30!") == "selfcare at 1030"
    assert normalize_answer("The cat and a dog") == "cat dog"  # "and" goes like an article
    assert normalize_answer("Hilde’s") == "hilde’s"  # non-ASCII punctuation is kept
    assert token_f1("Hilde’s", "Hilde's") == 0.0
    assert normalize_answer("Andrew  thesis") == "andrew thesis"  # whole words only


def test_multi_hop_splits_on_commas_and_averages_over_gold_pieces():
    gold = "pottery, sailing, chess, swimming"
    assert locomo_f1("pottery and chess", gold, 1) == pytest.approx(1 / 3)
    assert locomo_f1("pottery, chess", gold, 1) == pytest.approx(0.5)
    # extra predicted items cost nothing
    assert locomo_f1("pottery, chess, sailing, swimming, yoga", gold, 1) == 1.0
    # the same prediction outside category 1 is one piece
    assert locomo_f1("pottery, chess", gold, 4) == pytest.approx(2 * (2 / 2) * (2 / 4) / 1.5)


def test_open_domain_cuts_the_gold_at_the_first_semicolon():
    gold = "LIkely no; though he enjoys sailing, he wants to be a pilot"
    assert locomo_f1("likely no", gold, 3) == 1.0
    assert locomo_f1("likely no", gold, 4) < 0.5


def test_category_five_is_a_refusal_check():
    assert is_refusal("Not mentioned in the conversation")
    assert is_refusal("No information available.")
    assert not is_refusal("NONE")
    assert not is_refusal("She has two dogs")
    assert is_refusal_or_none("NONE")
    assert is_refusal_or_none("None.")
    assert is_refusal_or_none("Not mentioned in the conversation")
    assert not is_refusal_or_none("None of her friends came")
    with pytest.raises(ValueError):
        locomo_f1("anything", "x", 5)


def test_integer_gold_and_empty_prediction():
    assert locomo_f1("2022", "2022", 2) == 1.0
    assert locomo_f1("", "7 May 2023", 2) == 0.0


def test_mem0_f1_uses_sets_without_stemming():
    assert mem0_f1("dogs running", "dog runs") == 0.0
    assert mem0_f1("Paris, France.", "paris france") == 1.0
    assert mem0_f1("the the cat", "the cat") == 1.0  # sets: repeats do not count
    assert mem0_f1("", "x") == 0.0
    # no comma splitting: one list against another
    assert mem0_f1("pottery and chess", "pottery, sailing, chess, swimming") == pytest.approx(
        2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4)
    )


def test_evidence_parsing_is_lenient():
    assert parse_evidence(["D1:3"]) == ["D1:3"]
    assert parse_evidence(["D8:6; D9:17", "D9:1 D4:4 D4:6"]) == ["D8:6", "D9:17", "D9:1", "D4:4", "D4:6"]
    assert parse_evidence(["D:11:26", "D 2:18", "D20:6.", "D17;39"]) == ["D11:26", "D2:18", "D20:6", "D17:39"]
    assert parse_evidence(["D", "", "D58"]) == []
    assert parse_evidence(["D12:3-D12:5"]) == ["D12:3", "D12:4", "D12:5"]
    assert parse_evidence(["D30:05"]) == ["D30:5"]
    # ids that do not exist in the conversation are dropped
    assert parse_evidence(["D1:3", "D10:19"], known={"D1:3"}) == ["D1:3"]
    assert parse_evidence(["D1:3", "D1:3"]) == ["D1:3"]


def test_recall_at_k():
    ranked = ["D1:1", "D1:2", "D2:5", "D3:1"]
    assert recall_at_k(ranked, ["D2:5", "D9:9"], 3) == 0.5
    assert recall_at_k(ranked, ["D2:5"], 2) == 0.0
    assert recall_at_k(ranked, [], 3) is None


def test_auroc_counts_pairs_and_ties():
    assert auroc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    # 1 positive above 2 of 3 negatives, tied with the third: (2 + 0.5) / 3
    assert auroc([0.5, 0.5, 0.1, 0.2], [True, False, False, False]) == pytest.approx(2.5 / 3)
    assert auroc([0.3, 0.4], [True, True]) is None
