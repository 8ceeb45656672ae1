"""Session scopes when extraction merges facts across sessions (issue 20, repro 2).

The rule (extract.py): a memory belongs to the session of the turns it came from, and its
text and provenance come from that session only. Reconciliation may supersede a memory of
another session of the same user (a link in its metadata), never move words into it. So:
- a session-scoped search, listing or answer prompt shows only that session's words;
- every memory's `source_turn_ids` are turns of its own scope;
- `delete_all` of a session removes exactly its memories, and reopens the ones they closed.

A scripted model extracts one fact per turn (carrying the turn's marker word) and reconciles
every contested fact by a random UPDATE (with a merged text naming both markers), DELETE,
NOOP or ADD of a random neighbour.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dualmem import DualMemory
from dualmem.testing import ScriptedLLM

from .test_isolation import ISOLATION, MARKER, Key, Stored, kwargs, visible

EVENTS = ("UPDATE", "UPDATE", "DELETE", "NOOP", "ADD")
CHECKED = {"examples": 0, "operations": 0, "reconciled": 0, "memories": 0}


class Reconciler:
    """Extraction and reconciliation replies; `rng` is reseeded by each example."""

    def __init__(self) -> None:
        self.rng = random.Random(0)

    def extract(self, request) -> str:
        new = request.messages[-1]["content"].split("NEW messages:")[-1]
        lines = [line for line in new.splitlines() if line[:1].isdigit()]
        return json.dumps({"facts": [
            {"text": f"Rex the dog drinks green tea, says note {MARKER.search(line).group()}.", "turns": [n]}
            for n, line in enumerate(lines, 1)]})

    def reconcile(self, request) -> str:
        actions = []
        for n, block in enumerate(request.messages[-1]["content"].split("New fact ")[1:], 1):
            ids = re.findall(r'"id": "([^"]+)"', block)
            event = self.rng.choice(EVENTS)
            markers = " and ".join(dict.fromkeys(MARKER.findall(block)))
            actions.append({"fact": n, "event": event, "id": self.rng.choice(ids),
                            "text": f"Rex drinks green tea, say notes {markers}."})
            CHECKED["reconciled"] += 1
        return json.dumps({"actions": actions})


@dataclass
class World:
    memory: DualMemory
    model: Reconciler
    turns: Stored = field(default_factory=Stored)  # the turns still in the history

    def add(self, key: Key) -> None:
        marker = f"mk{uuid.uuid4().hex[:12]}"
        turn_id = f"t-{marker}"
        result = self.memory.add({"id": turn_id, "content": f"Note {marker}: Rex the dog drinks green tea."},
                                 **kwargs(key))
        assert result.error is None, result.error
        self.turns.add(turn_id, key, marker)

    def allowed(self, key: Key) -> set[str]:
        return self.turns.markers_for(key)

    def check(self, key: Key) -> None:
        """Every read of `key` shows only its own words, with provenance in its own scope."""
        found = self.memory.get_all(**kwargs(key)) + self.memory.search("Rex green tea", **kwargs(key))
        allowed = self.allowed(key)
        for m in found:
            scope = (m.user_id, m.agent_id, m.session_id)
            assert visible(scope, key), (key, scope)
            leaked = set(MARKER.findall(m.text)) - allowed
            assert not leaked, f"{key!r} read {leaked} in {m.text!r}"
            # provenance: every source turn exists and lies in the memory's own scope
            sources = [self.turns.scope.get(t) for t in m.source_turn_ids]
            assert all(s == scope for s in sources), (m.text, m.source_turn_ids)
        CHECKED["memories"] += len(found)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    model = Reconciler()
    llm = ScriptedLLM(by_task={"extract": model.extract, "reconcile": model.reconcile}, default="NONE")
    memory = DualMemory(path=tmp_path_factory.mktemp("isolation-extract"), llm=llm, extract=True)
    yield World(memory, model)
    memory.close()
    print(f"\n[isolation-extract] examples={CHECKED['examples']} operations={CHECKED['operations']} "
          f"reconcile actions={CHECKED['reconciled']} memories checked={CHECKED['memories']} leaks=0")


@st.composite
def scenarios(draw):
    user = f"u-{uuid.uuid4().hex[:8]}"
    agent = draw(st.sampled_from([None, "agent-a"]))
    sessions = draw(st.lists(st.sampled_from(["s1", "s2", "s3", "a'b", "s:1"]), min_size=2, max_size=3,
                             unique=True))
    keys = [(user, agent, s) for s in sessions]
    op = st.one_of(
        st.tuples(st.just("add"), st.integers(0, len(keys) - 1)),
        st.tuples(st.just("delete_all"), st.integers(0, len(keys) - 1)),
        st.tuples(st.just("answer"), st.integers(0, len(keys) - 1)),
    )
    return keys, draw(st.lists(op, min_size=4, max_size=10)), draw(st.integers(0, 2**32))


@ISOLATION
@given(scenario=scenarios())
def test_merged_facts_stay_in_their_session(world: World, scenario) -> None:
    keys, ops, seed = scenario
    world.model.rng.seed(seed)
    for key in keys:
        world.add(key)
    wide = (keys[0][0], keys[0][1], None)
    for op, i in ops:
        key = keys[i]
        CHECKED["operations"] += 1
        if op == "add":
            world.add(key)
        elif op == "answer" and world.allowed(key):
            before = len(world.memory.llm.calls)
            world.memory.answer("What does Rex drink?", mode="fast", **kwargs(key))
            for call in world.memory.llm.calls[before:]:
                leaked = set(MARKER.findall(json.dumps(call.messages))) - world.allowed(key)
                assert not leaked, f"the answer prompt of {key!r} holds {leaked}"
        elif op == "delete_all":
            kept = {m.id: m for m in world.memory.get_all(**kwargs(wide))
                    if not visible((m.user_id, m.agent_id, m.session_id), key)}
            world.memory.delete_all(**kwargs(key))
            for t in world.turns.visible_to(key):
                world.turns.remove(t)
            after = {m.id: m for m in world.memory.get_all(**kwargs(wide))}
            assert set(kept) <= set(after), "forgetting one session removed another's memories"
            # what the forgotten session had superseded is current again
            assert all(m.metadata.get("superseded_by") in after for m in after.values()
                       if "superseded_by" in m.metadata)
            assert not {x for m in after.values() for x in MARKER.findall(m.text)} - world.allowed(wide)
        for other in keys:
            world.check(other)
        world.check(wide)
    CHECKED["examples"] += 1
    if CHECKED["examples"] % 500 == 0:  # a deep run takes hours: show that it moves
        print(f"\n[isolation-extract] so far {CHECKED}", flush=True)


def test_the_issue_repro(tmp_path) -> None:
    """s2 UPDATEs s1's fact: s1 reads only s1's words, and forgetting s2 leaves s1 whole."""
    def extract(request) -> str:
        line = request.messages[-1]["content"].split("NEW messages:")[-1].split("1. ")[1].split("\n")[0]
        return json.dumps({"facts": [{"text": line.split(": ", 1)[-1], "turns": [1]}]})

    def reconcile(request) -> str:
        target = re.findall(r'"id": "([^"]+)"', request.messages[-1]["content"])[0]
        return json.dumps({"actions": [{"fact": 1, "event": "UPDATE", "id": target,
                                        "text": "My dog is Biscuit and he lives with Zed now."}]})

    llm = ScriptedLLM(by_task={"extract": extract, "reconcile": reconcile}, default="Biscuit")
    memory = DualMemory(path=tmp_path, llm=llm, extract=True, index_turns=False)
    memory.add("My dog is Biscuit.", user_id="alice", session_id="s1")
    memory.add("My dog is Biscuit. He lives with Zed now.", user_id="alice", session_id="s2")
    s1 = memory.search("dog", user_id="alice", session_id="s1")
    assert [m.text for m in s1] == ["My dog is Biscuit."] and s1[0].session_id == "s1"
    assert s1[0].metadata["superseded_by"]  # the link to s2's fact, not its words
    s2 = memory.search("dog", user_id="alice", session_id="s2")
    assert [m.text for m in s2] == ["My dog is Biscuit. He lives with Zed now."]  # not the merged text
    before = len(llm.calls)
    memory.answer("Where is the dog?", user_id="alice", session_id="s1", mode="fast")
    assert "Zed" not in json.dumps([c.messages for c in llm.calls[before:]])
    assert memory.delete_all(user_id="alice", session_id="s2") == {"turns": 1, "memories": 1}
    left = memory.get_all(user_id="alice")
    assert [m.text for m in left] == ["My dog is Biscuit."] and "valid_to" not in left[0].metadata
    memory.close()


def test_a_restatement_in_another_session_does_not_join_it(tmp_path) -> None:
    fact = json.dumps({"facts": [{"text": "Alice's dog is Biscuit.", "turns": [1]}]})
    memory = DualMemory(path=tmp_path, llm=ScriptedLLM(by_task={"extract": [fact, fact]}), extract=True,
                        index_turns=False)
    memory.add("My dog is Biscuit.", user_id="alice", session_id="s1")
    result = memory.add("Biscuit is my dog, as I said.", user_id="alice", session_id="s2")
    # a restatement in another session is that session's own copy, citing its own turn
    assert [(m.session_id, m.text) for m in result.added] == [("s2", "Alice's dog is Biscuit.")]
    assert result.updated == [] and result.added[0].source_turn_ids == [result.turns[0].id]
    assert memory.delete_all(user_id="alice", session_id="s2") == {"turns": 1, "memories": 1}
    assert [m.text for m in memory.get_all(user_id="alice", session_id="s1")] == ["Alice's dog is Biscuit."]
    memory.close()
