"""One contract, every backend: SQLite + embedded Chroma, and PostgreSQL + a Chroma server.

The server variants are marked `servers`; tests/servers.py starts real servers for them.
"""

from __future__ import annotations

import http.server
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest

from dualmem import Config, ConfigError, DualMemory, StorageError
from dualmem.backends import copy_history, make_history, make_index
from dualmem.embed import MiniLMEmbedding
from dualmem.history import HistoryStore, SQLiteHistoryStore, TurnQuery
from dualmem.history.postgres import MIGRATIONS, PostgresHistoryStore
from dualmem.index import ChromaMemoryIndex, MemoryIndex
from dualmem.testing import ScriptedLLM
from dualmem.types import Memory, Scope, Turn

T0 = datetime(2023, 5, 8, 12, 0, tzinfo=UTC)
ALICE = Scope(user_id="alice")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.servers)]
INDEXES = ["embedded", pytest.param("server", marks=pytest.mark.servers)]


def turn(i: int, user: str | None = "alice", session: str | None = "s1", **kw) -> Turn:
    return Turn(id=kw.pop("id", f"t{i}"), text=kw.pop("text", f"message {i}"),
                timestamp=kw.pop("timestamp", T0 + timedelta(hours=i)),
                user_id=user, session_id=session, **kw)


def ids(items: list[Turn] | list[Memory]) -> list[str]:
    return [x.id for x in items]


@pytest.fixture(params=BACKENDS)
def history_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(history_url, tmp_path):
    s = make_history(Config(data_dir=tmp_path, history_url=history_url))
    yield s
    s.close()


@pytest.fixture(scope="module")
def embedding():
    return MiniLMEmbedding()


@pytest.fixture(params=INDEXES)
def index_url(request) -> str | None:
    return None if request.param == "embedded" else request.getfixturevalue("chroma_url")


def close_index(index) -> None:
    close = getattr(index, "close", None) or index.client.close  # ChromaMemoryIndex has no close()
    close()


@pytest.fixture
def index(index_url, tmp_path, embedding):
    if index_url is None:
        index = ChromaMemoryIndex(tmp_path / "chroma", embedding_function=embedding)
    else:
        index = make_index(Config(data_dir=tmp_path, index_url=index_url))
    yield index
    close_index(index)


def reject_turn(store: HistoryStore, turn_id: str) -> None:
    """A trigger that makes the database itself fail on one row, mid-batch."""
    with store._conn() as conn:
        if isinstance(store, SQLiteHistoryStore):
            conn.execute(f"CREATE TRIGGER reject AFTER INSERT ON turns WHEN NEW.id = '{turn_id}' "
                         "BEGIN SELECT RAISE(ABORT, 'rejected'); END")
        else:
            conn.execute(
                "CREATE FUNCTION reject() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.id = '{turn_id}' THEN RAISE EXCEPTION 'rejected'; END IF; RETURN NEW; END $$;"
                " CREATE TRIGGER reject BEFORE INSERT ON dualmem_turns FOR EACH ROW EXECUTE FUNCTION reject()"
            )


# ------------------------------------------------------------------------- history contract


def test_history_round_trip_in_insertion_order(store):
    assert isinstance(store, HistoryStore)
    first = store.append([turn(3), turn(1)])
    assert [t.seq for t in first] == sorted(t.seq for t in first) and first[0].seq > 0
    rich = turn(2, role="assistant", speaker="Bot", text="café ☕ \"quoted\" 'x'",
                metadata={"lang": "fr", "n": 2, "nested": {"a": [1, None]}})
    store.append([rich])
    got = store.list(TurnQuery(scope=ALICE))
    assert ids(got) == ["t3", "t1", "t2"]  # arrival order, not timestamp order
    assert got[-1].model_dump(exclude={"seq"}) == rich.model_dump(exclude={"seq"})
    assert got[-1].timestamp.utcoffset() == timedelta(0)


def test_history_filters(store):
    store.append([turn(i) for i in range(5)])
    store.append([turn(i, session="s2", id=f"u{i}") for i in range(5, 8)])
    q = lambda **kw: ids(store.list(TurnQuery(scope=ALICE, **kw)))  # noqa: E731
    assert q(session_id="s2") == ["u5", "u6", "u7"]
    assert q(since=T0 + timedelta(hours=3), until=T0 + timedelta(hours=5)) == ["t3", "t4", "u5"]
    assert q(turn_ids=["u6", "t1", "missing"]) == ["t1", "u6"]
    assert q(turn_ids=[]) == []
    assert q(session_id="s1", since=T0 + timedelta(hours=2), limit=2) == ["t2", "t3"]
    assert q(session_id="s1", limit=2, newest=True) == ["t3", "t4"]  # the newest, oldest first
    # the same instant in another UTC offset filters as that instant; naive means UTC
    plus2 = timezone(timedelta(hours=2))
    assert q(since=datetime(2023, 5, 8, 17, 30, tzinfo=plus2)) == ["t4", "u5", "u6", "u7"]
    assert q(until=datetime(2023, 5, 8, 13, 0)) == ["t0", "t1"]


def test_history_idempotent_by_partition_and_id(store):
    assert ids(store.append([turn(1), turn(2), turn(2)])) == ["t1", "t2"]  # duplicate in a batch
    assert ids(store.append([turn(1, text="retried"), turn(3)])) == ["t3"]
    assert store.append([turn(1)]) == []
    assert ids(store.append([turn(1, user="bob")])) == ["t1"]  # other partition: another turn
    got = store.list(TurnQuery(scope=ALICE))
    assert ids(got) == ["t1", "t2", "t3"] and got[0].text == "message 1"


def test_history_replace_overwrites_in_place_and_delete_by_ids(store):
    store.append([turn(1), turn(2), turn(3, user="bob", id="t1")])
    before = store.list(TurnQuery(scope=ALICE))
    replaced = store.append([turn(1, text="new", metadata={"v": 2}, role="assistant")], replace=True)
    assert ids(replaced) == ["t1"]
    got = store.list(TurnQuery(scope=ALICE))
    assert ids(got) == ["t1", "t2"] and got[0].seq == before[0].seq  # its place in the order kept
    assert (got[0].text, got[0].role, got[0].metadata) == ("new", "assistant", {"v": 2})
    assert store.list(TurnQuery(scope=Scope(user_id="bob")))[0].text == "message 3"  # other partition
    assert store.delete(ALICE, turn_ids=["t1", "nope"]) == 1 and store.delete(ALICE, turn_ids=[]) == 0
    assert ids(store.list(TurnQuery(scope=ALICE))) == ["t2"]
    assert ids(store.list(TurnQuery(scope=Scope(user_id="bob")))) == ["t1"]


def test_history_pending_turns_until_marked_extracted(store):
    store.append([turn(0)])  # not pending: indexed as it was added
    store.append([turn(1), turn(2)], pending=True)
    store.append([turn(3, user="bob", id="b3")], pending=True)
    assert ids(store.pending()) == ["t1", "t2", "b3"]  # every partition, oldest first
    assert ids(store.pending(ALICE)) == ["t1", "t2"] and ids(store.pending(limit=1)) == ["t1"]
    store.mark_extracted(store.pending(ALICE)[:1])
    assert ids(store.pending(ALICE)) == ["t2"]
    store.mark_extracted([turn(2, user="bob")])  # same id, other partition: not this turn
    assert ids(store.pending()) == ["t2", "b3"]


def test_history_append_is_atomic_on_a_database_error(store):
    store.append([turn(0)])
    reject_turn(store, "t2")
    with pytest.raises(StorageError, match="rejected"):
        store.append([turn(1), turn(2), turn(3)])
    assert ids(store.list(TurnQuery(scope=ALICE))) == ["t0"]
    assert ids(store.append([turn(1), turn(3)])) == ["t1", "t3"]  # the connection still works


def test_history_delete_and_scopes_stay_in_scope(store):
    store.append([turn(1), turn(2, session="s2"), turn(3, user="bob")])
    store.append([turn(4, user=None, agent_id="bot"), turn(5, user=None)])
    evil = Scope(user_id="alice' OR '1'='1", session_id="s1') OR 1=1 --")
    assert store.list(TurnQuery(scope=evil)) == [] and store.delete(evil) == 0
    assert {(s.user_id, s.agent_id, s.session_id) for s in store.scopes()} == {
        ("alice", None, "s1"), ("alice", None, "s2"), ("bob", None, "s1"),
        (None, "bot", "s1"), (None, None, "s1"),
    }
    assert store.delete(Scope(user_id="alice", session_id="s1")) == 1
    assert ids(store.list(TurnQuery(scope=ALICE))) == ["t2"]
    assert store.delete(Scope(session_id="s1")) == 1  # only the bare session's partition
    assert ids(store.list(TurnQuery(scope=Scope(agent_id="bot")))) == ["t4"]
    assert ids(store.list(TurnQuery(scope=Scope(user_id="bob")))) == ["t3"]


def test_history_concurrent_appends_from_threads(store):
    def write(i: int) -> int:
        return len(store.append([turn(i, user=f"u{i % 4}"), turn(i, user=f"u{i % 4}")]))

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(write, range(40))) == 40
    for u in range(4):
        got = store.list(TurnQuery(scope=Scope(user_id=f"u{u}")))
        assert sorted(int(t.id[1:]) for t in got) == list(range(u, 40, 4))
        assert all(t.user_id == f"u{u}" for t in got)


# ------------------------------------------------------------------------- PostgreSQL only


@pytest.mark.servers
def test_postgres_migrations_are_applied_once_under_concurrency(postgres_url):
    with ThreadPoolExecutor(6) as pool:  # six processes' worth of first starts at once
        stores = list(pool.map(lambda _: PostgresHistoryStore(postgres_url, min_size=1), range(6)))
    assert {s.schema_version() for s in stores} == {len(MIGRATIONS)}
    with stores[0]._conn() as conn:
        versions = conn.execute("SELECT version FROM dualmem_schema_version ORDER BY 1").fetchall()
        assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]
        stores[1].append([turn(1)])
        conn.execute("INSERT INTO dualmem_schema_version (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    for s in stores:
        s.close()
    with pytest.raises(StorageError, match="newer than this dualmem"):
        PostgresHistoryStore(postgres_url)


@pytest.mark.servers
def test_postgres_persists_across_stores(postgres_url):
    first = PostgresHistoryStore(postgres_url)
    first.append([turn(1), turn(2)])
    first.close()
    second = PostgresHistoryStore(postgres_url)
    assert ids(second.list(TurnQuery(scope=ALICE))) == ["t1", "t2"]
    assert second.append([turn(2)]) == []
    second.close()


def test_postgres_unreachable_is_a_storage_error_without_the_password():
    from dualmem.bench.servers import free_port

    url = f"postgresql://me:s3cret@127.0.0.1:{free_port()}/db?connect_timeout=2"
    with pytest.raises(StorageError, match="cannot open the PostgreSQL history") as info:
        PostgresHistoryStore(url, timeout=2)
    assert "s3cret" not in str(info.value)


# ------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(("field", "url"), [
    ("history_url", "mysql://root:s3cret@db/x"), ("history_url", "/plain/path"),
    ("index_url", "qdrant://u:s3cret@host:6333"), ("index_url", "http://h:1/?tenent=x"),
])
def test_unknown_urls_are_config_errors_without_the_password(tmp_path, field, url):
    with pytest.raises(ConfigError, match=field.replace("_", ".")) as info:
        DualMemory(path=tmp_path, llm=ScriptedLLM(), **{field: url})
    assert "s3cret" not in str(info.value)


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self):
        _Recorder.seen.append({"path": self.path, **dict(self.headers)})
        self.send_response(503)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("url", "env", "header", "value"), [
    ("http://user:tok1@127.0.0.1:{port}", None, "Authorization", "Bearer tok1"),
    ("http://127.0.0.1:{port}/?token_header=X-Chroma-Token", "tok2", "X-Chroma-Token", "tok2"),
])
def test_chroma_url_sends_the_token_and_hides_it(monkeypatch, tmp_path, url, env, header, value):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen.clear()
    if env:
        monkeypatch.setenv("DUALMEM_CHROMA_TOKEN", env)
    try:
        with pytest.raises(StorageError, match="cannot reach the Chroma server") as info:
            make_index(Config(data_dir=tmp_path, index_url=url.format(port=server.server_port)))
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.seen and _Recorder.seen[0][header] == value
    assert "tok1" not in str(info.value) and "tok2" not in str(info.value)


# ------------------------------------------------------------------------- index contract


def mem(i: str, user: str = "alice", text: str | None = None, session: str | None = None) -> Memory:
    return Memory(id=i, text=text or f"memory {i}", user_id=user, session_id=session,
                  source_turn_ids=[i], created_at=T0, updated_at=T0)


def test_index_contract(index):
    assert isinstance(index, MemoryIndex)
    index.upsert([mem("a", text="Alice adopted a cat named Luna", session="s1"),
                  mem("b", text="Alice works as a nurse in Lyon", session="s2"),
                  mem("c", user="bob", text="Bob adopted a cat named Luna")])
    index.upsert([mem("a", text="Alice adopted a cat named Luna", session="s1")])  # idempotent
    assert index.count(ALICE) == 2 and index.count(Scope(user_id="bob")) == 1
    found = index.search("what pet does she have", ALICE, k=5)
    assert ids(found)[0] == "a" and set(ids(found)) == {"a", "b"}
    assert found[0].score is not None and found[0].score > found[-1].score
    assert ids(index.search("cat", Scope(user_id="alice", session_id="s2"), k=5)) == ["b"]
    assert ids(index.search("cat", Scope(user_id="carol"), k=5)) == []
    assert ids(index.get(["a", "c"], ALICE)) == ["a"]  # bob's id is invisible from alice
    index.upsert([mem("b", text="Alice works as a doctor in Lyon", session="s2")])
    assert index.get(["b"], ALICE)[0].text == "Alice works as a doctor in Lyon"
    assert index.delete(["c"], ALICE) == 0 and index.count(Scope(user_id="bob")) == 1
    assert index.delete(["b"], ALICE) == 1
    assert ids(index.list(ALICE)) == ["a"]
    assert index.delete_scope(ALICE) == 1 and index.count(ALICE) == 0
    assert ids(index.search("cat", Scope(user_id="bob"), k=5)) == ["c"]
    assert index.reset() >= 1 and index.count(Scope(user_id="bob")) == 0


# ------------------------------------------------------------------------- DualMemory on each


@pytest.fixture(params=[("sqlite", "embedded"),
                        pytest.param(("postgres", "server"), marks=pytest.mark.servers)],
                ids=["sqlite+embedded", "postgres+server"])
def memory(request, tmp_path):
    history, index = request.param
    urls = {}
    if history == "postgres":
        urls = {"history_url": request.getfixturevalue("postgres_url"),
                "index_url": request.getfixturevalue("chroma_url")}
    m = DualMemory(path=tmp_path, llm=ScriptedLLM(default="Lyon"), extract=False, **urls)
    yield m
    m.close()
    close_index(m.index)


def test_memory_end_to_end(memory):
    msgs = [{"id": "m1", "content": "I moved to Lyon last year.", "timestamp": "2023-05-08"},
            {"id": "m2", "content": "My cat is called Luna.", "timestamp": "2023-05-09"}]
    assert len(memory.add(msgs, user_id="alice", session_id="s1").turns) == 2
    retried = memory.add(msgs, user_id="alice", session_id="s1")
    assert retried.turns == [] and retried.skipped_duplicates == 2
    memory.add("Bob lives in Oslo.", user_id="bob")
    assert ids(memory.history(user_id="alice")) == ["m1", "m2"]
    assert ids(memory.search("where does she live", user_id="alice", k=1)) == ["m1"]
    assert len(memory.get_all(user_id="alice")) == 2
    answer = memory.answer("Where does Alice live?", user_id="alice", mode="fast")
    assert answer.text == "Lyon" and "m1" in answer.evidence.turn_ids
    memory.index.reset()  # lose the whole index: the history rebuilds it
    assert memory.reindex().turns == 3
    assert sorted(ids(memory.get_all(user_id="alice"))) == ["m1", "m2"]
    assert memory.delete_all(user_id="alice") == {"turns": 2, "memories": 2}
    assert memory.history(user_id="alice") == [] and len(memory.history(user_id="bob")) == 1


def test_copy_history_keeps_order_and_can_rerun(store, tmp_path):
    source = SQLiteHistoryStore(tmp_path / "source.sqlite3")
    source.append([turn(1), turn(2, session="s2"), turn(3)])  # sessions interleaved
    source.append([turn(4, user=None, agent_id="bot"), turn(5, user=None, session="s9")])
    assert copy_history(source, store) == 5
    assert ids(store.list(TurnQuery(scope=ALICE))) == ["t1", "t2", "t3"]
    assert ids(store.list(TurnQuery(scope=Scope(agent_id="bot")))) == ["t4"]
    assert store.list(TurnQuery(scope=ALICE))[1].session_id == "s2"
    source.append([turn(6)])
    assert copy_history(source, store) == 1  # an interrupted or repeated copy only adds what is new
    source.close()
