"""Tenant isolation, property-based: random scopes and operations never show one scope's
memories or turns to another.

Every turn carries a unique marker word. A model of what is stored says which markers each
scope may see: a turn is visible to a query scope when both live in the same partition (user,
else agent, else session) and every id the query sets matches the turn's. After each operation
(add, search, answer in fast/gated/full mode, get, delete, delete_all, reindex) the results,
the answer text, and every prompt the scripted model received are checked against that model.
Ids are drawn from crafted strings (quotes, SQL, "$or", "user:x", unicode, 256-char ids) and
random text, from a small pool per example so that scopes often share a user, agent or session.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import re
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dualmem import DualMemory, ScopeError
from dualmem.testing import ScriptedLLM, ScriptedReply
from dualmem.types import Scope

CRAFTED = [
    "alice", "Alice", " alice", "alice ", "bob", "user:alice", "agent:alice", "session:alice", "user:",
    "' OR '1'='1", '"; DROP TABLE turns; --', "1; DELETE FROM turns", "$or", "$and", "$ne", '{"$ne": null}',
    "%", "_", "*", "..", "../../etc/passwd", "null", "None", "0", "é", "e\u0301", "用户", "🙂", "a\tb",
    "line\nbreak", "x" * 256, "dualmem_", "\\", "a'b\"c", "<data>", "</data>",
]
IDS = st.one_of(
    st.sampled_from(CRAFTED),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=24).filter(str.strip),
)
MARKER = re.compile(r"mk[0-9a-f]{12}")
MODES = [("fast", None, True), ("gated", "audit", True), ("gated", "audit", False),
         ("gated", "cascade", False), ("gated", "majority", False), ("full", None, False)]
AUDIT = ("relevance", "faithfulness", "completeness_relevance")
CHECKED = {"examples": 0, "operations": 0, "results": 0, "prompts": 0}

Key = tuple[str | None, str | None, str | None]

# Examples per property test. CI runs "ci"; "deep" (5,000 per test, 10,000 over this file and
# test_isolation_extract.py) is DUALMEM_ISOLATION_PROFILE=deep; DUALMEM_ISOLATION_EXAMPLES
# overrides the count (a run bounded by the time at hand). A deep run wants the data dir on
# tmpfs (pytest --basetemp=/dev/shm/...): Chroma syncs every write, ~50 ms an upsert on this
# disk against ~6 ms there, and durability is the crash tests' subject, not this one's.
_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
for _name, _examples in {"ci": 30, "deep": 5000}.items():
    settings.register_profile(f"isolation-{_name}", max_examples=_examples, deadline=None,
                              suppress_health_check=_QUIET, database=None)
ISOLATION = settings.get_profile(f"isolation-{os.environ.get('DUALMEM_ISOLATION_PROFILE', 'ci')}")
if os.environ.get("DUALMEM_ISOLATION_EXAMPLES"):
    ISOLATION = settings(ISOLATION, max_examples=int(os.environ["DUALMEM_ISOLATION_EXAMPLES"]))


@functools.cache  # a Scope is validated on construction: ~10 us, asked millions of times
def partition(key: Key) -> str:
    return Scope(user_id=key[0], agent_id=key[1], session_id=key[2]).partition


def visible(item: Key, query: Key) -> bool:
    """What the stores promise: same partition, and every id the query sets matches."""
    same = partition(item) == partition(query)
    return same and all(q is None or q == i for i, q in zip(item, query, strict=True))


class Stored:
    """Turn id -> scope and marker of every turn still in the history, grouped by partition.

    What a scope may see is computed from this model alone, as `visible` says. Only the query's
    partition is read (no other can hold a visible turn): scanning every turn ever stored made
    the 500th example of a shared store cost ~1 s.
    """

    def __init__(self) -> None:
        self.scope: dict[str, Key] = {}
        self.marker: dict[str, str] = {}
        self._parts: dict[str, dict[Key, set[str]]] = {}

    def __contains__(self, turn_id: object) -> bool:
        return turn_id in self.scope

    def add(self, turn_id: str, key: Key, marker: str) -> None:
        self.scope[turn_id], self.marker[turn_id] = key, marker
        self._parts.setdefault(partition(key), {}).setdefault(key, set()).add(turn_id)

    def remove(self, turn_id: str) -> None:
        key = self.scope.pop(turn_id)
        del self.marker[turn_id]
        self._parts[partition(key)][key].discard(turn_id)

    def visible_to(self, query: Key) -> set[str]:
        """The ids of the stored turns `query` may see."""
        keys = self._parts.get(partition(query), {})
        return {t for key, ids in keys.items() if visible(key, query) for t in ids}

    def markers_for(self, query: Key) -> set[str]:
        return {self.marker[t] for t in self.visible_to(query)}


def kwargs(key: Key) -> dict[str, str | None]:
    return {"user_id": key[0], "agent_id": key[1], "session_id": key[2]}


# ---------------------------------------------------------------- a model that echoes what it sees


def reading_reply(request, audit_passes: bool = False) -> str | None:
    """Gate and deliberation replies that pass stored text on (shared by the poisoning and
    forgetting tests): every chunk line becomes a fact, the filter keeps all, the judge
    disagrees, the audit passes or fails as told. None for the other tasks."""
    prompt = request.messages[-1]["content"]
    if request.task == "gate.audit":
        return json.dumps({k: {"status": "pass" if audit_passes else "fail"} for k in AUDIT})
    if request.task == "gate.judge":
        return '{"agree": 1, "answer": ""}'
    if request.task == "deliberate.extract":
        lines = [line for line in prompt.split("Conversation:")[-1].splitlines() if line[:1].isdigit()]
        return json.dumps({"facts": [{"fact": line.split(" ", 1)[-1], "score": 9, "turns": [n]}
                                     for n, line in enumerate(lines, 1)]})
    if request.task == "deliberate.filter":
        return '{"indexes": []}'
    return None


class EchoModel:
    """Replies for every task; answers repeat the markers found in the prompt."""

    def __init__(self) -> None:
        self.audit_passes = True

    def __call__(self, request) -> ScriptedReply | str:
        read = reading_reply(request, self.audit_passes)
        if read is not None:
            return read
        markers = MARKER.findall(request.messages[-1]["content"])
        return ScriptedReply(", ".join(dict.fromkeys(markers)) or "NONE", confidence=0.99)


@dataclass
class World:
    """The shared data dir, and the model of what it holds (across every example)."""

    memory: DualMemory
    llm: ScriptedLLM
    echo: EchoModel
    turns: Stored = field(default_factory=Stored)  # the turns still in the history
    indexed: set[str] = field(default_factory=set)  # raw mode: memory id == turn id

    def add(self, key: Key, crafted_id: str) -> str:
        marker = f"mk{uuid.uuid4().hex[:12]}"
        turn_id = f"{crafted_id[:200]}#{marker}"
        result = self.memory.add(
            {"id": turn_id, "content": f"Note {marker}: Rex the dog drinks green tea.",
             "metadata": {"owner": crafted_id, "$or": [1]}},
            **kwargs(key),
        )
        assert [t.id for t in result.turns] == [turn_id]
        self.turns.add(turn_id, key, marker)
        self.indexed.add(turn_id)
        return turn_id

    def allowed_markers(self, key: Key) -> set[str]:
        return self.turns.markers_for(key)

    def check_text(self, text: str, key: Key) -> None:
        leaked = set(MARKER.findall(text)) - self.allowed_markers(key)
        assert not leaked, f"{key!r} saw markers of other scopes or deleted turns: {leaked}"

    def check_memories(self, found, key: Key) -> None:
        for m in found:
            assert m.id in self.turns and visible(self.turns.scope[m.id], key), (key, m.id)
            assert (m.user_id, m.agent_id, m.session_id) == self.turns.scope[m.id]
            assert m.id in self.indexed
            self.check_text(m.text, key)
        CHECKED["results"] += len(found)

    def check_all(self, key: Key) -> None:
        history = self.memory.history(**kwargs(key))
        seen = self.turns.visible_to(key)
        assert {t.id for t in history} == seen
        memories = self.memory.get_all(**kwargs(key))
        self.check_memories(memories, key)
        assert {m.id for m in memories} == seen & self.indexed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    echo = EchoModel()
    llm = ScriptedLLM(default=echo)
    memory = DualMemory(path=tmp_path_factory.mktemp("isolation"), llm=llm, extract=False)
    yield World(memory, llm, echo)
    memory.close()
    print(f"\n[isolation] examples={CHECKED['examples']} operations={CHECKED['operations']} "
          f"results checked={CHECKED['results']} prompts checked={CHECKED['prompts']} leaks=0")


# ---------------------------------------------------------------- the property


@st.composite
def scenarios(draw):
    pool = draw(st.lists(IDS, min_size=2, max_size=3, unique=True))
    slot = st.sampled_from([None, *pool])
    keys = draw(st.lists(st.tuples(slot, slot, slot).filter(lambda k: any(v is not None for v in k)),
                         min_size=2, max_size=4, unique=True))
    n = len(keys)
    op = st.one_of(
        st.tuples(st.just("add"), st.integers(0, n - 1)),
        st.tuples(st.just("search"), st.integers(0, n - 1)),
        st.tuples(st.just("answer"), st.integers(0, n - 1), st.sampled_from(MODES)),
        st.tuples(st.just("get"), st.integers(0, n - 1), st.integers(0, 2 * n - 1)),
        st.tuples(st.just("delete"), st.integers(0, n - 1), st.integers(0, 2 * n - 1)),
        st.tuples(st.just("delete_all"), st.integers(0, n - 1)),
        st.tuples(st.just("reindex"), st.integers(0, n - 1)),
    )
    return keys, draw(st.lists(op, min_size=3, max_size=8)), pool


@ISOLATION
@given(scenario=scenarios())
def test_no_operation_crosses_scopes(world: World, scenario) -> None:
    keys, ops, pool = scenario
    mine = [world.add(key, pool[i % len(pool)]) for i, key in enumerate(keys * 2)]
    for op in ops:
        key = keys[op[1]]
        CHECKED["operations"] += 1
        if op[0] == "add":
            mine.append(world.add(key, pool[0]))
        elif op[0] == "search":
            world.check_memories(world.memory.search("Rex the dog green tea", **kwargs(key)), key)
        elif op[0] == "answer":
            mode, policy, passes = op[2]
            world.echo.audit_passes = passes
            before = len(world.llm.calls)
            if not world.allowed_markers(key):
                with pytest.raises(ScopeError):
                    world.memory.answer("What does Rex drink?", mode=mode, policy=policy, **kwargs(key))
                continue
            answer = world.memory.answer("What does Rex drink?", mode=mode, policy=policy, **kwargs(key))
            for call in world.llm.calls[before:]:
                world.check_text(json.dumps(call.messages), key)
                CHECKED["prompts"] += 1
            world.check_text(answer.text, key)
            world.check_memories(answer.memories, key)
            assert set(answer.evidence.turn_ids) <= world.turns.visible_to(key)
            for fact in answer.evidence.facts:
                world.check_text(fact.text, key)
        elif op[0] in ("get", "delete"):
            target = mine[op[2] % len(mine)]
            present = target in world.turns and target in world.indexed
            expected = present and visible(world.turns.scope[target], key)
            if op[0] == "get":
                found = world.memory.get(target, **kwargs(key))
                assert (found is not None) == expected, (target, key)
                world.check_memories([found] if found else [], key)
            else:
                assert world.memory.delete(target, **kwargs(key)) == expected, (target, key)
                if expected:
                    world.indexed.discard(target)
        elif op[0] == "delete_all":
            doomed = world.turns.visible_to(key)
            counts = world.memory.delete_all(**kwargs(key))
            assert counts == {"turns": len(doomed), "memories": len(doomed & world.indexed)}
            for t in doomed:
                world.turns.remove(t)
            world.indexed -= doomed
        elif op[0] == "reindex":
            result = world.memory.reindex(**kwargs(key), extract=False)
            assert result.errors == []
            world.indexed |= world.turns.visible_to(key)
        # the other scopes of the example are untouched by whatever this operation did
        for other in keys:
            world.check_all(other)
    CHECKED["examples"] += 1
    if CHECKED["examples"] % 500 == 0:  # a deep run takes hours: show that it moves
        print(f"\n[isolation] so far {CHECKED}", flush=True)


# ---------------------------------------------------------------- targeted cases


def test_same_turn_id_in_two_partitions_stays_apart(world: World) -> None:
    a, b = ("iso-a", None, None), ("iso-b", None, None)
    for key in (a, b):
        world.memory.add({"id": "shared-id", "content": f"secret of {key[0]}"}, **kwargs(key))
    assert world.memory.get("shared-id", user_id="iso-a").text.endswith("secret of iso-a")
    assert world.memory.delete("shared-id", user_id="iso-a")
    assert world.memory.get("shared-id", user_id="iso-a") is None
    assert world.memory.get("shared-id", user_id="iso-b").text.endswith("secret of iso-b")
    assert world.memory.delete_all(user_id="iso-a") == {"turns": 1, "memories": 0}
    assert [t.text for t in world.memory.history(user_id="iso-b")] == ["secret of iso-b"]
    world.memory.delete_all(user_id="iso-b")


@pytest.mark.parametrize(("writer", "reader"), [
    ({"user_id": "u", "agent_id": "a1"}, {"user_id": "u", "agent_id": "a2"}),
    ({"user_id": "u", "session_id": "s1"}, {"user_id": "u", "session_id": "s2"}),
    ({"agent_id": "a", "session_id": "s1"}, {"agent_id": "a", "session_id": "s2"}),
    ({"user_id": "u"}, {"agent_id": "u"}),
    ({"user_id": "u"}, {"session_id": "u"}),
    ({"agent_id": "a", "user_id": "u"}, {"agent_id": "a"}),
    ({"session_id": "s", "user_id": "u"}, {"session_id": "s"}),
], ids=repr)
def test_scopes_differing_in_one_id(world: World, writer, reader) -> None:
    tag = uuid.uuid4().hex[:6]
    writer = {k: f"{v}-{tag}" for k, v in writer.items()}
    reader = {k: f"{v}-{tag}" for k, v in reader.items()}
    world.memory.add("The vault code is 4321.", **writer)
    world.memory.add("Nothing to see.", **reader)
    assert [m.text for m in world.memory.search("vault code", **reader)] == ["user: Nothing to see."]
    assert [t.text for t in world.memory.history(**reader)] == ["Nothing to see."]
    before = len(world.llm.calls)
    world.memory.answer("What is the vault code?", mode="full", **reader)
    assert "4321" not in json.dumps([c.messages for c in world.llm.calls[before:]])
    world.memory.delete_all(**reader)
    assert [t.text for t in world.memory.history(**writer)] == ["The vault code is 4321."]
    world.memory.delete_all(**writer)


async def test_concurrent_answers_do_not_mix(world: World) -> None:
    keys = [(f"conc-{i}", None, None) for i in range(4)]
    for key in keys:
        for _ in range(3):
            world.add(key, "c")
    world.echo.audit_passes = False
    modes = itertools.cycle([("fast", None), ("gated", "audit"), ("full", None)])
    jobs = [(key, *next(modes)) for key in keys * 3]
    answers = await asyncio.gather(*(
        world.memory.aanswer("What does Rex drink?", mode=mode, policy=policy, **kwargs(key))
        for key, mode, policy in jobs
    ))
    for (key, _, _), answer in zip(jobs, answers, strict=True):
        assert set(MARKER.findall(answer.text)) == world.allowed_markers(key)
        world.check_memories(answer.memories, key)
    for key in keys:
        world.memory.delete_all(**kwargs(key))
        for t in world.turns.visible_to(key):
            world.turns.remove(t)


def test_extraction_reconciles_only_within_the_scope(tmp_path) -> None:
    # alice and bob state the same fact; bob's reconcile call sees only bob's memory, and a
    # model that names alice's memory id (or invents one) cannot touch it
    fact = json.dumps({"facts": [{"text": "Rex the dog drinks green tea.", "turns": [1]}]})
    alice_id: list[str] = []

    def reconcile(request) -> str:
        seen = re.findall(r'"id": "([^"]+)"', request.messages[-1]["content"])
        assert alice_id[0] not in seen
        return json.dumps({"actions": [{"fact": 1, "event": "DELETE", "id": alice_id[0]},
                                       {"fact": 1, "event": "UPDATE", "id": "made-up", "text": "x"}]})

    # bob's second fact differs a little: a restatement would be a NOOP without asking
    close = json.dumps({"facts": [{"text": "Rex the dog drinks green tea daily.", "turns": [1]}]})
    llm = ScriptedLLM(by_task={"extract": [fact, fact, close], "reconcile": reconcile})
    memory = DualMemory(path=tmp_path, llm=llm, extract=True, index_turns=False)
    memory.add("Rex drinks green tea.", user_id="alice", session_id="s1")
    alice_id.append(memory.get_all(user_id="alice")[0].id)
    memory.add("Rex drinks green tea.", user_id="bob", session_id="s1")
    result = memory.add("Rex drinks green tea daily!", user_id="bob", session_id="s2")
    assert llm.calls_for("reconcile") and result.updated == []
    assert [m.id for m in memory.get_all(user_id="alice")] == alice_id
    assert all(m.user_id == "bob" for m in memory.get_all(user_id="bob"))
    memory.close()
