"""The LlamaIndex peer (`dualmem.bench.peers`): LlamaIndex's own Memory over a conversation, with
the real local embedder and a scripted model; it answers through dualmem's reader prompt."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from llama_index.core.storage.chat_store.sql import MessageStatus

from dualmem import Config, DualMemError
from dualmem._sync import run_sync
from dualmem.bench.data import BenchTurn, Conversation, Session, load_locomo
from dualmem.bench.peers import LlamaIndexPeer
from dualmem.bench.run import run_benchmark
from dualmem.embed import MiniLMEmbedding
from dualmem.llm.base import ChatRequest
from dualmem.prompts import ANSWER_SYSTEM, answer_messages
from dualmem.testing import ScriptedLLM, ScriptedReply

TOPICS = [
    ("Ann", "I adopted a puppy named Rex yesterday, he is a golden retriever."),
    ("Bob", "I went hiking in the Swiss Alps with my brother last weekend."),
    ("Ann", "My sister is getting married in Lisbon next spring."),
    ("Bob", "I have been learning to bake sourdough bread every Sunday."),
    ("Ann", "Work has been busy: our team ships the new billing app on Friday."),
    ("Bob", "I finally fixed the old motorbike in my garage, the engine runs again."),
    ("Ann", "I signed up for a watercolour painting class at the community centre."),
    ("Bob", "My daughter scored two goals at her football match on Saturday."),
    ("Ann", "We are thinking about moving to a bigger flat near the river."),
    ("Bob", "I read a great novel about a lighthouse keeper on a remote island."),
    ("Ann", "I started running in the mornings and did my first 10k race."),
    ("Bob", "The vet says my old cat needs a special diet for her kidneys."),
]


def _conversation() -> Conversation:
    start = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    sessions = []
    for n in range(2):
        date = start + timedelta(days=30 * n)
        half = TOPICS[6 * n : 6 * n + 6]
        turns = [BenchTurn(f"D{n + 1}:{i + 1}", who, text, date) for i, (who, text) in enumerate(half)]
        sessions.append(Session(f"session_{n + 1}", date, turns))
    return Conversation("conv-p", ["Ann", "Bob"], sessions, [])


def _answer(request: ChatRequest) -> ScriptedReply:
    return ScriptedReply("Rex" if "Rex" in request.messages[-1]["content"] else "NONE")


FACT = "Ann adopted a puppy named Rex."


def _facts(request: ChatRequest) -> str:
    # LlamaIndex's extraction prompt follows the flushed turns; only Rex's chunk yields a fact
    turns = " ".join(m["content"] for m in request.messages[:-1])
    return f"<facts><fact>{FACT}</fact></facts>" if "Rex" in turns else "<facts></facts>"


@pytest.fixture(scope="module")
def embed() -> MiniLMEmbedding:
    return MiniLMEmbedding()


def test_the_whole_conversation_goes_into_the_vector_block(embed: MiniLMEmbedding) -> None:
    peer = LlamaIndexPeer(_conversation(), None, embed, facts=False, k=4)
    stats = run_sync(peer.aingest())
    nodes = peer.vector.vector_store._nodes.values()
    stored = "\n".join(n.text for n in nodes)
    # flushed in chunks (not one node per turn, not one node for all), the FIFO's rest too
    assert stats["turns"] == 12 and 1 < stats["nodes"] < 12 and stats["calls"] == 0
    assert all(line in stored for line in peer.lines)
    assert all(n.metadata == {"session_id": "conv-p"} for n in nodes)
    assert run_sync(peer.memory.aget_all(status=MessageStatus.ACTIVE)) == []  # no short-term rest


def test_retrieves_the_evidence_turn_and_answers_through_the_reader_prompt(embed: MiniLMEmbedding) -> None:
    llm = ScriptedLLM(by_task={"answer": _answer})
    peer = LlamaIndexPeer(_conversation(), llm, embed, facts=False, k=4)
    run_sync(peer.aingest())
    question = "What is the name of Ann's puppy?"
    retrieved = run_sync(peer.aretrieve(question))
    # k=4 turns is one node: the chunk that holds the puppy turn, in the conversation's order
    assert retrieved.turn_ids[0] == "D1:1" and len(retrieved.turn_ids) < 12
    assert retrieved.lines[0] == "[8 May 2023] Ann: " + TOPICS[0][1] and retrieved.facts == []

    fields = run_sync(peer.aanswer(question, facts=False))
    (call,) = llm.calls
    assert call.task == "answer" and call.messages == answer_messages(question, retrieved.lines, "Memories")
    assert call.messages[0]["content"] == ANSWER_SYSTEM and call.max_tokens == 32 and call.logprobs
    assert fields["prediction"] == "Rex" and fields["retrieved"] == retrieved.turn_ids
    assert fields["context"] == sorted(retrieved.turn_ids) and fields["calls"] == 1


def test_fact_block_extracts_per_flushed_chunk_and_the_facts_reach_the_reader(embed: MiniLMEmbedding) -> None:
    llm = ScriptedLLM(by_task={"answer": _answer, "llamaindex.facts": _facts})
    peer = LlamaIndexPeer(_conversation(), llm, embed, facts=True, k=4)
    stats = run_sync(peer.aingest())
    extractions = llm.calls_for("llamaindex.facts")
    # one call per flushed chunk, each the chunk's turns then LlamaIndex's own prompt
    assert len(extractions) == stats["nodes"] == stats["calls"] and stats["facts"] == 1
    assert "precise fact extraction system" in extractions[0].messages[-1]["content"]
    assert extractions[0].messages[0]["content"] == peer.lines[0]
    assert stats["prompt_tokens"] > 0 and peer.facts is not None and peer.facts.facts == [FACT]

    question = "What is Bob's hobby on Sundays?"
    fields = run_sync(peer.aanswer(question, facts=True))
    lines = llm.calls_for("answer")[0].messages[1]["content"]
    assert lines.startswith(f"Memories:\n<data>\n{FACT}\n[")  # the facts first, then the turns
    assert "D1:4" in fields["retrieved"]  # sourdough on Sundays: facts add no turn ids
    # the vector-only system over the same memory does not read the facts
    run_sync(peer.aanswer(question, facts=False))
    assert FACT not in llm.calls_for("answer")[1].messages[1]["content"]


def _turns(n: int, topics: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"speaker": who, "dia_id": f"D{n}:{i + 1}", "text": text} for i, (who, text) in enumerate(topics)]


def _qa(question: str, answer: str, evidence: str) -> dict:
    return {"question": question, "answer": answer, "evidence": [evidence], "category": 4}


SAMPLE = {
    "sample_id": "conv-p",
    "conversation": {
        "speaker_a": "Ann",
        "speaker_b": "Bob",
        "session_1_date_time": "4:12 pm on 19 March, 2024",
        "session_1": _turns(1, TOPICS[:6]),
        "session_2_date_time": "10:00 am on 7 June, 2023",
        "session_2": _turns(2, TOPICS[6:]),
    },
    "qa": [
        _qa("What is the name of Ann's puppy?", "Rex", "D1:1"),
        _qa("Where is Ann's sister's wedding?", "Lisbon", "D1:3"),
    ],
}


def test_benchmark_run_records_the_peer_and_a_resume_is_served_by_the_cache(tmp_path: Path) -> None:
    data = tmp_path / "locomo_peer.json"
    data.write_text(json.dumps([SAMPLE]))
    assert len(load_locomo(data)[0].turns) == 12
    out = tmp_path / "out"
    systems = "llamaindex,llamaindex:facts,retrieval:llamaindex"
    llm = ScriptedLLM(by_task={"answer": _answer, "llamaindex.facts": _facts})
    summary = run_benchmark("locomo", data, out, mode=systems, config=Config(), llm=llm, progress=False)
    records = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    by = {(r["system"], r["q"]): r for r in records}
    assert by["llamaindex", 0]["prediction"] == "Rex" and by["llamaindex", 0]["f1"] == 1.0
    assert by["retrieval:llamaindex", 0]["retrieved"] == by["llamaindex", 0]["retrieved"]
    assert by["retrieval:llamaindex", 0]["prediction"] is None
    for name in systems.split(","):
        assert summary["systems"][name]["recall"]["r@5"] == 1.0, name
    assert summary["peer_ingest"]["facts"] == 1 and summary["peer_ingest"]["turns"] == 12
    assert "vs_fast" not in summary["paired"].get("llamaindex", {})  # no fast system in this run
    report = (out / "report.md").read_text()
    assert "| llamaindex:facts | 2 |" in report and "LlamaIndex peer (`llamaindex`" in report
    assert "LlamaIndex's own Memory" in report

    # a resumed run (records lost) pays nothing: ingestion and answers come from the cache
    (out / "questions.jsonl").unlink()
    again = ScriptedLLM()
    run_benchmark("locomo", data, out, mode=systems, config=Config(), llm=again, progress=False)
    assert again.calls == [] and (out / "questions.jsonl").read_text().count("\n") == 6


def test_a_missing_llama_index_names_the_bench_extra(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "locomo_peer.json"
    data.write_text(json.dumps([SAMPLE]))
    monkeypatch.delitem(sys.modules, "dualmem.bench.peers")
    for name in [m for m in sys.modules if m.startswith("llama_index")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(DualMemError, match=r"llama-index-core.*dualmem\[bench\]"):
        run_benchmark("locomo", data, tmp_path / "o", mode="llamaindex", config=Config(),
                      llm=ScriptedLLM(), progress=False)


def test_the_peer_retrieval_needs_no_model(tmp_path: Path) -> None:
    data = tmp_path / "locomo_peer.json"
    data.write_text(json.dumps([SAMPLE]))
    out = tmp_path / "ret"
    summary = run_benchmark("locomo", data, out, mode="retrieval:llamaindex", config=Config(), progress=False)
    (puppy, wedding) = [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]
    assert summary["settings"]["model"] is None and puppy["error"] is None
    assert puppy["retrieved"][0] == "D1:1" and "D1:3" in wedding["retrieved"][:5]
    assert summary["systems"]["retrieval:llamaindex"]["recall"]["r@5"] == 1.0
