"""Bad input: empty, huge, binary, control characters, lone surrogates, wrong types, unknown
scopes, odd timestamps. Every rejection is a clear `InvalidInputError`/`ScopeError` and stores
nothing; everything accepted round-trips exactly.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from dualmem import DualMemory, InvalidInputError, ScopeError, check_messages
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.tokens import count_messages

TRIED = {"rejected": 0, "accepted": 0}
BIG = 200_000


@pytest.fixture(scope="module")
def memory(tmp_path_factory) -> DualMemory:
    m = DualMemory(path=tmp_path_factory.mktemp("bad"), llm=ScriptedLLM(default="ok"), extract=False)
    m.add("A sane first message.", user_id="keeper")
    yield m
    m.close()
    print(f"\n[bad input] inputs tried={sum(TRIED.values())} rejected={TRIED['rejected']} "
          f"accepted={TRIED['accepted']}")


def _state(memory: DualMemory) -> tuple[int, int]:
    scopes = memory.history_store.scopes()
    turns = sum(len(memory.history(user_id=s.user_id, agent_id=s.agent_id, session_id=s.session_id))
                for s in scopes)
    return turns, len(scopes)


def rejected(memory: DualMemory, call, error: type[Exception] = InvalidInputError) -> str:
    """Run a call that must be rejected, and check that nothing was stored."""
    before = _state(memory)
    with pytest.raises(error) as info:
        call()
    assert _state(memory) == before
    TRIED["rejected"] += 1
    return str(info.value)


# ---------------------------------------------------------------- messages

@pytest.mark.parametrize("messages", [
    "", "   \n\t ", [], (), {}, {"role": "user"}, {"content": ""}, [{"content": "ok"}, {"content": " "}],
    None, 42, 3.5, True, object(), b"\xff\xfe\xfa", [b"ok", b"\xc3\x28"], {"content": 7},
    {"content": "x", "role": 5}, {"content": "x", "speaker": ["a"]}, {"content": "x", "metadata": "m"},
    {"content": "x", "metadata": {"s": {1, 2}}}, {"content": "x", "metadata": {"f": object()}},
    {"content": "x", "id": 12}, {"content": "x", "id": "i" * 300}, "lone \ud800 surrogate",
    {"content": "x", "speaker": "\udc80"}, {"content": "x", "role": "us\ud800er"},
    {"content": "x", "id": "id-\ud83d"}, {"content": "x", "metadata": {"k": "v\udfff"}},
    {"content": "x", "metadata": {"\ud800": 1}}, [{"content": "good"}, 17],
    {"content": "x", "metadata": {"blob": "b" * 1_000_001}},
], ids=lambda m: repr(m)[:80])
def test_bad_messages_are_rejected_and_store_nothing(memory, messages) -> None:
    message = rejected(memory, lambda: memory.add(messages, user_id="victim"))
    assert message and len(message) < 400
    # what a caller checks before a step it cannot undo (a chat's `set`) says the same
    with pytest.raises(InvalidInputError) as checked:
        check_messages(messages)
    assert str(checked.value) == message


def test_a_bad_message_late_in_a_batch_stores_none_of_it(memory) -> None:
    batch = [{"content": f"turn {i}", "id": f"batch-{i}"} for i in range(5)] + [{"content": "\ud800"}]
    rejected(memory, lambda: memory.add(batch, user_id="batcher"))
    with pytest.raises(ScopeError):
        memory.answer("anything?", user_id="batcher")
    assert memory.get_all(user_id="batcher") == []


def test_too_large_message_is_a_clear_error(memory) -> None:
    message = rejected(memory, lambda: memory.add("x" * 2_000_000, user_id="big"))
    assert "2000000 characters" in message and "limit" in message


@pytest.mark.parametrize("text", [
    "nul\x00byte", "bell\x07 and escape\x1b[31m", "tab\tnew\nline\rcr", "zero\u200bwidth \ufeffbom",
    "rtl \u202eevil\u202c", "emoji 👩‍👩‍👧 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0010ffff max", "combining e\u0301",
], ids=repr)
def test_odd_but_valid_text_round_trips_exactly(memory, text) -> None:
    user = f"odd-{abs(hash(text))}"
    memory.add({"content": text, "speaker": text[:10], "metadata": {"raw": text}}, user_id=user)
    [turn] = memory.history(user_id=user)
    assert (turn.text, turn.speaker, turn.metadata) == (text, text[:10], {"raw": text})
    [mem] = memory.get_all(user_id=user)
    assert mem.text.endswith(text) and mem.metadata == {"raw": text}
    assert memory.search(text, user_id=user)[0].id == turn.id
    assert memory.answer(text, user_id=user, mode="fast").text == "ok"
    TRIED["accepted"] += 1


def test_utf8_bytes_are_accepted(memory) -> None:
    memory.add("café ✓".encode(), user_id="bytes")
    assert memory.history(user_id="bytes")[0].text == "café ✓"
    TRIED["accepted"] += 1


# ---------------------------------------------------------------- huge but legal


def _facts_reply(request):
    if request.task == "deliberate.extract":
        return json.dumps({"facts": [{"fact": "Alice drinks green tea.", "score": 9, "turns": [1]}]})
    if request.task == "extract":
        return json.dumps({"facts": [{"text": "Alice drinks green tea."}]})
    return ScriptedReply("green tea", confidence=0.99)


@pytest.mark.parametrize("extract", [False, True], ids=["raw", "extract"])
def test_a_200k_char_message_is_stored_and_every_prompt_fits_the_context(tmp_path, extract) -> None:
    llm = ScriptedLLM(default=_facts_reply, context_tokens=4096)
    # the model selects lines, so that the selection prompts are checked too
    memory = DualMemory(path=tmp_path, llm=llm, extract=extract, deliberation={"select_lines": "model"})
    big = ("Alice talks about tea, travel and her garden at great length. " * 4000)[:BIG]
    result = memory.add([{"content": "I drink green tea.", "speaker": "Alice"},
                         {"content": big, "speaker": "Alice"}], user_id="alice")
    assert result.error is None
    assert [len(t.text) for t in memory.history(user_id="alice")] == [18, BIG]
    for mode, strategy in [("fast", None), ("gated", None), ("full", "evidence"), ("full", "scan")]:
        answer = memory.answer("What does Alice drink?", user_id="alice", mode=mode, policy="audit",
                               strategy=strategy)
        assert answer.text == "green tea"
    assert llm.calls_for("deliberate.select") and llm.calls_for("deliberate.extract"), "both deliberated"
    for call in llm.calls:
        assert count_messages(call.messages) + call.max_tokens <= llm.context_tokens, call.task
    memory.close()
    TRIED["accepted"] += 1


# ---------------------------------------------------------------- scopes and ids


@pytest.mark.parametrize("scope", [
    {}, {"user_id": None}, {"user_id": ""}, {"user_id": "   "}, {"user_id": 7}, {"user_id": b"alice"},
    {"user_id": ["a"]}, {"agent_id": "a" * 257}, {"session_id": "s\x00"}, {"user_id": "line\x0bfeed"},
    {"user_id": "del\x7f"}, {"user_id": "sur\ud800rogate"}, {"agent_id": "\udfff"},
    {"user_id": "ok", "session_id": "\ud834"},
], ids=repr)
def test_bad_scopes_are_scope_errors(memory, scope) -> None:
    message = rejected(memory, lambda: memory.add("hello", **scope), ScopeError)
    assert "id" in message or "scope" in message
    for call in (memory.search, memory.answer):
        with pytest.raises(ScopeError):
            call("hello", **scope)
    with pytest.raises(ScopeError):
        memory.delete_all(**scope)


def test_unknown_scope_on_answer_is_a_scope_error(memory) -> None:
    with pytest.raises(ScopeError, match="nothing is stored"):
        memory.answer("Where does Bob live?", user_id="nobody-by-this-name")
    assert memory.search("anything", user_id="nobody-by-this-name") == []
    assert memory.history(user_id="nobody-by-this-name") == []
    assert memory.delete_all(user_id="nobody-by-this-name") == {"turns": 0, "memories": 0}
    TRIED["rejected"] += 1


@pytest.mark.parametrize("call", [
    lambda m: m.search("", user_id="keeper"),
    lambda m: m.search(None, user_id="keeper"),
    lambda m: m.search("q\ud800", user_id="keeper"),
    lambda m: m.search("q", user_id="keeper", k=0),
    lambda m: m.search("q", user_id="keeper", k="5"),
    lambda m: m.answer("q", user_id="keeper", mode="slow"),
    lambda m: m.answer("q", user_id="keeper", policy="vibes"),
    lambda m: m.answer(b"\xff", user_id="keeper"),
    lambda m: m.history(user_id="keeper", limit=0),
    lambda m: m.history(user_id="keeper", since="last tuesday-ish"),
    lambda m: m.get("", user_id="keeper"),
    lambda m: m.get("\ud800", user_id="keeper"),
    lambda m: m.delete(None, user_id="keeper"),
    lambda m: m.delete("x" * 300, user_id="keeper"),
    lambda m: m.delete("\udc00", user_id="keeper"),
], ids=lambda c: c.__code__.co_firstlineno)
def test_bad_read_and_delete_arguments(memory, call) -> None:
    rejected(memory, lambda: call(memory))
    assert memory.history(user_id="keeper")[0].text == "A sane first message."


def test_a_huge_limit_means_no_limit(memory) -> None:
    assert len(memory.history(user_id="keeper", limit=10**30)) == 1
    assert len(memory.get_all(user_id="keeper", limit=10**30)) == 1
    TRIED["accepted"] += 2


# ---------------------------------------------------------------- timestamps

PLUS_0530 = timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(("value", "expected"), [
    (0, datetime(1970, 1, 1, tzinfo=UTC)),
    (-1e10, datetime(1653, 2, 10, 6, 13, 20, tzinfo=UTC)),
    (1.5, datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)),
    ("2023-05-08T13:56:00+05:30", datetime(2023, 5, 8, 8, 26, tzinfo=UTC)),
    ("2023-05-08T13:56:00Z", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
    ("2023-05-08T13:56:00", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
    ("4:12 pm on 19 March, 2024", datetime(2024, 3, 19, 16, 12, tzinfo=UTC)),
    ("9999-12-31T23:59:59", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("0001-01-01", datetime(1, 1, 1, tzinfo=UTC)),
    (date(2020, 2, 29), datetime(2020, 2, 29, tzinfo=UTC)),
    (datetime(2023, 1, 1, 12, tzinfo=PLUS_0530), datetime(2023, 1, 1, 6, 30, tzinfo=UTC)),
], ids=repr)
def test_odd_timestamps_are_normalised_to_utc(memory, value, expected) -> None:
    user = f"ts-{abs(hash(repr(value)))}"
    memory.add("dated", user_id=user, timestamp=value)
    assert memory.history(user_id=user)[0].timestamp == expected
    assert memory.history(user_id=user, since=expected, until=expected)[0].text == "dated"
    TRIED["accepted"] += 1


@pytest.mark.parametrize("value", [
    "", "yesterday", "2023-13-45", "2023-05-08T25:00", "NaN", float("nan"), float("inf"), -float("inf"),
    1e20, 10**30, True, [2023, 5, 8], {"year": 2023}, b"2023-05-08",
    "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
], ids=repr)
def test_bad_timestamps_are_rejected(memory, value) -> None:
    message = rejected(memory, lambda: memory.add("dated", user_id="bad-ts", timestamp=value))
    assert "timestamp" in message
    rejected(memory, lambda: memory.add({"content": "dated", "timestamp": value}, user_id="bad-ts"))


def test_turns_with_timezones_order_by_instant(memory) -> None:
    # 10:00+05:30 is 04:30 UTC: earlier than 05:00Z although its wall clock reads later
    memory.add([{"content": "late wall clock", "timestamp": "2023-05-08T10:00:00+05:30"},
                {"content": "early wall clock", "timestamp": "2023-05-08T05:00:00Z"}], user_id="tz")
    found = memory.history(user_id="tz", until="2023-05-08T04:45:00Z")
    assert [t.text for t in found] == ["late wall clock"]
    TRIED["accepted"] += 1
