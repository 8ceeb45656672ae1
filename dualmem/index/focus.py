"""Conversation structure in the hybrid ranking: the speaker a question names, and the
sessions its best hits share.

A question about one person ("What did Ana paint?") is answered by that person's turns,
and the evidence of a question tends to sit in the few sessions where the best hits already
are. So, after rank fusion, the turns of the one speaker the question names score
`SPEAKER_BOOST` more, and the memories of the sessions holding the `SESSION_HITS` best hits
score `SESSION_BOOST` more. Each alone moved LoCoMo dev evidence recall@30 by under a point;
together, cross-validated leave-one-conversation-out over the six dev conversations (every
fold chose these values from a grid of RRF constants and both boosts), 0.844 -> 0.867, and on
RealTalk dev, applied unchanged, 0.693 -> 0.714 (README, retrieval).

A memory's speaker is the `speaker` its metadata holds (raw turns, `chroma._to_metadata`);
an extracted fact has none and is never boosted for one. Where the best hits span every
session of the candidates (a session-scoped search, a short history) the session boost
changes no order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["SESSION_BOOST", "SESSION_HITS", "SPEAKER_BOOST", "focus", "named_speaker"]

SPEAKER_BOOST = 0.5
SESSION_BOOST = 0.3
SESSION_HITS = 5


def named_speaker(question: str, speakers: set[str]) -> str | None:
    """The one speaker among `speakers` the question names as a whole word (any case); None
    when it names none or several."""
    named = [s for s in speakers if re.search(rf"(?<!\w){re.escape(s)}(?!\w)", question, re.I)]
    return named[0] if len(named) == 1 else None


def focus(
    scores: Mapping[str, float], metas: Mapping[str, Mapping | None], question: str
) -> dict[str, float]:
    """`scores` (fused, higher is better) raised for the question's speaker and the sessions
    of the best hits; `metas` holds the candidates' metadata (a missing one: no boost)."""
    def meta(id_: str) -> Mapping:
        return metas.get(id_) or {}

    out = dict(scores)
    speaker = named_speaker(question, {s for i in out if isinstance(s := meta(i).get("speaker"), str) and s})
    if speaker is not None:
        for i in out:
            if meta(i).get("speaker") == speaker:
                out[i] *= 1 + SPEAKER_BOOST
    # memories without a session count as one session of their own: else one of them among
    # the best hits would fall behind everything that has a session
    best = sorted(out, key=lambda i: -out[i])[:SESSION_HITS]
    hot = {meta(i).get("session_id") for i in best}
    for i in out:
        if meta(i).get("session_id") in hot:
            out[i] *= 1 + SESSION_BOOST
    return out
