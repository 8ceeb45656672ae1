"""Conversation structure in the hybrid ranking (`index/focus.py`): the named speaker's turns
and the sessions of the best hits score higher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import dualmem.index.focus as focus_module
from dualmem.embed import MiniLMEmbedding
from dualmem.index import ChromaMemoryIndex
from dualmem.index.focus import SESSION_BOOST, SPEAKER_BOOST, focus, named_speaker
from dualmem.ingest.extract import raw_memories
from dualmem.types import Scope, Turn

T0 = datetime(2024, 3, 1, 10, tzinfo=UTC)
ANN = Scope(user_id="ann")


def test_named_speaker_is_the_one_speaker_the_question_names():
    speakers = {"Ann", "Bob", "assistant"}
    assert named_speaker("What did bob paint last week?", speakers) == "Bob"
    assert named_speaker("What did Ann and Bob paint?", speakers) is None  # two: no one
    assert named_speaker("What did they paint?", speakers) is None
    assert named_speaker("Where did Annika go?", speakers) is None  # a whole word only


def test_focus_raises_the_named_speakers_turns_and_the_best_hits_sessions():
    scores = {"a1": 1.0, "b1": 0.9, "a2": 0.5, "b2": 0.4, "fact": 0.3}
    metas = {
        "a1": {"speaker": "Ann", "session_id": "s1"},
        "b1": {"speaker": "Bob", "session_id": "s1"},
        "a2": {"speaker": "Ann", "session_id": "s2"},
        "b2": {"speaker": "Bob", "session_id": "s2"},
        "fact": None,  # an extracted fact: no speaker, no session
    }
    out = focus(scores, metas, "What did Bob say?")
    # the best five hits span both sessions, so both get the session boost; Bob's turns the other
    assert out["b1"] == pytest.approx(0.9 * (1 + SPEAKER_BOOST) * (1 + SESSION_BOOST))
    assert out["a1"] == pytest.approx(1.0 * (1 + SESSION_BOOST))
    assert out["fact"] == pytest.approx(0.3 * (1 + SESSION_BOOST))  # no session: a session of its own
    assert out["b1"] > out["a1"]
    # nobody named: only the sessions count, and one session among all changes no order
    plain = focus(scores, metas, "What was said?")
    assert sorted(plain, key=plain.get) == sorted(scores, key=scores.get)


def test_focus_favours_the_sessions_where_the_best_hits_are(monkeypatch):
    monkeypatch.setattr(focus_module, "SESSION_HITS", 2)
    scores = {"x1": 1.0, "x2": 0.9, "y1": 0.85, "x3": 0.5, "y2": 0.55}
    metas = {i: {"session_id": i[0]} for i in scores}
    out = focus(scores, metas, "anything")
    assert out["x3"] == pytest.approx(0.5 * (1 + SESSION_BOOST))
    assert out["y2"] == 0.55
    assert out["x3"] > out["y2"]  # the hot session's turn overtakes


def test_memories_without_a_session_are_not_put_behind_those_with_one():
    scores = {"fact": 1.0, "turn": 0.9}
    out = focus(scores, {"fact": {}, "turn": {"session_id": "s2"}}, "beagle")
    assert out["fact"] > out["turn"]


def _turn(n: int, speaker: str, text: str, session: str) -> Turn:
    return Turn(id=f"t{n}", speaker=speaker, text=text, timestamp=T0 + timedelta(minutes=n),
                user_id="ann", session_id=session)


def test_search_ranks_the_named_speakers_turn_above_a_closer_match_by_another(tmp_path, monkeypatch):
    """The index stores a raw turn's speaker and boosts the one the question names: Bob's turn
    about painting outranks Ann's, which matches the question's words better."""
    index = ChromaMemoryIndex(tmp_path / "chroma", embedding_function=MiniLMEmbedding())
    turns = [
        _turn(1, "Ann", "I painted a lighthouse by the sea at sunset last weekend.", "s1"),
        _turn(2, "Bob", "Mine was a portrait of my grandmother, in oils.", "s1"),
        _turn(3, "Ann", "Did you paint anything at the sea?", "s1"),
    ] + [_turn(n, "Ann" if n % 2 else "Bob", f"We talked about the weather on day {n}.", "s2")
         for n in range(4, 9)]
    index.upsert(raw_memories(turns))
    question = "What did Bob paint at the sea?"
    assert [m.id for m in index.search(question, ANN, 3)][0] == "t2"
    monkeypatch.setattr(focus_module, "SPEAKER_BOOST", 0.0)
    assert [m.id for m in index.search(question, ANN, 3)][0] != "t2"  # the boost is what lifts it
    index.close()
