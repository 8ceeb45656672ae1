"""Every class of fault below the API, injected one at a time (LLM faults: test_faults.py;
kills: test_crash.py). Each has a defined outcome: a clear `StorageError`, no half-written
batch, and a retry of the same call (or the next start) that finishes what the fault cut.
"""

from __future__ import annotations

import json

import pytest

from dualmem import DualMemory, StorageError
from dualmem.testing import ScriptedLLM

TURNS = [{"id": "f-1", "content": "I play the violin."}, {"id": "f-2", "content": "I live in Oslo."}]


def _facts(request) -> str:
    new = request.messages[-1]["content"].split("NEW messages:")[-1]
    lines = [line for line in new.splitlines() if line[:1].isdigit()]
    return json.dumps({"facts": [{"text": f"Fact {n}: {line.split(': ', 1)[-1]}", "turns": [n]}
                                 for n, line in enumerate(lines, 1)]})


@pytest.fixture(params=[False, True], ids=["raw", "extract"])
def memory(request, tmp_path):
    llm = ScriptedLLM(by_task={"extract": _facts, "reconcile": '{"actions": []}'}, default="Oslo")
    m = DualMemory(path=tmp_path, llm=llm, extract=request.param)
    yield m
    m.close()


class Boom:
    """Makes one method of a store fail the next `times` calls."""

    def __init__(self, monkeypatch, target, method: str, times: int = 1) -> None:
        real = getattr(target, method)
        self.left = times

        def failing(*args, **kwargs):
            if self.left > 0:
                self.left -= 1
                raise StorageError(f"injected {method} fault")
            return real(*args, **kwargs)

        monkeypatch.setattr(target, method, failing)


def indexed(memory: DualMemory) -> set[str]:
    return {t for m in memory.get_all(user_id="u") for t in m.source_turn_ids}


def test_history_write_fault_stores_nothing(memory, monkeypatch) -> None:
    Boom(monkeypatch, memory.history_store, "append")
    with pytest.raises(StorageError, match="injected append"):
        memory.add(TURNS, user_id="u")
    assert memory.history(user_id="u") == [] and memory.get_all(user_id="u") == []
    memory.add(TURNS, user_id="u")
    assert {t.id for t in memory.history(user_id="u")} == {"f-1", "f-2"} == indexed(memory)


def test_index_write_fault_after_the_history_write_is_finished_by_the_retry(memory, monkeypatch) -> None:
    Boom(monkeypatch, memory.index, "upsert")
    with pytest.raises(StorageError, match="injected upsert"):
        memory.add(TURNS, user_id="u")
    assert len(memory.history(user_id="u")) == 2  # the turns are safe
    result = memory.add(TURNS, user_id="u")  # the client retries
    assert result.skipped_duplicates == 2 and result.error is None
    assert indexed(memory) == {"f-1", "f-2"} and memory.pending(user_id="u") == []


@pytest.mark.parametrize("method", ["search", "nearest"])
def test_index_read_fault_during_extraction_is_finished_by_the_retry(tmp_path, monkeypatch, method) -> None:
    llm = ScriptedLLM(by_task={"extract": _facts, "reconcile": '{"actions": []}'})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    Boom(monkeypatch, memory.index, method)
    with pytest.raises(StorageError):
        memory.add(TURNS, user_id="u")
    assert {t.id for t in memory.pending(user_id="u")} == {"f-1", "f-2"}
    memory.add(TURNS, user_id="u")
    assert memory.pending(user_id="u") == []
    assert any(m.text.startswith("Fact") for m in memory.get_all(user_id="u"))
    memory.close()


@pytest.mark.parametrize(("target", "method", "call"), [
    ("index", "search", lambda m: m.search("violin", user_id="u")),
    ("index", "list", lambda m: m.get_all(user_id="u")),
    ("history_store", "list", lambda m: m.history(user_id="u")),
    ("history_store", "list", lambda m: m.answer("Where do I live?", user_id="u", mode="full")),
    ("index", "search", lambda m: m.answer("Where do I live?", user_id="u", mode="fast")),
    ("index", "delete_scope", lambda m: m.delete_all(user_id="u")),
], ids=["search", "get_all", "history", "deliberation", "fast answer", "forget"])
def test_read_and_delete_faults_are_clear_and_leave_the_data(memory, monkeypatch, target, method,
                                                             call) -> None:
    memory.add(TURNS, user_id="u")
    Boom(monkeypatch, getattr(memory, target), method)
    with pytest.raises(StorageError, match="injected"):
        call(memory)
    assert len(memory.history(user_id="u")) == 2 and indexed(memory) >= {"f-1", "f-2"}


def test_embedding_fault_is_a_storage_error_and_retry_finishes(memory, monkeypatch) -> None:
    memory.add("Hello.", user_id="u")  # the collection exists: the fault hits the embedding call
    model = type(getattr(memory.index, "inner", memory.index).embedding_function)
    real, left = model._sums, [1]  # what both __call__ and prefixed() run the model through

    def failing(self, texts, **kw):
        if left[0]:
            left[0] -= 1
            raise RuntimeError("injected embedding fault")
        return real(self, texts, **kw)

    monkeypatch.setattr(model, "_sums", failing)
    with pytest.raises(StorageError, match="injected embedding"):
        memory.add(TURNS, user_id="u")
    memory.add(TURNS, user_id="u")
    assert indexed(memory) >= {"f-1", "f-2"}
