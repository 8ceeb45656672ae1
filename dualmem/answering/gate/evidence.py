"""Evidence signals: is the answer's evidence there, complete and current?

With a 0.5B reader, F1 is ~0.52 when all the evidence is in the context and ~0.13 when some
is missing, so whether the fast answer is wrong is mostly whether retrieval found the whole,
latest evidence. These signals read that from the retrieved passages themselves:
- `sufficiency`: how much of the question (its terms, names and numbers) the top passages hold;
- `recency`: newer passages on the same subject than the ones the answer came from;
- `aggregation`: a list or count question answered with one item, or from one session.
Each says "unavailable" when it cannot be computed, never passes silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import date

from ...text import answer_items, asks_count, asks_items, asks_polar, grounded_items, stem
from ...types import SignalResult
from .signals import _ENTITY, Passage, question_terms

__all__ = ["aggregation", "question_shape", "recency", "sufficiency"]

_NOW = re.compile(
    r"\b(now|current(ly)?|still|latest|these days|at the moment|today|anymore|most recent(ly)?)\b", re.I
)
_TEMPORAL = re.compile(r"\b(when|what (year|month|day|date|time)|how long|which (year|month|day))\b", re.I)
SUBJECT = 5  # the top passages that make up a question's subject, for recency


def _judged(name: str, score: float, threshold: float, reason: str, details: dict) -> SignalResult:
    return SignalResult(
        name=name, score=score, threshold=threshold, passed=score >= threshold, reason=reason, details=details
    )


def _unavailable(name: str, threshold: float, why: str) -> SignalResult:
    return SignalResult(
        name=name, score=None, threshold=threshold, passed=None, available=False, reason=f"unavailable: {why}"
    )


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value[:10]) if value else None
    except ValueError:
        return None


def question_shape(question: str) -> dict[str, float]:
    """What kind of answer the question wants; the learned gate weighs it (a temporal or
    list question fails more often than a single-hop lookup)."""
    return {
        "now": float(bool(_NOW.search(question))),
        "count": float(asks_count(question)),
        "list": float(asks_items(question)),
        "polar": float(asks_polar(question)),
        "temporal": float(bool(_TEMPORAL.search(question))),
        "terms": math.log1p(len(question_terms(question))),
    }


def sufficiency(question: str, passages: Sequence[Passage], threshold: float = 0.5) -> SignalResult:
    """How much of what the question names the top-5 passages hold, and how high the best
    lexical match ranks."""
    if not passages:
        return _unavailable("sufficiency", threshold, "no evidence was retrieved")
    terms = question_terms(question)
    names = {stem(e.lower().removesuffix("'s")) for e in _ENTITY.findall(question)}
    held = [question_terms(p.text) for p in passages]
    top = set().union(*held[:5])
    term_cov = len(terms & top) / len(terms) if terms else 1.0
    name_cov = len(names & top) / len(names) if names else 1.0
    overlap = [len(terms & h) / len(terms) if terms else 0.0 for h in held]
    best = max(overlap)
    best_rank = overlap.index(best)
    scores = [p.score for p in passages]
    score = 0.45 * term_cov + 0.35 * name_cov + 0.2 * (1.0 if best_rank < 5 else 0.0)
    missing = sorted(terms - top)[:4]
    return _judged(
        "sufficiency",
        score,
        threshold,
        f"top 5 hold {term_cov:.0%} of the question's terms and {name_cov:.0%} of its names"
        + (f" (missing: {', '.join(missing)})" if missing else "")
        + f"; the best lexical match is at rank {best_rank + 1}",
        {
            "terms": term_cov,
            "names": name_cov,
            "best_overlap": best,
            "best_rank": math.log1p(best_rank),
            "top1": scores[0],
            "margin": scores[0] - scores[min(4, len(scores) - 1)],
            "dates": float(len({p.date for p in passages[:10]})),
        },
    )


def _support(answer: str, question: str, passages: Sequence[Passage]) -> list[int]:
    words = question_terms(answer) - question_terms(question)
    return [i for i, p in enumerate(passages) if words and words & question_terms(p.text)]


def recency(
    question: str, answer: str, passages: Sequence[Passage], refusal: bool, threshold: float = 0.5
) -> SignalResult:
    """Fails when a newer passage on the question's subject than any the answer came from
    exists; a "now / still / currently" question fails sooner."""
    if refusal:
        return _unavailable("recency", threshold, "the answer is a refusal")
    support = _support(answer, question, passages)
    if not support:
        return _unavailable("recency", threshold, "no passage holds the answer's words")
    # the subject: what the search ranked highest ("I moved to Porto" shares no word with
    # "which city does she live in", but ranks near the top for it)
    days = [d for p in passages[:SUBJECT] if (d := _day(p.date))]
    used = [d for i in support if (d := _day(passages[i].date))]
    if not days or not used:
        return _unavailable("recency", threshold, "the evidence carries no dates")
    gap = max(0, (max(days) - max(used)).days)
    now = bool(_NOW.search(question))
    score = 1.0 / (1.0 + gap / (30.0 if now else 180.0))
    return _judged(
        "recency",
        score,
        threshold,
        (
            "the answer comes from the latest evidence on the subject"
            if gap == 0
            else f"evidence on the subject {gap} days newer than the answer's exists"
            + (" and the question asks about now" if now else "")
        ),
        {"gap_days": math.log1p(gap), "now": now},
    )


def aggregation(
    question: str, answer: str, passages: Sequence[Passage], refusal: bool, threshold: float = 0.75
) -> SignalResult:
    """Fails a list or count question answered with one item or from one session's evidence."""
    count = asks_count(question)
    if not asks_items(question):
        return _judged("aggregation", 1.0, threshold, "not a list or count question", {"list": False})
    if refusal:
        return _unavailable("aggregation", threshold, "the answer is a refusal")
    items = len(answer_items(answer))
    dates = len({passages[i].date for i in _support(answer, question, passages)})
    item_part = 1.0 if count else min(items, 2) / 2
    # a small reader pads a list with items no passage holds ("bicycle riding" from a story
    # about learning to ride a bike)
    texts = [p.text for p in passages]
    made_up = [] if count else [x for x, held in grounded_items(answer, question, texts) if not held]
    held_part = 1.0 - len(made_up) / max(items, 1)
    # a list that names an item twice is a small reader looping over its context, not listing
    # it: how complete the list is cannot be read from it ("running club, pottery, running club")
    repeated = _repeated(answer_items(answer)) if not count else []
    score = min(item_part, min(dates, 2) / 2, held_part, 0.5 if repeated else 1.0)
    return _judged(
        "aggregation",
        score,
        threshold,
        f"a {'count' if count else 'list'} question answered with {items} item(s) "
        f"drawn from {dates} dated session(s)"
        + (f"; no passage holds {', '.join(repr(x) for x in made_up)}" if made_up else "")
        + (f"; it names {', '.join(repr(x) for x in repeated)} twice" if repeated else ""),
        {"list": True, "items": float(items), "dates": float(dates), "held": held_part,
         "repeated": float(len(repeated))},
    )


def _repeated(items: list[str]) -> list[str]:
    seen: set[tuple[str, ...]] = set()
    repeated = []
    for item in items:
        key = tuple(sorted(stem(w) for w in re.findall(r"\w+", item.lower())))
        if key in seen and item not in repeated:
            repeated.append(item)
        seen.add(key)
    return repeated
