"""`DualMemory` end to end with ScriptedLLM: add/search/answer, history, forgetting, reindex,
async twins, scope isolation and input errors."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime

import pytest

from dualmem import (
    Answer,
    DualMemory,
    InvalidInputError,
    ScopeError,
    StorageError,
)
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.tokens import count_tokens

DAY1 = "2023-05-08T10:00:00"
DAY2 = "2023-05-09T10:00:00"
DAY3 = "2023-05-10T10:00:00"
ALICE_TURNS = [
    {"role": "user", "speaker": "Alice", "content": "I adopted a beagle named Rex.", "id": "a1"},
    {"role": "user", "speaker": "Alice", "content": "I work as a nurse at the city hospital.", "id": "a2"},
    {"role": "user", "speaker": "Alice", "content": "My favourite drink is green tea.", "id": "a3"},
]


@pytest.fixture
def llm() -> ScriptedLLM:
    return ScriptedLLM(by_task={"answer": lambda r: ScriptedReply("Rex", confidence=0.8)})


@pytest.fixture
def memory(tmp_path, llm) -> DualMemory:
    m = DualMemory(path=tmp_path, llm=llm, extract=False)
    yield m
    m.close()


@pytest.fixture
def filled(memory) -> DualMemory:
    memory.add(ALICE_TURNS[:2], user_id="alice", session_id="s1", timestamp=DAY1)
    memory.add(ALICE_TURNS[2:], user_id="alice", session_id="s2", timestamp=DAY2)
    memory.add({"content": "My dog is called Rex too.", "id": "b1"}, user_id="bob", timestamp=DAY1)
    return memory


def ids(items) -> list[str]:
    return [x.id for x in items]


# ---------------------------------------------------------------- add, search, answer


def test_add_returns_stored_turns_and_memories(memory):
    result = memory.add(ALICE_TURNS, user_id="alice", session_id="s1", timestamp=DAY1)
    assert ids(result.turns) == ["a1", "a2", "a3"] and result.error is None
    assert ids(result.added) == ["a1", "a2", "a3"]
    assert result.added[0].text == "Alice: I adopted a beagle named Rex."
    assert result.usage.calls == 0
    again = memory.add(ALICE_TURNS, user_id="alice", session_id="s1", timestamp=DAY1)
    assert again.turns == [] and again.added == [] and again.skipped_duplicates == 3
    assert len(memory.history(user_id="alice")) == 3 and len(memory.get_all(user_id="alice")) == 3


def test_search_ranks_best_first(filled):
    hits = filled.search("What kind of dog does Alice have?", user_id="alice")
    assert hits[0].id == "a1" and 0 < hits[0].score <= 1
    assert set(ids(hits)) == {"a1", "a2", "a3"}
    assert ids(filled.search("hospital job", user_id="alice", k=1)) == ["a2"]
    assert ids(filled.search("tea", user_id="alice", session_id="s2")) == ["a3"]


def test_search_results_carry_a_descending_ranking_score_beside_the_cosine(filled):
    filled.add([{"content": f"Order ZX-{n}41 shipped to the office.", "id": f"o{n}"} for n in range(5)],
               user_id="alice", session_id="s3")
    for query in ("What kind of dog does Alice have?", "where did order ZX-341 go"):
        hits = filled.search(query, user_id="alice")
        relevance = [h.relevance for h in hits]
        assert relevance == sorted(relevance, reverse=True) and None not in relevance
        assert all(h.score is not None and -1 <= h.score <= 1 for h in hits)
    # the exact identifier is promoted above the fusion: its relevance says so
    assert hits[0].id == "o3" and hits[0].relevance > 1 > hits[1].relevance


def test_answer_fast_mode(filled, llm):
    answer = filled.answer("What is the name of Alice's dog?", user_id="alice", k=2, mode="fast")
    assert isinstance(answer, Answer)
    assert (answer.text, answer.path, answer.mode) == ("Rex", "fast", "fast")
    assert answer.question == "What is the name of Alice's dog?"
    assert answer.evidence.memory_ids[0] == "a1" and len(answer.evidence.memory_ids) == 2
    assert answer.evidence.turn_ids == sorted(answer.evidence.memory_ids)
    assert ids(answer.memories) == answer.evidence.memory_ids
    [call] = llm.calls_for("answer")
    prompt = call.messages[-1]["content"]
    assert "[8 May 2023] Alice: I adopted a beagle named Rex." in prompt
    assert "Bob" not in prompt and "called Rex too" not in prompt  # bob's memory is not hers
    usage = answer.usage["answer"]
    assert usage.calls == 1 and usage.prompt_tokens > 50
    assert usage.completion_tokens == count_tokens("Rex")
    assert answer.total_usage == usage
    assert answer.latency["retrieve"] > 0 and answer.latency["answer"] >= 0
    assert answer.logprobs and answer.logprobs[0].token == "Rex"


def test_answer_is_json_serialisable(filled):
    answer = filled.answer("Where does Alice work?", user_id="alice", mode="fast")
    payload = answer.model_dump_json()
    assert json.loads(payload)["evidence"]["memory_ids"] == answer.evidence.memory_ids
    again = Answer.model_validate_json(payload)
    assert again == answer
    assert again.memories[0].created_at.tzinfo is not None


def test_answer_cleans_the_reply(filled):
    filled._llm = ScriptedLLM(by_task={"answer": ['Answer: "Rex"\nbecause memory 1 says so']})
    assert filled.answer("dog?", user_id="alice", mode="fast").text == "Rex"


# ---------------------------------------------------------------- history


def test_history_order_and_time_range(memory):
    memory.add("first, on day 3", user_id="alice", timestamp=DAY3)
    memory.add("second, on day 1", user_id="alice", timestamp=DAY1)
    memory.add("third, on day 2", user_id="alice", timestamp=DAY2)
    texts = lambda **kw: [t.text for t in memory.history(user_id="alice", **kw)]  # noqa: E731
    assert texts() == ["first, on day 3", "second, on day 1", "third, on day 2"]
    assert texts(since="2023-05-09") == ["first, on day 3", "third, on day 2"]
    assert texts(until=datetime(2023, 5, 9, 12, tzinfo=UTC)) == ["second, on day 1", "third, on day 2"]
    assert texts(since="2023-05-08T12:00:00", until="2023-05-09T12:00:00") == ["third, on day 2"]
    assert texts(since=1683705600) == ["first, on day 3"]  # epoch seconds: 2023-05-10 08:00 UTC
    assert texts(limit=2) == ["first, on day 3", "second, on day 1"]
    with pytest.raises(InvalidInputError):
        memory.history(user_id="alice", since="the other day")


def test_history_keeps_every_field(memory):
    memory.add(
        {"role": "assistant", "name": "Bot", "content": "Noted!", "id": "x1", "metadata": {"k": "v"}},
        agent_id="bot", session_id="s9", timestamp="4:12 pm on 19 March, 2024",
    )
    [turn] = memory.history(agent_id="bot")
    assert (turn.id, turn.role, turn.speaker, turn.text, turn.metadata) == (
        "x1", "assistant", "Bot", "Noted!", {"k": "v"}
    )
    assert (turn.agent_id, turn.session_id, turn.user_id) == ("bot", "s9", None)
    assert turn.timestamp == datetime(2024, 3, 19, 16, 12, tzinfo=UTC)


# ---------------------------------------------------------------- get, delete, reset


def test_get_and_get_all(filled):
    got = filled.get("a2", user_id="alice")
    assert got.text == "Alice: I work as a nurse at the city hospital."
    assert got.source_turn_ids == ["a2"] and got.event_date == "2023-05-08"
    assert filled.get("nope", user_id="alice") is None
    assert ids(filled.get_all(user_id="alice")) == ["a1", "a2", "a3"]
    assert ids(filled.get_all(user_id="alice", session_id="s1")) == ["a1", "a2"]
    assert len(filled.get_all(user_id="alice", limit=1)) == 1


def test_delete_one_memory_keeps_its_turn(filled):
    assert filled.delete("a1", user_id="alice") is True
    assert filled.get("a1", user_id="alice") is None
    assert filled.delete("a1", user_id="alice") is False
    assert "a1" not in ids(filled.search("dog", user_id="alice"))
    assert "a1" in ids(filled.history(user_id="alice"))


def test_delete_all_forgets_exactly_its_scope(filled):
    assert filled.delete_all(user_id="alice", session_id="s1") == {"turns": 2, "memories": 2}
    assert ids(filled.history(user_id="alice")) == ["a3"]
    assert ids(filled.get_all(user_id="alice")) == ["a3"]
    assert filled.delete_all(user_id="alice") == {"turns": 1, "memories": 1}
    assert filled.history(user_id="alice") == [] and filled.search("tea", user_id="alice") == []
    assert ids(filled.history(user_id="bob")) == ["b1"] and ids(filled.get_all(user_id="bob")) == ["b1"]
    with pytest.raises(ScopeError):
        filled.answer("dog?", user_id="alice", mode="fast")


def test_reset_forgets_everything(filled):
    filled.add("bot note", agent_id="bot")
    filled.reset()
    for scope in ({"user_id": "alice"}, {"user_id": "bob"}, {"agent_id": "bot"}):
        assert filled.history(**scope) == [] and filled.get_all(**scope) == []
    filled.add(ALICE_TURNS[:1], user_id="alice")  # usable afterwards; old ids insert again
    assert ids(filled.search("dog", user_id="alice")) == ["a1"]


# ---------------------------------------------------------------- reindex


def test_reindex_after_the_collection_is_dropped(filled):
    filled.index.reset()
    assert filled.search("dog", user_id="alice") == []
    result = filled.reindex(user_id="alice")
    assert (result.scopes, result.turns, result.memories, result.errors) == (1, 3, 3, [])
    assert filled.search("dog", user_id="alice")[0].id == "a1"
    assert filled.search("dog", user_id="bob") == []
    everything = filled.reindex()
    assert (everything.scopes, everything.turns, everything.memories) == (2, 4, 4)
    assert ids(filled.search("dog", user_id="bob")) == ["b1"]
    assert len(filled.get_all(user_id="alice")) == 3  # reindex replaces, never duplicates


def test_reindex_after_the_index_directory_is_removed(tmp_path, filled):
    filled.close()
    filled.close()  # closing twice is harmless
    shutil.rmtree(tmp_path / "chroma")
    reopened = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    assert reopened.search("dog", user_id="alice") == []
    assert len(reopened.history(user_id="alice")) == 3
    assert reopened.reindex().memories == 4
    assert reopened.search("dog", user_id="alice")[0].id == "a1"
    reopened.close()


def test_close_releases_the_index(tmp_path, filled):
    filled.close()
    shutil.rmtree(tmp_path / "chroma")
    reopened = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    reopened.add("new turn", user_id="carol")
    assert len(reopened.get_all(user_id="carol")) == 1


def test_reindex_one_session_leaves_the_others(filled):
    filled.delete("a3", user_id="alice")
    filled.delete("a1", user_id="alice")
    result = filled.reindex(user_id="alice", session_id="s1")
    assert (result.turns, result.memories) == (2, 2)
    assert ids(filled.get_all(user_id="alice")) == ["a1", "a2"]  # a3 (session s2) not rebuilt


def test_reindex_in_extract_mode_calls_the_model(tmp_path):
    reply = json.dumps({"facts": [{"text": "Alice has a beagle named Rex.", "date": None, "turns": [1]}]})
    llm = ScriptedLLM(by_task={"extract": [reply, reply]})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True, index_turns=False)
    [first] = memory.add(ALICE_TURNS[:1], user_id="alice").added
    result = memory.reindex(user_id="alice")
    assert len(llm.calls_for("extract")) == 2
    assert (result.memories, result.usage.calls, result.errors) == (1, 1, [])
    [rebuilt] = memory.get_all(user_id="alice")
    assert rebuilt.text == first.text and rebuilt.source_turn_ids == ["a1"]
    # with the model gone the failure is reported, and the history is still there
    failed = memory.reindex(user_id="alice")
    assert failed.errors and "no reply left" in failed.errors[0]
    assert len(memory.history(user_id="alice")) == 1
    raw = memory.reindex(user_id="alice", extract=False)
    assert raw.memories == 1 and ids(memory.get_all(user_id="alice")) == ["a1"]


# ---------------------------------------------------------------- async twins, event loops


async def test_async_twins_match_sync(filled):
    query = "What does Alice drink?"
    sync_hits = filled.search(query, user_id="alice")
    async_hits = await filled.asearch(query, user_id="alice")
    assert [(m.id, m.score) for m in async_hits] == [(m.id, m.score) for m in sync_hits]
    assert await filled.ahistory(user_id="alice") == filled.history(user_id="alice")
    assert await filled.aget_all(user_id="alice") == filled.get_all(user_id="alice")
    assert await filled.aget("a2", user_id="alice") == filled.get("a2", user_id="alice")
    sync_answer = filled.answer(query, user_id="alice", mode="fast")
    async_answer = await filled.aanswer(query, user_id="alice", mode="fast")
    assert async_answer.model_dump(exclude={"latency"}) == sync_answer.model_dump(exclude={"latency"})
    added = await filled.aadd("I also like coffee.", user_id="alice", timestamp=DAY3)
    assert ids(filled.history(user_id="alice"))[-1] == added.turns[0].id
    assert (await filled.areindex(user_id="alice")).memories == 4
    assert await filled.adelete(added.turns[0].id, user_id="alice") is True
    assert await filled.adelete_all(user_id="alice") == {"turns": 4, "memories": 3}
    assert filled.history(user_id="alice") == []


async def test_sync_methods_work_inside_a_running_loop(memory):
    result = memory.add(ALICE_TURNS, user_id="alice", timestamp=DAY1)
    assert len(result.added) == 3
    assert memory.search("dog", user_id="alice")[0].id == "a1"
    assert memory.answer("dog?", user_id="alice", mode="fast").text == "Rex"
    assert len(memory.history(user_id="alice")) == 3
    assert (await memory.asearch("dog", user_id="alice"))[0].id == "a1"


async def test_concurrent_adds_of_one_user_all_land(memory):
    await asyncio.gather(*(memory.aadd(f"note {i}", user_id="alice") for i in range(20)))
    assert len(memory.history(user_id="alice")) == 20
    assert len(memory.get_all(user_id="alice")) == 20


async def test_extraction_is_serialised_per_user_only(tmp_path):
    reply = ScriptedReply(json.dumps({"facts": [{"text": "A fact.", "turns": [1]}]}), delay=0.2)
    llm = ScriptedLLM(by_task={"extract": lambda r: reply,
                               "reconcile": lambda r: '{"actions": [{"fact": 1, "event": "NOOP"}]}'})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True, index_turns=False)
    await asyncio.gather(memory.aadd("one", user_id="alice"), memory.aadd("two", user_id="alice"))
    assert llm.max_concurrency_seen == 1
    # the second extraction saw the first one's memory: a restatement, kept once (a NOOP
    # without a reconcile call); run together, each would have added its own copy
    assert llm.calls_for("reconcile") == [] and len(memory.get_all(user_id="alice")) == 1
    await asyncio.gather(memory.aadd("three", user_id="bob"), memory.aadd("four", user_id="carol"))
    assert llm.max_concurrency_seen == 2


# ---------------------------------------------------------------- scope isolation


def test_every_call_is_scoped(filled, llm):
    bob = {"user_id": "bob"}
    assert ids(filled.search("beagle nurse tea", **bob)) == ["b1"]
    assert ids(filled.history(**bob)) == ["b1"]
    assert ids(filled.get_all(**bob)) == ["b1"]
    assert filled.get("a1", **bob) is None
    assert filled.delete("a1", **bob) is False
    filled.answer("What does Alice drink?", mode="fast", **bob)
    prompt = llm.calls_for("answer")[-1].messages[-1]["content"]
    assert "green tea" not in prompt and "nurse" not in prompt
    # ids that look like alice's partition reach nothing of hers
    for crafted in ({"agent_id": "alice"}, {"session_id": "user:alice"}, {"user_id": "alice "},
                    {"user_id": "bob", "session_id": "s1"}, {"agent_id": "user:alice"}):
        assert filled.search("beagle", **crafted) == []
        assert filled.history(**crafted) == [] and filled.get_all(**crafted) == []
        assert filled.delete_all(**crafted) == {"turns": 0, "memories": 0}
        with pytest.raises(ScopeError):
            filled.answer("dog?", mode="fast", **crafted)
    assert filled.delete_all(**bob) == {"turns": 1, "memories": 1}
    filled.reindex(**bob)
    assert len(filled.history(user_id="alice")) == 3 and len(filled.get_all(user_id="alice")) == 3


def test_same_turn_ids_in_two_users_stay_apart(memory):
    memory.add({"content": "Alice's secret", "id": "same"}, user_id="alice")
    result = memory.add({"content": "Bob's secret", "id": "same"}, user_id="bob")
    assert ids(result.turns) == ["same"]
    assert memory.get("same", user_id="alice").text == "user: Alice's secret"
    assert memory.get("same", user_id="bob").text == "user: Bob's secret"
    memory.delete("same", user_id="bob")
    assert memory.get("same", user_id="alice") is not None


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("call", ["add", "search", "answer", "history", "get_all", "delete_all"])
def test_every_call_needs_a_scope(memory, call):
    args = {"add": ("hi",), "search": ("q",), "answer": ("q",), "history": (), "get_all": (),
            "delete_all": ()}[call]
    with pytest.raises(ScopeError, match="needs a scope"):
        getattr(memory, call)(*args)


def test_answer_on_an_empty_scope(memory, llm):
    with pytest.raises(ScopeError, match="nothing is stored"):
        memory.answer("anything?", user_id="nobody", mode="fast")
    assert llm.calls == []


@pytest.mark.parametrize(
    ("messages", "kwargs"),
    [
        ("", {}),
        ("   \n", {}),
        ([], {}),
        ({"role": "user", "content": 42}, {}),
        ({"role": "user", "content": None}, {}),
        (b"\xc3\x28 invalid utf-8", {}),
        ("lone surrogate \udc80", {}),
        (42, {}),
        (["fine", {"content": ""}], {}),
        (["fine", {"content": "fine too", "metadata": {"when": datetime(2023, 1, 1)}}], {}),
        ("fine", {"timestamp": "next tuesday-ish"}),
        ("fine", {"timestamp": [2023]}),
    ],
)
def test_bad_messages_store_nothing(memory, llm, messages, kwargs):
    with pytest.raises(InvalidInputError):
        memory.add(messages, user_id="alice", **kwargs)
    assert memory.history(user_id="alice") == [] and memory.get_all(user_id="alice") == []
    assert llm.calls == []


@pytest.mark.parametrize("scope", [{"user_id": 42}, {"user_id": ""}, {"agent_id": "a\x00b"},
                                   {"session_id": "x" * 300}])
def test_bad_scope_ids(memory, scope):
    with pytest.raises(ScopeError):
        memory.add("hi", **scope)
    with pytest.raises(ScopeError):
        memory.search("hi", **scope)


@pytest.mark.parametrize("question", ["", "  ", None, 3, b"\xff"])
def test_bad_questions(filled, question):
    with pytest.raises(InvalidInputError):
        filled.answer(question, user_id="alice", mode="fast")
    with pytest.raises(InvalidInputError):
        filled.search(question, user_id="alice")


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda m: m.search("q", user_id="alice", k=0), id="k=0"),
        pytest.param(lambda m: m.search("q", user_id="alice", k="3"), id="k=str"),
        pytest.param(lambda m: m.search("q", user_id="alice", k=True), id="k=bool"),
        pytest.param(lambda m: m.answer("q", user_id="alice", mode="slow"), id="mode"),
        pytest.param(lambda m: m.answer("q", user_id="alice", policy="vibes"), id="policy"),
    ],
)
def test_bad_arguments_are_invalid_input(filled, llm, call):
    with pytest.raises(InvalidInputError):
        call(filled)
    assert llm.calls == []


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda m: m.history(user_id="alice", limit="ten"), id="history-limit-str"),
        pytest.param(lambda m: m.history(user_id="alice", limit=-1), id="history-limit-negative"),
        pytest.param(lambda m: m.get_all(user_id="alice", limit=-1), id="get_all-limit-negative"),
        pytest.param(lambda m: m.get(None, user_id="alice"), id="get-None"),
        pytest.param(lambda m: m.delete(123, user_id="alice"), id="delete-int"),
    ],
)
def test_bad_ids_and_limits_are_invalid_input(filled, call):
    with pytest.raises(InvalidInputError):
        call(filled)


def test_unwritable_data_dir(tmp_path):
    with pytest.raises(StorageError, match="not writable"):
        DualMemory(path="/proc/dualmem-test", llm=ScriptedLLM())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError):
        DualMemory(path=blocker / "data", llm=ScriptedLLM())


def test_the_writability_probe_leaves_another_processs_files_alone(tmp_path):
    # several processes open one data directory at once: none may remove what another wrote
    # (a shared probe name made one of three processes fail at random with "not writable")
    theirs = tmp_path / ".write-test"
    theirs.write_text("another process's probe")
    DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False).close()
    assert theirs.read_text() == "another process's probe"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".write-test"]


def test_data_persists_across_instances(tmp_path):
    first = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    first.add(ALICE_TURNS, user_id="alice", timestamp=DAY1)
    first.close()
    second = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    assert ids(second.history(user_id="alice")) == ["a1", "a2", "a3"]
    assert second.search("dog", user_id="alice")[0].id == "a1"
    assert second.add(ALICE_TURNS, user_id="alice").skipped_duplicates == 3


def test_extraction_lock_works_across_event_loops(tmp_path):
    reply = ScriptedReply(json.dumps({"facts": [{"text": "A fact.", "turns": [1]}]}), delay=0.05)
    llm = ScriptedLLM(by_task={"extract": lambda r: reply,
                               "reconcile": lambda r: '{"actions": [{"fact": 1, "event": "NOOP"}]}'})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True, index_turns=False)

    async def two_adds():
        return await asyncio.gather(*(memory.aadd(t, user_id="alice") for t in ("one", "two")))

    for _ in range(2):  # each run waits on the lock inside its own loop
        assert [r.error for r in asyncio.run(two_adds())] == [None, None]
    assert len(memory.get_all(user_id="alice")) == 1


def test_retried_add_indexes_turns_whose_first_index_write_failed(tmp_path, monkeypatch):
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    real_upsert = memory.index.upsert

    def boom(memories):
        raise RuntimeError("index went away after the history commit")

    monkeypatch.setattr(memory.index, "upsert", boom)
    with pytest.raises(RuntimeError):
        memory.add({"id": "t1", "content": "Alice keeps bees."}, user_id="alice")
    monkeypatch.setattr(memory.index, "upsert", real_upsert)
    result = memory.add({"id": "t1", "content": "Alice keeps bees."}, user_id="alice")
    assert result.skipped_duplicates == 1 and result.turns == []
    assert [m.id for m in memory.get_all(user_id="alice")] == ["t1"]
    assert len(memory.history(user_id="alice")) == 1


@pytest.mark.parametrize(("text", "found"), [("NONE", False), ("none.", False), (" ", False), ("Rex", True)])
def test_answer_reply_is_a_plain_sentence_for_the_none_sentinel(text, found):
    answer = Answer(question="Dog?", text=text)
    assert answer.found is found
    assert answer.reply == (text if found else "Nothing in memory answers this question.")
