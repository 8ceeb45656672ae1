"""Forgetting: `delete_all` and `delete` remove data from every store, proved store by store.

SQLite is queried directly (and its files read as bytes), Chroma through its raw client, the
BM25 cache is inspected, and answers with full deliberation show no trace of forgotten text
in any prompt the scripted model receives. The LLM layer keeps no answer cache.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import sqlite3
from pathlib import Path

import pytest

from dualmem import DualMemory, ScopeError
from dualmem.index.chroma import _collection_name
from dualmem.testing import ScriptedLLM, ScriptedReply

from .test_isolation import reading_reply

MARKS = {"alice-s1": "zebraalpha", "alice-s2": "zebrabeta", "bob": "zebragamma"}
WORDS = re.compile(r"zebra\w+")


def _model(request):
    prompt = request.messages[-1]["content"]
    if request.task == "extract":
        new = [line.split(": ", 1)[-1] for line in prompt.split("NEW messages:")[-1].splitlines()
               if line[:1].isdigit()]
        facts = [{"text": f"Fact: {t}", "turns": [n]} for n, t in enumerate(new, 1)]
        return json.dumps({"facts": facts})
    if request.task == "reconcile":
        return '{"actions": []}'
    seen = " ".join(sorted(set(WORDS.findall(prompt))))
    return reading_reply(request) or ScriptedReply(seen or "NONE", confidence=0.99)


@pytest.fixture(params=[100, 0], ids=["small-partitions", "chroma-collections"])
def memory(tmp_path, request) -> DualMemory:
    # facts only: these tests count memories; the mixed index is tested in test_mixed_index.py.
    # Both layouts of the embedded index: small partitions in small.sqlite3, or all in Chroma
    m = DualMemory(path=tmp_path, llm=ScriptedLLM(default=_model), extract=True, index_turns=False,
                   small_partition_limit=request.param)
    m.add([{"content": f"My locker code is {MARKS['alice-s1']}.", "id": "a1"},
           {"content": f"I keep a {MARKS['alice-s1']}x spare key.", "id": "a2"}],
          user_id="alice", session_id="s1")
    m.add({"content": f"My bike is a {MARKS['alice-s2']} model.", "id": "a3"},
          user_id="alice", session_id="s2")
    m.add({"content": f"My car is a {MARKS['bob']} model.", "id": "b1"}, user_id="bob", session_id="s1")
    yield m
    m.close()


def sqlite_rows(m: DualMemory, where: str, *args) -> int:
    with sqlite3.connect(m.config.data_dir / "history.sqlite3") as db:
        return db.execute(f"SELECT count(*) FROM turns WHERE {where}", args).fetchone()[0]


def chroma_documents(m: DualMemory) -> dict[str, list[str]]:
    """Every document in every dualmem collection, read with the raw Chroma client and, for
    the small partitions, from their SQLite file."""
    client = m.index.inner.client
    out = {}
    for c in client.list_collections():
        name = c if isinstance(c, str) else c.name
        if name.startswith("dualmem_"):
            out[name] = client.get_collection(name).get(include=["documents"])["documents"]
    small = m.config.data_dir / "chroma" / "small.sqlite3"
    if small.exists():
        with contextlib.closing(sqlite3.connect(small)) as db:
            for name, doc in db.execute("SELECT collection, document FROM records"):
                out.setdefault(name, []).append(doc)
    return out


def files_containing(directory: Path, needle: str, pattern: str) -> list[str]:
    return [str(f.relative_to(directory)) for f in directory.glob(pattern)
            if f.is_file() and needle.encode() in f.read_bytes()]


def prompts_of(llm: ScriptedLLM, since: int) -> str:
    return json.dumps([c.messages for c in llm.calls[since:]])


def test_everything_is_where_the_tests_look_first(memory) -> None:
    # the checks below would pass vacuously if the data never reached the stores
    assert sqlite_rows(memory, "user_id = ?", "alice") == 3
    docs = chroma_documents(memory)[_collection_name("user:alice")]
    assert any(MARKS["alice-s1"] in d for d in docs) and any(MARKS["alice-s2"] in d for d in docs)
    assert memory.search(MARKS["alice-s1"], user_id="alice", k=1)[0].text.startswith("Fact:")
    assert files_containing(memory.config.data_dir, MARKS["alice-s1"], "history.sqlite3*")


def test_delete_all_of_a_user_leaves_no_trace(memory) -> None:
    data = memory.config.data_dir
    memory.search("locker code", user_id="alice")  # fill the BM25 cache for alice's partition
    assert "user:alice" in memory.index.inner._lexical._entries
    assert memory.delete_all(user_id="alice") == {"turns": 3, "memories": 3}

    assert sqlite_rows(memory, "user_id = ? OR partition = ?", "alice", "user:alice") == 0
    assert sqlite_rows(memory, "text LIKE ?", "%zebraalpha%") == 0
    for mark in (MARKS["alice-s1"], MARKS["alice-s2"]):
        assert files_containing(data, mark, "history.sqlite3*") == []  # not even in free pages or the WAL
        assert not any(mark in d for docs in chroma_documents(memory).values() for d in docs)
    assert _collection_name("user:alice") not in chroma_documents(memory)
    assert "user:alice" not in memory.index.inner._lexical._entries

    assert memory.history(user_id="alice") == [] and memory.get_all(user_id="alice") == []
    assert memory.search("locker code zebraalpha", user_id="alice") == []
    with pytest.raises(ScopeError):
        memory.answer("What is my locker code?", user_id="alice", mode="full")
    # bob is untouched
    assert [t.id for t in memory.history(user_id="bob")] == ["b1"]
    assert len(memory.get_all(user_id="bob")) == 1


@pytest.mark.parametrize("forget", ["user", "session"])
def test_forgotten_text_is_gone_from_every_file_of_the_data_dir(memory, forget) -> None:
    # a binary grep of the whole data dir: the history, its WAL, Chroma's SQLite and segments
    data = memory.config.data_dir
    assert files_containing(data, MARKS["alice-s1"], "**/*")  # it was there
    memory.delete_all(user_id="alice", **({"session_id": "s1"} if forget == "session" else {}))
    assert files_containing(data, MARKS["alice-s1"], "**/*") == []
    assert files_containing(data, MARKS["bob"], "**/*")  # the rest is still stored
    assert len(memory.search("car model", user_id="bob")) == 1  # and the index still works


def test_a_deleted_memory_is_gone_from_the_index_files(memory) -> None:
    for m in memory.get_all(user_id="alice", session_id="s1"):
        assert memory.delete(m.id, user_id="alice")
    # its turns stay in the history (documented), so only the index files are checked
    assert files_containing(memory.config.data_dir, MARKS["alice-s1"], "chroma/**/*") == []


def test_purge_false_leaves_it_in_free_pages(memory) -> None:
    memory.delete_all(user_id="alice", session_id="s1", purge=False)  # the trade-off it documents
    left = files_containing(memory.config.data_dir, MARKS["alice-s1"], "chroma/**/*")
    if memory.config.small_partition_limit:
        # the small partitions' file zeroes deleted text; only its write-ahead log holds it
        # until the next purge
        assert left == ["chroma/small.sqlite3-wal"]
    else:
        assert left  # Chroma keeps deleted text in free pages
    memory.delete_all(user_id="alice", session_id="s2")  # the next purge of the partition
    assert files_containing(memory.config.data_dir, MARKS["alice-s1"], "**/*") == []


@pytest.mark.parametrize(("mode", "policy"), [("full", None), ("gated", "audit")])
def test_forgetting_a_session_keeps_it_out_of_deliberation(memory, mode, policy) -> None:
    llm = memory.llm
    assert memory.delete_all(user_id="alice", session_id="s1") == {"turns": 2, "memories": 2}
    assert sqlite_rows(memory, "session_id = ? AND user_id = ?", "s1", "alice") == 0
    assert sqlite_rows(memory, "user_id = ?", "bob") == 1  # bob's session s1 is another scope
    before = len(llm.calls)
    answer = memory.answer("What codes and models do I have?", user_id="alice", mode=mode, policy=policy)
    seen = prompts_of(llm, before)
    assert MARKS["alice-s1"] not in seen and MARKS["bob"] not in seen
    assert MARKS["alice-s2"] in seen and answer.text == MARKS["alice-s2"]
    assert answer.path == "deliberate" and set(answer.evidence.turn_ids) == {"a3"}


def test_delete_one_memory_removes_it_from_the_index_and_the_bm25_cache(memory) -> None:
    [target] = [m for m in memory.get_all(user_id="alice") if MARKS["alice-s2"] in m.text]
    memory.search(MARKS["alice-s2"], user_id="alice")  # BM25 cache now holds the memory
    assert memory.delete(target.id, user_id="alice")
    assert _collection_name("user:alice") in chroma_documents(memory)  # the partition stays
    assert not any(MARKS["alice-s2"] in d for d in chroma_documents(memory)[_collection_name("user:alice")])
    assert memory.get(target.id, user_id="alice") is None
    assert target.id not in [m.id for m in memory.search(MARKS["alice-s2"], user_id="alice", k=10)]
    entry = memory.index.inner._lexical._entries.get("user:alice")
    assert entry is None or target.id not in entry.ids
    before = len(memory.llm.calls)
    memory.answer("Which bike do I have?", user_id="alice", mode="fast")
    assert MARKS["alice-s2"] not in prompts_of(memory.llm, before)
    # documented: a memory is derived data; its source turn stays until its scope is forgotten
    assert [t.id for t in memory.history(user_id="alice", session_id="s2")] == ["a3"]
    assert not memory.delete(target.id, user_id="alice")  # a second delete finds nothing


def test_reset_forgets_every_scope(memory) -> None:
    memory.reset()
    assert sqlite_rows(memory, "1 = 1") == 0
    assert chroma_documents(memory) == {}
    for mark in MARKS.values():
        assert files_containing(memory.config.data_dir, mark, "history.sqlite3*") == []
    assert memory.search("code", user_id="bob") == []


def test_the_llm_layer_keeps_no_answer_cache(memory) -> None:
    llm = memory.llm
    for _ in range(2):
        before = len(llm.calls_for("answer"))
        memory.answer("What car does Bob have?", user_id="bob", mode="fast")
        assert len(llm.calls_for("answer")) == before + 1  # asked again, not served from a cache
    # what the LLM layer keeps between calls is token counts, no text
    assert all(set(u.model_dump()) == {"prompt_tokens", "completion_tokens", "calls"}
               for u in llm.usage.values())
    assert not [name for name, value in vars(llm).items()
                if name not in ("calls", "_by_task", "_default", "_queue") and MARKS["bob"] in repr(value)]


def test_forgetting_a_session_also_forgets_what_it_merged_into_older_memories(tmp_path) -> None:
    # s2 brings a correction of a memory made in s1: the merged memory carries s2's text
    def reconcile(request) -> str:
        target = re.search(r'"id": "([^"]+)"', request.messages[-1]["content"]).group(1)
        merged = f"Alice's locker code is {MARKS['alice-s2']}."
        return json.dumps({"actions": [{"fact": 1, "event": "UPDATE", "id": target, "text": merged}]})

    def fact(mark: str) -> str:
        return json.dumps({"facts": [{"text": f"Alice's locker code is {mark}.", "turns": [1]}]})

    llm = ScriptedLLM(by_task={"extract": [fact(MARKS["alice-s1"]), fact(MARKS["alice-s2"])],
                               "reconcile": reconcile})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    memory.add(f"My locker code is {MARKS['alice-s1']}.", user_id="alice", session_id="s1")
    result = memory.add(f"New locker code: {MARKS['alice-s2']}.", user_id="alice", session_id="s2")
    assert len(result.updated) == 1 and result.updated[0].session_id == "s1"
    memory.delete_all(user_id="alice", session_id="s2")
    texts = [m.text for m in memory.get_all(user_id="alice")]
    memory.close()
    assert not any(MARKS["alice-s2"] in t for t in texts), texts


def _fts_levels(db: Path) -> int:
    """Levels of Chroma's full-text index, read from its FTS5 structure record (a 4-byte
    cookie, then the level count as a varint): past 2,000 SQLite calls the index corrupt."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        block = conn.execute("SELECT block FROM embedding_fulltext_search_data WHERE id = 10").fetchone()[0]
    level = 0
    for byte in block[4:]:
        level = level << 7 | byte & 0x7F
        if byte < 0x80:
            return level


def test_repeated_purges_keep_the_full_text_index_shallow(tmp_path) -> None:
    # the deep isolation run's failure: each purge's FTS5 'optimize' (under Python's SQLite
    # 3.40) added a level once segments lay on two levels (from the 11th round here), and at
    # 2,000 levels Chroma failed every read and write of the data dir; 'rebuild' starts anew
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(default="ok"), extract=False)
    rng = random.Random(1)
    levels = []
    for i in range(14):
        users = [f"u{rng.randrange(20)}" for _ in range(3)]
        for user in users:
            for s in ("s0", "s1"):
                memory.add({"id": f"t{i}-{s}-{user}", "content": f"Note {i} {s}: Rex the dog drinks tea"},
                           user_id=user, session_id=s)
        memory.delete(f"t{i}-s0-{users[0]}", user_id=users[0])
        memory.delete_all(user_id=users[1], session_id="s1")
        if i % 5 == 4:
            memory.reindex(user_id=users[2], extract=False)
        levels.append(_fts_levels(tmp_path / "chroma" / "chroma.sqlite3"))
    assert max(levels) <= 2, levels
    assert memory.search("Note 13", user_id=users[2])  # and the index still works
    memory.close()
