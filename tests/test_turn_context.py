"""Raw turns searched with their context: sentence passages (dense) and the neighbouring turns
of a session (BM25)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from dualmem import DualMemory
from dualmem.embed import MiniLMEmbedding, embed_prefixed
from dualmem.index import ChromaMemoryIndex
from dualmem.index.lexical import FOLLOWED_SHARE, FOLLOWER_SHARE, LexicalCache, Neighbours
from dualmem.index.passages import MIN_WORDS, embedded_texts, passages
from dualmem.ingest.extract import raw_memories
from dualmem.testing import ScriptedLLM
from dualmem.types import Memory, Scope, Turn

NOW = datetime(2024, 5, 7, 10, 0, tzinfo=UTC)
EMBED = MiniLMEmbedding()
ALICE = Scope(user_id="alice")


def turn(id_: str, text: str, session: str | None = "s1", minutes: int = 0) -> Turn:
    return Turn(id=id_, speaker="Ana", text=text, timestamp=NOW + timedelta(minutes=minutes),
                user_id="alice", session_id=session)


def memory(id_: str, text: str, **kw) -> Memory:
    return Memory(id=id_, text=text, user_id="alice", created_at=NOW, updated_at=NOW, **kw)


# ------------------------------------------------------------------------- sentence passages


MOVED = ("We finally moved to the old harbour district last week after months of searching. "
         "The new flat has a balcony that looks over the boats! Want to visit us soon?")
NOTE = ("Note: Ana moved to the harbour district with her partner and their two cats. "
        "She has a balcony over the boats and a small garden for herbs.")


def test_a_raw_turn_of_several_sentences_yields_one_dated_passage_per_sentence():
    [raw] = raw_memories([turn("t1", MOVED)])
    # each sentence is read after what they all share: the date and the speaker
    said = "[7 May 2024] Ana:"
    assert passages(raw) == [
        (said, "We finally moved to the old harbour district last week after months of searching."),
        (said, "The new flat has a balcony that looks over the boats!"),
        (said, "Want to visit us soon?"),
    ]
    # a fact has no speaker label, even with a colon in it; one sentence needs no passage
    assert passages(memory("f1", NOTE)) == [
        ("", "Note: Ana moved to the harbour district with her partner and their two cats."),
        ("", "She has a balcony over the boats and a small garden for herbs.")]
    assert passages(memory("f1", NOTE, event_date="2024-05-07"))[1] == (
        "[7 May 2024]", "She has a balcony over the boats and a small garden for herbs.")
    assert passages(memory("f2", "Ana moved in May 2024.")) == []


def test_a_memory_not_split_is_embedded_as_it_renders_after_its_shared_prefix():
    [raw] = raw_memories([turn("t1", "We moved last week.")])
    # the date and speaker every turn of a session shares are embedded once, not per turn
    assert embedded_texts(raw) == [("[7 May 2024] Ana:", "We moved last week.")]
    superseded = memory("f4", "Ana lives in Lisbon.", event_date="2024-05-07",
                        metadata={"valid_to": "2024-09-01"})
    assert embedded_texts(superseded) == [("[7 May 2024]", "Ana lives in Lisbon. (until 1 September 2024)")]
    assert " ".join(embedded_texts(superseded)[0]) == superseded.render()
    undated = memory("f5", "Ana lives in Lisbon.")
    assert embedded_texts(undated) == [("", "Ana lives in Lisbon.")]
    [long] = raw_memories([turn("t2", MOVED)])
    assert embedded_texts(long) == passages(long)


def test_a_prefix_is_read_as_if_the_text_followed_it():
    """MiniLM mean-pools its tokens: a body's vector with its prefix's token states added is
    close to the joined text's, and closer than the body's alone."""
    prefix, body = "[7 May 2024] Ana:", "The new flat has a balcony that looks over the boats!"
    [joined, alone] = np.asarray(EMBED([f"{prefix} {body}", body]))
    [added] = embed_prefixed(EMBED, [(prefix, body)])
    assert float(added @ joined) > 0.9 and float(added @ joined) > float(alone @ joined)
    assert float(np.linalg.norm(added)) == pytest.approx(1.0, abs=1e-5)
    # any other embedding function is given the joined text
    [other] = embed_prefixed(lambda texts: EMBED(texts), [(prefix, body)])
    assert float(other @ joined) == pytest.approx(1.0, abs=1e-5)


def test_a_short_memory_of_several_sentences_keeps_one_vector():
    # short sentences ("Wow! That's great.") are generic texts that sit near many queries
    short = "Wow! That's great. We moved last week. The new flat has a balcony!"
    assert len(short.split()) <= MIN_WORDS < len(MOVED.split())
    assert passages(memory("f3", short)) == []
    assert passages(raw_memories([turn("t2", short)])[0]) == []


@pytest.fixture
def index(tmp_path) -> ChromaMemoryIndex:
    return ChromaMemoryIndex(tmp_path / "chroma", embedding_function=EMBED)


def test_dense_search_ranks_a_memory_by_its_best_sentence(index):
    long = memory("long", "The weather was grey and cold all week long in the city. We repainted the "
                          "kitchen in yellow. My cousin called about the wedding plans for next summer.")
    index.upsert([long, memory("short", "The bakery opened a new shop downtown.")])
    dense = copy.copy(index)  # the same stores, searched without BM25
    dense.hybrid = False
    query = "What colour did they paint the kitchen?"
    [hit, _] = dense.search(query, ALICE, 2)
    q = np.asarray(EMBED([query])[0])
    sentences = np.asarray(embed_prefixed(EMBED, passages(long)))
    mean = sentences.mean(axis=0) / np.linalg.norm(sentences.mean(axis=0))
    own, best = float(q @ mean), float((sentences @ q).max())
    assert hit.id == "long"
    assert hit.score == pytest.approx(own, abs=2e-3)  # the score stays the memory's own cosine
    assert hit.relevance == pytest.approx(best, abs=2e-3) and best > own
    # MiniLM mean-pools tokens, so the mean of the sentence vectors stands for the whole text
    assert own == pytest.approx(float(q @ np.asarray(EMBED([long.render()])[0])), abs=0.02)


def test_each_text_is_embedded_once(tmp_path):
    seen: list[str] = []

    class Counting(MiniLMEmbedding):
        def _sums(self, texts, **kw):
            seen.extend(texts)
            return super()._sums(texts, **kw)

    index = ChromaMemoryIndex(tmp_path / "chroma", embedding_function=Counting())
    long, short = memory("long", NOTE), memory("short", "Just one thing. And another.")
    [raw] = raw_memories([turn("t1", MOVED)])
    # a memory of several sentences by its sentences only (its own vector is their mean); a
    # short one, sentences or not, by its whole text; the raw turns' date and speaker once
    [said] = raw_memories([turn("t2", "We moved last week.")])
    index.upsert([long, short, raw, said])
    assert sorted(seen) == sorted([
        *(b for _, b in passages(long)), short.render(), "[7 May 2024] Ana:", *(b for _, b in passages(raw)),
        "We moved last week.",
    ])
    assert len(passages(long)) == 2 and len(passages(raw)) == 3


def sentence_ids(index: ChromaMemoryIndex) -> list[str]:
    col = index._collection(ALICE, create=False, sentences=True)
    return sorted(col.get()["ids"]) if col is not None else []


def test_passages_follow_rewrites_and_deletes(index):
    one, two, three = ("One long sentence about the garden and the roses by the old gate.",
                       "Two long sentences about the river and the boats on a sunny day.",
                       "Three short words.")
    index.upsert([memory("a", f"{one} {two} {three}"), memory("b", f"{two} {one}")])
    assert sentence_ids(index) == ["a#0", "a#1", "a#2", "b#0", "b#1"]
    index.upsert([memory("a", f"{one} {two}")])  # a rewrite with fewer sentences drops the third
    assert sentence_ids(index) == ["a#0", "a#1", "b#0", "b#1"]
    index.delete(["b"], ALICE)
    assert sentence_ids(index) == ["a#0", "a#1"]
    index.delete_scope(ALICE)
    assert index._collection(ALICE, create=False, sentences=True) is None


# ------------------------------------------------------------------------- neighbouring turns


def test_raw_turns_follow_the_turn_before_them_in_their_session():
    earlier = turn("t0", "Where did you go?", minutes=-1)
    batch = [turn("t1", "To the lake."), turn("t2", "It was cold."), turn("t3", "Hi!", session="s2")]
    assert [m.follows for m in raw_memories(batch, earlier)] == ["t0", "t1", None]
    assert raw_memories(batch[2:], earlier)[0].follows is None  # another session


def test_one_turn_at_a_time_still_follows_the_stored_turn_before(tmp_path):
    mem = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    for n, text in enumerate(["Where did you go hiking?", "Up the ridge trail.", "Nice!"]):
        mem.add({"content": text, "id": f"t{n}"}, user_id="alice", session_id="s1",
                timestamp=NOW + timedelta(minutes=n))
    by_id = {m.id: m.follows for m in mem.get_all(user_id="alice")}
    assert by_id == {"t0": None, "t1": "t0", "t2": "t1"}
    mem.close()


def test_neighbours_lend_shares_of_their_scores_in_any_write_order():
    links = Neighbours()
    slots: dict[str, int] = {}
    for slot, (id_, follows) in enumerate([("b", "a"), ("a", None), ("c", "b")]):  # "b" before "a"
        slots[id_] = slot
        links.add(slot, id_, follows, slots)
    scores = np.array([1.0, 2.0, 4.0])  # b, a, c
    expected = [1.0 + FOLLOWED_SHARE * 2.0 + FOLLOWER_SHARE * 4.0, 2.0 + FOLLOWER_SHARE * 1.0,
                4.0 + FOLLOWED_SHARE * 1.0]
    assert links.spread(scores).tolist() == pytest.approx(expected)


def test_a_partition_stored_out_of_order_loads_its_links():
    # Chroma may return a turn before the one it follows, past the first 16 slots
    n = 40
    ids = [f"t{i}" for i in reversed(range(n))]
    docs = [f"Ana: note {i}" + (" about the marathon" if i == 30 else "") for i in reversed(range(n))]
    metas = [{"follows": f"t{i - 1}"} if i else {} for i in reversed(range(n))]
    ranked = LexicalCache().search("p", lambda: (ids, docs, metas), "marathon", lambda m: True, 3).ranked
    assert ranked == ["t30", "t31", "t29"]  # the turn after it takes the bigger share


def test_an_answer_is_found_by_the_words_of_the_question_it_follows():
    ids = ["q", "a", "other"]
    docs = ["Ana: which marathon did you run in spring", "Bo: the one in Vienna, so hard", "Bo: hello"]
    metas = [{}, {"follows": "q"}, {"follows": "a"}]
    cache = LexicalCache()
    hits = cache.search("p", lambda: (ids, docs, metas), "marathon", lambda m: True, 5)
    assert hits.ranked == ["q", "a"]  # the reply has no word of the query
    # written in any order: "later" answers "q2", which arrives after it
    cache.upsert("p", [("later", "Bo: I ran it in three hours", {"follows": "q2"}),
                       ("q2", "Ana: how long did the marathon take", {"follows": "other"})])
    ranked = cache.search("p", lambda: (ids, docs, metas), "marathon", lambda m: True, 5).ranked
    assert set(ranked) == {"q", "a", "q2", "later", "other"}
    assert ranked.index("later") < ranked.index("other")  # the turn after q2 gets the bigger share


def test_a_deleted_or_rewritten_turn_borrows_nothing_from_its_neighbours():
    ids = ["q", "a", "x", "y"]
    docs = ["Ana: which marathon did you run in spring", "Bo: the one in Vienna, so hard",
            "Bo: hello", "Ana: tea?"]
    cache = LexicalCache()
    load = lambda: (ids, docs, [{}, {"follows": "q"}, {"follows": "a"}, {"follows": "x"}])  # noqa: E731
    assert cache.search("p", load, "marathon", lambda m: True, 5).ranked == ["q", "a"]
    cache.delete("p", ["a"])
    # the deleted slot's own score is 0; a share of q's must not bring it back (as None)
    assert cache.search("p", load, "marathon", lambda m: m is not None, 5).ranked == ["q"]
    cache.upsert("p", [("q", "Ana: which marathon was it", {})])  # the turn it followed, rewritten
    assert cache.search("p", load, "marathon", lambda m: m is not None, 5).ranked == ["q"]
    cache.upsert("p", [("a", "Bo: Vienna again", {"follows": "q"})])  # rewritten: linked anew
    assert cache.search("p", load, "marathon", lambda m: True, 5).ranked == ["q", "a"]


def test_an_identifier_holder_outside_both_candidate_lists_is_still_returned_first(index):
    # ten identifiers in one query: their neighbours' shares (and near-identical vectors) push
    # one holder out of both top-60 lists; it is promoted without a fusion score of its own
    turns = [turn(f"t{i}", f"message {i} about the garden", minutes=i) for i in range(230)]
    for start in range(0, 230, 10):  # as extraction writes them, a batch at a time
        index.upsert(raw_memories(turns[start : start + 10]))
    query = " ".join(t.text for t in turns[220:])
    found = index.search(query, ALICE, k=10)
    assert {m.id for m in found} == {t.id for t in turns[220:]}


def test_one_days_turns_reach_the_reader_in_the_order_they_were_said(tmp_path):
    from dualmem import format_memories

    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    said = ["Ana: I lost my keys.", "Bo: Where did you see them last?", "Ana: On the bus, I think."]
    memory.add([{"speaker": s.split(":")[0], "content": s.split(": ", 1)[1]} for s in said],
               user_id="alice", session_id="s1", timestamp="2024-05-07T10:00:00")
    found = memory.search("on the bus", user_id="alice", k=3)
    assert [m.text for m in found] != said  # ranked by relevance...
    assert [line.split("] ", 1)[1] for line in format_memories(found)] == said  # ...read as said
    memory.close()
