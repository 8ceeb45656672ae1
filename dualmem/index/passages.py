"""Sentence passages: a memory of several sentences is also found by each sentence alone.

MiniLM mean-pools a whole turn into one vector, so the one sentence of a long turn that
answers a question weighs little in it. Each sentence of such a memory gets a vector of its
own (in a second collection of the partition, without its text), and the dense ranking takes
a memory's best vector. Simulated offline, that alone lifted evidence recall@30 on LoCoMo dev from
0.779 to 0.793 and on RealTalk dev from 0.624 to 0.664; a sentence without its speaker did
worse than none. Such a memory is embedded by its sentences only: its own vector is their
normalised mean, which for MiniLM (a mean pool of tokens) stays close to the whole text's, so
the sentences need no second pass (LoCoMo dev R@30 0.829 -> 0.826, RealTalk 0.677 -> 0.688).

A memory of at most MIN_WORDS words keeps its one vector: the sentences of a short turn
("Wow! That's great.") are short generic texts whose vectors sat near many queries and pushed
evidence out of the top 30. Splitting only longer memories raised LoCoMo dev R@30 from 0.826
to 0.842 with the threshold chosen leave-one-conversation-out (README, retrieval), and embeds
a fifth fewer texts (conv-26: 1,127 instead of 1,445).
"""

from __future__ import annotations

import re

from ..text import dated
from ..types import Memory

__all__ = ["MIN_WORDS", "passage_ids", "passages"]

MIN_WORDS = 25

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def passages(memory: Memory) -> list[str]:
    """The texts embedded for a memory's sentences, each as the memory renders but alone;
    none for a memory of one sentence or of at most MIN_WORDS words (its own vector is its
    text's)."""
    if len(memory.text.split()) <= MIN_WORDS:
        return []
    label, body = "", memory.text
    if memory.is_raw:  # a raw turn reads "speaker: text"
        head, colon, rest = memory.text.partition(": ")
        if colon:
            label, body = head + colon, rest
    sentences = [s for s in _SENTENCE_END.split(body.strip()) if s]
    if len(sentences) < 2:
        return []
    return [dated(label + s, memory.event_date) for s in sentences]


def passage_ids(memory_id: str, n: int) -> list[str]:
    return [f"{memory_id}#{i}" for i in range(n)]
