"""Arbitration: System 2's answer replaces the fast one only when the raw evidence supports it
better; refusals, middle tiers and "now" questions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dualmem.answering.deliberate import arbitrate, supported_by
from dualmem.answering.gate.signals import Passage
from dualmem.types import Candidate, Turn

MARCH, JUNE = datetime(2025, 3, 3, tzinfo=UTC), datetime(2025, 6, 2, tzinfo=UTC)
LISBON = Turn(id="t1", speaker="Maya", text="I still live in Lisbon for now.", timestamp=MARCH)
PORTO = Turn(id="t2", speaker="Maya", text="I moved to Porto last week!", timestamp=JUNE)
RINGS = Turn(id="t3", speaker="Maya", text="Biscuit carried the rings in a little basket.", timestamp=JUNE)
EVIDENCE = [LISBON, PORTO, RINGS]


def pick(
    question: str, *answers: tuple[str, str], evidence=EVIDENCE
) -> tuple[Candidate, str, list[Candidate]]:
    candidates, why = arbitrate(question, [(s, t, []) for s, t in answers], evidence)
    (winner,) = [c for c in candidates if c.won]  # exactly one marked
    return winner, why, candidates


def test_support_is_the_share_of_answer_words_in_the_evidence_weighted_by_rarity() -> None:
    assert supported_by("Porto", EVIDENCE) == (1.0, JUNE)
    # Porto is in one of the three lines, Madrid in none: idf log(4/1.5) against log(4/0.5)
    assert supported_by("Porto and Madrid", EVIDENCE)[0] == pytest.approx(0.3205, abs=1e-4)
    # a common word cannot carry the word that tells the answer: "new" is in the newest line,
    # "York" in no line, so the answer is not supported and that line does not hold it
    moved = Turn(id="t4", speaker="Maya", text="The new flat is near the river.", timestamp=JUNE)
    also = Turn(id="t5", speaker="Maya", text="I got a new bike.", timestamp=MARCH)
    assert supported_by("New York", [LISBON, moved, also]) == (pytest.approx(0.184, abs=1e-3), None)
    assert supported_by("Porto", [LISBON, moved, also]) == (0.0, None)
    assert supported_by("Madrid", EVIDENCE) == (0.0, None)
    assert supported_by("yes", EVIDENCE) == (None, None)  # a bare yes/no cannot be grounded


def test_support_reads_relative_dates_resolved_against_the_session_date() -> None:
    # "last week" said on 2 June 2025 is the week before 2 June 2025
    share, newest = supported_by("the week before 2 June 2025", [PORTO])
    assert share == 1.0 and newest == JUNE


def test_a_refusal_never_replaces_a_supported_answer() -> None:
    winner, why, _ = pick("Who carried the rings?", ("fast", "Biscuit"), ("evidence", "NONE"))
    assert winner.source == "fast" and why == "evidence found no answer; fast's answer stands"


def test_a_refusal_replaces_an_answer_the_evidence_does_not_hold() -> None:
    winner, why, _ = pick("What did Maya do after she moved?", ("fast", "Biscuit"), ("evidence", "NONE"),
                          evidence=[LISBON, PORTO])
    assert winner.source == "evidence"
    assert why == "evidence found no answer and fast's answer has no support in its evidence"


def test_a_refusal_wins_when_nothing_retrieved_or_selected_speaks_of_what_is_asked() -> None:
    # "Biscuit" is in the lines, but no line mentions a film: the answer is about something else
    retrieved = [Passage(f"Maya: {t.text}") for t in EVIDENCE] + [Passage("Maya: I found a new hobby.")]
    answers = [("fast", "Biscuit", []), ("evidence", "NONE", [])]
    candidates, why = arbitrate("What is Maya's favourite film?", answers, EVIDENCE, retrieved)
    assert [c.won for c in candidates] == [False, True]
    assert why == ("evidence found no answer, and no retrieved or selected line mentions favourit, film: "
                   "fast's answer is about something else")
    # a line that speaks of it (even without the answer) keeps the supported answer
    about = [*retrieved, Passage("Maya: We watched a film about dogs.")]
    candidates, why = arbitrate("What is Maya's favourite film?", answers, EVIDENCE, about)
    assert candidates[0].won and why == "evidence found no answer; fast's answer stands"
    # the user's own name, held by most lines, is not what the question asks about
    candidates, _ = arbitrate("Who carried the rings for Maya?", answers, EVIDENCE, retrieved)
    assert candidates[0].won


def test_a_supported_answer_replaces_a_refusal_and_an_unsupported_one_does_not() -> None:
    winner, why, cands = pick("Who carried the rings?", ("fast", "NONE"), ("evidence", "Biscuit"))
    assert winner.source == "evidence" and cands[1].support == 1.0
    assert why == "fast found no answer; evidence's answer is supported (100%)"
    winner, why, _ = pick("Who carried the rings?", ("fast", "NONE"), ("evidence", "Ines"))
    assert winner.source == "fast" and why == "fast found no answer, and evidence's is not supported either"


def test_agreeing_answers_change_nothing() -> None:
    winner, why, _ = pick("Who carried the rings?", ("fast", "Biscuit"), ("evidence", "biscuit"))
    assert winner.source == "fast" and why == "evidence agrees with fast"


def test_an_unsupported_challenger_never_wins() -> None:
    winner, why, cands = pick("Who carried the rings?", ("fast", "Ines"), ("evidence", "Tomas the potter"))
    assert winner.source == "fast" and cands[1].support == 0.0
    assert why == "evidence's answer is not supported by its evidence (0%)"


def test_a_supported_system_2_answer_replaces_the_fast_one_however_well_that_is_supported() -> None:
    winner, _, _ = pick("Who carried the rings?", ("fast", "Ines and Maya"), ("evidence", "Biscuit"))
    assert winner.source == "evidence"
    challenger = ("evidence", "Biscuit carried rings for Ines")
    winner, why, cands = pick("Who carried the rings?", ("fast", "Biscuit"), challenger)
    assert 0.5 < cands[1].support < 1  # supported, but one word of four (the rarest) is in no line
    assert winner.source == "evidence" and why.startswith("evidence's answer is supported 59% against 100%")


def test_between_system_2_tiers_the_better_supported_answer_wins() -> None:
    tiers = ("fast", "NONE"), ("neighbours", "Biscuit"), ("full", "Biscuit carried rings for Ines")
    winner, why, _ = pick("Who carried the rings?", *tiers)
    assert winner.source == "neighbours" and why.startswith("neighbours's answer is better supported")


@pytest.mark.parametrize("order", [("Lisbon", "Porto"), ("Porto", "Lisbon")])
def test_for_a_now_question_the_newest_evidence_wins(order: tuple[str, str]) -> None:
    winner, why, _ = pick("Which city does Maya live in now?", ("fast", order[0]), ("evidence", order[1]))
    assert winner.text == "Porto"
    assert why.startswith("a question about now: the newest evidence (2025-06-02) holds")


def test_without_now_both_supported_answers_tie_and_system_2_wins() -> None:
    # System 2 read focused evidence; the fast path a broad top-k list
    winner, why, _ = pick("Which city did Maya live in?", ("fast", "Lisbon"), ("evidence", "Porto"))
    assert winner.source == "evidence"
    assert why == "evidence's answer is supported 100% against 100% for fast's"


def test_a_middle_tier_answer_is_not_thrown_away_for_a_weaker_full_pass() -> None:
    winner, why, cands = pick(
        "Which city does Maya live in now?", ("fast", "NONE"), ("neighbours", "Porto"), ("full", "Lisboa")
    )
    assert winner.source == "neighbours" and [c.won for c in cands] == [False, True, False]
    assert why == "full's answer is not supported by its evidence (0%)"
    winner, _, _ = pick("Which city does Maya live in now?", ("fast", "NONE"), ("neighbours", "Porto"),
                        ("full", "Lisbon"))
    assert winner.source == "neighbours"  # supported, but older


def test_a_yes_no_challenger_cannot_replace_a_concrete_answer() -> None:
    winner, why, _ = pick("Does Maya live in Porto?", ("fast", "Porto"), ("evidence", "Yes"))
    assert winner.source == "fast" and "yes/no answer cannot be checked" in why


def test_an_answer_that_only_repeats_the_question_never_wins() -> None:
    # "Maya" is held by every line, so it is "supported", and it says nothing
    winner, why, _ = pick("Who carried the rings for Maya?", ("fast", "Biscuit"), ("evidence", "Maya"))
    assert winner.source == "fast"
    assert why == "evidence's answer only repeats words of the question; fast's stands"
    # an either/or question is answered by one of its own words
    winner, _, _ = pick("Did Maya move to Porto or Lisbon?", ("fast", "Biscuit"), ("evidence", "Porto"))
    assert winner.source == "evidence"
    # a word the question lacks makes it an answer
    winner, _, _ = pick("Where did Maya move?", ("fast", "Lisbon"), ("evidence", "Maya moved to Porto"))
    assert winner.source == "evidence"


def test_echoes() -> None:
    from dualmem.answering.deliberate.arbiter import echoes

    assert echoes("maya", "What does Maya promise Ines she will never do?")
    assert echoes("storm gardens", "How did the storm damage the gardens on Ana's street?")
    assert not echoes("skydiving", "What does Maya promise Ines she will never do?")
    assert not echoes("cats", "Does she prefer cats or dogs?")
    assert not echoes("yes", "Is Maya a runner?")  # a bare yes/no has no words to repeat
