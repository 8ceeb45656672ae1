"""The mixed index (the default with extraction): raw turns stay searchable beside the
extracted facts, so what extraction missed or failed on is not lost to search."""

from __future__ import annotations

import json

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM


def facts(*texts: str) -> str:
    return json.dumps({"facts": [{"text": t, "date": None, "turns": [1]} for t in texts]})


def test_raw_turns_are_searchable_beside_the_facts(tmp_path):
    llm = ScriptedLLM(by_task={"extract": [facts("Maya adopted a beagle called Biscuit.")]})
    memory = DualMemory(path=tmp_path, llm=llm)  # extract and index_turns are the defaults
    result = memory.add(
        [{"content": "I adopted a beagle called Biscuit on Saturday.", "id": "t1"},
         {"content": "Also, I'm allergic to peanuts.", "id": "t2"}],  # extraction missed this
        user_id="maya", session_id="s1", timestamp="2025-03-03T18:20:00",
    )
    assert [m.text for m in result.added] == ["Maya adopted a beagle called Biscuit."]
    stored = memory.get_all(user_id="maya")
    assert sorted(m.id for m in stored if m.is_raw) == ["t1", "t2"]
    assert "t2" in [m.id for m in memory.search("What is Maya allergic to?", user_id="maya", k=2)]


def test_raw_turns_are_not_facts_to_reconcile(tmp_path):
    llm = ScriptedLLM(by_task={"extract": [facts("Maya likes tea."), facts("Maya likes green tea.")],
                               "reconcile": [json.dumps({"actions": [{"fact": 1, "event": "NOOP"}]})]})
    memory = DualMemory(path=tmp_path, llm=llm)
    memory.add({"content": "I like tea", "id": "t1"}, user_id="maya")
    memory.add({"content": "green tea, I mean", "id": "t2"}, user_id="maya")
    second = llm.calls_for("extract")[1].messages[-1]["content"]
    known = second.split("Known memories:")[1].split("</data>")[0]
    assert "Maya likes tea." in known and "I like tea" not in known
    [reconcile] = llm.calls_for("reconcile")
    assert "I like tea" not in reconcile.messages[-1]["content"]


def test_a_failed_extraction_still_leaves_the_turns_searchable(tmp_path):
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(by_task={"extract": ["nope", "nope"]}))
    result = memory.add({"content": "My passport number ends in 4471", "id": "t1"}, user_id="maya")
    assert result.error and result.pending == ["t1"]
    assert memory.search("passport number", user_id="maya", k=1)[0].id == "t1"


def test_facts_only_when_index_turns_is_off(tmp_path):
    llm = ScriptedLLM(by_task={"extract": [facts("Maya likes tea.")]})
    memory = DualMemory(path=tmp_path, llm=llm, index_turns=False)
    memory.add({"content": "I like tea", "id": "t1"}, user_id="maya")
    assert [m.text for m in memory.get_all(user_id="maya")] == ["Maya likes tea."]


def test_many_raw_turns_do_not_hide_the_fact_to_reconcile(tmp_path):
    # 40 raw turns that say the new fact almost word for word sit beside the old fact
    llm = ScriptedLLM(by_task={
        "extract": [facts("Maya lives in Lisbon."), facts("Maya moved to Porto.")],
        "reconcile": [lambda r: json.dumps({"actions": [{"fact": 1, "event": "UPDATE",
                                                         "id": lisbon.id, "text": None}]})],
    })
    memory = DualMemory(path=tmp_path, llm=llm)
    [lisbon] = memory.add({"content": "I live in Lisbon", "id": "t0"}, user_id="maya").added
    memory.add([{"content": f"Maya moved to Porto. ({i})", "id": f"s{i}"}
                for i in range(40)], user_id="maya", extract=False)
    memory.add({"content": "We moved to Porto!", "id": "t1"}, user_id="maya")
    [reconcile] = llm.calls_for("reconcile")
    assert lisbon.text in reconcile.messages[-1]["content"]
    assert memory.get(lisbon.id, user_id="maya").metadata["valid_to"]
