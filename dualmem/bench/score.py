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

from ..answering.gate.learned import auroc  # one implementation, shared with the gate's fitting
from ..types import Memory

__all__ = [
    "auroc",
    "is_refusal",
    "is_refusal_or_none",
    "locomo_f1",
    "mem0_f1",
    "multi_answer_f1",
    "normalize_answer",
    "ranked_turns",
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


def ranked_turns(memories: Sequence[Memory]) -> list[str]:
    """The turn ids behind ranked memories, in rank order, each once: what recall@k reads."""
    return list(dict.fromkeys(t for m in memories for t in m.source_turn_ids))


def recall_at_k(ranked: Sequence[str], evidence: Sequence[str], k: int) -> float | None:
    """Share of the evidence turn ids among the first k retrieved ones (None: no evidence)."""
    if not evidence:
        return None
    top = set(ranked[:k])
    return sum(e in top for e in evidence) / len(evidence)
