"""Gate signals on their own: entropy, coverage, consistency, refusal detection."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dualmem.answering.gate import Passage, consistency, coverage, entropy, looks_like_refusal
from dualmem.answering.gate.signals import unasked
from dualmem.llm.base import ChatRequest
from dualmem.testing import ScriptedLLM, ScriptedReply

NOW = datetime(2023, 5, 7, tzinfo=UTC)


def mem(text: str, score: float = 0.7, event_date: str | None = "2023-05-07") -> Passage:
    return Passage(text=text, score=score, date=event_date)


def logprobs_of(reply: ScriptedReply, *, model_logprobs: bool = True):
    """Token logprobs as a scripted model returns them for an answer call."""
    llm = ScriptedLLM([reply], logprobs=model_logprobs)
    request = ChatRequest(messages=[{"role": "user", "content": "q"}], logprobs=True, top_logprobs=5)
    return llm.complete(request).logprobs


# ---------------------------------------------------------------- entropy


def test_entropy_passes_a_confident_answer() -> None:
    result = entropy(logprobs_of(ScriptedReply("Paris France", confidence=0.99)), threshold=0.5)
    assert result.available and result.passed is True
    assert result.score is not None and result.score > 0.9
    assert result.details["tokens"] == 2
    assert "confident" in result.reason


def test_entropy_fails_an_uncertain_answer() -> None:
    # p=0.2 with four alternatives at 0.2 each: a uniform guess over five tokens
    result = entropy(logprobs_of(ScriptedReply("Paris France", confidence=0.2)), threshold=0.5)
    assert result.available and result.passed is False
    assert result.score is not None and result.score < 0.2
    assert "uncertain" in result.reason


def test_entropy_max_guard_catches_one_uncertain_token() -> None:
    confident = entropy(logprobs_of(ScriptedReply("a b c d", token_probs=[0.99] * 4)), 0.5)
    one_guess = entropy(logprobs_of(ScriptedReply("a b c d", token_probs=[0.99, 0.99, 0.99, 0.2])), 0.5)
    assert one_guess.details["max"] > 0.8 > confident.details["max"]
    assert one_guess.score < confident.score - 0.3


def test_entropy_threshold_is_the_boundary() -> None:
    lp = logprobs_of(ScriptedReply("Paris", confidence=0.7))
    score = entropy(lp, threshold=0.0).score
    assert entropy(lp, threshold=score).passed is True
    assert entropy(lp, threshold=score + 1e-9).passed is False


@pytest.mark.parametrize(
    "logprobs",
    [
        None,
        [],
        logprobs_of(ScriptedReply("Paris"), model_logprobs=False),  # model without logprobs
        logprobs_of(ScriptedReply("Paris", logprobs=False)),  # one reply without them
    ],
)
def test_entropy_unavailable_is_never_a_silent_pass(logprobs) -> None:
    result = entropy(logprobs, threshold=0.5)
    assert result.available is False
    assert result.passed is None and result.score is None
    assert result.threshold == 0.5
    assert "unavailable" in result.reason


# ---------------------------------------------------------------- coverage

QUESTION = "What instrument does Greta play in the orchestra?"


def test_coverage_passes_when_evidence_holds_terms_and_names() -> None:
    evidence = [mem("Greta plays the violin in the city orchestra, her favourite instrument.", 0.7)]
    result = coverage(QUESTION, evidence, threshold=0.5)
    assert result.passed is True
    assert result.details["terms"] == 1.0
    assert result.details["entities"] == 1.0
    assert "missing" not in result.reason


def test_coverage_fails_when_evidence_lacks_the_question() -> None:
    evidence = [mem("Hilde adopted a dog named Rex last spring.", 0.1)]
    result = coverage(QUESTION, evidence, threshold=0.5)
    assert result.passed is False
    assert result.details["terms"] == 0.0
    assert result.details["entities"] == 0.0  # "Greta" is nowhere in the evidence
    assert "missing" in result.reason and "orchestra" in result.reason


def test_coverage_entity_missing_lowers_the_score_by_its_weight() -> None:
    with_name = coverage(QUESTION, [mem("Greta: instrument orchestra play", 0.5)], 0.5)
    without = coverage(QUESTION, [mem("Hilde: instrument orchestra play", 0.5)], 0.5)
    assert with_name.details["entities"] == 1.0 and without.details["entities"] == 0.0
    # "greta" is also a question term (1 of 4)
    assert with_name.score - without.score == pytest.approx(0.15 + 0.5 / 4)


def test_coverage_ignores_terms_found_in_most_memories() -> None:
    # the user's own name is in every memory: matching it says nothing about this question
    evidence = [mem(f"Greta {text}", 0.5) for text in
                ("likes tea", "has a cat", "went to Rome", "plays the violin in the orchestra")]
    result = coverage(QUESTION, evidence, threshold=0.5)
    assert result.details["entities"] == 1.0  # no informative names left: nothing to miss
    few = coverage(QUESTION, evidence[:3], threshold=0.5)  # under 4 memories every term counts
    assert few.details["terms"] == pytest.approx(1 / 4)  # only "greta" of 4 terms
    # "greta" dropped: play and orchestra found, instrument missing
    assert result.details["terms"] == pytest.approx(2 / 3)
    assert "missing: instrument)" in result.reason


def test_coverage_time_question_needs_dated_evidence() -> None:
    question = "When did Greta paint the sunrise?"
    text = "Greta painted the sunrise over the lake."
    dated = coverage(question, [mem(text, 0.6, event_date="2023-05-07")], threshold=0.0)
    undated = coverage(question, [mem(text, 0.6, event_date=None)], threshold=0.0)
    assert dated.details["temporal"] and undated.details["temporal"]
    assert dated.details["dated"] is True and undated.details["dated"] is False
    assert dated.score - undated.score == pytest.approx(0.1)
    assert "no dated evidence for a time question" in undated.reason
    assert "no dated evidence" not in dated.reason
    # a threshold between the two: the missing date alone decides
    mid = (dated.score + undated.score) / 2
    assert coverage(question, [mem(text, 0.6)], mid).passed is True
    assert coverage(question, [mem(text, 0.6, event_date=None)], mid).passed is False


def test_coverage_non_time_question_ignores_dates() -> None:
    undated = coverage(QUESTION, [mem("Greta plays the violin", 0.6, event_date=None)], 0.5)
    assert undated.details["temporal"] is False
    assert "no dated evidence" not in undated.reason


def test_coverage_of_nothing_is_zero() -> None:
    result = coverage(QUESTION, [], threshold=0.1)
    assert result.score == 0.0 and result.passed is False


# ---------------------------------------------------------------- consistency

EVIDENCE = [mem("Greta plays the violin in the city orchestra.")]


def test_consistency_fails_a_refusal_while_evidence_is_relevant() -> None:
    result = consistency("NONE", EVIDENCE, coverage_score=0.8, threshold=0.5)
    assert result.passed is False
    assert result.details["refusal"] is True
    assert "refused although relevant evidence" in result.reason


def test_consistency_refusal_on_weak_evidence_is_less_suspicious() -> None:
    relevant = consistency("I don't know", EVIDENCE, coverage_score=0.8, threshold=0.5)
    weak = consistency("I don't know", EVIDENCE, coverage_score=0.1, threshold=0.5)
    assert weak.score > relevant.score
    assert "evidence is weak" in weak.reason
    assert consistency("I don't know", EVIDENCE, coverage_score=0.1, threshold=0.3).passed is True
    assert consistency("I don't know", EVIDENCE, coverage_score=0.8, threshold=0.3).passed is False


def test_consistency_fails_a_concrete_answer_from_weak_evidence() -> None:
    # every word is grounded, but the evidence barely covers the question
    result = consistency("violin", EVIDENCE, coverage_score=0.2, threshold=0.5)
    assert result.details["grounding"] == 1.0
    assert result.score <= 0.2 and result.passed is False
    assert "weak evidence" in result.reason


def test_consistency_passes_a_grounded_answer() -> None:
    result = consistency("the violin", EVIDENCE, coverage_score=0.8, threshold=0.5)
    assert result.passed is True and result.score == 1.0
    assert "100% of the answer's words" in result.reason


def test_consistency_fails_an_answer_not_in_the_evidence() -> None:
    result = consistency("cello", EVIDENCE, coverage_score=0.8, threshold=0.5)
    assert result.details["grounding"] == 0.0 and result.passed is False


@pytest.mark.parametrize("answer", ["Yes", "No.", "Likely yes", "probably not"])
def test_consistency_judges_a_yes_no_answer_by_coverage_not_by_its_verdict_word(answer: str) -> None:
    # "yes" never appears in the evidence: counting it as ungrounded failed every yes/no answer
    relevant = consistency(answer, EVIDENCE, coverage_score=0.8, threshold=0.5)
    weak = consistency(answer, EVIDENCE, coverage_score=0.35, threshold=0.5)
    assert relevant.passed is True and relevant.score == pytest.approx(0.8)
    assert weak.passed is False and "yes/no answer" in weak.reason
    # a yes/no with a reason is still grounded word by word
    assert consistency(f"{answer}, the cello", EVIDENCE, 0.8, threshold=0.5).details["grounding"] == 0.0


def test_consistency_sampled_answers_agreeing_or_not() -> None:
    agree = consistency(
        "violin", EVIDENCE, 0.8, threshold=0.6, samples=["violin", "the violin", "Violin."]
    )
    disagree = consistency("violin", EVIDENCE, 0.8, threshold=0.6, samples=["cello", "piano", "drums"])
    assert agree.details["agreement"] == 1.0 and agree.passed is True
    assert disagree.details["agreement"] == 0.0 and disagree.passed is False
    assert disagree.score == pytest.approx(0.5)  # half grounding, half agreement
    assert "0% of 3 sampled answers agree" in disagree.reason
    partial = consistency("violin", EVIDENCE, 0.8, threshold=0.6, samples=["violin", "cello", "piano"])
    assert partial.details["agreement"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "text", ["NONE", "none", "", "  ", "I don't know", "Not mentioned in the memories", "unknown",
             "It is unclear", "There is no information", "There is nothing about it", "n/a", "NONE."]
)
def test_refusals_are_recognised(text: str) -> None:
    assert looks_like_refusal(text)


@pytest.mark.parametrize(
    "text",
    ["Paris", "7 May 2023", "violin, piano", "Nonna's house", "Unicorn stickers",
     "Nonesuch Records", "Nonetheless, Paris", "Insufficiently funded"],  # a prefix is not a refusal
)
def test_answers_are_not_refusals(text: str) -> None:
    assert not looks_like_refusal(text)


def test_unasked_names_the_question_words_no_passage_holds() -> None:
    dog = [Passage(f"Maya: {x}") for x in ("I adopted a dog called Biscuit.", "Biscuit barks at seagulls.",
                                           "She sleeps on my feet.", "The vet is Dr. Okafor.",
                                           "Work is busy.")]
    assert unasked("What is Maya's favourite film?", dog) == ["favourit", "film"]
    # one word held is enough, however many lines hold it
    dancers = [Passage(f"Gina: the dancers in painting {i} were great") for i in range(6)]
    assert unasked("What do the dancers in the painting stand for?", dancers) == []
    # a yes/no question may be inferred from lines about other things
    assert unasked("Would Maya enjoy a film festival?", dog) == []
    # the speakers' names say nothing of the subject; other names do
    assert unasked("When did Maya mention Biscuit?", dog) == []
    assert unasked("When did Maya mention Ines?", dog) == ["ine", "mention"]
