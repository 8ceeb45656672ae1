"""End-to-end benchmark runs on a tiny synthetic LoCoMo-format file, with ScriptedLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualmem import Config, DualMemError
from dualmem.bench.cache import CachedLLM
from dualmem.bench.data import load_locomo, load_realtalk
from dualmem.bench.run import expand_modes, run_benchmark
from dualmem.errors import ConfigError
from dualmem.llm.base import ChatRequest
from dualmem.testing import ScriptedLLM, ScriptedReply

SAMPLE = [
    {
        "sample_id": "conv-x",
        "conversation": {
            "speaker_a": "Ann",
            "speaker_b": "Bob",
            "session_1_date_time": "4:12 pm on 19 March, 2024",
            "session_1": [
                {"speaker": "Ann", "dia_id": "D1:1", "text": "I adopted a puppy named Rex yesterday."},
                {"speaker": "Bob", "dia_id": "D1:2", "text": "Lovely! I went hiking in the Alps."},
                {
                    "speaker": "Ann",
                    "dia_id": "D1:3",
                    "text": "Look at this.",
                    "blip_caption": "a photo of a pottery bowl",
                    "query": "leaky answer text",
                },
            ],
            "session_2_date_time": "10:00 am on 20 June, 2023",
            "session_2": [
                {"speaker": "Bob", "dia_id": "D2:1", "text": "I started painting sunsets last week."},
                {"speaker": "Ann", "dia_id": "D2:2", "text": "Rex learned to fetch, he is so smart."},
            ],
            # conv-26 style quirk: a date key without a session
            "session_3_date_time": "9:00 am on 1 July, 2023",
        },
        "qa": [
            {
                "question": "What is the name of Ann's puppy?",
                "answer": "Rex",
                "evidence": ["D1:1"],
                "category": 4,
            },
            {
                "question": "What did Bob do?",
                "answer": "hiking, painting",
                "evidence": ["D1:2; D2:1"],
                "category": 1,
            },
            {"question": "When did Bob paint?", "answer": 2023, "evidence": ["D2:1"], "category": 2},
            {
                "question": "Would Ann like dogs?",
                "answer": "Yes; she adopted one",
                "evidence": ["D:1:1", "D9:9"],
                "category": 3,
            },
            {
                "question": "What is Bob's puppy called?",
                "adversarial_answer": "Rex",
                "evidence": [],
                "category": 5,
            },
        ],
    }
]

# answers keyed by a word of the question, so that the order of calls does not matter
ANSWERS = {
    "name": "Rex",
    "Bob do": "hiking and painting",
    "paint": "last week",
    "Would": "Yes",
    "Bob's": "NONE",
}


def _answer(request: ChatRequest) -> ScriptedReply:
    question = request.messages[-1]["content"].rsplit("Question:", 1)[-1]
    for key, text in ANSWERS.items():
        if key in question:
            return ScriptedReply(text, confidence=0.95 if text == "Rex" else 0.4)
    return ScriptedReply("NONE")


def _llm() -> ScriptedLLM:
    return ScriptedLLM(by_task={"answer": _answer}, default="{}")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "locomo_tiny.json"
    path.write_text(json.dumps(SAMPLE))
    return path


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "questions.jsonl").read_text().splitlines()]


def test_loader_keeps_sessions_dates_captions_and_lenient_evidence(data: Path):
    (conv,) = load_locomo(data)
    assert [s.id for s in conv.sessions] == ["session_1", "session_2"]
    assert conv.sessions[0].date.isoformat() == "2024-03-19T16:12:00+00:00"
    assert conv.turns[2].text == "Look at this. [shares a photo: a photo of a pottery bowl]"
    assert "leaky" not in " ".join(t.text for t in conv.turns)
    qs = conv.questions
    assert qs[1].evidence == ["D1:2", "D2:1"]
    assert qs[2].answer == "2023"
    assert qs[3].evidence == ["D1:1"]  # D9:9 does not exist
    assert qs[4].answer is None and qs[4].adversarial_answer == "Rex"


def test_fast_run_scores_reports_and_resumes(data: Path, tmp_path: Path):
    out = tmp_path / "out"
    llm = _llm()
    summary = run_benchmark("locomo", data, out, mode="fast", config=Config(), llm=llm, progress=False)
    records = _records(out)
    assert len(records) == 5
    by_q = {r["q"]: r for r in records}
    assert by_q[0]["prediction"] == "Rex" and by_q[0]["f1"] == 1.0
    assert by_q[1]["f1"] == pytest.approx(2 / 3)  # "and" instead of a comma: one piece
    assert by_q[1]["f1_mem0"] == pytest.approx(0.8)
    assert by_q[2]["f1"] == 0.0
    assert by_q[4]["refusal"] is False and by_q[4]["refusal_or_none"] is True
    # every turn came in with its dia_id, so evidence maps onto retrieved turns
    assert set(by_q[0]["retrieved"]) == {"D1:1", "D1:2", "D1:3", "D2:1", "D2:2"}
    assert by_q[0]["usage"]["answer"]["calls"] == 1

    fast = summary["systems"]["fast"]
    assert fast["overall_n"] == 4
    assert fast["overall_f1"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert fast["categories"]["4"]["name"] == "single-hop"
    assert fast["categories"]["5"]["refusal"] == 0.0 and fast["categories"]["5"]["refusal_or_none"] == 1.0
    assert fast["recall"]["r@5"] == 1.0 and fast["calls"] == 1.0
    assert summary["ingest"]["turns"] == 5 and summary["ingest"]["calls"] == 0
    report = (out / "report.md").read_text()
    assert "cat 4 single-hop" in report and "cat 1 multi-hop" in report and "mem0ai was not run" in report
    assert (out / "frontier.png").stat().st_size > 0

    # a rerun asks nothing again: every question is already in the JSONL
    again = _llm()
    run_benchmark("locomo", data, out, mode="fast", config=Config(), llm=again, progress=False)
    assert again.calls == [] and len(_records(out)) == 5


def test_recall_above_the_top_k_comes_from_a_deeper_search(data: Path, tmp_path: Path):
    # the reader reads one memory; R@5 and R@30 are still reported, from a search as deep as R@50
    out = tmp_path / "out"
    summary = run_benchmark("locomo", data, out, mode="fast", k=1, config=Config(), llm=_llm(),
                            progress=False)
    records = [r for r in _records(out) if r["evidence"]]
    assert records and all(len(r["retrieved"]) == 1 for r in records)
    assert all(r["retrieved_deep"][:1] == r["retrieved"] and len(r["retrieved_deep"]) == 5 for r in records)
    recall = summary["systems"]["fast"]["recall"]
    assert recall["r@5"] == recall["r@30"] == 1.0  # the five turns hold every evidence turn


def test_cache_answers_identical_requests_once(tmp_path: Path):
    inner = ScriptedLLM(by_task={"answer": ["first", "second"]})
    cached = CachedLLM(inner, tmp_path / "c.sqlite3")
    request = ChatRequest(messages=[{"role": "user", "content": "q"}], task="answer")
    assert cached.complete(request).text == "first"
    assert cached.complete(request).text == "first"
    assert cached.complete(request.model_copy(update={"seed": 1})).text == "second"
    assert (cached.hits, cached.misses, len(inner.calls)) == (1, 2, 2)
    # a new process (new wrapper) reads the same file; the usage of the original call is kept
    reopened = CachedLLM(ScriptedLLM(), tmp_path / "c.sqlite3")
    completion = reopened.complete(request)
    assert completion.text == "first" and completion.usage.prompt_tokens > 0 and reopened.hits == 1


def test_subsets_and_retrieval_only(data: Path, tmp_path: Path):
    out = tmp_path / "ret"
    summary = run_benchmark(
        "locomo",
        data,
        out,
        retrieval_only=True,
        categories=[1, 2, 3, 4],
        limit=3,
        config=Config(),
        progress=False,
    )
    records = _records(out)
    assert [r["q"] for r in records] == [0, 1, 2] and all(r["system"] == "retrieval" for r in records)
    rec = summary["systems"]["retrieval"]["recall"]
    assert rec["r@5"] == 1.0 and rec["n"] == 3
    # every question's words are held by a retrieved memory: no NONE could win for that reason
    assert [r["unasked"] for r in records] == [[], [], []] and rec["unasked"] == 0
    assert "retrieval: for 0 of 3 questions no retrieved memory holds" in (out / "report.md").read_text()
    assert summary["identifier_probe"] == {"queries": 30, "rank1": 30, "rate": 1.0}
    assert "30 of 30 at rank 1" in (out / "report.md").read_text()
    with pytest.raises(DualMemError, match="unknown conversation"):
        run_benchmark("locomo", data, tmp_path / "x", conversations=["conv-nope"], llm=_llm(), progress=False)
    with pytest.raises(DualMemError, match="other settings"):
        run_benchmark("locomo", data, out, retrieval_only=True, k=7, config=Config(), progress=False)


def test_limit_spreads_questions_over_the_file():
    from dualmem.bench.data import Question
    from dualmem.bench.run import spread

    qs = [Question(i, f"q{i}", "a", 1 + i // 3, []) for i in range(10)]
    assert [q.index for q in spread(qs, 4)] == [0, 2, 5, 7]
    assert spread(qs, None) == qs and spread(qs, 50) == qs
    # a second sample, disjoint from the first, for checking what was tuned on it
    assert [q.index for q in spread(qs, 4, offset=1)] == [1, 3, 6, 8]
    assert [q.index for q in spread(qs, 4, offset=3)] == [3, 5, 8, 0]
    assert [q.index for q in spread(qs, 5, offset=5)] == [5, 7, 9, 1, 3]


def test_expand_modes():
    policies = ["gated:audit", "gated:signals", "gated:cascade", "gated:majority", "gated:consensus",
                "gated:learned", "gated:entropy"]
    assert expand_modes("gated") == ["fast", "gated"]
    assert expand_modes("all") == ["fast", "full", *policies, "rag", "fullctx", "llamaindex"]
    assert expand_modes("fast,llamaindex:facts,retrieval:llamaindex") == [
        "fast", "llamaindex:facts", "retrieval:llamaindex"
    ]
    assert expand_modes("policies") == ["fast", "full", *policies]
    assert expand_modes("gates") == ["fast", *(p.replace("gated:", "gate:") for p in policies)]
    assert expand_modes("fast,rag,gated:audit") == ["fast", "rag", "gated:audit"]
    for bad in ("fastest", "gated:nope", "gate:nope", "full:audit", "llamaindex:audit", "retrieval:nope"):
        with pytest.raises(DualMemError, match="unknown mode"):
            expand_modes(bad)


def test_all_modes_with_gate_quality_and_full_context(data: Path, tmp_path: Path):
    out = tmp_path / "all"
    summary = run_benchmark("locomo", data, out, mode="all", config=Config(), llm=_llm(), progress=False)
    systems = summary["systems"]
    policies = {"audit", "signals", "cascade", "majority", "consensus", "learned", "entropy"}
    assert set(systems) == {"fast", "full", "rag", "fullctx", "llamaindex"} | {f"gated:{p}" for p in policies}
    for name, v in systems.items():
        assert v["errors"] == 0, (name, v["error_examples"])
    records = _records(out)
    for policy in policies:
        gated = [r for r in records if r["system"] == f"gated:{policy}" and r["category"] != 5]
        assert len(gated) == 4 and all(r["gate_score"] is not None for r in gated)
        assert systems[f"gated:{policy}"]["escalation_rate"] is not None
    # the scripted audit reply "{}" is malformed: counted as a fail, so the audit policy escalates
    audit = [r for r in records if r["system"] == "gated:audit"]
    assert all(r["escalated"] and "not valid JSON" in r["reason"] for r in audit)
    assert not any(r["gate_signals"] for r in records if r["system"] == "gated:majority")
    gate = summary["gates"]["gated:cascade"]
    assert gate["n"] == 4 and gate["auroc"] is not None
    # every signal's own AUROC, an interval, and the risk-coverage trade-off with its plot
    assert set(gate["signals"]) >= {"entropy", "coverage", "sufficiency"}
    assert gate["signals"]["coverage"]["n"] == 4
    assert gate["risk_coverage"][-1]["escalation"] == 1.0 and (out / "risk-coverage.png").exists()
    assert "Each signal on its own" in (out / "report.md").read_text()
    assert gate["sweep"][0]["escalation"] == 0.0 and gate["sweep"][-1]["escalation"] == 1.0
    # each claim next to its target: one row per policy against full, the best AUROC, recall@30
    targets = summary["targets"]
    assert set(targets["gated_vs_full"]["systems"]) == {f"gated:{p}" for p in policies}
    assert targets["auroc"]["best"] in summary["gates"] and targets["recall@30"]["value"] == 1.0
    report = (out / "report.md").read_text()
    assert "## Targets" in report and "| gated:consensus vs full: F1 share" in report
    # labelled questions for `dualmem calibrate`, in the shape it reads
    from dualmem.answering.gate.calibrate import load_records

    labelled = load_records(out / "calibration.jsonl")
    assert len(labelled) == 4 and {r.fast_f1 for r in labelled} == {1.0, 2 / 3, 0.0}
    assert all(r.full_f1 is not None and "coverage" in r.signals for r in labelled)
    # the whole five-turn history fits the scripted model's context: one call per question
    assert systems["fullctx"]["calls"] == 1.0 and not systems["fullctx"]["skipped"]
    # evidence recall belongs to the systems that search, not to those that read the history
    assert systems["full"]["recall"] is None and systems["fullctx"]["recall"] is None
    assert systems["gated:audit"]["recall"]["r@5"] == 1.0
    # with a raw-turn index, the rag baseline asks exactly what fast asked: all cache hits
    rag = [r for r in records if r["system"] == "rag"]
    assert all(r["cache_hits"] == 1 for r in rag)


def test_gate_only_systems_measure_the_gate_without_deliberating(data: Path, tmp_path: Path):
    out = tmp_path / "gates"
    llm = _llm()
    summary = run_benchmark(
        "locomo", data, out, mode="fast,gate:signals,gate:audit", config=Config(), llm=llm, progress=False
    )
    assert not [c for c in llm.calls if c.task.startswith(("deliberate", "neighbours"))]
    records = [r for r in _records(out) if r["system"] == "gate:audit"]
    # the malformed scripted audit fails every answer: all would escalate, none did
    assert all(r["gate_escalate"] and not r["escalated"] and r["path"] == "fast" for r in records)
    assert summary["systems"]["gate:audit"]["escalation_rate"] == 1.0
    fast = {r["q"]: r["prediction"] for r in _records(out) if r["system"] == "fast"}
    assert all(fast[r["q"]] == r["prediction"] for r in records)
    assert set(summary["gates"]) == {"gate:signals", "gate:audit"}
    assert summary["gates"]["gate:audit"]["escalation_recall"] == 1.0
    assert "gated_vs_full" not in summary["targets"]  # nothing deliberated, no full run


def test_plain_gated_uses_the_policy_option(data: Path, tmp_path: Path):
    out = tmp_path / "g"
    run_benchmark(
        "locomo", data, out, mode="gated", policy="audit", config=Config(), llm=_llm(), progress=False
    )
    gated = [r for r in _records(out) if r["system"] == "gated"]
    assert len(gated) == 5 and all("audit" in r["reason"] for r in gated)


def test_rank_lines_sets_how_many_lines_system_2_reads(data: Path, tmp_path: Path):
    def widest(rank_lines: int | None) -> int:
        llm = _llm()
        run_benchmark("locomo", data, tmp_path / f"lines-{rank_lines}", mode="full", rank_lines=rank_lines,
                      config=Config(), llm=llm, progress=False)
        bodies = [c.messages[-1]["content"].split("<data>\n")[1].split("\n</data>")[0]
                  for c in llm.calls_for("deliberate.answer")]
        return max(len(b.splitlines()) for b in bodies)

    assert widest(None) == 5  # the default (16) reads every turn of the five-turn history
    assert widest(4) == 4
    settings = json.loads((tmp_path / "lines-4" / "run.json").read_text())
    assert settings["rank_lines"] == 4 and "rank_lines" not in json.loads(
        (tmp_path / "lines-None" / "run.json").read_text())
    with pytest.raises(ConfigError, match="rank_lines"):
        run_benchmark("locomo", data, tmp_path / "bad", mode="full", rank_lines=0, config=Config(),
                      llm=_llm(), progress=False)


def test_full_context_that_does_not_fit_is_reported(data: Path, tmp_path: Path):
    out = tmp_path / "fc"
    summary = run_benchmark(
        "locomo",
        data,
        out,
        mode="fullctx",
        config=Config(),
        llm=ScriptedLLM(context_tokens=100),
        progress=False,
    )
    skipped = summary["systems"]["fullctx"]["skipped"]
    (reason,) = skipped
    assert reason.startswith("does not fit") and skipped[reason] == 5


def test_realtalk_loader(tmp_path: Path):
    chat = {
        "name": {"speaker_1": "Emi", "speaker_2": "elise"},
        "session_1": [
            {
                "clean_text": "Hi!",
                "speaker": "Emi",
                "date_time": "17.11.2024, 21:37:05",
                "dia_id": "D1:1",
                "img_file": [],
                "img_url": [],
            },
            {
                "clean_text": "Look",
                "speaker": "elise",
                "date_time": "02.01.2024, 08:00:00",
                "dia_id": "D1:2",
                "blip_caption": "a cat",
            },
        ],
        "session_1_date_time": "17.11.2024, 21:37:05",
        "qa": [{"question": "Q?", "answer": "A", "evidence": ["D1:1-D1:2"], "category": 2}],
    }
    (tmp_path / "Chat_1_Emi_Elise.json").write_text(json.dumps(chat))
    (conv,) = load_realtalk(tmp_path)
    assert conv.id == "Chat_1_Emi_Elise"
    assert conv.turns[1].timestamp.isoformat() == "2024-01-02T08:00:00+00:00"  # day first
    assert conv.turns[1].text == "Look [shares a photo: a cat]"
    assert conv.questions[0].evidence == ["D1:1", "D1:2"]


def test_cli_group_runs_a_retrieval_benchmark(data: Path, tmp_path: Path):
    import typer
    from typer.testing import CliRunner

    from dualmem.bench.run import register

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """dualmem"""

    register(app)
    out = tmp_path / "cli"
    args = [
        "bench",
        "locomo",
        "--data",
        str(data),
        "--out",
        str(out),
        "--retrieval-only",
        "--categories",
        "1,4",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| retrieval | 2 |" in result.output and (out / "summary.json").exists()
    bad = CliRunner().invoke(
        app, ["bench", "locomo", "--data", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o")]
    )
    assert bad.exit_code == 2 and "cannot read benchmark data" in bad.output
    assert not (tmp_path / "o").exists()


def test_scale_benchmark_small(data: Path, tmp_path: Path):
    from dualmem.bench.scale import WordMeanEmbedding, run_scale

    emb = WordMeanEmbedding()
    a, b, c = emb(["Alice visited Paris", "Alice visited Paris", "Bob repaired a telescope"])
    assert float(a @ b) == pytest.approx(1.0) and float(a @ c) < 0.9 and a.shape == (384,)
    result = run_scale(
        tmp_path / "scale", sizes=(40, 80), extract_turns=10, queries=5, tenants=6, dialogue=data,
        workdir=tmp_path,
    )
    assert [t["memories"] for t in result["tiers"]] == [40, 80]
    for tier in result["tiers"]:
        assert tier["dualmem"]["p50_ms"] > 0 and tier["chroma"]["p50_ms"] > 0 and tier["ratio_p50"] > 0
        assert tier["after_add"]["dualmem"]["p95_ms"] > 0 and tier["after_add"]["chroma"]["p95_ms"] > 0
    assert result["extraction"]["turns_per_second"] > 0
    tenants = result["tenants"]
    assert tenants["users"] == 6 and tenants["plain_users"] == 6
    # six small users share the small-partition file; plain Chroma has a segment per user
    assert tenants["index_files"] < tenants["plain_files"] and tenants["plain_files"] >= 6 * 4
    assert 0 < tenants["index_bytes"] < tenants["plain_bytes"]
    (conv, *_) = load_locomo(data)
    dialogue = result["dialogue"]
    assert dialogue["turns"] == len(conv.turns) and dialogue["sessions"] == len(conv.sessions)
    assert dialogue["turns_per_second"] > 0 and dialogue["embedding_texts_per_second"] > 0
    report = (tmp_path / "scale" / "scale.md").read_text()
    assert "| 80 |" in report and f"Real dialogue ({conv.id}: {len(conv.turns)} turns" in report


def test_concurrent_questions_give_the_same_records(data: Path, tmp_path: Path):
    def slow(request: ChatRequest) -> ScriptedReply:
        reply = _answer(request)
        reply.delay = 0.05
        return reply

    llm = ScriptedLLM(by_task={"answer": slow})
    summary = run_benchmark(
        "locomo",
        data,
        tmp_path / "conc",
        mode="fast",
        concurrency=3,
        config=Config(),
        llm=llm,
        progress=False,
    )
    assert llm.max_concurrency_seen > 1
    records = sorted(_records(tmp_path / "conc"), key=lambda r: r["q"])
    assert [r["prediction"] for r in records] == ["Rex", "hiking and painting", "last week", "Yes", "NONE"]
    assert summary["systems"]["fast"]["overall_f1"] == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert all(r["cache_hits"] == 0 for r in records)
    assert "load average" in (tmp_path / "conc" / "report.md").read_text()


def test_extracted_index_with_the_raw_turn_baseline(data: Path, tmp_path: Path):
    from dualmem.bench.scale import _extract_reply, _reconcile_reply

    llm = ScriptedLLM(by_task={"answer": _answer, "extract": _extract_reply, "reconcile": _reconcile_reply})
    out = tmp_path / "ext"
    summary = run_benchmark(
        "locomo",
        data,
        out,
        mode="fast,rag",
        extract=True,
        categories=[4],
        config=Config(),
        llm=llm,
        progress=False,
    )
    ingest = summary["ingest"]
    assert ingest["extract"] is True and ingest["calls"] >= 3  # one extraction call per 2 turns
    assert "LLM-extracted memories" in (out / "report.md").read_text()
    fast, rag = (next(r for r in _records(out) if r["system"] == s) for s in ("fast", "rag"))
    # extracted facts keep the turn ids they came from, so evidence recall works on both
    assert "D1:1" in fast["retrieved"] and "D1:1" in rag["retrieved"]
    assert (out / "stores" / "conv-x" / "extract").is_dir() and (out / "stores" / "conv-x" / "raw").is_dir()


async def test_malformed_rate_counts_cut_replies_and_what_is_kept_of_them():
    from datetime import UTC, datetime

    from dualmem.bench.extraction import malformed_rate
    from dualmem.types import Turn

    turns = [Turn(id=f"t{i}", speaker="Ana", text=f"I walked {i} km.", user_id="u",
                  timestamp=datetime(2024, 5, 7, tzinfo=UTC)) for i in range(30)]
    llm = ScriptedLLM(by_task={"extract": [
        '{"facts": [{"text": "Ana walked.", "date": null, "turns": [1]}]}',
        ScriptedReply('{"facts": [{"text": "Ana walked.", "date": null, "turns": [1]}, {"te',
                      finish_reason="length"),
        ScriptedReply('{"facts": [{"te', finish_reason="length"),
    ]})
    report = await malformed_rate(llm, turns, 3, schema=True)
    assert report["calls"] == 3 and report["malformed"] == 2
    assert report["cut_by_max_tokens"] == 2 and report["cut_but_complete_items_kept"] == 1
