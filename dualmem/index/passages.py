"""Sentence passages: a memory of several sentences is also found by each sentence alone.

MiniLM mean-pools a whole turn into one vector, so the one sentence of a long turn that
answers a question weighs little in it. Each sentence of such a memory gets a vector of its
own (in a second collection of the partition, without its text), and the dense ranking takes
a memory's best vector. Simulated offline, that alone lifted evidence recall@30 on LoCoMo dev from
0.779 to 0.793 and on RealTalk dev from 0.624 to 0.664; a sentence without its speaker did
worse than none. Such a memory is embedded by its sentences only: its own vector is their
normalised mean, which for MiniLM (a mean pool of tokens) stays close to the whole text's, so
the sentences need no second pass (LoCoMo dev R@30 0.829 -> 0.826, RealTalk 0.677 -> 0.688).

What a memory's sentences share, its date and a raw turn's speaker, is embedded once per
upsert (`embed.MiniLMEmbedding.prefixed`): each sentence is embedded alone and the prefix's
token states are added to its own, which for a mean-pooling model reads the sentence as if
it followed its prefix. Against embedding "[date] speaker: sentence" whole, LoCoMo dev R@30
held (0.865 -> 0.864), R@5 rose from 0.635 to 0.648, RealTalk R@30 from 0.714 to 0.718, and
conv-26 embeds a quarter fewer tokens (README, retrieval). A memory not split is read
after its prefix the same way: against embedding it whole, LoCoMo dev R@30 rose from 0.863
to 0.872 (5 of 6 conversations up), R@5 from 0.648 to 0.659, RealTalk R@30 from 0.718 to
0.721, and conv-26 runs 1.05x the tokens of its bare "speaker: text" turns through the model
instead of 1.14x. Keeping short memories whole (prefixing only those of at least 6 to 26
words) measured lower on both, and leave-one-conversation-out picked prefixing every one.

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

__all__ = ["MIN_WORDS", "Prefixed", "embedded_texts", "passage_ids", "passages"]

MIN_WORDS = 25

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

#: a text to embed: (prefix, body), read as `prefix + " " + body` ("" for no prefix)
Prefixed = tuple[str, str]


def _split(memory: Memory) -> tuple[str, str]:
    """(prefix, body): the memory's date and, for a raw turn ("speaker: text"), its speaker,
    which each of its sentences is read after; and the text after them."""
    speaker, body = memory.split_speaker()
    return dated(f"{speaker}:" if speaker is not None else "", memory.event_date).strip(), body


def passages(memory: Memory) -> list[Prefixed]:
    """The texts embedded for a memory's sentences, each as the memory renders but alone;
    none for a memory of one sentence or of at most MIN_WORDS words (its own vector is its
    text's)."""
    if len(memory.text.split()) <= MIN_WORDS:
        return []
    prefix, body = _split(memory)
    sentences = [s for s in _SENTENCE_END.split(body.strip()) if s]
    if len(sentences) < 2:
        return []
    return [(prefix, s) for s in sentences]


def embedded_texts(memory: Memory) -> list[Prefixed]:
    """What is embedded for a memory: its sentences (`passages`), else its whole rendering,
    read after the prefix it shares with its session's other memories."""
    if found := passages(memory):
        return found
    prefix, _ = _split(memory)
    rendered = memory.render()
    if prefix and rendered.startswith(prefix + " "):
        return [(prefix, rendered[len(prefix) + 1 :])]
    return [("", rendered)]


def passage_ids(memory_id: str, n: int) -> list[str]:
    return [f"{memory_id}#{i}" for i in range(n)]
