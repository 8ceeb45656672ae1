"""Relative dates resolved against the date a line was said, with no model call.

A 0.5B reader cannot do date arithmetic ("yesterday" said on 8 May 2023 is 7 May 2023); code
can. `resolve_relative` appends the absolute date after each relative phrase, in the form
LoCoMo answers use ("the week before 9 June 2023"), so the reader only has to copy it.
`asks_current` spots the questions whose answer is the latest state ("now", "still").
"""

from __future__ import annotations

import re
from datetime import date, timedelta

__all__ = ["asks_current", "asks_when", "event_date", "resolve_relative"]

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NUMBERS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "couple of": 2, "a couple of": 2,
}
_COUNT = r"(\d{1,2}|a couple of|couple of|an?|one|two|three|four|five|six|seven|eight|nine|ten)"
_CURRENT = re.compile(
    r"\b(now|currently|current|still|latest|most recent(ly)?|these days|nowadays|"
    r"at the moment|at present|presently|anymore|any more)\b",
    re.I,
)

_WHEN = re.compile(r"^\s*(when|on what date|what (date|day|month|year)|which (day|month|year))\b", re.I)

_PHRASE = re.compile(
    r"\b(?:(?P<daybefore>the day before yesterday)|(?P<yesterday>yesterday|last night)"
    r"|(?P<today>today|tonight|this morning|this afternoon|this evening)"
    r"|(?P<tomorrow>tomorrow)"
    r"|(?P<rel>last|this|next|past) (?P<unit>weekend|week|month|year)"
    r"|(?:last|this past) (?P<lastday>" + "|".join(_WEEKDAYS) + r")"
    r"|next (?P<nextday>" + "|".join(_WEEKDAYS) + r")"
    r"|(?P<n>" + _COUNT[1:-1] + r") (?P<agounit>day|week|month|year)s? ago)\b",
    re.I,
)


def human(d: date) -> str:
    return f"{d.day} {d:%B %Y}"


def _month(d: date, shift: int) -> str:
    index = d.year * 12 + d.month - 1 + shift
    return f"{date(index // 12, index % 12 + 1, 1):%B %Y}"


def _resolve(m: re.Match[str], on: date) -> str | None:
    if m["daybefore"]:
        return human(on - timedelta(days=2))
    if m["yesterday"]:
        return human(on - timedelta(days=1))
    if m["today"]:
        return human(on)
    if m["tomorrow"]:
        return human(on + timedelta(days=1))
    if m["unit"]:
        rel, unit = m["rel"].lower(), m["unit"].lower()
        shift = {"last": -1, "past": -1, "this": 0, "next": 1}[rel]
        if unit == "month":
            return _month(on, shift)
        if unit == "year":
            return str(on.year + shift)
        # LoCoMo's own wording for weeks: "the week before 9 June 2023"
        return f"the {unit} {('before', 'of', 'after')[shift + 1]} {human(on)}"
    if m["lastday"]:
        back = (on.weekday() - _WEEKDAYS.index(m["lastday"].lower())) % 7 or 7
        return human(on - timedelta(days=back))
    if m["nextday"]:
        ahead = (_WEEKDAYS.index(m["nextday"].lower()) - on.weekday()) % 7 or 7
        return human(on + timedelta(days=ahead))
    if m["agounit"]:
        n = int(m["n"]) if m["n"].isdigit() else _NUMBERS[m["n"].lower()]
        unit = m["agounit"].lower()
        if unit == "day":
            return human(on - timedelta(days=n))
        if unit == "week":
            return f"the week of {human(on - timedelta(weeks=n))}"
        if unit == "month":
            return _month(on, -n)
        return str(on.year - n)
    return None


def resolve_relative(text: str, on: date) -> str:
    """`text` with "(<absolute date>)" after each relative date phrase, read against `on`."""

    def annotate(m: re.Match[str]) -> str:
        resolved = _resolve(m, on)
        return f"{m[0]} ({resolved})" if resolved else m[0]

    return _PHRASE.sub(annotate, text)


def asks_current(question: str) -> bool:
    """A question about the present state ("Where does she live now?"): the newest evidence
    answers it, older statements are superseded."""
    return bool(_CURRENT.search(question))


def asks_when(question: str) -> bool:
    """A question whose answer is a date."""
    return bool(_WHEN.search(question))


def event_date(said_on: date, text: str) -> str | None:
    """The date of the event a line reports, when the line dates it relative to the day it was
    said ("I went yesterday"); None when it has no relative date."""
    m = _PHRASE.search(text)
    return _resolve(m, said_on) if m else None
