"""Facts that change over time: moves, jobs, relationships, preferences, corrections.

Each case of tests/data/temporal_changes.json states something in March, then a change in
June. The model's side is scripted (extraction gives the case's facts, reconciliation
answers UPDATE, or DELETE for the relationship cases); what is tested is what dualmem does
with it: the old fact is kept, closed at the date of the change, a "then" question still
finds it, and a "now" question's prompt shows which one is current.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dualmem import DualMemory
from dualmem.llm.base import ChatRequest
from dualmem.testing import ScriptedLLM, ScriptedReply

CASES = json.loads((Path(__file__).parent / "data" / "temporal_changes.json").read_text())
MARCH, JUNE = "2023-03-10T09:00:00", "2023-06-12T18:30:00"


def _facts(text: str) -> str:
    return json.dumps({"facts": [{"text": text, "date": None, "turns": [1]}]})


def _first_neighbour(event: str):
    def reply(request: ChatRequest) -> str:
        [mid] = re.findall(r'\{"id": "([^"]+)"', request.messages[-1]["content"])[:1]
        return json.dumps({"actions": [{"fact": 1, "event": event, "id": mid, "text": None}]})

    return reply


def test_the_corpus_covers_every_kind_of_change():
    kinds = [c["kind"] for c in CASES]
    assert len(CASES) >= 20
    assert {"move", "job", "relationship", "preference", "correction"} <= set(kinds)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['kind']}-{i}" for i, c in enumerate(CASES)])
def test_a_change_supersedes_the_old_fact_and_keeps_it(tmp_path, case):
    (said_before, fact_before), (said_after, fact_after) = case["before"], case["after"]
    event = "DELETE" if case["kind"] == "relationship" else "UPDATE"
    llm = ScriptedLLM(by_task={
        "extract": [_facts(fact_before), _facts(fact_after), _facts(fact_after)],
        "reconcile": _first_neighbour(event),
        "answer": [ScriptedReply("scripted")],
    })
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    user = {"user_id": "u", "session_id": "s"}
    [old] = memory.add({"content": said_before, "id": "t1"}, timestamp=MARCH, **user).added
    change = memory.add({"content": said_after, "id": "t2"}, timestamp=JUNE, **user)
    [new] = change.added
    [closed] = change.updated
    assert closed.id == old.id and closed.text == fact_before  # kept, not rewritten
    assert closed.metadata == {"valid_to": "2023-06-12", "superseded_by": new.id}
    assert new.text == fact_after and new.metadata == {"valid_from": "2023-06-12", "supersedes": old.id}

    # saying it again later changes nothing: a NOOP, never a DELETE
    again = memory.add({"content": said_after, "id": "t3"}, timestamp=JUNE, **user)
    assert again.added == [] and [m.id for m in again.updated] == [new.id]
    assert len(llm.calls_for("reconcile")) == 1

    # "then" still finds the old fact; "now" sees it closed beside the current one
    found = {m.id: m for m in memory.search(case["then"], user_id="u", k=10)}
    assert old.id in found and found[old.id].render() == f"{fact_before} (until 12 June 2023)"
    memory.answer(case["now"], user_id="u", mode="fast")
    prompt = llm.calls_for("answer")[0].messages[-1]["content"]
    assert f"{fact_before} (until 12 June 2023)" in prompt and f"\n{fact_after}\n" in prompt


def test_the_benchmark_judges_now_and_then_answers_by_the_words_that_tell_the_values_apart(tmp_path):
    from dualmem.bench.temporal import judge, run_case
    from dualmem.config import Config

    assert judge("Porto", "Maya moved to Porto.", "Maya lives in Lisbon.") == "right"
    assert judge("She lives in Porto", "Maya moved to Porto.", "Maya lives in Lisbon.") == "mixed"
    assert judge("Lisbon", "Maya moved to Porto.", "Maya lives in Lisbon.") == "wrong"
    assert judge("NONE", "Maya moved to Porto.", "Maya lives in Lisbon.") == "wrong"

    case = CASES[0]
    (_, fact_before), (_, fact_after) = case["before"], case["after"]
    llm = ScriptedLLM(by_task={
        "extract": [_facts(fact_before), _facts(fact_after), _facts(fact_after)],
        "reconcile": _first_neighbour("UPDATE"),
        "answer": ["Porto", "Lisbon"],
    })
    row = run_case(case, Config(), llm, tmp_path / "case")
    assert row["closed"] and row["repeat_noop"] and row["errors"] == []
    assert (row["now"], row["now_judged"], row["then_judged"]) == ("Porto", "right", "right")
    assert f"{fact_before} (until 12 June 2023)" in row["facts"]
    # the question about now is asked first, then the one about then
    assert [c.messages[-1]["content"].rsplit("Question: ", 1)[1] for c in llm.calls_for("answer")] == [
        f"{case['now']}\nAnswer:", f"{case['then']}\nAnswer:"]


def _dated(text: str, day: str) -> str:
    return json.dumps({"facts": [{"text": text, "date": day, "turns": [1]}]})


def test_an_update_to_the_replaced_memorys_own_text_keeps_the_new_fact(tmp_path):
    # the local model answered a move with UPDATE, its merged text the old fact word for word:
    # the new memory must still say where she lives now
    def update_to_old(request: ChatRequest) -> str:
        prompt = request.messages[-1]["content"]
        [(mid, old)] = re.findall(r'\{"id": "([^"]+)", "text": "([^"]+)"', prompt)[:1]
        action = {"fact": 1, "event": "UPDATE", "id": mid, "text": old.split("] ")[-1]}
        return json.dumps({"actions": [action]})

    llm = ScriptedLLM(by_task={"extract": [_facts("Maya lives in Lisbon."), _facts("Maya moved to Porto.")],
                               "reconcile": update_to_old})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    user = {"user_id": "u", "session_id": "s"}
    [old] = memory.add({"content": "I live in Lisbon.", "id": "t1"}, timestamp=MARCH, **user).added
    change = memory.add({"content": "We moved to Porto!", "id": "t2"}, timestamp=JUNE, **user)
    assert llm.calls_for("reconcile")
    [new] = change.added
    assert new.text == "Maya moved to Porto." and change.updated[0].id == old.id


def test_a_superseding_fact_dated_before_the_one_it_replaces_takes_its_turns_date(tmp_path):
    llm = ScriptedLLM(by_task={
        "extract": [_dated("Maya lives in Lisbon.", "2023-03-10"),
                    _dated("Maya moved to Porto.", "2023-03-01")],
        "reconcile": _first_neighbour("UPDATE"),
    })
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    user = {"user_id": "u", "session_id": "s"}
    memory.add({"content": "I live in Lisbon.", "id": "t1"}, timestamp=MARCH, **user)
    change = memory.add({"content": "We moved to Porto!", "id": "t2"}, timestamp=JUNE, **user)
    [new], [closed] = change.added, change.updated
    # never closed before it began: the change dates from the turn that told it
    assert closed.metadata["valid_to"] == "2023-06-12" and new.event_date == "2023-06-12"
    assert new.metadata["valid_from"] == "2023-06-12"


@pytest.mark.parametrize("event", ["UPDATE", "DELETE"])
def test_a_change_to_the_same_text_is_a_noop_and_closes_nothing(tmp_path, event):
    # the local model re-extracted the March line (shown as context) from the June turn and
    # then "changed" the memory to it: nothing is known that was not known
    llm = ScriptedLLM(by_task={"extract": [_dated("Maya lives in Lisbon.", "2023-03-10"),
                                           _dated("Maya lives in Lisbon.", "2023-06-12")],
                               "reconcile": _first_neighbour(event)})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True)
    user = {"user_id": "u", "session_id": "s"}
    [old] = memory.add({"content": "I live in Lisbon.", "id": "t1"}, timestamp=MARCH, **user).added
    change = memory.add({"content": "We moved to Porto!", "id": "t2"}, timestamp=JUNE, **user)
    assert llm.calls_for("reconcile")
    assert change.added == [] and [m.id for m in change.updated] == [old.id]
    assert "valid_to" not in change.updated[0].metadata
