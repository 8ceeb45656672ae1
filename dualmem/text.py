"""Text utilities shared by the index, the gate and deliberation: words, stems and dates.

One light tokenizer for every place that compares words (BM25, gate coverage and
consistency, citing the turn behind a fact), so that they all agree on what a word is.

Relative dates are resolved in code, never by the model: a 0.5B reader cannot do date
arithmetic ("yesterday" said on 8 May 2023 is 7 May 2023). `resolve_relative` appends the
absolute date after each relative phrase, in the form LoCoMo answers use ("the week before
14 June 2024"), so the reader only has to copy it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache

__all__ = [
    "asks_current",
    "asks_when",
    "dated",
    "event_date",
    "human_date",
    "human_day",
    "resolve_relative",
    "stem",
    "terms",
    "tokenize",
]

_WORD = re.compile(r"\w+")
_STOP = frozenset(
    "a an and are as at be but by did do does for from had has have he her his i if in is it"
    " its me my of on or our she so than that the their them they this to was we were what"
    " when where which who whom why will with would you your".split()
)


# stemming and date formatting were 2.5 of the 10 s that building the BM25 index of 30K
# memories took; a partition repeats few words and dates, so both are cached
@lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light suffix strip: "painting"/"paints"/"painted" meet (no nltk on the hot path)."""
    if word.endswith("ies") and len(word) > 4:  # hobbies -> hobby
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    # a final e goes too, so that move / moved / moving all meet at "mov"
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def tokenize(text: str) -> list[str]:
    """Lower-cased words without stop words."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def terms(text: str) -> list[str]:
    """BM25 terms: tokens without stop words, stemmed."""
    return [stem(w) for w in tokenize(text)]


@lru_cache(maxsize=1 << 12)
def human_date(value: str) -> str:
    """'2023-05-07' -> '7 May 2023' (the form LoCoMo answers use); other text unchanged."""
    try:
        d = datetime.strptime(value[:10], "%Y-%m-%d")
    except ValueError:
        return value
    return f"{d.day} {d:%B %Y}"


def human_day(timestamp: datetime) -> str:
    """The day of a timestamp as `human_date` writes it."""
    return human_date(timestamp.date().isoformat())


def dated(text: str, date: str | None) -> str:
    """'[7 May 2023] text' when a date is known: how memories and facts appear in prompts."""
    return f"[{human_date(date)}] {text}" if date else text


# ---------------------------------------------------------------- relative dates

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


def _day(d: date) -> str:
    return human_date(d.isoformat())


def _month(d: date, shift: int) -> str:
    index = d.year * 12 + d.month - 1 + shift
    return f"{date(index // 12, index % 12 + 1, 1):%B %Y}"


def _resolve(m: re.Match[str], on: date) -> str | None:
    if m["daybefore"]:
        return _day(on - timedelta(days=2))
    if m["yesterday"]:
        return _day(on - timedelta(days=1))
    if m["today"]:
        return _day(on)
    if m["tomorrow"]:
        return _day(on + timedelta(days=1))
    if m["unit"]:
        rel, unit = m["rel"].lower(), m["unit"].lower()
        shift = {"last": -1, "past": -1, "this": 0, "next": 1}[rel]
        if unit == "month":
            return _month(on, shift)
        if unit == "year":
            return str(on.year + shift)
        # LoCoMo's own wording for weeks: "the week before 14 June 2024"
        return f"the {unit} {('before', 'of', 'after')[shift + 1]} {_day(on)}"
    if m["lastday"]:
        back = (on.weekday() - _WEEKDAYS.index(m["lastday"].lower())) % 7 or 7
        return _day(on - timedelta(days=back))
    if m["nextday"]:
        ahead = (_WEEKDAYS.index(m["nextday"].lower()) - on.weekday()) % 7 or 7
        return _day(on + timedelta(days=ahead))
    if m["agounit"]:
        n = int(m["n"]) if m["n"].isdigit() else _NUMBERS[m["n"].lower()]
        unit = m["agounit"].lower()
        if unit == "day":
            return _day(on - timedelta(days=n))
        if unit == "week":
            return f"the week of {_day(on - timedelta(weeks=n))}"
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


_COUNT_Q = re.compile(r"\bhow many\b|\bhow often\b|\bnumber of\b", re.I)
_LIST_Q = re.compile(  # a plural after what/which ("what hobbies"), not a verb ("what is") or "class"
    r"\b(list|all|both|each|every|what (are|were)|(what|which) (?!(is|was|has|does|this)\b)\w+[^\Ws]s\b|"
    r"kinds? of|activities|things)\b",
    re.I,
)
_POLAR_Q = re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|would|will|has|have|had|should)\b", re.I)
_ITEM_SPLIT = re.compile(r",|;|\band\b|\bor\b|\n", re.I)


def asks_count(question: str) -> bool:
    """A "how many / how often" question."""
    return bool(_COUNT_Q.search(question))


def asks_polar(question: str) -> bool:
    """A yes/no question ("Would she ...?")."""
    return bool(_POLAR_Q.search(question))


def asks_items(question: str) -> bool:
    """A list or count question ("What hobbies ...?"); a yes/no one ("Would she ... all ...?")
    is not."""
    return bool(_LIST_Q.search(question) or _COUNT_Q.search(question)) and not asks_polar(question)


def answer_items(answer: str) -> list[str]:
    """The items of a list answer ("pottery, running and chess" -> three)."""
    return [x.strip() for x in _ITEM_SPLIT.split(answer) if x.strip()]


def grounded_items(answer: str, question: str, texts: Iterable[str]) -> list[tuple[str, bool]]:
    """Each item of a list answer, and whether `texts` hold it: most of its words beyond the
    question's ("bicycle riding" is not held by "ride a bike"). An item that only restates the
    question ("hobbies") is not held."""
    asked = set(terms(question))
    held = set().union(*(terms(t) for t in texts))
    out = []
    for item in answer_items(answer):
        words = set(terms(item)) - asked
        out.append((item, bool(words) and 2 * len(words & held) > len(words)))
    return out


def asks_when(question: str) -> bool:
    """A question whose answer is a date."""
    return bool(_WHEN.search(question))


def event_date(said_on: date, text: str) -> str | None:
    """The date of the event a line reports, when the line dates it relative to the day it was
    said ("I went yesterday"); None when it has no relative date."""
    m = _PHRASE.search(text)
    return _resolve(m, said_on) if m else None
