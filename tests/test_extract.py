"""Extraction and reconciliation (ADD / UPDATE / DELETE / NOOP) through `DualMemory.add`.

These tests look at the facts alone (`index_turns=False`); the mixed index, with raw turns
beside the facts, is tested in tests/test_mixed_index.py."""

from __future__ import annotations

import json
import re

import pytest

from dualmem import DualMemory, Memory
from dualmem.config import ExtractionConfig
from dualmem.llm.base import ChatRequest
from dualmem.testing import ScriptedLLM

REPLY_RETRIES = ExtractionConfig().reply_retries

TS = "2023-05-08T13:56:00"


def facts(*items: str | tuple[str, str | None, list[int]]) -> str:
    out = []
    for item in items:
        text, date, turns = (item, None, [1]) if isinstance(item, str) else item
        out.append({"text": text, "date": date, "turns": turns})
    return json.dumps({"facts": out})


def actions(*items: dict) -> str:
    return json.dumps({"actions": list(items)})


def neighbour_ids(request: ChatRequest) -> list[str]:
    """The memory handles a reconcile prompt shows the model."""
    return re.findall(r'\{"id": "([^"]+)"', request.messages[-1]["content"])


def first_neighbour(event: str, text: str | None = None):
    """A reconcile reply naming the first neighbour the prompt shows (as a real model would)."""
    return lambda r: actions({"fact": 1, "event": event, "id": neighbour_ids(r)[0], "text": text})


@pytest.fixture
def make(tmp_path):
    def make(**by_task) -> tuple[DualMemory, ScriptedLLM]:
        llm = ScriptedLLM(by_task=by_task)
        return DualMemory(path=tmp_path, llm=llm, extract=True, index_turns=False), llm

    return make


def texts(memories: list[Memory]) -> list[str]:
    return sorted(m.text for m in memories)


def test_add_without_neighbours_needs_one_call(make):
    memory, llm = make(extract=[facts(
        ("Alice moved to Paris in 2021.", None, [1]),
        ("Alice has a beagle named Rex.", None, [2]),
        ("Alice works as a nurse.", None, [1, 2]),
    )])
    result = memory.add(
        [{"content": "I moved to Paris in 2021.", "id": "t1"},
         {"content": "My beagle Rex loves it here.", "id": "t2"}],
        user_id="alice", session_id="s1", timestamp=TS,
    )
    assert result.error is None
    assert texts(result.added) == [
        "Alice has a beagle named Rex.", "Alice moved to Paris in 2021.", "Alice works as a nurse."
    ]
    sources = {m.text: m.source_turn_ids for m in result.added}
    assert sources["Alice moved to Paris in 2021."] == ["t1"]
    assert sources["Alice has a beagle named Rex."] == ["t2"]
    assert sources["Alice works as a nurse."] == ["t1", "t2"]
    assert all((m.user_id, m.session_id) == ("alice", "s1") for m in result.added)
    assert len(llm.calls) == 1 and llm.calls_for("reconcile") == []
    assert result.usage.calls == 1 and result.usage.prompt_tokens > 0
    assert texts(memory.get_all(user_id="alice")) == texts(result.added)
    # the new turns are numbered for the model, so that "turns" can point at them
    prompt = llm.calls[0].messages[-1]["content"]
    assert "1. [8 May 2023] user: I moved to Paris in 2021." in prompt


def current(memories: list[Memory]) -> list[str]:
    return sorted(m.text for m in memories if "valid_to" not in m.metadata)


def test_update_supersedes_the_neighbour_and_keeps_it(make):
    memory, llm = make(
        extract=[facts("Alice lives in Paris."), facts(("Alice lives in Paris, France.", None, [1]))],
        reconcile=first_neighbour("UPDATE", "Alice lives in Paris, France, since 2021."),
    )
    [old] = memory.add({"content": "I live in Paris", "id": "t1"}, user_id="alice",
                       timestamp="2023-01-05T10:00:00").added
    result = memory.add({"content": "Paris, France, since 2021", "id": "t2"}, user_id="alice",
                        timestamp=TS)
    [new] = result.added
    assert new.text == "Alice lives in Paris, France, since 2021."
    assert new.source_turn_ids == ["t2"]
    assert new.metadata == {"valid_from": "2023-05-08", "supersedes": old.id}
    [closed] = result.updated
    assert closed.id == old.id and closed.text == old.text
    assert closed.metadata == {"valid_to": "2023-05-08", "superseded_by": new.id}
    assert closed.render() == "Alice lives in Paris. (until 8 May 2023)"
    stored = {m.id: m for m in memory.get_all(user_id="alice")}
    assert stored[old.id].metadata["superseded_by"] == new.id and new.id in stored
    # the model is shown a short handle for the memory, not its uuid (~37 tokens to copy)
    [request] = llm.calls_for("reconcile")
    assert neighbour_ids(request) == ["m1"] and old.id not in request.messages[-1]["content"]
    assert result.usage.calls == 2


def test_delete_closes_the_contradicted_memory_without_destroying_it(make):
    memory, _ = make(
        extract=[facts("Alice lives in Paris.", "Alice likes tea."),
                 facts("Alice no longer lives in Paris.")],
        reconcile=first_neighbour("DELETE"),
    )
    first = memory.add("I live in Paris and I like tea", user_id="alice")
    paris = next(m for m in first.added if "Paris" in m.text)
    result = memory.add("I left Paris for good", user_id="alice", timestamp=TS)
    assert [m.text for m in result.added] == ["Alice no longer lives in Paris."]
    # closed at the date of the turn that said so (the fact itself has no date)
    assert [(m.id, m.metadata["valid_to"]) for m in result.updated] == [(paris.id, "2023-05-08")]
    assert current(memory.get_all(user_id="alice")) == ["Alice likes tea.", "Alice no longer lives in Paris."]
    assert len(memory.get_all(user_id="alice")) == 3  # the Paris memory is still there, closed


def test_noop_keeps_the_memory_and_cites_the_new_turn(make):
    memory, llm = make(
        extract=[facts("Alice has a dog named Rex."), facts("Alice has a dog called Rex.")],
        reconcile=lambda r: actions({"fact": 1, "event": "noop", "id": neighbour_ids(r)[0]}),
    )
    [before] = memory.add({"content": "my dog Rex", "id": "t1"}, user_id="alice").added
    result = memory.add({"content": "Rex is my dog", "id": "t2"}, user_id="alice")
    assert result.added == []
    [cited] = result.updated
    assert cited.id == before.id and cited.text == before.text and cited.metadata == {}
    assert cited.source_turn_ids == ["t1", "t2"]
    assert [m.id for m in memory.get_all(user_id="alice")] == [before.id]
    assert len(llm.calls_for("reconcile")) == 1


@pytest.mark.parametrize("event", ["NOOP", "UPDATE", "DELETE", "ADD"])
def test_a_known_fact_added_again_is_a_noop_without_asking(make, event):
    # mem0 #1674: asked about an exact repeat, a model answered DELETE
    memory, llm = make(
        extract=[facts("Alice has a dog named Rex."), facts("alice has a dog named rex")],
        reconcile=lambda r: actions({"fact": 1, "event": event, "id": neighbour_ids(r)[0]}),
    )
    [before] = memory.add("my dog Rex", user_id="alice").added
    result = memory.add("Rex is my dog", user_id="alice")
    assert result.added == [] and llm.calls_for("reconcile") == []
    [kept] = memory.get_all(user_id="alice")
    assert kept.id == before.id and "valid_to" not in kept.metadata


@pytest.mark.parametrize("event", ["UPDATE", "DELETE"])
def test_an_id_that_is_not_a_neighbour_is_refused_and_logged(make, event, caplog):
    memory, _ = make(
        extract=[facts("Bob lives in Paris."), facts("Alice likes tea.", "Alice lives in Paris.")],
        reconcile=lambda r: actions({"fact": 1, "event": event, "id": target["id"], "text": "HACKED"}),
    )
    target: dict[str, str] = {}
    [bob] = memory.add("I live in Paris", user_id="bob").added
    alice = memory.add("tea, Paris", user_id="alice").added
    tea = next(m for m in alice if "tea" in m.text)
    for n, victim in enumerate((bob, tea, {"id": "no-such-memory"})):
        # another user's memory, one of hers that is not a neighbour, an invented id
        target["id"] = victim.id if isinstance(victim, Memory) else victim["id"]
        fact = f"Alice lives in Paris, France, since 20{n + 10}."
        memory._llm._by_task["extract"].append(facts(fact))
        caplog.clear()
        result = memory.add("Paris, France", user_id="alice")
        assert [m.text for m in result.added] == [fact]
        assert result.updated == []
        assert f"refused {event} of memory id {target['id']!r}" in caplog.text
    assert [(m.text, m.metadata) for m in memory.get_all(user_id="bob")] == [("Bob lives in Paris.", {})]
    assert memory.get(tea.id, user_id="alice").model_dump(exclude={"score"}) == tea.model_dump(
        exclude={"score"})


def test_reconcile_actions_out_of_range_fall_back_to_add(make):
    memory, _ = make(
        extract=[facts("Alice lives in Paris."), facts("Alice lives in Paris, France.")],
        reconcile=[actions({"fact": 7, "event": "DELETE", "id": "x"}, {"fact": 0, "event": "NOOP"})],
    )
    memory.add("Paris", user_id="alice")
    result = memory.add("Paris, France", user_id="alice")
    assert [m.text for m in result.added] == ["Alice lives in Paris, France."]
    assert len(memory.get_all(user_id="alice")) == 2


def test_two_updates_of_one_memory_in_one_batch(make):
    memory, _ = make(
        extract=[facts("Alice lives in Paris."),
                 facts("Alice lives in Paris, France.", "Alice lives in Paris now.")],
        reconcile=lambda r: actions(
            *({"fact": i, "event": "UPDATE", "id": neighbour_ids(r)[0], "text": f"merged {i}"}
              for i in (1, 2))
        ),
    )
    [old] = memory.add("Paris", user_id="alice").added
    result = memory.add("Paris, France, now", user_id="alice")
    assert result.error is None
    stored = {m.text: m for m in memory.get_all(user_id="alice")}
    # the first update closes the memory; the second finds it closed and adds its fact
    assert sorted(stored) == ["Alice lives in Paris.", "merged 1", "merged 2"]
    assert stored["Alice lives in Paris."].metadata["superseded_by"] == stored["merged 1"].id
    assert stored["merged 2"].metadata == {}


def test_dated_memories_are_reconciled_too(make):
    # stored embeddings include the event date; the same dated fact must still find it
    memory, llm = make(
        extract=[facts(("Alice ran a marathon.", "2023-05-07", [1])),
                 facts(("Alice ran a marathon.", "2023-05-07", [1]))],
        reconcile=[actions({"fact": 1, "event": "NOOP"})],
    )
    memory.add("I ran a marathon yesterday", user_id="alice", timestamp=TS)
    result = memory.add("Yesterday's marathon was tough", user_id="alice", timestamp=TS)
    # the same text and date: a restatement, settled without a reconcile call
    assert llm.calls_for("reconcile") == []
    assert result.added == [] and len(memory.get_all(user_id="alice")) == 1


def test_malformed_extraction_is_retried_then_reported(make):
    memory, llm = make(extract=["not json", '{"facts": "wrong"}'])
    result = memory.add(["I moved to Paris", "I like tea"], user_id="alice", timestamp=TS)
    assert result.error is not None and "extraction failed" in result.error
    assert "2 turn(s) kept" in result.error
    assert len(llm.calls_for("extract")) == 1 + REPLY_RETRIES
    assert result.added == [] and memory.get_all(user_id="alice") == []
    assert [t.text for t in memory.history(user_id="alice")] == ["I moved to Paris", "I like tea"]
    # the turns are not lost: a reindex with a working model extracts them
    llm._by_task["extract"].append(facts("Alice moved to Paris."))
    rebuilt = memory.reindex(user_id="alice")
    assert rebuilt.errors == [] and rebuilt.memories == 1 and rebuilt.usage.calls == 1
    assert [m.text for m in memory.search("Paris", user_id="alice")] == ["Alice moved to Paris."]


def test_a_malformed_reply_is_retried_and_succeeds(make):
    memory, llm = make(extract=["Sure! Here are the facts:", facts("Alice likes tea.")])
    result = memory.add("I like tea", user_id="alice")
    assert result.error is None and [m.text for m in result.added] == ["Alice likes tea."]
    assert result.usage.calls == 2


def test_relative_dates_become_event_dates(make):
    memory, llm = make(extract=[facts(
        ("Alice ran a marathon on 7 May 2023.", "2023-05-07", [1]),
        ("Alice will visit Rome.", "next month", [1]),  # not a date: dropped, the fact is kept
    )])
    result = memory.add("I ran a marathon yesterday", user_id="alice", timestamp=TS)
    dates = {m.text: m.event_date for m in result.added}
    assert dates == {"Alice ran a marathon on 7 May 2023.": "2023-05-07", "Alice will visit Rome.": None}
    # the model saw the message date it needs to resolve "yesterday"
    assert "[8 May 2023] user: I ran a marathon yesterday" in llm.calls[0].messages[-1]["content"]
    [hit] = memory.search("marathon", user_id="alice", k=1)
    assert hit.event_date == "2023-05-07" and hit.render().startswith("[7 May 2023]")


def test_earlier_turns_are_context_not_new(make):
    memory, llm = make(extract=[facts("Alice likes tea."), '{"facts": []}'])
    memory.add("I like tea", user_id="alice", session_id="s1", timestamp="2023-05-08T10:00:00")
    result = memory.add("Also coffee", user_id="alice", session_id="s1", timestamp="2023-05-08T11:00:00")
    assert result.added == [] and result.error is None
    prompt = llm.calls[1].messages[-1]["content"]
    earlier, new = prompt.split("NEW messages:")
    assert "I like tea" in earlier and "Also coffee" in new and "I like tea" not in new
    assert "Alice likes tea." in earlier  # known memories are shown too


def test_extraction_costs_at_most_two_calls_per_batch(make):
    memory, llm = make(
        extract=lambda r: facts(f"Alice likes green tea number {len(llm.calls)}."),
        reconcile=lambda r: actions({"fact": 1, "event": "NOOP"}),
    )
    result = memory.add([f"message number {i}" for i in range(25)], user_id="alice")
    extracts = llm.calls_for("extract")
    # 25 turns -> batches of 10, 10, 5; the first has no neighbours, so no reconcile call
    assert len(extracts) == 3
    assert [len(re.findall(r"^\d+\. ", c.messages[-1]["content"], re.M)) for c in extracts] == [10, 10, 5]
    assert len(llm.calls_for("reconcile")) == 2
    assert result.usage.calls == len(llm.calls) == 5


def test_extract_false_indexes_raw_turns_without_the_model(make):
    memory, llm = make()  # no replies scripted: any model call would fail
    result = memory.add(
        [{"role": "user", "speaker": "Alice", "content": "I like tea", "id": "t1"}],
        user_id="alice", timestamp=TS, extract=False,
    )
    assert llm.calls == [] and result.error is None
    [m] = result.added
    assert (m.id, m.text, m.source_turn_ids) == ("t1", "Alice: I like tea", ["t1"])
    assert m.event_date == "2023-05-08"
    assert memory.search("tea", user_id="alice")[0].id == "t1"


def test_extraction_failure_without_replies_keeps_turns(make):
    memory, _ = make()
    result = memory.add("I like tea", user_id="alice")
    assert result.error and "no reply left" in result.error
    assert len(memory.history(user_id="alice")) == 1


def test_facts_are_reconciled_across_sessions(make):
    memory, llm = make(
        extract=[facts("Alice lives in Paris."), facts("Alice lives in Paris, France.")],
        reconcile=first_neighbour("UPDATE", "Alice lives in Paris, France."),
    )
    [old] = memory.add("I live in Paris", user_id="alice", session_id="s1").added
    result = memory.add("Paris, France", user_id="alice", session_id="s2")
    assert [m.id for m in result.updated] == [old.id]
    assert [(m.text, m.session_id) for m in result.added] == [("Alice lives in Paris, France.", "s2")]
    assert current(memory.get_all(user_id="alice")) == ["Alice lives in Paris, France."]
    # the known-memories context of the second extraction came from session s1
    assert "Alice lives in Paris." in llm.calls_for("extract")[1].messages[-1]["content"]


def test_malformed_reconciliation_is_reported_and_changes_nothing(make):
    memory, llm = make(
        extract=[facts("Alice lives in Paris."), facts("Alice lives in Paris, France.")],
        reconcile=["maybe UPDATE?", '{"actions": [{"fact": 1, "event": "MERGE"}]}'],
    )
    [old] = memory.add("Paris", user_id="alice").added
    result = memory.add("Paris, France", user_id="alice")
    assert result.error and "reconcile" in result.error
    assert len(llm.calls_for("reconcile")) == 1 + REPLY_RETRIES
    assert memory.get_all(user_id="alice") == [old.model_copy(update={"score": None})]
    assert len(memory.history(user_id="alice")) == 2


def test_a_reconcile_reply_with_an_empty_text_is_still_read():
    # the schema bounds the merged text's length for constrained decoding; validation stays
    # lenient, as backends that ignore the schema write "" for an ADD
    from dualmem.ingest.extract import ReconcileReply

    reply = ReconcileReply.model_validate_json(
        '{"actions": [{"fact": 1, "event": "add", "id": null, "text": ""}]}')
    assert reply.actions[0].event == "ADD" and reply.actions[0].text == ""
    long = "x" * 500  # past the schema's maxLength, which only bounds decoding
    reply = ReconcileReply.model_validate_json(
        json.dumps({"actions": [{"fact": 1, "event": "UPDATE", "id": "m1", "text": long}]}))
    assert reply.actions[0].text == long
