"""The task names ScriptedLLM scripts against are public: listed in `TASKS` and in the README."""

from __future__ import annotations

import json
from pathlib import Path

from dualmem import DualMemory
from dualmem.llm.base import ChatRequest
from dualmem.testing import TASKS, ScriptedLLM, ScriptedReply, Task

FACTS = json.dumps({"facts": [{"fact": f"Greta fact {i} about the violin.", "score": 9} for i in range(8)]})
REPLIES = {
    "extract": '{"facts": [{"text": "Greta plays the violin", "date": null, "turns": [1]}]}',
    "reconcile": '{"actions": [{"fact": 1, "event": "NOOP"}]}',
    "answer": "NONE",
    "gate.audit": '{"relevance": {"status": "fail"}, "faithfulness": {"status": "pass"}, '
    '"completeness_relevance": {"status": "pass"}}',
    "gate.sample": "violin",
    "gate.judge": '{"agree": 1, "answer": "violin"}',
    "neighbours.answer": "NONE",
    "deliberate.extract": FACTS,
    "deliberate.filter": '{"indexes": [1, 2]}',
    "deliberate.answer": "Greta plays the violin",
    "deliberate.select": '{"lines": [1]}',
    "deliberate.shorten": "the violin",
}


def reply(request: ChatRequest) -> ScriptedReply:
    if request.task == "extract" and "still" in request.messages[-1]["content"]:
        # a close fact, not a restatement (that is a NOOP without a reconcile call)
        return ScriptedReply(REPLIES["extract"].replace("plays", "still plays"))
    return ScriptedReply(REPLIES[request.task])


def test_every_task_sent_is_listed_and_every_listed_task_is_sent(tmp_path) -> None:
    llm = ScriptedLLM(default=reply)
    memory = DualMemory(path=tmp_path, llm=llm)  # extraction on: extract, then reconcile
    memory.add("I play the violin.", user_id="mel", session_id="s1")
    memory.add("I still play the violin.", user_id="mel", session_id="s1")
    for policy in ("audit", "majority"):
        memory.answer("What instrument does Greta play?", user_id="mel", policy=policy)
    memory.answer("What instrument does Greta play?", user_id="mel", policy="audit", strategy="scan")
    memory.config.deliberation.select_lines = "model"  # the evidence strategy's model selection
    memory.answer("What instrument does Greta play?", user_id="mel", mode="full")
    sent = {c.task for c in llm.calls}
    assert sent <= set(TASKS)
    assert set(TASKS) - sent == {Task.ANSWER_FULLCTX, Task.LLAMAINDEX_FACTS}  # the benchmark's only


def test_the_readme_lists_every_task() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert [t for t in TASKS if f'`"{t}"`' not in readme] == []
