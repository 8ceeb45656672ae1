"""Writes that do not wait for extraction: `add(..., background=True)`, `flush`, `pending`,
and turns left unextracted by a crash or a failing model picked up again on start."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable

from dualmem import DualMemory
from dualmem.history.sqlite import SQLiteHistoryStore
from dualmem.inputs import make_scope, make_turns
from dualmem.testing import ScriptedLLM


def facts(*texts: str) -> str:
    return json.dumps({"facts": [{"text": t, "date": None, "turns": [1]} for t in texts]})


def held(reply: str) -> tuple[threading.Event, Callable]:
    """An extraction reply that waits until the test releases it: an add that waited for its
    extraction would still be waiting (30 s, then fail the checks below), never pass."""
    release = threading.Event()

    def extract(request) -> str:
        release.wait(timeout=30)
        return reply

    return release, extract


def test_background_add_returns_before_extraction_and_flush_waits(tmp_path):
    release, extract = held(facts("Alice likes tea."))
    llm = ScriptedLLM(by_task={"extract": extract})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    result = memory.add({"content": "I like tea", "id": "t1"}, user_id="alice", background=True)
    assert result.pending == ["t1"] and result.added == [] and result.error is None
    assert [t.id for t in memory.history(user_id="alice")] == ["t1"]  # durable at once
    assert [t.id for t in memory.pending(user_id="alice")] == ["t1"]  # extraction still held
    release.set()
    assert memory.flush(timeout=30)
    assert memory.pending(user_id="alice") == [] and memory.pending() == []
    assert "Alice likes tea." in [m.text for m in memory.get_all(user_id="alice")]
    assert len(llm.calls_for("extract")) == 1


def test_background_adds_are_acknowledged_while_extraction_is_busy(tmp_path):
    release, extract = held(facts())
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(by_task={"extract": extract}), extract=True)
    turns = [{"content": f"message {i} about the garden", "id": f"t{i}"} for i in range(500)]
    start = time.perf_counter()
    for i in range(0, 500, 50):  # adds of 50 turns, as a chat app would send them
        result = memory.add(turns[i : i + 50], user_id="alice", session_id="s1", background=True)
        assert result.pending == [t["id"] for t in turns[i : i + 50]]
    print(f"background ack: {500 / (time.perf_counter() - start):.0f} turns/s")  # for the log only
    assert len(memory.history(user_id="alice")) == 500 and len(memory.pending()) == 500
    release.set()
    assert memory.flush(timeout=120) and memory.pending() == []


def test_turns_a_crash_left_unextracted_are_extracted_on_start(tmp_path):
    # a process that died after committing its turns, before extracting them
    store = SQLiteHistoryStore(tmp_path / "history.sqlite3")
    turns = make_turns([{"content": "I moved to Porto", "id": "t1"}, {"content": "Nice!", "id": "t2"}],
                       make_scope("maya", None, "s1"), "2023-06-01T10:00:00")
    store.append(turns, pending=True)
    store.close()
    llm = ScriptedLLM(by_task={"extract": [facts("Maya moved to Porto.")]})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    assert memory.flush(timeout=30)
    assert memory.pending() == []
    assert "Maya moved to Porto." in [m.text for m in memory.get_all(user_id="maya")]


def test_a_failed_extraction_leaves_the_turns_pending_until_the_next_start(tmp_path):
    bad = ScriptedLLM(by_task={"extract": ["not json", "still not json"]})
    memory = DualMemory(path=tmp_path, llm=bad, extract=True, index_turns=False)
    result = memory.add({"content": "I like tea", "id": "t1"}, user_id="alice")
    assert result.error and result.pending == ["t1"]
    assert [t.id for t in memory.pending(user_id="alice")] == ["t1"]
    # background: the worker fails once, leaves the turn pending, and does not spin on it
    queued = memory.add({"content": "and coffee", "id": "t2"}, user_id="alice", background=True)
    assert queued.pending == ["t2"]
    assert memory.flush(timeout=30)
    assert [t.id for t in memory.pending(user_id="alice")] == ["t1", "t2"]
    # t1 inline (two tries), then one worker round over t1 and t2: no retry loop
    assert len(bad.calls_for("extract")) == 3
    memory.close()
    good = ScriptedLLM(by_task={"extract": [facts("Alice likes tea.", "Alice likes coffee.")]})
    again = DualMemory(path=tmp_path, llm=good, extract=True, index_turns=False)
    assert again.flush(timeout=30) and again.pending() == []
    texts = sorted(m.text for m in again.get_all(user_id="alice"))
    assert texts == ["Alice likes coffee.", "Alice likes tea."]


def test_extract_false_turns_are_never_pending(tmp_path):
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(), extract=True)
    result = memory.add("plain note", user_id="alice", extract=False, background=True)
    assert result.pending == [] and memory.pending() == []
    assert [m.text for m in memory.get_all(user_id="alice")] == ["user: plain note"]


def test_an_old_sqlite_history_gains_the_pending_column(tmp_path):
    path = tmp_path / "history.sqlite"
    with sqlite3.connect(path) as conn:  # the schema before `pending` existed
        conn.executescript("""
            CREATE TABLE turns (seq INTEGER PRIMARY KEY AUTOINCREMENT, partition TEXT NOT NULL,
              id TEXT NOT NULL, role TEXT NOT NULL, speaker TEXT, text TEXT NOT NULL, ts TEXT NOT NULL,
              user_id TEXT, agent_id TEXT, session_id TEXT, metadata TEXT NOT NULL DEFAULT '{}',
              UNIQUE (partition, id));
            INSERT INTO turns (partition, id, role, text, ts, user_id)
              VALUES ('user:a', 'old', 'user', 'hello', '2023-01-01T00:00:00+00:00', 'a');
        """)
    store = SQLiteHistoryStore(path)
    assert store.pending() == []  # turns of an old store were indexed when added
    new = make_turns([{"content": "new", "id": "new"}], make_scope("a", None, None), None)
    store.append(new, pending=True)
    assert [t.id for t in store.pending()] == ["new"]
    store.mark_extracted(new)
    assert store.pending() == []
    store.close()
