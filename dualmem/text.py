"""Text utilities shared by the index, the gate and deliberation: words, stems and dates.

One light tokenizer for every place that compares words (BM25, gate coverage and
consistency, citing the turn behind a fact), so that they all agree on what a word is.
"""

from __future__ import annotations

import re
from datetime import datetime

__all__ = ["dated", "human_date", "human_day", "stem", "terms", "tokenize"]

_WORD = re.compile(r"\w+")
_STOP = frozenset(
    "a an and are as at be but by did do does for from had has have he her his i if in is it"
    " its me my of on or our she so than that the their them they this to was we were what"
    " when where which who whom why will with would you your".split()
)


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
