"""Arbitration: System 2's answer replaces the fast one only when its evidence supports it better.

Escalating must never make an answer worse through a weaker pass, so every answer an
escalation produced (fast, a middle tier, the full pass) is weighed against the same raw
evidence: the lines System 2 selected or read its answers from, with relative dates resolved. An answer is
supported by the share of its words those lines hold, each word weighted by how rare it is
among the lines read (idf), so a common word ("new") cannot carry an answer whose telling
word ("York") no line holds. The rules, in order:

- a refusal never replaces a concrete answer that the evidence supports, unless no line the
  memory retrieved or System 2 selected holds any of the question's informative terms: the
  history never speaks of what is asked, and an answer drawn from it is about something else
  ("Biscuit" for "What is Maya's favourite film?");
- a concrete, supported answer replaces a refusal;
- two answers that agree keep the earlier one (nothing changed);
- an answer that only repeats words of the question (outside an either/or question) never
  wins: "Maya" for "What does Maya promise Ines she will never do?" is held by any line
  about Maya, and says nothing;
- an unsupported challenger never wins;
- for "now / still / latest" questions the answer held by the newest line wins;
- otherwise a supported System 2 answer replaces the fast one: System 2 read focused
  evidence, the fast path a broad top-k list. Among supported answers the share does not
  tell right from wrong: on LoCoMo dev, 9 fast answers that won on a higher share (118 + 36
  questions, two runs) were worse than System 2's in 6 cases and better in 1;
- between System 2's tiers, a later one must be supported at least as well as the answer it
  replaces.

Later tiers challenge the current winner in order, so a middle tier's supported answer is
not thrown away for a weaker full-pass answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime

from ...text import asks_current, stem, tokenize
from ...types import Candidate, Turn
from ..gate.signals import _POLAR, Passage, agreement, looks_like_refusal, unasked
from .base import evidence_line

__all__ = ["SUPPORTED", "arbitrate", "echoes", "supported_by"]

SUPPORTED = 0.5  # at least half of an answer's words must be in the evidence


def _words(text: str) -> set[str]:
    # without the verdict words of a yes/no answer (the gate's list): they ground nothing
    return {stem(w) for w in tokenize(text) if w not in _POLAR}


def _weights(words: set[str], lines: Sequence[set[str]]) -> dict[str, float]:
    """Each word's idf over `lines`: a word no line holds weighs most."""
    n = len(lines)
    return {w: math.log((n + 1) / (sum(w in line for line in lines) + 0.5)) for w in words}


def supported_by(
    answer: str, evidence: Sequence[Turn], read: Sequence[str] = ()
) -> tuple[float | None, datetime | None]:
    """(idf-weighted share of the answer's words found in the evidence lines, timestamp of the
    newest line holding at least half of that weight). Rarity is counted over the evidence
    and the other lines `read`. The share is None for a bare yes/no answer."""
    return _support(answer, [(t, _words(evidence_line(t))) for t in evidence], [_words(r) for r in read])


def _support(
    answer: str, per_turn: Sequence[tuple[Turn, set[str]]], read: Sequence[set[str]]
) -> tuple[float | None, datetime | None]:
    """`supported_by` over word sets made once for all the answers weighed."""
    words = _words(answer)
    if not words:
        return None, None
    weight = _weights(words, [w for _, w in per_turn] + list(read))
    total = sum(weight.values())
    found: set[str] = set()
    newest: datetime | None = None
    for turn, line in per_turn:
        held = words & line
        found |= held
        if sum(weight[w] for w in held) >= total / 2 and (newest is None or turn.timestamp > newest):
            newest = turn.timestamp
    # every word found is exactly 1: summed weights may fall a rounding short of the total
    return (1.0 if found == words else sum(weight[w] for w in found) / total), newest


_EITHER = re.compile(r"\bor\b", re.I)


def echoes(answer: str, question: str) -> bool:
    """Whether every word of the answer is one of the question's (in a question that does not
    offer a choice, where picking one of its words is the answer)."""
    words = _words(answer)
    return bool(words) and not _EITHER.search(question) and words <= _words(question)


def _beats(
    challenger: Candidate, holder: Candidate, current: bool, missing: list[str], echo: bool = False
) -> tuple[bool, str]:
    """Whether `challenger` takes the win from `holder`, and why. `missing`: the question's
    terms when no retrieved or selected line holds any of them; `echo`: the challenger only
    repeats the question's words."""
    name, held = challenger.source, holder.source
    c_support, h_support = challenger.support or 0.0, holder.support or 0.0
    if looks_like_refusal(challenger.text):
        if looks_like_refusal(holder.text):
            return False, f"{name} found no answer; {held}'s answer stands"
        if missing:
            return True, (
                f"{name} found no answer, and no retrieved or selected line mentions "
                f"{', '.join(missing)}: {held}'s answer is about something else"
            )
        if h_support >= SUPPORTED:
            return False, f"{name} found no answer; {held}'s answer stands"
        return True, f"{name} found no answer and {held}'s answer has no support in its evidence"
    if looks_like_refusal(holder.text):
        if c_support >= SUPPORTED:
            return True, f"{held} found no answer; {name}'s answer is supported ({c_support:.0%})"
        return False, f"{held} found no answer, and {name}'s is not supported either"
    if agreement(challenger.text, holder.text) >= 0.8:
        return False, f"{name} agrees with {held}"
    if challenger.support is None:
        return False, f"{name}'s yes/no answer cannot be checked against the evidence; {held}'s stands"
    if echo:
        return False, f"{name}'s answer only repeats words of the question; {held}'s stands"
    if c_support < SUPPORTED:
        return False, f"{name}'s answer is not supported by its evidence ({c_support:.0%})"
    if current and holder.support is not None and h_support >= SUPPORTED:
        if challenger.newest and holder.newest and challenger.newest != holder.newest:
            newer = challenger.newest > holder.newest
            day = (challenger if newer else holder).newest.date().isoformat()  # type: ignore[union-attr]
            holder_name = name if newer else held
            return newer, f"a question about now: the newest evidence ({day}) holds {holder_name}'s answer"
    if held == "fast" or c_support >= h_support:
        return True, f"{name}'s answer is supported {c_support:.0%} against {h_support:.0%} for {held}'s"
    return False, f"{held}'s answer is better supported ({h_support:.0%} against {c_support:.0%})"


def arbitrate(
    question: str, answers: Sequence[tuple[str, str, list[str]]], evidence: Sequence[Turn],
    retrieved: Sequence[Passage] = (),
) -> tuple[list[Candidate], str]:
    """Weigh `answers` ((source, text, context turn ids): the fast answer first, then each
    System 2 tier in order) against `evidence`: the candidates with their support, the winner
    marked, and why it won. `retrieved` are the fast path's memories, which with `evidence`
    tell whether the history speaks of what the question asks at all."""
    per_turn = [(t, _words(evidence_line(t))) for t in evidence]
    read = [_words(p.text) for p in retrieved]
    weighed = []
    for source, text, turn_ids in answers:
        support, newest = _support(text, per_turn, read)
        weighed.append(Candidate(source=source, text=text, support=support, newest=newest, turn_ids=turn_ids))
    current = asks_current(question)
    lines = [*retrieved, *(Passage(evidence_line(t)) for t in evidence)]
    missing = unasked(question, lines) if lines else []
    winner, why = 0, "only one answer"
    for i, challenger in enumerate(weighed[1:], 1):
        wins, why = _beats(challenger, weighed[winner], current, missing, echoes(challenger.text, question))
        if wins:
            winner = i
    return [c.model_copy(update={"won": i == winner}) for i, c in enumerate(weighed)], why
