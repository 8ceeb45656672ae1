"""Cheap gate signals: answer entropy, evidence coverage, answer/evidence consistency.

Each returns a `SignalResult` with a score in [0, 1] where 1 means "the fast answer can be
trusted", the threshold it was judged against, a verdict and a one-line reason. The evidence
is a list of `Passage`s: retrieved memories, or the facts a deliberation tier read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ...text import asks_polar, dated, tokenize
from ...text import stem as _stem
from ...types import Memory, SignalResult, TokenLogprob

__all__ = [
    "Passage",
    "agreement",
    "combined",
    "consistency",
    "coverage",
    "entropy",
    "looks_like_refusal",
    "question_terms",
    "unasked",
]

_REFUSAL = re.compile(
    r"^\W*(none|n/a|unknown|no answer|not (mentioned|specified|stated|known)|no information|"
    r"i (do not|don't|cannot|can't) (know|tell|say|find)|(it is |it's )?(not|un)clear|"
    r"there is no(thing)?|cannot be determined|insufficient)\b",  # \b: "Nonesuch" is an answer
    re.I,
)
_TEMPORAL = re.compile(
    r"\b(when|what (year|month|day|date|time)|how long|which (year|month|day)|date|ago|"
    r"before|after|since|until)\b",
    re.I,
)
# the verdict words of a yes/no answer: never in the evidence, so they say nothing about grounding
_POLAR = frozenset("yes no not likely unlikely probably maybe perhaps".split())
_ENTITY = re.compile(r"(?<![.?!]\s)(?<!^)\b[A-Z][a-zA-Z'\-]+|\b\d[\d,./:-]*\b")


@dataclass(frozen=True, slots=True)
class Passage:
    """One piece of evidence as the signals read it: its text, how similar the search found it
    to the question (0 when unknown), and the date of the event it tells of."""

    text: str
    score: float = 0.0
    date: str | None = None

    @classmethod
    def of(cls, memory: Memory) -> Passage:
        return cls(memory.resolved_text(), memory.score or 0.0, memory.event_date)

    def render(self) -> str:
        """The line a prompt shows for it (as `Memory.render`)."""
        return dated(self.text, self.date)


def combined(scores: dict[str, float | None], weights: dict[str, float]) -> float:
    """Weighted geometric mean of the available signal scores.

    Geometric, not arithmetic: one clearly failing signal (evidence that does not cover the
    question) must pull the whole score down even when the others look confident.
    """
    avail = {k: v for k, v in scores.items() if v is not None and weights.get(k, 0.0) > 0}
    total = sum(weights[k] for k in avail)
    if not total:
        return 0.0
    return math.exp(sum(weights[k] * math.log(max(v, 1e-3)) for k, v in avail.items()) / total)


def looks_like_refusal(answer: str) -> bool:
    """An empty answer, or one that says the information is missing ("NONE", "I don't know").

    Not the benchmark's category-5 check (`bench.score.is_refusal`): this one is generous, since
    escalating a refusal is the gate's safe side."""
    return not answer.strip() or bool(_REFUSAL.match(answer.strip()))


def question_terms(question: str) -> set[str]:
    return {_stem(w) for w in tokenize(question) if len(w) > 2 or w.isdigit()} - {
        "how",
        "many",
        "much",
        "kind",
        "type",
        "there",
        "any",
        "some",
        "likely",
    }


def _evidence_terms(passages: Sequence[Passage]) -> set[str]:
    words: set[str] = set()
    for p in passages:
        words.update(_stem(w) for w in tokenize(p.render()))
    return words


def agreement(a: str, b: str) -> float:
    """How much two answers agree: F1 over their stemmed words (1.0 for two empty answers).

    Not the benchmark's scorer (`bench.score.token_f1`, Porter stems and LoCoMo's normalisation)."""
    ta, tb = [_stem(w) for w in tokenize(a)], [_stem(w) for w in tokenize(b)]
    if not ta or not tb:
        return float(ta == tb)
    common = sum(min(ta.count(w), tb.count(w)) for w in set(ta))
    if common == 0:
        return 0.0
    p, r = common / len(ta), common / len(tb)
    return 2 * p * r / (p + r)


def entropy(logprobs: Sequence[TokenLogprob] | None, threshold: float) -> SignalResult:
    """1 - normalised token entropy (mean, with the max as a guard) over the answer tokens.

    The top-k alternatives plus one "rest" bucket form each token's distribution; entropy is
    divided by log(k + 1) so that the score does not depend on k.
    """
    if not logprobs:
        return SignalResult(
            name="entropy",
            score=None,
            threshold=threshold,
            passed=None,
            available=False,
            reason="unavailable: the model returned no token logprobs",
        )
    per_token = []
    for t in logprobs:
        probs = [math.exp(lp) for lp in t.top_logprobs.values()] or [math.exp(t.logprob)]
        rest = max(0.0, 1.0 - sum(probs))
        dist = [p for p in [*probs, rest] if p > 0]
        h = -sum(p * math.log(p) for p in dist)
        per_token.append(h / math.log(len(probs) + 1))  # >= 1 alternative plus the rest bucket
    mean_h, max_h = sum(per_token) / len(per_token), max(per_token)
    score = max(0.0, min(1.0, 1.0 - (0.7 * mean_h + 0.3 * max_h)))
    passed = score >= threshold
    return SignalResult(
        name="entropy",
        score=score,
        threshold=threshold,
        passed=passed,
        reason=f"answer {'confident' if passed else 'uncertain'}: mean token entropy "
        f"{mean_h:.2f}, max {max_h:.2f} (normalised)",
        details={"mean": mean_h, "max": max_h, "tokens": len(per_token)},
    )


def _informative(terms: set[str], passages: Sequence[Passage]) -> set[str]:
    """Drop terms found in most retrieved passages (the user's own name, say): matching them
    says nothing about whether the evidence answers this question."""
    if len(passages) < 4:
        return terms
    per_passage = [_evidence_terms([p]) for p in passages]
    return {t for t in terms if sum(t in words for words in per_passage) < 0.5 * len(per_passage)}


def _names(question: str) -> set[str]:
    """The question's names and numbers, stemmed ("Ines's" -> "ine")."""
    return {_stem(re.sub(r"'s$", "", e.lower())) for e in _ENTITY.findall(question)}


def unasked(question: str, passages: Sequence[Passage]) -> list[str]:
    """The question's words when not one passage holds any of them: the history never speaks
    of what is asked ("favourite film" in a chat about a dog). [] when one does, and for a
    yes/no question, which may be inferred from lines about other things.

    Names held by most passages (the speakers') are set aside: they say nothing of the subject.
    Other words count however many passages hold them ("dancers", when every retrieved line is
    about the dancers, is the subject)."""
    if asks_polar(question):
        return []
    names = {n for n in _names(question) if not n[0].isdigit()}
    words = question_terms(question)
    words -= names - _informative(names, passages)
    return [] if not words or words & _evidence_terms(passages) else sorted(words)


def coverage(question: str, passages: Sequence[Passage], threshold: float) -> SignalResult:
    """How much of what the question asks for is present in the retrieved evidence."""
    top = list(passages[:10])
    terms = _informative(question_terms(question), top)
    evidence = _evidence_terms(top)
    term_cov = len(terms & evidence) / len(terms) if terms else 1.0
    entities = _informative(_names(question), top)
    entity_cov = len(entities & _evidence_terms(passages)) / len(entities) if entities else 1.0
    sims = sorted((p.score for p in passages), reverse=True)[:5]
    mean_sim = sum(sims) / len(sims) if sims else 0.0
    sim_mass = max(0.0, min(1.0, (mean_sim - 0.15) / 0.45))
    temporal = bool(_TEMPORAL.search(question))
    has_date = any(p.date for p in top[:5])
    time_ok = 1.0 if not temporal or has_date else 0.0
    # informative terms weigh most: similarity stays high for any question about the same person
    score = 0.5 * term_cov + 0.15 * entity_cov + 0.25 * sim_mass + 0.1 * time_ok
    if not passages:
        score = 0.0
    passed = score >= threshold
    missing = sorted(terms - evidence)[:5]
    reason = (
        f"evidence covers {term_cov:.0%} of the question's terms"
        + (f" (missing: {', '.join(missing)})" if missing else "")
        + f", {entity_cov:.0%} of its names/numbers, top-5 similarity {mean_sim:.2f}"
        + ("" if time_ok else ", no dated evidence for a time question")
    )
    return SignalResult(
        name="coverage",
        score=score,
        threshold=threshold,
        passed=passed,
        reason=reason,
        details={
            "terms": term_cov,
            "entities": entity_cov,
            "similarity": mean_sim,
            "temporal": temporal,
            "dated": has_date,
        },
    )


def consistency(
    answer: str,
    passages: Sequence[Passage],
    coverage_score: float,
    threshold: float,
    *,
    samples: Sequence[str] | None = None,
    relevant: float = 0.6,
    weak: float = 0.3,
) -> SignalResult:
    """Does the answer agree with the evidence (and with sampled answers, when given)?

    Fails a refusal while the evidence looks relevant (coverage >= `relevant`), and a concrete
    answer while the evidence is weak (coverage < `weak`) or does not contain its words.
    """
    refusal = looks_like_refusal(answer)
    details: dict[str, float | bool] = {"refusal": refusal}
    if refusal:
        score = 0.1 if coverage_score >= relevant else 0.4
        reason = (
            "refused although relevant evidence was retrieved"
            if coverage_score >= relevant
            else "refused; evidence is weak, deliberation may find more"
        )
    else:
        tokens = tokenize(answer)
        words = {_stem(w) for w in tokens if w not in _POLAR}
        if not words and tokens:
            # a bare yes/no stands or falls with the evidence it was drawn from
            grounded = coverage_score
            reason = f"a yes/no answer: judged by the question's coverage ({coverage_score:.2f})"
        else:
            grounded = len(words & _evidence_terms(passages)) / len(words) if words else 0.0
            reason = f"{grounded:.0%} of the answer's words appear in the evidence"
        details["grounding"] = grounded
        score = grounded
        if coverage_score < weak:
            score = min(score, 0.2)
            reason = "a concrete answer from weak evidence; " + reason
    if samples:
        agree = sum(agreement(answer, s) >= 0.5 for s in samples) / len(samples)
        details["agreement"] = agree
        score = 0.5 * score + 0.5 * agree
        reason += f"; {agree:.0%} of {len(samples)} sampled answers agree"
    passed = score >= threshold
    return SignalResult(
        name="consistency",
        score=score,
        threshold=threshold,
        passed=passed,
        reason=reason,
        details=details,
    )
