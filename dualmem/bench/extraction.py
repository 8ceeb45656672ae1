"""Extraction benchmark on LoCoMo: what extraction keeps, what it costs, and what it breaks.

`dualmem bench extraction` ingests chosen sessions of chosen conversations with extraction
(one `add` per session, as an application adding a chat would) and reports per conversation:
memories per turn, fact recall (share of the QA evidence turns that at least one extracted
fact cites as its source), evidence recall@30 of the raw-turn, facts-only and mixed indexes,
LLM calls and tokens per turn, and ingest turns/s. `--malformed N` instead counts the
structured replies that fail to parse over N extraction calls, with and without the reply's
JSON schema. `--precision-sample N` writes N (fact, source turns) pairs to judge by hand.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..config import Config
from ..errors import LLMReplyError
from ..ingest.extract import ExtractReply
from ..llm.base import FACTS_REPLY_TOKENS, BaseLLM, ChatRequest, parse_json_reply, reply_schema, salvage
from ..memory import DualMemory
from ..prompts import extract_messages
from ..types import Turn
from .data import Conversation, load_locomo
from .score import ranked_turns, recall_at_k

__all__ = ["extraction_command", "malformed_rate", "run_extraction"]

K = 30


def _recall(memory: DualMemory, conv: Conversation, evidence_qs: list[Any]) -> float | None:
    scores = [recall_at_k(ranked_turns(memory.search(q.question, user_id=conv.id, k=K)), q.evidence, K)
              for q in evidence_qs]
    scores = [s for s in scores if s is not None]
    return sum(scores) / len(scores) if scores else None


def run_extraction(conv: Conversation, sessions: int, out: Path, config: Config,
                   llm: BaseLLM | None = None) -> dict[str, Any]:
    """Ingest the first `sessions` sessions of `conv` three ways and measure them."""
    picked = conv.sessions[:sessions]
    turn_ids = {t.id for s in picked for t in s.turns}
    questions = [q for q in conv.questions if q.category != 5 and q.evidence
                 and set(q.evidence) <= turn_ids]
    base = config.model_copy(update={"index_turns": True, "extract": True})
    mixed = DualMemory(base.model_copy(update={"data_dir": out / conv.id / "mixed"}), llm=llm)
    mixed.reset()  # a rerun measures a fresh ingestion
    start = time.perf_counter()
    calls = prompt = completion = 0
    errors: list[str] = []
    for s in picked:
        result = mixed.add(s.messages(), user_id=conv.id, session_id=s.id)
        calls += result.usage.calls
        prompt += result.usage.prompt_tokens
        completion += result.usage.completion_tokens
        errors += [result.error] if result.error else []
    seconds = time.perf_counter() - start
    facts = [m for m in mixed.get_all(user_id=conv.id) if not m.is_raw]
    cited = {t for m in facts for t in m.source_turn_ids}
    evidence = {t for q in questions for t in q.evidence}
    # the same facts alone, and the raw turns alone, in indexes of their own (no LLM)
    only = DualMemory(base.model_copy(update={"data_dir": out / conv.id / "facts", "extract": False}))
    only.reset()
    only.index.upsert(facts)
    raw = DualMemory(base.model_copy(update={"data_dir": out / conv.id / "raw", "extract": False}))
    raw.reset()
    for s in picked:
        raw.add(s.messages(), user_id=conv.id, session_id=s.id)
    n_turns = len(turn_ids)
    report = {
        "conversation": conv.id, "sessions": len(picked), "turns": n_turns,
        "questions_with_evidence": len(questions), "facts": len(facts),
        "memories_per_turn": len(facts) / n_turns,
        "fact_recall": len(evidence & cited) / len(evidence) if evidence else None,
        "recall@30": {"raw": _recall(raw, conv, questions), "facts": _recall(only, conv, questions),
                      "mixed": _recall(mixed, conv, questions)},
        "llm_calls_per_turn": calls / n_turns, "prompt_tokens_per_turn": prompt / n_turns,
        "completion_tokens_per_turn": completion / n_turns,
        "ingest_seconds": seconds, "turns_per_second": n_turns / seconds, "errors": errors,
    }
    for m in (mixed, only, raw):
        m.close()
    return report


def precision_sample(store: Path, user_id: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """N random facts of an extraction store with the text of the turns they cite."""
    memory = DualMemory(Config(data_dir=store, extract=False))
    facts = [m for m in memory.get_all(user_id=user_id) if not m.is_raw]
    turns = {t.id: t for t in memory.history(user_id=user_id)}
    picked = random.Random(seed).sample(facts, min(n, len(facts)))
    return [{"fact": m.render(), "sources": [turns[t].render() for t in m.source_turn_ids if t in turns]}
            for m in picked]


async def malformed_rate(llm: BaseLLM, turns: list[Turn], calls: int, *, schema: bool,
                         batch: int = 10, start: int = 0) -> dict[str, Any]:
    """Extraction calls on consecutive batches of `turns`, one try each: how many replies do
    not parse as `ExtractReply`, and how many were cut by max_tokens."""
    bad = cut = kept = 0
    failures: list[str] = []
    for i in range(start, start + calls):
        chunk = turns[i * batch : (i + 1) * batch]
        if not chunk:
            break
        request = ChatRequest(task="extract", max_tokens=FACTS_REPLY_TOKENS, json_mode=True,
                              messages=extract_messages([t.render() for t in chunk], [], []))
        if schema:
            request = request.model_copy(update={"json_schema": reply_schema(ExtractReply)})
        completion = await llm.acomplete(request)
        cut += completion.finish_reason == "length"
        try:
            parse_json_reply(completion.text, ExtractReply)
            ok = True
        except LLMReplyError:
            bad, ok = bad + 1, False
            failures.append(completion.text[:300])
            kept += salvage(completion, ExtractReply) is not None  # what `ajson` keeps of it
        typer.echo(f"call {i} schema={schema} ok={ok} finish={completion.finish_reason} "
                   f"tokens={completion.usage.completion_tokens}", err=True)
    return {"calls": calls, "malformed": bad, "cut_by_max_tokens": cut,
            "cut_but_complete_items_kept": kept, "failures": failures}


def extraction_command(
    data: Annotated[Path, typer.Option(help="LoCoMo JSON file")],
    out: Annotated[Path, typer.Option(help="output directory")] = Path("bench-out/extraction"),
    conversations: Annotated[str | None, typer.Option(help="ids, comma-separated")] = None,
    sessions: Annotated[int, typer.Option(help="first N sessions of each conversation")] = 3,
    malformed: Annotated[
        int, typer.Option(help="instead: N extraction calls, with and without schema")] = 0,
    schema: Annotated[str, typer.Option(help="with --malformed: json_object, schema or both")] = "both",
    start: Annotated[int, typer.Option(help="with --malformed: first batch of 10 turns")] = 0,
    precision_sample_n: Annotated[
        int, typer.Option("--precision-sample", help="instead: write N facts with their sources")] = 0,
) -> None:
    """Extraction benchmark: fact recall, R@30 raw/facts/mixed, cost and speed per turn."""
    convs = load_locomo(data)
    if conversations:
        wanted = conversations.split(",")
        convs = [c for c in convs if c.id in wanted]
    out.mkdir(parents=True, exist_ok=True)
    config = Config.from_env()
    from ..llm import make_llm

    llm = make_llm(config)
    llm.timeout = 3600  # one try per call is what is measured: a loaded machine must not time it out
    if precision_sample_n:
        rows = [row for c in convs for row in
                precision_sample(out / c.id / "mixed", c.id, precision_sample_n)]
        (out / "precision-sample.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))
        typer.echo(f"{len(rows)} facts written to {out / 'precision-sample.json'}")
        return
    if malformed:
        import asyncio

        turns = [Turn(id=t.id, speaker=t.speaker, text=t.text, timestamp=t.timestamp, user_id="u")
                 for c in convs for t in c.turns]
        modes = ("json_object", "schema") if schema == "both" else (schema,)
        report = {mode: asyncio.run(malformed_rate(llm, turns, malformed, schema=mode == "schema",
                                                   start=start))
                  for mode in modes}
    else:
        report = {c.id: run_extraction(c, sessions, out, config, llm) for c in convs}
    name = f"malformed-{schema}-{start}.json" if malformed else "extraction.json"
    (out / name).write_text(json.dumps(report, indent=2))
    typer.echo(json.dumps(report, indent=2))
