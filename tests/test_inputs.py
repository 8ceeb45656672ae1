"""Input validation: timestamps, scopes, message shapes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from dualmem.errors import InvalidInputError, ScopeError
from dualmem.inputs import check_text, make_scope, make_turns, parse_timestamp
from dualmem.types import Scope, Turn

SCOPE = Scope(user_id="alice", session_id="s1")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-05-08T13:56:00", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("2023-05-08T13:56:00Z", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("2023-05-08T15:56:00+02:00", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("2023-05-08", datetime(2023, 5, 8, tzinfo=UTC)),
        ("4:12 pm on 19 March, 2024", datetime(2024, 3, 19, 16, 12, tzinfo=UTC)),
        ("10:04 am on 25 December, 2022", datetime(2022, 12, 25, 10, 4, tzinfo=UTC)),
        ("  8 May 2023 ", datetime(2023, 5, 8, tzinfo=UTC)),
        (1683554160, datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        (1683554160.5, datetime(2023, 5, 8, 13, 56, 0, 500000, tzinfo=UTC)),
        (datetime(2023, 5, 8, 13, 56), datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        (date(2023, 5, 8), datetime(2023, 5, 8, tzinfo=UTC)),
        (
            datetime(2023, 5, 8, 8, 56, tzinfo=timezone(timedelta(hours=-5))),
            datetime(2023, 5, 8, 13, 56, tzinfo=UTC),
        ),
    ],
)
def test_parse_timestamp_gives_aware_utc(value, expected):
    got = parse_timestamp(value)
    assert got == expected
    assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", ["yesterday", "", "13:99 pm on 19 March, 2024", True, [2023], 1e20])
def test_parse_timestamp_rejects_garbage(value):
    with pytest.raises(InvalidInputError):
        parse_timestamp(value)


def test_make_scope_requires_an_id_and_rejects_bad_ids():
    with pytest.raises(ScopeError, match="needs a scope"):
        make_scope()
    for bad in ["", "   ", "a\x00b", "x" * 257]:
        with pytest.raises(ScopeError):
            make_scope(user_id=bad)
    with pytest.raises(ScopeError, match="must be a string"):
        make_scope(user_id=42)  # type: ignore[arg-type]
    assert make_scope(agent_id="bot").partition == "agent:bot"
    assert make_scope(user_id="u", agent_id="bot").partition == "user:u"
    assert make_scope(session_id="s").partition == "session:s"


def test_make_turns_accepts_every_shape():
    ts = "2023-05-08T13:56:00"
    turns = make_turns(
        [
            "plain text",
            b"utf-8 bytes \xc3\xa9",
            {"role": "assistant", "content": "a dict"},
            {"text": "text key", "speaker": "Hilde", "id": "t-4", "metadata": {"k": 1}},
            {"content": "own time", "timestamp": "2020-01-01"},
            Turn(id="t-6", text="a Turn", timestamp=datetime(2021, 1, 1, tzinfo=UTC), user_id="mallory"),
        ],
        SCOPE,
        timestamp=ts,
    )
    assert [t.text for t in turns] == [
        "plain text", "utf-8 bytes \u00e9", "a dict", "text key", "own time", "a Turn",
    ]
    assert [t.role for t in turns] == ["user", "user", "assistant", "user", "user", "user"]
    assert turns[3].speaker == "Hilde" and turns[3].id == "t-4" and turns[3].metadata == {"k": 1}
    assert turns[0].timestamp == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert turns[4].timestamp == datetime(2020, 1, 1, tzinfo=UTC)
    assert turns[5].timestamp == datetime(2021, 1, 1, tzinfo=UTC) and turns[5].id == "t-6"
    # the call's scope wins over whatever a passed-in Turn carries
    assert all((t.user_id, t.session_id) == ("alice", "s1") for t in turns)
    assert len({t.id for t in turns}) == 6


def test_make_turns_single_values_and_default_now():
    before = datetime.now(UTC)
    [turn] = make_turns("hello", SCOPE)
    assert turn.text == "hello" and before <= turn.timestamp <= datetime.now(UTC)
    [turn] = make_turns({"role": "user", "content": "hi"}, SCOPE)
    assert turn.text == "hi"


@pytest.mark.parametrize(
    "messages",
    [
        [],
        "",
        "   ",
        123,
        None,
        {"role": "user", "content": 123},
        {"role": "user"},
        [{"content": "ok"}, {"content": None}],
        b"\xff\xfe",
        "bad surrogate \ud800",
        {"content": "x", "role": 5},
        {"content": "x", "metadata": ["not", "a", "dict"]},
        {"content": "x", "metadata": {"when": datetime(2023, 1, 1)}},
        {"content": "x", "id": 7},
        {"content": "x", "timestamp": "not a date"},
        ["ok", object()],
    ],
)
def test_make_turns_rejects_bad_messages(messages):
    with pytest.raises(InvalidInputError):
        make_turns(messages, SCOPE)


def test_check_text_limits():
    assert check_text("fine") == "fine"
    with pytest.raises(InvalidInputError, match="limit"):
        check_text("x" * 1_000_001)
