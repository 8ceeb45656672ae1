"""SQLite history store: ordering, queries, idempotency, atomicity, scopes, persistence."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dualmem.errors import StorageError
from dualmem.history import HistoryStore, SQLiteHistoryStore, TurnQuery
from dualmem.types import Scope, Turn

T0 = datetime(2023, 5, 8, 12, 0, tzinfo=UTC)
ALICE = Scope(user_id="alice")


def turn(i: int, user: str | None = "alice", session: str | None = "s1", agent: str | None = None,
         **kw) -> Turn:
    return Turn(id=kw.pop("id", f"t{i}"), text=kw.pop("text", f"message {i}"),
                timestamp=kw.pop("timestamp", T0 + timedelta(hours=i)),
                user_id=user, agent_id=agent, session_id=session, **kw)


@pytest.fixture
def store(tmp_path):
    s = SQLiteHistoryStore(tmp_path / "h.sqlite3")
    yield s
    s.close()


def ids(turns: list[Turn]) -> list[str]:
    return [t.id for t in turns]


def test_is_a_history_store(store):
    assert isinstance(store, HistoryStore)


def test_list_returns_insertion_order_not_time_order(store):
    # later messages may carry earlier timestamps (imports); the history keeps arrival order
    store.append([turn(3), turn(1)])
    store.append([turn(2, metadata={"lang": "en", "n": 2}, role="assistant", speaker="Bot")])
    got = store.list(TurnQuery(scope=ALICE))
    assert ids(got) == ["t3", "t1", "t2"]
    assert [t.seq for t in got] == sorted(t.seq for t in got)
    last = got[-1]
    assert (last.role, last.speaker, last.metadata) == ("assistant", "Bot", {"lang": "en", "n": 2})
    assert last.timestamp == T0 + timedelta(hours=2)
    assert last.model_dump(exclude={"seq"}) == turn(
        2, metadata={"lang": "en", "n": 2}, role="assistant", speaker="Bot"
    ).model_dump(exclude={"seq"})


def test_append_returns_inserted_turns_with_seq(store):
    inserted = store.append([turn(1), turn(2)])
    assert ids(inserted) == ["t1", "t2"]
    assert inserted[0].seq > 0 and inserted[1].seq == inserted[0].seq + 1


def test_list_filters(store):
    store.append([turn(i, session="s1") for i in range(5)])
    store.append([turn(i, session="s2", id=f"u{i}") for i in range(5, 8)])
    q = lambda **kw: ids(store.list(TurnQuery(scope=ALICE, **kw)))  # noqa: E731
    assert q(session_id="s2") == ["u5", "u6", "u7"]
    assert ids(store.list(TurnQuery(scope=Scope(user_id="alice", session_id="s2")))) == ["u5", "u6", "u7"]
    assert q(since=T0 + timedelta(hours=3), until=T0 + timedelta(hours=5)) == ["t3", "t4", "u5"]
    assert q(until=T0 + timedelta(hours=1)) == ["t0", "t1"]
    assert q(turn_ids=["u6", "t1", "missing"]) == ["t1", "u6"]
    assert q(turn_ids=[]) == []
    assert q(limit=2) == ["t0", "t1"]
    assert q(session_id="s1", since=T0 + timedelta(hours=2), limit=2) == ["t2", "t3"]
    assert q(session_id="nope") == []


def test_time_range_compares_instants_not_strings(store):
    # the same instant written with another UTC offset must sort and filter as that instant
    plus2 = timezone(timedelta(hours=2))
    store.append([turn(1, timestamp=datetime(2023, 5, 8, 14, 30, tzinfo=plus2))])  # 12:30 UTC
    store.append([turn(2, timestamp=datetime(2023, 5, 8, 13, 0, tzinfo=UTC))])
    got = store.list(TurnQuery(scope=ALICE, since=datetime(2023, 5, 8, 12, 45, tzinfo=UTC)))
    assert ids(got) == ["t2"]
    got = store.list(TurnQuery(scope=ALICE, until=datetime(2023, 5, 8, 12, 45, tzinfo=UTC)))
    assert ids(got) == ["t1"]
    assert got[0].timestamp == datetime(2023, 5, 8, 12, 30, tzinfo=UTC)


def test_idempotent_by_turn_id(store):
    assert ids(store.append([turn(1), turn(2)])) == ["t1", "t2"]
    # a retried add: same ids (even with other text) insert nothing; new ids still go in
    again = store.append([turn(1, text="changed"), turn(2), turn(3)])
    assert ids(again) == ["t3"]
    got = store.list(TurnQuery(scope=ALICE))
    assert ids(got) == ["t1", "t2", "t3"]
    assert got[0].text == "message 1"
    assert store.append([turn(1)]) == []


def test_same_turn_id_in_two_partitions_is_two_turns(store):
    store.append([turn(1, user="alice")])
    assert ids(store.append([turn(1, user="bob")])) == ["t1"]
    assert ids(store.list(TurnQuery(scope=Scope(user_id="bob")))) == ["t1"]
    assert ids(store.list(TurnQuery(scope=ALICE))) == ["t1"]


def test_append_is_atomic(store, monkeypatch):
    store.append([turn(0)])
    real_dumps = __import__("json").dumps
    calls = {"n": 0}

    def failing_dumps(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third turn of the batch fails after two were inserted
            raise RuntimeError("disk on fire")
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr("dualmem.history.sqlite.json.dumps", failing_dumps)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.append([turn(1), turn(2), turn(3), turn(4)])
    monkeypatch.undo()
    assert calls["n"] == 3
    assert ids(store.list(TurnQuery(scope=ALICE))) == ["t0"]
    # the connection is usable again and the same batch can be retried whole
    assert ids(store.append([turn(1), turn(2), turn(3), turn(4)])) == ["t1", "t2", "t3", "t4"]


def test_append_atomic_across_a_database_error(store):
    store.append([turn(0)])
    with store._conn() as conn:  # a trigger that rejects one row: a real sqlite3 error mid-batch
        conn.execute(
            "CREATE TRIGGER reject AFTER INSERT ON turns WHEN NEW.id = 't2' "
            "BEGIN SELECT RAISE(ABORT, 'rejected'); END"
        )
    with pytest.raises(StorageError, match="rejected"):
        store.append([turn(1), turn(2), turn(3)])
    assert ids(store.list(TurnQuery(scope=ALICE))) == ["t0"]


def test_delete_only_touches_its_scope(store):
    store.append([turn(1, session="s1"), turn(2, session="s2")])
    store.append([turn(3, user="bob", session="s1")])
    store.append([turn(4, user=None, agent="bot", session="s1")])
    store.append([turn(5, user=None, session="s1")])
    # deleting alice's session s1 leaves her s2, bob's s1, the agent's and the bare session's
    assert store.delete(Scope(user_id="alice", session_id="s1")) == 1
    assert ids(store.list(TurnQuery(scope=ALICE))) == ["t2"]
    assert ids(store.list(TurnQuery(scope=Scope(user_id="bob")))) == ["t3"]
    assert ids(store.list(TurnQuery(scope=Scope(agent_id="bot")))) == ["t4"]
    assert ids(store.list(TurnQuery(scope=Scope(session_id="s1")))) == ["t5"]
    assert store.delete(Scope(session_id="s1")) == 1
    assert ids(store.list(TurnQuery(scope=Scope(user_id="bob")))) == ["t3"]
    assert store.delete(ALICE) == 1
    assert store.delete(ALICE) == 0
    assert ids(store.list(TurnQuery(scope=Scope(user_id="bob")))) == ["t3"]


def test_scope_values_are_data_not_sql(store):
    store.append([turn(1, user="bob")])
    evil = Scope(user_id="alice' OR '1'='1", session_id="s1') OR 1=1 --")
    assert store.list(TurnQuery(scope=evil)) == []
    assert store.delete(evil) == 0
    assert ids(store.list(TurnQuery(scope=Scope(user_id="bob")))) == ["t1"]


def test_scopes(store):
    assert store.scopes() == []
    store.append([turn(1, session="s1"), turn(2, session="s2"), turn(3, session="s1")])
    store.append([turn(4, user=None, agent="bot", session=None)])
    got = {(s.user_id, s.agent_id, s.session_id) for s in store.scopes()}
    assert got == {("alice", None, "s1"), ("alice", None, "s2"), (None, "bot", None)}
    assert len(store.scopes()) == 3


def test_persists_across_reopen(tmp_path):
    path = tmp_path / "h.sqlite3"
    first = SQLiteHistoryStore(path)
    first.append([turn(1), turn(2, metadata={"x": "y"})])
    first.close()
    second = SQLiteHistoryStore(path)
    got = second.list(TurnQuery(scope=ALICE))
    assert ids(got) == ["t1", "t2"] and got[1].metadata == {"x": "y"}
    assert second.append([turn(2)]) == []  # idempotency survives the reopen
    second.close()


def test_two_stores_on_one_file_see_each_other(tmp_path):
    a = SQLiteHistoryStore(tmp_path / "h.sqlite3")
    b = SQLiteHistoryStore(tmp_path / "h.sqlite3")
    a.append([turn(1)])
    assert ids(b.list(TurnQuery(scope=ALICE))) == ["t1"]
    assert b.append([turn(1)]) == []
    a.close()
    b.close()


def test_unwritable_path_raises_storage_error(tmp_path):
    # /proc refuses new directories even to root, unlike a chmod-ed directory
    with pytest.raises(StorageError, match="cannot open the history database"):
        SQLiteHistoryStore("/proc/dualmem-test/h.sqlite3")


def test_path_that_is_a_file_raises_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError):
        SQLiteHistoryStore(blocker / "h.sqlite3")


def test_corrupt_file_raises_storage_error(tmp_path):
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        SQLiteHistoryStore(path)


def test_works_from_many_threads(store):
    from concurrent.futures import ThreadPoolExecutor

    def write(i: int) -> int:
        return len(store.append([turn(i), turn(i)]))  # the duplicate inside a batch is ignored

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(write, range(40))) == 40
    assert len(store.list(TurnQuery(scope=ALICE))) == 40
    assert sqlite3.connect(store.path).execute("SELECT count(*) FROM turns").fetchone() == (40,)


def test_newest_turns_come_back_oldest_first(tmp_path) -> None:
    from dualmem import DualMemory
    from dualmem.testing import ScriptedLLM

    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=False)
    memory.add([f"t{i}" for i in range(10)], user_id="u")
    assert [t.text for t in memory.history(user_id="u", last=3)] == ["t7", "t8", "t9"]
    assert [t.text for t in memory.history(user_id="u", limit=3)] == ["t0", "t1", "t2"]
