"""Relative dates resolved against the line's session date, and "now" questions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dualmem.text import asks_current, resolve_relative

FRIDAY = date(2024, 6, 14)


@pytest.mark.parametrize(
    ("text", "resolved"),
    [
        ("I went there yesterday.", "I went there yesterday (13 June 2024)."),
        ("We met last night", "We met last night (13 June 2024)"),
        ("the day before yesterday", "the day before yesterday (12 June 2024)"),
        ("I ran a race last week", "I ran a race last week (the week before 14 June 2024)"),
        ("Last weekend was fun", "Last weekend (the weekend before 14 June 2024) was fun"),
        ("I painted it last month", "I painted it last month (May 2024)"),
        ("in January... no, last year", "in January... no, last year (2023)"),
        ("moving next month", "moving next month (July 2024)"),
        ("it happened 3 days ago", "it happened 3 days ago (11 June 2024)"),
        ("two weeks ago", "two weeks ago (the week of 31 May 2024)"),
        ("a couple of years ago", "a couple of years ago (2022)"),
        # 14 June 2024 is a Friday: "last Friday" is a week back, "next Friday" a week ahead
        ("last Friday", "last Friday (7 June 2024)"),
        ("last Monday", "last Monday (10 June 2024)"),
        ("next Friday", "next Friday (21 June 2024)"),
        ("across the year 2020 nothing happened", "across the year 2020 nothing happened"),
    ],
)
def test_relative_dates_resolve_against_the_session_date(text: str, resolved: str) -> None:
    assert resolve_relative(text, FRIDAY) == resolved


def test_month_arithmetic_crosses_years() -> None:
    assert resolve_relative("last month", date(2024, 1, 15)) == "last month (December 2023)"
    assert resolve_relative("next month", date(2023, 12, 1)) == "next month (January 2024)"
    assert resolve_relative("5 months ago", date(2024, 3, 1)) == "5 months ago (October 2023)"


def test_words_that_merely_contain_a_phrase_are_left_alone() -> None:
    assert resolve_relative("the yesterdays of youth; todays", FRIDAY) == "the yesterdays of youth; todays"


@pytest.mark.parametrize(
    ("question", "current"),
    [
        ("Which city does Maya live in now?", True),
        ("Is she still training?", True),
        ("What is her current job?", True),
        ("What is the latest book she read?", True),
        ("Where did Maya live in March?", False),
        ("When did she move to Porto?", False),
    ],
)
def test_questions_about_the_present(question: str, current: bool) -> None:
    assert asks_current(question) is current


def test_the_fast_context_resolves_a_raw_turns_relative_dates_but_not_a_facts() -> None:
    from dualmem import format_memories
    from dualmem.answering.gate.signals import Passage
    from dualmem.types import Memory

    said = datetime(2025, 6, 2, 9, tzinfo=UTC)
    turn = Memory(id="t1", text="Maya: I moved to Porto last week!", source_turn_ids=["t1"],
                  created_at=said, updated_at=said, event_date="2025-06-02")
    # an extracted fact's date is the event's: "last week" in its text is not read against it
    fact = Memory(id="f1", text="Maya moved to Porto last week.", source_turn_ids=["t1"],
                  created_at=said, updated_at=said, event_date="2025-05-26")
    assert format_memories([turn, fact]) == [
        "[26 May 2025] Maya moved to Porto last week.",
        "[2 June 2025] Maya: I moved to Porto last week (the week before 2 June 2025)!",
    ]
    # the gate reads what the reader read
    assert "the week before 2 June 2025" in Passage.of(turn).text
    assert turn.render() == "[2 June 2025] Maya: I moved to Porto last week!"  # what is embedded
