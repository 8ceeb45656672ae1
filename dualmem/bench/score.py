"""Scorers: LoCoMo's official token F1 (also RealTalk's), the Mem0-harness F1, refusal checks,
evidence recall and a rank-based AUROC.

The official scorer is reimplemented from BENCHMARKS.md section 2 (upstream
`task_eval/evaluation.py`), including its quirks: commas deleted before normalisation, ASCII
punctuation only, "and" dropped like an article, Porter stems, multiset overlap.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Sequence

from nltk.stem import PorterStemmer

__all__ = [
    "auroc",
    "is_refusal",
    "is_refusal_or_none",
    "locomo_f1",
    "mem0_f1",
    "multi_answer_f1",
    "normalize_answer",
    "recall_at_k",
    "token_f1",
]

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_STEMMER = PorterStemmer()
_REFUSALS = ("no information available", "not mentioned")
# our answer prompt asks for exactly "NONE" when memory lacks the answer
_OUR_REFUSALS = (
    "none",
    "unknown",
    "not specified",
    "not stated",
    "no information",
    "i don't know",
    "i do not know",
)


def normalize_answer(text: str) -> str:
    text = text.replace(",", "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return _STEMMER.stem(word)


def _tokens(text: str) -> list[str]:
    return [_stem(w) for w in normalize_answer(text).split()]


def token_f1(prediction: str, gold: str) -> float:
    """Upstream `f1_score`: stemmed multiset overlap F1."""
    pred, ref = _tokens(prediction), _tokens(gold)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def multi_answer_f1(prediction: str, gold: str) -> float:
    """Upstream `f1` (category 1): mean over gold comma-pieces of the best prediction piece."""
    preds = [p.strip() for p in prediction.split(",")]
    golds = [g.strip() for g in gold.split(",")]
    return sum(max(token_f1(p, g) for p in preds) for g in golds) / len(golds)


def is_refusal(prediction: str) -> bool:
    """The official category-5 check: one of two refusal phrases appears."""
    low = prediction.lower()
    return any(phrase in low for phrase in _REFUSALS)


def is_refusal_or_none(prediction: str) -> bool:
    """Category 5 with our prompt's refusal ("NONE") and plain 'don't know' forms accepted too."""
    low = " ".join(prediction.lower().strip(" .!\"'").split())
    return is_refusal(prediction) or low in _OUR_REFUSALS or low.startswith(_OUR_REFUSALS[2:])


def locomo_f1(prediction: str, gold: str, category: int) -> float:
    """Official F1 of categories 1-4 (category 5 is scored by `is_refusal`)."""
    if category == 1:
        return multi_answer_f1(prediction, gold)
    if category == 3:
        gold = gold.split(";")[0].strip()
    if category in (2, 3, 4):
        return token_f1(prediction, gold)
    raise ValueError(f"category {category} has no F1 (5 is scored as refusal)")


def _mem0_tokens(text: str) -> set[str]:
    text = str(text).lower()
    for ch in ".,!?":
        text = text.replace(ch, " ")
    return set(text.split())


def mem0_f1(prediction: str, gold: str) -> float:
    """Mem0 harness F1 (BENCHMARKS.md 2.7): token sets, no stemming, no splitting."""
    pred, ref = _mem0_tokens(prediction), _mem0_tokens(gold)
    common = len(pred & ref)
    if not pred or not ref or common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def recall_at_k(ranked: Sequence[str], evidence: Sequence[str], k: int) -> float | None:
    """Share of the evidence turn ids among the first k retrieved ones (None: no evidence)."""
    if not evidence:
        return None
    top = set(ranked[:k])
    return sum(e in top for e in evidence) / len(evidence)


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Probability that a random positive scores higher than a random negative (ties count
    half): the Mann-Whitney statistic from average ranks. None when a class is empty."""
    n_pos = sum(positives)
    n_neg = len(positives) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for r in range(i, j + 1):
            ranks[order[r]] = (i + j) / 2 + 1  # average 1-based rank of the tie group
        i = j + 1
    rank_sum = sum(r for r, p in zip(ranks, positives, strict=True) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
